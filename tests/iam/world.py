"""Where the handlers run while their AWS calls are recorded: moto, the fake API server, the template's settings.

Job: build, from the synthesized template, what each deployed function would find on AWS: every DynamoDB
table, event bus and state machine of the template under the name the template gives it (so a recorded ARN and
a granted ARN are the same string), the configured clusters in EKS (their endpoint is the fake Kubernetes API
server), the configured ECR repositories with a tagged image, and an ALB whose IP target group the Load Balancer
Controller of the configured cluster would have tagged. Then invoke each handler as Lambda would: its module's
``handler(event, None)``, with the environment the template gives that function (plus the Region Lambda
sets), through the real adapters, each function starting cold when another one ran before it (every cache of
``lambdas`` cleared: a function has its own process in Lambda).

Also: answer an ELB call with ``Throttling`` the next N times (``throttle_elb``); botocore's retries sleep on the
recording's clock (``recording``), so they and its adaptive rate limiter run without waiting for real; move that
clock on between two handlers (``advance``), as a Wait state would; and replace
the helm process (only the process: the kubeconfig it gets, from eks:DescribeCluster and a fresh token, is built by
the real adapter). CloudWatch alarms: created and moved between states on moto (``put_alarm``,
``set_alarm_state``), whose CloudWatch keeps the recording's clock; each state change is filed in the alarm's
history, from which the world answers DescribeAlarmHistory, which moto does not implement, before any request is
built (``before-call``, where botocore's own Stubber answers); and each DescribeAlarms call is filed with the
names of the alarms its answer listed (``LISTED_ALARMS``: what IAM authorizes the call against,
tests/iam/requests.py).

Invariant: the world's own set-up calls are made with clients created before recording starts, so every
recorded call is one a handler made; ``step`` files each handler run with the AWS calls it made, the requests it
sent the Kubernetes API server (the world puts objects there directly, never over HTTP) and whether the path the
story meant to reach was reached.
"""

from __future__ import annotations

import base64
import copy
import datetime
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.eks.models import eks_backends

from lambdas.adapters import kubernetes_bootstrap
from lambdas.adapters.elbv2 import MAX_ATTEMPTS
from lambdas.handlers import _runtime, bootstrap_check_network, bootstrap_common
from stacks.constructs.lbc_iam import CLUSTER_TAG
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER
from tests.iam.policy import Placeholders, TemplateResolver
from tests.iam.recorder import CallRecorder, RecordedCall, registry_pull_calls
from tests.iam.requests import LISTED_ALARMS

ACCOUNT = "123456789012"  # moto's default account; also what AWS::AccountId resolves to
PARTITION = "aws"
# The ECR manifest moto stores for a pushed tag (its digest is what Preflight pins the tag to).
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
               "digest": "sha256:" + "1" * 64},
    "layers": [],
})
_ELB_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
THROTTLED = (
    f'<ErrorResponse xmlns="{_ELB_NS}"><Error><Type>Sender</Type><Code>Throttling</Code>'
    "<Message>Rate exceeded</Message></Error><RequestId>throttled</RequestId></ErrorResponse>"
).encode()
SECONDS_PER_ANSWER = 5.0  # virtual time an ELB answer takes while throttling: the rate limiter's bucket refills
# The request-context key under which a CloudWatch call's recorded entry travels from its parameters to its answer.
_RECORDED = "albgate.iam.recorded_call"


@dataclass(frozen=True)
class DeployedFunction:
    """A Lambda of the synthesized template and the spec it was built from (matched by handler module)."""

    name: str  # HandlerSpec.name
    module: str  # lambdas.handlers.<module>
    logical_id: str
    role_id: str
    properties: dict[str, Any]


def deployed_functions(template: dict[str, Any]) -> dict[str, DeployedFunction]:
    """Every AWS::Lambda::Function of the template, by spec name; a function no spec names is an error."""
    specs = {s.module: s for s in ALL_HANDLERS + TRIGGER}
    out: dict[str, DeployedFunction] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        handler = props["Handler"]
        module = handler.removeprefix("lambdas.handlers.").removesuffix(".handler")
        if module not in specs:
            raise AssertionError(f"{logical_id} runs {handler}, which no HandlerSpec names")
        role = props["Role"]["Fn::GetAtt"][0]
        out[specs[module].name] = DeployedFunction(specs[module].name, module, logical_id, role, props)
    return out


