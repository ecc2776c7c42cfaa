"""The release functions driven through their real adapters on moto, across accounts, while every AWS call is filed
with the credentials that signed it.

Job: build, from the synthesized release config (config/releases-example.json: the release stack in
111111111111 us-east-1, clusters there and in 222222222222 us-east-1 and eu-west-1), what the release functions find
on AWS, then tell their stories:

- ``release``: Plan Release plans the configured release (no AWS call), then the wave looks of Release Wave start and
  read every wave's children where they run: the home account's rollout state machine directly, the other
  account's through ``sts:AssumeRole`` of that account's release role per Region, with the assumed credentials.
  The last wave fails in eu-west-1, so the looks that follow roll back the completed children, newest first, in
  both accounts.
- ``trigger``: ECR pushes and the release execution's ends through the Release Trigger: a push takes the
  release's lease and starts it; a second push waits (its holder asked about, the pending push written, ``Release
  Queued`` on the release bus); a third push of the same second is ordered by ECR's push times; the holder's end
  hands the lease over and starts the waiting push; that one's end lets the lease go.

How accounts are told apart: moto maps a request to the account of the key that signed it, and an assumed role's
keys to the role's account. So each function runs, as in Lambda, with the credentials of its own role in the home
account (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` in its environment), and a child in
222222222222 is reached only with the keys that account's role gave. ``SigningRecorder`` files each call with the
access key that signed it and learns, from each recorded AssumeRole's answer, which role a key belongs to, so a
call is checked against the role whose credentials made it.

Invariant: the world's own set-up and every change it makes between steps (a child ending, as Step Functions would
end it; ECR's push times) go through clients made before recording or straight to moto's backends, never through a
recorded client; every call filed while recording is a handler's. The default boto3 session is dropped at every
cold start (a function never meets credentials another function's environment gave it) and restored on the way
out, with the environment, so no later test meets the recording's credentials.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.ecr.models import ecr_backends
from moto.stepfunctions.models import stepfunctions_backends

from lambdas.domain.contract import RELEASE_ORDER_UNKNOWN, RELEASE_QUEUED
from lambdas.domain.release import ReleaseSpec, parse_specs
from lambdas.handlers import _release
from stacks.constructs.release_trigger import RELEASE_TRIGGER
from stacks.constructs.release_workflow import RELEASE_HANDLERS
from stacks.release_names import release_role_name, release_stack_name
from tests.iam.policy import Placeholders, TemplateResolver, UnsupportedPolicy
from tests.iam.recorder import CallRecorder, RecordedCall, iam_prefix
from tests.iam.stories import tell as tell_stories
from tests.iam.world import StepResult, called, file_step, invoke_as_lambda
from tests.trigger.conftest import ecr_event, status_event

HOME, OTHER = "111111111111", "222222222222"
HOME_REGION = "us-east-1"
PARTITION = "aws"
RELEASE_STACK = release_stack_name("Albgate")
# Credentials the world itself starts from: moto's default account, which no function's call may use.
WORLD_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# The suffix CloudFormation appends to a role name it generates (<stack>-<logical id>-<suffix>); any will do.
GENERATED_SUFFIX = "Q1W2E3R4T5Y6"
OLD_IMAGE = f"{HOME}.dkr.ecr.{HOME_REGION}.amazonaws.com/nginx-app@sha256:" + "0" * 64
# The pushes of the trigger story: their tags (the release takes "v*"), layer digests and ECR push times; B and C
# are pushed in the same second, C half a second later (ECR keeps finer times than the event's whole second).
PUSH_EPOCH = 1_735_725_600  # 2025-01-01T10:00:00Z
PUSHES = {
    "A": ("v2", "sha256:" + "a" * 64, PUSH_EPOCH + 0.3, "2025-01-01T10:00:00Z"),
    "B": ("v3", "sha256:" + "b" * 64, PUSH_EPOCH + 60.2, "2025-01-01T10:01:00Z"),
    "C": ("v3b", "sha256:" + "c" * 64, PUSH_EPOCH + 60.7, "2025-01-01T10:01:00Z"),
}
_ENV_STACK = re.compile(r"(?P<root>.+)-(?P<account>\d{12})-(?P<region>[a-z]{2}(-[a-z]+)+-\d)")
SPECS = {s.module: s for s in RELEASE_HANDLERS + (RELEASE_TRIGGER,)}
_FILED = "albgate.iam.filed_call"  # the request-context key under which a call's filed entry reaches its answer


# ---------------------------------------------------------------------------------------------------------
# Recording with the signing key
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedCall(RecordedCall):
    access_key: str = ""  # the key the call was signed with ("" unsigned): whose permissions AWS checks


class SigningRecorder(CallRecorder):
    """``CallRecorder`` that also files the signing key of each call, and which role each assumed key is for."""

    def __init__(self) -> None:
        super().__init__()
        self.assumed: dict[str, str] = {}  # access key id -> role ARN, from each recorded AssumeRole's answer

    def _instrument(self, client: Any) -> None:
        region = client.meta.region_name

        def record(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            # The client's own credentials: what its requests are signed with (botocore keeps them on the signer;
            # a client made with explicit keys ignores the environment's).
            credentials = client._get_credentials()
            key = credentials.get_frozen_credentials().access_key if credentials is not None else ""
            call = SignedCall(self.function, f"{iam_prefix(model.service_model)}:{model.name}", region, dict(params),
                              key)
            self.calls.append(call)
            context[_FILED] = call

        def learn_assumed_key(http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            if http_response.status_code < 300:
                self.assumed[parsed["Credentials"]["AccessKeyId"]] = str(context[_FILED].params["RoleArn"])

        client.meta.events.register("provide-client-params.*.*", record)
        client.meta.events.register("after-call.sts.AssumeRole", learn_assumed_key)
        for hook in self._client_hooks:
            hook(client)


# ---------------------------------------------------------------------------------------------------------
# Templates: the release stack and the other account's release roles
# ---------------------------------------------------------------------------------------------------------
class StackResolver(TemplateResolver):
    """``TemplateResolver`` plus ``Fn::GetAtt <state machine>.Name``, which the environment stacks' release roles
    use (the AWS::StepFunctions::StateMachine return value ``Name``: the state machine's name)."""

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and "Fn::GetAtt" in value:
            arg = value["Fn::GetAtt"]
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            if attribute == "Name":
                if self.resources[logical_id]["Type"] != "AWS::StepFunctions::StateMachine":
                    raise UnsupportedPolicy(f"Fn::GetAtt {logical_id}.Name: only a state machine's name is resolved")
                return self.name(logical_id)
        return super().resolve(value)


@dataclass(frozen=True)
class ReleaseFunction:
    """A Lambda of the release stack and the spec it was built from (matched by handler module)."""

    name: str
    module: str
    logical_id: str
    role_id: str
    properties: dict[str, Any]


def release_functions(template: dict[str, Any]) -> dict[str, ReleaseFunction]:
    out: dict[str, ReleaseFunction] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        module = props["Handler"].removeprefix("lambdas.handlers.").removesuffix(".handler")
        if module not in SPECS:
            raise AssertionError(f"{logical_id} runs {props['Handler']}, which no release HandlerSpec names")
        out[SPECS[module].name] = ReleaseFunction(SPECS[module].name, module, logical_id,
                                                  props["Role"]["Fn::GetAtt"][0], props)
    return out


@dataclass(frozen=True)
class AccessRole:
    """The role an environment stack in another account creates for the release."""

    stack: str
    arn: str
    role_id: str
    resolver: StackResolver


def access_roles(templates: dict[str, dict[str, Any]]) -> dict[str, AccessRole]:
    """Every environment stack's release role, by the ARN the release assumes (role names are fixed at synth)."""
    out = {}
    for stack, template in templates.items():
        if stack == RELEASE_STACK:
            continue
        named = _ENV_STACK.fullmatch(stack)
        assert named, f"{stack} is not named <root>-<account>-<region>"
        account, region = named["account"], named["region"]
        resolver = StackResolver(template, Placeholders(PARTITION, region, account))
        for logical_id, resource in template["Resources"].items():
            name = release_role_name(stack)
            if resource["Type"] == "AWS::IAM::Role" and resource["Properties"].get("RoleName") == name:
                arn = f"arn:{PARTITION}:iam::{account}:role/{name}"
                out[arn] = AccessRole(stack, arn, logical_id, resolver)
    return out


# ---------------------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------------------
class ReleaseWorld:
    def __init__(self, templates: dict[str, dict[str, Any]], outdir: Path) -> None:
        self.templates = templates
        self.outdir = Path(outdir)
        self.template = templates[RELEASE_STACK]
        self.placeholders = Placeholders(PARTITION, HOME_REGION, HOME)
        self.resolver = StackResolver(self.template, self.placeholders)
        self.functions = release_functions(self.template)
        self.access_roles = access_roles(templates)
        self.recorder = SigningRecorder()
        self.steps: list[StepResult] = []
        self.story = ""
        self.role_arns: dict[str, str] = {}  # function -> the ARN of its role, as CloudFormation would name it
        self.credentials: dict[str, dict[str, str]] = {}  # function -> its role's credentials (Lambda's environment)
        self.own_keys: dict[str, str] = {}  # access key id -> the function role it belongs to
        self.images: dict[str, str] = {}  # push (A, B, C) -> image URI by digest
        self._warm: str | None = None
        layer = self.layer_file("PlanRelease", "/opt/albgate/releases.json")
        self.releases_text = layer.read_text()
        self.specs: dict[str, ReleaseSpec] = parse_specs(self.releases_text)

    # --- what the functions find on AWS (moto), made before recording ----------------------------------------
    def _session(self, account: str, region: str) -> boto3.Session:
        """Credentials of a role of the world's own in ``account`` (moto keys accounts by the signing key)."""
        sts = boto3.client("sts", region_name=region)
        creds = sts.assume_role(RoleArn=f"arn:{PARTITION}:iam::{account}:role/albgate-world",
                                RoleSessionName="world")["Credentials"]
        return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                             aws_session_token=creds["SessionToken"], region_name=region)

    @staticmethod
    def _hold(sfn: Any, name: str) -> None:
        # Never run here: a child or a release ends when the world ends it (``end``).
        sfn.create_state_machine(
            name=name, roleArn=f"arn:{PARTITION}:iam::{HOME}:role/states",
            definition=json.dumps({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600,
                                                                          "End": True}}}))

    def build_aws(self) -> None:
        home = self._session(HOME, HOME_REGION)
        self.sfn = home.client("stepfunctions")
        self.dynamodb = home.client("dynamodb")
        self.ecr = home.client("ecr")
        # Every rollout state machine a release names, in its own account and Region.
        created = set()
        for spec in self.specs.values():
            for wave in spec.waves:
                for t in wave.targets:
                    if t.state_machine_arn not in created:
                        created.add(t.state_machine_arn)
                        self._hold(self._session(t.account, t.region).client("stepfunctions"),
                                   t.state_machine_arn.rsplit(":", 1)[1])
        # The release stack's own resources, under the names its template gives them.
        events = home.client("events")
        for logical_id, resource in self.template["Resources"].items():
            props = resource.get("Properties") or {}
            if resource["Type"] == "AWS::DynamoDB::Table":
                self.dynamodb.create_table(TableName=self.resolver.name(logical_id), BillingMode="PAY_PER_REQUEST",
                                           KeySchema=props["KeySchema"],
                                           AttributeDefinitions=props["AttributeDefinitions"])
            elif resource["Type"] == "AWS::Events::EventBus":
                events.create_event_bus(Name=self.resolver.name(logical_id))
            elif resource["Type"] == "AWS::StepFunctions::StateMachine":
                self._hold(self.sfn, self.resolver.name(logical_id))
        # The releases' repositories, with the trigger story's images; ECR's push times as the story needs them.
        for repository in sorted({s.ecr_repository for s in self.specs.values() if s.ecr_repository}):
            self.ecr.create_repository(repositoryName=repository)
            for push, (tag, layer, pushed_at, _) in PUSHES.items():
                manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                                       "digest": "sha256:" + "1" * 64},
                            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                        "size": 1, "digest": layer}]}
                image = self.ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest),
                                           imageTag=tag)["image"]
                digest = image["imageId"]["imageDigest"]
                self.images[push] = f"{HOME}.dkr.ecr.{HOME_REGION}.amazonaws.com/{repository}@{digest}"
                (pushed,) = [i for i in ecr_backends[HOME][HOME_REGION].repositories[repository].images
                             if i.image_digest == digest]
                pushed.image_pushed_at = pushed_at
        # Each function's role, as CloudFormation names it (no RoleName: <stack>-<logical id>-<suffix>), and the
        # credentials Lambda gives the function for it.
        sts = boto3.client("sts", region_name=HOME_REGION)
        for name, fn in self.functions.items():
            role_name = f"{RELEASE_STACK}-{fn.role_id}"[:64 - len(GENERATED_SUFFIX) - 1] + f"-{GENERATED_SUFFIX}"
            arn = f"arn:{PARTITION}:iam::{HOME}:role/{role_name}"
            creds = sts.assume_role(RoleArn=arn, RoleSessionName=fn.logical_id[:64])["Credentials"]
            self.role_arns[name] = arn
            self.own_keys[creds["AccessKeyId"]] = arn
            self.credentials[name] = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                                      "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                                      "AWS_SESSION_TOKEN": creds["SessionToken"]}

    # --- Step Functions ending an execution -----------------------------------------------------------------
    def end(self, execution_arn: str, status: str, output: dict[str, Any] | None = None, error: str | None = None,
            cause: str | None = None) -> None:
        """What Step Functions records when the execution ends (moto never runs it): in its own account and Region."""
        _, _, _, region, account, *_ = execution_arn.split(":")
        execution = stepfunctions_backends[account][region].describe_execution(execution_arn)
        assert execution.status == "RUNNING", f"{execution_arn} is {execution.status}, not running"
        execution.status = status
        execution.stop_date = datetime.datetime.now(datetime.UTC)
        execution.output = json.dumps(output) if output is not None else None
        execution.error, execution.cause = error, cause

    # --- whose credentials a call used ----------------------------------------------------------------------
    def principal_of(self, call: RecordedCall) -> str:
        """The role whose credentials signed the call: a function's own, a role a function assumed, or ''."""
        key = getattr(call, "access_key", "")
        return self.own_keys.get(key) or self.recorder.assumed.get(key) or ""

    def own_calls(self, function: str) -> list[RecordedCall]:
        """The calls ``function`` made with its own role's credentials."""
        return [c for c in self.recorder.calls_of(function) if self.principal_of(c) == self.role_arns[function]]

    def calls_as(self, role_arn: str) -> list[RecordedCall]:
        """Every call made with the credentials of an assumed ``role_arn``."""
        return [c for c in self.recorder.calls if self.recorder.assumed.get(getattr(c, "access_key", "")) == role_arn]

    # --- invoking a function, as Lambda would -----------------------------------------------------------------
    def layer_file(self, name: str, opt_path: str) -> Path:
        """The file an ``/opt`` path names in the function's layers as synthesized (what Lambda mounts there)."""
        manifest = json.loads((self.outdir / f"{RELEASE_STACK}.assets.json").read_text())["files"]
        for layer in self.functions[name].properties.get("Layers") or []:
            content = self.template["Resources"][layer["Ref"]]["Properties"]["Content"]
            source = Path(manifest[str(content["S3Key"]).removesuffix(".zip")]["source"]["path"])
            inside = (source if source.is_absolute() else self.outdir / source) / opt_path.removeprefix("/opt/")
            if inside.exists():
                return inside
        raise AssertionError(f"{name}: no layer holds {opt_path}")

    def environment(self, name: str) -> dict[str, str]:
        variables = (self.functions[name].properties.get("Environment") or {}).get("Variables") or {}
        env = {k: str(v) for k, v in self.resolver.resolve(variables).items()}
        for key, value in env.items():
            if value.startswith("/opt/"):
                env[key] = str(self.layer_file(name, value))
        return {**env, **self.credentials[name], "AWS_REGION": HOME_REGION, "AWS_DEFAULT_REGION": HOME_REGION}

    def cold_start(self) -> None:
        """Forget what a warm instance keeps: every functools cache of ``lambdas`` (the release deps, the trigger's
        settings and ports, the assumed credentials inside them) and the default boto3 session, whose credentials
        were resolved from another function's environment."""
        for module_name, module in list(sys.modules.items()):
            if module is None or not (module_name == "lambdas" or module_name.startswith("lambdas.")):
                continue
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == module_name:
                    value.cache_clear()
        boto3.DEFAULT_SESSION = None
        assert _release._installed is None, "the release functions must run their real deps here"
        self._warm = None

    def invoke(self, name: str, event: Any) -> Any:
        fn = self.functions[name]
        if self._warm != name:
            self.cold_start()
            self._warm = name
        return invoke_as_lambda(fn.module, self.environment(name), self.recorder, name, event)

    def step(self, step_id: str, function: str, event: Any,
             expect: Callable[[Any, list[RecordedCall]], str] | None = None) -> Any:
        """Run one handler and file it; ``expect(output, calls)`` returns what is missing ('' when all is there)."""
        result = StepResult(self.story, step_id, function)
        first = len(self.recorder.calls)
        try:
            result.output = self.invoke(function, event)
        except Exception as exc:  # filed, then the story stops: later steps need this one's output
            result.error = f"{type(exc).__name__}: {exc}"
        result.calls = self.recorder.calls[first:]
        return file_step(self.steps, result, expect)


