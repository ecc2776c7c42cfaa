"""The simulated controller against public reports of its timing: the runs behind each reported number.

Job: set each report up as it describes itself (scenarios/calibration/: replicas, controller version, the fault)
and measure the model's number for it, with every other parameter from the model's documented rules
(docs/facts.md, "Load Balancer Controller: requeue and back-off by version"). ``tests/sim/test_calibration.py``
checks each number against its report within a tolerance; ``bench/bench_sensitivity.py`` measures how far each
assumption of the model moves them. Both call the functions here, so the two always measure the same runs.

Invariant: nothing here is fitted to a report. A report's own figure appears only as ``Report.seconds``, the
number a measurement is divided by.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from albgate.sim.runner import simulate
from albgate.sim.scenario import Scenario, load_scenario
from albgate.sim.simulation import Simulation
from lambdas.domain.ports import DeploymentPatch

CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "calibration"
GATED_18 = CALIBRATION_DIR / "gated-rollout-18-pods-v2.2.4.yaml"
AFTER_ERRORS = CALIBRATION_DIR / "gate-after-errors-v2.7.1.yaml"
V2 = "ikubernetes/myapp:v2"

# Each seed is one deploy of the 18 pods; the typical one is the median, the slow one the slowest.
DEPLOYS = range(1, 21)
# When the controller's errors end, in seconds after the rollout starts: swept over one full back-off period
# once the cap is reached (22 minutes of doubling from 5 ms), since the report does not say.
ERRORS_END = tuple(1400 + 100 * k for k in range(10))


@dataclass(frozen=True)
class Report:
    """One public figure: where it is, what it says, and its number in seconds."""

    url: str
    says: str
    seconds: float


ISSUE_2287 = "https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/2287"
ISSUE_3622 = "https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/3622"
TYPICAL_DEPLOY = Report(ISSUE_2287, "a gated deploy of 18 pods takes about 3 min", 3 * 60)
SLOW_DEPLOY = Report(ISSUE_2287, "the slow deploy takes up to 7-8 min", 7.5 * 60)
STUCK = Report(ISSUE_3622, "the gate opens after about 15-16 min with the default back-off", 15.5 * 60)
STUCK_CAPPED = Report(ISSUE_3622, "the gate opens at the 11th second with the back-off capped at 10 s", 11.0)


def gated_deploys(sc: Scenario, seeds: Sequence[int] = DEPLOYS) -> list[float]:
    """Rollout seconds of the controller's gate alone (``readiness-gate``), one deploy per seed; every one must
    succeed (a deploy that does not is no time to compare)."""
    runs = [simulate(sc, "readiness-gate", seed, lower_bound=False) for seed in seeds]
    failed = [r.seed for r in runs if r.outcome != "succeeded" or r.rollout_seconds is None]
    if failed:
        raise AssertionError(f"{sc.name}: the gated deploy did not succeed on seed(s) {failed}")
    return [r.rollout_seconds for r in runs if r.rollout_seconds is not None]


def gate_wait_after_errors(sc: Scenario, errors_end: float) -> float:
    """Seconds from the end of the controller's errors (the scenario's first ``describe_load`` window, cut to
    ``errors_end`` seconds after the rollout starts) to the first new pod's controller gate turning True;
    negative when it opened while the errors lasted (a call found a token)."""
    window = sc.faults.describe_load[0].model_dump()
    sc = sc.with_changes(faults={"describe_load": [{**window, "duration_seconds": errors_end}]})
    sim = Simulation(sc)
    sim.run_until(sim.rollout_start)
    gate = sim.lbc_gate_names()[0]
    d = sim.deployment()
    sim.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={sc.rollout_container: V2}))
    opened = sim.run_until(sim.rollout_start + sc.horizon_seconds, stop=lambda: any(
        p.version == V2 and p.conditions.get(gate, ("",))[0] == "True" for p in sim.cluster.all_pods))
    if not opened:
        raise AssertionError(f"{sc.name}: no gate opened within the horizon (errors until {errors_end} s)")
    return sim.clock.t - sim.rel_to_abs(errors_end)


def gate_waits_after_errors(sc: Scenario, ends: Sequence[float] = ERRORS_END) -> list[float]:
    return [gate_wait_after_errors(sc, end) for end in ends]


@dataclass(frozen=True)
class Measured:
    """A report's number as the model gives it: the runs' summary, and its ratio to the report."""

    report: Report
    what: str  # how the number is taken from the runs, e.g. "median of 20 deploys"
    seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.report.seconds


def deploy_reports(deploys: Sequence[float]) -> tuple[Measured, Measured]:
    """#2287 from the gated deploys: the typical deploy (median) and the slow one (slowest)."""
    n = len(deploys)
    return (Measured(TYPICAL_DEPLOY, f"median of {n} deploys", statistics.median(deploys)),
            Measured(SLOW_DEPLOY, f"slowest of {n} deploys", max(deploys)))


def stuck_reports(waits: Sequence[float]) -> tuple[Measured, Measured]:
    """#3622 from the waits after the errors, one per end time: the longest and the median."""
    n = len(waits)
    return (Measured(STUCK, f"longest of {n} error ends", max(waits)),
            Measured(STUCK, f"median of {n} error ends", statistics.median(waits)))


def capped_report(waits: Sequence[float]) -> Measured:
    """#3622 with the back-off capped at 10 s, from the waits of the gates still shut when the errors ended (a
    10 s back-off retries often enough that some call finds a token before they end: that gate opened earlier)."""
    shut = [w for w in waits if w > 0]
    if not shut:
        raise AssertionError("every gate opened before the errors ended: no wait to compare with the report")
    return Measured(STUCK_CAPPED, f"median of the {len(shut)} gates shut when the errors ended",
                    statistics.median(shut))


def measure_reports(change: Callable[[Scenario], Scenario | None] = lambda sc: sc) -> dict[str, Measured | None]:
    """The four figures of the default back-off (#2287 typical and slow, #3622 longest and median), each scenario
    first passed through ``change`` (None: the change does not apply to that scenario, e.g. a flag its controller
    version lacks, and its figures are None)."""
    gated = change(load_scenario(GATED_18))
    typical, slow = deploy_reports(gated_deploys(gated)) if gated is not None else (None, None)
    errors = change(load_scenario(AFTER_ERRORS))
    longest, median = stuck_reports(gate_waits_after_errors(errors)) if errors is not None else (None, None)
    return {"2287 typical": typical, "2287 slow": slow, "3622 longest": longest, "3622 median": median}

