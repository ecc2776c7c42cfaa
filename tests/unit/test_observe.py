"""When the next look comes: ``observe.next_look`` is the one place a gate's or a drain's wait is decided, from
what the look found it waits for (``Pace``), by the rules of lambdas/domain/poll.py; and the gate's and the
drain's results travel in the state as typed values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lambdas.domain import poll
from lambdas.domain.gate import DrainResult, GateResult, GroupCounts, Verdict
from lambdas.domain.models import RolloutRequest
from lambdas.domain.rollout.observe import NOW, Pace, next_look, poll_key
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo

INTERVAL = 10


def state(*, throttles: int = 0, registering_since: float | None = None) -> RolloutState:
    request = RolloutRequest.model_validate(
        {"cluster": "c", "namespace": "ns", "deployment": "d", "container": "app", "image": "r/app:v2"}
    )
    return RolloutState(
        request=request, execution_name="e", started_at=0, replicas=4, plan=[1, 4], target_image="i",
        previous_image="j", previous_revision=1, original_max_surge=1, original_max_unavailable=0, step=0,
        target_groups=[TargetGroupInfo(arn="arn:tg/a", service="s", health_check_interval_seconds=INTERVAL,
                                       healthy_threshold=2, deregistration_delay_seconds=30),
                       TargetGroupInfo(arn="arn:tg/b", service="s", health_check_interval_seconds=INTERVAL + 5,
                                       healthy_threshold=2, deregistration_delay_seconds=30)],
        throttles=throttles,
        steps=[StepRecord(step=1, mode="rollout", target=1, started_at=0, polls=3, registering_since=registering_since)],
    )  # fmt: skip


def test_nothing_to_wait_for_goes_on_at_once():
    assert next_look(state(), NOW, now=100) == 0


def test_a_booked_turn_waits_exactly_as_booked():
    assert next_look(state(), Pace("booked", 7), now=100) == 7


KIND_CASES = [
    # id, pace, throttles, registering since, the rule it must follow
    ("replica-set", Pace("rs"), 0, None, lambda s: poll.pod_poll_seconds(poll_key(s, "rs"))),
    ("pods", Pace("pods"), 0, None, lambda s: poll.pod_poll_seconds(poll_key(s, "pods"))),
    ("pods-unschedulable", Pace("pods", unschedulable=True), 0, None,
     lambda s: poll.pod_poll_seconds(poll_key(s, "pods"), unschedulable=True)),
    ("scale-down", Pace("scale-down"), 0, None, lambda s: poll.pod_poll_seconds(poll_key(s, "scale-down"))),
    ("targets", Pace("targets"), 0, None, lambda s: INTERVAL),
    ("throttled-twice", Pace("throttled"), 2, None,
     lambda s: poll.target_poll_seconds(INTERVAL, poll_key(s, "throttled"), 2)),
    ("registering-young", Pace("registering"), 0, 95.0, lambda s: INTERVAL),
    ("registering-for-4-min", Pace("registering"), 0, -140.0,
     lambda s: poll.registration_poll_seconds(INTERVAL, 240, poll_key(s, "registering"))),
    ("handed-over-drain", Pace("handed-over-drain"), 3, None,
     lambda s: poll.drain_poll_seconds(INTERVAL, poll_key(s, "handed-over-drain"))),
    ("drain-throttled", Pace("drain"), 1, None, lambda s: poll.drain_poll_seconds(INTERVAL, poll_key(s, "drain"), 1)),
    ("drain", Pace("drain"), 0, None, lambda s: poll.drain_poll_seconds(INTERVAL, poll_key(s, "drain"))),
]  # fmt: skip


@pytest.mark.parametrize("pace,throttles,since,rule", [c[1:] for c in KIND_CASES], ids=[c[0] for c in KIND_CASES])
def test_each_wait_follows_its_rule_on_the_shortest_interval(pace, throttles, since, rule):
    s = state(throttles=throttles, registering_since=since)
    assert next_look(s, pace, now=100) == rule(s)


def test_a_long_registration_looks_less_often_than_the_interval():
    s = state(registering_since=-140.0)
    assert next_look(s, Pace("registering"), now=100) > INTERVAL


def test_a_throttled_look_backs_off_and_a_retry_waits_the_same():
    once, twice = state(throttles=1), state(throttles=2)
    assert next_look(twice, Pace("throttled"), now=100) > next_look(once, Pace("throttled"), now=100) >= INTERVAL
    assert next_look(twice, Pace("throttled"), now=100) == next_look(state(throttles=2), Pace("throttled"), now=7)


def test_the_gate_and_the_drain_round_trip_through_the_state_as_typed_values():
    s = state()
    s.gate = GateResult(Verdict.PASSED, "ok", needed=1, healthy=1, release=("p1",), unschedulable=1,
                        groups=(GroupCounts(target_group="a", service="s", healthy=1),))
    s.drain = DrainResult(Verdict.DRAINING, "leaving", draining=1, leaving_ips=("10.0.0.1",), step=1)
    data = s.dump()
    # What the state machine reads is plain JSON; the deciding handler's own fields stay out of the state
    assert data["gate"]["status"] == "PASSED" and data["drain"]["status"] == "DRAINING"
    assert "unschedulable" not in data["gate"] and "polled_targets" not in data["gate"]
    assert "leaving_ips" not in data["drain"]
    back = RolloutState.model_validate(data)
    assert back.gate.status is Verdict.PASSED and back.gate.release == ("p1",) and back.gate.groups[0].healthy == 1
    assert back.drain.step == 1 and back.drain.status is Verdict.DRAINING


@pytest.mark.parametrize("field,value", [("status", "MAYBE"), ("healthy", "two"), ("bogus", 1)])
def test_a_gate_edited_out_of_shape_is_refused(field, value):
    data = state().dump()
    data["gate"][field] = value
    with pytest.raises(ValidationError):
        RolloutState.model_validate(data)
