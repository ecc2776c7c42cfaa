"""The allow-list every function carries: the config's clusters and applications, in a layer at the path the
handlers read, named by ``ALBGATE_ALLOW_LIST``; too long for the environment at the config's largest."""

from __future__ import annotations

from lambdas.domain.allow_list import ALLOW_LIST_ENV, ALLOW_LIST_PATH, parse_allow_list
from lambdas.domain.limits import LAMBDA_ENVIRONMENT_MAX_BYTES, MAX_APPLICATIONS_PER_CLUSTER
from stacks.config import parse_config
from stacks.constructs.allow_list import allow_list_of
from stacks.constructs.specs import ALL_HANDLERS
from tests.infrastructure.test_lambda_environment import many_applications


def test_the_layer_holds_exactly_the_configs_clusters_and_applications(synth) -> None:
    # Given the layer's folder as synthesized (what Lambda unpacks under /opt)
    layer = synth.stack.cluster_access.allow_list
    files = [p.relative_to(layer.folder).as_posix() for p in layer.folder.rglob("*") if p.is_file()]
    assert ["/opt/" + f for f in files] == [ALLOW_LIST_PATH]
    # When a function reads it at cold start / Then it allows the example's cluster and application, nothing else
    allowed = parse_allow_list((layer.folder / files[0]).read_text())
    assert allowed.clusters == ["my-cluster"]
    assert [(a.cluster, a.namespace, a.deployment, a.service, a.ingress) for a in allowed.applications] == [
        ("my-cluster", "readiness", "nginx-app", "nginx-svc", "myapp-ingress")]


def test_every_function_of_the_rollout_the_schedule_and_the_bootstrap_carries_it(synth) -> None:
    layer_id = synth.stack.get_logical_id(synth.stack.cluster_access.allow_list.layer.node.default_child)
    for spec in ALL_HANDLERS:
        fn = synth.stack.functions[spec.name].function
        props = synth.template["Resources"][synth.stack.get_logical_id(fn.node.default_child)]["Properties"]
        assert {"Ref": layer_id} in props["Layers"], spec.name
        assert props["Environment"]["Variables"][ALLOW_LIST_ENV] == ALLOW_LIST_PATH, spec.name


def test_at_the_largest_config_the_list_would_not_fit_the_environment(example_config) -> None:
    # Given the most applications a cluster may have / Then their allow-list alone is over Lambda's 4 KB
    config = parse_config(many_applications(example_config))
    text = allow_list_of(config).model_dump_json()
    assert len(config.applications) == MAX_APPLICATIONS_PER_CLUSTER
    assert len(text.encode()) > LAMBDA_ENVIRONMENT_MAX_BYTES
