"""The code assets' locks are complete, each function's imports are in its asset, and a warm bundle is reused.

The assets are installed with ``pip --no-deps`` (stacks/constructs/lambda_asset.py), so a dependency missing
from a lock would only show on AWS, as an ImportError at cold start. These tests read the installed packages'
own metadata (the development venv installs the same locks through requirements.txt) instead of bundling.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stacks.constructs.lambda_asset import CORE, FAMILIES, KUBERNETES, LAMBDAS_DIR, PipLocalBundling, cache_key
from stacks.constructs.specs import ALL_HANDLERS, TRIGGER, asset_family

# The Lambda Python runtime includes the SDK (docs/facts.md, "Lambda"); its own dependencies come with it.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
# Required by a locked package but left out on purpose, with the reason.
LEFT_OUT = {"aiohttp": "only kubernetes.aio (the asyncio client) uses it; the kubernetes asset prunes kubernetes/aio"}
# What Lambda's python3.12 on x86_64 evaluates environment markers with.
LAMBDA_MARKERS = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0",
                  "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def pins(family) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in family.lock_files():
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line.startswith("-r "):
                continue
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            found[canonicalize_name(name)] = version
    return found


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_every_dependency_of_a_locked_package_is_locked_or_provided(family):
    # Given the family's lock, and each locked package's requirements as its metadata states them
    locked = pins(family)
    missing = []
    for name in locked:
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate(LAMBDA_MARKERS):
                continue  # an extra, or another platform
            dep = canonicalize_name(req.name)
            if dep in locked:
                # Then a locked dependency satisfies what its dependant asks for
                assert req.specifier.contains(locked[dep], prereleases=True), f"{name} needs {raw}, lock has {locked[dep]}"
            elif dep not in RUNTIME_PROVIDED and dep not in LEFT_OUT:
                missing.append(f"{name} -> {raw}")
    # Then nothing it needs at run time is missing from the asset
    assert missing == []


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_the_venv_runs_the_versions_the_asset_ships(family):
    # The tests exercise the locked versions: requirements.txt installs the same locks into the venv
    assert {n: metadata.version(n) for n in pins(family)} == pins(family)


def test_the_kubernetes_lock_extends_the_core_lock():
    assert set(pins(CORE)) < set(pins(KUBERNETES))
    assert "kubernetes" not in pins(CORE)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("forbidden", ["kubernetes.aio", "aiohttp", "aws_xray_sdk"])
def test_nothing_in_lambdas_imports_what_no_asset_ships(forbidden):
    offenders = [str(p.relative_to(LAMBDAS_DIR)) for p in LAMBDAS_DIR.rglob("*.py")
                 if any(m == forbidden or m.startswith(forbidden + ".") for m in _imports(p))]
    assert offenders == []


CORE_SPECS = [s for s in (*ALL_HANDLERS, *TRIGGER) if asset_family(s) is CORE]
# Printed by the child: the top-level third-party packages loaded by importing the handler module.
_PROBE = """
import sys, json
sys.modules["kubernetes"] = None  # the core asset has no kubernetes client: importing it must fail
import importlib
importlib.import_module("lambdas.handlers." + sys.argv[1])
std = set(sys.stdlib_module_names)
loaded = {m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}
# interpreter start-up and the venv's editable-install finder are not the handler's imports
print(json.dumps(sorted(m for m in loaded if m not in std and not m.startswith("_"))))
"""
CORE_IMPORT_NAMES = {"aws_lambda_powertools", "jmespath", "typing_extensions", "pydantic", "pydantic_core",
                     "annotated_types", "typing_inspection", "urllib3"}
RUNTIME_IMPORT_NAMES = {"boto3", "botocore", "s3transfer", "dateutil", "six"}


@pytest.mark.parametrize("spec", CORE_SPECS, ids=[s.name for s in CORE_SPECS])
def test_a_core_function_imports_only_what_the_core_asset_ships(spec):
    # Given a function of the core family / When its handler module is imported without the kubernetes client
    done = subprocess.run([sys.executable, "-c", _PROBE, spec.module], capture_output=True, text=True,
                          cwd=LAMBDAS_DIR.parent, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # Then every third-party package it loaded is in the core lock or in the Lambda runtime
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1])) - {"lambdas"}
    assert loaded - CORE_IMPORT_NAMES - RUNTIME_IMPORT_NAMES == set()


# The modules through which a handler reaches the kubernetes client (the rollout's reach the cluster over kube_http).
CLIENT_MODULES = {"lambdas.handlers.bootstrap_common", "lambdas.adapters.kubernetes_bootstrap",
                  "lambdas.adapters.kube_client"}


@pytest.mark.parametrize("spec", (*ALL_HANDLERS, *TRIGGER), ids=[s.name for s in (*ALL_HANDLERS, *TRIGGER)])
def test_a_function_gets_the_kubernetes_asset_exactly_when_its_handler_uses_the_client(spec):
    uses_client = bool(_imports(LAMBDAS_DIR / "handlers" / f"{spec.module}.py") & CLIENT_MODULES)
    assert (asset_family(spec) is KUBERNETES) == uses_client


def test_a_warm_bundle_is_copied_from_the_cache_without_pip(tmp_path):
    # Given a cache that already holds the core asset for the current sources and lock
    cache = tmp_path / "cache"
    entry = cache / cache_key(CORE)
    (entry / "lambdas").mkdir(parents=True)
    (entry / "lambdas" / "marker.txt").write_text("bundled before")
    # When the bundler runs with a Python that could not run pip at all
    out = tmp_path / "out"
    out.mkdir()
    bundled = PipLocalBundling(CORE, python="/nonexistent/python", cache_dir=cache).try_bundle(str(out), None)
    # Then it bundled, from the cache
    assert bundled is True
    assert (out / "lambdas" / "marker.txt").read_text() == "bundled before"


def test_the_cache_key_follows_the_family_the_lock_and_the_sources(tmp_path):
    # Given a copy of the package
    import shutil

    source = tmp_path / "lambdas"
    shutil.copytree(LAMBDAS_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    before = {f.name: cache_key(f, source) for f in FAMILIES}
    # When a source file changes / Then both keys change; the families never share one
    (source / "handlers" / "preflight.py").write_text((source / "handlers" / "preflight.py").read_text() + "\n# x\n")
    after = {f.name: cache_key(f, source) for f in FAMILIES}
    assert before["core"] != before["kubernetes"]
    assert all(before[k] != after[k] for k in before)
    # When only the kubernetes lock changes / Then only the kubernetes key changes (no asset ships the locks)
    (source / KUBERNETES.requirements).write_text((source / KUBERNETES.requirements).read_text() + "\n")
    again = {f.name: cache_key(f, source) for f in FAMILIES}
    assert again["core"] == after["core"] and again["kubernetes"] != after["kubernetes"]
