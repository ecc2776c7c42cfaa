"""Rollout strategies to compare on a scenario, and the registry the ``albgate simulate`` command reads.

Job: drive one rollout on a ``Simulation`` and say how it ended. Built in:
- ``kubernetes-default``: the seed's problem, ``kubectl set image`` on an unlabelled namespace (no gates);
- ``readiness-gate``: the seed's fix alone: the namespace labelled before the pods exist, so the Load
  Balancer Controller injects its gates, and nothing else;
- ``oracle``: albgate's plan (``lambdas.domain.plan.step_targets``, maxUnavailable 0, maxSurge = the step's
  batch, ALBGATE_GATE in the template, hardened preStop / grace period as ``rollout.assess`` computes them)
  executed with perfect, free knowledge and albgate's rules: it opens ALBGATE_GATE on a new pod the instant
  its target is healthy in every target group and none of the previous step's released targets is left in
  any group (never more pods than the step allows); it starts the next step the instant the step's old
  targets are all `draining` (albgate hands the rest of the drain to the next gate), and ends the last step
  (or a rollback) the instant they have left. Its duration is the ``lower_bound_seconds`` of a gated
  rollout: no poller can be faster.
The lead registers ``albgate`` (the real state machine) with ``register_strategy`` from
``albgate.rollout_strategy``.
Invariant: a strategy only acts on the world through what Kubernetes allows (patches, pod status, undo); it
returns when the rollout has ended (or the scenario's horizon is reached) and says which way it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lambdas.domain.health_check import hardened_annotations
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.plan import batch_sizes, step_targets
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, HEALTHY, DeploymentPatch
from lambdas.domain.rollout import resolve_int_or_percent

if TYPE_CHECKING:
    from albgate.sim.scenario import Scenario
    from albgate.sim.simulation import Simulation

SUCCEEDED, FAILED, ROLLED_BACK, TIMED_OUT = "succeeded", "failed", "rolled_back", "timed_out"


@dataclass
class StrategyRun:
    """How a strategy's rollout ended. Times are virtual epoch seconds."""

    outcome: str  # succeeded | failed | rolled_back | timed_out
    started_at: float
    finished_at: float | None  # None: it never ended (timed out)
    state_transitions: int = 0  # Step Functions state transitions (0 without a state machine)
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


StrategyFn = Callable[["Simulation"], StrategyRun]
PrepareFn = Callable[["Scenario"], "Scenario"]


@dataclass(frozen=True)
class Strategy:
    name: str
    run: StrategyFn
    prepare: PrepareFn  # adjusts the world before it is built (e.g. label the namespace before the pods)
    description: str = ""


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(name: str, fn: StrategyFn, *, prepare: PrepareFn | None = None, description: str = "") -> None:
    """Add (or replace) a strategy: ``fn(sim)`` is called at the rollout start and returns a StrategyRun."""
    _REGISTRY[name] = Strategy(name, fn, prepare or (lambda s: s), description)


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(strategy_names())}") from None


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def _horizon(sim: "Simulation") -> float:
    return sim.rollout_start + sim.scenario.horizon_seconds


# ---------------------------------------------------------------------------------------------------------
# kubernetes-default and readiness-gate: kubectl set image, then wait like kubectl rollout status
# ---------------------------------------------------------------------------------------------------------
def _set_image_and_wait(sim: "Simulation") -> StrategyRun:
    sc = sim.scenario
    cluster, d = sim.cluster, sim.deployment()
    start = sim.clock.t
    cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(images={sc.rollout_container: sc.rollout.image}))
    done = sim.run_until(_horizon(sim), stop=lambda: cluster.deployment_complete(d) or cluster.deadline_exceeded(d))
    if not done:
        return StrategyRun(TIMED_OUT, start, None, detail="the Deployment neither completed nor hit its deadline")
    if cluster.deadline_exceeded(d):
        return StrategyRun(FAILED, start, sim.clock.t, detail="Progressing=False ProgressDeadlineExceeded")
    return StrategyRun(SUCCEEDED, start, sim.clock.t, detail="Progressing=True NewReplicaSetAvailable")


