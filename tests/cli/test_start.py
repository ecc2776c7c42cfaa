"""`albgate start`: the input validated like the Lambda validates it, the state machine found from the stack,
an execution started in moto, and advice (exit 2, no traceback) when credentials, Region or stack are missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from albgate.cli import main
from tests.cli.conftest import IMAGE, REGION, SEED_FLAGS, SEED_INPUT, create_stack, create_state_machine

ROOT = Path(__file__).resolve().parents[2]

BAD_INPUTS = [
    pytest.param({**SEED_INPUT, "image": "myapp"}, "image", id="image-without-tag-or-digest"),
    pytest.param({**SEED_INPUT, "namespace": "Readiness"}, "namespace", id="namespace-not-a-kubernetes-name"),
    pytest.param({k: v for k, v in SEED_INPUT.items() if k != "container"}, "container", id="container-missing"),
    pytest.param({**SEED_INPUT, "policy": {"steps": [1, "50%"]}}, "policy.steps", id="steps-not-reaching-100"),
    pytest.param({**SEED_INPUT, "policy": {"bake_seconds": -1}}, "policy.bake_seconds", id="negative-bake"),
    pytest.param({**SEED_INPUT, "colour": "blue"}, "colour", id="unknown-field"),
]


@pytest.mark.parametrize(("data", "field"), BAD_INPUTS)
def test_bad_input_names_the_field_before_any_aws_call(data: dict, field: str, no_aws: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Given a bad input file and NO credentials at all (so any AWS call would fail differently)
    path = no_aws / "input.json"
    path.write_text(json.dumps(data))
    # When it is started
    code = main(["start", "--file", str(path)])
    # Then it exits 2 naming the field, and never got as far as credentials
    err = capsys.readouterr().err
    assert code == 2
    assert f"{field}:" in err
    assert "credentials" not in err
    assert "Traceback" not in err


FLAG_CASES = [
    pytest.param(["--steps", "1,25%,100%"], {"steps": [1, "25%", "100%"]}, id="steps"),
    pytest.param(["--bake-seconds", "30", "--harden"], {"bake_seconds": 30, "harden": True}, id="bake-harden"),
    pytest.param(["--no-rollback", "--approval-before-steps", "2,3"],
                 {"rollback_on_failure": False, "approval_before_steps": [2, 3]}, id="no-rollback-approvals"),
]


@pytest.mark.parametrize(("flags", "policy"), FLAG_CASES)
def test_flags_become_the_execution_input(flags: list[str], policy: dict, moto_aws: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Given a state machine
    arn = create_state_machine()
    # When a rollout is started from flags
    code = main(["start", *SEED_FLAGS, *flags, "--state-machine-arn", arn, "--name", "run-1", "--json"])
    # Then the execution's input is exactly what the flags say
    assert code == 0, capsys.readouterr().err
    started = json.loads(capsys.readouterr().out.splitlines()[0])
    sent = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=started["executionArn"])["input"])
    assert sent == {"cluster": "my-cluster", "namespace": "readiness", "deployment": "nginx-app",
                    "container": "nginx", "image": IMAGE, "policy": policy}
    assert started["name"] == "run-1"


def test_start_finds_the_state_machine_from_the_stack_output(moto_aws: None, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Given the Albgate stack with its StateMachineArn output, and the README's input in a file
    arn = create_state_machine()
    create_stack({"StateMachineArn": arn})
    path = tmp_path / "rollout.json"
    path.write_text(json.dumps(SEED_INPUT))
    # When it is started with no ARN
    code = main(["start", "--file", str(path)])
    # Then an execution of that state machine is running, named <deployment>-<unix time>, with a console link
    out = capsys.readouterr().out
    assert code == 0
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    assert len(executions) == 1
    execution = executions[0]
    assert execution["name"].startswith("nginx-app-") and execution["name"].split("-")[-1].isdigit()
    assert f"started {execution['executionArn']}" in out
    assert (f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/"
            f"{execution['executionArn']}") in out


def test_flags_override_the_file(moto_aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an input file and a different image on the command line
    arn = create_state_machine()
    path = tmp_path / "rollout.json"
    path.write_text(json.dumps(SEED_INPUT))
    image = "repo/app:v3"
    # When started
    assert main(["start", "-f", str(path), "--image", image, "--bake-seconds", "5", "--state-machine-arn", arn,
                 "--json"]) == 0
    # Then the flag wins and the file's other policy fields stay
    started = json.loads(capsys.readouterr().out)
    sent = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=started["executionArn"])["input"])
    assert sent["image"] == image
    assert sent["policy"] == {**SEED_INPUT["policy"], "bake_seconds": 5}


SETUP_PROBLEMS = [
    pytest.param(None, ["--stack-name", "Nope"], "no stack 'Nope'", id="stack-missing"),
    pytest.param({"SomethingElse": "x"}, [], "has no StateMachineArn output", id="output-missing"),
    pytest.param(None, ["--state-machine-arn", f"arn:aws:states:{REGION}:123456789012:stateMachine:Gone"],
                 "no state machine", id="state-machine-missing"),
]


@pytest.mark.parametrize(("outputs", "flags", "advice"), SETUP_PROBLEMS)
def test_missing_stack_or_state_machine_is_advice(outputs: dict | None, flags: list[str], advice: str,
                                                  moto_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a stack without the output, or none at all
    if outputs is not None:
        create_stack(outputs)
    # When a valid rollout is started
    code = main(["start", *SEED_FLAGS, *flags])
    # Then it exits 2 with advice in one or two lines
    err = capsys.readouterr().err
    assert code == 2
    assert advice in err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err


def test_execution_name_taken_is_advice(moto_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    arn = create_state_machine()
    assert main(["start", *SEED_FLAGS, "--state-machine-arn", arn, "--name", "same"]) == 0
    assert main(["start", *SEED_FLAGS, "--state-machine-arn", arn, "--name", "same"]) == 2
    assert "already exists; pass another --name" in capsys.readouterr().err


@pytest.mark.parametrize(("env", "advice"), [
    pytest.param({"AWS_DEFAULT_REGION": REGION}, "no AWS credentials found", id="no-credentials"),
    pytest.param({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, "no AWS Region is set", id="no-region"),
    pytest.param({"AWS_PROFILE": "missing", "AWS_DEFAULT_REGION": REGION}, "AWS_PROFILE", id="unknown-profile"),
])
def test_missing_credentials_or_region_is_advice(env: dict[str, str], advice: str, no_aws: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Given a valid input and an AWS configuration missing credentials or a Region
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # When started (watch too)
    # (without a Region anywhere, watch gets an ARN without one too; with one, the ARN names it)
    region = REGION if "AWS_DEFAULT_REGION" in env else ""
    codes = [main(["start", *SEED_FLAGS]),
             main(["watch", f"arn:aws:states:{region}:123456789012:execution:Rollout:x"])]
    # Then each exits 2 with what to do, no traceback
    err = capsys.readouterr().err
    assert codes[0] == 2, err
    assert advice in err and "Traceback" not in err
    assert codes[1] == 2
    assert err.count(advice) == 2


def test_bad_file_in_a_subprocess_exits_2_naming_the_field(tmp_path: Path) -> None:
    # Given the README's input with a tag-less image, written as a user would
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SEED_INPUT, "image": "myapp"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    # When the installed command runs it
    albgate = Path(sys.executable).with_name("albgate")
    proc = subprocess.run([str(albgate), "start", "--file", str(bad)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    # Then it exits 2, the error names the field, and nothing else is said
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("albgate start: error: invalid rollout input: image:")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


BAD_FILES = [
    # id, the file's bytes, what the one line says
    pytest.param(json.dumps(SEED_INPUT).replace('"container"', '"image": "x:1", "container"', 1).encode(),
                 "key 'image' is given twice", id="duplicate-key"),
    pytest.param(json.dumps({**SEED_INPUT, "deployment": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
                 "not UTF-8 text (line 1", id="latin-1"),
]


@pytest.mark.parametrize(("raw", "says"), BAD_FILES)
def test_a_file_that_is_not_strict_json_is_one_line(raw: bytes, says: str, no_aws: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Given an input file with a key given twice, or saved in Latin-1
    path = no_aws / "input.json"
    path.write_bytes(raw)
    # When it is started / Then it exits 2 with one line naming the file and the problem, before any AWS call
    code = main(["start", "--file", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and says in err and str(path) in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
