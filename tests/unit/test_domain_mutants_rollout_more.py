"""The rollout's building blocks on small hand-made clusters and load balancers, value by value.

Given fakes of Kubernetes, ELB, the clock, the Describe* budget and the registry that answer as told and record
what they were asked, when a rollout's pieces run (when to look again, which pods a step is about, what albgate
reads and writes on the target groups, Start Step's write, Preflight's refusals and its first state), then each
answer, each call and each sentence a person reads is exactly the one expected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from lambdas.domain import limits, poll
from lambdas.domain.errors import ConflictError, InvalidInputError, NotFoundError, UnsafeConfigurationError
from lambdas.domain.gate import REGISTRATION_GRACE_SECONDS, DrainResult, GroupCounts, Verdict
from lambdas.domain.models import RolloutPolicy, RolloutRequest
from lambdas.domain.plan import step_targets
from lambdas.domain.ports import (
    ALBGATE_GATE,
    Container,
    Deployment,
    DeploymentPatch,
    Namespace,
    Pod,
    PodCondition,
    PodTemplate,
    Ports,
    ReplicaSet,
    Service,
    ServicePort,
    TargetGroup,
    TargetGroupSettings,
    TargetGroupBinding,
    TargetHealth,
)
from lambdas.domain.rollout.observe import STALE_SLOT_SECONDS, Pace, booked_wait, next_look, poll_key
from lambdas.domain.rollout.pods import POD_TEMPLATE_HASH, ROLLOUT_ANNOTATION, is_released, split_pods
from lambdas.domain.rollout.preflight import (
    PreflightWaiting,
    assess,
    check_limits,
    check_request_against,
    pin_image,
    preflight,
)
from lambdas.domain.rollout.step import start_step
from lambdas.domain.rollout.targets import (
    deregister_released,
    describe_health,
    group_summary,
    learn_target_ports,
    register_missing,
    target_group_bindings,
)
from lambdas.domain.state import RolloutState, StepRecord, TargetGroupInfo, largest_state_bytes

NS, NAME = "shop", "web"
OLD = "registry.example.com/web@sha256:" + "a" * 64
NEW = "registry.example.com/web@sha256:" + "b" * 64
ARN_A = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-a/0123456789abcdef"
ARN_B = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-b/fedcba9876543210"
ARN_C = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-c/00112233445566ff"
NOW = 1_000.0
TAIL = ". Someone else (a person, another tool, another rollout) wrote it, and albgate did not write over it"


# ---------------------------------------------------------------------------------------------------------
# Fakes: they answer as told and record what they were asked
# ---------------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


class Budget:
    """Answers each ask with the next of ``waits`` (0 once they run out); records (tokens, reserve)."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)
        self.asks: list[tuple[float, bool]] = []

    def acquire(self, tokens: float, *, reserve: bool) -> float:
        self.asks.append((tokens, reserve))
        return self.waits.pop(0) if self.waits else 0.0


class Registry:
    def __init__(self, digest_of: dict[str, str]) -> None:
        self.digest_of = digest_of

    def resolve_digest(self, image: str) -> str | None:
        return self.digest_of.get(image)


@dataclass
class Kube:
    deployment: Deployment | None = None
    replica_sets: list[ReplicaSet] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    bindings: list[TargetGroupBinding] = field(default_factory=list)
    conflicts: int = 0  # how many writes answer 409 before one lands
    undone_version: str = "rv-8"  # the resourceVersion a rollback (undo) leaves
    calls: list[tuple] = field(default_factory=list)

    def get_namespace(self, name: str) -> Namespace:
        return Namespace(name, {})

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        self.calls.append(("get_deployment", namespace, name))
        return self.deployment

    def list_replica_sets(self, namespace: str, deployment: str) -> list[ReplicaSet]:
        self.calls.append(("list_replica_sets", namespace, deployment))
        return list(self.replica_sets)

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        self.calls.append(("list_pods", namespace, selector))
        return list(self.pods)

    def list_services(self, namespace: str) -> list[Service]:
        return list(self.services)

    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]:
        return list(self.bindings)

    def rollback_deployment(self, namespace: str, name: str, to_revision: int, *,
                            expected_resource_version: str | None = None) -> Deployment:
        self.calls.append(("rollback_deployment", namespace, name, to_revision, expected_resource_version))
        return dataclasses.replace(self.deployment, resource_version=self.undone_version)

    def patch_deployment(self, namespace: str, name: str, patch: DeploymentPatch) -> Deployment:
        self.calls.append(("patch_deployment", namespace, name, patch))
        if self.conflicts:
            self.conflicts -= 1
            raise ConflictError("the object has been modified")
        return self.deployment

    def writes(self) -> list[tuple]:
        return [c for c in self.calls if c[0] in ("patch_deployment", "rollback_deployment")]