def self_signed_ca() -> bytes:
    """A CA certificate as EKS returns one (base64 PEM); the fake API server speaks plain HTTP, so it is unused."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class StepResult:
    """One handler run of a story: what it returned (or raised), the calls it made, the path it reached."""

    story: str
    id: str
    function: str
    output: Any = None
    error: str = ""
    unmet: str = ""  # what the step expected and did not see
    calls: list[RecordedCall] = field(default_factory=list)
    kube_requests: list[Any] = field(default_factory=list)  # what it asked the Kubernetes API server (Recorded)

    @property
    def ok(self) -> bool:
        return not self.error and not self.unmet


class StoryAborted(Exception):
    """A step failed; the steps after it depend on its output, so the story stops there."""




def story_unmet(steps: list[StepResult], story: str) -> list[str]:
    """What the story's steps missed, one line per step that failed or did not reach its path; a story that ran
    no step at all is one such line."""
    mine = [s for s in steps if s.story == story]
    if not mine:
        return [f"the {story} story ran no step"]
    return [f"{s.id} ({s.function}): {s.error or s.unmet}" for s in mine if not s.ok]


def file_step(steps: list[StepResult], result: StepResult,
              expect: Callable[[Any, list[RecordedCall]], str] | None) -> Any:
    """Judge a step that ran (``expect(output, calls)``: what is missing, '' when all is there), file it, and stop
    the story when its handler failed; the step's output otherwise."""
    if not result.error and expect is not None:
        try:
            result.unmet = expect(result.output, result.calls)
        except Exception as exc:  # an answer of an unexpected shape is a path not reached, not a crash
            result.unmet = f"the answer is not what the step expects ({type(exc).__name__}: {exc})"
    steps.append(result)
    if result.error:
        raise StoryAborted(result.id)
    return result.output


def invoke_as_lambda(module: str, env: dict[str, str], recorder: Any, name: str, event: Any) -> Any:
    """Run handler ``lambdas.handlers.<module>`` as Lambda would: with exactly its function's albgate, Powertools and
    log settings in the environment (none left from another function), its calls filed under ``name``."""
    handler_module = importlib.import_module(f"lambdas.handlers.{module}")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith(("ALBGATE_", "POWERTOOLS_", "LOG_LEVEL")) and key not in env:
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        with recorder.as_function(name):
            return handler_module.handler(copy.deepcopy(event), None)

