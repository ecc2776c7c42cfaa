"""The largest state a rollout can carry, checked against what its docstring promises, part by part.

Given a request with two target groups, four replicas and the plan [1, 4], when ``largest_state`` builds the
state Preflight measures against Step Functions' 256 KB, then every list is at its longest (the old pods and
the surge, every group's deregistered targets in the rollback's record), every string at its longest (IPv6
addresses, 63-character pod names, the longest reasons, a full-length cause three times) and every timestamp
and counter set, so no real state of that rollout can be larger.
"""

from __future__ import annotations

import pytest

from lambdas.domain.limits import CAUSE_MAX_CHARS, ERROR_MAX_CHARS, payload_bytes
from lambdas.domain.models import RolloutRequest
from lambdas.domain.state import (
    IP_MAX_CHARS, MAX_TEXT_CHARS, POD_NAME_MAX_CHARS, REASON_MAX_CHARS, RolloutState, StepRecord, TargetGroupInfo,
    cap_text, largest_state, largest_state_bytes,
)

TIMESTAMP = 1.0e10 / 3
REQUEST = RolloutRequest(cluster="prod", namespace="shop", deployment="web", container="web", image="web:1")
GROUPS = [TargetGroupInfo(arn=f"arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/g{i}/0", service="web",
                          health_check_interval_seconds=5, healthy_threshold=2, deregistration_delay_seconds=30)
          for i in range(2)]
IP, POD, REASON = "f" * IP_MAX_CHARS, "p" * POD_NAME_MAX_CHARS, "r" * REASON_MAX_CHARS
SURGED = 4 + 3  # the replicas and the largest batch of the plan [1, 4]


@pytest.fixture
def state() -> dict:
    return largest_state(REQUEST, replicas=4, plan=[1, 4], target_groups=GROUPS, previous_image="web:0")


def test_the_old_pods_and_the_surge_are_all_watched_at_their_longest_address(state):
    assert state["watched_ips"] == [IP] * SURGED


def test_the_rollbacks_record_keeps_every_groups_targets_and_the_rollout_records_keep_none(state):
    *rollout, rollback = state["steps"]
    assert [(r["step"], r["mode"], r["target"]) for r in state["steps"]] == [
        (1, "rollout", 1), (2, "rollout", 4), (1, "rollback", 4)]
    assert rollback["deregistered"] == [f"#{i}|{IP}" for i in range(2)] * SURGED
    assert rollback["unregistered_since"] == {"#0": TIMESTAMP, "#1": TIMESTAMP}
    assert all(r["deregistered"] == [] and r["unregistered_since"] == {} for r in rollout)


def test_every_record_has_every_timestamp_and_counter_set(state):
    for record in state["steps"]:
        assert {k: record[k] for k in ("started_at", "gate_passed_at", "drained_at", "observed_at",
                                       "registering_since")} == dict.fromkeys(
            ("started_at", "gate_passed_at", "drained_at", "observed_at", "registering_since"), TIMESTAMP)
        assert (record["polls"], record["registered_total"], record["deregistered_total"]) == (10**6, 10**6,
                                                                                                2 * SURGED)


def test_the_gate_and_drain_carry_the_longest_reasons_and_every_pod_released(state):
    gate, drain = state["gate"], state["drain"]
    assert gate["status"] == "FAILED" and gate["reason"] == REASON and drain["reason"] == REASON
    assert gate["release"] == [POD] * 4
    assert [g["target_group"] for g in gate["groups"]] == ["t" * 32] * 2
    assert drain["step"] == 2 and drain["old_live"] == 4


def test_the_groups_carry_the_longest_port_and_the_image_a_digest(state):
    assert [g["target_port"] for g in state["target_groups"]] == [65535, 65535]
    assert state["target_image"] == "web:1@sha256:" + "0" * 64 and state["requested_image"] == "web:1"


def test_the_failure_is_written_three_times_at_full_length(state):
    cause, error = "c" * CAUSE_MAX_CHARS, "e" * ERROR_MAX_CHARS
    summary = f"rollback failed: {error} ({cause}); it started because: {'s' * MAX_TEXT_CHARS}"
    assert state["failure"] == {"Error": error, "Cause": cause}
    assert state["rollback_failure"] == {"summary": summary} and state["failure_summary"] == summary


def test_a_pinned_image_is_kept_as_it_is(state):
    pinned = REQUEST.model_copy(update={"image": "web@sha256:" + "a" * 64})
    data = largest_state(pinned, replicas=4, plan=[1, 4], target_groups=GROUPS, previous_image="web:0")
    assert data["target_image"] == "web@sha256:" + "a" * 64


def test_without_a_plan_the_replicas_are_the_batch():
    data = largest_state(REQUEST, replicas=4, plan=[], target_groups=GROUPS, previous_image="web:0")
    assert data["watched_ips"] == [IP] * 8


def test_the_measured_size_is_the_states_json_size(state):
    size = largest_state_bytes(REQUEST, replicas=4, plan=[1, 4], target_groups=GROUPS, previous_image="web:0")
    assert size == payload_bytes(state)


def test_a_reason_of_exactly_the_limit_is_kept_whole():
    assert cap_text("x" * 40, 40) == "x" * 40 and len(cap_text("x" * 41, 40)) <= 40


def test_the_live_record_of_a_state_without_steps_is_none():
    state = RolloutState(request=REQUEST, execution_name="e", started_at=0, replicas=1, plan=[1], target_image="a",
                         previous_image="b", previous_revision=1, original_max_surge=1, original_max_unavailable=0,
                         target_groups=GROUPS)
    assert state.live_records() == set()
    state.steps.append(StepRecord(step=1, mode="rollout", target=1, started_at=0))
    assert 0 in state.live_records()


def test_every_scalar_is_at_its_longest_and_every_optional_field_set(state):
    # Given the largest state / Then the counters have their most digits, the optional fields are set, and the
    # execution is where its longest moment is: after the last rollout step, rolling back, template changed
    assert (state["mode"], state["template_changed"], state["outcome"]) == ("rollback", True, "in_progress")
    assert (state["next_step"], state["step"], state["pending_drain_step"]) == (2, 1, 2)
    assert (state["wait_seconds"], state["bake_seconds"], state["throttles"]) == (10**6, 10**6, 10**6)
    assert (state["describe_target_health_calls"], state["previous_revision"]) == (10**9, 10**9)
    assert state["execution_name"] == "n" * 80
    assert (state["original_max_surge"], state["original_max_unavailable"]) == ("100%", "100%")
    assert [state[k] for k in ("started_at", "step_deadline", "drain_deadline", "describe_slot_at", "finished_at")] == [
        TIMESTAMP] * 5
    gate, drain = state["gate"], state["drain"]
    assert [gate[k] for k in ("needed", "healthy", "initial", "unhealthy", "unregistered", "starting")] == [4] * 6
    assert [drain[k] for k in ("old_live", "expected_old", "routable", "draining")] == [4] * 4
    assert all(g["service"] == "s" * 63 and [g[k] for k in ("healthy", "initial", "unhealthy", "draining",
                                                            "unregistered")] == [4] * 5 for g in gate["groups"])


def test_the_hardening_findings_and_notes_given_are_carried():
    data = largest_state(REQUEST, replicas=4, plan=[1, 4], target_groups=GROUPS, previous_image="web:0",
                         hardening={"max_unavailable": 0}, findings=["f1"], notes=["n1"])
    assert (data["hardening"], data["findings"], data["notes"]) == ({"max_unavailable": 0}, ["f1"], ["n1"])
