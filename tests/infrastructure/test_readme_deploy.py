"""README's Deploy section is what a new user types: the pinned CDK CLI, `cdk bootstrap`, and the order app.py prints.

Invariant: the commands are read from README.md itself and compared with package.json and with the summary
``app.py`` prints after a synth, so the three cannot drift apart.
"""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT


def deploy_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy it"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's Deploy section has no bash block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_the_cdk_cli_is_pinned_exactly_and_run_from_the_project():
    pins = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["aws-cdk"]), "package.json must pin aws-cdk to one exact version"
    cdk = [c for c in deploy_commands() if re.match(r"(npx )?cdk\b", c)]
    assert cdk and all(c.startswith("npx cdk ") for c in cdk)  # npx runs node_modules/.bin/cdk, the pinned one


def test_bootstrap_then_deploy_after_the_rbac_as_app_py_prints_it(cdk_app, synth):
    # Given the summary app.py prints after a synth
    summary = cdk_app.summary(synth.stack.config, synth.stack, "cdk.out")
    (next_line,) = [line for line in summary.splitlines() if "next:" in line]
    rbac_files = re.findall(r"-f (\S+)", next_line)
    assert next_line.rstrip().endswith("then cdk deploy") and rbac_files
    # When README's commands are read in order
    commands = deploy_commands()
    kubectl = next(i for i, c in enumerate(commands) if c.startswith("kubectl apply"))
    bootstrap = next(i for i, c in enumerate(commands) if c == "npx cdk bootstrap")
    deploy = next(i for i, c in enumerate(commands) if c.startswith("npx cdk deploy"))
    # Then the RBAC files are the ones app.py names, applied before the deploy, and bootstrap comes before deploy
    assert re.findall(r"-f (\S+)", commands[kubectl]) == rbac_files
    assert kubectl < deploy and bootstrap < deploy
