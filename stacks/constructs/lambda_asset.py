"""The code assets albgate's functions run: the ``lambdas`` package plus one family's pinned dependencies.

Two families, because Lambda counts a function's unzipped code and layers together against one limit
(262,144,000 bytes, docs/facts.md, "Lambda") and most functions need little:
- ``core`` (every rollout, trigger and scheduled function): ``lambdas/requirements.txt``: Powertools and
  pydantic. boto3, botocore and urllib3 come from the Lambda Python runtime, which includes them;
- ``kubernetes`` (the bootstrap's functions, whose adapter runs on the kubernetes client):
  ``lambdas/requirements-kubernetes.txt``: the core lock plus the client and its synchronous dependencies. The
  client's asyncio flavour (``kubernetes/aio``, about 41 MB) is left out: albgate never imports it.

Invariant: an asset's root holds exactly its family's lock (built for ``manylinux2014_x86_64`` / CPython 3.12,
wheels only, ``--no-deps``: the lock is complete, tests/infrastructure/test_asset_locks.py checks it) and the
package itself under ``lambdas/``, so every handler is ``lambdas.handlers.<module>.handler``. Every ``.py`` in
it comes with CPython 3.12 bytecode compiled at bundling time (``bytecode.py``: Lambda cannot write it, so
without it each cold start compiles what it imports). Bundling runs locally with pip and Node.js (no Docker);
the Docker image of the Lambda runtime is only the fallback when local pip is unusable.

The asset hash is ``cache_key``: the family, its locks and the source folder (``lambdas/``), not what pip
resolves: that is why the locks pin every version. A bundle is kept in ``.albgate-cache/assets/<key>`` (the key hashes
the family, its lock files, the package's sources and this bundler's recipe), so synthesizing again with
nothing changed copies it instead of running pip and the compiler again, into any output folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from stacks.constructs.bytecode import compile_asset, docker_command

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = PROJECT_ROOT / "lambdas"
# ALBGATE_CACHE_DIR moves the bundle cache (bench/bench_synth.py measures a cold synth with an empty one).
CACHE_DIR = Path(os.environ.get("ALBGATE_CACHE_DIR") or PROJECT_ROOT / ".albgate-cache") / "assets"
PLATFORM = "manylinux2014_x86_64"  # matches Architecture.X86_64 in lambda_function.py
PYTHON_VERSION = "3.12"  # matches Runtime.PYTHON_3_12
EXCLUDE = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache"]
# Read by the bundler, not shipped: each asset's installed packages already say what they are.
LOCKS = "requirements*.txt"
# Bump when the recipe below changes in a way the lock files and sources do not show (it is part of the cache key).
RECIPE = "2"


@dataclass(frozen=True)
class AssetFamily:
    """One code asset: which lock it installs and which installed folders it leaves out (with the reason)."""

    name: str
    requirements: str  # a file in lambdas/
    prune: tuple[str, ...] = ()  # folders removed after pip install, relative to the asset root

    def lock_files(self, source: Path = LAMBDAS_DIR) -> list[Path]:
        """The requirements file and every file it includes with ``-r``, in order."""
        seen: list[Path] = []

        def walk(path: Path) -> None:
            seen.append(path)
            for line in path.read_text().splitlines():
                if line.strip().startswith("-r "):
                    walk(path.parent / line.strip()[3:].strip())

        walk(source / self.requirements)
        return seen


CORE = AssetFamily("core", "requirements.txt")
# kubernetes/aio is the asyncio client, kept out of the asset with aiohttp (not in the lock): nothing in lambdas/
# imports it (tests/infrastructure/test_asset_locks.py).
KUBERNETES = AssetFamily("kubernetes", "requirements-kubernetes.txt", prune=("kubernetes/aio",))
FAMILIES = (CORE, KUBERNETES)


def pip_command(requirements: str, target: str) -> list[str]:
    """The pip invocation both bundlers run: the family's complete lock as wheels for the Lambda platform.

    ``--no-deps``: the lock names every package (pip would otherwise add what a package requires but albgate
    never imports, such as aiohttp). ``--no-compile``: pip would compile with the host's Python; the bytecode
    comes from ``bytecode.py``."""
    return [
        "pip", "install", "-r", requirements, "-t", target, "--no-deps",
        "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", "--no-compile", "--disable-pip-version-check", "--quiet",
    ]  # fmt: skip


def copy_package(source: Path, output_dir: Path) -> None:
    """Copy the lambdas package to OUT/lambdas, leaving caches and compiled files behind."""
    shutil.copytree(source, output_dir / "lambdas", ignore=shutil.ignore_patterns(*EXCLUDE, LOCKS),
                    dirs_exist_ok=True)


def prune(output_dir: Path, family: AssetFamily) -> None:
    for folder in family.prune:
        shutil.rmtree(output_dir / folder, ignore_errors=True)


def cache_key(family: AssetFamily, source: Path = LAMBDAS_DIR) -> str:
    """What the bundle depends on: the recipe, the family, its locks and every file of the package."""
    h = hashlib.sha256(f"{RECIPE}\0{family.name}\0{PLATFORM}\0{PYTHON_VERSION}\0".encode())
    h.update((PROJECT_ROOT / "package-lock.json").read_bytes() if (PROJECT_ROOT / "package-lock.json").is_file()
             else b"")  # the Pyodide release that compiles the bytecode
    for path in family.lock_files(source):
        h.update(path.read_bytes())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") or rel.parts[0].startswith("."):
            continue
        if fnmatch.fnmatch(rel.name, LOCKS):
            continue  # not shipped; the family's own locks were hashed above
        h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Bundle with the host's pip; returning False hands over to Docker bundling (CDK's contract)."""

    def __init__(
        self,
        family: AssetFamily = CORE,
        source: Path = LAMBDAS_DIR,
        python: str = sys.executable,
        cache_dir: Path | None = CACHE_DIR,
    ) -> None:
        self._family = family
        self._source = source
        self._python = python
        self._cache_dir = cache_dir

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:  # noqa: ARG002 - CDK's signature
        out = Path(output_dir)
        cached = self._cache_dir / cache_key(self._family, self._source) if self._cache_dir else None
        if cached is not None and cached.is_dir():
            shutil.copytree(cached, out, dirs_exist_ok=True, symlinks=True)
            print(f"albgate: reused the {self._family.name} asset bundled before ({cached.name})", file=sys.stderr)
            return True
        probe = subprocess.run([self._python, "-m", "pip", "--version"], capture_output=True, check=False)
        if probe.returncode != 0:
            print("albgate: pip is not usable here, falling back to Docker bundling", file=sys.stderr)
            return False
        self._bundle(out)
        if cached is not None:
            self._keep(out, cached)
        return True

    def _bundle(self, out: Path) -> None:
        cmd = [self._python, "-m", *pip_command(str(self._source / self._family.requirements), str(out))]
        print(f"albgate: bundling the {self._family.name} asset (pip, then CPython 3.12 bytecode)...", file=sys.stderr)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # A resolver failure is not a reason to try Docker: the same pins would fail there too. Say why.
            raise RuntimeError(f"albgate: bundling the Lambda dependencies failed:\n{result.stderr.strip()}")
        prune(out, self._family)
        copy_package(self._source, out)
        report = compile_asset(out)
        print(f"albgate: compiled {report.compiled} files to CPython {report.version} bytecode", file=sys.stderr)

    @staticmethod
    def _keep(out: Path, cached: Path) -> None:
        """Copy the finished bundle into the cache, atomically (a half-written entry is never seen)."""
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
        shutil.copytree(out, staging, dirs_exist_ok=True, symlinks=True)
        try:
            staging.rename(cached)
        except OSError:  # another synth kept the same bundle first
            shutil.rmtree(staging, ignore_errors=True)


