"""``albgate.chart_check``: albgate's values rendered through a chart by the shipped helm, and what it checks.

The chart here is the small one the helm tests serve (``CHART_FILES``: the eks-charts value keys and the pod
webhook's selectors as the real chart writes them); docs/facts.md records the same check on the real chart at the
pinned tag. Each negative control changes one template the way an upstream chart change could, and must be named.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from albgate import chart_check
from albgate.chart_check import EXAMPLE_CLUSTER, EXAMPLE_SETTINGS, problems, render
from lambdas.domain.bootstrap import CHART_NAME, helm_values
from tests.adapters.test_helm_binary import CHART_FILES


def write_chart(root: Path, changes: dict[str, tuple[str, str]] | None = None) -> Path:
    """The test chart in ``root``, each ``changes[file] = (old, new)`` applied (old must be there)."""
    chart = root / CHART_NAME
    for name, text in CHART_FILES.items():
        old, new = (changes or {}).get(name, ("", ""))
        assert old in text, f"{name} has no {old!r}"
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text.replace(old, new) if old else text)
    return chart


def rendered_problems(helm: Path, chart: Path) -> list[str]:
    return problems(render(chart, helm_values(EXAMPLE_CLUSTER, EXAMPLE_SETTINGS), helm), EXAMPLE_CLUSTER,
                    EXAMPLE_SETTINGS)


def test_the_chart_as_albgate_expects_it_has_no_problem(helm_binary, tmp_path):
    assert rendered_problems(helm_binary, write_chart(tmp_path)) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "named"),
    [
        ("templates/webhook.yaml", "failurePolicy: {{ .Values.podMutatorWebhookConfig.failurePolicy }}",
         "failurePolicy: Ignore", "mpod.elbv2.k8s.aws fails 'Ignore', not 'Fail'"),
        ("templates/webhook.yaml", "operator: In, values: [enabled]", "operator: Exists",
         "is not limited to namespaces labelled elbv2.k8s.aws/pod-readiness-gate-inject=enabled"),
        ("templates/webhook.yaml", "{{- toYaml .Values.objectSelector | nindent 4 }}", "{}",
         "does not leave out the controller's own pods"),
        ("templates/deployment.yaml", "- --targetgroupbinding-max-exponential-backoff-delay={{ . }}", "- --v={{ . }}",
         "not started with --targetgroupbinding-max-exponential-backoff-delay=60s"),
        ("templates/deployment.yaml", "serviceAccountName: {{ .Values.serviceAccount.name }}",
         "serviceAccountName: default", "runs as 'default'"),
        ("templates/deployment.yaml", '"{{ .Values.image.repository }}:{{ .Values.image.tag }}"',
         "public.ecr.aws/eks/aws-load-balancer-controller:v2.7.1", "the controller's image is"),
        ("templates/ingressclassparams.yaml", "spec: {}",
         "spec: {}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: extra}", "creates ServiceAccount"),
    ],
    ids=["webhook-ignore", "every-namespace", "controller-pods-gated", "backoff-flag", "service-account", "image",
         "extra-account"],
)
def test_each_change_that_breaks_an_assumption_is_named(helm_binary, tmp_path, file, old, new, named):
    found = rendered_problems(helm_binary, write_chart(tmp_path, {file: (old, new)}))
    assert any(named in p for p in found), found


def test_a_chart_helm_cannot_render_is_an_error_naming_it(helm_binary, tmp_path):
    chart = write_chart(tmp_path, {"templates/deployment.yaml": ("replicas: 2", "replicas: {{ .Values.nope.x }}")})
    with pytest.raises(RuntimeError, match="helm template .* failed"):
        render(chart, helm_values(EXAMPLE_CLUSTER, EXAMPLE_SETTINGS), helm_binary)


def test_main_prints_ok_and_exits_0_on_a_good_chart(helm_binary, tmp_path, capsys):
    assert chart_check.main([str(write_chart(tmp_path)), "--helm", str(helm_binary)]) == 0
    out = capsys.readouterr().out
    assert f"chart {CHART_NAME}" in out and "ok:" in out


def test_main_exits_1_and_lists_problems(helm_binary, tmp_path, capsys):
    chart = write_chart(tmp_path, {"templates/webhook.yaml": (
        "failurePolicy: {{ .Values.podMutatorWebhookConfig.failurePolicy }}", "failurePolicy: Ignore")})
    assert chart_check.main([str(chart), "--helm", str(helm_binary)]) == 1
    assert "problem: mpod.elbv2.k8s.aws fails 'Ignore'" in capsys.readouterr().out


def test_main_names_a_folder_that_is_no_chart(helm_binary, tmp_path, capsys):
    assert chart_check.main([str(tmp_path), "--helm", str(helm_binary)]) == 2
    assert "has no Chart.yaml" in capsys.readouterr().err


def test_main_reports_a_chart_helm_cannot_render_in_one_line(helm_binary, tmp_path, capsys):
    chart = write_chart(tmp_path, {"templates/deployment.yaml": ("replicas: 2", "replicas: {{ .Values.nope.x }}")})
    assert chart_check.main([str(chart), "--helm", str(helm_binary)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("albgate.chart_check: helm template") and "Traceback" not in err


def test_main_runs_the_helm_the_stacks_layer_ships_by_default(tmp_path, capsys):
    # Given no --helm / When the check runs / Then it uses the layer's binary (unpacked once into the cache)
    assert chart_check.main([str(write_chart(tmp_path))]) == 0
    assert "helm v4." in capsys.readouterr().out
