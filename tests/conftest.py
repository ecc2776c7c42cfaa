"""Session-wide test set-up: the jsii Node banner, and the stack synthesized once per session.

Invariant: the CDK app is synthesized at most once per configuration per session (synthesis costs seconds), with
bundling skipped (``aws:cdk:bundling-stacks: []`` gives the same template without running pip), into a
temporary outdir. Fixtures are lazy: a test layer that does not ask for them pays nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# jsii prints an end-of-life banner on Node 20 (the Node on these machines). We know, and chose to silence it
# for this major only (docs/foundation.md explains why, and how to use JSII_NODE with Node 22 instead). Set
# before anything imports aws_cdk, which starts the jsii runtime.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[1]
SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}


def load_cdk_app_module() -> ModuleType:
    """app.py lives at the repository root (where `cdk` expects it), outside any package: load it by path."""
    spec = importlib.util.spec_from_file_location("albgate_cdk_app", ROOT / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Synthesized:
    app: Any
    stack: Any
    outdir: Path
    problems: list[str]  # unacknowledged cdk-nag findings and CDK errors/warnings (app.synthesis_problems)
    template: dict[str, Any]

    def resources(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == rtype}


def synthesize(cdk_app: ModuleType, outdir: Path, albgate_config: dict[str, Any] | None = None) -> Synthesized:
    context = {**cdk_app.cdk_json_context(), **SKIP_BUNDLING}
    if albgate_config is not None:
        context["albgate"] = albgate_config
    app, stack = cdk_app.build_app(context, outdir=str(outdir))
    problems = cdk_app.synthesis_problems(app, stack)
    template = json.loads((outdir / stack.template_file).read_text())
    return Synthesized(app=app, stack=stack, outdir=outdir, problems=problems, template=template)


@pytest.fixture(scope="session")
def cdk_app() -> ModuleType:
    return load_cdk_app_module()


@pytest.fixture(scope="session")
def example_config() -> dict[str, Any]:
    return json.loads((ROOT / "config" / "example.json").read_text())


@pytest.fixture(scope="session")
def synth(cdk_app: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack from cdk.json's context (the example app's config), synthesized once for the whole session."""
    return synthesize(cdk_app, tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def template(synth: Synthesized) -> dict[str, Any]:
    return synth.template


# Figures a test measured and wants shown under the run's summary (the Lambda size table, for one), printed
# even with -q: a limit met by a thin margin should be visible before it breaks.
FIGURES: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _environment_restored(request: pytest.FixtureRequest) -> Any:
    """Every test module leaves the process's environment as it found it (a variable left behind changes what
    the next module's handlers do, so the suite's result would depend on the order its modules run in)."""
    before = dict(os.environ)
    yield
    changed = sorted(k for k in set(before) | set(os.environ)
                     if before.get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST")  # pytest's own
    assert not changed, f"{request.module.__name__} left these environment variables changed: {changed}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("albgate figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
