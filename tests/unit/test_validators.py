"""Every name and value rule of lambdas/domain/validators.py: a value at the rule's edge passes, one just past it
is refused with a message that quotes it and names the rule.

Given a value at the boundary a rule draws (the longest name, the shortest id, the first character allowed),
when it is validated through the ``Annotated`` type a model field uses, then it comes back unchanged; given the
same value one step over the edge, then pydantic refuses it and the message says which rule it breaks.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from lambdas.domain import validators as v
from lambdas.domain.documents import MAX_QUOTED

LABEL_63 = "a" + "b" * 61 + "c"
SUBDOMAIN_253 = ".".join([LABEL_63] * 3 + ["d" * 61])

# (id, type, a valid value at the edge, a value past it, words the refusal names the rule with)
TYPES = [
    ("kubernetes-name-63", v.KubernetesName, LABEL_63, LABEL_63 + "d", "a Kubernetes name (DNS-1123 label)"),
    ("kubernetes-name-edges", v.KubernetesName, "0-9", "-09", "DNS-1123 label"),
    ("kubernetes-name-upper", v.KubernetesName, "readiness", "Readiness", "lower-case letters"),
    ("object-name-253", v.KubernetesObjectName, SUBDOMAIN_253, SUBDOMAIN_253 + "e",
     "a Kubernetes object name (DNS-1123 subdomain)"),
    ("object-name-underscore", v.KubernetesObjectName, "nginx-app.v2", "nginx_app", "DNS-1123 subdomain"),
    ("cluster-name-100", v.ClusterName, "C" + "_-9" * 33, "C" + "_-9" * 33 + "x", "an EKS cluster name"),
    ("cluster-name-first", v.ClusterName, "0", "_c", "starting with a letter or digit"),
    ("cluster-name-empty", v.ClusterName, "c", "", "an EKS cluster name"),
    ("region-gov", v.AwsRegion, "us-gov-west-1", "us-west", "an AWS Region code"),
    ("region-iso", v.AwsRegion, "us-isob-east-1", "US-EAST-1", "an AWS Region code"),
    ("stack-name-128", v.StackName, "A" + "b-9" * 42 + "c", "A" + "b-9" * 42 + "cd", "a CloudFormation stack name"),
    ("stack-name-first", v.StackName, "Albgate", "1albgate", "starting with a letter"),
    ("account-12", v.AccountId, "000000000000", "12345678901", "a 12-digit AWS account id"),
    ("vpc-8", v.VpcId, "vpc-0123abcd", "vpc-0123abc", "a VPC id"),
    ("vpc-17", v.VpcId, "vpc-0123456789abcdef0", "vpc-0123456789abcdef", "a VPC id"),
    ("subnet", v.SubnetId, "subnet-0123456789abcdef0", "subnet-0123456789ABCDEF0", "a subnet id"),
    ("security-group", v.SecurityGroupId, "sg-0123abcd", "sg-0123abcde", "a security group id"),
    ("oidc-provider", v.OidcProviderArn, "arn:aws-cn:iam::123456789012:oidc-provider/o",
     "arn:aws:iam::12345678901:oidc-provider/o", "an IAM OIDC provider ARN"),
    ("role-arn-512", v.IamRoleArn, "arn:aws:iam::123456789012:role/" + "r" * 512,
     "arn:aws:iam::123456789012:role/" + "r" * 513, "an IAM role ARN"),
    ("role-arn-user", v.IamRoleArn, "arn:aws:iam::123456789012:role/path/lbc",
     "arn:aws:iam::123456789012:user/lbc", "an IAM role ARN"),
    ("ecr-repository-2", v.EcrRepositoryName, "ab", "a", "an ECR repository name"),
    ("ecr-repository-256", v.EcrRepositoryName, "t/" + "a" * 254, "t/" + "a" * 255, "an ECR repository name"),
    ("ecr-repository-uri", v.EcrRepositoryName, "team/app.v2",
     "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", "the part after '.amazonaws.com/'"),
    ("tag-glob-128", v.TagGlob, "v[0-9]*?" + "x" * 120, "v" * 129, "a tag glob"),
    ("tag-glob-space", v.TagGlob, "release-*", "v 1", "a tag glob"),
    ("image-repository", v.ImageRepository, "registry.local:5000/a/b", "registry.local/a/b:v1",
     "an image repository without tag"),
    ("chart-repository", v.ChartRepository, "oci://registry.local:5000/", "http://charts.example",
     "a chart repository"),
    ("chart-version", v.ChartVersion, "0.0.0", "v3.5.0", "a chart version"),
    ("controller-version", v.ControllerVersion, "v10.20.30", "v3.5", "a controller version"),
    ("go-duration", v.GoDuration, "1h2m3.5s", "60", "a Go duration"),
    ("go-duration-negative", v.GoDuration, "0s", "-1s", "a Go duration"),
    ("int-or-percent-count", v.IntOrPercent, 0, -1, "a pod count or a percentage"),
    ("int-or-percent-percent", v.IntOrPercent, "999%", "1000%", "a pod count or a percentage"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "good", "bad", "rule"), [t[1:] for t in TYPES], ids=[t[0] for t in TYPES])
def test_each_type_takes_its_edge_and_refuses_the_value_past_it(kind: Any, good: Any, bad: Any, rule: str) -> None:
    adapter = TypeAdapter(kind)
    assert adapter.validate_python(good) == good
    with pytest.raises(ValidationError) as err:
        adapter.validate_python(bad)
    message = str(err.value)
    assert rule in message, message
    assert repr(bad)[:MAX_QUOTED - 1] in message, message


# (id, rule, a value it takes, one it refuses): the rules the trigger checks an event's fields with
RULES = [
    ("image-tag-128", v.IMAGE_TAG, "_" + "v" * 127, "_" + "v" * 128),
    ("image-tag-first", v.IMAGE_TAG, "V1.2-rc_3", ".v1"),
    ("image-tag-ascii", v.IMAGE_TAG, "v1", "vé"),
    ("sha256-digest", v.SHA256_DIGEST, "sha256:" + "0" * 64, "sha256:" + "A" * 64),
    ("ecr-repository-event", v.ECR_REPOSITORY_NAME, "a/b-c/d_e", "a//b"),
    ("account-trailing-newline", v.ACCOUNT_ID, "123456789012", "123456789012\n"),
]


@pytest.mark.parametrize(("rule", "good", "bad"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_matches_its_values_and_says_what_it_is(rule: v.Rule, good: str, bad: str) -> None:
    assert rule.matches(good) and not rule.matches(bad)
    with pytest.raises(ValueError, match=f"is not {rule.what}: "):
        rule.check(bad)


@pytest.mark.parametrize(("host", "parts"), [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com", {"account": "123456789012", "region": "us-east-1"}),
    ("000000000000.dkr.ecr-fips.us-gov-west-1.amazonaws.com", {"account": "000000000000", "region": "us-gov-west-1"}),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", {"account": "123456789012", "region": "cn-north-1"}),
    ("12345678901.dkr.ecr.us-east-1.amazonaws.com", None),
    ("123456789012.dkr.ecr.us-east.amazonaws.com", None),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app", None),
], ids=["commercial", "fips-govcloud", "china", "account-11", "region-no-number", "with-path"])
def test_an_ecr_registry_host_names_its_account_and_region_by_their_rules(host: str, parts: dict | None) -> None:
    m = re.fullmatch(v.ECR_REGISTRY_PATTERN, host)
    assert (m.groupdict() if m else None) == parts


def test_a_long_bad_value_is_quoted_cut_short() -> None:
    with pytest.raises(ValueError) as err:
        v.CLUSTER_NAME.check("c" * 5000 + " ")
    assert "'" + "c" * (MAX_QUOTED - 2) + "… is not an EKS cluster name" in str(err.value)


@pytest.mark.parametrize(("text", "numbers"), [("1%", 1), ("100%", 100), ("007%", 7), ("1000%", None),
                                               ("25", None), ("%", None), ("25 %", None)])
def test_percent_reads_digits_and_a_percent_sign_only(text: str, numbers: int | None) -> None:
    assert v.percent(text) == numbers


@pytest.mark.parametrize(("text", "prefix", "numbers"), [
    ("v2.13.0", False, (2, 13, 0)),
    ("2.13.0", False, (2, 13, 0)),
    ("v2.7.2-eksbuild.1", False, None),
    ("v2.7.2-eksbuild.1", True, (2, 7, 2)),
    ("latest", True, None),
])
def test_version_numbers(text: str, prefix: bool, numbers: tuple[int, int, int] | None) -> None:
    assert v.version_numbers(text, prefix=prefix) == numbers


@pytest.mark.parametrize(("text", "seconds"), [
    ("60s", 60.0),
    ("0s", 0.0),
    ("1m30s", 90.0),
    ("2m", 120.0),
    ("1h2m3.5s", 3723.5),
    ("1500ms", 1.5),
    ("250us", 0.00025),
    ("1h", 3600.0),
    ("16m40s", 1000.0),
])
def test_a_go_duration_reads_as_the_seconds_the_controller_takes(text: str, seconds: float) -> None:
    assert v.go_duration_seconds(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("text", ["60", "-1s", "1 m", "s", "1d", ""])
def test_a_go_duration_that_the_rule_refuses_has_no_seconds(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Go duration: write e.g. '60s'"):
        v.go_duration_seconds(text)


def test_json_bool_takes_a_json_boolean_only() -> None:
    adapter = TypeAdapter(v.JsonBool)
    assert adapter.validate_python(False) is False
    with pytest.raises(ValidationError, match="bool_type"):
        adapter.validate_python("true")


def test_a_boolean_in_a_list_of_numbers_is_refused_naming_the_field_and_the_item() -> None:
    class Model(BaseModel):
        counts: Annotated[list[int], v.no_boolean_items("numbers")] = []

    assert Model(counts=[0, 1]).counts == [0, 1]
    with pytest.raises(ValidationError, match="item 2 is true, a boolean; counts holds numbers"):
        Model(counts=[1, True])