def _unlabelled(scenario: "Scenario") -> "Scenario":
    return scenario.with_changes(namespace={"inject_label": "none"})


def _labelled_before_pods(scenario: "Scenario") -> "Scenario":
    if scenario.namespace.inject_label == "none":
        return scenario.with_changes(namespace={"inject_label": "before_pods"})
    return scenario  # labelled already (maybe after the pods: then they keep no gates, as in reality)


def bootstrap_hardened(scenario: "Scenario") -> "Scenario":
    """The scenario's app as albgate's bootstrap applies it: preStop drain, grace period, maxUnavailable 0, and
    the Ingress health check of lambdas.domain.health_check (5 s interval)."""
    app, policy = scenario.app, scenario.rollout.policy
    pre_stop = max(app.pre_stop_sleep_seconds or 0, policy.pre_stop_seconds)
    changes: dict[str, Any] = {
        "pre_stop_sleep_seconds": pre_stop,
        "termination_grace_period_seconds": max(
            app.termination_grace_period_seconds, pre_stop + policy.max_request_seconds
        ),
    }
    if resolve_int_or_percent(app.max_unavailable, app.replicas, round_up=False) > 0:
        changes["max_unavailable"] = 0
    return scenario.with_changes(
        app=changes, ingress={"annotations": hardened_annotations(scenario.ingress.annotations)}
    )


def _hardened_and_labelled(scenario: "Scenario") -> "Scenario":
    return _labelled_before_pods(bootstrap_hardened(scenario))


# ---------------------------------------------------------------------------------------------------------
# oracle
# ---------------------------------------------------------------------------------------------------------
def hardening_for(sim: "Simulation", policy: RolloutPolicy) -> dict[str, Any]:
    """The preStop and grace period albgate writes when hardening (as lambdas.domain.rollout.assess)."""
    t = sim.deployment().template
    c = t.container(sim.scenario.rollout_container)
    assert c is not None
    out: dict[str, Any] = {}
    pre_stop = c.pre_stop_sleep_seconds or 0
    if pre_stop < policy.pre_stop_seconds:
        out["pre_stop_sleep_seconds"] = {c.name: policy.pre_stop_seconds}
        pre_stop = policy.pre_stop_seconds
    if t.termination_grace_period_seconds < pre_stop + policy.max_request_seconds:
        out["termination_grace_period_seconds"] = pre_stop + policy.max_request_seconds
    return out


