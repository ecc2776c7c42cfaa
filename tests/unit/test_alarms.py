"""The CloudWatch alarms a rollout watches (lambdas/domain/rollout/alarms.py): which calls a look makes, what the
answers decide at Preflight, in a step's gate and drain, and at the next Start Step (the history since the gate)."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.gate import GateResult, Verdict
from lambdas.domain.models import MAX_ALARM_PREFIXES, MAX_ALARMS, RolloutPolicy, RolloutRequest
from lambdas.domain.ports import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    Alarm,
    AlarmPage,
    Ports,
    StateChange,
    StateChanges,
)
from lambdas.domain.rollout.alarms import (
    MAX_HISTORY_CALLS,
    AlarmLook,
    Query,
    Watch,
    check_at_start,
    during,
    failure_reason,
    history_candidates,
    look,
    overflow_queries,
    queries,
    selector_problems,
    since_gate,
    went_failing,
)
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo

START = 1_000_000.0  # when the rollout started (epoch seconds)


class FakeCloudWatch:
    """An ``AlarmPort`` over a fixed set of alarms: pages of ``page`` alarms, every call recorded."""

    def __init__(self, alarms_: list[Alarm], history: dict[str, StateChanges] | None = None, page: int = 100) -> None:
        self.alarms, self.history, self.page = alarms_, history or {}, page
        self.calls: list[tuple[Any, ...]] = []

    def describe_alarms(self, *, names: tuple[str, ...] = (), prefix: str | None = None,
                        state: str | None = None) -> AlarmPage:
        self.calls.append(("DescribeAlarms", names, prefix, state))
        picked = [a for a in self.alarms if (a.name in names if names else prefix is None or a.name.startswith(prefix))
                  and (state is None or a.state == state)]
        return AlarmPage(tuple(picked[: self.page]), more=len(picked) > self.page)

    def state_changes(self, name: str, start: float, end: float) -> StateChanges:
        self.calls.append(("DescribeAlarmHistory", name, start, end))
        return self.history.get(name, StateChanges(()))


def alarm(name: str, state: str = OK, since: float = START - 3600, reason: str = "") -> Alarm:
    return Alarm(name, state, since, reason)


def policy(entries: list[str], **fields: Any) -> RolloutPolicy:
    return RolloutPolicy(alarms=entries, **fields)


def watch(entries: list[str], **fields: Any) -> Watch:
    w = Watch.of(policy(entries, **fields), START)
    assert w is not None
    return w


def ports(cloudwatch: FakeCloudWatch | None) -> Ports:
    return Ports(kube=None, elb=None, clock=None, alarms=cloudwatch)  # type: ignore[arg-type]


def state(entries: list[str], *, mode: str = "rollout", gate_passed_at: float | None = None,
          **fields: Any) -> RolloutState:
    request = RolloutRequest.model_validate({"cluster": "c", "namespace": "ns", "deployment": "d", "container": "app",
                                             "image": "r/app:v2", "policy": {"alarms": entries, **fields}})
    steps = ([StepRecord(step=1, mode="rollout", target=1, started_at=START + 10, gate_passed_at=gate_passed_at)]
             if gate_passed_at is not None else [])
    return RolloutState(
        request=request, execution_name="e", started_at=START, replicas=3, plan=[1, 2, 3], target_image="r/app:v2",
        previous_image="r/app:v1", previous_revision=1, original_max_surge=1, original_max_unavailable=0,
        target_groups=[TargetGroupInfo(arn="arn:tg/a", service="s", health_check_interval_seconds=10,
                                       healthy_threshold=2, deregistration_delay_seconds=30)],
        mode=mode, step=0 if steps else -1, next_step=1 if steps else 0, steps=steps,
    )  # fmt: skip


# --- what a policy watches ------------------------------------------------------------------------------------------
def test_a_policy_without_alarms_watches_nothing():
    assert Watch.of(RolloutPolicy(), START) is None


def test_entries_ending_in_a_star_are_prefixes_the_others_exact_names():
    w = watch(["app-5xx", "app-latency-*", "db-*"])
    assert (w.names, w.prefixes, w.failing_states, w.started_at) == (("app-5xx",), ("app-latency-", "db-"), (ALARM,),
                                                                     None)


@pytest.mark.parametrize("state_,since,fields,counts", [
    (ALARM, START + 5, {}, True),
    (ALARM, START - 5, {}, True),  # without the override, an ALARM from before the start counts as well
    (INSUFFICIENT_DATA, START + 5, {}, False),  # default: no data is no verdict on the new version
    (INSUFFICIENT_DATA, START + 5, {"insufficient_data_fails": True}, True),
    (OK, START + 5, {"insufficient_data_fails": True}, False),
    (ALARM, START - 5, {"start_despite_alarms": True}, False),  # the ALARM the rollout started despite
    (ALARM, START, {"start_despite_alarms": True}, False),
    (ALARM, START + 5, {"start_despite_alarms": True}, True),  # it left ALARM and came back
], ids=["alarm", "alarm-before-start", "no-data-by-default", "no-data-when-it-fails", "ok", "override-before",
        "override-at-start", "override-after"])
def test_which_alarm_states_fail_the_rollout(state_, since, fields, counts):
    assert watch(["a"], **fields).counts(alarm("a", state_, since)) is counts


# --- the calls of one look ------------------------------------------------------------------------------------------
def test_a_look_asks_once_for_every_exact_name_and_once_per_prefix():
    assert queries(watch(["a", "b", "p-*"])) == [Query(names=("a", "b")), Query(prefix="p-")]
    assert queries(watch(["p-*"])) == [Query(prefix="p-")]


def test_a_crowded_prefix_is_asked_again_once_per_failing_state():
    assert overflow_queries(watch(["p-*"]), "p-") == [Query(prefix="p-", state=ALARM)]
    assert overflow_queries(watch(["p-*"], insufficient_data_fails=True), "p-") == [
        Query(prefix="p-", state=ALARM), Query(prefix="p-", state=INSUFFICIENT_DATA)]


def test_a_look_merges_the_answers_each_alarm_once_by_name():
    cw = FakeCloudWatch([alarm("p-2"), alarm("a"), alarm("p-1"), alarm("other")])
    seen = look(cw, watch(["a", "p-1", "p-*"]))
    assert [a.name for a in seen.alarms] == ["a", "p-1", "p-2"] and seen.calls == 2 == len(cw.calls)


def test_a_crowded_prefix_finds_its_failing_alarms_beyond_the_first_answer():
    # Given 150 alarms under the prefix, page 100, the failing one among those the first answer leaves out
    many = [alarm(f"p-{i:03d}") for i in range(149)] + [alarm("p-zzz", ALARM, START + 9)]
    seen = look(FakeCloudWatch(many), watch(["p-*"]))
    assert seen.crowded == ("p-",) and seen.overflowing == () and seen.calls == 2
    assert "p-zzz" in failure_reason(seen, watch(["p-*"]), "during step 1's gate")


def test_failing_alarms_that_do_not_fit_one_answer_fail_the_look_themselves():
    many = [alarm(f"p-{i:03d}", ALARM, START - 9) for i in range(101)]
    w = watch(["p-*"], start_despite_alarms=True)  # each of the first 100 exempt: began before the start
    seen = look(FakeCloudWatch(many), w)
    assert seen.overflowing == ("p-* in ALARM",)
    assert "more than one answer of alarms p-* in ALARM" in failure_reason(seen, w, "during step 1's gate")


def test_the_largest_policy_costs_a_bounded_number_of_calls_per_look():
    # Given MAX_ALARMS entries, MAX_ALARM_PREFIXES of them prefixes, each crowded, both failing states counted
    entries = [f"n{i}" for i in range(MAX_ALARMS - MAX_ALARM_PREFIXES)] + [f"p{i}-*" for i in range(MAX_ALARM_PREFIXES)]
    crowd = [alarm(f"p{i}-{j:03d}", ALARM) for i in range(MAX_ALARM_PREFIXES) for j in range(101)]
    cw = FakeCloudWatch(crowd)
    look(cw, watch(entries, insufficient_data_fails=True))
    # Then one call for the names, and per prefix one plus one per failing state
    assert len(cw.calls) == 1 + 3 * MAX_ALARM_PREFIXES


# --- the verdict ------------------------------------------------------------------------------------------------------
def test_nothing_failing_is_no_reason():
    seen = AlarmLook((alarm("a"), alarm("b", INSUFFICIENT_DATA, START + 1)))
    assert failure_reason(seen, watch(["a", "b"]), "during step 1's gate") is None


def test_a_reason_names_when_and_the_alarms_at_most_three_each_reason_cut_short():
    bad = tuple(alarm(f"a{i}", ALARM, START + i, reason="x" * 500) for i in range(5))
    reason = failure_reason(AlarmLook(bad), watch(["a*"]), "during step 2's drain")
    assert reason.startswith("CloudWatch alarm(s) during step 2's drain: a0 in ALARM since ")
    assert "a2 in ALARM" in reason and "a3" not in reason and "and 2 more" in reason
    assert "x" * 118 not in reason and len(reason) < 800


# --- Preflight --------------------------------------------------------------------------------------------------------
def test_an_entry_that_watches_nothing_is_a_problem_naming_it():
    seen = AlarmLook((alarm("app-5xx"),), crowded=("big-",))
    assert selector_problems(seen, watch(["app-5xx", "app-5XX", "lat-*", "big-*"])) == [
        "no metric alarm named 'app-5XX' in this account and Region (names are case-sensitive; composite alarms are "
        "not watched)",
        "no metric alarm's name starts with 'lat-' in this account and Region",
        "'big-*' matches more than 100 alarms; name a longer prefix",
    ]


def test_preflight_makes_no_call_for_a_policy_without_alarms():
    cw = FakeCloudWatch([alarm("a", ALARM)])
    assert check_at_start(ports(cw), RolloutPolicy(), START) == [] and cw.calls == []


def test_preflight_refuses_a_misspelt_alarm_as_bad_input():
    with pytest.raises(InvalidInputError, match=r"^policy\.alarms: no metric alarm named 'app-5XX'"):
        check_at_start(ports(FakeCloudWatch([alarm("app-5xx")])), policy(["app-5XX"]), START)


def test_preflight_refuses_an_alarm_already_in_alarm_naming_it_and_the_override():
    cw = FakeCloudWatch([alarm("app-5xx", ALARM, START - 60, "Threshold Crossed"), alarm("app-lat")])
    with pytest.raises(UnsafeConfigurationError) as caught:
        check_at_start(ports(cw), policy(["app-*"]), START)
    assert "app-5xx in ALARM since" in str(caught.value) and "app-lat" not in str(caught.value)
    assert "policy.start_despite_alarms=true" in str(caught.value) and "Nothing was changed" in str(caught.value)


def test_preflight_counts_insufficient_data_only_when_the_policy_says_so():
    cw = FakeCloudWatch([alarm("a", INSUFFICIENT_DATA, START - 60)])
    assert check_at_start(ports(cw), policy(["a"]), START) == []
    with pytest.raises(UnsafeConfigurationError, match="a in INSUFFICIENT_DATA"):
        check_at_start(ports(cw), policy(["a"], insufficient_data_fails=True), START)


def test_the_override_starts_and_says_so_in_the_notes():
    cw = FakeCloudWatch([alarm("a", ALARM, START - 60)])
    notes = check_at_start(ports(cw), policy(["a"], start_despite_alarms=True), START)
    assert notes == ["alarms: started despite a (ALARM); each fails the rollout again once it has left that state and "
                     "comes back"]


def test_a_policy_with_alarms_and_no_cloudwatch_is_refused():
    with pytest.raises(InvalidInputError, match="policy.alarms: this albgate reaches no CloudWatch"):
        check_at_start(ports(None), policy(["a"]), START)


# --- a step's gate and drain ------------------------------------------------------------------------------------------
def test_a_rollback_and_a_policy_without_alarms_make_no_call():
    cw = FakeCloudWatch([alarm("a", ALARM, START + 5)])
    assert during(ports(cw), state(["a"], mode="rollback"), "during step 1's gate") is None
    assert during(ports(cw), state([]), "during step 1's gate") is None
    assert cw.calls == []


def test_a_look_of_a_rollout_fails_on_an_alarm_in_alarm():
    cw = FakeCloudWatch([alarm("a", ALARM, START + 5)])
    assert during(ports(cw), state(["a"]), "during step 1's gate").startswith(
        "CloudWatch alarm(s) during step 1's gate: a in ALARM")


# --- the history since the previous gate ------------------------------------------------------------------------------
def test_only_alarms_not_failing_now_whose_state_changed_since_are_history_candidates():
    seen = AlarmLook((alarm("steady", OK, START - 5), alarm("back", OK, START + 50),
                      alarm("nodata", INSUFFICIENT_DATA, START + 60), alarm("firing", ALARM, START + 70)))
    assert [a.name for a in history_candidates(seen, watch(["x"]), START + 10)] == ["back", "nodata"]


@pytest.mark.parametrize("changes,fields,verdict", [
    (StateChanges((StateChange(START + 50, ALARM, OK), StateChange(START + 30, OK, ALARM))), {},
     "went from OK to ALARM at "),
    (StateChanges((StateChange(START + 50, INSUFFICIENT_DATA, OK), StateChange(START + 30, OK, INSUFFICIENT_DATA))), {},
     None),
    (StateChanges((StateChange(START + 30, OK, INSUFFICIENT_DATA),)), {"insufficient_data_fails": True},
     "went from OK to INSUFFICIENT_DATA at "),
    (StateChanges((StateChange(START + 5, OK, ALARM),)), {}, None),  # before the window
    (StateChanges((StateChange(START + 30, OK, INSUFFICIENT_DATA),), more=True), {}, "changed state more than 1 times"),
    (StateChanges(()), {}, None),
], ids=["alarm-and-back", "no-data-and-back", "no-data-counted", "before-the-window", "history-cut-short", "none"])
def test_what_an_alarms_history_since_the_gate_says(changes, fields, verdict):
    found = went_failing(changes, watch(["a"], **fields), START + 10)
    assert found == verdict if verdict is None else found.startswith(verdict)


def test_start_step_reads_the_history_since_the_previous_gate_and_fails_on_an_alarm_meanwhile():
    # Given step 1's gate passed at START+10; the alarm went to ALARM at +30 and back to OK at +50; now is +90
    history = {"a": StateChanges((StateChange(START + 50, ALARM, OK), StateChange(START + 30, OK, ALARM)))}
    cw = FakeCloudWatch([alarm("a", OK, START + 50), alarm("b", OK, START - 100)], history)
    reason = since_gate(ports(cw), state(["a", "b"], gate_passed_at=START + 10), START + 90)
    # Then it asked the history of that alarm only, for exactly that window, and names when it was in ALARM
    assert cw.calls[-1] == ("DescribeAlarmHistory", "a", START + 10, START + 90)
    assert [c[0] for c in cw.calls].count("DescribeAlarmHistory") == 1
    assert reason.startswith("CloudWatch alarm(s) since step 1 passed its gate (")
    assert "a went from OK to ALARM at" in reason and "OK since" in reason


def test_before_step_one_the_window_starts_at_preflight():
    cw = FakeCloudWatch([alarm("a", OK, START + 20)], {"a": StateChanges((StateChange(START + 20, INSUFFICIENT_DATA,
                                                                                      OK),))})
    assert since_gate(ports(cw), state(["a"]), START + 30) is None
    assert cw.calls[-1] == ("DescribeAlarmHistory", "a", START, START + 30)


def test_an_alarm_failing_at_start_step_fails_it_without_reading_history():
    cw = FakeCloudWatch([alarm("a", ALARM, START + 40)])
    reason = since_gate(ports(cw), state(["a"], gate_passed_at=START + 10), START + 90)
    assert "a in ALARM" in reason and [c[0] for c in cw.calls] == ["DescribeAlarms"]


def test_more_changed_alarms_than_albgate_reads_the_history_of_fail_the_step():
    changed = [alarm(f"a{i:02d}", OK, START + 20 + i) for i in range(MAX_HISTORY_CALLS + 1)]
    cw = FakeCloudWatch(changed)
    reason = since_gate(ports(cw), state(["a*"], gate_passed_at=START + 10), START + 90)
    assert f"{MAX_HISTORY_CALLS + 1} alarms changed state" in reason
    assert "DescribeAlarmHistory" not in [c[0] for c in cw.calls]


def test_a_rollback_reads_nothing_before_its_step():
    cw = FakeCloudWatch([alarm("a", ALARM, START + 40)])
    assert since_gate(ports(cw), state(["a"], mode="rollback", gate_passed_at=START + 10), START + 90) is None
    assert cw.calls == []


# --- the use cases ----------------------------------------------------------------------------------------------------
class NoKubernetes:
    """A KubernetesPort that must not be called: a step failed on an alarm writes nothing, reads nothing."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Kubernetes was called ({name}) after an alarm failed the step")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def test_start_step_after_an_alarm_writes_nothing_and_fails_the_gate_on_the_step_that_baked():
    from lambdas.domain.rollout.step import start_step

    cw = FakeCloudWatch([alarm("a", ALARM, START + 40)])
    s = state(["a"], gate_passed_at=START + 10)
    p = Ports(kube=NoKubernetes(), elb=None, clock=Clock(START + 90), alarms=cw)  # type: ignore[arg-type]
    done = start_step(p, s)
    assert done.gate.status is Verdict.FAILED and "a in ALARM" in done.gate.reason
    assert (done.step, done.next_step, len(done.steps)) == (0, 1, 1)


