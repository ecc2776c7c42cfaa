"""The CloudWatch alarms a rollout watches, word for word: the reasons a failed gate, drain or Start Step carries,
the refusals and notes of Preflight, the times they print, and the exact edges of every window and count.

The rollout started at 2023-11-14T22:13:20Z (epoch 1_700_000_000); every instant below is a few seconds from it.
"""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.errors import InvalidInputError, UnsafeConfigurationError
from lambdas.domain.models import RolloutPolicy, RolloutRequest
from lambdas.domain.ports import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    Alarm,
    Ports,
    StateChange,
    StateChanges,
)
from lambdas.domain.rollout.alarms import (
    MAX_HISTORY_CALLS,
    AlarmLook,
    Watch,
    check_at_start,
    during,
    failure_reason,
    history_candidates,
    look,
    port_of,
    since_gate,
    utc,
    went_failing,
)
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo
from tests.unit.test_alarms import FakeCloudWatch

T0 = 1_700_000_000.0  # when the rollout started: 2023-11-14T22:13:20Z
GATE = "during step 2's gate"


def wired(account: FakeCloudWatch | None) -> Ports:
    return Ports(kube=None, elb=None, clock=None, alarms=account)  # type: ignore[arg-type]


def watching(entries: list[str], **policy: Any) -> Watch:
    w = Watch.of(RolloutPolicy(alarms=entries, **policy), T0)
    assert w is not None
    return w


def rollout(entries: list[str], *, gate_passed_at: float | None = None, **policy: Any) -> RolloutState:
    """A rollout watching ``entries``; with ``gate_passed_at``, step 1's gate passed then."""
    request = RolloutRequest.model_validate({
        "cluster": "prod", "namespace": "shop", "deployment": "web", "container": "web", "image": "r/web:v2",
        "policy": {"alarms": entries, **policy},
    })
    steps = [] if gate_passed_at is None else [
        StepRecord(step=1, mode="rollout", target=1, started_at=T0 + 5, gate_passed_at=gate_passed_at)]
    return RolloutState(
        request=request, execution_name="web-v2", started_at=T0, replicas=2, plan=[1, 2], target_image="r/web:v2",
        previous_image="r/web:v1", previous_revision=3, original_max_surge=1, original_max_unavailable=0,
        target_groups=[TargetGroupInfo(arn="arn:tg/web", service="web", health_check_interval_seconds=5,
                                       healthy_threshold=2, deregistration_delay_seconds=10)],
        steps=steps,
    )


# --- utc ------------------------------------------------------------------------------------------------------------
def test_utc_prints_an_epoch_second_as_an_iso_8601_utc_timestamp():
    assert utc(T0) == "2023-11-14T22:13:20Z"
    assert utc(0) == "1970-01-01T00:00:00Z"


