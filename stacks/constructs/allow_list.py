"""The allow-list every albgate function carries: what it may touch, in a layer, and the variable naming its file.

Job: make, at synth, the ``AllowList`` of the config (its clusters; its applications with their namespace,
Deployment, Service and Ingress), put it in a small layer at ``ALLOW_LIST_PATH`` and give that layer and
``ALBGATE_ALLOW_LIST`` to every function of the rollout, the schedule and the bootstrap. The handlers read it once
per container and refuse anything else before any call to a cluster (lambdas/handlers/_runtime.py); without it
they reach no cluster at all. The folder comes from ``config_layer.layer_dir``.

Why a layer and not the environment: Lambda keeps at most 4 KB of environment per function (docs/facts.md, "AWS
limits albgate checks"), which 60 applications' names overflow; the ECR trigger ships its configuration the same
way (stacks/constructs/ecr_trigger.py). The layer is deployed with the stack, a new version whenever the config
changes (which updates every function), so what a function allows is always what its stack was deployed with.

Invariant: one layer per stack, made from the validated config only; its folder holds exactly one file, named
by its content's digest so a later synth of the same config finds it.
"""

from __future__ import annotations

from collections.abc import Iterable

from constructs import Construct

from lambdas.domain.allow_list import ALLOW_LIST_ENV, ALLOW_LIST_PATH, AllowedApplication, AllowList
from stacks.config import AlbgateConfig
from stacks.constructs.config_layer import layer_dir, layer_version
from stacks.constructs.lambda_asset import PROJECT_ROOT
from stacks.constructs.lambda_function import AlbgateFunction

CACHE_DIR = PROJECT_ROOT / ".albgate-cache" / "allow-list"


def allow_list_of(config: AlbgateConfig) -> AllowList:
    """What the functions may touch: exactly the config's clusters and applications."""
    return AllowList(
        clusters=[c.name for c in config.clusters],
        applications=[
            AllowedApplication(cluster=a.cluster, namespace=a.namespace, deployment=a.deployment, service=a.service,
                               ingress=a.ingress)
            for a in config.applications
        ],
    )


class AllowListLayer(Construct):
    """``layer``: a LayerVersion holding only the allow-list; added, with ``ALBGATE_ALLOW_LIST``, to ``functions``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AlbgateConfig, functions: Iterable[AlbgateFunction]
    ) -> None:
        super().__init__(scope, construct_id)
        self.allow_list = allow_list_of(config)
        self.folder = folder = layer_dir(self.allow_list.model_dump_json(), ALLOW_LIST_PATH, CACHE_DIR)
        self.layer = layer_version(
            self,
            "Layer",
            folder,
            f"albgate allow-list ({len(self.allow_list.clusters)} clusters, "
            f"{len(self.allow_list.applications)} applications) at {ALLOW_LIST_PATH}",
        )
        for f in functions:
            f.function.add_layers(self.layer)
            f.function.add_environment(ALLOW_LIST_ENV, ALLOW_LIST_PATH)