def test_the_gate_passes_a_failure_start_step_found_on_untouched():
    from lambdas.domain.rollout.gate import check_target_health

    s = state(["a"], gate_passed_at=START + 10)
    s.gate = GateResult(Verdict.FAILED, "CloudWatch alarm(s) since step 1 passed its gate: a went to ALARM")
    p = Ports(kube=NoKubernetes(), elb=None, clock=Clock(START + 91))  # type: ignore[arg-type]
    done = check_target_health(p, s)
    assert done.gate == s.gate and done.wait_seconds == 0 and done.steps[-1].polls == 0


def in_step_one_gate(s: RolloutState) -> RolloutState:
    """The state as Start Step leaves it for step 1's gate."""
    s.step, s.next_step, s.step_deadline = 0, 1, START + 900
    s.steps = [StepRecord(step=1, mode="rollout", target=1, started_at=START + 10)]
    return s


def test_the_gate_and_the_drain_of_a_rollout_fail_on_an_alarm_before_reading_the_cluster():
    from lambdas.domain.rollout.drain import verify_drain
    from lambdas.domain.rollout.gate import check_target_health

    cw = FakeCloudWatch([alarm("a", ALARM, START + 40)])
    p = Ports(kube=NoKubernetes(), elb=None, clock=Clock(START + 50), alarms=cw)  # type: ignore[arg-type]
    gated = check_target_health(p, in_step_one_gate(state(["a"])))
    assert gated.gate.status is Verdict.FAILED and "during step 1's gate" in gated.gate.reason
    drained = verify_drain(p, state(["a"], gate_passed_at=START + 10))
    assert drained.drain.status is Verdict.FAILED and "during step 1's drain" in drained.drain.reason