@dataclass
class Elb:
    groups: dict[str, TargetGroup] = field(default_factory=dict)
    health: dict[str, list[TargetHealth]] = field(default_factory=dict)
    registered: list[tuple[str, list[tuple[str, int]]]] = field(default_factory=list)
    deregistered: list[tuple[str, list[tuple[str, int]]]] = field(default_factory=list)

    def describe_target_group(self, arn: str) -> TargetGroup:
        return self.groups[arn]

    def describe_target_group_settings(self, arns: list[str]) -> list[TargetGroupSettings]:
        return [self.groups[arn].settings() for arn in arns]

    def describe_deregistration_delay(self, arn: str) -> int:
        return self.groups[arn].deregistration_delay_seconds

    def describe_target_health(self, arn: str) -> list[TargetHealth]:
        return list(self.health.get(arn, []))

    def register_targets(self, arn: str, targets: list[tuple[str, int]]) -> None:
        self.registered.append((arn, list(targets)))

    def deregister_targets(self, arn: str, targets: list[tuple[str, int]]) -> None:
        self.deregistered.append((arn, list(targets)))


def ports(kube: Kube | None = None, elb: Elb | None = None, *, budget: Budget | None = None,
          images: Registry | None = None, now: float = NOW) -> Ports:
    return Ports(kube=kube or Kube(), elb=elb or Elb(), clock=Clock(now), budget=budget or Budget(), images=images)


# ---------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------
def group(arn: str = ARN_A, *, delay: int = 30, port: int | None = None, service: str = NAME) -> TargetGroupInfo:
    return TargetGroupInfo(arn=arn, service=service, health_check_interval_seconds=5, healthy_threshold=2,
                           deregistration_delay_seconds=delay, target_port=port)


def request(kind: str = "rollout", image: str | None = NEW, **policy) -> RolloutRequest:
    return RolloutRequest(cluster="prod", namespace=NS, deployment=NAME, container="web", kind=kind, image=image,
                          policy=RolloutPolicy(**policy))


def rollout_state(mode: str = "rollout", next_step: int = 0, plan: tuple[int, ...] = (1, 3), kind: str = "rollout",
                  groups: list[TargetGroupInfo] | None = None, **kw) -> RolloutState:
    req = request(kind, NEW if kind == "rollout" else None)
    target = (NEW if kind == "rollout" else OLD) if mode == "rollout" else OLD
    return RolloutState(request=req, execution_name="exec-1", mode=mode, started_at=0, replicas=3, plan=list(plan),
                        target_image=target, previous_image=OLD, previous_revision=4, original_max_surge=1,
                        original_max_unavailable=0, next_step=next_step, target_groups=groups or [group()], **kw)


def deployment(image: str = OLD, *, hold: str = "", revision: int = 4, replicas: int = 3,
               containers: tuple[Container, ...] | None = None, unavailable: int | str = 0,
               grace: int = 60) -> Deployment:
    return Deployment(namespace=NS, name=NAME, uid="u-1", replicas=replicas, selector={"app": NAME},
                      template=PodTemplate(containers=containers or (Container("web", image, 30),),
                                           labels={"app": NAME}, termination_grace_period_seconds=grace),
                      max_surge=1, max_unavailable=unavailable, revision=revision,
                      annotations={ROLLOUT_ANNOTATION: hold} if hold else {}, resource_version="rv-7")


def replica_set(name: str, revision: int, image: str = NEW, *, gated: bool = True, marker: str | None = None,
                ready: int = 0, replicas: int = 0, container: str = "web") -> ReplicaSet:
    template = PodTemplate(containers=(Container(container, image),), readiness_gates=(ALBGATE_GATE,) if gated else (),
                           annotations={"albgate.io/restarted-by": marker} if marker else {})
    return ReplicaSet(namespace=NS, name=name, revision=revision, pod_template_hash=name.rsplit("-", 1)[-1],
                      replicas=replicas, ready_replicas=ready, available_replicas=ready, template=template,
                      created_at=0.0)


def pod(name: str, ip: str | None = None, *, hash_: str = "new", gated: bool = True, gate: str | None = None,
        ready: bool = False, containers_ready: bool = True, terminating: bool = False) -> Pod:
    conditions = [PodCondition("Ready", "True" if ready else "False"),
                  PodCondition("ContainersReady", "True" if containers_ready else "False")]
    if gate is not None:
        conditions.append(PodCondition(ALBGATE_GATE, gate))
    return Pod(namespace=NS, name=name, uid=name, ip=ip, labels={"app": NAME, POD_TEMPLATE_HASH: hash_},
               phase="Running", readiness_gates=(ALBGATE_GATE,) if gated else (), conditions=tuple(conditions),
               terminating=terminating, restart_count=0, created_at=0.0)


def target(ip: str, port: int = 8080, state: str = "healthy") -> TargetHealth:
    return TargetHealth(target_id=ip, port=port, state=state)


# ---------------------------------------------------------------------------------------------------------
# observe.booked_wait: a turn booked in albgate's share of the Describe* bucket
# ---------------------------------------------------------------------------------------------------------
SLOT = 500.0


def test_coming_back_exactly_at_the_stale_limit_still_uses_the_booked_turn():
    budget = Budget(4.0)
    assert booked_wait(ports(budget=budget), SLOT, 2, SLOT + STALE_SLOT_SECONDS) == (0, None)
    assert budget.asks == []


def test_coming_back_past_the_stale_limit_books_again():
    budget = Budget(4.2)
    now = SLOT + STALE_SLOT_SECONDS + 0.5
    assert booked_wait(ports(budget=budget), SLOT, 2, now) == (5, now + 4.2)
    assert budget.asks == [(2, True)]


def test_coming_back_half_a_second_early_counts_as_on_time():
    assert booked_wait(ports(), SLOT, 2, SLOT - 0.5) == (0, None)