# ---------------------------------------------------------------------------------------------------------
# Stories
# ---------------------------------------------------------------------------------------------------------
def _all(*checks: tuple[bool, str]) -> str:
    return "; ".join(message for ok, message in checks if not ok)


def release_story(world: ReleaseWorld) -> None:
    (spec,) = world.specs.values()
    by_cluster = {t.cluster: t for w in spec.waves for t in w.targets}
    home_role = world.role_arns["ReleaseWave"]
    use1, euw1 = (by_cluster["prod-use1-a"].role_arn, by_cluster["prod-euw1-a"].role_arn)
    step = world.step

    def made(calls: list[RecordedCall], action: str, principal: str, resource: str) -> tuple[bool, str]:
        """``action`` on ``resource`` (the ARN it names, or its state machine's) signed with ``principal``'s keys."""
        hits = [c for c in called(calls, action) if world.principal_of(c) == principal
                and resource in json.dumps(c.params)]
        seen = [(c.action, world.principal_of(c), c.params) for c in calls]
        return bool(hits), f"no {action} on {resource} with {principal or 'unknown'} credentials among {seen}"

    def machine(cluster: str) -> str:
        return by_cluster[cluster].state_machine_arn

    def execution_of(cluster: str) -> str:
        return machine(cluster).replace(":stateMachine:", ":execution:", 1)

    def child(state: dict[str, Any], cluster: str, *, rollback: bool = False) -> dict[str, Any]:
        pool = state["rollback"] if rollback else [c for w in state["waves"] for c in w["children"]]
        (found,) = [c for c in pool if c["target"]["cluster"] == cluster]
        return found

    def started_in(state: dict[str, Any], cluster: str, account: str, *, rollback: bool = False) -> tuple[bool, str]:
        arn = child(state, cluster, rollback=rollback)["execution_arn"] or ""
        return f":{account}:" in arn, f"{cluster}'s child {arn!r} is not in account {account}"

    def look(step_id: str, state: dict[str, Any], expect: Callable[[Any, list[RecordedCall]], str],
             rollback: bool = False) -> dict[str, Any]:
        return step(step_id, "ReleaseWave", {"release": state, "rollback": rollback}, expect)["release"]

    image = world.images["A"]
    planned = step("plan-release", "PlanRelease",
                   {"input": {"release": spec.name, "image": image}, "execution_name": "iam-release"},
                   lambda out, calls: _all(
                       (not calls, f"AWS called while planning: {[c.action for c in calls]}"),
                       ([w["name"] for w in out["release"]["waves"]] == [w.name for w in spec.waves],
                        f"waves {[w['name'] for w in out['release']['waves']]}")))["release"]

    # Wave 1, staging, in the home account: started and read with the function's own role.
    state = look("start-wave-staging", planned, lambda out, calls: _all(
        made(calls, "states:StartExecution", home_role, machine("staging")),
        started_in(out["release"], "staging", HOME),
        (not called(calls, "sts:AssumeRole"), "assumed a role for the home account's child")))
    world.end(child(state, "staging")["execution_arn"], "SUCCEEDED", {"previous_image": OLD_IMAGE})
    state = look("check-wave-staging", state, lambda out, calls: _all(
        made(calls, "states:DescribeExecution", home_role, execution_of("staging")),
        (out["release"]["verdict"] == "PASSED", f"verdict {out['release']['verdict']}")))

    # Wave 2, prod-use1-a, in the other account: its us-east-1 release role assumed, the child started with it.
    state = look("start-wave-first-production", state, lambda out, calls: _all(
        made(calls, "sts:AssumeRole", home_role, use1),
        made(calls, "states:StartExecution", use1, machine("prod-use1-a")),
        started_in(out["release"], "prod-use1-a", OTHER)))
    world.end(child(state, "prod-use1-a")["execution_arn"], "SUCCEEDED", {"previous_image": OLD_IMAGE})
    state = look("check-wave-first-production", state, lambda out, calls: _all(
        made(calls, "states:DescribeExecution", use1, execution_of("prod-use1-a")),
        (out["release"]["verdict"] == "PASSED", f"verdict {out['release']['verdict']}")))

    # Wave 3, two at a time: prod-use1-b (the us-east-1 role again) and prod-euw1-a (the eu-west-1 role).
    state = look("start-wave-rest-of-production", state, lambda out, calls: _all(
        made(calls, "sts:AssumeRole", home_role, euw1),
        made(calls, "states:StartExecution", use1, machine("prod-use1-b")),
        made(calls, "states:StartExecution", euw1, machine("prod-euw1-a")),
        started_in(out["release"], "prod-euw1-a", OTHER),
        (child(out["release"], "prod-euw1-b")["status"] == "PENDING", "started beyond max_concurrency")))
    world.end(child(state, "prod-use1-b")["execution_arn"], "SUCCEEDED", {"previous_image": OLD_IMAGE})
    world.end(child(state, "prod-euw1-a")["execution_arn"], "FAILED", error="TargetsUnhealthy",
              cause="the step's targets stayed unhealthy")
    state = look("check-wave-rest-of-production-fails", state, lambda out, calls: _all(
        made(calls, "states:DescribeExecution", use1, execution_of("prod-use1-b")),
        made(calls, "states:DescribeExecution", euw1, execution_of("prod-euw1-a")),
        (out["release"]["verdict"] == "FAILED" and out["release"]["rollback_needed"], "no rollback decided"),
        ([c["target"]["cluster"] for c in out["release"]["rollback"]] == ["prod-use1-b", "prod-use1-a", "staging"],
         f"rollback plan {[c['target']['cluster'] for c in out['release']['rollback']]}")))

    # The completed children rolled back one at a time, newest first, each where it runs.
    state = look("roll-back-prod-use1-b", state, lambda out, calls: _all(
        made(calls, "states:StartExecution", use1, machine("prod-use1-b")),
        started_in(out["release"], "prod-use1-b", OTHER, rollback=True)), rollback=True)
    world.end(child(state, "prod-use1-b", rollback=True)["execution_arn"], "SUCCEEDED")
    state = look("roll-back-prod-use1-a", state, lambda out, calls: _all(
        made(calls, "states:DescribeExecution", use1, execution_of("prod-use1-b")),
        made(calls, "states:StartExecution", use1, machine("prod-use1-a"))), rollback=True)
    world.end(child(state, "prod-use1-a", rollback=True)["execution_arn"], "SUCCEEDED")
    state = look("roll-back-staging", state, lambda out, calls: _all(
        made(calls, "states:StartExecution", home_role, machine("staging")),
        started_in(out["release"], "staging", HOME, rollback=True)), rollback=True)
    world.end(child(state, "staging", rollback=True)["execution_arn"], "SUCCEEDED")
    look("rollbacks-done", state, lambda out, calls: _all(
        made(calls, "states:DescribeExecution", home_role, execution_of("staging")),
        (out["release"]["verdict"] == "PASSED", f"verdict {out['release']['verdict']}"),
        ("rolled back 3 of 3" in out["release"]["cause"], f"cause {out['release']['cause']!r}")), rollback=True)


