"""BOOTSTRAP_HANDLERS: one deployable Lambda per bootstrap handler, each with its Kubernetes access named."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from stacks.constructs.bootstrap_specs import (
    BOOTSTRAP_HANDLERS,
    BOOTSTRAP_KUBE_ACCESS,
    bootstrap_groups,
    render_bootstrap_rbac,
)
from stacks.constructs.bootstrap_workflow import REQUIRED_FUNCTIONS
from stacks.constructs.specs import ALL_HANDLERS

HANDLERS_DIR = Path(__file__).resolve().parents[2] / "lambdas" / "handlers"


@pytest.mark.parametrize("spec", BOOTSTRAP_HANDLERS, ids=lambda s: s.name)
def test_every_spec_names_a_handler_that_imports(spec) -> None:
    module = importlib.import_module(f"lambdas.handlers.{spec.module}")
    assert callable(module.handler)
    assert spec.timeout_seconds <= 900 and spec.description


def test_specs_are_exactly_what_the_workflow_needs_and_every_bootstrap_module_is_deployed() -> None:
    names = [s.name for s in BOOTSTRAP_HANDLERS]
    assert sorted(names) == sorted(REQUIRED_FUNCTIONS) == sorted(BOOTSTRAP_KUBE_ACCESS)
    modules = {p.stem for p in HANDLERS_DIR.glob("bootstrap_*.py")} - {"bootstrap_common"} | {"preflight_report"}
    assert modules == {s.module for s in BOOTSTRAP_HANDLERS}
    others = [s.name for s in ALL_HANDLERS if s not in BOOTSTRAP_HANDLERS]
    assert not set(names) & set(others)  # no clash with the rollout's construct ids
    assert set(names) <= {s.name for s in ALL_HANDLERS}  # and every one is deployed


def test_only_the_report_reads_elb_and_only_the_checks_before_any_change_stay_off_the_cluster() -> None:
    assert [s.name for s in BOOTSTRAP_HANDLERS if s.elb_read] == ["PreflightReport"]
    assert [s.name for s in BOOTSTRAP_HANDLERS if s.kube == "none"] == ["BootstrapValidate", "BootstrapCheckNetwork"]
    # And only Check Network reads the VPC, only the install pulls the chart
    assert [s.name for s in ALL_HANDLERS if s.network_read] == ["BootstrapCheckNetwork"]
    assert [s.name for s in ALL_HANDLERS if s.chart_pull] == ["BootstrapInstallController"]


def test_rbac_binds_workload_rights_only_in_app_namespaces() -> None:
    docs = list(yaml.safe_load_all(render_bootstrap_rbac(["shop", "web"])))
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {(d["metadata"]["namespace"], d["roleRef"]["name"]) for d in bindings} == {
        ("kube-system", "albgate-controller-read"), ("shop", "albgate-bootstrap-workloads"),
        ("web", "albgate-bootstrap-workloads")}
    verbs = {v for d in docs if d["kind"] == "ClusterRole" for r in d["rules"] for v in r["verbs"]}
    assert "delete" not in verbs and "*" not in verbs
    webhook = next(d for d in docs if d["metadata"]["name"] == "albgate-controller-read-webhook")
    assert webhook["rules"][0]["resourceNames"] == ["aws-load-balancer-webhook"]
    assert bootstrap_groups("BootstrapInstallController") == []  # cluster admin comes from the access policy


def test_a_pending_release_is_cleared_only_once_no_install_function_can_still_be_writing_it() -> None:
    # Given the install function's timeout (it runs helm) / Then a pending release is old enough to clear only
    # well after any run of it ended (lambdas/domain/bootstrap.py, STALE_PENDING_SECONDS)
    from lambdas.domain.bootstrap import STALE_PENDING_SECONDS

    (install,) = [s for s in BOOTSTRAP_HANDLERS if s.module == "bootstrap_install_controller"]
    assert STALE_PENDING_SECONDS >= 2 * install.timeout_seconds