def test_coming_back_one_second_early_waits_the_shortest_look_wait():
    budget = Budget()
    assert booked_wait(ports(budget=budget), SLOT, 2, SLOT - 1.0) == (poll.POD_START_POLL_SECONDS, SLOT)
    assert budget.asks == []


def test_coming_back_long_before_the_turn_waits_the_rest_in_whole_seconds():
    assert booked_wait(ports(), SLOT, 2, SLOT - 7.2) == (8, SLOT)


# ---------------------------------------------------------------------------------------------------------
# observe.next_look and poll_key
# ---------------------------------------------------------------------------------------------------------
def observed(polls: int | None = 3, registering_since: float | None = None) -> RolloutState:
    steps = [] if polls is None else [StepRecord(step=1, mode="rollout", target=1, started_at=0, polls=polls,
                                                 registering_since=registering_since)]
    return rollout_state(step=0, steps=steps, throttles=0, groups=[group(delay=30)])


def test_the_look_key_names_the_execution_mode_step_wait_and_poll_count():
    assert poll_key(observed(polls=3), "pods") == "exec-1/rollout/0/pods/3"


def test_the_look_key_before_any_step_counts_zero_polls():
    assert poll_key(observed(polls=None), "rs") == "exec-1/rollout/0/rs/0"


def test_a_registering_look_with_no_start_recorded_waits_the_interval():
    assert next_look(observed(registering_since=None), Pace("registering"), now=NOW) == 5


# ---------------------------------------------------------------------------------------------------------
# pods.is_released and split_pods
# ---------------------------------------------------------------------------------------------------------
def test_a_gated_pod_is_released_once_albgates_condition_is_true_even_before_ready():
    assert is_released(pod("p", gate="True", ready=False)) is True


def test_a_gated_pod_ready_without_albgates_condition_is_not_released():
    assert is_released(pod("p", gate="False", ready=True)) is False


def test_an_ungated_pod_is_released_once_ready():
    assert is_released(pod("p", gated=False, ready=True)) is True
    assert is_released(pod("p", gated=False, ready=False)) is False


def split(state: RolloutState, replica_sets: list[ReplicaSet], pods: list[Pod]):
    kube = Kube(deployment=deployment(), replica_sets=replica_sets, pods=pods)
    target, mine, others = split_pods(ports(kube), state)
    return (target.name if target else None), [p.name for p in mine], [p.name for p in others]


def test_a_rollouts_replica_set_is_the_newest_gated_one_running_the_target_image():
    # Given, listed first, newer ones on another image, without the gate, and without the container at all
    sets = [replica_set("web-other", 9, "other:1"), replica_set("web-bare", 8, NEW, gated=False),
            replica_set("web-side", 10, NEW, container="proxy"), replica_set("web-new", 5, NEW)]
    pods = [pod("a", hash_="new"), pod("b", hash_="old")]
    assert split(rollout_state(), sets, pods) == ("web-new", ["a"], ["b"])


def test_a_rollouts_replica_set_is_found_though_an_earlier_restart_marked_its_template():
    sets = [replica_set("web-new", 5, NEW, marker="exec-0")]
    assert split(rollout_state(), sets, [])[0] == "web-new"


def test_a_rollback_takes_the_previous_replica_set_without_the_gate():
    sets = [replica_set("web-new", 5, NEW), replica_set("web-old", 4, OLD, gated=False)]
    state = rollout_state(mode="rollback", plan=(3,))
    assert split(state, sets, [pod("a", hash_="old"), pod("b", hash_="new")]) == ("web-old", ["a"], ["b"])


def test_a_restart_waits_for_the_replica_set_it_marked_itself():
    # Given only the replica set that served before the restart, on the same image, behind albgate's gate
    sets = [replica_set("web-old", 4, OLD)]
    state = rollout_state(kind="restart")
    assert split(state, sets, [pod("a", hash_="old")]) == (None, [], ["a"])


def test_a_restarts_replica_set_is_the_one_carrying_this_executions_marker():
    sets = [replica_set("web-else", 6, OLD, marker="exec-0"), replica_set("web-mine", 5, OLD, marker="exec-1"),
            replica_set("web-old", 4, OLD)]
    state = rollout_state(kind="restart")
    assert split(state, sets, [pod("a", hash_="mine"), pod("b", hash_="else")]) == ("web-mine", ["a"], ["b"])


def test_a_restarts_rollback_follows_the_replica_set_the_undo_brought_back_without_a_marker():
    # Given the undo renumbered the replica set that served before the restart (revision 6)
    sets = [replica_set("web-mine", 5, OLD, marker="exec-1"), replica_set("web-old", 6, OLD, gated=False)]
    state = rollout_state(mode="rollback", kind="restart", plan=(3,))
    assert split(state, sets, [])[0] == "web-old"


# ---------------------------------------------------------------------------------------------------------
# targets: target_group_bindings, describe_health, group_summary
# ---------------------------------------------------------------------------------------------------------
def test_services_without_a_binding_are_named_in_sorted_order():
    services = [Service(NS, "web-b", {"app": NAME}, (ServicePort(80, 8080),)),
                Service(NS, "web-a", {"app": NAME}, (ServicePort(80, 8080),))]
    kube = Kube(services=services)
    with pytest.raises(NotFoundError) as caught:
        target_group_bindings(ports(kube), deployment())
    assert str(caught.value) == (
        "no TargetGroupBinding in shop for Service(s) web-a, web-b: the Load Balancer Controller creates one per "
        "backend of an Ingress with ingressClassName alb; is the controller running and the Ingress applied?")


