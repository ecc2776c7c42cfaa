"""Check Target Health and Verify Drain watching the cluster between their looks (lambdas/domain/rollout/gate.py,
``check_target_health(..., watch_seconds=...)``; drain.py, ``verify_drain``): which waits it watches, on what, how long, and when it hands the
wait back to the state machine's Wait state."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError
from dataclasses import dataclass

from lambdas.domain.gate import CONTROLLER_REQUEUE_SECONDS, Verdict
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.ports import HEALTHY, LBC_GATE_PREFIX, PodCondition, Ports
from lambdas.domain.rollout.drain import verify_drain
from lambdas.domain.rollout.gate import check_target_health
from lambdas.domain.state import RolloutState
from tests.unit.test_domain_mutants_gate_drain import ARN, NOW, Budget, Elb, Kube, group, old_pod, pod, rollout, target
from tests.unit.test_drain_carried import BINDING, gated_group, lbc_pod

REGISTERING = "Elb.RegistrationInProgress"


@dataclass
class Clock:
    at: float

    def now(self) -> float:
        return self.at


class WatchedKube(Kube):
    """The gate's fake cluster, watchable: ``changes`` are (time, change) pairs applied to its pods when the clock
    reaches them; a watch advances the clock to the first change due within its seconds (True) or by its seconds
    (False), as a watch answered by the API server at the change or at its timeoutSeconds. ``waits`` records each
    watch: (what, selector or None, seconds, at)."""

    def __init__(self, pods, clock: Clock, changes=()) -> None:
        super().__init__(pods, (), True)
        self.clock, self.changes, self.waits = clock, sorted(changes, key=lambda c: c[0]), []

    def _watch(self, what: str, selector, seconds: int) -> bool:
        self.waits.append((what, selector, seconds, self.clock.at))
        assert seconds >= 1
        due = [c for c in self.changes if c[0] <= self.clock.at + seconds]
        if not due:
            self.clock.at += seconds
            return False
        at, change = due[0]
        self.changes.remove(due[0])
        self.clock.at = max(self.clock.at, at)
        change(self)
        return True

    def wait_for_pods(self, namespace: str, selector: dict[str, str], seconds: int) -> bool:
        return self._watch("pods", selector, seconds)

    def wait_for_bindings(self, namespace: str, seconds: int) -> bool:
        return self._watch("bindings", None, seconds)


def written_healthy(kube: WatchedKube) -> None:
    """The controller writes the new pod's target healthy."""
    gate = LBC_GATE_PREFIX + BINDING
    kube.pods = [dataclasses.replace(p, conditions=tuple(
        PodCondition(gate, "True", "") if c.type == gate else c for c in p.conditions)) for p in kube.pods]


def task(changes=(), *, watch_seconds: int, first_ready_at: float = NOW - 1) -> tuple[RolloutState, WatchedKube]:
    """One Check Target Health task at NOW: a step whose pod the controller wrote registering (its conditions paced
    at the quick looks), ELB would say healthy if asked; ``changes`` come while the task watches."""
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = first_ready_at
    clock = Clock(NOW)
    kube = WatchedKube([lbc_pod("web-new-a", "10.0.1.1", "False", REGISTERING)], clock, changes)
    elb = Elb({ARN: [target("10.0.1.1", HEALTHY)]}, False)
    s = check_target_health(Ports(kube=kube, elb=elb, clock=clock, budget=Budget()), s, watch_seconds=watch_seconds)
    return s, kube


def test_without_watch_seconds_a_task_is_one_look_as_before():
    s, kube = task(watch_seconds=0)
    assert kube.waits == [] and s.steps[-1].polls == 1
    assert s.gate.status is Verdict.WAITING and s.wait_seconds >= 1


def test_a_wait_for_the_controllers_conditions_is_watched_on_the_deployments_pods_and_ends_at_their_change():
    planned = task(watch_seconds=0)[0].wait_seconds
    # Given the controller writing the target healthy half a second after the task's first planned look
    s, kube = task([(NOW + planned + 0.5, written_healthy)], watch_seconds=20)
    # Then the task watched the Deployment's pods for the planned wait, looked (nothing yet), watched again, and
    # looked again at the change: the gate saw the target healthy then, not a wait later
    (first, second) = kube.waits
    assert first == ("pods", {"app": "web"}, planned, NOW)
    assert second[:2] == ("pods", {"app": "web"}) and second[3] == NOW + planned
    assert s.steps[-1].polls == 3 and s.gate.healthy == 1
    assert s.gate.status is Verdict.PASSED or s.steps[-1].out_at == NOW + planned + 0.5


def test_without_a_change_the_task_looks_at_each_planned_time_and_hands_the_wait_back_past_its_seconds():
    budget = 9
    s, kube = task(watch_seconds=budget)
    # Then every watch lasted its planned wait and ended inside the task's seconds, each followed by a look; the wait
    # after the last look would end past them: the Wait state takes it
    assert len(kube.waits) >= 2 and s.steps[-1].polls == len(kube.waits) + 1
    for (_, _, seconds, at), nxt in zip(kube.waits, [*kube.waits[1:], None]):
        assert at + seconds <= NOW + budget
        assert nxt is None or nxt[3] == at + seconds
    assert s.gate.status is Verdict.WAITING and kube.clock.at + s.wait_seconds > NOW + budget