def trigger_story(world: ReleaseWorld) -> None:
    env = world.environment("ReleaseTrigger")
    machine, bus = env["ALBGATE_STATE_MACHINE_ARN"], env["ALBGATE_EVENT_BUS"]
    (spec,) = world.specs.values()
    repository = spec.ecr_repository or ""
    step = world.step

    def push(which: str) -> dict[str, Any]:
        tag, _, _, time = PUSHES[which]
        digest = world.images[which].rsplit("@", 1)[1]
        return ecr_event(repository=repository, digest=digest, tag=tag, account=HOME, region=HOME_REGION, time=time)

    def ended(execution_arn: str) -> dict[str, Any]:
        """Step Functions ends the release execution and sends its terminal event."""
        world.end(execution_arn, "SUCCEEDED", {})
        d = world.sfn.describe_execution(executionArn=execution_arn)
        event = status_event(machine, {"name": d["name"], "executionArn": d["executionArn"], "input": d["input"]},
                             "SUCCEEDED")
        return {**event, "account": HOME, "region": HOME_REGION}

    def published(calls: list[RecordedCall], detail_type: str) -> tuple[bool, str]:
        types = [e["DetailType"] for c in called(calls, "events:PutEvents") for e in c.params["Entries"]
                 if e.get("EventBusName") == bus]
        return detail_type in types, f"{detail_type!r} not published on {bus} (published {types})"

    def result(out: dict[str, Any]) -> dict[str, Any]:
        (only,) = out["results"]
        return only

    first = step("push-starts-the-release", "ReleaseTrigger", push("A"), lambda out, calls: _all(
        (result(out)["outcome"] == "started", f"outcome {out}"),
        (bool(called(calls, "dynamodb:PutItem")), "the lease was not taken"),
        (bool(called(calls, "states:StartExecution")), "the release was not started")))
    step("second-push-waits", "ReleaseTrigger", push("B"), lambda out, calls: _all(
        (result(out)["outcome"] == "queued", f"outcome {out}"),
        (bool(called(calls, "states:DescribeExecution")), "the lease's holder was not asked about"),
        (bool(called(calls, "dynamodb:UpdateItem")), "the waiting push was not written"),
        published(calls, RELEASE_QUEUED)))
    step("push-of-the-same-second-ordered-by-ecr", "ReleaseTrigger", push("C"), lambda out, calls: _all(
        (len(called(calls, "ecr:DescribeImages")) >= 2, "ECR's push times were not both asked"),
        (result(out)["outcome"] == "queued" and result(out)["replaces"], f"outcome {out}"),
        (not published(calls, RELEASE_ORDER_UNKNOWN)[0], "ECR's push times did not order the pushes"),
        published(calls, RELEASE_QUEUED)))
    handed = step("release-end-hands-the-lease-over", "ReleaseTrigger", ended(result(first)["execution_arn"]),
                  lambda out, calls: _all(
                      (out["lock"] == "handed_over", f"lock {out}"),
                      (bool(called(calls, "dynamodb:PutItem")), "the lease was not handed over"),
                      (bool(called(calls, "states:StartExecution")), "the waiting push was not started")))
    step("release-end-lets-the-lease-go", "ReleaseTrigger", ended(handed["next"]["execution_arn"]),
         lambda out, calls: _all(
             (out["lock"] == "released", f"lock {out}"),
             (bool(called(calls, "dynamodb:DeleteItem")), "the lease was not deleted")))


STORIES: dict[str, Callable[[ReleaseWorld], None]] = {
    "release": release_story,
    "trigger": trigger_story,
}


def tell(world: ReleaseWorld) -> None:
    """Every release story, as tests/iam/stories.py tells the environment's."""
    tell_stories(world, STORIES)


@contextmanager
def _world_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in WORLD_CREDENTIALS.items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.setattr(boto3, "DEFAULT_SESSION", None)
        yield


def record_releases(templates: dict[str, dict[str, Any]], outdir: Path) -> ReleaseWorld:
    """The release world on moto, its stories told while every call is recorded with its signing key."""
    with _world_credentials(), mock_aws():
        world = ReleaseWorld(templates, outdir)
        world.build_aws()
        try:
            with world.recorder.installed():
                tell(world)
        finally:
            world.cold_start()
    return world