def test_describing_health_counts_every_call_and_keeps_the_one_port_its_targets_show():
    groups = [group(ARN_A), group(ARN_B, port=7000), group(ARN_C)]
    state = rollout_state(groups=groups, describe_target_health_calls=5)
    elb = Elb(health={ARN_A: [target("10.0.0.1", 8080), target("10.0.0.2", 8080)], ARN_B: [target("10.0.0.3", 7000)],
                      ARN_C: []})
    health = describe_health(ports(elb=elb), state, NOW)
    assert health == {ARN_A: [target("10.0.0.1", 8080), target("10.0.0.2", 8080)], ARN_B: [target("10.0.0.3", 7000)],
                      ARN_C: []}
    assert state.describe_target_health_calls == 8
    assert [(g.target_port, g.ports_mixed) for g in state.target_groups] == [(8080, False), (7000, False), (None, False)]


@pytest.mark.parametrize("known,shown", [(None, (8080, 9090)), (7000, (8080,)), (7000, (7000, 8080))],
                         ids=["two-ports-at-once", "another-port-than-known", "the-known-and-another"])
def test_targets_on_several_ports_leave_a_group_without_a_port_for_good(known, shown):
    # Given a group whose targets ELB shows on several ports (or on another than the one known): old and new pods
    # on different ports, say a named targetPort whose container port changed
    state = rollout_state(groups=[group(ARN_A, port=known)])
    elb = Elb(health={ARN_A: [target(f"10.0.0.{i}", port) for i, port in enumerate(shown)]})
    describe_health(ports(elb=elb), state, NOW)
    # Then no port names a target unseen in it any more, even once a single port shows again
    assert (state.target_groups[0].target_port, state.target_groups[0].ports_mixed) == (None, True)
    describe_health(ports(elb=Elb(health={ARN_A: [target("10.0.0.9", 8080)]})), state, NOW)
    assert (state.target_groups[0].target_port, state.target_groups[0].ports_mixed) == (None, True)


def test_a_group_without_targets_learns_no_port():
    state = rollout_state(groups=[group(ARN_A)])
    assert describe_health(ports(elb=Elb()), state, NOW) == {ARN_A: []}
    assert state.target_groups[0].target_port is None


def test_the_group_summary_counts_each_started_pod_once_per_group():
    candidates = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2"), pod("c", "10.0.0.3"),
                  pod("d", "10.0.0.4", containers_ready=False)]
    health = {ARN_A: [target("10.0.0.1"), target("10.0.0.2"), target("10.0.0.3", state="initial")]}
    summary = group_summary([group(ARN_A), group(ARN_B, service="web-b")], candidates, health)
    assert summary == (GroupCounts(target_group="web-a", service=NAME, healthy=2, initial=1),
                       GroupCounts(target_group="web-b", service="web-b", unregistered=3))


# ---------------------------------------------------------------------------------------------------------
# targets.deregister_released
# ---------------------------------------------------------------------------------------------------------
def test_a_throttled_look_deregisters_blind_on_the_known_ports_once_per_target():
    groups = [group(ARN_A, port=8080), group(ARN_B)]
    state = rollout_state(groups=groups, drain=DrainResult(Verdict.WAITING, "waiting for 2 old targets"))
    record = StepRecord(step=1, mode="rollout", target=1, started_at=0, deregistered=[f"{ARN_A}|10.0.0.1"])
    elb = Elb()
    deregister_released(ports(elb=elb), state, ("10.0.0.1", "10.0.0.2", "10.0.0.3"), None, {"10.0.0.3"}, record)
    assert elb.deregistered == [(ARN_A, [("10.0.0.2", 8080)])]
    assert record.deregistered == [f"{ARN_A}|10.0.0.1", f"{ARN_A}|10.0.0.2"]
    assert state.drain.reason == ("waiting for 2 old targets; albgate started the drain of 1 released target(s) the "
                                  "Load Balancer Controller had not deregistered yet")


def test_released_targets_still_healthy_are_deregistered_and_counted_in_the_drains_reason():
    state = rollout_state(drain=DrainResult(Verdict.WAITING, "draining"))
    record = StepRecord(step=1, mode="rollout", target=1, started_at=0)
    health = {ARN_A: [target("10.0.0.1"), target("10.0.0.2", state="unhealthy"), target("10.0.0.9")]}
    elb = Elb()
    deregister_released(ports(elb=elb), state, ("10.0.0.1", "10.0.0.2"), health, set(), record)
    assert elb.deregistered == [(ARN_A, [("10.0.0.1", 8080), ("10.0.0.2", 8080)])]
    assert state.drain.reason == ("draining; albgate started the drain of 2 released target(s) the Load Balancer "
                                  "Controller had not deregistered yet")


# ---------------------------------------------------------------------------------------------------------
# targets.learn_target_ports and register_missing
# ---------------------------------------------------------------------------------------------------------
def binding(name: str, arn: str, service: str = NAME, port: int | str = 80) -> TargetGroupBinding:
    return TargetGroupBinding(namespace=NS, name=name, target_group_arn=arn, target_type="ip", service_name=service,
                              service_port=port)


