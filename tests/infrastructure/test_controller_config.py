"""``clusters[].controller`` in the CDK config (stacks/config.py, ``ControllerConfig``): what the bootstrap installs on
each cluster, validated at synth with a message naming the field and the fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stacks.config import ConfigError, parse_config
from tests.infrastructure.conftest import MIRROR_CONTROLLER, private_mirror_variant

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def with_controller(example: dict[str, Any], controller: dict[str, Any], *, private: bool = False) -> dict[str, Any]:
    config = private_mirror_variant(example) if private else copy.deepcopy(example)
    config["clusters"][0]["controller"] = controller
    return config


def test_the_defaults_are_the_pinned_eks_charts_chart(example_config) -> None:
    controller = parse_config(example_config).clusters[0].controller
    assert (controller.chart_repository, controller.chart_version) == ("https://aws.github.io/eks-charts", "3.5.0")
    assert controller.image_repository is None and controller.role_arn is None
    assert parse_config(example_config).clusters[0].ecr_chart_mirror is None


@pytest.mark.parametrize("controller", [
    pytest.param(MIRROR_CONTROLLER, id="ecr-mirror"),
    pytest.param({"chart_repository": f"oci://{ECR}"}, id="ecr-registry-root"),
    pytest.param({"chart_repository": "oci://harbor.internal.example:8443/charts"}, id="other-oci-registry"),
    pytest.param({"chart_repository": "https://charts.internal.example/eks"}, id="https-mirror"),
    pytest.param({"chart_version": "3.6.0"}, id="another-chart-version"),
    pytest.param({"role_arn": "arn:aws-cn:iam::123456789012:role/path/lbc"}, id="own-role"),
])
def test_accepted_controller_settings(example_config, controller: dict[str, Any]) -> None:
    parsed = parse_config(with_controller(example_config, controller)).clusters[0].controller
    assert {k: getattr(parsed, k) for k in controller} == controller


@pytest.mark.parametrize(("controller", "private", "message"), [
    pytest.param({"chart_repository": "http://charts.example"}, False,
                 "clusters.0.controller.chart_repository: 'http://charts.example' is not a chart repository",
                 id="plain-http"),
    pytest.param({"chart_repository": f"oci://{ECR}/charts/aws-load-balancer-controller"}, False,
                 "names the chart itself; give the path it was pushed to", id="chart-name-included"),
    pytest.param({"chart_repository": "oci://12345.dkr.ecr.us-east-1.amazonaws.com/charts"}, False,
                 "is not an ECR registry host", id="ecr-host-typo"),
    pytest.param({"chart_repository": "oci://123456789012.dkr.ecr.eu-west-1.amazonaws.com/charts"}, True,
                 "clusters.0: controller.chart_repository: the ECR registry is in eu-west-1, the cluster in us-east-1",
                 id="private-mirror-in-another-region"),
    pytest.param({"chart_version": "latest"}, False, "'latest' is not a chart version", id="chart-version"),
    pytest.param({"image_repository": f"{ECR}/eks/aws-load-balancer-controller:v3.5.0"}, False,
                 "is not an image repository without tag", id="image-with-tag"),
    pytest.param({"role_arn": "arn:aws:iam::123456789012:user/lbc"}, False, "is not an IAM role ARN", id="not-a-role"),
    pytest.param({"chart_repo": "x"}, False, "clusters.0.controller.chart_repo: unknown field", id="unknown-field"),
])
def test_refused_controller_settings_name_the_field(example_config, controller: dict[str, Any], private: bool,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_config(with_controller(example_config, controller, private=private))


def test_a_public_cluster_may_pull_from_a_mirror_in_another_region(example_config) -> None:
    # Its functions are not in a VPC: the registry is reached over the internet like any AWS API
    mirror = {"chart_repository": "oci://123456789012.dkr.ecr.eu-west-1.amazonaws.com/charts"}
    assert parse_config(with_controller(example_config, mirror)).clusters[0].ecr_chart_mirror.region == "eu-west-1"
