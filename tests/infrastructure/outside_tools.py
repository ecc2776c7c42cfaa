"""Where the outside validators come from: their pins, and a clear failure when one is not installed.

Job: the tests that run a validator nobody on the project wrote (asl-validator from npm; statelint and
kubernetes-validate from PyPI) find it here. ``./dev test`` installs requirements.txt into .venv and runs
``npm ci`` from package-lock.json, so a missing validator is a broken set-up, never a reason to skip.
Invariant: a missing validator fails the test that needs it, with the command that installs it; the pinned
version is read from the file that pins it (requirements.txt, package.json), never repeated here.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

INSTALL_HINT = "./dev test installs it (pip install -r requirements.txt into .venv, npm ci for node_modules)"


def pinned_python(distribution: str) -> str:
    """The version requirements.txt pins ``distribution`` to (``name==version``)."""
    pattern = re.compile(rf"^{re.escape(distribution)}==(\S+)\s*$", re.IGNORECASE)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = pattern.match(line)
        if match:
            return match.group(1)
    raise AssertionError(f"requirements.txt pins no {distribution}==<version>")


def pinned_npm(package: str) -> str:
    """The exact version package.json pins ``package`` to (a dev dependency, saved with --save-exact)."""
    manifest = json.loads((ROOT / "package.json").read_text())
    version = {**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}.get(package)
    assert version and re.fullmatch(r"\d+\.\d+\.\d+", version), (
        f"package.json pins no exact version of {package} (got {version!r}); npm install --save-exact {package}@X.Y.Z"
    )
    return version


def installed_python(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{distribution} is not installed in this Python: {INSTALL_HINT}", pytrace=False)


def require_module(module: str, distribution: str) -> ModuleType:
    """Import a validator's module, or fail (not skip) naming the distribution to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{distribution} is not installed ({e}): {INSTALL_HINT}", pytrace=False)


def require_npm_bin(package: str, command: str) -> Path:
    """node_modules/.bin/<command> of an npm package, or fail naming what is missing."""
    if shutil.which("node") is None:
        pytest.fail(f"{package} needs Node.js, which is not on PATH (apt-get install nodejs)", pytrace=False)
    path = ROOT / "node_modules" / ".bin" / command
    if not path.exists():
        pytest.fail(f"{package} is not installed: {path} is missing; {INSTALL_HINT}", pytrace=False)
    return path


def installed_npm(package: str) -> str:
    manifest = ROOT / "node_modules" / package / "package.json"
    if not manifest.exists():
        pytest.fail(f"{package} is not installed: {manifest} is missing; {INSTALL_HINT}", pytrace=False)
    return json.loads(manifest.read_text())["version"]