def test_only_the_groups_asked_about_and_still_without_a_port_learn_it_from_their_service():
    arn_c = ARN_B.replace("web-b", "web-c")
    groups = [group(ARN_A), group(ARN_B), group(arn_c, port=7000)]
    state = rollout_state(groups=groups)
    kube = Kube(services=[Service(NS, NAME, {"app": NAME}, (ServicePort(80, 8080),))],
                bindings=[binding("a", ARN_A), binding("b", ARN_B), binding("c", arn_c)])
    learn_target_ports(ports(kube), state, (ARN_A, arn_c))
    assert [g.target_port for g in state.target_groups] == [8080, None, 7000]


def test_a_group_asked_about_without_a_binding_keeps_its_port():
    state = rollout_state(groups=[group(ARN_A, port=7000)])
    learn_target_ports(ports(Kube()), state, (ARN_A,))
    assert state.target_groups[0].target_port == 7000


def test_registering_adds_to_the_steps_count_and_names_the_groups_whose_port_is_unknown():
    arn_c = ARN_B.replace("web-b", "web-c")
    groups = [group(ARN_A, port=8080), group(ARN_B), group(arn_c)]
    state = rollout_state(groups=groups)
    since = NOW - REGISTRATION_GRACE_SECONDS - 1
    record = StepRecord(step=1, mode="rollout", target=2, started_at=0, registered_total=3,
                        unregistered_since={ARN_A: since, ARN_B: since, arn_c: since})
    kube = Kube(services=[Service(NS, NAME, {"app": NAME}, (ServicePort(80, "http"),))],
                bindings=[binding("b", ARN_B), binding("c", arn_c)])
    elb = Elb()
    candidates = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]
    health = {ARN_A: [], ARN_B: [], arn_c: []}
    said = register_missing(ports(kube, elb), state, candidates, health, record, NOW)
    assert elb.registered == [(ARN_A, [("10.0.0.1", 8080), ("10.0.0.2", 8080)])]
    assert record.registered_total == 5
    assert said == (f"albgate registered 2 new target(s) the Load Balancer Controller had not registered after "
                    f"{REGISTRATION_GRACE_SECONDS} s; albgate cannot register the new pods missing from web-b, web-c: "
                    "no target there shows the port, and the Service's targetPort is not a number")


# ---------------------------------------------------------------------------------------------------------
# step.start_step: the write
# ---------------------------------------------------------------------------------------------------------
def hold_marker(state: RolloutState, now: float = NOW) -> dict[str, str]:
    """The hold Start Step writes: through the step's deadline, the longest delay, the margin and the bake."""
    policy = state.request.policy
    delay = max(g.deregistration_delay_seconds for g in state.target_groups)
    until = now + policy.step_deadline_seconds + delay + limits.DRAIN_MARGIN_SECONDS + policy.bake_seconds
    return {ROLLOUT_ANNOTATION: f"exec-1@{int(until)}"}


def start(state: RolloutState, kube: Kube) -> RolloutState:
    return start_step(ports(kube), state)


def rollback_kube(*replica_sets: ReplicaSet) -> Kube:
    # The failed version runs; the hold is still this execution's.
    return Kube(deployment=deployment(NEW, hold="exec-1@99999", revision=5), replica_sets=list(replica_sets))


def test_a_rollback_undoes_while_the_previous_replica_set_has_one_pod_serving_without_the_gate():
    state = rollout_state(mode="rollback", plan=(3,))
    kube = rollback_kube(replica_set("web-new", 5, NEW), replica_set("web-old", 4, OLD, gated=False, ready=1))
    start(state, kube)
    assert kube.writes() == [
        ("rollback_deployment", NS, NAME, 4, "rv-7"),
        ("patch_deployment", NS, NAME, DeploymentPatch(max_surge=3, max_unavailable=0, annotations=hold_marker(state),
                                                       expected_resource_version="rv-8")),
    ]


def test_a_rollback_undoes_to_a_gated_previous_replica_set_with_no_pod_left():
    state = rollout_state(mode="rollback", plan=(3,))
    kube = rollback_kube(replica_set("web-old", 4, OLD, gated=True, ready=0))
    start(state, kube)
    assert [c[0] for c in kube.writes()] == ["rollback_deployment", "patch_deployment"]


def test_a_rollback_whose_previous_replica_set_is_gone_writes_the_image_behind_the_gate_without_hardening():
    state = rollout_state(mode="rollback", plan=(3,), hardening={"max_unavailable": 0,
                                                                  "termination_grace_period_seconds": 90})
    kube = rollback_kube(replica_set("web-new", 5, NEW), replica_set("web-older", 3, OLD, gated=False, ready=2))
    start(state, kube)
    assert kube.writes() == [
        ("patch_deployment", NS, NAME, DeploymentPatch(images={"web": OLD}, add_readiness_gates=(ALBGATE_GATE,),
                                                       max_surge=3, max_unavailable=0, annotations=hold_marker(state),
                                                       expected_resource_version="rv-7")),
    ]
    assert state.template_changed is False


