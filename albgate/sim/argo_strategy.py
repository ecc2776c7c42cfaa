"""The `argo-rollouts` strategy: Argo Rollouts v1.9.1 run with ``--aws-verify-target-group``, the peer a release
engineer would pick instead of albgate, expressed as what it does to the Deployment's pods and to the ELB API.

Job: roll the scenario's Deployment as a canary Rollout with ALB traffic routing does, with target group
verification before the old ReplicaSet goes, and say how it ended. Every rule here is in docs/facts.md, "Argo
Rollouts target group verification", with the line of the v1.9.1 source it comes from.
Invariant: the strategy acts on the world only through the Deployment's spec and the ELB API (DescribeTargetHealth
under the caller ``argo-rollouts``, from the account's shared Describe* bucket, so it can be throttled); no
decision reads a target's health state, because Argo Rollouts' verification does not.

What it models:
- Steps: albgate's plan (``lambdas.domain.plan.step_targets``) as setWeight steps. Each step raises the new
  ReplicaSet to the step's pod count while the old (stable) one keeps every replica (a traffic-routed canary
  without dynamicStableScale scales the stable side down only after full promotion); a step is done when the new
  ReplicaSet has that many available pods. No pause steps, no analysis.
- Full promotion after the last step, then verification. A check makes one DescribeTargetHealth per IP
  TargetGroupBinding of the Service and is verified when every Ready pod of the new ReplicaSet (the stable
  Service's Endpoints after the switch) is listed with its IP and port, in any state: `initial`, `unhealthy` and
  `draining` count. Not verified: the next check 10 s later.
- A throttled DescribeTargetHealth: the AWS SDK's standard retryer makes 3 attempts in all, waiting a jittered
  backoff (uniform in [0, 2^n) s before retry n); when the last is throttled too, the canary path swallows the
  error and requeues nothing, so the next check comes with the informer's resync, 15 min later. No abort, no
  rollback.
- Verified: the old ReplicaSet gets a scale-down deadline scaleDownDelaySeconds (30 s) away and is scaled to 0
  then; the run ends when the Deployment has no old replica left (``rollout_seconds``). ``extra["promoted_after"]``
  is when ``kubectl argo rollouts status`` would already say Healthy (a traffic-routed canary is Healthy once fully
  promoted, before verification).
- Before full promotion, no progress for progressDeadlineSeconds (the app's, 600 s by default as in Argo): the
  Rollout is Degraded, not aborted (progressDeadlineAbort is false by default); the run ends `failed` there, as
  ``kubectl argo rollouts status`` returns on Degraded.
- The world is the app as albgate's bootstrap leaves it (``bootstrap_hardened``: preStop, grace period, 5 s health
  checks), as for ``albgate`` and ``hardened-readiness-gate``, so what differs between them is the rollout rule,
  not the app. Argo Rollouts changes none of these itself. The namespace label and the Load Balancer Controller
  (its webhook's failure policy, its back-off cap) are the scenario's: an Argo user installs the controller.

How it is expressed: the simulation has no Rollout resource, so the Deployment's ReplicaSets stand for the
Rollout's. A step patches maxSurge to the step's count (maxUnavailable 0), lets the Deployment controller scale
the new ReplicaSet up in that one sync, and pauses the Deployment at once, so the controller scales nothing down;
resuming it at the scale-down deadline lets the controller remove the old pods, as Argo's scale-down does.

What it leaves out:
- Two Services and two target groups. A traffic-routed canary has a stable and a canary Service, each with its own
  target group, traffic split by ALB weights, and the stable Service's selector switched at full promotion. The
  simulation has one Service and one target group, whose targets are the pods as they become ContainersReady, with
  traffic spread over the healthy ones. So the new targets are registered long before verification, and what a real
  selector switch adds (the new pods registered anew, `initial`, in the stable group) is not counted: the numbers
  show what the verification rule alone lets through, a lower bound on Argo Rollouts' losses.
- Weight verification after each setWeight step (DescribeLoadBalancers, DescribeTargetGroups, DescribeTags,
  DescribeListeners, DescribeRules; no DescribeTargetHealth): not made, so not charged to the bucket.
- Reconciles triggered by other changes (a Rollout or ReplicaSet update) that would check sooner than 10 s or
  15 min; the SDK's retry quota (500 tokens, 5 per retry: it runs dry only after 100 retries); the controller's
  own latency; the blue-green strategy, whose error path differs (a rate-limited requeue, 1 ms doubling to 10 s).
- AnalysisTemplates, Argo Rollouts' answer to a broken version: without one, a version whose targets are
  `unhealthy` is verified (they are registered) and promoted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from albgate.sim.manifests import bootstrap_hardened
from albgate.sim.strategies import FAILED, SUCCEEDED, TIMED_OUT, StrategyRun, register_strategy
from lambdas.domain.errors import ThrottledError
from lambdas.domain.plan import step_targets
from lambdas.domain.ports import DeploymentPatch, ElbPort, Service, TargetGroupBinding, TargetHealth

if TYPE_CHECKING:
    from albgate.sim.kube import RSObj
    from albgate.sim.simulation import Simulation

CALLER = "argo-rollouts"
# docs/facts.md, Argo Rollouts target group verification: the v1.9.1 defaults.
VERIFY_RETRY_SECONDS = 10.0  # ROLLOUT_VERIFY_RETRY_INTERVAL: requeue while a check is not verified
RESYNC_SECONDS = 15 * 60.0  # DefaultRolloutResyncPeriod: the next reconcile after a swallowed error
SCALE_DOWN_DELAY_SECONDS = 30.0  # DefaultScaleDownDelaySeconds
SDK_MAX_ATTEMPTS = 3  # aws-sdk-go-v2 retry.Standard: attempts per API call, the first included


@dataclass(frozen=True)
class VerifyResult:
    """One target group's verification, as Argo Rollouts' ``TargetGroupVerifyResult``."""

    endpoints_registered: int
    endpoints_total: int

    @property
    def verified(self) -> bool:
        return self.endpoints_registered == self.endpoints_total


def verify_target_group(endpoints: set[tuple[str, int]], health: list[TargetHealth]) -> VerifyResult:
    """Argo Rollouts' rule (``VerifyTargetGroupBinding``): an endpoint IP:port counts once it is listed in the
    target group, whatever its state; listed targets that are not endpoints are ignored. No endpoint at all is
    verified (0 of 0)."""
    listed = {(h.target_id, h.port) for h in health}
    return VerifyResult(len(endpoints & listed), len(endpoints))


class _ArgoCanary:
    def __init__(self, sim: "Simulation", elb: ElbPort | None = None) -> None:
        self.sim, self.cluster = sim, sim.cluster
        self.d = sim.deployment()
        self.plan = step_targets(self.d.replicas, sim.scenario.rollout.policy)
        self.elb = elb or sim.elb_for(CALLER)
        self.rng = sim.rng(CALLER)  # the SDK's backoff jitter
        self.horizon = sim.rollout_start + sim.scenario.horizon_seconds
        self.start = sim.clock.t
        self.new_template: Any = None
        self.last_progress = self.start
        self.steps: list[tuple[int, float]] = []  # (new pods, seconds the step took)
        # (began, ended: seconds since the start, verified | unverified | error); a check spans the SDK's backoffs
        self.checks: list[tuple[float, float, str]] = []
        self.attempts = self.throttled = 0  # DescribeTargetHealth attempts, and how many were throttled
        self.verified_states: Counter[str] = Counter()  # the endpoints' target states at the check that passed
        self.promoted_at: float | None = None
        self.verified_at: float | None = None

    # --- the world as Argo Rollouts reads it -------------------------------------------------------------
    def _new_rs(self) -> "RSObj | None":
        return next((rs for rs in self.d.rss if rs.template == self.new_template), None)

    def _available(self) -> int:
        new = self._new_rs()
        return new.counts(self.sim.clock.t, self.d.min_ready_seconds)[2] if new else 0

    def _status(self) -> tuple[int, int, int]:
        """(updated, ready, available) pods: what ``RolloutProgressing`` compares between two syncs."""
        now, mr = self.sim.clock.t, self.d.min_ready_seconds
        counts = [rs.counts(now, mr) for rs in self.d.rss]
        new = self._new_rs()
        return (new.counts(now, mr)[0] if new else 0, sum(c[1] for c in counts), sum(c[2] for c in counts))

    def _service(self) -> Service:
        sc = self.sim.scenario
        return self.cluster.services[(sc.namespace.name, sc.service.name)]

    def _bindings(self, svc: Service) -> list[TargetGroupBinding]:
        """The TargetGroupBindings that name the Service (``GetTargetGroupBindingsByService``)."""
        return sorted((b for b in self.cluster.tgbs.values()
                       if b.namespace == svc.namespace and b.service_name == svc.name), key=lambda b: b.name)

    @staticmethod
    def _target_port(svc: Service, tgb: TargetGroupBinding) -> int | None:
        """``getNumericTargetPort``: the Service port the binding names, resolved to its numeric target port."""
        for p in svc.ports:
            if p.port == tgb.service_port or (p.name and p.name == tgb.service_port):
                return p.target_port if isinstance(p.target_port, int) else None
        return None

    # --- steps ---------------------------------------------------------------------------------------------
    def _scale_new(self, target: int, images: dict[str, str] | None) -> None:
        """Raise the new ReplicaSet to ``target`` pods, keeping every old one (see the module docstring)."""
        d, sim = self.d, self.sim
        self.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(
            images=images, max_surge=target, max_unavailable=0, paused=False))
        if images:
            self.new_template = d.template
        scaled = sim.run_until(sim.clock.t, stop=lambda: (rs := self._new_rs()) is not None and rs.spec >= target)
        self.cluster.patch_deployment(d.namespace, d.name, DeploymentPatch(paused=True))
        if not scaled:
            raise RuntimeError(f"the Deployment controller did not scale the new ReplicaSet to {target} pods")

    def _wait_available(self, target: int) -> str:
        """Until the new ReplicaSet has ``target`` available pods: ``done``, ``degraded`` (no progress for
        progressDeadlineSeconds) or ``horizon``."""
        sim, deadline = self.sim, self.d.progress_deadline_seconds
        seen = self._status()
        while self._available() < target:
            limit = min(self.last_progress + deadline, self.horizon)
            sim.run_until(limit, stop=lambda: self._status() != seen or self._available() >= target)
            now_status = self._status()
            if (now_status[0] != seen[0] or now_status[1] > seen[1] or now_status[2] > seen[2]):
                self.last_progress = sim.clock.t
            seen = now_status
            if self._available() >= target:
                break
            if sim.clock.t >= self.horizon:
                return "horizon"
            if sim.clock.t >= self.last_progress + deadline:
                return "degraded"
        return "done"

    # --- verification ----------------------------------------------------------------------------------------
    def _describe(self, arn: str) -> list[TargetHealth] | None:
        """One ``GetTargetGroupHealth``: DescribeTargetHealth with the SDK's retries; None when every attempt was
        throttled."""
        for attempt in range(1, SDK_MAX_ATTEMPTS + 1):
            self.attempts += 1
            try:
                return self.elb.describe_target_health(arn)
            except ThrottledError:
                self.throttled += 1
                if attempt < SDK_MAX_ATTEMPTS:
                    self.sim.advance(self.rng.uniform(0, 2 ** attempt))
        return None

    def _check(self) -> str:
        """One ``awsVerifyTargetGroups`` on the stable Service, which now selects the new ReplicaSet's pods."""
        svc, new = self._service(), self._new_rs()
        assert new is not None
        ips = {p.ip for p in new.active() if p.ready and p.ip}  # the Endpoints' addresses: Ready pods only
        states: Counter[str] = Counter()
        for tgb in self._bindings(svc):
            port = self._target_port(svc, tgb)
            if tgb.target_type != "ip" or port is None:
                continue  # not applicable: nothing to verify, no call
            health = self._describe(tgb.target_group_arn)
            if health is None:
                return "error"
            endpoints = {(ip, port) for ip in ips}
            if not verify_target_group(endpoints, health).verified:
                return "unverified"
            states.update(h.state for h in health if (h.target_id, h.port) in endpoints)
        self.verified_states = states
        return "verified"

    # --- the rollout ---------------------------------------------------------------------------------------
    def _end(self, outcome: str, detail: str) -> StrategyRun:
        t = self.sim.clock.t

        def since(x: float | None) -> float | None:
            return None if x is None else round(x - self.start, 3)

        extra = {"steps": self.steps, "promoted_after": since(self.promoted_at),
                 "verified_after": since(self.verified_at), "checks": self.checks,
                 "describe_attempts": self.attempts, "throttled_attempts": self.throttled,
                 "verified_states": dict(self.verified_states)}
        return StrategyRun(outcome, self.start, None if outcome == TIMED_OUT else t, detail=detail, extra=extra)

    def run(self) -> StrategyRun:
        sim, sc = self.sim, self.sim.scenario
        for i, target in enumerate(self.plan):
            step_start = self.last_progress = sim.clock.t  # a new step index is progress (RolloutProgressing)
            self._scale_new(target, {sc.rollout_container: sc.rollout.image} if i == 0 else None)
            waited = self._wait_available(target)
            if waited == "degraded":
                return self._end(FAILED, f"Degraded: ProgressDeadlineExceeded in step {i + 1} ({target} new pods); "
                                         f"not aborted (progressDeadlineAbort false), nothing rolled back")
            if waited == "horizon":
                return self._end(TIMED_OUT, f"step {i + 1} ({target} new pods) still waiting for available pods")
            self.steps.append((target, round(sim.clock.t - step_start, 3)))
        self.promoted_at = sim.clock.t
        sim.log("strategy", "argo-rollouts: fully promoted; verifying the target group")
        while True:
            began = sim.clock.t
            result = self._check()
            self.checks.append((round(began - self.start, 3), round(sim.clock.t - self.start, 3), result))
            if result == "verified":
                break
            wait = VERIFY_RETRY_SECONDS if result == "unverified" else RESYNC_SECONDS
            if sim.clock.t + wait >= self.horizon:
                sim.run_until(self.horizon)
                return self._end(TIMED_OUT, f"fully promoted, target group never verified (last check: {result}); "
                                            f"the old ReplicaSet kept")
            sim.advance(wait)
        self.verified_at = sim.clock.t
        sim.log("strategy", f"argo-rollouts: target group verified ({dict(self.verified_states)}); old ReplicaSet "
                            f"scaled down in {SCALE_DOWN_DELAY_SECONDS:g} s")
        deadline = sim.clock.t + SCALE_DOWN_DELAY_SECONDS
        if deadline >= self.horizon:
            sim.run_until(self.horizon)
            return self._end(TIMED_OUT, "the horizon came before the scale-down deadline")
        sim.run_until(deadline)
        self.cluster.patch_deployment(self.d.namespace, self.d.name, DeploymentPatch(paused=False))
        if not sim.run_until(self.horizon, stop=lambda: self.cluster.deployment_complete(self.d)):
            return self._end(TIMED_OUT, "the old ReplicaSet did not scale down before the horizon")
        return self._end(SUCCEEDED, f"plan {self.plan}, verified after {len(self.checks)} check(s)")


def run_argo_rollouts(sim: "Simulation", elb: ElbPort | None = None) -> StrategyRun:
    """One rollout; ``elb`` (for tests) replaces the ELB API the verification calls."""
    return _ArgoCanary(sim, elb).run()


register_strategy(
    "argo-rollouts",
    run_argo_rollouts,
    prepare=lambda scenario: bootstrap_hardened(scenario, label_namespace=False, controller=False),
    description="Argo Rollouts canary with --aws-verify-target-group: old pods go 30 s after every new pod is "
                "registered, in any state",
)
