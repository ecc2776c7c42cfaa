"""Every name and value rule albgate's inputs are checked by, each written once, as a pydantic ``Annotated`` type.

Job: hold the rules that the rollout input (lambdas/domain/models.py), the CDK config (stacks/config.py), the
bootstrap input (lambdas/domain/bootstrap.py), the preflight report request, the ECR trigger's configuration
and events (lambdas/domain/trigger.py) and the simulation's scenarios (albgate/sim/scenario.py) apply, so that
all of them accept exactly the same names. Each rule is a ``Rule`` (what it is, how to fix a value that breaks
it, the test) and, where a model field carries it, an ``Annotated`` type over it (``KubernetesName``,
``ClusterName``, ``AwsRegion``, ...). The comment above each names where the rule comes from (docs/facts.md,
"Names and identifiers albgate checks", unless another section is named).

Invariant: pure, and imports nothing of albgate but ``documents.quote``, so any module may import it. A value
that breaks a rule raises ``ValueError("<value> is not <what>: <fix>")``, the value quoted to at most
``documents.MAX_QUOTED`` characters; pydantic puts the field's path in front, so every message names the field,
the rule and what to write instead. A value is tested whole (``fullmatch``): no trailing newline slips through.
A rule another module builds into a larger pattern (an ECR image URI, a state machine ARN, the image reference
grammar) is also public as its regex string, ``<RULE>_PATTERN``: unanchored, with no groups unless its comment
names them, so it composes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, ValidationInfo

from lambdas.domain.documents import quote


@dataclass(frozen=True)
class Rule:
    """One rule a string must keep: ``accepts(value)``; else ``check`` raises the message naming it."""

    what: str  # the kind of value, with its article: "an EKS cluster name"
    fix: str  # what to write instead
    accepts: Callable[[str], object]  # truthy when the value keeps the rule

    def matches(self, value: str) -> bool:
        return isinstance(value, str) and bool(self.accepts(value))

    def check(self, value: str) -> str:
        """``value`` when it keeps the rule; else ValueError naming the rule and the fix (an ``AfterValidator``)."""
        if not self.matches(value):
            raise ValueError(f"{quote(value)} is not {self.what}: {self.fix}")
        return value


def _whole(pattern: re.Pattern[str]) -> Callable[[str], object]:
    return pattern.fullmatch


# ---------------------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------------------
# DNS-1123 label and subdomain, as the API server validates namespace, container and most object names
# (docs/facts.md, "Names and identifiers albgate checks": Kubernetes "Object Names and IDs"). Anchored, for
# callers that use ``.match``.
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Service names are DNS-1035 labels: like a DNS-1123 label, but starting with a letter (docs/facts.md, "Names and
# identifiers albgate checks").
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

KUBERNETES_NAME = Rule(
    "a Kubernetes name (DNS-1123 label)",
    "lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
    _whole(DNS1123_LABEL),
)
KUBERNETES_OBJECT_NAME = Rule(
    "a Kubernetes object name (DNS-1123 subdomain)",
    "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
    _whole(DNS1123_SUBDOMAIN),
)
KubernetesName = Annotated[str, AfterValidator(KUBERNETES_NAME.check)]
"""A namespace, a container, a service account: a DNS-1123 label."""
KubernetesObjectName = Annotated[str, AfterValidator(KUBERNETES_OBJECT_NAME.check)]
"""A Deployment, a Service, an Ingress: a DNS-1123 subdomain."""

# A percentage as a Deployment's maxSurge / maxUnavailable and a rollout step write it: digits and '%'
# (docs/facts.md, Kubernetes Deployment controller: "25%" defaults). The range is the caller's: a step is 1-100 %.
_PERCENT = re.compile(r"(?P<n>[0-9]{1,3})%")


def percent(text: str) -> int | None:
    """The number of a percentage like ``'25%'``; None when ``text`` is not one."""
    m = _PERCENT.fullmatch(text) if isinstance(text, str) else None
    return int(m.group("n")) if m else None


def _int_or_percent(value: int | str) -> int | str:
    if isinstance(value, bool) or (isinstance(value, int) and value < 0) or (
        isinstance(value, str) and percent(value) is None
    ):
        raise ValueError(
            f"{quote(value)} is not a pod count or a percentage: write a pod count >= 0 or a percentage like '25%'"
        )
    return value


IntOrPercent = Annotated[int | str, AfterValidator(_int_or_percent)]
"""A Deployment strategy's maxSurge / maxUnavailable: pods (>= 0) or a percentage of the replicas."""


