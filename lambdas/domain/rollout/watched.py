"""What a step's gate and drain watch besides target health: the policy's CloudWatch alarms, then the ALB's metrics.

Job: one look at both for a gate's or a drain's look (``watch_failure``): the error name and the reason of the
first that fails the step, or None. The alarms come first: they are what a person chose to watch, and a failing
alarm needs no metrics read.
"""

from __future__ import annotations

from lambdas.domain.contract import ALARM_FIRED, ALB_METRICS_REGRESSED
from lambdas.domain.ports import Ports
from lambdas.domain.rollout import alarms, analysis
from lambdas.domain.state import RolloutState


def watch_failure(ports: Ports, s: RolloutState, when: str, now: float) -> tuple[str, str] | None:
    """(error name, reason) of what fails the step ``when`` (e.g. "during step 2's gate"), or None."""
    alarmed = alarms.during(ports, s, when)
    if alarmed:
        return ALARM_FIRED, alarmed
    regressed = analysis.during(ports, s, when, now)
    if regressed:
        return ALB_METRICS_REGRESSED, regressed
    return None