def test_a_restarts_rollback_always_undoes():
    state = rollout_state(mode="rollback", kind="restart", plan=(3,))
    kube = Kube(deployment=deployment(OLD, hold="exec-1@99999", revision=5))
    start(state, kube)
    assert kube.writes()[0] == ("rollback_deployment", NS, NAME, 4, "rv-7")


def test_the_first_step_writes_the_image_the_gate_and_the_hardening_on_condition_of_the_read():
    hardening = {"max_unavailable": 0, "termination_grace_period_seconds": 90, "pre_stop_sleep_seconds": {"web": 30}}
    state = rollout_state(hardening=hardening)
    kube = Kube(deployment=deployment())
    start(state, kube)
    assert kube.writes() == [
        ("patch_deployment", NS, NAME, DeploymentPatch(
            images={"web": NEW}, add_readiness_gates=(ALBGATE_GATE,), max_surge=1, max_unavailable=0,
            annotations=hold_marker(state), expected_resource_version="rv-7", termination_grace_period_seconds=90,
            pre_stop_sleep_seconds={"web": 30})),
    ]
    assert state.template_changed is True


def test_a_later_step_surges_its_batch_and_renews_the_hold_and_resets_the_drain():
    state = rollout_state(next_step=1, plan=(1, 3), drain=DrainResult(Verdict.PASSED, "old targets left"))
    kube = Kube(deployment=deployment(NEW, hold="exec-1@99999", revision=5))
    start(state, kube)
    assert kube.writes() == [
        ("patch_deployment", NS, NAME, DeploymentPatch(max_surge=2, annotations=hold_marker(state),
                                                       expected_resource_version="rv-7")),
    ]
    assert state.drain == DrainResult(Verdict.WAITING, "not started")


def test_three_conflicts_in_a_row_leave_the_step_to_the_state_machines_retry():
    state = rollout_state(next_step=1, plan=(1, 3))
    kube = Kube(deployment=deployment(NEW, hold="exec-1@99999", revision=5), conflicts=3)
    with pytest.raises(ConflictError):
        start(state, kube)
    assert [c[0] for c in kube.calls] == ["get_deployment", "patch_deployment"] * 3


def test_a_later_step_refuses_a_hold_written_by_another_execution_quoting_it():
    state = rollout_state(next_step=1, plan=(1, 3))
    kube = Kube(deployment=deployment(NEW, hold="exec-0@123", revision=5))
    with pytest.raises(UnsafeConfigurationError) as caught:
        start(state, kube)
    assert str(caught.value) == ("Deployment changed under this rollout before step 2 (shop/web): albgate's hold "
                                 "(albgate.io/rollout) is 'exec-0@123', not this execution's" + TAIL)
    assert kube.writes() == []


def test_a_rollbacks_step_refuses_a_hold_and_image_written_by_someone_else_quoting_both():
    state = rollout_state(mode="rollback", plan=(3,))
    kube = Kube(deployment=deployment(NEW, hold="exec-0@123", revision=5))
    with pytest.raises(UnsafeConfigurationError) as caught:
        start(state, kube)
    assert str(caught.value) == (
        "Deployment changed under this rollout before step 1 of the rollback (shop/web): albgate's hold "
        f"(albgate.io/rollout) is 'exec-0@123', not this execution's, and container web runs '{NEW}'" + TAIL)
    assert kube.writes() == []


# ---------------------------------------------------------------------------------------------------------
# preflight.check_request_against
# ---------------------------------------------------------------------------------------------------------
def test_a_deployment_of_one_replica_is_accepted():
    assert check_request_against(request(steps=["100%"]), deployment(replicas=1), running_image=OLD) is None


def test_a_deployment_scaled_to_zero_is_refused_saying_how_to_scale_it_up():
    with pytest.raises(InvalidInputError) as caught:
        check_request_against(request(), deployment(replicas=0), running_image=OLD)
    assert str(caught.value) == (
        "deployment: shop/web has 0 replicas (spec.replicas), so no pod serves and there is nothing to gate; scale "
        "it up first (kubectl scale -n shop deployment/web --replicas=N) and start again, or change its image "
        "without albgate while nothing serves")


def test_every_policy_problem_is_named_in_one_sentence():
    with pytest.raises(InvalidInputError) as caught:
        check_request_against(request(steps=[4, "25%", "100%"], approval_before_steps=[3]), deployment(replicas=8),
                              running_image=OLD)
    said = str(caught.value)
    assert said.startswith("policy.steps: step 2 ('25%' of 8 replicas = 2 pods) asks for fewer new pods than ")
    assert "; policy.approval_before_steps: names step 3, but on the Deployment's 8 replicas" in said


# ---------------------------------------------------------------------------------------------------------
# preflight.check_limits
# ---------------------------------------------------------------------------------------------------------
BUDGET = limits.STATE_PAYLOAD_BUDGET_BYTES
HARDENING = {"termination_grace_period_seconds": 90}
PLAN = [60, 180, 300]


def state_bytes(req: RolloutRequest, groups: list[TargetGroupInfo], finding: str) -> int:
    return largest_state_bytes(req, replicas=PLAN[-1], plan=PLAN, target_groups=groups, previous_image=OLD,
                               hardening=HARDENING, findings=[finding])


