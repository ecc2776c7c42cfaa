"""Opt-in (ALBGATE_TEST_BUNDLING=1): bundle the Lambda asset for real with the local pip bundler.

Needs the package registry (or pip's configured mirror) and Pyodide (``npm ci``) for the bytecode; takes tens of
seconds, so it is not in the default run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_

from stacks.constructs.specs import ALL_HANDLERS
from stacks.constructs.bytecode import bytecode_problems
from stacks.constructs.lambda_asset import LAMBDAS_DIR, lambdas_code

pytestmark = [
    pytest.mark.bundling,
    pytest.mark.skipif(os.environ.get("ALBGATE_TEST_BUNDLING") != "1", reason="set ALBGATE_TEST_BUNDLING=1"),
]


@pytest.fixture(scope="module")
def asset_dir(tmp_path_factory) -> Path:
    # Given one function using the shared code asset, in an app that bundles (no bundling-stacks override)
    outdir = tmp_path_factory.mktemp("bundled")
    app = App(outdir=str(outdir))
    stack = Stack(app, "Bundle")
    lambda_.Function(
        stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler=ALL_HANDLERS[0].handler, code=lambdas_code()
    )
    # When it is synthesized
    app.synth()
    (asset,) = [p for p in outdir.iterdir() if p.name.startswith("asset.") and p.is_dir()]
    return asset


@pytest.mark.parametrize("spec", ALL_HANDLERS, ids=[s.name for s in ALL_HANDLERS])
def test_handler_modules_land_under_lambdas(asset_dir, spec):
    assert (asset_dir / "lambdas" / "handlers" / f"{spec.module}.py").is_file()


def test_the_whole_package_is_copied_without_the_hosts_caches(asset_dir):
    source = {p.relative_to(LAMBDAS_DIR) for p in LAMBDAS_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    bundled = {p.relative_to(asset_dir / "lambdas") for p in (asset_dir / "lambdas").rglob("*.py")}
    assert bundled == source
    # the only bytecode is the Lambda runtime's: nothing compiled by (or for) this host's Python
    assert {p.name.split(".")[-2] for p in asset_dir.rglob("*.pyc")} == {"cpython-312"}


def test_every_module_ships_with_its_cpython_312_bytecode(asset_dir):
    # Lambda cannot write bytecode into /var/task: without it every cold start compiles what it imports
    assert bytecode_problems(asset_dir) == []


@pytest.mark.parametrize("package", ["kubernetes", "pydantic", "aws_lambda_powertools", "aws_xray_sdk"])
def test_runtime_dependencies_are_bundled(asset_dir, package):
    assert (asset_dir / package / "__init__.py").is_file()


def test_native_wheels_are_for_the_lambda_platform(asset_dir):
    # pydantic-core must be the CPython 3.12 x86_64 manylinux build, whatever the host runs
    (so,) = list((asset_dir / "pydantic_core").glob("_pydantic_core*.so"))
    assert "cpython-312-x86_64-linux-gnu" in so.name
