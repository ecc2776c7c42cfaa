"""albgate's own constructs use no CDK API marked deprecated (to be removed in aws-cdk-lib's next major version).

jsii checks every deprecated property, method and class as it is used, and with ``JSII_DEPRECATED=fail`` raises
instead of printing a warning; the variable is read when the jsii runtime starts, so each check runs in a fresh
process. The app is built without cdk-nag (``build_app(nag=False)``): cdk-nag's AwsSolutions-EVB1 rule reads
``CfnEventBusPolicy.principal``, a deprecated field albgate's bus policy does not set (it writes ``statement``),
which is the one deprecation warning a synth prints (docs/foundation.md, "What synth prints"). Both
configurations are built: the example's stacks and the release stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from albgate.template import RELEASE_CONFIG, ROOT, SKIP_BUNDLING

SYNTH_BOTH = textwrap.dedent(
    f"""
    import sys, tempfile
    sys.path.insert(0, {str(ROOT)!r})
    from app import build_app, cdk_json_context
    for extra in ({{}}, {{"albgate_config": {str(RELEASE_CONFIG)!r}}}):
        with tempfile.TemporaryDirectory() as out:
            app, _ = build_app({{**cdk_json_context(), **{SKIP_BUNDLING!r}, **extra}}, outdir=out, nag=False)
            app.synth()
    print("synthesized")
    """
)

# A negative control: the same process reads one deprecated property of a construct, so a runtime that ignored
# JSII_DEPRECATED (or a variable renamed upstream) would show here rather than pass the check above silently.
READ_DEPRECATED = textwrap.dedent(
    """
    from aws_cdk import App, Stack
    from aws_cdk import aws_events as events
    policy = events.CfnEventBusPolicy(Stack(App(), "S"), "P", statement_id="s", statement={"Effect": "Deny"})
    print(policy.principal)
    """
)


def run_failing_on_deprecated(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JSII_DEPRECATED": "fail", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_albgate_constructs_use_no_deprecated_cdk_api():
    # Given the app built with every config albgate ships, When it is synthesized with deprecations fatal
    done = run_failing_on_deprecated(SYNTH_BOTH)
    # Then it synthesizes (a deprecated use would raise, naming the API)
    assert done.returncode == 0 and "synthesized" in done.stdout, done.stderr[-3000:]


def test_a_deprecated_read_does_fail_that_check():
    # Given a read of CfnEventBusPolicy.principal (deprecated), When run the same way
    done = run_failing_on_deprecated(READ_DEPRECATED)
    # Then the process fails, naming the property
    assert done.returncode != 0
    assert "CfnEventBusPolicy#principal is deprecated" in done.stderr, done.stderr[-3000:]


def test_local_synthesis_quiets_deprecations_only_while_it_runs(monkeypatch):
    # Given no JSII_DEPRECATED set, When albgate.template synthesizes (the app's own synthesis recorded, not run)
    from albgate import template

    seen: list[str | None] = []
    monkeypatch.delenv("JSII_DEPRECATED", raising=False)
    monkeypatch.setattr(template, "_synthesize_app", lambda extra: seen.append(os.environ.get("JSII_DEPRECATED")) or {})
    template._synthesize()
    # Then jsii would start quiet, and the variable is gone afterwards
    assert seen == ["quiet"] and "JSII_DEPRECATED" not in os.environ


def test_local_synthesis_keeps_a_setting_the_user_made(monkeypatch):
    from albgate import template

    seen: list[str | None] = []
    monkeypatch.setenv("JSII_DEPRECATED", "fail")
    monkeypatch.setattr(template, "_synthesize_app", lambda extra: seen.append(os.environ.get("JSII_DEPRECATED")) or {})
    template._synthesize()
    assert seen == ["fail"] and os.environ["JSII_DEPRECATED"] == "fail"