class World:
    def __init__(self, synth: Any, apiserver: Any, workdir: Path) -> None:
        self.template = synth.template
        self.outdir = Path(synth.outdir)
        self.artifact_id = synth.stack.artifact_id
        self.config = synth.stack.config
        self.region = str(synth.stack.region)
        self.placeholders = Placeholders(PARTITION, self.region, ACCOUNT)
        self.resolver = TemplateResolver(self.template, self.placeholders)
        self.functions = deployed_functions(self.template)
        self.apiserver = apiserver
        self.workdir = workdir
        self.recorder = CallRecorder()
        self.recorder.on_client(self._answer_faults_of)
        self.recorder.on_client(self._answer_alarms_of)
        self.alarm_history: list[dict[str, Any]] = []  # AlarmHistoryItems, as DescribeAlarmHistory answers them
        self.steps: list[StepResult] = []
        self.resource_tags: dict[str, dict[str, str]] = {}
        self.helm_runs: list[list[str]] = []
        self._faults: dict[str, int] = {}
        self._ahead = 0.0  # seconds the recording's clock is ahead of the wall clock (throttled answers took them)
        self._throttling = False
        self._warm: str | None = None
        self.story = ""

    # --- AWS, as the template and the config describe it (moto) ------------------------------------------
    def build_aws(self) -> None:
        """Create what the functions find on AWS. Runs before recording: these calls are the world's own."""
        r = self.region
        self.ec2 = boto3.client("ec2", region_name=r)
        self.elbv2 = boto3.client("elbv2", region_name=r)
        self.ecr = boto3.client("ecr", region_name=r)
        self.sfn = boto3.client("stepfunctions", region_name=r)
        self.events = boto3.client("events", region_name=r)
        self.dynamodb = boto3.client("dynamodb", region_name=r)
        self.cloudwatch = boto3.client("cloudwatch", region_name=r)
        eks = boto3.client("eks", region_name=r)
        resources = self.template["Resources"]
        for logical_id, resource in resources.items():
            props = resource.get("Properties") or {}
            if resource["Type"] == "AWS::DynamoDB::Table":
                self.dynamodb.create_table(
                    TableName=self.resolver.name(logical_id), BillingMode="PAY_PER_REQUEST",
                    KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"],
                )
            elif resource["Type"] == "AWS::Events::EventBus":
                self.events.create_event_bus(Name=self.resolver.name(logical_id))
            elif resource["Type"] == "AWS::StepFunctions::StateMachine":
                # Started by the ECR trigger; never run here (a Wait keeps each execution open until stopped).
                self.sfn.create_state_machine(
                    name=self.resolver.name(logical_id),
                    definition=json.dumps({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600,
                                                                                  "End": True}}}),
                    roleArn=f"arn:{PARTITION}:iam::{ACCOUNT}:role/states",
                )
        ca = base64.b64encode(self_signed_ca()).decode()
        for cluster in self.config.clusters:
            eks.create_cluster(name=cluster.name, roleArn=f"arn:{PARTITION}:iam::{ACCOUNT}:role/eks",
                               resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]})
            described = eks_backends[ACCOUNT][r].clusters[cluster.name]
            described.endpoint = self.apiserver.url  # the cluster's API server is the fake one
            described.certificate_authority = {"data": ca}
        for repository in sorted({a.ecr_repository for a in self.config.applications if a.ecr_repository}):
            self.ecr.create_repository(repositoryName=repository)
            self.ecr.put_image(repositoryName=repository, imageManifest=MANIFEST, imageTag="v2")
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [
            self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{r}{az}")["Subnet"][
                "SubnetId"
            ]
            for i, az in ((1, "a"), (2, "b"))
        ]
        self.vpc = vpc
        self.load_balancer = self.elbv2.create_load_balancer(
            Name="k8s-albgate-alb", Subnets=self.subnets, Type="application"
        )["LoadBalancers"][0]["LoadBalancerArn"]

    def target_group(self, name: str, cluster: str) -> str:
        """An IP target group behind the ALB, tagged by the cluster's Load Balancer Controller as it does."""
        arn = self.elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=80, VpcId=self.vpc, TargetType="ip", HealthCheckIntervalSeconds=15,
            HealthCheckTimeoutSeconds=5, HealthyThresholdCount=2, UnhealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elbv2.add_tags(ResourceArns=[arn], Tags=[{"Key": CLUSTER_TAG, "Value": cluster}])
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "60"}]
        )
        # One listener per target group: a group no listener forwards to is refused by Preflight.
        self.elbv2.create_listener(LoadBalancerArn=self.load_balancer, Protocol="HTTP",
                                   Port=80 + len(self.resource_tags),
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}])
        (described,) = self.elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
        self.resource_tags[arn] = {t["Key"]: t["Value"] for t in described["Tags"]}
        return arn

    def register(self, target_group: str, *ips: str) -> None:
        """What the Load Balancer Controller does for a ContainersReady pod (moto reports it healthy at once)."""
        self.elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": ip, "Port": 80} for ip in ips])

    # --- CloudWatch alarms (moto, and the history moto does not keep) -----------------------------------------
    def put_alarm(self, name: str, metric: str) -> None:
        """A metric alarm on one of the ALB's metrics, in the world's account and Region."""
        self.cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="AWS/ApplicationELB", MetricName=metric, Statistic="Sum", Period=60,
            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
            Dimensions=[{"Name": "LoadBalancer", "Value": self.load_balancer.split(":loadbalancer/", 1)[1]}],
        )

    def set_alarm_state(self, name: str, state: str, reason: str) -> None:
        """What CloudWatch does when the alarm's metric moves it (SetAlarmState on moto, at the recording's clock),
        with the change filed in the alarm's history as a StateUpdate AlarmHistoryItem (CloudWatch API reference,
        AlarmHistoryItem, https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_AlarmHistoryItem.html;
        HistoryData and HistorySummary as the AWS CLI example shows them: docs/facts.md, "CloudWatch alarms albgate
        watches")."""
        (before,) = self.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        assert before["StateValue"] != state, f"{name} is already {state}: CloudWatch files no change"
        self.cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)
        (after,) = self.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        old, new = before["StateValue"], after["StateValue"]
        self.alarm_history.append({
            "AlarmName": name, "AlarmType": "MetricAlarm", "Timestamp": after["StateUpdatedTimestamp"],
            "HistoryItemType": "StateUpdate", "HistorySummary": f"Alarm updated from {old} to {new}",
            "HistoryData": json.dumps({"version": "1.0", "oldState": {"stateValue": old,
                                                                      "stateReason": before["StateReason"]},
                                       "newState": {"stateValue": new, "stateReason": reason}}),
        })

    def _answer_alarms_of(self, client: Any) -> None:
        if client.meta.service_model.service_name != "cloudwatch":
            return
        events = client.meta.events
        events.register("before-parameter-build.cloudwatch", self._carry_recorded_call)
        events.register("after-call.cloudwatch.DescribeAlarms", self._file_listed_alarms)
        events.register_first("before-call.cloudwatch.DescribeAlarmHistory", self._alarm_history_answer)

    def _carry_recorded_call(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        # Emitted right after provide-client-params, on which the recorder filed this very call.
        call = self.recorder.calls[-1]
        assert call.operation == model.name and call.params == params, f"{model.name} was not the last call filed"
        context[_RECORDED] = call

    def _file_listed_alarms(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any],
                            **_: Any) -> None:
        if http_response.status_code < 300:
            listed = parsed.get("MetricAlarms", []) + parsed.get("CompositeAlarms", [])
            context[_RECORDED].params[LISTED_ALARMS] = [a["AlarmName"] for a in listed]

    def _alarm_history_answer(self, model: Any, params: dict[str, Any], context: dict[str, Any],
                              **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        """DescribeAlarmHistory as the CloudWatch API reference describes it, for the request albgate makes: one
        alarm's StateUpdate items between StartDate and EndDate, newest first (ScanBy TimestampDescending), at most
        MaxRecords, NextToken when more matched
        (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html)."""
        asked = context[_RECORDED].params
        assert asked.get("HistoryItemType") == "StateUpdate" and asked.get("ScanBy") == "TimestampDescending", (
            f"the world answers StateUpdate items newest first, not {asked}")
        items = sorted((i for i in self.alarm_history if i["AlarmName"] == asked["AlarmName"]
                        and asked["StartDate"] <= i["Timestamp"] <= asked["EndDate"]),
                       key=lambda i: i["Timestamp"], reverse=True)
        page = int(asked.get("MaxRecords", 100))
        answer: dict[str, Any] = {"AlarmHistoryItems": items[:page]}
        if len(items) > page:
            answer["NextToken"] = f"after-{page}"
        validate_parameters(answer, model.output_shape)  # the shape botocore would have parsed
        metadata = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}
        return AWSResponse(params["url"], 200, {}, _Body(b"")), {**answer, "ResponseMetadata": metadata}

    # --- faults -------------------------------------------------------------------------------------------
    def _answer_faults_of(self, client: Any) -> None:
        service_id = client.meta.service_model.service_id.hyphenize()
        if client.meta.service_model.signing_name == "elasticloadbalancing":
            client.meta.events.register_first(f"before-send.{service_id}", self._throttled_answer)

    def _throttled_answer(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        # Registered on this service's own before-send event, so it runs before botocore's rate limiter (on the
        # generic one): while throttling, each request takes a while, and the limiter's bucket refills.
        if self._throttling:
            self._ahead += SECONDS_PER_ANSWER
        operation = event_name.rsplit(".", 1)[-1]
        if self._faults.get(operation, 0) <= 0:
            return None
        self._faults[operation] -= 1
        return AWSResponse(request.url, 400, {}, _Body(THROTTLED))

    @contextmanager
    def recording(self) -> Iterator[CallRecorder]:
        """Record every call; the clock everything reads is the wall clock plus the time throttling took, so it
        never goes back (botocore's rate limiter keeps its timestamps across a warm function's invocations)."""
        wall = time.time
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("time.time", lambda: wall() + self._ahead)
            # moto's CloudWatch stamps alarm state changes with its own UTC "now" (naive, as moto keeps it)
            mp.setattr("moto.cloudwatch.models.utcnow",
                       lambda: datetime.datetime.fromtimestamp(time.time(), datetime.UTC).replace(tzinfo=None))
            with self.recorder.installed() as recorder:
                yield recorder

    def advance(self, seconds: float) -> None:
        """Move the recording's clock on by ``seconds`` (time passing between two looks), without waiting."""
        self._ahead += seconds

    @contextmanager
    def throttle_elb(self, operation: str, times: int = MAX_ATTEMPTS) -> Iterator[None]:
        """ELB answers ``operation`` with Throttling the next ``times`` times (default: every attempt botocore
        makes, so the adapter sees it throttled). botocore's backoff sleeps move the recording's clock on
        instead of waiting, so nothing waits for real."""

        def sleep(seconds: float) -> None:
            self._ahead += seconds

        self._faults[operation] = times
        self._throttling = True
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("time.sleep", sleep)
                yield
        finally:
            left = self._faults.pop(operation, 0)
            self._throttling = False
        assert left == 0, f"{operation} was throttled {times - left} of the {times} times meant"

    # --- helm: the process only ---------------------------------------------------------------------------
    @contextmanager
    def helm_process(self) -> Iterator[None]:
        """The install function's helm runs answer as helm does on a cluster without the release."""
        world = self

        def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            world.helm_runs.append(list(args[1:]))
            if args[1] == "registry":  # the login to the chart's ECR mirror: no cluster, the password on stdin
                assert kwargs.get("input") and "--password-stdin" in args and kwargs["input"] not in args
                return subprocess.CompletedProcess(args, 0, stdout="Login Succeeded\n", stderr="")
            kubeconfig = json.loads(Path(kwargs["env"]["KUBECONFIG"]).read_text())
            assert kubeconfig["clusters"][0]["cluster"]["server"] == world.apiserver.url
            # helm pulls an ECR-mirrored chart from the registry with the function's token: filed as ECR's actions
            world.recorder.calls.extend(registry_pull_calls(world.recorder.function, list(args[1:])))
            out = "[]" if args[1] == "list" else "Release \"aws-load-balancer-controller\" has been upgraded.\n"
            return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

        class Helm(kubernetes_bootstrap.HelmCli):
            def __init__(self, cluster: str, kubeconfig: Callable[[], tuple[str, str, str]], **kwargs: Any) -> None:
                super().__init__(cluster, kubeconfig, **{**kwargs, "workdir": str(world.workdir / "helm"), "run": run})

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kubernetes_bootstrap, "HelmCli", Helm)
            yield

    # --- invoking a function, as Lambda would -------------------------------------------------------------
    def layers(self, name: str) -> list[Path]:
        """The folders of the function's layers as synthesized (what Lambda unpacks under /opt), found through
        the cloud assembly's asset manifest by each layer's S3 key."""
        manifest = json.loads((self.outdir / f"{self.artifact_id}.assets.json").read_text())["files"]
        folders = []
        for layer in self.functions[name].properties.get("Layers") or []:
            if not (isinstance(layer, dict) and "Ref" in layer):
                continue  # a layer of another stack or account: nothing of it is in this assembly
            content = self.template["Resources"][layer["Ref"]]["Properties"]["Content"]
            source = Path(manifest[str(content["S3Key"]).removesuffix(".zip")]["source"]["path"])
            folders.append(source if source.is_absolute() else self.outdir / source)
        return folders

    def environment(self, name: str) -> dict[str, str]:
        """The function's environment as the template sets it, plus the Region Lambda sets; a path under /opt
        points into the function's own layers as synthesized (Lambda mounts them there)."""
        variables = (self.functions[name].properties.get("Environment") or {}).get("Variables") or {}
        env = {k: str(v) for k, v in self.resolver.resolve(variables).items()}
        for key, value in env.items():
            if value.startswith("/opt/"):
                inside = [folder / value.removeprefix("/opt/") for folder in self.layers(name)]
                env[key] = next((str(p) for p in inside if p.exists()), value)
        return {**env, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    def cold_start(self) -> None:
        """Forget everything a warm instance keeps: every functools cache of the ``lambdas`` modules."""
        for module_name, module in list(sys.modules.items()):
            if module is None or not (module_name == "lambdas" or module_name.startswith("lambdas.")):
                continue
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == module_name:
                    value.cache_clear()
        # Nothing may stand in for the real adapters here.
        assert _runtime._provider is None and bootstrap_common._helm_provider is None
        assert bootstrap_check_network._network_provider is None
        self._warm = None

    def invoke(self, name: str, event: Any) -> Any:
        fn = self.functions[name]
        if self._warm != name:
            self.cold_start()
            self._warm = name
        return invoke_as_lambda(fn.module, self.environment(name), self.recorder, name, event)

    def step(
        self, step_id: str, function: str, event: Any, expect: Callable[[Any, list[RecordedCall]], str] | None = None
    ) -> Any:
        """Run one handler and file it; ``expect(output, calls)`` returns what is missing ('' when all is there)."""
        result = StepResult(self.story, step_id, function)
        first, first_kube = len(self.recorder.calls), len(self.apiserver.requests)
        try:
            result.output = self.invoke(function, event)
        except Exception as exc:  # filed, then the story stops: later steps need this one's output
            result.error = f"{type(exc).__name__}: {exc}"
        result.calls = self.recorder.calls[first:]
        result.kube_requests = self.apiserver.requests[first_kube:]
        return file_step(self.steps, result, expect)


def called(calls: list[RecordedCall], action: str) -> list[RecordedCall]:
    return [c for c in calls if c.action == action]
