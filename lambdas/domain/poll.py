"""How long to wait before looking again: never faster than a target group can change, with jitter.

Invariant: a wait before a DescribeTargetHealth call that asks about health is at least the target group's
health-check interval (a target's health changes at most once per check: docs/facts.md, ALB target health), longer
while the load balancer is still registering every target the gate waits for; a wait before asking whether a
draining target has left is a third of it (at least 5 s), since draining ends with the last in-flight request
rather than at a check. Waits are whole seconds (a Wait state's SecondsPath).

Jitter: so that concurrent rollouts do not poll in lock-step, the waits while pods start, while a drain
runs, while registration is slow and after a throttle are stretched by a deterministic jitter of up to
``JITTER`` (and doubled per consecutive throttle up to ``THROTTLE_CAP_SECONDS``). That sets the phase of a
gate's looks, which differs from one execution to the next. Between two looks at the health of targets
that are being checked, the wait is exactly the interval: a target turns healthy at a check of its own
phase, which no poller knows, so every second added there is a second added to the step's expected lag
(half the gap between looks) and to its worst lag (the whole gap); docs/benchmarks.md, section 2, has what
a jitter of up to 20 % on those waits cost.
"""

from __future__ import annotations

import hashlib
import math

JITTER = 0.2
# While new pods are still starting, or the Deployment controller has yet to act, only the Kubernetes API is
# read (no Describe* token is spent); the controller reacts within a second, pods start in seconds.
POD_START_POLL_SECONDS = 3
# A drain waits for its targets to leave the pool: a deregistration (the controller's, or albgate's once it names
# them), not a health check, so the drain is polled a few times per interval (at least every 5 s apart).
DRAIN_POLLS_PER_INTERVAL = 3
MIN_DRAIN_POLL_SECONDS = 5
# A target albgate has just deregistered keeps receiving new requests until the load balancer's data plane has
# taken it out, about 10 s by users' reports (docs/facts.md, Deregistration and draining): the look that verifies a
# drain albgate started itself comes no sooner, so an execution does not end while the old pods may still get new
# requests. ELB shows the target `draining` from the call on and until its deregistration delay ends, so waiting
# longer would show nothing more.
DEREGISTRATION_LAG_SECONDS = 10
# A pod the scheduler cannot place (PodScheduled=False, Unschedulable) waits for room on a node, which a node
# autoscaler adds in tens of seconds to minutes, not in the seconds a pod takes to start: while every starting
# pod is unschedulable, look every 15 s, which delays such a pod's start by at most that and keeps a long
# wait from costing a state transition every 3 s.
UNSCHEDULABLE_POLL_SECONDS = 15
THROTTLE_CAP_SECONDS = 120
# Once a step's gate has passed and albgate has opened the released pods' gates, the kubelet writes them Ready at
# its next pod sync and the Deployment controller scales the old ReplicaSet down within its informer's latency
# (docs/facts.md, "Kubelet and controllers: Ready after a gate, status writes"): a second or two. So the drain's
# looks for that scale-down come a second apart for SCALE_DOWN_QUICK_SECONDS after the gate passed, then at the
# pods' pace (another gate on the pods, the Load Balancer Controller's, can hold them out of Ready for longer).
SCALE_DOWN_QUICK_SECONDS = 4
SCALE_DOWN_QUICK_POLL_SECONDS = 1
# Where the Load Balancer Controller's gate is on the pods, the gate waits for the controller to write a target
# healthy on its pod, which it does at its first reconcile after ELB said so; the gate learns it at its next read of
# the pods, half a wait later on average. Those reads cost no Describe* token, only a look of the state machine
# (about three state transitions). The controller registers a pod's target once it is ContainersReady and looks
# again at its requeue (gate.CONTROLLER_REQUEUE_SECONDS) later, so its first write of `healthy` comes no sooner
# unless something else makes it reconcile: from then on (rollout.gate.quick_conditions_look) up to
# CONDITIONS_QUICK_LOOKS looks of a step come CONDITIONS_POLL_SECONDS apart, without jitter (no shared bucket to
# spread them over); the others at the pods' pace. docs/benchmarks.md has what it costs and saves.
CONDITIONS_POLL_SECONDS = 2
CONDITIONS_QUICK_LOOKS = 10
# A wait for something only the cluster shows (the controller's conditions on the pods, pods starting, its
# checkpoint on a binding, the old ReplicaSet's scale-down) is spent inside the Check Target Health or Verify Drain
# task, watching those objects (a Kubernetes watch, whose events come as the API server commits each change:
# docs/facts.md, "Kubernetes watches"), for up to ``policy.watch_seconds`` of the task: its next look comes at the
# change, not up to a wait later, and the looks in between cost no state transitions. A wait that would end past that
# time, or one for ELB, is a Wait state as before. The default, 20 s, leaves the task's looks the rest of the
# function's 60 s timeout; 30 s is the most a policy may ask.
WATCH_IN_TASK_SECONDS = 20
MAX_WATCH_IN_TASK_SECONDS = 30
# Once a gate has taken old pods out of their Service's endpoints (rollout.out_of_service), the controller reconciles
# the binding within its informer's latency, a second or so, and deregisters their targets at once where its queue of
# such calls is short: the looks for its checkpoint come OUT_OF_SERVICE_QUICK_POLL_SECONDS apart for this long, then
# at the pods' pace (each look costs state transitions, not Describe* calls).
OUT_OF_SERVICE_QUICK_SECONDS = 4
OUT_OF_SERVICE_QUICK_POLL_SECONDS = 1
# How long a gate waits for the controller's proof before albgate deregisters the pods it took out of service itself,
# and how long at most before it releases the step without any proof. A controller that keeps up deregisters them
# within its reconcile latency, a second or two; one whose RegisterTargets/DeregisterTargets calls queue in its
# client-side limiter (docs/facts.md, "ELB API throttling") takes as long as its queue, which a thousand rollouts at
# once make minutes long for a few steps (docs/benchmarks.md, a thousand at once: about 21 s at the 90th percentile,
# 87-162 s at the 99th, up to 463.5 s). albgate's own call then comes after OUT_OF_SERVICE_PROOF_SECONDS, and, while the account's
# bucket refuses it, again after twice as long each time (120 s, 240 s) and a last time at
# OUT_OF_SERVICE_RELEASE_SECONDS, when the step is released anyway (the drain then proves or deregisters the
# targets as it always did); the step's deadline, which bounds the gate's looks, bounds this wait too. Waiting
# costs the step time while the old pods out of service serve nothing, which the new ones healthy make up for;
# releasing without the proof may cost requests. Past the proof's wait the gate looks every
# OUT_OF_SERVICE_SLOW_POLL_SECONDS: the controller's queue drains in minutes, not seconds.
OUT_OF_SERVICE_PROOF_SECONDS = 60
OUT_OF_SERVICE_RELEASE_SECONDS = 8 * OUT_OF_SERVICE_PROOF_SECONDS
OUT_OF_SERVICE_SLOW_POLL_SECONDS = 15
# Where no controller writes its reconcile checkpoint (EKS Auto Mode's managed controller, an older one), the proof
# that old pods taken out of service left the pool is a look at ELB (rollout.out_of_service): the first comes
# OUT_OF_SERVICE_FIRST_LOOK_SECONDS after they went out, when a controller that keeps up has reconciled the binding
# and deregistered them (its informer's latency and one call); each later one twice as long after they went out as
# the one before, no more than OUT_OF_SERVICE_SLOW_POLL_SECONDS apart, so that a controller whose calls queue costs
# a handful of Describe* tokens, not one every few seconds, until albgate's own call at OUT_OF_SERVICE_PROOF_SECONDS.
OUT_OF_SERVICE_FIRST_LOOK_SECONDS = 2
# How long a step's released targets are left to the controller without proof before albgate deregisters them
# itself (rollout.left). A controller that keeps up deregisters a terminating pod's target in the reconcile the pod's
# change starts, within a second or two of its reconcile latency and its client-side limiter; the load balancer stops
# sending a deregistered target new requests about 10 s later (DEREGISTRATION_LAG_SECONDS); albgate's default preStop
# keeps an old pod serving 30 s after it began terminating (manifests.HardeningPolicy.pre_stop_seconds). So
# deregistering by 10 s after the scale-down still leaves the pod 10 s of preStop once the lag is over. No wait of the
# rollout runs past it while something is left (rollout.observe.next_look).
LEFT_TO_CONTROLLER_SECONDS = 10
# While the load balancer is still registering every target a step waits for (`initial`,
# Elb.RegistrationInProgress), no health check has run on them and none will until registration ends: seconds on
# most ALBs, minutes on some (docs/facts.md, ALB target health: 3-5 min reported for NLB IP targets). So the longer
# registration has already taken, the less often the gate looks: after e seconds of it, every max(interval, e / 10)
# seconds, capped at 30. A look then comes about a tenth of the time already spent registering (plus jitter) after
# the targets could first have turned healthy, and a 4-minute registration costs about 25 looks instead of 45.
REGISTRATION_POLL_FRACTION = 0.1
REGISTRATION_POLL_CAP_SECONDS = 30
# Where no controller's gate is on a step's pods, the gate asks ELB first no sooner after they turned
# ContainersReady than an earlier step of the rollout took at least to turn healthy (rollout.gate.expected_turn_at),
# less this fraction of it: registrations of one kind vary by a fraction of their length (180-300 s where they are
# slow, docs/facts.md, "ALB target health"). docs/benchmarks.md, section 3, has what it saves and costs.
EXPECTED_TURN_EARLY_FRACTION = 0.2


