"""app.py: environment and outdir resolution, the `-c` flags, config errors as a clean exit, the summary."""

from __future__ import annotations

import pytest

from stacks.constructs.specs import ALL_HANDLERS

from stacks.config import parse_config


@pytest.mark.parametrize(
    ("config_account", "env", "account"),
    [
        ("111111111111", {"CDK_DEFAULT_ACCOUNT": "222222222222"}, "111111111111"),
        (None, {"CDK_DEFAULT_ACCOUNT": "222222222222"}, "222222222222"),
        (None, {}, None),
    ],
    ids=["config-wins", "cli-credentials", "agnostic"],
)
def test_account_comes_from_config_then_environment(cdk_app, example_config, config_account, env, account):
    example = {**example_config, "clusters": [{**example_config["clusters"][0], "account": config_account}]}
    environment = cdk_app.stack_environment(parse_config(example), {**env, "CDK_DEFAULT_REGION": "eu-west-1"})
    assert environment.account == account
    # The Region is always the clusters' (access entries are created in the cluster's Region)
    assert environment.region == "us-east-1"


def test_synth_writes_to_the_outdir_it_was_given(synth):
    assert (synth.outdir / "manifest.json").exists()
    assert (synth.outdir / synth.stack.template_file).exists()


def test_config_error_exits_1_with_the_message(cdk_app, capsys):
    assert cdk_app.main(["-q", "-c", "albgate_config=/nonexistent/albgate.json"]) == 1
    assert "albgate_config: file /nonexistent/albgate.json does not exist" in capsys.readouterr().err


def test_context_flag_needs_key_value(cdk_app, capsys):
    assert cdk_app.main(["-c", "albgate_config"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_summary_shows_the_plan_and_the_next_step(cdk_app, synth):
    text = cdk_app.summary(synth.stack.config, synth.stack, "cdk.out")
    assert "app readiness/nginx-app" in text
    assert "plan [1, 2, 3] new pods per step" in text  # 3 replicas, steps [1, 25%, 50%, 100%]
    entries = sum(1 for s in ALL_HANDLERS if s.kube != "none")
    assert f"{entries} access entries" in text
    assert "kubectl apply -f cdk.out/albgate-rbac.yaml" in text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param('{"context": {"albgate": {}, "albgate": {"stack_name": "X"}}}', "key 'albgate' is given twice",
                     id="duplicate-key"),
        pytest.param('{"context": {"x": "caf\u00e9"}}'.encode("latin-1"), "not UTF-8 text", id="latin-1"),
    ],
)
def test_cdk_json_is_read_strictly(cdk_app, tmp_path, text, says):
    # Given a cdk.json with a key given twice, or saved in Latin-1
    path = tmp_path / "cdk.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    # When its context is read / Then one ConfigError line names the file and the problem
    from stacks.config import ConfigError

    with pytest.raises(ConfigError) as err:
        cdk_app.cdk_json_context(path)
    assert says in str(err.value) and "cdk.json" in str(err.value) and "\n" not in str(err.value)