def finding_of_size(req: RolloutRequest, groups: list[TargetGroupInfo], size: int) -> str:
    """A finding long enough that the largest state is exactly ``size`` bytes."""
    text = "x" * (size - state_bytes(req, groups, ""))
    assert state_bytes(req, groups, text) == size
    return text


def limits_of(req: RolloutRequest, groups: list[TargetGroupInfo], finding: str) -> None:
    check_limits(req, PLAN, groups, previous_image=OLD, hardening=HARDENING, findings=[finding])


def test_a_state_of_exactly_the_budget_fits():
    req, groups = request(), [group()]
    assert limits_of(req, groups, finding_of_size(req, groups, BUDGET)) is None


def test_a_state_one_byte_over_the_budget_counting_findings_and_hardening_is_refused():
    req, groups = request(), [group()]
    with pytest.raises(InvalidInputError, match=r"^Deployment: a rollout of 300 replicas behind 1 target group"):
        limits_of(req, groups, finding_of_size(req, groups, BUDGET + 1))


def test_the_longest_deregistration_delay_sizes_the_drain_deadline():
    req = request(step_deadline_seconds=60)
    check_limits(req, [1, 3], [group(delay=1000)], previous_image=OLD, hardening={}, findings=[])
    with pytest.raises(InvalidInputError, match=r"^policy: this rollout has 2 steps and could record 34,475 history"):
        check_limits(req, [1, 3], [group(delay=30), group(ARN_B, delay=3600)], previous_image=OLD, hardening={},
                     findings=[])


def test_a_state_over_the_budget_is_refused_in_kib_after_the_policys_problems():
    req, groups = request(step_deadline_seconds=60), [group(delay=3600)]
    size = 300 * 1024 + 600  # 300.6 KiB
    with pytest.raises(InvalidInputError) as caught:
        limits_of(req, groups, finding_of_size(req, groups, size))
    said = str(caught.value)
    assert said.startswith("policy: this rollout has 3 steps")
    assert said.endswith(
        "; Deployment: a rollout of 300 replicas behind 1 target group(s) could carry a state of 301 KiB (the old "
        "pods' IPs, the pods each gate releases, the targets albgate may deregister itself, in 3 steps), over the "
        "224 KiB albgate allows below Step Functions' 256 KiB per state (States.DataLimitExceeded, which no Catch "
        "takes); roll it in parts: fewer replicas per Deployment or fewer target groups (Services) per Deployment "
        "(docs/rollout.md, Limits)")


# ---------------------------------------------------------------------------------------------------------
# preflight.pin_image and assess
# ---------------------------------------------------------------------------------------------------------
def test_a_tag_the_registry_cannot_pin_is_kept_with_a_note():
    assert pin_image(ports(), "registry.example.com/web:v2") == ("registry.example.com/web:v2", [
        "image: tag 'v2' is not pinned to a digest (albgate reads digests from ECR only); pods created during the "
        "rollout could pull different bytes if the tag moves"])


def test_a_target_group_whose_delay_is_shorter_than_the_longest_request_is_refused_with_the_fix():
    req = request(max_request_seconds=45)
    with pytest.raises(UnsafeConfigurationError) as caught:
        assess(req, deployment(grace=120), [group(delay=45), group(ARN_B, delay=44)])
    assert str(caught.value) == (
        f"target group {ARN_B}: a deregistration delay of 44 s is shorter than the longest request (45 s): requests "
        "in flight are cut when it ends; raise it: set the annotation "
        "alb.ingress.kubernetes.io/target-group-attributes: deregistration_delay.timeout_seconds=45 on the backend "
        "Service if it already has that annotation (the controller uses the Service's value over the Ingress's), "
        "else on the Ingress")


# ---------------------------------------------------------------------------------------------------------
# preflight.preflight
# ---------------------------------------------------------------------------------------------------------
def elb_group(arn: str, *, target_type: str = "ip", delay: int = 30) -> TargetGroup:
    return TargetGroup(arn=arn, target_type=target_type, protocol="HTTP", port=8080, health_check_interval_seconds=5,
                       health_check_timeout_seconds=4, healthy_threshold=2, unhealthy_threshold=2,
                       load_balancer_arns=("arn:lb",), deregistration_delay_seconds=delay)


def cluster(dep: Deployment | None = None, *, arns: tuple[str, ...] = (ARN_A,), target_type: str = "ip",
            replica_sets: list[ReplicaSet] | None = None) -> tuple[Kube, Elb]:
    kube = Kube(deployment=dep or deployment(),
                replica_sets=[replica_set("web-old", 4, OLD, replicas=3)] if replica_sets is None else replica_sets,
                services=[Service(NS, NAME, {"app": NAME}, (ServicePort(80, 8080),))],
                bindings=[dataclasses.replace(binding(f"tgb-{i}", arn), target_type=target_type)
                          for i, arn in enumerate(arns)])
    return kube, Elb(groups={arn: elb_group(arn, target_type=target_type) for arn in arns})


def run(kube: Kube, elb: Elb, req: RolloutRequest | None = None, **kw):
    return preflight(ports(kube, elb, **kw), req or request(), "exec-1")


def test_a_missing_container_is_refused_listing_every_container_the_deployment_has():
    dep = deployment(containers=(Container("app", OLD, 30), Container("proxy", "envoy:1", 30)))
    with pytest.raises(NotFoundError) as caught:
        run(*cluster(dep))
    assert str(caught.value) == "container: Deployment shop/web has no container 'web'; it has: app, proxy"


