"""The synthesized CloudFormation template of albgate's own stack, for running its state machine locally.

Job: synthesize the CDK app in this checkout (bundling skipped: the same template, no pip run) and cache the
result on disk, keyed by a hash of every file that shapes the template, so `albgate simulate` pays the ~5 s
jsii start-up once per change rather than once per run.
Invariant: what runs locally is the definition CDK synthesized from ``stacks/`` (never a hand-written copy);
a stale cache is impossible because any change to those files changes the key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / ".albgate-cache"
SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}
_memo: dict[str, dict[str, Any]] = {}


RELEASE_CONFIG = ROOT / "config" / "releases-example.json"


def _inputs() -> list[Path]:
    files = [ROOT / "app.py", ROOT / "cdk.json", RELEASE_CONFIG]
    for folder in ("stacks", "lambdas/domain"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if f.is_file()]


def template_key() -> str:
    digest = hashlib.sha256()
    for f in _inputs():
        digest.update(str(f.relative_to(ROOT)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _synthesize(extra_context: dict[str, Any] | None = None) -> dict[str, Any]:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    # The one deprecation warning a synth prints is cdk-nag's (docs/foundation.md, "What synth prints"), noise in
    # a local run's output; albgate's own constructs are held to none (tests/infrastructure/
    # test_no_deprecated_api.py). jsii reads the variable when its runtime starts: on the app's first import here.
    quiet = "JSII_DEPRECATED" not in os.environ
    if quiet:
        os.environ["JSII_DEPRECATED"] = "quiet"
    try:
        return _synthesize_app(extra_context)
    finally:
        if quiet:
            os.environ.pop("JSII_DEPRECATED", None)


def _synthesize_app(extra_context: dict[str, Any] | None) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("albgate_cdk_app", ROOT / "app.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the CDK app at {ROOT / 'app.py'}: run albgate from its checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory(prefix="albgate-synth-") as out:
        app, stack = module.build_app({**module.cdk_json_context(), **SKIP_BUNDLING, **(extra_context or {})},
                                      outdir=out)
        problems = module.synthesis_problems(app, stack)  # synthesizes; cdk-nag findings are problems too
        if problems:
            raise RuntimeError("the CDK app does not synthesize cleanly: " + "; ".join(problems))
        if extra_context is None:
            return json.loads((Path(out) / stack.template_file).read_text())
        return _release_and_rollout(Path(out), stack.template_file)


def _release_and_rollout(out: Path, first_stack_template: str) -> dict[str, Any]:
    """One template holding the release stack's resources and the first environment's (its rollout state
    machine): what ``albgate.sim.release`` runs. Logical ids of the two stacks never collide (checked)."""
    release = json.loads(next(out.glob("*-Release.template.json")).read_text())
    env = json.loads((out / first_stack_template).read_text())
    clash = set(release["Resources"]) & set(env["Resources"])
    if clash:
        raise RuntimeError(f"the release and environment stacks share logical ids {sorted(clash)}")
    return {"Resources": {**env["Resources"], **release["Resources"]}}


def _cached(key: str, synthesize: Any) -> dict[str, Any]:
    """The template under ``key``: from memory, else the disk cache, else ``synthesize()`` (then cached)."""
    if key in _memo:
        return _memo[key]
    cached = CACHE_DIR / f"template-{key}.json"
    if cached.is_file():
        template = json.loads(cached.read_text())
    else:
        template = synthesize()
        CACHE_DIR.mkdir(exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(template))
        tmp.replace(cached)  # atomic: a parallel run never reads half a file
    _memo[key] = template
    return template


def synthesized_template() -> dict[str, Any]:
    """The stack's template for this checkout: from memory, else the disk cache, else a fresh synth."""
    return _cached(template_key(), _synthesize)


def synthesized_release_template() -> dict[str, Any]:
    """The release state machine and a rollout state machine, synthesized from config/releases-example.json (the
    release's definition does not depend on the waves: they are its data), cached like ``synthesized_template``."""
    return _cached("release-" + template_key(), lambda: _synthesize({"albgate_config": str(RELEASE_CONFIG)}))


def use_template(template: dict[str, Any]) -> None:
    """Hand in a template synthesized elsewhere (the test session synthesizes once and shares it)."""
    _memo[template_key()] = template


# Construct paths in stacks/albgate_stack.py: Rollout/StateMachine and Bootstrap/StateMachine.
ROLLOUT_STATE_MACHINE_PREFIX = "RolloutStateMachine"
BOOTSTRAP_STATE_MACHINE_PREFIX = "BootstrapStateMachine"
RELEASE_STATE_MACHINE_PREFIX = "ReleaseStateMachine"  # stacks/release_stack.py: Release/StateMachine


def state_machine_id(template: dict[str, Any], prefix: str = ROLLOUT_STATE_MACHINE_PREFIX) -> str:
    """The logical id of the stack's state machine whose id starts with ``prefix`` (exactly one must)."""
    ids = [
        k
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::StepFunctions::StateMachine" and k.startswith(prefix)
    ]
    if len(ids) != 1:
        raise RuntimeError(f"expected one state machine named {prefix}* in the template, found {ids}")
    return ids[0]