def jitter_fraction(key: str) -> float:
    """A stable number in [0, 1) from a key (execution name, step, poll number): same input, same wait."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def target_poll_seconds(interval_seconds: int, key: str, throttles: int = 0) -> int:
    """The gate's wait before its next look at the targets' health: the interval (no jitter, see above), or
    after ``throttles`` consecutive throttles, the interval doubled that many times (capped), jittered."""
    base = max(1, interval_seconds)
    if not throttles:
        return base
    return _jittered(min(THROTTLE_CAP_SECONDS, base * 2**throttles), key)


def registration_poll_seconds(interval_seconds: int, registering_for: float, key: str) -> int:
    """The gate's wait while every target it waits for is still being registered (see REGISTRATION_POLL_*):
    the interval while registration is young, then longer (and jittered, being longer than the interval)."""
    paced = min(REGISTRATION_POLL_CAP_SECONDS, math.ceil(max(0.0, registering_for) * REGISTRATION_POLL_FRACTION))
    base = max(1, interval_seconds)
    return _jittered(paced, key) if paced > base else base


def drain_poll_seconds(interval_seconds: int, key: str, throttles: int = 0) -> int:
    if throttles:
        return target_poll_seconds(interval_seconds, key, throttles)
    return _jittered(max(MIN_DRAIN_POLL_SECONDS, math.ceil(interval_seconds / DRAIN_POLLS_PER_INTERVAL)), key)


def deregistered_poll_seconds(key: str) -> int:
    return _jittered(DEREGISTRATION_LAG_SECONDS, key)


def scale_down_poll_seconds(key: str, since_gate_passed: float | None) -> int:
    """The drain's wait for the Deployment controller to scale the old ReplicaSet down, ``since_gate_passed``
    seconds after the step's gate passed (None: not known, the pods' pace)."""
    if since_gate_passed is not None and 0 <= since_gate_passed < SCALE_DOWN_QUICK_SECONDS:
        return SCALE_DOWN_QUICK_POLL_SECONDS
    return pod_poll_seconds(key)


def out_of_service_poll_seconds(key: str, since_out: float | None, *, quick: bool = True) -> int:
    """The gate's wait for the controller to deregister old pods it took out of service ``since_out`` seconds ago
    (None: not known): OUT_OF_SERVICE_QUICK_POLL_SECONDS for OUT_OF_SERVICE_QUICK_SECONDS (``quick``: where the
    proof is the controller's checkpoint, read from the Kubernetes API), then the pods' pace until
    OUT_OF_SERVICE_PROOF_SECONDS, then OUT_OF_SERVICE_SLOW_POLL_SECONDS (no later than the bound)."""
    if quick and since_out is not None and 0 <= since_out < OUT_OF_SERVICE_QUICK_SECONDS:
        return OUT_OF_SERVICE_QUICK_POLL_SECONDS
    if since_out is not None and OUT_OF_SERVICE_PROOF_SECONDS <= since_out < OUT_OF_SERVICE_RELEASE_SECONDS:
        return max(1, min(OUT_OF_SERVICE_SLOW_POLL_SECONDS, math.ceil(OUT_OF_SERVICE_RELEASE_SECONDS - since_out)))
    return pod_poll_seconds(key)


def out_of_service_look_due(out_at: float, looked_at: float | None) -> float:
    """When the next look at ELB for the proof that old pods taken out of service at ``out_at`` left the pool is
    due, the last look since then having been at ``looked_at`` (None: none yet): OUT_OF_SERVICE_FIRST_LOOK_SECONDS
    after they went out, then twice as long after as the look before, no more than OUT_OF_SERVICE_SLOW_POLL_SECONDS
    after it."""
    if looked_at is None or looked_at < out_at:
        return out_at + OUT_OF_SERVICE_FIRST_LOOK_SECONDS
    since = looked_at - out_at
    return looked_at + min(OUT_OF_SERVICE_SLOW_POLL_SECONDS, max(OUT_OF_SERVICE_FIRST_LOOK_SECONDS, since))


def pod_poll_seconds(key: str, *, unschedulable: bool = False) -> int:
    return _jittered(UNSCHEDULABLE_POLL_SECONDS if unschedulable else POD_START_POLL_SECONDS, key)


def _jittered(base: int, key: str) -> int:
    """base plus a whole number of seconds from 0 to ceil(base * JITTER), spread evenly by the key."""
    spread = math.ceil(base * JITTER) + 1
    return base + int(jitter_fraction(key) * spread)