def test_an_old_replica_set_scaled_to_zero_is_not_a_rollout_in_progress():
    kube, elb = cluster(replica_sets=[replica_set("web-old", 4, OLD, replicas=3), replica_set("web-older", 3, OLD)])
    assert isinstance(run(kube, elb), RolloutState)


def test_preflight_books_one_describe_call_for_its_groups_and_their_attributes_one_each():
    budget = Budget()
    run(*cluster(arns=(ARN_A, ARN_B)), budget=budget)
    assert budget.asks == [(3, True)]


def test_a_binding_to_instance_targets_is_refused_naming_its_namespace():
    with pytest.raises(UnsafeConfigurationError, match=r"^TargetGroupBinding shop/tgb-0 uses target type instance: "):
        run(*cluster(target_type="instance"))


UNSAFE = deployment(containers=(Container("web", OLD),), grace=30)  # no preStop, a grace too short for it


def test_an_unsafe_deployment_without_harden_is_refused_listing_each_finding_and_the_way_out():
    with pytest.raises(UnsafeConfigurationError) as caught:
        run(*cluster(UNSAFE))
    assert str(caught.value) == (
        "shop/web cannot roll without dropping requests: container web has no preStop: the ALB keeps sending new "
        "requests for some seconds after deregistration starts; it needs a preStop sleep of 30 s; add "
        "lifecycle.preStop sleep of 30 s to container web; terminationGracePeriodSeconds is 30: it must cover the "
        "preStop (30 s) plus the longest request (30 s), 60 s; set "
        "spec.template.spec.terminationGracePeriodSeconds: 60. Fix these, or start again with policy.harden=true to "
        "let albgate apply them on the first step.")


def test_an_unsafe_deployment_with_harden_carries_the_fixes_and_findings_in_its_first_state():
    state = run(*cluster(UNSAFE), request(harden=True, rollback_on_failure=False))
    assert state.hardening == {"pre_stop_sleep_seconds": {"web": 30}, "termination_grace_period_seconds": 60}
    assert [f.split(":")[0] for f in state.findings] == ["container web has no preStop",
                                                         "terminationGracePeriodSeconds is 30"]
    assert state.rollback_allowed is False


def test_a_restart_records_that_no_image_was_requested():
    state = run(*cluster(), request("restart", None))
    assert (state.requested_image, state.target_image) == ("", OLD)


def test_a_tag_that_pins_to_the_running_digest_is_refused_pointing_to_a_restart():
    registry = Registry({"registry.example.com/web:v1": OLD})
    with pytest.raises(InvalidInputError) as caught:
        run(*cluster(), request(image="registry.example.com/web:v1"), images=registry)
    assert str(caught.value) == (
        f"image: registry.example.com/web:v1 is {OLD}, which container web of shop/web already runs; use "
        "kind='restart' to re-create its pods through the gates")


def test_a_tag_pinned_to_a_new_digest_is_rolled_by_digest_with_a_note():
    registry = Registry({"registry.example.com/web:v2": NEW})
    state = run(*cluster(), request(image="registry.example.com/web:v2"), images=registry)
    assert (state.target_image, state.requested_image) == (NEW, "registry.example.com/web:v2")
    assert state.notes == ["image: tag 'v2' pinned to sha256:" + "b" * 64]


def test_the_findings_and_fixes_preflight_found_count_in_the_state_it_sizes():
    # Given twenty containers with long names, nineteen without a preStop (a finding and a fix each: over 1 KiB of each)
    names = [f"c{i:02d}-" + "n" * 59 for i in range(20)]
    dep = deployment(containers=tuple(Container(n, OLD, 30 if n == names[0] else None) for n in names), grace=120,
                     replicas=1000)
    req = RolloutRequest(cluster="prod", namespace=NS, deployment=NAME, container=names[0], image=NEW,
                         policy=RolloutPolicy(harden=True, step_deadline_seconds=60))
    kube, elb = cluster(dep)
    groups = [group(ARN_A)]
    hardening, findings = assess(req, dep, groups)
    assert len(findings) == 19
    size = largest_state_bytes(req, replicas=1000, plan=step_targets(1000, req.policy), target_groups=groups,
                               previous_image=OLD, hardening=hardening, findings=findings)
    with pytest.raises(InvalidInputError) as caught:
        run(kube, elb, req)
    assert (f"Deployment: a rollout of 1000 replicas behind 1 target group(s) could carry a state of "
            f"{size / 1024:.0f} KiB") in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# PreflightWaiting
# ---------------------------------------------------------------------------------------------------------
def test_a_waiting_preflight_dumps_as_json_and_reads_back():
    waiting = run(*cluster(), budget=Budget(2.5))
    assert isinstance(waiting, PreflightWaiting)
    dumped = waiting.dump()
    assert dumped == {"preflight": "WAITING_FOR_DESCRIBE_TURN", "describe_slot_at": NOW + 2.5, "wait_seconds": 3,
                      "turns": 1, "booked_calls": 2, "reason": "albgate's share of the account's Describe* calls is "
                      "spent (other albgate rollouts are polling); Preflight's look at the target groups is booked in "
                      "3 s"}
    assert PreflightWaiting.parse(dumped) == waiting