# ---------------------------------------------------------------------------------------------------------
# AWS
# ---------------------------------------------------------------------------------------------------------
# EKS CreateCluster `name`: 1-100 letters, digits, '-' and '_', starting with a letter or digit.
_CLUSTER_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
CLUSTER_NAME = Rule(
    "an EKS cluster name",
    "1 to 100 letters, digits, '-' and '_', starting with a letter or digit; copy it from `aws eks list-clusters`",
    _whole(_CLUSTER_NAME),
)
# The length goes into the JSON Schema too (docs/rollout-input.schema.json shows it); the check is the rule's.
ClusterName = Annotated[
    str, AfterValidator(CLUSTER_NAME.check), Field(json_schema_extra={"minLength": 1, "maxLength": 100})
]

# Region codes as the AWS Regions list writes them: 'us-east-1', 'us-gov-west-1', 'us-isob-east-1'.
AWS_REGION_PATTERN = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]"
AWS_REGION = Rule("an AWS Region code", "write e.g. 'us-east-1'", _whole(re.compile(AWS_REGION_PATTERN)))
AwsRegion = Annotated[str, AfterValidator(AWS_REGION.check)]

# CloudFormation CreateStack `StackName`: letters (case-sensitive), digits and '-', a letter first, at most 128.
STACK_NAME = Rule(
    "a CloudFormation stack name",
    "letters, digits and '-', starting with a letter, at most 128 characters",
    _whole(re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")),
)
StackName = Annotated[str, AfterValidator(STACK_NAME.check)]

# An AWS account ID: 12 digits, a string (a JSON number would lose leading zeros).
ACCOUNT_ID_PATTERN = r"[0-9]{12}"
ACCOUNT_ID = Rule(
    "a 12-digit AWS account id",
    "write it as a string, e.g. '123456789012'",
    _whole(re.compile(ACCOUNT_ID_PATTERN)),
)
AccountId = Annotated[str, AfterValidator(ACCOUNT_ID.check)]


def _ec2_id(prefix: str) -> Callable[[str], object]:
    """EC2 resource IDs: the type's prefix, '-', then 8 (older) or 17 lower-case hex characters."""
    return _whole(re.compile(rf"{prefix}-[0-9a-f]{{8}}(?:[0-9a-f]{{9}})?"))


VPC_ID = Rule("a VPC id", "write e.g. 'vpc-0123456789abcdef0'", _ec2_id("vpc"))
SUBNET_ID = Rule("a subnet id", "write e.g. 'subnet-0123456789abcdef0'", _ec2_id("subnet"))
SECURITY_GROUP_ID = Rule("a security group id", "write e.g. 'sg-0123456789abcdef0'", _ec2_id("sg"))
VpcId = Annotated[str, AfterValidator(VPC_ID.check)]
SubnetId = Annotated[str, AfterValidator(SUBNET_ID.check)]
SecurityGroupId = Annotated[str, AfterValidator(SECURITY_GROUP_ID.check)]

# IAM ARNs: arn:<partition>:iam::<account>:<resource>; a role's resource is role/<path><name> (IAM identifiers).
_IAM_ARN = rf"arn:aws[a-z-]*:iam::{ACCOUNT_ID_PATTERN}:"
OIDC_PROVIDER_ARN = Rule(
    "an IAM OIDC provider ARN",
    "write e.g. 'arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC'",
    _whole(re.compile(rf"{_IAM_ARN}oidc-provider/.+")),
)
IAM_ROLE_ARN = Rule(
    "an IAM role ARN",
    "write e.g. 'arn:aws:iam::123456789012:role/lbc'",
    _whole(re.compile(rf"{_IAM_ARN}role/[A-Za-z0-9+=,.@_/-]{{1,512}}")),
)
OidcProviderArn = Annotated[str, AfterValidator(OIDC_PROVIDER_ARN.check)]
IamRoleArn = Annotated[str, AfterValidator(IAM_ROLE_ARN.check)]

# ECR CreateRepository `repositoryName`: 2-256 characters, lower-case components joined by '.', '_' or '-',
# namespaces separated by '/'. A name with '.amazonaws.com' in it is a repository URI pasted whole: refused.
# The pattern is the grammar alone; the rule adds the length and the refusal of a pasted URI.
ECR_REPOSITORY_NAME_PATTERN = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
ECR_REPOSITORY_NAME = Rule(
    "an ECR repository name",
    "2 to 256 lower-case letters, digits, '.', '_', '-' and '/': write the part after '.amazonaws.com/', "
    "e.g. 'team/app'",
    _whole(re.compile(rf"(?!.*\.amazonaws\.com)(?=.{{2,256}}$){ECR_REPOSITORY_NAME_PATTERN}")),
)
EcrRepositoryName = Annotated[str, AfterValidator(ECR_REPOSITORY_NAME.check)]

# A private ECR registry's host, <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn] (docs/facts.md, "Private
# ECR mirror of the controller"): an ECR image URI's registry, a chart mirror's host. Groups: ``account``,
# ``region``.
ECR_REGISTRY_PATTERN = (
    rf"(?P<account>{ACCOUNT_ID_PATTERN})\.dkr\.ecr(?:-fips)?\.(?P<region>{AWS_REGION_PATTERN})"
    r"\.amazonaws\.com(?:\.cn)?"
)


# ---------------------------------------------------------------------------------------------------------
# Images, charts, durations
# ---------------------------------------------------------------------------------------------------------
# An image tag, as the distribution reference grammar has it (docs/facts.md, "Image references"): ASCII letters,
# digits and '_', then also '.' and '-', at most 128 characters.
# Written with ASCII classes: Python's \w would also take any Unicode letter, Go's does not.
IMAGE_TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_TAG = Rule("an image tag", "letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'",
                 _whole(re.compile(IMAGE_TAG_PATTERN)))
# A sha256 digest, what ECR names every image by (docs/facts.md, "Image references": Digests).
SHA256_DIGEST_PATTERN = r"sha256:[a-f0-9]{64}"
SHA256_DIGEST = Rule("a sha256 digest", "write 'sha256:' and 64 lower-case hex characters",
                     _whole(re.compile(SHA256_DIGEST_PATTERN)))

# A glob over tags (fnmatch): tag characters plus '*', '?', '[...]' and '!' (docs/ecr-trigger.md).
TAG_GLOB = Rule(
    "a tag glob",
    "use tag characters with '*', '?' or '[...]', e.g. 'v*'",
    _whole(re.compile(r"[\w.*?\[\]!-]{1,128}")),
)
TagGlob = Annotated[str, AfterValidator(TAG_GLOB.check)]

# An image repository without tag or digest: [registry[:port]/]path, lower-case (the tag is pinned elsewhere).
IMAGE_REPOSITORY = Rule(
    "an image repository without tag",
    "write e.g. '123456789012.dkr.ecr.us-east-1.amazonaws.com/eks/aws-load-balancer-controller'",
    _whole(re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+")),
)
ImageRepository = Annotated[str, AfterValidator(IMAGE_REPOSITORY.check)]

# A Helm chart repository: an https URL or an OCI registry path (docs/facts.md, Helm 4; "Private ECR mirror of
# the controller").
CHART_REPOSITORY = Rule(
    "a chart repository",
    "write an https URL (e.g. 'https://aws.github.io/eks-charts') or an OCI registry path "
    "('oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/charts')",
    _whole(re.compile(r"(?:https|oci)://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9._~/-]*)?")),
)
ChartRepository = Annotated[str, AfterValidator(CHART_REPOSITORY.check)]

# A version MAJOR.MINOR.PATCH, a controller's with an optional leading 'v' ('v3.5.0', its image tag), a chart's
# without (docs/facts.md, Load Balancer Controller: install).
_VERSION = re.compile(r"(v?)([0-9]+)\.([0-9]+)\.([0-9]+)")


def version_numbers(text: str, *, prefix: bool = False) -> tuple[int, int, int] | None:
    """(major, minor, patch) of ``v2.13.0`` / ``2.13.0``; with ``prefix``, of the start of ``text`` (an image tag
    like ``v2.7.2-eksbuild.1``); None when it is not such a version."""
    m = (_VERSION.match if prefix else _VERSION.fullmatch)(text) if isinstance(text, str) else None
    return (int(m.group(2)), int(m.group(3)), int(m.group(4))) if m else None


CONTROLLER_VERSION = Rule("a controller version", "write MAJOR.MINOR.PATCH, e.g. 'v3.5.0'", version_numbers)
CHART_VERSION = Rule(
    "a chart version",
    "write MAJOR.MINOR.PATCH in digits, e.g. '3.5.0'",
    lambda v: not v.startswith("v") and version_numbers(v),
)
ControllerVersion = Annotated[str, AfterValidator(CONTROLLER_VERSION.check)]
ChartVersion = Annotated[str, AfterValidator(CHART_VERSION.check)]

# A Go duration as the controller's flags take it (time.ParseDuration): numbers with units, '60s', '1m30s'.
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
GO_DURATION = Rule(
    "a Go duration",
    "write e.g. '60s' or '2m' (units ns, us, ms, s, m, h)",
    _whole(re.compile(rf"(?:{_GO_DURATION_PART.pattern})+")),
)
GoDuration = Annotated[str, AfterValidator(GO_DURATION.check)]
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float:
    """The seconds of a Go duration as GO_DURATION accepts it ('1m30s' -> 90.0): what the controller reads from
    the flag albgate writes. ValueError, naming the rule, for anything else."""
    GO_DURATION.check(text)
    return sum(float(n) * _GO_UNIT_SECONDS[unit] for n, unit in _GO_DURATION_PART.findall(text))


# ---------------------------------------------------------------------------------------------------------
# CloudWatch alarms
# ---------------------------------------------------------------------------------------------------------
# A CloudWatch alarm name as PutMetricAlarm takes it, and an AlarmNamePrefix as DescribeAlarms takes it: 1 to 255
# characters, no ASCII control character (docs/facts.md, "CloudWatch alarms albgate watches").
ALARM_NAME_MAX = 255
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def alarm_prefix(selector: str) -> str | None:
    """The name prefix an entry of ``policy.alarms`` stands for ('checkout-*' -> 'checkout-'); None for an entry
    that names one alarm exactly (no trailing '*')."""
    return selector[:-1] if selector.endswith("*") else None


def _alarm_text(text: str) -> bool:
    return 1 <= len(text) <= ALARM_NAME_MAX and not _ASCII_CONTROL.search(text)


ALARM_NAME = Rule(
    "a CloudWatch alarm name",
    f"1 to {ALARM_NAME_MAX} characters, no control characters, as the alarm is named in CloudWatch",
    _alarm_text,
)
AlarmName = Annotated[
    str, AfterValidator(ALARM_NAME.check), Field(json_schema_extra={"minLength": 1, "maxLength": ALARM_NAME_MAX})
]
ALARM_SELECTOR = Rule(
    "a CloudWatch alarm name or name prefix",
    f"write the alarm's exact name, or a name prefix followed by '*' (e.g. 'checkout-prod-*'): 1 to "
    f"{ALARM_NAME_MAX} characters before the '*', no control characters",
    lambda v: _alarm_text(v if alarm_prefix(v) is None else v[:-1]),
)
AlarmSelector = Annotated[
    str,
    AfterValidator(ALARM_SELECTOR.check),
    Field(json_schema_extra={"minLength": 1, "maxLength": ALARM_NAME_MAX + 1}),
]
"""An entry of ``policy.alarms``: an alarm's exact name, or a prefix ending in '*'."""


# ---------------------------------------------------------------------------------------------------------
# Strict JSON types
# ---------------------------------------------------------------------------------------------------------
# A JSON boolean only: pydantic's lax bool reads "yes", "0" or 1 as a boolean (docs/facts.md, Strict inputs).
JsonBool = StrictBool


def no_boolean_items(holds: str) -> BeforeValidator:
    """Refuses a list of numbers holding a JSON boolean, which the lax int would read as 0 or 1 (docs/facts.md,
    Strict inputs); ``holds`` says what the list holds instead, for the message."""

    def refuse(raw: Any, info: ValidationInfo) -> Any:
        if isinstance(raw, list):
            for i, item in enumerate(raw, start=1):
                if isinstance(item, bool):
                    raise ValueError(f"item {i} is {str(item).lower()}, a boolean; {info.field_name} holds {holds}")
        return raw

    return BeforeValidator(refuse)