def bundling_options(family: AssetFamily = CORE, source: Path = LAMBDAS_DIR) -> BundlingOptions:
    """Local pip first; the fallback runs the same pip command inside the Lambda runtime's build image."""
    pip = " ".join(pip_command(f"/asset-input/{family.requirements}", "/asset-output"))
    removed = "".join(f" && rm -rf /asset-output/{folder}" for folder in family.prune)
    copy = (
        "mkdir -p /asset-output/lambdas && cp -R /asset-input/. /asset-output/lambdas/ && "
        f"rm -f /asset-output/lambdas/{LOCKS} && "
        "find /asset-output/lambdas -name __pycache__ -prune -exec rm -rf {} + && "
        "find /asset-output/lambdas -name '*.py[co]' -delete"
    )
    return BundlingOptions(
        image=lambda_.Runtime.PYTHON_3_12.bundling_image,
        command=["bash", "-c", f"{pip}{removed} && {copy} && {docker_command()}"],
        local=PipLocalBundling(family, source),
        platform="linux/amd64",
    )


def lambdas_code(family: AssetFamily = CORE, source: Path = LAMBDAS_DIR) -> lambda_.Code:
    """One AssetCode per family; CDK stages it once per stack however many functions bind it.

    The asset hash is the cache key: both families are built from the same source folder, so a hash of the
    folder alone would give them one asset."""
    return lambda_.Code.from_asset(
        str(source),
        bundling=bundling_options(family, source),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=cache_key(family, source),
        exclude=EXCLUDE,
    )
