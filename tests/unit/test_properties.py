"""Properties of the gate decision and the step plan, whatever the targets' states and the policy (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lambdas.domain.gate import Verdict, evaluate_gate
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.plan import batch_sizes, step_targets
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, HEALTHY, INITIAL, UNHEALTHY, UNUSED, Pod, PodCondition, TargetHealth

STATES = [HEALTHY, INITIAL, UNHEALTHY, UNUSED, DRAINING, None]  # None: absent from DescribeTargetHealth
GROUPS = ["arn:tg/a", "arn:tg/b", "arn:tg/c"]


def make_pod(i: int, ready: bool) -> Pod:
    return Pod(
        namespace="ns",
        name=f"p{i}",
        uid=f"u{i}",
        ip=f"10.0.0.{i}" if ready else None,
        labels={},
        phase="Running",
        readiness_gates=(ALBGATE_GATE,),
        conditions=(PodCondition("ContainersReady", "True" if ready else "False"),),
        terminating=False,
        restart_count=0,
        created_at=float(i),
    )


@st.composite
def worlds(draw):
    n = draw(st.integers(min_value=0, max_value=8))
    groups = GROUPS[: draw(st.integers(min_value=1, max_value=3))]
    pods = [make_pod(i + 1, draw(st.booleans())) for i in range(n)]
    health = {}
    for arn in groups:
        targets = []
        for p in pods:
            state = draw(st.sampled_from(STATES))
            if p.ip and state is not None:
                targets.append(TargetHealth(p.ip, 80, state))
        health[arn] = targets
    polled = draw(st.booleans())
    needed = draw(st.integers(min_value=0, max_value=8))
    now = draw(st.floats(min_value=0, max_value=2000))
    return pods, needed, (health if polled else None), now


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_the_gate_never_releases_a_pod_that_is_not_healthy_everywhere(world):
    pods, needed, health, now = world
    result = evaluate_gate(candidates=pods, needed=needed, health=health, now=now, deadline=1000)
    by_name = {p.name: p for p in pods}
    for name in result.release:
        ip = by_name[name].ip
        assert health is not None
        for targets in health.values():
            assert any(t.target_id == ip and t.state == HEALTHY for t in targets)
    if result.status is Verdict.PASSED and needed > 0:
        assert len(result.release) == needed
    else:
        assert result.release == ()


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_an_unhealthy_new_target_never_passes(world):
    pods, needed, health, now = world
    result = evaluate_gate(candidates=pods, needed=needed, health=health, now=now, deadline=1000)
    ready_ips = {p.ip for p in pods if p.ip}
    any_unhealthy = health is not None and any(
        t.state == UNHEALTHY and t.target_id in ready_ips for ts in health.values() for t in ts
    )
    if any_unhealthy and needed > 0:
        assert result.status is Verdict.FAILED


steps = st.lists(st.integers(min_value=1, max_value=100), min_size=0, max_size=5).map(
    lambda xs: [f"{p}%" for p in sorted(set(xs)) if p < 100] + ["100%"]
)


@settings(max_examples=300, deadline=None)
@given(replicas=st.integers(min_value=1, max_value=500), pct_steps=steps, counts=st.lists(st.integers(1, 50), max_size=3))
def test_the_plan_grows_strictly_to_all_replicas(replicas, pct_steps, counts):
    policy = RolloutPolicy(steps=sorted(set(counts)) + pct_steps)
    plan = step_targets(replicas, policy)
    assert plan[-1] == replicas
    assert all(b > a for a, b in zip(plan, plan[1:]))
    assert all(b >= 1 for b in batch_sizes(plan))
    # every step is a real step: no more steps than asked for, never more than replicas
    assert len(plan) <= min(replicas, len(policy.steps) + 1)


# ---------------------------------------------------------------------------------------------------------
# The drain: it passes only when the released targets have left, and a step hands it over only once they
# are all out of the pool (draining, gone, or deregistered by albgate)
# ---------------------------------------------------------------------------------------------------------
from lambdas.domain.gate import evaluate_drain  # noqa: E402
from lambdas.domain.models import RolloutRequest  # noqa: E402
from lambdas.domain.rollout.drain import _may_hand_over  # noqa: E402
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo  # noqa: E402


@st.composite
def drains(draw):
    n = draw(st.integers(min_value=1, max_value=6))
    watched = [f"10.0.1.{i}" for i in range(n)]
    live_ips = draw(st.lists(st.sampled_from(watched), unique=True))
    old_pods = [make_pod(100 + i, True) for i in range(len(live_ips))]
    old_pods = [Pod(**{**p.__dict__, "ip": ip}) for p, ip in zip(old_pods, live_ips)]
    groups = GROUPS[: draw(st.integers(min_value=1, max_value=3))]
    health = {arn: [TargetHealth(ip, 80, s) for ip in watched if (s := draw(st.sampled_from(STATES))) is not None]
              for arn in groups}
    deregistered = [f"{arn}|{ip}" for arn in groups for ip in watched if draw(st.booleans())]
    return old_pods, watched, health, deregistered, draw(st.integers(min_value=0, max_value=6))


def _state(more_steps: bool, mode: str) -> RolloutState:
    request = RolloutRequest.model_validate(
        {"cluster": "c", "namespace": "ns", "deployment": "d", "container": "app", "image": "r/app:v2"}
    )
    return RolloutState(
        request=request, execution_name="e", mode=mode, started_at=0, replicas=6, plan=[1, 6], target_image="i",
        previous_image="j", previous_revision=1, original_max_surge=1, original_max_unavailable=0,
        target_groups=[TargetGroupInfo(arn=a, service="s", health_check_interval_seconds=5, healthy_threshold=2,
                                       deregistration_delay_seconds=30) for a in GROUPS],
        more_steps=more_steps,
    )  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(drains(), st.booleans(), st.sampled_from(["rollout", "rollback"]))
def test_a_drain_passes_or_is_handed_over_only_when_nothing_released_can_still_get_requests(drain, more, mode):
    old_pods, watched, health, deregistered, expected_old = drain
    result = evaluate_drain(old_pods=old_pods, expected_old=expected_old, watched_ips=watched, health=health,
                            now=0, deadline=100)  # fmt: skip
    live = {p.ip for p in old_pods}
    leaving = [ip for ip in watched if ip not in live]
    if result.status is Verdict.PASSED:
        # every released target is out of every group's pool: draining, unused or gone
        assert all(t.state in (DRAINING, UNUSED) for ts in health.values() for t in ts if t.target_id in leaving)
        assert len(old_pods) <= expected_old
    record = StepRecord(step=1, mode=mode, target=1, started_at=0, deregistered=deregistered)
    if result.status is Verdict.WAITING and _may_hand_over(_state(more, mode), result, health, record):
        # only between two rollout steps, after the scale-down, and with nothing released still in the pool
        assert more and mode == "rollout" and len(old_pods) <= expected_old
        for arn, ts in health.items():
            for t in ts:
                if t.target_id in leaving:
                    assert t.state in (DRAINING, UNUSED) or f"{arn}|{t.target_id}" in deregistered
