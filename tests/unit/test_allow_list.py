"""The allow-list's reading of events: every place a handler reads a cluster, namespace or Deployment from is
judged, and a refusal names what was asked, what is configured (at most a few) and the fix."""

from __future__ import annotations

import pytest

from lambdas.domain.allow_list import MAX_LISTED, AllowList, Target, parse_allow_list, targets_of
from lambdas.domain.errors import InvalidInputError

REQUEST = {"cluster": "c1", "namespace": "shop", "deployment": "web", "container": "web", "image": "web:2"}
BOOT_APP = {"namespace": "shop", "deployment": "web", "container": "web",
            "manifests": {"deployment": {"metadata": {"name": "web"}}, "service": {"metadata": {"name": "web-svc"}},
                          "ingress": {"metadata": {"name": "web-ing"}}}}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"request": REQUEST, "execution_name": "e"},
         [Target("request.cluster", "c1"), Target("request", "c1", "shop", "web")]),
        ({"request": REQUEST, "plan": [1], "steps": []},
         [Target("request.cluster", "c1"), Target("request", "c1", "shop", "web")]),
        ({"task_token": "t", "state": {"request": REQUEST}},
         [Target("state.request.cluster", "c1"), Target("state.request", "c1", "shop", "web")]),
        ({"request": {"cluster": "c1", "namespaces": ["extra"], "applications": [BOOT_APP]}},
         [Target("request.cluster", "c1"), Target("request.namespaces.0", "c1", "extra"),
          Target("request.applications.0", "c1", "shop", "web", (("Service", "web-svc"), ("Ingress", "web-ing")))]),
        ({"phase": "services", "state": {"request": {"cluster": "c1", "applications": [BOOT_APP]}}},
         [Target("state.request.cluster", "c1"),
          Target("state.request.applications.0", "c1", "shop", "web",
                 (("Service", "web-svc"), ("Ingress", "web-ing")))]),
        ({"cluster": "c1", "namespaces": ["shop"], "applications": [{"namespace": "shop", "deployment": "web"}]},
         [Target("input.cluster", "c1"), Target("input.namespaces.0", "c1", "shop"),
          Target("input.applications.0", "c1", "shop", "web")]),
        ({"applications": [{"cluster": "c2", "namespace": "shop", "deployment": "web"}]},
         [Target("input.applications.0", "c2", "shop", "web")]),
        ({"request": {"cluster": 7, "namespace": ["x"]}}, []),
        ("not an object", []),
    ],
    ids=["rollout-input", "rollout-state", "approval", "bootstrap", "apply-workloads", "report-request",
         "gate-keeper", "malformed-left-to-the-handler", "not-an-object"],
)
def test_every_place_a_handler_reads_a_target_from_is_judged(event, expected) -> None:
    assert targets_of(event) == expected


def _allowed(apps: int = 1) -> AllowList:
    return parse_allow_list(
        '{"clusters": ["c1"], "applications": ['
        + ", ".join(f'{{"cluster": "c1", "namespace": "ns{i}", "deployment": "d{i}", "service": "s{i}", '
                    f'"ingress": "i{i}"}}' for i in range(apps))
        + "]}"
    )


def test_a_refusal_lists_a_few_configured_applications_and_how_many_more() -> None:
    # Given a stack of 8 applications / When another Deployment is asked for
    with pytest.raises(InvalidInputError) as refused:
        _allowed(8).refuse([Target("request", "c1", "ns0", "other")])
    # Then the message names it, the first few configured ones, the rest as a count, and the fix
    message = str(refused.value)
    assert message.startswith("request: Deployment 'ns0/other' of cluster 'c1' is not an application")
    assert f"ns{MAX_LISTED - 1}/d{MAX_LISTED - 1} and {8 - MAX_LISTED} more" in message
    assert f"ns{MAX_LISTED}/d{MAX_LISTED}" not in message
    assert message.endswith("add it under applications in the CDK config (docs/foundation.md, Config reference) "
                            "and deploy")


def test_configured_targets_pass() -> None:
    _allowed(2).refuse([Target("request.cluster", "c1"), Target("request", "c1", "ns1", "d1", (("Service", "s1"),)),
                        Target("request.namespaces.0", "c1", "ns0")])


def test_an_empty_allow_list_is_not_a_list() -> None:
    # An allow-list that names nothing would refuse everything; the file must name clusters and applications
    with pytest.raises(ValueError, match="applications"):
        parse_allow_list('{"clusters": ["c1"], "applications": []}')
