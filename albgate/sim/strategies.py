"""Rollout strategies to compare on a scenario, and the registry the ``albgate simulate`` command reads.

Job: drive one rollout on a ``Simulation`` and say how it ended. Built in:
- ``kubernetes-default``: the example app's problem, ``kubectl set image`` on an unlabelled namespace (no gates);
- ``readiness-gate``: the controller's documented fix alone: the namespace labelled before the pods exist, so
  the Load Balancer Controller injects its gates, and nothing else;
- ``oracle``: albgate's plan (``lambdas.domain.plan.step_targets``, maxUnavailable 0, maxSurge = the step's
  batch, ALBGATE_GATE in the template, hardened preStop / grace period as ``lambdas.domain.safety`` computes them)
  executed with perfect, free knowledge and albgate's rules: the instant as many of the step's new pods as
  it still needs are healthy in every target group, and none of the previous step's released targets is
  left in any group, it opens ALBGATE_GATE on them together (the oldest first, as
  ``lambdas.domain.gate.evaluate_gate``); it deregisters a leaving pod's target the instant the pod is
  deleted (as albgate's drain check); it starts the next step the instant the step's old targets are all
  `draining` (albgate hands the rest of the drain over, and a later step does not wait for it), and ends the
  last step (or a rollback) the instant albgate's last drain could pass: every released target gone, or
  `draining` with the load balancer's lag over or covered by its pod's preStop sleep. Its duration is the ``lower_bound_seconds`` of a gated rollout: no poller
  can be faster;
- ``ideal-poller``: the oracle knowing health only through one look per health-check interval, and nothing
  else slowing it (``_IdealPoller``): the best a poller that obeys albgate's polling rule (docs/rollout.md,
  "Polling and cost") can hope for.
``albgate.sim.albgate_strategy`` registers ``albgate`` (the real state machine) with ``register_strategy``.
Invariant: a strategy only acts on the world through what Kubernetes allows (patches, pod status, undo); it
returns when the rollout has ended (or the scenario's horizon is reached) and says which way it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from albgate.sim.manifests import bootstrap_hardened
from lambdas.domain import safety
from lambdas.domain.gate import REGISTRATION_GRACE_SECONDS
from lambdas.domain.models import RolloutPolicy
from lambdas.domain.plan import batch_sizes, step_targets
from lambdas.domain.ports import ALBGATE_GATE, DRAINING, HEALTHY, INITIAL, DeploymentPatch

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
    return scenario.with_changes(namespace={"inject_label": "none", "labelled_at_seconds": None})


def _labelled_before_pods(scenario: "Scenario") -> "Scenario":
    if scenario.namespace.unlabelled:
        return scenario.with_changes(namespace={"inject_label": "before_pods"})
    return scenario  # labelled already, or at a given time (pods born before it keep no gates, as in reality)


def _hardened_and_labelled(scenario: "Scenario") -> "Scenario":
    return _labelled_before_pods(bootstrap_hardened(scenario))


# ---------------------------------------------------------------------------------------------------------
# oracle
# ---------------------------------------------------------------------------------------------------------
def hardening_for(sim: "Simulation", policy: RolloutPolicy) -> dict[str, Any]:
    """The preStop and grace period albgate writes when hardening: the fixes of lambdas.domain.safety's findings
    (maxUnavailable aside: the oracle's step patch sets it)."""
    patch = safety.hardening_patch(safety.deployment_findings(sim.deployment(), policy))
    patch.pop("max_unavailable", None)
    return patch


class _Seen(NamedTuple):
    """One target of one target group as a strategy knows it."""

    arn: str
    ip: str
    state: str
    pod: Any  # the sim pod behind the IP (pods are Kubernetes knowledge: free to watch)


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
        self.deregistered: set[tuple[str, str, int]] = set()  # (arn, ip, id(pod)) it deregistered
        self.missing_since: dict[tuple[str, str], float] = {}  # (arn, pod name): first seen missing from the group
        self.bake_until: float | None = None  # the policy's bake after a rollout step passed, before the next

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
        self.new_template = d.template
        self._deadline()

    @staticmethod
    def _released(p: Any) -> bool:
        """albgate's rule (lambdas.domain.rollout.pods.is_released): its gate opened, or Ready when it has none."""
        if ALBGATE_GATE in p.readiness_gates:
            return p.conditions.get(ALBGATE_GATE, ("",))[0] == "True"
        return bool(p.ready)

    def _deadline(self) -> None:
        # make sure an event happens at the step deadline, so tick() sees it pass
        self.sim.loop.at(self.step_started + self.policy.step_deadline_seconds + 1e-6, lambda: None)

    def run_extra(self) -> dict[str, Any]:
        """What a run reports beyond its steps (``StrategyRun.extra``)."""
        return {}

    def view(self) -> list[_Seen]:
        """What the strategy knows of the target groups: here, their live state (perfect, free knowledge)."""
        return [_Seen(tg.arn, t.ip, t.state, t.pod) for tg in self.sim.alb.tgs.values() for t in tg.targets.values()]

    def _deregister(self, seen: _Seen) -> _Seen:
        """As albgate's drain check does (lambdas.domain.rollout.drain.verify_drain): a leaving pod's target that is
        not draining yet is deregistered at once rather than left to the controller. A successful
        DeregisterTargets makes a registered target `draining`, so the strategy knows it without looking."""
        if seen.state == DRAINING:
            return seen
        key = (seen.arn, seen.ip, id(seen.pod))
        if key not in self.deregistered:
            self.deregistered.add(key)
            self.sim.alb.deregister_targets(seen.arn, [(seen.ip, self.sim.alb.tgs[seen.arn].port)], "oracle",
                                            charged=False)
        return _Seen(seen.arn, seen.ip, DRAINING, seen.pod)

    def _out_of_service(self, seen: _Seen) -> bool:
        """A leaving target done with, as albgate's last drain counts it, known here the instant it is so: gone, or
        `draining` with the load balancer's lag either over or covered by its pod, which still takes requests (its
        preStop sleep, within the grace period) until the load balancer stops sending them. albgate ends on that:
        its drain passes once every released target is `draining` (rollout.drain, rollout.out_of_service), and
        its gate waits before release for the part of the lag the preStop sleep does not cover
        (``out_of_service._lag_uncovered``)."""
        tg = self.sim.alb.tgs[seen.arn]
        t = tg.targets.get(seen.ip)
        if t is None or (t.state == DRAINING and not t.routable):
            return True
        if t.state != DRAINING or not seen.pod.terminating or t.dereg_at is None:
            return False
        tpl = seen.pod.template
        sleep = min(tpl.containers[0].pre_stop_sleep_seconds or 0, tpl.termination_grace_period_seconds)
        return seen.pod.deletion_at + sleep >= t.dereg_at + min(self.sim.alb.lag, tg.delay)

    def _healthy_everywhere(self, ip: str | None, states: dict[str, dict[str, str]]) -> bool:
        """``states``: IP -> target group ARN -> state, as the strategy knows them."""
        mine = states.get(ip or "", {})
        return all(mine.get(arn) == HEALTHY for arn in self.sim.alb.tgs)

    def _register_missing(self, active: list[Any]) -> None:
        """As albgate's gate does (lambdas.domain.gate.targets_to_register): a step's ContainersReady pod missing
        from a target group for REGISTRATION_GRACE_SECONDS is registered there; the oracle sees that at once."""
        now = self.sim.clock.t
        for p in active:
            if not (p.containers_ready and p.ip) or p.terminating or ALBGATE_GATE not in p.readiness_gates:
                continue
            for tg in self.sim.alb.tgs.values():
                t = tg.targets.get(p.ip)
                key = (tg.arn, p.name)
                if t is not None and t.state != DRAINING:
                    self.missing_since.pop(key, None)
                    continue
                since = self.missing_since.get(key)
                if since is None:
                    # first seen missing: make sure one event happens when the grace ends, so tick() sees it (one
                    # per key: a wake-up per tick would wake every other key's ticks, and those theirs)
                    since = self.missing_since[key] = now
                    self.sim.loop.at(since + REGISTRATION_GRACE_SECONDS + 1e-6, lambda: None)
                if now >= since + REGISTRATION_GRACE_SECONDS:
                    self.sim.alb.register(tg, p)
                    self.missing_since.pop(key, None)

    def _begin_next_step(self) -> None:
        self.cluster.patch_deployment(self.d.namespace, self.d.name, DeploymentPatch(max_surge=self.batches[self.step]))
        self.step_started = self.sim.clock.t
        self._deadline()

    def tick(self) -> None:
        if self.result is not None:
            return
        sim, d, cluster = self.sim, self.d, self.cluster
        if self.bake_until is not None:
            # As albgate: a rollout step's bake (policy.bake_seconds) runs from its drain handed over or verified
            # to the next step; old targets that leave meanwhile are still deregistered at once.
            for seen in self.view():
                if seen.pod.terminating or seen.pod.exited:
                    self._deregister(seen)
            if sim.clock.t < self.bake_until:
                return
            self.bake_until = None
            self._begin_next_step()
        new = next((rs for rs in d.rss if rs.template == self.new_template), None)
        if new is None:
            return
        target = self.plan[self.step]
        active = new.active()
        released = sum(1 for p in active if self._released(p))
        self._register_missing(active)
        seen = self.view()
        leaving = [self._deregister(s) for s in seen if s.pod.terminating or s.pod.exited]
        states: dict[str, dict[str, str]] = {}
        for x in seen:
            states.setdefault(x.ip, {})[x.arn] = x.state
        # As albgate's gate (lambdas.domain.gate.evaluate_gate): the step's pods are released together, once as
        # many as it still needs are healthy everywhere, the oldest first.
        needed = target - released
        healthy = [] if needed <= 0 else [
            p for p in sorted(active, key=lambda p: (p.created_at, p.name))
            if ALBGATE_GATE in p.readiness_gates and not self._released(p) and p.ip
            and self._healthy_everywhere(p.ip, states)]
        if needed > 0 and len(healthy) >= needed:
            for p in healthy[:needed]:
                cluster.set_pod_condition(p.namespace, p.name, ALBGATE_GATE, "True", "TargetHealthy",
                                          "oracle: healthy in every target group")
            released += needed
        old_spec = sum(rs.spec for rs in d.rss if rs is not new)
        old_active = sum(len(rs.active()) for rs in d.rss if rs is not new)
        hands_over = self.mode == "rollout" and self.step < len(self.plan) - 1
        drained = all(t.state == DRAINING for t in leaving) if hands_over else all(map(self._out_of_service, leaving))
        if released >= target and old_spec <= d.replicas - target and old_active <= d.replicas - target and drained:
            self.steps_log.append((self.mode, target, sim.clock.t - self.step_started))
            self.step += 1
            if self.step == len(self.plan):
                self.result = SUCCEEDED if self.mode == "rollout" else ROLLED_BACK
                return
            bake = self.policy.bake_seconds if self.mode == "rollout" else 0
            if bake > 0:
                self.bake_until = sim.clock.t + bake
                sim.loop.at(self.bake_until + 1e-6, lambda: None)  # an event when the bake ends, so tick() sees it
                return
            self._begin_next_step()
        elif sim.clock.t > self.step_started + self.policy.step_deadline_seconds:
            sim.log("strategy", f"oracle: step {self.step + 1} ({self.mode}) passed its deadline of "
                                f"{self.policy.step_deadline_seconds} s")
            if self.mode == "rollout" and self.policy.rollback_on_failure:
                self.mode = "rollback"
                self.start(None, rollback=True)
            else:
                self.result = FAILED


def oracle(sim: "Simulation") -> StrategyRun:
    return _run_oracle(sim, _Oracle(sim))


# ---------------------------------------------------------------------------------------------------------
# ideal-poller: the oracle's rules, knowing the target groups only through one look per health-check interval
# ---------------------------------------------------------------------------------------------------------
class _IdealPoller(_Oracle):
    """The oracle, except that it knows a target's health only as it was at its last look, and looks at every
    target group exactly once per health-check interval (the shortest of the groups'), at a phase drawn from
    the seed (a poller cannot know when a new target's first check will run).

    It models the best a poller that obeys albgate's polling rule (no faster than the group can change) can hope for,
    and is generous everywhere else: no jitter, no task latency, no Lambda or Step Functions time, no
    Describe* cost or throttling; Kubernetes knowledge (pods, their IPs, their deletion) free and instant; and
    the drain (a target turning `draining`, then out of the data plane) seen the instant it happens, as if that
    cost no look. Its gap to the oracle is therefore only the price of learning health once per interval.
    """

    def __init__(self, sim: "Simulation") -> None:
        super().__init__(sim)
        self.interval = min(tg.interval for tg in sim.alb.tgs.values())
        self.looks = 0
        self.health: dict[tuple[str, str, int], str] = {}  # (arn, ip, id(pod)) -> state at the last look
        sim.loop.after(sim.rng("ideal-poller").uniform(0, self.interval), self._look)

    def _look(self) -> None:
        if self.result is not None:
            return
        self.health = {(s.arn, s.ip, id(s.pod)): s.state for s in super().view()}
        self.looks += 1
        self.sim.loop.after(self.interval, self._look)

    def run_extra(self) -> dict[str, Any]:
        return {"looks": self.looks}

    def view(self) -> list[_Seen]:
        return [s if s.state == DRAINING else _Seen(s.arn, s.ip, self.health.get((s.arn, s.ip, id(s.pod)), INITIAL),
                                                     s.pod)
                for s in super().view()]


def _run_oracle(sim: "Simulation", o: _Oracle) -> StrategyRun:
    sc = sim.scenario
    start = sim.clock.t
    o.start({sc.rollout_container: sc.rollout.image})
    sim.add_observer(o.tick)
    try:
        sim.run_until(_horizon(sim), stop=lambda: o.result is not None)
    finally:
        sim.remove_observer(o.tick)
    extra: dict[str, Any] = {"steps": o.steps_log, **o.run_extra()}
    if o.result is None:
        return StrategyRun(TIMED_OUT, start, None, detail=f"stuck in {o.mode} step {o.step + 1}", extra=extra)
    return StrategyRun(o.result, start, sim.clock.t, detail=f"plan {o.plan}", extra=extra)


def ideal_poller(sim: "Simulation") -> StrategyRun:
    return _run_oracle(sim, _IdealPoller(sim))


register_strategy("kubernetes-default", _set_image_and_wait, prepare=_unlabelled,
                  description="kubectl set image on an unlabelled namespace: the example app's problem")
register_strategy("readiness-gate", _set_image_and_wait, prepare=_labelled_before_pods,
                  description="the controller's documented fix alone: namespace labelled before the pods, "
                              "controller gates")
register_strategy("hardened-readiness-gate", _set_image_and_wait, prepare=_hardened_and_labelled,
                  description="the controller's documented fix on an app hardened as albgate's bootstrap does: "
                              "preStop, grace period")
register_strategy("oracle", oracle,
                  description="albgate's plan with a perfect, instant gate: the lower bound of a gated rollout")
register_strategy("ideal-poller", ideal_poller, prepare=bootstrap_hardened,
                  description="the oracle seeing the target groups once per health-check interval, at no cost: "
                              "the best a poller can do")

# Argo Rollouts with target group verification, the peer albgate is measured against, registers `argo-rollouts`.
# Imported last: it imports the names above from this module.
from albgate.sim import argo_strategy  # noqa: E402,F401
