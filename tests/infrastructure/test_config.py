"""The CDK config: the shipped example validates, and every bad value stops synth naming the field and the fix."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from stacks.config import AlbgateConfig, ConfigError, load_config, parse_config
from tests.conftest import ROOT


def test_example_file_and_cdk_json_carry_the_same_config(example_config):
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    assert cdk_json["context"]["albgate"] == example_config
    assert cdk_json["app"] == "python app.py"


def test_example_is_the_seed_app(example_config):
    # Given the shipped example / When it is parsed / Then it describes the example nginx app
    config = parse_config(example_config)
    (app,) = config.applications
    assert (app.namespace, app.deployment, app.replicas, app.service) == ("readiness", "nginx-app", 3, "nginx-svc")
    assert config.region == "us-east-1"
    assert config.account is None  # from CDK_DEFAULT_ACCOUNT, else agnostic


def _with(example: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the example with one dotted path set (value ... deletes it)."""
    config = copy.deepcopy(example)
    *parents, last = path.split(".")
    node: Any = config
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    key = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return config


PRIVATE = {"endpoint_private": True}

# (id, path, value, expected field in the message, expected words of the fix)
BAD_VALUES = [
    ("cluster-name", "clusters.0.name", "my cluster", "clusters.0.name", "aws eks list-clusters"),
    ("region", "clusters.0.region", "us-east", "clusters.0.region", "us-east-1"),
    ("account-not-12-digits", "clusters.0.account", "1234", "clusters.0.account", "12-digit"),
    ("auth-mode", "clusters.0.authentication_mode", "IAM", "clusters.0.authentication_mode", "'API_AND_CONFIG_MAP'"),
    ("unknown-field", "clusters.0.endpoint", "private", "clusters.0.endpoint", "fix its spelling"),
    ("namespace", "applications.0.namespace", "Readiness", "applications.0.namespace", "lower-case"),
    ("deployment", "applications.0.deployment", "nginx_app", "applications.0.deployment", "lower-case"),
    ("unknown-cluster", "applications.0.cluster", "other", "applications.0.cluster", "my-cluster"),
    ("ecr-repository", "applications.0.ecr_repository", "123.dkr.ecr.us-east-1.amazonaws.com/app",
     "applications.0.ecr_repository", "after '.amazonaws.com/'"),
    ("tag-pattern", "applications.0.tag_pattern", "v 1", "applications.0.tag_pattern", "'v*'"),
    ("replicas", "applications.0.replicas", 0, "applications.0.replicas", "greater than or equal to 1"),
    ("missing-container", "applications.0.container", ..., "applications.0.container", "add it"),
    ("policy-steps", "rollout_policy.steps", [1, "50%"], "rollout_policy.steps", "'100%'"),
    ("policy-unknown", "rollout_policy.max_surge", 2, "rollout_policy.max_surge", "fix its spelling"),
    ("retention", "log_retention_days", 31, "log_retention_days", "30"),
    ("log-level", "log_level", "TRACE", "log_level", "'INFO'"),
    ("no-clusters", "clusters", [], "clusters", "at least 1"),
    ("budget-over-the-refill", "describe_budget", {"rate_per_second": 51}, "describe_budget.rate_per_second",
     "less than or equal to 50"),
    ("budget-over-the-bucket", "describe_budget", {"burst": 201}, "describe_budget.burst",
     "less than or equal to 200"),
    ("budget-burst-zero", "describe_budget", {"burst": 0}, "describe_budget.burst", "greater than or equal to 1"),
    ("budget-unknown", "describe_budget", {"rate": 4}, "describe_budget.rate", "fix its spelling"),
    # booleans are JSON booleans: a lax parser would read "no" as false and 1 as true
    ("private-as-string", "clusters.0.endpoint_private", "true", "clusters.0.endpoint_private",
     "'true' is not a boolean; write true or false"),
    ("budget-enabled-as-word", "describe_budget", {"enabled": "no"}, "describe_budget.enabled",
     "'no' is not a boolean"),
    ("harden-as-number", "rollout_policy.harden", 1, "rollout_policy.harden", "1 is not a boolean"),
    ("rollback-as-string", "rollout_policy.rollback_on_failure", "1", "rollout_policy.rollback_on_failure",
     "'1' is not a boolean"),
    # the policy's shape
    ("policy-steps-and-batch", "rollout_policy.batch_size", 2, "rollout_policy",
     "batch_size (2) and steps ([1, '25%', '50%', '100%']) are both given"),
    ("policy-counts-unsorted", "rollout_policy.steps", [2, 1, "100%"], "rollout_policy.steps",
     "list counts in increasing order"),
    ("policy-approval-twice", "rollout_policy.approval_before_steps", [2, 2], "rollout_policy.approval_before_steps",
     "names step 2 twice"),
    # the policy against the replicas the example lists (3): what Preflight would refuse on every rollout
    ("policy-shrinks-on-the-replicas", "rollout_policy.steps", [3, "50%", "100%"], "rollout_policy.steps",
     "fewer new pods than step 1 (3 pods) before it; a plan counts all new pods so far"),
    ("policy-approval-beyond-the-plan", "rollout_policy.approval_before_steps", [4],
     "rollout_policy.approval_before_steps", "the plan has 3 step(s), [1, 2, 3] new pods after each"),
    ("long-value-quoted-short", "applications.0.cluster", "c" * 5000, "applications.0.cluster",
     "'" + "c" * 98 + "…"),
    # system namespaces and the controller's are never an application's
    *[(f"system-namespace-{ns}", "applications.0.namespace", ns, "applications.0.namespace",
       "is a Kubernetes system namespace or the Load Balancer Controller's")
      for ns in ("kube-system", "kube-public", "kube-node-lease")],
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "field", "fix"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_bad_value_names_field_and_fix(example_config, path, value, field, fix):
    # Given the example with one bad value / When it is parsed
    with pytest.raises(ConfigError) as err:
        parse_config(_with(example_config, path, value))
    # Then the message names the field and says how to fix it
    message = str(err.value)
    assert f"{field}: " in message
    assert fix in message


def test_a_share_sized_for_the_larger_describe_bucket_is_accepted_whole(example_config):
    # Given a share for an account whose Describe* bucket is 200 refilled at 50/s, at the very limits allowed
    config = parse_config(_with(example_config, "describe_budget", {"rate_per_second": 50, "burst": 200}))
    # Then it is taken as written, and the default stays the share sized for the 40 and 10 of the page's example
    assert (config.describe_budget.rate_per_second, config.describe_budget.burst) == (50, 200)
    assert (parse_config(example_config).describe_budget.rate_per_second,
            parse_config(example_config).describe_budget.burst) == (4.5, 30)


@pytest.mark.parametrize("missing", ["vpc_id", "subnet_ids", "security_group_ids"])
def test_private_endpoint_requires_network_placement(example_config, missing):
    # Given a private cluster with every network field but one
    cluster = {
        **example_config["clusters"][0],
        **PRIVATE,
        "vpc_id": "vpc-0123456789abcdef0",
        "subnet_ids": ["subnet-0123456789abcdef0"],
        "security_group_ids": ["sg-0123456789abcdef0"],
    }
    del cluster[missing]
    # When parsed / Then the missing one is named, with where to find it
    with pytest.raises(ConfigError, match=rf"clusters\.0\.{missing}: required when endpoint_private is true"):
        parse_config({**example_config, "clusters": [cluster]})


CROSS_FIELD = [
    ("second-region-without-account", {"name": "other", "region": "eu-west-1"}, "clusters.1.account",
     "span several accounts or Regions"),
    ("duplicate-cluster", {"name": "my-cluster", "region": "us-east-1"}, "clusters.1.name", "listed twice"),
    ("cluster-without-app", {"name": "other", "region": "us-east-1"}, "clusters.1", "has no application"),
]


@pytest.mark.parametrize(("extra", "field", "fix"), [c[1:] for c in CROSS_FIELD], ids=[c[0] for c in CROSS_FIELD])
def test_cross_field_problems_name_the_field(example_config, extra, field, fix):
    config = {**example_config, "clusters": example_config["clusters"] + [extra]}
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    assert f"{field}: " in str(err.value)
    assert fix in str(err.value)


def test_every_problem_is_reported_at_once(example_config):
    config = _with(_with(example_config, "clusters.0.region", "nowhere"), "applications.0.namespace", "NS")
    message = str(pytest.raises(ConfigError, parse_config, config).value)
    assert "clusters.0.region: " in message and "applications.0.namespace: " in message


def test_private_clusters_share_one_vpc(example_config):
    net = {"endpoint_private": True, "subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["sg-01234567"]}
    a = {**example_config["clusters"][0], **net, "vpc_id": "vpc-0123456789abcdef0"}
    b = {**a, "name": "b", "vpc_id": "vpc-0123456789abcdef1"}
    apps = example_config["applications"] + [{**example_config["applications"][0], "cluster": "b"}]
    with pytest.raises(ConfigError, match=r"clusters\.1\.vpc_id: a Lambda function joins one VPC"):
        parse_config({**example_config, "clusters": [a, b], "applications": apps})


# --- where the config comes from ------------------------------------------------------------------------------
def test_config_file_named_by_context_wins(example_config, tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(_with(example_config, "applications.0.namespace", "shop")))
    config = load_config({"albgate_config": str(path), "albgate": example_config})
    assert config.applications[0].namespace == "shop"


def test_relative_config_path_is_read_from_the_base_dir(example_config):
    config = load_config({"albgate_config": "config/example.json"}, base_dir=ROOT)
    assert config == AlbgateConfig.model_validate(example_config)


@pytest.mark.parametrize(
    ("context", "words"),
    [
        ({}, "add a 'albgate' object to the context in cdk.json"),
        ({"albgate_config": "/nonexistent/a.json"}, "albgate_config: file /nonexistent/a.json does not exist"),
        ({"albgate": "{not json"}, "context 'albgate' (a string): not valid JSON (Expecting property name"),
        ({"albgate": '{"stack_name": "A", "stack_name": "B"}'},
         "context 'albgate' (a string): key 'stack_name' is given twice in one object"),
        ({"albgate": ["a", "list"]}, "expected a JSON object"),
    ],
    ids=["no-config", "missing-file", "string-not-json", "string-key-twice", "not-an-object"],
)
def test_missing_or_malformed_config_says_what_to_do(context, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(context)


def test_inline_json_string_is_accepted(example_config):
    # `cdk synth -c albgate='{...}'` passes the object as a string
    assert load_config({"albgate": json.dumps(example_config)}).applications[0].deployment == "nginx-app"


# --- the config file is read strictly: one line per problem, naming the file and the fix -------------------------
def _example_text(example_config: dict[str, Any]) -> str:
    return json.dumps(example_config, indent=2)


CONFIG_FILES = [
    # id, file content (bytes), or None for a directory, words of the one-line error
    ("latin-1", lambda text: text.replace('"Albgate"', '"Albgat\u00e9"').encode("latin-1"),
     ["not UTF-8 text (line 2, byte", "save the file as UTF-8"]),
    ("utf-16", lambda text: text.encode("utf-16"), ["not UTF-8 text (line 1, byte 0", "save the file as UTF-8"]),
    ("policy-twice", lambda text: text.replace('  "log_level"', '  "rollout_policy": {},\n  "log_level"').encode(),
     ["key 'rollout_policy' is given twice in one object (again at line", "keep one of them"]),
    ("not-json", lambda text: text[:-2].encode(), ["not valid JSON (", "at line"]),
    ("directory", None, ["is a directory; give the path of a JSON config file in it"]),
]  # fmt: skip


@pytest.mark.parametrize(("content", "words"), [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES])
def test_a_config_file_that_is_not_strict_json_is_one_line_naming_the_file(example_config, tmp_path, content, words):
    # Given a config file that is not UTF-8, gives a key twice, is not JSON, or is a directory
    path = tmp_path / "config.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content(_example_text(example_config)))
    # When the CDK app reads it
    with pytest.raises(ConfigError) as err:
        load_config({"albgate_config": str(path)})
    # Then one line names the context key, the file and what to do, with no exception chained to it
    message = str(err.value)
    assert message.startswith(f"albgate_config: {path}") and "\n" not in message, message
    assert all(w in message for w in words), message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_strict_config_file_still_reads(example_config, tmp_path):
    # Given the example written as a UTF-8 file
    path = tmp_path / "config.json"
    path.write_bytes(_example_text(example_config).encode("utf-8"))
    # When read / Then it is the example
    assert load_config({"albgate_config": str(path)}) == AlbgateConfig.model_validate(example_config)
