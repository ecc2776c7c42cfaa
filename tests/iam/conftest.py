"""The recordings, made once per session: every story told on moto and the fake API server, every AWS call filed;
and the private deployment's bootstrap (tests/iam/private_stories.py), told in a world of its own.

Invariant: moto, the fake API server, the environment and the recorder's hooks exist only inside the
``recording`` fixture's set-up; what it returns is plain data (the world's steps, calls and names), and every
``lambdas`` cache is cleared on the way out, so no later test meets an adapter bound to this moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from tests.adapters.fake_apiserver import FakeApiServer
from tests.conftest import Synthesized, synthesize
from tests.iam.policy import Statement, TemplateResolver, role_statements
from tests.iam.private_stories import build_private_vpc, tell_private
from tests.iam.stories import tell
from tests.iam.world import DeployedFunction, World, deployed_functions
from tests.infrastructure.conftest import MIRROR_CONTROLLER, private_config_map_variant

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def record(synth: Any, workdir: Path, tell_stories: Callable[[World], None],
           prepare: Callable[[World], None] = lambda world: None) -> World:
    """A world for ``synth`` on moto and a fake API server, ``prepare``d with the world's own clients, then the
    stories told while every call is recorded."""
    apiserver = FakeApiServer().start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in FAKE_CREDENTIALS.items():
                mp.setenv(key, value)
            mp.delenv("AWS_PROFILE", raising=False)
            with mock_aws():
                world = World(synth, apiserver, workdir)
                world.build_aws()
                prepare(world)
                try:
                    with world.recording():
                        tell_stories(world)
                finally:
                    world.cold_start()
    finally:
        apiserver.stop()
    return world


@pytest.fixture(scope="session")
def recording(synth: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield record(synth, tmp_path_factory.mktemp("iam"), tell)


@pytest.fixture(scope="session")
def private_recording(vpc_synth: Synthesized, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The private deployment's bootstrap: its VPC with the endpoints the functions need, the chart on ECR."""
    yield record(vpc_synth, tmp_path_factory.mktemp("iam-private"), tell_private, build_private_vpc)


@pytest.fixture(scope="session")
def statements_of(recording: World) -> dict[str, list[Statement]]:
    """Each deployed function's role statements, resolved with the recording's placeholders."""
    return {
        name: role_statements(recording.template, fn.role_id, recording.resolver)
        for name, fn in recording.functions.items()
    }


def private_iam_variant(example: dict[str, Any]) -> dict[str, Any]:
    """The example with its cluster endpoint private (aws-auth), the controller's chart and image on ECR."""
    config = private_config_map_variant(example)
    config["clusters"][0]["controller"] = dict(MIRROR_CONTROLLER)
    # the stories' rollouts watch alarms, so the private network must list CloudWatch's endpoint
    config.setdefault("rollout_policy", {})["alarms"] = ["nginx-target-5xx", "nginx-latency-*"]
    return config


@pytest.fixture(scope="session")
def vpc_synth(cdk_app: Any, example_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The example with its cluster endpoint private and its chart on ECR: every function runs in the cluster's
    VPC, the install logs in to the registry and pulls the chart's repository."""
    return synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out.iam-vpc"), private_iam_variant(example_config))


@dataclass(frozen=True)
class Roles:
    """A synthesized template's functions and their roles' statements, resolved with the recording's placeholders."""

    resolver: TemplateResolver
    functions: dict[str, DeployedFunction]
    statements: dict[str, list[Statement]]


@pytest.fixture(scope="session")
def vpc_roles(recording: World, vpc_synth: Synthesized) -> Roles:
    resolver = TemplateResolver(vpc_synth.template, recording.placeholders)
    functions = deployed_functions(vpc_synth.template)
    return Roles(resolver, functions,
                 {name: role_statements(vpc_synth.template, fn.role_id, resolver) for name, fn in functions.items()})
