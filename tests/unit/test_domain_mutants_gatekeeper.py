"""The gate keeper's decisions, pod by pod, on an in-memory cluster and load balancer.

Given a Deployment whose template carries albgate's gate and pods that some scale-up created outside a rollout,
when ``keep_gates`` runs, then it opens exactly the gates of pods whose target is healthy in every target group
(with the condition's reason and message a person reads in ``kubectl describe pod``), reports what it saw, and
leaves a Deployment that a live rollout holds alone. ``rollout_holds`` reads the hold annotation the state
machine writes (``<execution>@<deadline>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lambdas.domain.errors import UnsafeConfigurationError
from lambdas.domain.gatekeeper import KeeperReport, keep_gates, rollout_holds
from lambdas.domain.ports import (
    ALBGATE_GATE, HEALTHY, INITIAL, Container, Deployment, Pod, PodCondition, PodTemplate, Ports, Service,
    ServicePort, TargetGroup, TargetGroupBinding, TargetHealth,
)
from lambdas.domain.rollout.pods import ROLLOUT_ANNOTATION

NS, NAME = "shop", "cart"
NOW = 1_000.0
TG_A = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/cart-a/1"
TG_B = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/cart-b/2"
LABELS = {"app": "cart"}


def pod(name: str, ip: str | None = "10.0.0.1", *, ready: bool = True, gate: str = "False",
        terminating: bool = False) -> Pod:
    return Pod(namespace=NS, name=name, uid=f"uid-{name}", ip=ip, labels=LABELS, phase="Running",
               readiness_gates=(ALBGATE_GATE,),
               conditions=(PodCondition("ContainersReady", "True" if ready else "False"),
                           PodCondition(ALBGATE_GATE, gate)),
               terminating=terminating, restart_count=0, created_at=NOW - 60)


def deployment(*, gated: bool = True, hold: str | None = None) -> Deployment:
    template = PodTemplate(containers=(Container("cart", "cart:v2"),), labels=LABELS,
                           readiness_gates=(ALBGATE_GATE,) if gated else ())
    return Deployment(namespace=NS, name=NAME, uid="uid-cart", replicas=3, selector=LABELS, template=template,
                      max_surge=1, max_unavailable=0,
                      annotations={} if hold is None else {ROLLOUT_ANNOTATION: hold})


@dataclass
class Cluster:
    """The reads keep_gates makes, and the pod conditions it writes as (pod, type, status, reason, message)."""

    dep: Deployment
    pods: list[Pod]
    groups: tuple[str, ...] = (TG_A,)
    target_type: str = "ip"
    written: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        assert (namespace, name) == (NS, NAME)
        return self.dep

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        return list(self.pods)

    def set_pod_condition(self, namespace: str, pod: str, type_: str, status: str, reason: str, message: str, *,
                          same_status: bool = False) -> None:
        self.written.append((pod, type_, status, reason, message))

    def list_services(self, namespace: str) -> list[Service]:
        return [Service(NS, "cart", LABELS, (ServicePort(80, 8080),))]

    def list_target_group_bindings(self, namespace: str) -> list[TargetGroupBinding]:
        return [TargetGroupBinding(NS, f"cart-{i}", arn, self.target_type, "cart", 80)
                for i, arn in enumerate(self.groups)]


@dataclass
class LoadBalancer:
    """DescribeTargetGroups and DescribeTargetHealth answers: per group, target IP -> state."""

    states: dict[str, dict[str, str]]
    target_type: str = "ip"
    health_calls: int = 0

    def describe_target_group(self, arn: str) -> TargetGroup:
        return TargetGroup(arn=arn, target_type=self.target_type, protocol="HTTP", port=8080,
                           health_check_interval_seconds=10, health_check_timeout_seconds=5, healthy_threshold=2,
                           unhealthy_threshold=2, load_balancer_arns=("arn:alb",), deregistration_delay_seconds=30)

    def describe_target_health(self, arn: str) -> list[TargetHealth]:
        self.health_calls += 1
        return [TargetHealth(ip, 8080, state) for ip, state in self.states.get(arn, {}).items()]


@dataclass
class Budget:
    """Answers every ask with ``wait`` and records (tokens, reserve)."""

    wait: float = 0.0
    asks: list[tuple[float, bool]] = field(default_factory=list)

    def acquire(self, tokens: int, *, reserve: bool) -> float:
        self.asks.append((tokens, reserve))
        return self.wait


@dataclass
class Clock:
    t: float = NOW

    def now(self) -> float:
        return self.t


def run(cluster: Cluster, lb: LoadBalancer, budget: Budget | None = None) -> KeeperReport:
    return keep_gates(Ports(kube=cluster, elb=lb, clock=Clock(), budget=budget or Budget()), NS, NAME)


OPENED = (ALBGATE_GATE, "True", "TargetHealthy", "albgate gate keeper: target healthy in all target groups")


# ---------------------------------------------------------------------------------------------------------
# What it opens
# ---------------------------------------------------------------------------------------------------------
def test_a_healthy_pod_gets_its_gate_opened_with_a_reason_kubectl_shows():
    # Given one pod with a closed gate whose target is healthy
    cluster = Cluster(deployment(), [pod("cart-1", "10.0.0.1")])
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY}})
    # When the keeper runs
    report = run(cluster, lb)
    # Then it opens that gate, with the reason and message kubectl describe pod shows, and reports it
    assert cluster.written == [("cart-1", *OPENED)]
    assert report.as_dict() == {"deployment": "shop/cart", "closed": 1, "opened": ["cart-1"], "skipped_reason": ""}


def test_only_pods_healthy_in_every_target_group_are_opened():
    # Given three pods behind two target groups: healthy in both, healthy in one only, still registering
    cluster = Cluster(deployment(), [pod("cart-1", "10.0.0.1"), pod("cart-2", "10.0.0.2"), pod("cart-3", "10.0.0.3")],
                      groups=(TG_A, TG_B))
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY, "10.0.0.2": HEALTHY, "10.0.0.3": INITIAL},
                       TG_B: {"10.0.0.1": HEALTHY, "10.0.0.2": INITIAL, "10.0.0.3": INITIAL}})
    budget = Budget()
    # When the keeper runs
    report = run(cluster, lb, budget)
    # Then only the first pod's gate opens; all three were closed
    assert [w[0] for w in cluster.written] == ["cart-1"]
    assert report == KeeperReport("shop/cart", 3, ("cart-1",))
    # and it asked the budget once, for three Describe* calls per target group, booking nothing
    assert budget.asks == [(6, False)]


def test_a_pod_whose_target_is_still_registering_keeps_its_gate_closed():
    # Given one ContainersReady pod whose target is still initial
    cluster = Cluster(deployment(), [pod("cart-1", "10.0.0.1")])
    lb = LoadBalancer({TG_A: {"10.0.0.1": INITIAL}})
    # When the keeper runs / Then nothing opens, the pod is reported closed, and the look was made
    assert run(cluster, lb) == KeeperReport("shop/cart", 1, ())
    assert cluster.written == [] and lb.health_calls == 1


# ---------------------------------------------------------------------------------------------------------
# What it does not look at
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("starting", [
    pytest.param(pod("cart-1", "10.0.0.1", ready=False), id="containers-not-ready"),
    pytest.param(pod("cart-1", None), id="no-ip-yet"),
])
def test_a_pod_still_starting_costs_no_describe_call(starting):
    # Given the only closed pod is not ContainersReady yet, or has no IP yet (its target cannot be healthy)
    cluster = Cluster(deployment(), [starting])
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY}})
    budget = Budget()
    # When the keeper runs
    report = run(cluster, lb, budget)
    # Then it counts the pod as closed, opens nothing, and neither asks the budget nor calls ELB
    assert report == KeeperReport("shop/cart", 1, ())
    assert budget.asks == [] and lb.health_calls == 0 and cluster.written == []


def test_open_and_terminating_pods_are_not_counted_and_cost_nothing():
    # Given a pod whose gate is already open and a terminating pod with a closed gate
    cluster = Cluster(deployment(), [pod("cart-1", "10.0.0.1", gate="True"),
                                     pod("cart-2", "10.0.0.2", terminating=True)])
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY, "10.0.0.2": HEALTHY}})
    budget = Budget()
    # When the keeper runs / Then there is no closed gate to open, and no call is spent
    assert run(cluster, lb, budget) == KeeperReport("shop/cart", 0, ())
    assert budget.asks == [] and lb.health_calls == 0


def test_a_deployment_never_rolled_by_albgate_is_skipped_saying_why():
    # Given a template without albgate's gate
    cluster = Cluster(deployment(gated=False), [pod("cart-1")])
    # When the keeper runs / Then it skips it, with the reason, before listing pods
    report = run(cluster, LoadBalancer({}))
    assert report.as_dict() == {"deployment": "shop/cart", "closed": 0, "opened": [],
                                "skipped_reason": "template has no albgate gate"}


# ---------------------------------------------------------------------------------------------------------
# A live rollout, and a spent budget
# ---------------------------------------------------------------------------------------------------------
def test_a_deployment_a_live_rollout_holds_is_left_alone():
    # Given a healthy pod with a closed gate, and the hold annotation of an execution whose deadline is ahead
    hold = f"arn:aws:states:us-east-1:123456789012:execution:Rollout:r1@{NOW + 300}"
    cluster = Cluster(deployment(hold=hold), [pod("cart-1", "10.0.0.1")])
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY}})
    # When the keeper runs
    report = run(cluster, lb)
    # Then it opens nothing and says which rollout holds the gates
    assert cluster.written == [] and lb.health_calls == 0
    assert report == KeeperReport("shop/cart", 0, (), f"rollout {hold} holds the gates")


def test_a_hold_whose_deadline_passed_no_longer_stops_the_keeper():
    # Given the hold annotation of an execution whose deadline passed a second ago (it died without clearing it)
    hold = f"arn:aws:states:us-east-1:123456789012:execution:Rollout:r1@{NOW - 1}"
    cluster = Cluster(deployment(hold=hold), [pod("cart-1", "10.0.0.1")])
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY}})
    # When the keeper runs / Then it opens the healthy pod's gate
    assert run(cluster, lb).opened == ("cart-1",)


@pytest.mark.parametrize("wait", [0.5, 30.0])
def test_a_spent_budget_skips_the_run_even_for_half_a_second(wait):
    # Given a healthy pod with a closed gate and a budget that says wait ``wait`` seconds
    cluster = Cluster(deployment(), [pod("cart-1", "10.0.0.1")])
    lb = LoadBalancer({TG_A: {"10.0.0.1": HEALTHY}})
    # When the keeper runs
    report = run(cluster, lb, Budget(wait))
    # Then it skips the run without calling ELB (the next minute's run is the retry), saying so
    assert lb.health_calls == 0 and cluster.written == []
    assert report == KeeperReport("shop/cart", 1, (), "albgate's share of the Describe* calls is spent; next run")


def test_an_instance_target_group_is_refused_naming_the_binding():
    # Given the Service's target group uses instance targets (one target per node, not per pod)
    cluster = Cluster(deployment(), [pod("cart-1", "10.0.0.1")], target_type="instance")
    # When the keeper runs / Then it refuses, naming the namespace and binding a person has to change
    with pytest.raises(UnsafeConfigurationError, match="TargetGroupBinding shop/cart-0 uses target type"):
        run(cluster, LoadBalancer({}, target_type="instance"))


# ---------------------------------------------------------------------------------------------------------
# The hold annotation
# ---------------------------------------------------------------------------------------------------------
HOLDS = [
    # annotation, now, held
    pytest.param("", NOW, False, id="none"),
    pytest.param("exec-without-deadline", NOW, False, id="no-deadline"),
    pytest.param("exec@1000.5", NOW, True, id="deadline-ahead"),
    pytest.param("exec@1000.0", NOW, False, id="deadline-now-is-passed"),
    pytest.param("arn:exec@with-at@1300", NOW, True, id="the-last-at-sign-starts-the-deadline"),
    pytest.param("exec@soon", NOW, False, id="unreadable-deadline"),
]


@pytest.mark.parametrize("annotation,now,held", HOLDS)
def test_the_hold_annotation_holds_until_its_deadline(annotation, now, held):
    # Given the annotation a rollout wrote / When read at ``now`` / Then it holds exactly while its deadline is ahead
    assert rollout_holds(annotation, now) is held