# --- failure_reason (and how it lists alarms) ----------------------------------------------------------------------
def test_a_failing_alarm_is_listed_with_its_state_since_when_and_its_reason():
    seen = AlarmLook((Alarm("web-5xx", ALARM, T0 + 60, "Threshold Crossed: 1 datapoint [7.0] > 5.0"),))
    assert failure_reason(seen, watching(["web-5xx"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: web-5xx in ALARM since 2023-11-14T22:14:20Z "
        "(Threshold Crossed: 1 datapoint [7.0] > 5.0) (policy.alarms)")


def test_a_failing_alarm_without_a_reason_is_listed_without_parentheses():
    seen = AlarmLook((Alarm("web-5xx", ALARM, T0 + 10),))
    assert failure_reason(seen, watching(["web-5xx"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: web-5xx in ALARM since 2023-11-14T22:13:30Z (policy.alarms)")


def test_a_reason_of_exactly_120_characters_is_shown_whole():
    text = "r" * 120
    reason = failure_reason(AlarmLook((Alarm("a", ALARM, T0 + 10, text),)), watching(["a"]), GATE)
    assert reason == ("CloudWatch alarm(s) during step 2's gate: a in ALARM since 2023-11-14T22:13:30Z "
                      f"({text}) (policy.alarms)")


def test_a_reason_of_121_characters_keeps_its_first_117_and_three_dots():
    text = "r" * 117 + "STOP"
    reason = failure_reason(AlarmLook((Alarm("a", ALARM, T0 + 10, text),)), watching(["a"]), GATE)
    assert reason == ("CloudWatch alarm(s) during step 2's gate: a in ALARM since 2023-11-14T22:13:30Z "
                      f"({'r' * 117}...) (policy.alarms)")


def test_two_failing_alarms_are_separated_by_a_semicolon():
    seen = AlarmLook((Alarm("a", ALARM, T0 + 10), Alarm("b", ALARM, T0 + 20)))
    assert failure_reason(seen, watching(["a", "b"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: a in ALARM since 2023-11-14T22:13:30Z; "
        "b in ALARM since 2023-11-14T22:13:40Z (policy.alarms)")


def test_three_failing_alarms_are_all_listed_with_nothing_more_said():
    seen = AlarmLook((Alarm("a", ALARM, T0 + 10), Alarm("b", ALARM, T0 + 20), Alarm("c", ALARM, T0 + 30)))
    assert failure_reason(seen, watching(["a", "b", "c"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: a in ALARM since 2023-11-14T22:13:30Z; "
        "b in ALARM since 2023-11-14T22:13:40Z; c in ALARM since 2023-11-14T22:13:50Z (policy.alarms)")


def test_a_fourth_failing_alarm_is_counted_as_one_more():
    seen = AlarmLook((Alarm("a", ALARM, T0 + 10), Alarm("b", ALARM, T0 + 20), Alarm("c", ALARM, T0 + 30),
                      Alarm("d", ALARM, T0 + 40)))
    assert failure_reason(seen, watching(["a", "b", "c", "d"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: a in ALARM since 2023-11-14T22:13:30Z; "
        "b in ALARM since 2023-11-14T22:13:40Z; c in ALARM since 2023-11-14T22:13:50Z; and 1 more (policy.alarms)")


def test_overflowing_failing_states_alone_are_named_after_the_when():
    seen = AlarmLook((Alarm("p-1", OK, T0 - 60),), crowded=("p-", "q-"), overflowing=("p-* in ALARM", "q-* in ALARM"))
    assert failure_reason(seen, watching(["p-*", "q-*"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: more than one answer of alarms p-* in ALARM, q-* in ALARM "
        "(policy.alarms)")


def test_failing_alarms_and_an_overflowing_state_are_separated_by_a_semicolon():
    seen = AlarmLook((Alarm("p-1", ALARM, T0 + 10),), crowded=("p-",), overflowing=("p-* in ALARM",))
    assert failure_reason(seen, watching(["p-*"]), GATE) == (
        "CloudWatch alarm(s) during step 2's gate: p-1 in ALARM since 2023-11-14T22:13:30Z; "
        "more than one answer of alarms p-* in ALARM (policy.alarms)")


# --- look -----------------------------------------------------------------------------------------------------------
def test_a_crowded_prefix_asks_again_only_under_that_prefix():
    # Given 101 OK alarms under "p-" (one page holds 100) and an unwatched alarm in ALARM elsewhere
    account = FakeCloudWatch([Alarm(f"p-{i:03d}", OK, T0 - 60) for i in range(101)] + [Alarm("other", ALARM, T0 + 10)])
    seen = look(account, watching(["p-*"]))
    # Then the second request is for the prefix's alarms in ALARM, and the unwatched one is not seen
    assert account.calls == [("DescribeAlarms", (), "p-", None), ("DescribeAlarms", (), "p-", ALARM)]
    assert "other" not in [a.name for a in seen.alarms]
    assert (len(seen.alarms), seen.crowded, seen.overflowing, seen.calls) == (100, ("p-",), (), 2)


# --- check_at_start (Preflight) -------------------------------------------------------------------------------------
def test_preflight_refuses_every_entry_that_watches_nothing_in_one_message():
    with pytest.raises(InvalidInputError) as refused:
        check_at_start(wired(FakeCloudWatch([Alarm("web-5xx", OK, T0 - 60)])), RolloutPolicy(alarms=["web-5XX", "db-*"]), T0)
    assert str(refused.value) == (
        "policy.alarms: no metric alarm named 'web-5XX' in this account and Region (names are case-sensitive; "
        "composite alarms are not watched); policy.alarms: no metric alarm's name starts with 'db-' in this account "
        "and Region")


def test_preflight_refuses_an_alarm_already_failing_with_the_whole_explanation():
    account = FakeCloudWatch([Alarm("web-5xx", ALARM, T0 - 60, "Threshold Crossed")])
    with pytest.raises(UnsafeConfigurationError) as refused:
        check_at_start(wired(account), RolloutPolicy(alarms=["web-5xx"]), T0)
    assert str(refused.value) == (
        "CloudWatch alarm(s) already failing before the rollout starts: web-5xx in ALARM since 2023-11-14T22:12:20Z "
        "(Threshold Crossed). Nothing was changed; start again once they are back to OK, or with "
        "policy.start_despite_alarms=true to roll anyway (a fix for what they report): each then counts again once "
        "it has left that state")


def test_starting_despite_two_alarms_in_two_states_notes_both_names_and_both_states():
    account = FakeCloudWatch([Alarm("web-5xx", ALARM, T0 - 60), Alarm("web-latency", INSUFFICIENT_DATA, T0 - 30),
                       Alarm("web-ok", OK, T0 - 30)])
    policy = RolloutPolicy(alarms=["web-*"], insufficient_data_fails=True, start_despite_alarms=True)
    assert check_at_start(wired(account), policy, T0) == [
        "alarms: started despite web-5xx, web-latency (ALARM/INSUFFICIENT_DATA); each fails the rollout again once "
        "it has left that state and comes back"]


# --- port_of --------------------------------------------------------------------------------------------------------
def test_without_an_alarm_port_the_refusal_says_to_remove_policy_alarms():
    with pytest.raises(InvalidInputError) as refused:
        port_of(wired(None))
    assert str(refused.value) == (
        "policy.alarms: this albgate reaches no CloudWatch (no alarm port is wired), so it cannot watch alarms; "
        "remove policy.alarms")


# --- during (a step's gate and drain) -------------------------------------------------------------------------------
def test_a_gate_started_despite_an_alarm_ignores_it_until_it_enters_alarm_again():
    s = rollout(["web-5xx"], start_despite_alarms=True)
    before = FakeCloudWatch([Alarm("web-5xx", ALARM, T0 - 60)])
    assert during(wired(before), s, GATE) is None
    again = FakeCloudWatch([Alarm("web-5xx", ALARM, T0 + 40)])
    assert during(wired(again), s, GATE) == (
        "CloudWatch alarm(s) during step 2's gate: web-5xx in ALARM since 2023-11-14T22:14:00Z (policy.alarms)")


# --- history_candidates ---------------------------------------------------------------------------------------------
def test_an_alarm_whose_state_changed_exactly_at_the_window_start_is_no_history_candidate():
    seen = AlarmLook((Alarm("at", OK, T0 + 10), Alarm("after", OK, T0 + 11)))
    assert [a.name for a in history_candidates(seen, watching(["at", "after"]), T0 + 10)] == ["after"]


# --- went_failing ---------------------------------------------------------------------------------------------------
def test_a_change_into_alarm_exactly_at_the_window_start_does_not_count():
    changes = StateChanges((StateChange(T0 + 10, OK, ALARM),))
    assert went_failing(changes, watching(["a"]), T0 + 10) is None


def test_a_change_from_an_unknown_state_says_so_with_its_time():
    changes = StateChanges((StateChange(T0 + 30, "", ALARM),))
    assert went_failing(changes, watching(["a"]), T0 + 10) == (
        "went from an unknown state to ALARM at 2023-11-14T22:13:50Z")


def test_a_change_into_alarm_names_both_states_and_its_time():
    changes = StateChanges((StateChange(T0 + 50, ALARM, OK), StateChange(T0 + 30, OK, ALARM)))
    assert went_failing(changes, watching(["a"]), T0 + 10) == "went from OK to ALARM at 2023-11-14T22:13:50Z"


# --- since_gate (Start Step) ----------------------------------------------------------------------------------------
def history_of(*names: str) -> dict[str, StateChanges]:
    """Each alarm went to ALARM at T0+30 and back to OK at T0+50."""
    return {n: StateChanges((StateChange(T0 + 50, ALARM, OK), StateChange(T0 + 30, OK, ALARM))) for n in names}


def test_start_step_names_the_previous_gate_and_when_it_passed():
    account = FakeCloudWatch([Alarm("a", OK, T0 + 50)], history_of("a"))
    assert since_gate(wired(account), rollout(["a"], gate_passed_at=T0 + 10), T0 + 90) == (
        "CloudWatch alarm(s) since step 1 passed its gate (2023-11-14T22:13:30Z: its drain, bake and any approval "
        "wait): a went from OK to ALARM at 2023-11-14T22:13:50Z, OK since 2023-11-14T22:14:10Z (policy.alarms)")


def test_start_step_of_step_one_names_preflight_and_when_the_rollout_started():
    account = FakeCloudWatch([Alarm("a", OK, T0 + 50)], history_of("a"))
    assert since_gate(wired(account), rollout(["a"]), T0 + 90) == (
        "CloudWatch alarm(s) since Preflight (2023-11-14T22:13:20Z): a went from OK to ALARM at "
        "2023-11-14T22:13:50Z, OK since 2023-11-14T22:14:10Z (policy.alarms)")


def test_start_step_with_an_alarm_failing_now_names_the_window_in_the_reason():
    account = FakeCloudWatch([Alarm("a", ALARM, T0 + 40)])
    assert since_gate(wired(account), rollout(["a"], gate_passed_at=T0 + 10), T0 + 90) == (
        "CloudWatch alarm(s) since step 1 passed its gate (2023-11-14T22:13:30Z: its drain, bake and any approval "
        "wait): a in ALARM since 2023-11-14T22:14:00Z (policy.alarms)")


def test_start_step_started_despite_an_alarm_still_in_it_passes():
    account = FakeCloudWatch([Alarm("a", ALARM, T0 - 60)])
    s = rollout(["a"], gate_passed_at=T0 + 10, start_despite_alarms=True)
    assert since_gate(wired(account), s, T0 + 90) is None
    assert account.calls == [("DescribeAlarms", ("a",), None, None)]


def test_start_step_reads_the_history_of_exactly_max_history_calls_changed_alarms():
    account = FakeCloudWatch([Alarm(f"a{i:02d}", OK, T0 + 20 + i) for i in range(MAX_HISTORY_CALLS)])
    assert since_gate(wired(account), rollout(["a*"], gate_passed_at=T0 + 10), T0 + 90) is None
    assert [r[1] for r in account.calls if r[0] == "DescribeAlarmHistory"] == [
        f"a{i:02d}" for i in range(MAX_HISTORY_CALLS)]


def test_start_step_with_too_many_changed_alarms_names_every_failing_state():
    account = FakeCloudWatch([Alarm(f"a{i:02d}", OK, T0 + 20 + i) for i in range(MAX_HISTORY_CALLS + 1)])
    s = rollout(["a*"], gate_passed_at=T0 + 10, insufficient_data_fails=True)
    assert since_gate(wired(account), s, T0 + 90) == (
        "CloudWatch alarm(s) since step 1 passed its gate (2023-11-14T22:13:30Z: its drain, bake and any approval "
        "wait): 11 alarms changed state, more than the 10 whose history albgate reads, so it cannot tell whether "
        "one was in ALARM or INSUFFICIENT_DATA (policy.alarms: watch fewer, or steadier, alarms)")


def went_and_came_back(count: int) -> str:
    """Start Step's reason after ``count`` alarms each went to ALARM and back since step 1's gate."""
    account = FakeCloudWatch([Alarm(f"a{i}", OK, T0 + 50) for i in range(count)], history_of(*(f"a{i}" for i in range(count))))
    reason = since_gate(wired(account), rollout(["a*"], gate_passed_at=T0 + 10), T0 + 90)
    assert reason is not None
    return reason


WHEN = ("CloudWatch alarm(s) since step 1 passed its gate (2023-11-14T22:13:30Z: its drain, bake and any approval "
        "wait): ")
HIT = " went from OK to ALARM at 2023-11-14T22:13:50Z, OK since 2023-11-14T22:14:10Z"


def test_start_step_separates_two_alarms_history_by_a_semicolon():
    assert went_and_came_back(2) == WHEN + f"a0{HIT}; a1{HIT} (policy.alarms)"


def test_start_step_lists_three_alarms_history_with_nothing_more_said():
    assert went_and_came_back(3) == WHEN + f"a0{HIT}; a1{HIT}; a2{HIT} (policy.alarms)"


def test_start_step_counts_the_alarms_beyond_three_as_more():
    assert went_and_came_back(4) == WHEN + f"a0{HIT}; a1{HIT}; a2{HIT}; and 1 more (policy.alarms)"
    assert went_and_came_back(5) == WHEN + f"a0{HIT}; a1{HIT}; a2{HIT}; and 2 more (policy.alarms)"