class _Oracle:
    def __init__(self, sim: "Simulation") -> None:
        self.sim = sim
        self.cluster = sim.cluster
        self.d = sim.deployment()
        self.policy = sim.scenario.rollout.policy
        self.plan = step_targets(self.d.replicas, self.policy)
        self.batches = batch_sizes(self.plan)
        self.mode = "rollout"
        self.step = 0
        self.step_started = sim.clock.t
        self.result: str | None = None
        self.steps_log: list[tuple[str, int, float]] = []
        self.handed_over: list[Any] = []  # sim Targets of the previous step's released pods, still in a group

    def start(self, images: dict[str, str] | None, *, rollback: bool = False) -> None:
        d, sim = self.d, self.sim
        if rollback:
            # As albgate rolls back (lambdas.domain.rollout): the previous revision's exact template, so the
            # previous ReplicaSet, still serving, scales back up in one step.
            self.cluster.rollback_deployment(d.namespace, d.name, 0)
            self.plan, self.batches = [d.replicas], [d.replicas]
            patch = DeploymentPatch(max_surge=d.replicas, max_unavailable=0)
        else:
            patch = DeploymentPatch(images=images, add_readiness_gates=(ALBGATE_GATE,), max_surge=self.batches[0],
                                    max_unavailable=0, **hardening_for(sim, self.policy))
        self.cluster.patch_deployment(d.namespace, d.name, patch)
        self.step, self.step_started = 0, sim.clock.t
        self.handed_over = []  # a rollback does not wait for the failed rollout's handed-over targets (as albgate)
        self.new_template = d.template
        self._deadline()

    @staticmethod
    def _released(p: Any) -> bool:
        """albgate's rule (lambdas.domain.rollout.is_released): its gate opened, or Ready when it has none."""
        if ALBGATE_GATE in p.readiness_gates:
            return p.conditions.get(ALBGATE_GATE, ("",))[0] == "True"
        return bool(p.ready)

    def _deadline(self) -> None:
        # make sure an event happens at the step deadline, so tick() sees it pass
        self.sim.loop.at(self.step_started + self.policy.step_deadline_seconds + 1e-6, lambda: None)

    def _healthy_everywhere(self, ip: str | None) -> bool:
        return all(self.sim.alb.state_of(arn, ip) == HEALTHY for arn in self.sim.alb.tgs)

    def tick(self) -> None:
        if self.result is not None:
            return
        sim, d, cluster = self.sim, self.d, self.cluster
        new = next((rs for rs in d.rss if rs.template == self.new_template), None)
        if new is None:
            return
        target = self.plan[self.step]
        active = new.active()
        released = sum(1 for p in active if self._released(p))
        leaving = [t for tg in sim.alb.tgs.values() for t in tg.targets.values() if t.pod.terminating or t.pod.exited]
        # the previous step's old targets, handed over still draining, hold this step's releases until they left
        self.handed_over = [t for t in self.handed_over if t.tg.targets.get(t.ip) is t]
        for p in sorted(active, key=lambda p: p.created_at):
            if released >= target or self.handed_over:
                break
            if ALBGATE_GATE in p.readiness_gates and not self._released(p) and p.ip and self._healthy_everywhere(p.ip):
                cluster.set_pod_condition(p.namespace, p.name, ALBGATE_GATE, "True", "TargetHealthy",
                                          "oracle: healthy in every target group")
                released += 1
        old_spec = sum(rs.spec for rs in d.rss if rs is not new)
        old_active = sum(len(rs.active()) for rs in d.rss if rs is not new)
        hands_over = self.mode == "rollout" and self.step < len(self.plan) - 1
        drained = all(t.state == DRAINING for t in leaving) if hands_over else not leaving
        if released >= target and old_spec <= d.replicas - target and old_active <= d.replicas - target and drained:
            self.steps_log.append((self.mode, target, sim.clock.t - self.step_started))
            self.handed_over = list(leaving)
            self.step += 1
            if self.step == len(self.plan):
                self.result = SUCCEEDED if self.mode == "rollout" else ROLLED_BACK
                return
            cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(max_surge=self.batches[self.step]))
            self.step_started = sim.clock.t
            self._deadline()
        elif sim.clock.t > self.step_started + self.policy.step_deadline_seconds:
            sim.log("strategy", f"oracle: step {self.step + 1} ({self.mode}) passed its deadline of "
                                f"{self.policy.step_deadline_seconds} s")
            if self.mode == "rollout" and self.policy.rollback_on_failure:
                self.mode = "rollback"
                self.start(None, rollback=True)
            else:
                self.result = FAILED


def oracle(sim: "Simulation") -> StrategyRun:
    sc = sim.scenario
    o = _Oracle(sim)
    start = sim.clock.t
    o.start({sc.rollout_container: sc.rollout.image})
    sim.add_observer(o.tick)
    try:
        sim.run_until(_horizon(sim), stop=lambda: o.result is not None)
    finally:
        sim.remove_observer(o.tick)
    if o.result is None:
        return StrategyRun(TIMED_OUT, start, None, detail=f"stuck in {o.mode} step {o.step + 1}",
                           extra={"steps": o.steps_log})
    return StrategyRun(o.result, start, sim.clock.t, detail=f"plan {o.plan}", extra={"steps": o.steps_log})


register_strategy("kubernetes-default", _set_image_and_wait, prepare=_unlabelled,
                  description="kubectl set image on an unlabelled namespace: the seed's problem")
register_strategy("readiness-gate", _set_image_and_wait, prepare=_labelled_before_pods,
                  description="the seed's fix alone: namespace labelled before the pods, controller gates")
register_strategy("hardened-readiness-gate", _set_image_and_wait, prepare=_hardened_and_labelled,
                  description="the seed's fix on an app hardened as albgate's bootstrap does: preStop, grace period")
register_strategy("oracle", oracle,
                  description="albgate's plan with a perfect, instant gate: the lower bound of a gated rollout")
