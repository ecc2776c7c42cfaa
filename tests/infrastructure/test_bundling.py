"""Opt-in (ALBGATE_TEST_BUNDLING=1, as CI runs it): the real app synthesized with bundling, and what it ships.

Bundles both code assets with the local pip bundler (or takes them from .albgate-cache/assets) and extracts the
helm layer, once per module; needs the package registry (or pip's mirror) and Pyodide (``npm ci``) on a cold
cache, so it is not in the default run.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs.bytecode import bytecode_problems
from stacks.constructs.helm_binary import HELM_ENTRY, helm_from_package
from stacks.constructs.lambda_asset import LAMBDAS_DIR, LOCKS
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER, asset_family
from tests.conftest import FIGURES, load_cdk_app_module

pytestmark = [
    pytest.mark.bundling,
    pytest.mark.skipif(os.environ.get("ALBGATE_TEST_BUNDLING") != "1", reason="set ALBGATE_TEST_BUNDLING=1"),
]

# Lambda quota: deployment package (.zip) size, 250 MB unzipped "including layers and custom runtimes";
# CloudFormation refuses a function over it (docs/facts.md, "Lambda").
UNZIPPED_LIMIT_BYTES = 262_144_000


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


class Bundled:
    def __init__(self, outdir: Path, template: dict[str, Any]) -> None:
        self.outdir = outdir
        self.resources = template["Resources"]

    def asset_dir(self, logical_id: str) -> Path:
        """The staged folder of a function's code or a layer's content: S3Key ``<hash>.zip`` -> ``asset.<hash>``."""
        props = self.resources[logical_id]["Properties"]
        key = (props.get("Code") or props["Content"])["S3Key"]
        return self.outdir / f"asset.{key.removesuffix('.zip')}"

    def functions(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == "AWS::Lambda::Function"
                and "S3Key" in v["Properties"].get("Code", {})}

    def layer_ids(self, function_id: str) -> list[str]:
        return [ref["Ref"] for ref in self.resources[function_id]["Properties"].get("Layers", [])]

    def by_handler(self, module: str) -> str:
        (found,) = [k for k, v in self.functions().items()
                    if v["Properties"]["Handler"] == f"lambdas.handlers.{module}.handler"]
        return found


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Bundled:
    import json

    # Given the app as `cdk synth` builds it, bundling included
    cdk_app = load_cdk_app_module()
    outdir = tmp_path_factory.mktemp("cdk.out.bundled")
    app, stack = cdk_app.build_app(outdir=str(outdir))
    app.synth()
    return Bundled(outdir, json.loads((outdir / stack.template_file).read_text()))


def test_every_function_fits_lambdas_unzipped_limit_with_its_layers(bundled):
    # When each function's code and layers are measured unzipped, as Lambda counts them
    rows = []
    for fid, fn in sorted(bundled.functions().items()):
        code = tree_bytes(bundled.asset_dir(fid))
        layers = sum(tree_bytes(bundled.asset_dir(lid)) for lid in bundled.layer_ids(fid))
        rows.append((fn["Properties"]["Handler"].split(".")[2], code, layers, code + layers))
    FIGURES.append(f"Lambda code + layers, unzipped (limit {UNZIPPED_LIMIT_BYTES:,} bytes):")
    FIGURES.extend(f"  {name:<34} code {code / 1e6:6.1f} MB + layers {layers / 1e6:5.1f} MB = {total / 1e6:6.1f} MB"
                   for name, code, layers, total in rows)
    # Then every one is under the limit
    assert [name for name, _, _, total in rows if total > UNZIPPED_LIMIT_BYTES] == []
    assert len(rows) == len(ALL_HANDLERS) + len(TRIGGER)


@pytest.mark.parametrize("spec", (*ALL_HANDLERS, *TRIGGER), ids=[s.name for s in (*ALL_HANDLERS, *TRIGGER)])
def test_each_function_runs_its_familys_asset(bundled, spec):
    asset = bundled.asset_dir(bundled.by_handler(spec.module))
    assert (asset / "lambdas" / "handlers" / f"{spec.module}.py").is_file()
    # The kubernetes client only where the family says so
    assert (asset / "kubernetes" / "__init__.py").is_file() == (asset_family(spec).name == "kubernetes")


def test_the_assets_ship_neither_the_sdk_the_runtime_has_nor_what_nothing_imports(bundled):
    assets = {bundled.asset_dir(fid) for fid in bundled.functions()}
    assert len(assets) == 2  # one per family, shared by its functions
    for asset in assets:
        present = {p.name for p in asset.iterdir()}
        assert present.isdisjoint({"boto3", "botocore", "aws_xray_sdk", "aiohttp"}), present
        assert not (asset / "kubernetes" / "aio").exists()
        assert list((asset / "lambdas").glob(LOCKS)) == []


def test_the_whole_package_is_copied_without_the_hosts_caches(bundled):
    source = {p.relative_to(LAMBDAS_DIR) for p in LAMBDAS_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    for fid in {bundled.by_handler(s.module) for s in ALL_HANDLERS}:
        asset = bundled.asset_dir(fid)
        assert {p.relative_to(asset / "lambdas") for p in (asset / "lambdas").rglob("*.py")} == source
        # the only bytecode is the Lambda runtime's: nothing compiled by (or for) this host's Python
        assert {p.name.split(".")[-2] for p in asset.rglob("*.pyc")} == {"cpython-312"}


def test_every_module_ships_with_its_cpython_312_bytecode(bundled):
    # Lambda cannot write bytecode into /var/task: without it every cold start compiles what it imports
    for asset in {bundled.asset_dir(fid) for fid in bundled.functions()}:
        assert bytecode_problems(asset) == []


def test_native_wheels_are_for_the_lambda_platform(bundled):
    # pydantic-core must be the CPython 3.12 x86_64 manylinux build, whatever the host runs
    for asset in {bundled.asset_dir(fid) for fid in bundled.functions()}:
        (so,) = list((asset / "pydantic_core").glob("_pydantic_core*.so"))
        assert "cpython-312-x86_64-linux-gnu" in so.name


def test_the_install_function_gets_helm_alone_byte_for_byte_from_the_pinned_package(bundled):
    install = bundled.by_handler("bootstrap_install_controller")
    # Given the install function's layers (the helm layer, and the allow-list every function carries)
    (layer_id,) = [lid for lid in bundled.layer_ids(install) if (bundled.asset_dir(lid) / HELM_ENTRY).exists()]
    folder = bundled.asset_dir(layer_id)
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert files == [HELM_ENTRY]  # lands at /opt/helm/helm, where the helm adapter runs it
    helm = folder / HELM_ENTRY
    assert helm.stat().st_mode & stat.S_IXUSR
    assert helm.read_bytes() == helm_from_package()
    # and no other function carries helm
    others = [lid for fid in bundled.functions() if fid != install for lid in bundled.layer_ids(fid)]
    assert [lid for lid in others if (bundled.asset_dir(lid) / HELM_ENTRY).exists()] == []
