"""A folder holding one configuration file where a Lambda layer puts it, made once per content at synth.

Job: write ``content`` at ``path`` (under /opt, where Lambda unpacks a function's layers) inside a folder named by
the content's digest, for ``lambda_.Code.from_asset`` with that digest as the asset hash. A later synth of the same
content finds the folder; two synths racing write it once (the loser's rename fails and its staging is removed).

Invariant: the folder holds exactly that one file, readable by everyone (0644), and its name changes whenever
the content does, so a deployed layer is always the configuration its stack was synthesized from.
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

from stacks.constructs.lambda_function import RUNTIME


def layer_dir(content: str, path: str, cache_dir: Path) -> Path:
    """The folder holding only ``content`` at ``path`` (an absolute path under /opt)."""
    data = content.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()[:32]
    folder = cache_dir / digest
    relative = Path(path).relative_to("/opt")
    if (folder / relative).is_file():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=cache_dir))
    (staging / relative).parent.mkdir(parents=True)
    (staging / relative).write_bytes(data)
    os.chmod(staging / relative, 0o644)
    try:
        staging.rename(folder)
    except OSError:  # another synth made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def layer_version(scope: Construct, construct_id: str, folder: Path, description: str) -> lambda_.LayerVersion:
    """A LayerVersion of a ``layer_dir`` folder, its asset hash the folder's content digest."""
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(str(folder), asset_hash_type=AssetHashType.CUSTOM, asset_hash=folder.name),
        description=description,
        compatible_runtimes=[RUNTIME],
    )
