"""The stories the handlers are driven through while their AWS calls are recorded, every deployed function in one.

Job: reach, through the real handlers and adapters, every path on which a function calls AWS, the rare ones
included: a two-step rollout whose first new pod nobody registers (no reconcile of the controller comes for it),
so the gate registers it itself once the grace has passed; whose Load Balancer Controller is then down, so Verify
Drain deregisters a released pod's target itself and hands the rest of its drain over unseen, and the next step's
gate deregisters the target of an old pod Kubernetes removed by itself; DescribeTargetHealth throttled in the gate
(albgate's share of the Describe* calls steps back); the last drain deregisters at once and ends on that call, and
a rollback's last drain sees its targets out of the pool; the image tag pinned through ECR; the Describe* budget table; then
the gate keeper, an approval, a roll-back decision. The rollout's policy watches two CloudWatch alarms, one by name
and one by prefix: Preflight, Start Step, every look of the gate and of the drain read them, and after step 1's
gate passed one of them goes to INSUFFICIENT_DATA and back, so step 2's Start Step reads its history. The ECR
trigger's push, queue, hand-over, release and replay on the lock table, Step Functions and the event bus. The
bootstrap, step by step, the controller's helm install included.

Each step says what it must have reached (``expect``), so a story that drifts away from the path it is meant
to record fails as such instead of silently recording less.

Invariant: the world is changed between steps only as Kubernetes, the load balancer or CloudWatch would change it
(the Deployment controller creating or removing pods, the Load Balancer Controller registering targets, or not; an
alarm's metric moving its state); a handler's input is the previous handler's output wherever the state machine
passes it so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lambdas.domain.gate import REGISTRATION_GRACE_SECONDS
from lambdas.domain.ports import ALBGATE_GATE
from tests.adapters import k8s_objects as k8s
from tests.bootstrap.conftest import deployment as boot_deployment
from tests.bootstrap.conftest import ingress as boot_ingress
from tests.bootstrap.conftest import service as boot_service
from tests.iam.private_stories import bootstrap_payloads
from tests.iam.recorder import RecordedCall
from tests.iam.requests import iam_action
from tests.iam.world import ACCOUNT, MANIFEST, StoryAborted, World, called
from tests.trigger.conftest import ecr_event, status_event

OLD_IMAGE = "nginx:1.27"
OLD_HASH, NEW_HASH = "old111", "new222"
LABELS = {"app": "nginx"}
READY = [{"type": t, "status": "True"} for t in ("PodScheduled", "ContainersReady", "Ready")]
DEREGISTER = "elasticloadbalancing:DeregisterTargets"
REGISTER = "elasticloadbalancing:RegisterTargets"
DESCRIBE_HEALTH = "elasticloadbalancing:DescribeTargetHealth"
DESCRIBE_GROUPS = "elasticloadbalancing:DescribeTargetGroups"
DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
DESCRIBE_ALARMS = "cloudwatch:DescribeAlarms"
ALARM_HISTORY = "cloudwatch:DescribeAlarmHistory"
# The rollout's policy.alarms: one alarm by name, one through a prefix.
ERRORS_ALARM = "nginx-target-5xx"
LATENCY_PREFIX = "nginx-latency-"
LATENCY_ALARM = LATENCY_PREFIX + "p99"


def _all(*checks: tuple[bool, str]) -> str:
    """'' when every check holds, else what did not."""
    return "; ".join(message for ok, message in checks if not ok)


def _deregistered(calls: list[RecordedCall]) -> set[str]:
    return {t["Id"] for c in called(calls, DEREGISTER) for t in c.params["Targets"]}


def _registered(calls: list[RecordedCall]) -> set[tuple[str, int]]:
    return {(t["Id"], t["Port"]) for c in called(calls, REGISTER) for t in c.params["Targets"]}


def _cloudwatch(calls: list[RecordedCall], action: str) -> list[RecordedCall]:
    """The calls authorized as ``action`` (CloudWatch's are filed under its signing name: tests/iam/requests.py)."""
    return [c for c in calls if iam_action(c) == action]


def _watched(calls: list[RecordedCall]) -> tuple[bool, str]:
    """The policy's alarms were read: the named one, and those under the prefix."""
    reads = _cloudwatch(calls, DESCRIBE_ALARMS)
    by_name = any(c.params.get("AlarmNames") == [ERRORS_ALARM] for c in reads)
    by_prefix = any(c.params.get("AlarmNamePrefix") == LATENCY_PREFIX for c in reads)
    return by_name and by_prefix, f"the policy's alarms were not both read: {[c.params for c in reads]}"


def _metrics_read(calls: list[RecordedCall], times: int = 1) -> tuple[bool, str]:
    """The target group's ALB metrics were read ``times`` times (GetMetricData)."""
    reads = _cloudwatch(calls, "cloudwatch:GetMetricData")
    return len(reads) == times, f"GetMetricData was called {len(reads)} times, not {times}"


def _history_read(calls: list[RecordedCall]) -> list[str]:
    return [str(c.params.get("AlarmName")) for c in _cloudwatch(calls, ALARM_HISTORY)]


# ---------------------------------------------------------------------------------------------------------
# A rollout of two steps while the Load Balancer Controller deregisters nothing
# ---------------------------------------------------------------------------------------------------------
class RolloutWorld:
    """The configured application on the fake API server and behind the ALB, mid-rollout as the story goes."""

    def __init__(self, world: World) -> None:
        self.world = world
        app = world.config.applications[0]
        self.app = app
        self.cluster, self.ns, self.name, self.container = app.cluster, app.namespace, app.deployment, app.container
        self.api = world.apiserver
        self.tg = world.target_group("k8s-readines-nginxsvc", app.cluster)
        tpl = k8s.template([k8s.container(name=self.container, image=OLD_IMAGE)], labels=dict(LABELS))
        dep = k8s.deployment(self.name, self.ns, replicas=3, tpl=tpl, revision=1)
        self.api.put("namespaces", k8s.namespace(self.ns))
        self.api.put("deployments", dep, "apps")
        self.old_rs = k8s.replica_set(dep, 1, OLD_HASH, replicas=3)
        self.api.put("replicasets", self.old_rs, "apps")
        self.api.put("services", k8s.service(app.service, self.ns, selector=dict(LABELS),
                                             ports=[{"port": 80, "targetPort": 80, "protocol": "TCP"}]))
        self.api.put("targetgroupbindings", k8s.target_group_binding(
            "k8s-readines-nginxsvc-0123456789", self.ns, targetGroupARN=self.tg, targetType="ip",
            serviceRef={"name": app.service, "port": 80}), "elbv2.k8s.aws")
        for name, ip in (("old-a", "10.0.1.10"), ("old-b", "10.0.1.11"), ("old-c", "10.0.1.12")):
            self.old_pod(name, ip)
        world.register(self.tg, "10.0.1.10", "10.0.1.11", "10.0.1.12")
        # The alarms the rollout's policy watches, both OK.
        world.put_alarm(ERRORS_ALARM, "HTTPCode_Target_5XX_Count")
        world.put_alarm(LATENCY_ALARM, "TargetResponseTime")

    def old_pod(self, name: str, ip: str, *, deleting: bool = False) -> None:
        self.api.put("pods", k8s.pod(name, self.ns, ip=ip, labels={**LABELS, "pod-template-hash": OLD_HASH},
                                     owner_rs=self.old_rs["metadata"]["name"], conditions=READY, deleting=deleting))

    def new_replica_set(self) -> None:
        """The Deployment controller's answer to Start Step: a ReplicaSet of the template albgate wrote."""
        dep = self.api.get("deployments", self.ns, self.name, "apps")
        self.new_rs = k8s.replica_set(dep, 2, NEW_HASH, tpl=dep["spec"]["template"], replicas=1)
        self.api.put("replicasets", self.new_rs, "apps")

    def new_pod(self, name: str, ip: str, *, registered: bool = True) -> None:
        """A new pod behind albgate's gate, ContainersReady; the controller registers its target, unless no
        reconcile comes for it (``registered`` False: no controller gate on the pod, nothing it watches changed)."""
        self.api.put("pods", k8s.pod(name, self.ns, ip=ip, labels={**LABELS, "pod-template-hash": NEW_HASH},
                                     gates=[ALBGATE_GATE], owner_rs=self.new_rs["metadata"]["name"]))
        if registered:
            self.world.register(self.tg, ip)

    def gate_open(self, pod: str) -> bool:
        conditions = self.api.get("pods", self.ns, pod)["status"].get("conditions") or []
        return any(c["type"] == ALBGATE_GATE and c["status"] == "True" for c in conditions)

    def request(self) -> dict[str, Any]:
        repository = self.app.ecr_repository
        return {
            "cluster": self.cluster, "namespace": self.ns, "deployment": self.name, "container": self.container,
            "image": f"{ACCOUNT}.dkr.ecr.{self.world.region}.amazonaws.com/{repository}:v2",
            "policy": {"steps": [1, "100%"], "harden": True, "alarms": [ERRORS_ALARM, LATENCY_PREFIX + "*"],
                       "analysis": {}},
        }


def rollout_story(world: World) -> None:
    w = RolloutWorld(world)
    step = world.step
    # The Deployment's lease is still held by an earlier execution that ended without its release (its end event
    # lost): Preflight asks Step Functions about it (DescribeExecution) and takes the lease over.
    machine = world.sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    earlier = world.sfn.start_execution(stateMachineArn=machine, name="iam-earlier", input="{}")["executionArn"]
    world.sfn.stop_execution(executionArn=earlier)
    lease_table = world.environment("Preflight")["ALBGATE_LOCK_TABLE"]
    world.dynamodb.put_item(TableName=lease_table, Item={
        "lock_key": {"S": f"{w.cluster}/{w.ns}/{w.name}"}, "execution_name": {"S": "iam-earlier"},
        "execution_arn": {"S": earlier}, "input": {"S": ""}, "expires_at": {"N": "9999999999"},
        "pushed_at": {"S": ""}, "image": {"S": ""}, "claimed_at": {"N": "1"}})
    preflight_event = {"request": w.request(), "execution_name": "iam-rollout",
                       "execution_arn": earlier.rsplit(":", 1)[0] + ":iam-rollout"}
    first = step("preflight", "Preflight", preflight_event,
                 lambda out, calls: _all(
                     (bool(called(calls, "states:DescribeExecution")), "the lease's holder was not asked about"),
                     (bool(called(calls, "dynamodb:PutItem")), "the lease was not taken over"),
                     ("@sha256:" in out.get("target_image", ""), "the tag was not pinned to its ECR digest"),
                     (bool(called(calls, "ecr:DescribeImages")), "ECR was not asked"),
                     (bool(called(calls, "dynamodb:UpdateItem")), "no turn was taken in the Describe* budget"),
                     (bool(called(calls, DESCRIBE_GROUPS)), "the target group was not described"),
                     _metrics_read(calls, 2),  # the longest requests, and policy.analysis's baseline
                     _watched(calls)))
    started = step("start-step-1", "StartStep", first, lambda out, calls: _all(
        (ALBGATE_GATE in str(w.api.get("deployments", w.ns, w.name, "apps")["spec"]["template"]),
         "albgate's gate is not in the template"),
        _watched(calls),
        (not _history_read(calls), f"read histories {_history_read(calls)} though no alarm changed since Preflight")))

    w.new_replica_set()
    # The first new pod turns ContainersReady and nothing makes the controller reconcile: nobody registers it.
    w.new_pod("new-a", "10.0.1.30", registered=False)
    missed = step("check-target-health-step-1-sees-a-missing-target", "CheckTargetHealth", started,
                  lambda out, calls: _all(
                      (out["gate"]["status"] == "WAITING" and out["gate"]["unregistered"] == 1, f"gate {out['gate']}"),
                      (not called(calls, REGISTER), "registered before the grace passed"),
                      _watched(calls)))
    world.advance(REGISTRATION_GRACE_SECONDS)
    registered = step("check-target-health-step-1-registers-it", "CheckTargetHealth", missed, lambda out, calls: _all(
        (_registered(calls) == {("10.0.1.30", 80)}, f"registered {_registered(calls)}, not new-a's 10.0.1.30:80"),
        ("albgate registered 1 new target" in out["gate"]["reason"], f"gate {out['gate']}"),
        _watched(calls)))
    gate = step("check-target-health-step-1", "CheckTargetHealth", registered, lambda out, calls: _all(
        (out["gate"]["status"] == "PASSED", f"gate {out['gate']}"),
        (bool(called(calls, DESCRIBE_HEALTH)), "target health was not described"),
        (not called(calls, REGISTER), "registered a target that is there"),
        _watched(calls)))
    released = step("release-old-pods-step-1", "ReleaseOldPods", gate, lambda out, calls: _all(
        (w.gate_open("new-a"), "new-a's gate is still closed")))

    # Kubernetes removes one old pod; the Load Balancer Controller is down and leaves its target in the pool.
    w.old_pod("old-c", "10.0.1.12", deleting=True)
    drained = step("verify-drain-step-1-deregisters", "VerifyDrain", released, lambda out, calls: _all(
        (_deregistered(calls) == {"10.0.1.12"}, f"deregistered {_deregistered(calls)}, not old-c's 10.0.1.12"),
        (out["drain"]["status"] == "DRAINING", f"drain {out['drain']} was not handed over to the next gate"),
        (not called(calls, DESCRIBE_HEALTH), "looked at the targets it had just deregistered"),
        _watched(calls)))

    # After step 1's gate passed, the latency alarm's metric misses a period and comes back: INSUFFICIENT_DATA
    # (not failing: the policy leaves insufficient_data_fails off) and OK again. Start Step sees a state change
    # since the gate and reads that alarm's history to tell whether it was in ALARM meanwhile.
    world.advance(60)
    world.set_alarm_state(LATENCY_ALARM, "INSUFFICIENT_DATA", "Insufficient Data: 1 datapoint was unknown.")
    world.advance(60)
    world.set_alarm_state(LATENCY_ALARM, "OK", "Threshold Crossed: 1 datapoint was not greater than the threshold.")
    second = step("start-step-2", "StartStep", drained, lambda out, calls: _all(
        (_history_read(calls) == [LATENCY_ALARM], f"read the histories of {_history_read(calls)}, not {LATENCY_ALARM}"),
        (out["gate"]["status"] == "WAITING" and out["step"] == 1, f"step 2 did not start: gate {out['gate']}"),
        _watched(calls)))
    # Meanwhile an old pod is replaced (its target stays registered: the controller is still down) and step 2's
    # new pods start.
    w.old_pod("old-b", "10.0.1.11", deleting=True)
    w.old_pod("old-d", "10.0.1.13")
    w.new_pod("new-b", "10.0.1.31")
    w.new_pod("new-c", "10.0.1.32")
    with world.throttle_elb("DescribeTargetHealth"):
        throttled = step("check-target-health-throttled", "CheckTargetHealth", second, lambda out, calls: _all(
            ("throttled" in out["gate"]["reason"], f"gate {out['gate']} does not say throttled"),
            (not called(calls, DEREGISTER), "deregistered while blind"),
            _watched(calls)))
    world.advance(60)  # a minute after Start Step's look: the gate reads the ALB metrics again (policy.analysis)
    gate2 = step("check-target-health-step-2-deregisters-a-removed-pods-target", "CheckTargetHealth", throttled,
                 lambda out, calls: _all(
                     (_deregistered(calls) == {"10.0.1.11"}, f"deregistered {_deregistered(calls)}, not 10.0.1.11"),
                     (out["gate"]["status"] == "PASSED", f"gate {out['gate']}"),
                     _metrics_read(calls),
                     (out["carried_ips"] == [], f"step 1's target {out['carried_ips']} is still carried"),
                     _watched(calls)))
    released2 = step("release-old-pods-step-2", "ReleaseOldPods", gate2)

    w.old_pod("old-a", "10.0.1.10", deleting=True)
    w.old_pod("old-d", "10.0.1.13", deleting=True)
    at_once = step("verify-drain-step-2-deregisters-at-once", "VerifyDrain", released2, lambda out, calls: _all(
        ("10.0.1.10" in _deregistered(calls), f"deregistered {_deregistered(calls)} without old-a's 10.0.1.10"),
        (not called(calls, DESCRIBE_HEALTH), "looked at the targets it had just deregistered"),
        _watched(calls)))
    world.advance(60)  # past the lag it waits, and a minute since the gate's read: the look reads the ALB metrics
    done = step("verify-drain-step-2", "VerifyDrain", at_once, lambda out, calls: _all(
        (out["drain"]["status"] == "PASSED", f"drain {out['drain']}"),
        (not called(calls, DESCRIBE_HEALTH), "looked at targets albgate's own call had made draining"),
        _metrics_read(calls),
        _watched(calls)))
    step("finish-rollout", "FinishRollout", done, lambda out, calls: _all(
        (out["outcome"] == "succeeded", f"outcome {out['outcome']}")))
    # The rollout's last drain ended on albgate's own DeregisterTargets (its success is what a look would show); a
    # rollback's last drain still ends on a look at ELB, in albgate's share of the Describe* calls
    back = {**at_once, "mode": "rollback", "steps": [{**r, "mode": "rollback"} for r in at_once["steps"]]}
    step("verify-drain-of-a-rollback-looks", "VerifyDrain", back, lambda out, calls: _all(
        (bool(called(calls, DESCRIBE_HEALTH)), "a rollback's last drain did not look at ELB"),
        (out["drain"]["status"] == "PASSED", f"drain {out['drain']}")))

    # A scale-up after the rollout: a new pod behind albgate's gate, healthy, opened by the gate keeper.
    w.new_pod("new-d", "10.0.1.33")
    step("gate-keeper-opens-a-scaled-up-pod", "GateKeeper",
         {"applications": [{"cluster": w.cluster, "namespace": w.ns, "deployment": w.name}]},
         lambda out, calls: _all(
             (out["applications"][0].get("opened") == ["new-d"] and w.gate_open("new-d"),
              f"gate keeper: {out['applications'][0]}"),
             (bool(called(calls, DESCRIBE_HEALTH)), "target health was not described")))
    step("request-approval", "RequestApproval", {"state": started, "task_token": "token", "execution_name": "iam"},
         lambda out, calls: _all(("send-task-success" in out.get("approve", ""), f"approval request {out}")))
    failed = {**gate, "failure": {"Error": "TargetsUnhealthy", "Cause": "the step's targets stayed unhealthy"}}
    step("roll-back-decides", "RollBack", failed, lambda out, calls: _all(
        (out["rollback_needed"] is True, "no rollback decided")))


# ---------------------------------------------------------------------------------------------------------
# ECR pushes: start, queue, hand over, release, replay
# ---------------------------------------------------------------------------------------------------------
def trigger_story(world: World) -> None:
    env = world.environment("EcrTrigger")
    machine = env["ALBGATE_STATE_MACHINE_ARN"]
    repository = world.config.applications[0].ecr_repository
    step = world.step

    def push(digest: str, tag: str, time: str = "2025-01-01T10:00:00Z") -> dict[str, Any]:
        return ecr_event(repository=repository, digest=digest, tag=tag, account=ACCOUNT, region=world.region,
                         time=time)

    def execution(digest: str) -> dict[str, Any]:
        for e in world.sfn.list_executions(stateMachineArn=machine)["executions"]:
            d = world.sfn.describe_execution(executionArn=e["executionArn"])
            if digest in d["input"]:
                return {"name": d["name"], "executionArn": d["executionArn"], "input": d["input"]}
        raise AssertionError(f"no execution for {digest}")

    def ended(digest: str) -> dict[str, Any]:
        """Step Functions ends the execution and sends its terminal event (moto: stop it first)."""
        e = execution(digest)
        world.sfn.stop_execution(executionArn=e["executionArn"])
        return status_event(machine, e, "SUCCEEDED")

    def outcome(out: dict[str, Any]) -> str:
        return out["results"][0]["outcome"]

    # The rollout story's execution ended, and its end released the Deployment's lease (ExecutionEvents below).
    table = world.environment("EcrTrigger")["ALBGATE_LOCK_TABLE"]
    for item in world.dynamodb.scan(TableName=table)["Items"]:
        world.dynamodb.delete_item(TableName=table, Key={"lock_key": item["lock_key"]})
    step("ecr-push-starts-a-rollout", "EcrTrigger", push(DIGEST_A, "v2"), lambda out, calls: _all(
        (outcome(out) == "started", f"outcome {out}"),
        (bool(called(calls, "states:StartExecution")), "no execution started")))
    step("ecr-push-queues-behind-the-lock", "EcrTrigger", push(DIGEST_B, "v3", "2025-01-01T10:01:00Z"),
         lambda out, calls: _all(
             (outcome(out) == "queued", f"outcome {out}"),
             (bool(called(calls, "states:DescribeExecution")), "the holder was not asked about"),
             (bool(called(calls, "dynamodb:UpdateItem")), "the pending push was not written")))
    # A push in the same second as the waiting one: ECR's imagePushedAt is asked which is newer
    same_second = world.ecr.put_image(repositoryName=repository, imageManifest=MANIFEST.replace('"layers": []',
                                      '"layers": [], "annotations": {"same": "second"}'), imageTag="v3b")
    tie = same_second["image"]["imageId"]["imageDigest"]
    step("ecr-push-in-the-same-second-asks-ecr", "EcrTrigger", push(tie, "v3b", "2025-01-01T10:01:00Z"),
         lambda out, calls: _all(
             (outcome(out) in ("queued", "stale", "unordered"), f"outcome {out}"),
             (bool(called(calls, "ecr:DescribeImages")), "ECR's push times were not asked")))
    step("execution-end-hands-the-lock-over", "ExecutionEvents", ended(DIGEST_A), lambda out, calls: _all(
        (out["lock"]["lock"] == "handed_over", f"lock {out['lock']}"),
        (bool(called(calls, "states:StartExecution")), "the pending push was not started")))
    step("execution-end-releases-the-lock", "ExecutionEvents", ended(DIGEST_B), lambda out, calls: _all(
        (out["lock"]["lock"] == "released", f"lock {out['lock']}"),
        (bool(called(calls, "dynamodb:DeleteItem")), "the lock was not deleted")))
    step("ecr-push-replayed-starts-nothing", "EcrTrigger", push(DIGEST_A, "v2"), lambda out, calls: _all(
        (outcome(out) == "duplicate", f"outcome {out}"),
        (bool(called(calls, "dynamodb:DeleteItem")), "the lock taken for the replay was not let go")))


# ---------------------------------------------------------------------------------------------------------
# The bootstrap, in the state machine's order (each check once: a WAITING answer is a real answer)
# ---------------------------------------------------------------------------------------------------------
def bootstrap_story(world: World) -> None:
    """The configured application bootstrapped (the functions refuse any other): its namespace exists, as albgate
    requires; its objects are applied over what the rollout story left there."""
    app = world.config.applications[0]
    cluster, ns = app.cluster, app.namespace
    labels = dict(LABELS)
    request = {
        "cluster": cluster,
        "controller": {"region": world.region, "vpc_id": "vpc-0123456789abcdef0"},
        "applications": [{
            "namespace": ns, "deployment": app.deployment, "container": app.container,
            "manifests": {
                "deployment": boot_deployment(app.deployment, labels=labels,
                                              pod={"containers": [{"name": app.container, "image": OLD_IMAGE}]}),
                "service": boot_service(app.service, selector=labels),
                "ingress": boot_ingress(app.ingress, backend=app.service)},
        }],
    }
    world.apiserver.put("namespaces", k8s.namespace("kube-system"))  # every cluster has it; the controller goes there
    if not any(n["metadata"]["name"] == ns for n in world.apiserver.find("namespaces")):
        world.apiserver.put("namespaces", k8s.namespace(ns))
    step = world.step

    def changed(kind: str) -> Callable[[Any, list[RecordedCall]], str]:
        return lambda out, calls: _all((any(kind in c["object"] for c in out.get("changes", [])),
                                        f"no {kind} among the changes {out.get('changes')}"))

    defaults, network = bootstrap_payloads(world.template)  # what the deployed state machine passes
    state = step("bootstrap-validate", "BootstrapValidate",
                 {"request": request, "execution_name": "iam-boot", "controller_defaults": defaults},
                 lambda out, calls: _all((not calls, f"AWS called while validating: {calls}")))
    state = step("bootstrap-check-network", "BootstrapCheckNetwork", {"state": state, "network": network},
                 lambda out, calls: _all((out["network"]["status"] == ("PASSED" if network else "SKIPPED"),
                                          f"network {out['network']}")))
    with world.helm_process():
        state = step("bootstrap-install-controller", "BootstrapInstallController", state, lambda out, calls: _all(
            (any(r[:2] == ["upgrade", "--install"] for r in world.helm_runs), f"helm ran {world.helm_runs}"),
            (len(called(calls, "eks:DescribeCluster")) >= 1, "the cluster was not described")))
    state = step("bootstrap-check-controller", "BootstrapCheckController", state)
    state = step("bootstrap-label-namespaces", "BootstrapLabelNamespaces", state, changed(f"Namespace/{ns}"))
    state = step("bootstrap-apply-services", "BootstrapApplyWorkloads", {"phase": "services", "state": state},
                 changed("Ingress/"))
    # The Load Balancer Controller reconciles the Ingress: a target group and its binding for the Service (the
    # rollout story's, when it ran first).
    bound = [b for b in world.apiserver.find("targetgroupbindings", "elbv2.k8s.aws", ns)
             if b["spec"]["serviceRef"]["name"] == app.service]
    if not bound:
        tg = world.target_group("k8s-boot-nginxsvc", cluster)
        world.apiserver.put("targetgroupbindings", k8s.target_group_binding(
            "k8s-boot-nginxsvc-0123456789", ns, targetGroupARN=tg, targetType="ip",
            serviceRef={"name": app.service, "port": 80}), "elbv2.k8s.aws")
    state = step("bootstrap-check-bindings", "BootstrapCheckBindings", state)
    state = step("bootstrap-apply-deployments", "BootstrapApplyWorkloads", {"phase": "deployments", "state": state},
                 changed("Deployment/"))
    state = step("bootstrap-find-ungated-pods", "BootstrapFindUngatedPods", state)
    step("preflight-report", "PreflightReport", state, lambda out, calls: _all(
        ("report" in out, "no report"),
        (bool(called(calls, DESCRIBE_GROUPS)), "the app's target group was not described")))


STORIES: dict[str, Callable[[World], None]] = {
    "rollout": rollout_story,
    "trigger": trigger_story,
    "bootstrap": bootstrap_story,
}


def tell(world: World, stories: Mapping[str, Callable[[Any], None]] | None = None) -> None:
    """Every story (``STORIES`` by default); a story stops at its first failed step (filed in ``world.steps``), the
    others still run."""
    for name, story in (STORIES if stories is None else stories).items():
        world.story = name
        try:
            story(world)
        except StoryAborted:
            continue
