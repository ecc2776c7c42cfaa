"""The ONE code asset every albgate function runs: the ``lambdas`` package plus its pinned dependencies.

Invariant: the asset's root holds the runtime dependencies of ``lambdas/requirements.txt`` (built for
``manylinux2014_x86_64`` / CPython 3.12, wheels only) and the package itself under ``lambdas/``, so every
handler is ``lambdas.handlers.<module>.handler``. Every ``.py`` in it comes with CPython 3.12 bytecode
compiled at bundling time (``bytecode.py``: Lambda cannot write it, so without it each cold start compiles).
Powertools is bundled from the requirements, never added as the AWS-managed layer as well (two copies would
shadow each other). Bundling runs locally with pip and Node.js (no Docker); the Docker image of the Lambda
runtime is only the fallback when local pip is unusable.

The asset hash comes from the source folder (``lambdas/``, requirements included), not from what pip resolves:
that is why lambdas/requirements.txt pins every version (TOOLING.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from stacks.constructs.bytecode import compile_asset, docker_command

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
PLATFORM = "manylinux2014_x86_64"  # matches Architecture.X86_64 in lambda_function.py
PYTHON_VERSION = "3.12"  # matches Runtime.PYTHON_3_12
EXCLUDE = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache"]


def pip_command(requirements: str, target: str) -> list[str]:
    """The pip invocation both bundlers run: wheels for the Lambda platform, whatever the host is.

    ``--no-compile``: pip would compile with the host's Python; the bytecode comes from ``bytecode.py``."""
    return [
        "pip", "install", "-r", requirements, "-t", target,
        "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", "--no-compile", "--disable-pip-version-check", "--quiet",
    ]  # fmt: skip


def copy_package(source: Path, output_dir: Path) -> None:
    """Copy the lambdas package to OUT/lambdas, leaving caches and compiled files behind."""
    shutil.copytree(source, output_dir / "lambdas", ignore=shutil.ignore_patterns(*EXCLUDE), dirs_exist_ok=True)


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Bundle with the host's pip; returning False hands over to Docker bundling (CDK's contract)."""

    def __init__(self, source: Path = LAMBDAS_DIR, python: str = sys.executable) -> None:
        self._source = source
        self._python = python

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:  # noqa: ARG002 - CDK's signature
        probe = subprocess.run([self._python, "-m", "pip", "--version"], capture_output=True, check=False)
        if probe.returncode != 0:
            print("albgate: pip is not usable here, falling back to Docker bundling", file=sys.stderr)
            return False
        out = Path(output_dir)
        cmd = [self._python, "-m", *pip_command(str(self._source / "requirements.txt"), str(out))]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # A resolver failure is not a reason to try Docker: the same pins would fail there too. Say why.
            raise RuntimeError(f"albgate: bundling the Lambda dependencies failed:\n{result.stderr.strip()}")
        copy_package(self._source, out)
        report = compile_asset(out)
        print(f"albgate: compiled {report.compiled} files to CPython {report.version} bytecode", file=sys.stderr)
        return True


def bundling_options(source: Path = LAMBDAS_DIR) -> BundlingOptions:
    """Local pip first; the fallback runs the same pip command inside the Lambda runtime's build image."""
    pip = " ".join(pip_command("/asset-input/requirements.txt", "/asset-output"))
    copy = (
        "mkdir -p /asset-output/lambdas && cp -R /asset-input/. /asset-output/lambdas/ && "
        "find /asset-output/lambdas -name __pycache__ -prune -exec rm -rf {} + && "
        "find /asset-output/lambdas -name '*.py[co]' -delete"
    )
    return BundlingOptions(
        image=lambda_.Runtime.PYTHON_3_12.bundling_image,
        command=["bash", "-c", f"{pip} && {copy} && {docker_command()}"],
        local=PipLocalBundling(source),
        platform="linux/amd64",
    )


def lambdas_code(source: Path = LAMBDAS_DIR) -> lambda_.Code:
    """One AssetCode for every function; CDK stages it once per stack however many functions bind it."""
    return lambda_.Code.from_asset(
        str(source),
        bundling=bundling_options(source),
        asset_hash_type=AssetHashType.SOURCE,
        exclude=EXCLUDE,
    )