def test_a_wait_for_elb_is_never_watched():
    # Given a step whose conditions are overdue (started long ago): its look asks ELB, which says `initial`
    s = rollout(groups=(gated_group(),))
    s.steps[-1].first_ready_at = NOW - 10 * CONTROLLER_REQUEUE_SECONDS
    clock = Clock(NOW)
    kube = WatchedKube([lbc_pod("web-new-a", "10.0.1.1", "False", REGISTERING)], clock)
    elb = Elb({ARN: [target("10.0.1.1", "initial", REGISTERING)]}, False)
    s = check_target_health(Ports(kube=kube, elb=elb, clock=clock, budget=Budget()), s, watch_seconds=20)
    # Then one look, its wait handed to the Wait state: a change in the cluster cannot make ELB's next answer sooner
    assert elb.health_reads == 1 and kube.waits == [] and s.steps[-1].polls == 1
    assert s.gate.status is Verdict.WAITING and s.wait_seconds >= 1


def test_a_drain_waiting_for_the_scale_down_watches_the_pods_and_looks_at_their_change():
    # Given a step released, its old ReplicaSet not scaled down yet (4 old pods live where 2 may stay), which
    # Kubernetes does 1.5 s into the task
    pods = [old_pod("web-old-a", "10.0.0.1"), old_pod("web-old-b", "10.0.0.2"),
            old_pod("web-old-c", "10.0.0.3"), old_pod("web-old-d", "10.0.0.4")]

    def scaled_down(kube: WatchedKube) -> None:
        kube.pods = [dataclasses.replace(p, terminating=True) for p in kube.pods[:2]] + kube.pods[2:]

    def drain(watch_seconds: int, changes=()) -> tuple[RolloutState, WatchedKube]:
        clock = Clock(NOW)
        kube = WatchedKube(pods, clock, changes)
        elb = Elb({ARN: [target("10.0.0.1", HEALTHY)]}, False)
        s = verify_drain(Ports(kube=kube, elb=elb, clock=clock, budget=Budget()),
                         rollout(watched=("10.0.0.1",), groups=(group(port=8080),)), watch_seconds=watch_seconds)
        return s, kube

    unwatched, _ = drain(0)
    assert unwatched.drain.status is Verdict.WAITING and unwatched.wait_seconds >= 1
    # Then the task watched the Deployment's pods for the look's wait, and looked again at the scale-down: the drain
    # went on at once (its targets deregistered by albgate, handed over), within the one task
    s, kube = drain(20, [(NOW + 1.5, scaled_down)])
    assert kube.waits == [("pods", {"app": "web"}, unwatched.wait_seconds, NOW)]
    # (a wait past the task's seconds is the Wait state's)
    assert drain(unwatched.wait_seconds - 1, [(NOW + 1.5, scaled_down)])[1].waits == []
    assert s.steps[-1].polls == 2 and s.drain.status is Verdict.DRAINING and kube.clock.at == NOW + 1.5
    assert s.drain.old_live == 2


def test_pods_starting_are_watched_only_where_the_look_that_finds_them_up_reads_the_controllers_conditions():
    starting = pod("web-new-a", "10.0.1.1", ready=False)
    with_lbc_gate = dataclasses.replace(starting, readiness_gates=(*starting.readiness_gates,
                                                                   LBC_GATE_PREFIX + BINDING))
    for p, groups, reads, watched in ((with_lbc_gate, (gated_group(),), True, True),
                                      (starting, (gated_group(),), True, False),  # the webhook missed it
                                      (with_lbc_gate, (group(),), True, False),  # no binding known
                                      (with_lbc_gate, (gated_group(),), False, False)):  # the policy asks ELB
        clock = Clock(NOW)
        kube = WatchedKube([p], clock)
        s = rollout(groups=groups)
        s.request = s.request.model_copy(update={"policy": RolloutPolicy(read_controller_conditions=reads)})
        s = check_target_health(Ports(kube=kube, elb=Elb({}, False), clock=clock, budget=Budget()), s,
                                watch_seconds=20)
        assert s.gate.status is Verdict.WAITING and s.gate.starting == 1
        assert bool(kube.waits) is watched, (p.readiness_gates, groups)


def test_a_policy_watches_for_0_to_30_seconds():
    assert RolloutPolicy().watch_seconds == 20 and RolloutPolicy(watch_seconds=0).watch_seconds == 0
    for bad in (-1, 31):
        with pytest.raises(ValidationError, match="watch_seconds"):
            RolloutPolicy(watch_seconds=bad)


def test_a_watch_may_end_exactly_at_the_tasks_seconds_and_no_later():
    planned = task(watch_seconds=0)[0].wait_seconds
    _, kube = task(watch_seconds=planned)
    assert [w[2] for w in kube.waits][:1] == [planned]
    _, kube = task(watch_seconds=planned - 1)
    assert kube.waits == []
