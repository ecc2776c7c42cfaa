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
