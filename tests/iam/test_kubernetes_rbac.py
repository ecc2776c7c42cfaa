"""Kubernetes RBAC from recorded requests: every request each function sent the API server is allowed by what
albgate renders for it, in both authentication modes, and the read-only functions can write nothing.

The stories (tests/iam/stories.py) drive every deployed handler through its real adapters against the fake API
server, which records each request it answers; the recording files them under the function that sent them. Here
each request is put to an RBAC evaluator (tests/iam/kube_rbac.py) holding exactly what the function would hold on
a cluster:
- access entries (the example's API_AND_CONFIG_MAP cluster): the access entry the synthesized template gives its
  role, its access policies acting in their scope, its Kubernetes groups bound by albgate's RBAC manifests;
- aws-auth (the same example with a CONFIG_MAP cluster): the groups of the role's mapRoles entry in the stack's
  output, bound by the same manifests (``system:masters`` is the cluster admin);
- both: the discovery every authenticated user has.
The manifests are those ``python app.py`` writes for the config (``render_rbac``, ``render_bootstrap_rbac``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from stacks.constructs.bootstrap_specs import (
    BOOTSTRAP_HANDLERS,
    BOOTSTRAP_KUBE_ACCESS,
    CLUSTER_ADMIN_POLICY,
    render_bootstrap_rbac,
)
from stacks.constructs.cluster_access import READ_EXTRA_GROUP, VIEW_POLICY, VIEW_POLICY_RULES, render_rbac
from stacks.constructs.handler_specs import ROLLOUT_HANDLERS, SCHEDULED_HANDLERS
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER
from lambdas.adapters.kubernetes import MERGE_PATCH, STRATEGIC_MERGE
from tests.adapters.fake_apiserver import APPLY_PATCH, Recorded
from tests.iam.kube_rbac import (
    ALLOW_ALL_RULES,
    DISCOVERY,
    Attributes,
    Grant,
    allowed_by,
    attributes_of,
    rbac_grants,
)
from tests.iam.world import World, deployed_functions

FUNCTIONS = sorted(s.name for s in ALL_HANDLERS + TRIGGER)
MODES = ["access-entries", "aws-auth"]
# The functions that only read the cluster: the rollout's and the schedule's with kube="read", and the
# bootstrap's whose extra access reads only (its other "read" functions write through the bootstrap's group).
READ_ONLY = sorted([s.name for s in ROLLOUT_HANDLERS + SCHEDULED_HANDLERS if s.kube == "read"]
                   + [s.name for s in BOOTSTRAP_HANDLERS if BOOTSTRAP_KUBE_ACCESS[s.name] in ("read", "controller-read")])
POLICY_RULES = {VIEW_POLICY: tuple(VIEW_POLICY_RULES), CLUSTER_ADMIN_POLICY: tuple(ALLOW_ALL_RULES)}
READS = {"get", "list", "watch"}


@dataclass(frozen=True)
class Identity:
    function: str
    mode: str
    grants: tuple[Grant, ...]


def manifests(config: Any) -> list[str]:
    """The RBAC manifests ``python app.py`` writes for the config (every cluster's app namespaces)."""
    namespaces = [ns for c in config.clusters for ns in config.namespaces(c.name)]
    return [render_rbac(namespaces), render_bootstrap_rbac(namespaces)]


def _policy_grants(entry: dict[str, Any]) -> list[Grant]:
    grants = []
    for policy in entry.get("AccessPolicies") or []:
        name = str(policy["PolicyArn"]).rsplit("/", 1)[-1]
        assert name in POLICY_RULES, f"access policy {name} is not modelled here: add its rules from the EKS guide"
        scope = policy["AccessScope"]
        namespaces = frozenset(scope["Namespaces"]) if scope["Type"] == "namespace" else None
        grants.append(Grant(f"access policy {name} ({scope['Type']})", POLICY_RULES[name], namespaces))
    return grants


def access_entry_identities(template: dict[str, Any], rbac: list[str]) -> dict[str, Identity]:
    """Each function of the template as its access entry makes it (no entry: nothing but discovery)."""
    functions = deployed_functions(template)
    by_role = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::EKS::AccessEntry":
            props = resource["Properties"]
            by_role[props["PrincipalArn"]["Fn::GetAtt"][0]] = props
    out = {}
    for name, fn in functions.items():
        entry = by_role.get(fn.role_id)
        grants = [DISCOVERY]
        if entry is not None:
            grants += _policy_grants(entry) + rbac_grants(rbac, entry.get("KubernetesGroups") or [])
        out[name] = Identity(name, "access-entries", tuple(grants))
    return out


def _text(value: Any) -> str:
    """An output's value with every role ARN written as ``<logical id of the role>``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_text(p) for p in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}>"
    raise AssertionError(f"unexpected value in the aws-auth output: {value!r}")


def aws_auth_identities(template: dict[str, Any], rbac: list[str]) -> dict[str, Identity]:
    """Each function of the template as the stack's aws-auth output maps its role (not listed: discovery only)."""
    (output,) = [v for k, v in template["Outputs"].items() if k.startswith("ClusterAccessAwsAuthMapRoles")]
    entries = {e["rolearn"].strip("<>"): e["groups"] for e in yaml.safe_load(_text(output["Value"]))}
    out = {}
    for name, fn in deployed_functions(template).items():
        groups = entries.get(fn.role_id, [])
        grants = [DISCOVERY] + rbac_grants(rbac, groups)
        if "system:masters" in groups:  # the API server's superuser group: authorized before any authorizer
            grants.append(Grant("system:masters", tuple(ALLOW_ALL_RULES)))
        out[name] = Identity(name, "aws-auth", tuple(grants))
    return out


@pytest.fixture(scope="session")
def identities(recording: World, vpc_synth: Any) -> dict[tuple[str, str], Identity]:
    rbac = manifests(recording.config)
    found = {("access-entries", k): v for k, v in access_entry_identities(recording.template, rbac).items()}
    found |= {("aws-auth", k): v for k, v in aws_auth_identities(vpc_synth.template, rbac).items()}
    return found


def requests_of(recording: World, function: str) -> list[Recorded]:
    return [r for s in recording.steps if s.function == function for r in s.kube_requests]


def refused(identity: Identity, requests: list[Recorded]) -> list[str]:
    """What the API server would answer 403 to, one line each."""
    return [f"{identity.function} ({identity.mode}) may not {asked}: {r.method} {r.path}"
            for r in requests for asked in attributes_of(r) if allowed_by(identity.grants, asked) is None]


def request(method: str, path: str, *, content_type: str = "application/json", status: int = 200) -> Recorded:
    return Recorded(method, path, {}, content_type, "Bearer token", None, status)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_kubernetes_request_is_allowed_by_what_albgate_renders(recording, identities, function, mode) -> None:
    # Given the requests the function sent the API server while its handler ran through the stories
    requests = requests_of(recording, function)
    # When each is put to the authorizer with what the function holds in this mode
    # Then none would be refused
    assert refused(identities[(mode, function)], requests) == []


def test_exactly_the_functions_with_cluster_access_talk_to_kubernetes(recording) -> None:
    # Given the functions that sent the API server anything, and the specs that grant access
    talking = sorted({s.function for s in recording.steps if s.kube_requests})
    # Then they are the same: no function needs access it lacks, none holds access it never used in the stories
    assert talking == sorted(s.name for s in ALL_HANDLERS + TRIGGER if s.kube != "none")


def test_preflight_is_read_only_like_the_gate_the_drain_check_and_the_bootstraps_checks() -> None:
    assert READ_ONLY == ["BootstrapCheckController", "BootstrapFindUngatedPods", "Preflight", "PreflightReport",
                         "VerifyDrain"]


@pytest.mark.parametrize("mode", MODES)
def test_the_gate_may_write_its_pods_and_nothing_else(recording, identities, mode) -> None:
    ns, name = recording.config.applications[0].namespace, recording.config.applications[0].deployment
    identity = identities[(mode, "CheckTargetHealth")]
    # Given the gate's pod writes: the nudge (albgate's condition False with a note: pods/status) and taking an old
    # pod out of its Service's endpoints (its serving label and deletion cost: a merge patch of the pod)
    allowed = [request("PATCH", f"/api/v1/namespaces/{ns}/pods/web-1/status", content_type=STRATEGIC_MERGE),
               request("PATCH", f"/api/v1/namespaces/{ns}/pods/web-1", content_type=MERGE_PATCH)]
    # and writes it must not make: the Deployment, creating or deleting pods, the controller's bindings
    forbidden = [
        request("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        request("POST", f"/api/v1/namespaces/{ns}/pods", status=201),
        request("DELETE", f"/api/v1/namespaces/{ns}/pods/web-1"),
        request("PATCH", f"/apis/elbv2.k8s.aws/v1beta1/namespaces/{ns}/targetgroupbindings/tgb"),
        request("PATCH", "/api/v1/namespaces/kube-system/pods/web-1", content_type=MERGE_PATCH),
    ]
    # Then the first are allowed and every other refused
    assert refused(identity, allowed) == []
    assert len(refused(identity, forbidden)) == len(forbidden), refused(identity, forbidden)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("function", READ_ONLY)
def test_a_read_only_function_reads_and_could_write_nothing(recording, identities, function, mode) -> None:
    ns, name = recording.config.applications[0].namespace, recording.config.applications[0].deployment
    # Given what the function sent, and writes it could attempt in its own app namespace
    sent = [a.verb for r in requests_of(recording, function) for a in attributes_of(r) if a.resource_request]
    writes = [
        request("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        request("PATCH", f"/api/v1/namespaces/{ns}/pods/web-1/status"),
        request("POST", f"/api/v1/namespaces/{ns}/pods", status=201),
        request("PATCH", f"/apis/elbv2.k8s.aws/v1beta1/namespaces/{ns}/targetgroupbindings/tgb"),
        request("DELETE", f"/api/v1/namespaces/{ns}/pods/web-1"),
    ]
    # Then it only read, and every write would be refused
    assert sent and set(sent) <= READS, sent
    identity = identities[(mode, function)]
    assert len(refused(identity, writes)) == len(writes), refused(identity, writes)


@pytest.mark.parametrize("mode", MODES)
def test_the_bootstrap_labels_the_configured_namespaces_only_and_creates_none(recording, identities, mode) -> None:
    identity = identities[(mode, "BootstrapLabelNamespaces")]
    (ns,) = recording.config.namespaces(recording.config.clusters[0].name)
    # Given the label requests for the app namespace, another namespace, and namespace creations
    allowed = [request("GET", f"/api/v1/namespaces/{ns}"),
               request("PATCH", f"/api/v1/namespaces/{ns}", content_type=APPLY_PATCH)]
    forbidden = [
        request("PATCH", "/api/v1/namespaces/kube-system", content_type=APPLY_PATCH),
        request("GET", "/api/v1/namespaces/default"),
        request("POST", "/api/v1/namespaces", status=201),
        # a server-side apply that would create the app namespace: authorized as create too
        request("PATCH", f"/api/v1/namespaces/{ns}", content_type=APPLY_PATCH, status=201),
    ]
    # Then only the first two are allowed
    assert refused(identity, allowed) == []
    assert len(refused(identity, forbidden)) == len(forbidden), refused(identity, forbidden)


@pytest.mark.parametrize("mode", MODES)
def test_a_rule_missing_from_the_rendered_rbac_is_reported_naming_the_request(recording, vpc_synth, mode) -> None:
    # Given albgate's RBAC without the TargetGroupBinding reads of albgate-read-extra
    rollout, bootstrap = manifests(recording.config)
    docs = [copy.deepcopy(d) for d in yaml.safe_load_all(rollout) if d]
    for d in docs:
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == READ_EXTRA_GROUP:
            d["rules"] = [r for r in d["rules"] if "targetgroupbindings" not in r["resources"]]
    broken = [yaml.safe_dump_all(docs), bootstrap]
    identity = (access_entry_identities(recording.template, broken) if mode == "access-entries"
                else aws_auth_identities(vpc_synth.template, broken))["Preflight"]
    # When Preflight's recorded requests are checked against it
    problems = refused(identity, requests_of(recording, "Preflight"))
    # Then exactly its TargetGroupBinding list is reported
    assert problems and all("list targetgroupbindings.elbv2.k8s.aws" in p for p in problems), problems


def test_the_evaluator_sees_a_create_in_a_server_side_apply_that_created() -> None:
    # Given a server-side apply of a new Service, and one of an existing Service
    created = request("PATCH", "/api/v1/namespaces/shop/services/web", content_type=APPLY_PATCH, status=201)
    updated = request("PATCH", "/api/v1/namespaces/shop/services/web", content_type=APPLY_PATCH, status=200)
    # Then the first asks for patch and create, the second for patch only
    assert [a.verb for a in attributes_of(created)] == ["patch", "create"]
    assert [a.verb for a in attributes_of(updated)] == ["patch"]
    assert attributes_of(created)[1] == Attributes("create", created.path, True, "", "services", "", "shop", "web")
