"""Handler observability: correlation id = Step Functions execution name; harmless outside Lambda."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lambdas.domain.errors import ThrottledError
from lambdas.handlers import _observability as obs


class Logs:
    """What the Powertools logger writes during a test, as parsed JSON lines."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture
def logs() -> Iterator[Logs]:
    captured = Logs()
    handler = obs.logger.registered_handler
    previous = handler.setStream(captured.buffer)  # type: ignore[attr-defined]
    yield captured
    handler.setStream(previous)  # type: ignore[attr-defined]


@dataclass
class LambdaContext:
    function_name: str = "albgate-CheckTargetHealth"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:albgate-CheckTargetHealth"
    aws_request_id: str = "req-1"


@obs.observed
def handler(event: Any, context: Any) -> dict[str, Any]:
    obs.logger.info("checked")
    return {"status": "PASSED"}


@pytest.mark.parametrize(
    "event,context,correlation_id,function_name",
    [
        (
            {"execution_name": "rollout-nginx-app-42"},
            LambdaContext(),
            "rollout-nginx-app-42",
            "albgate-CheckTargetHealth",
        ),
        ({"execution_name": "rollout-7"}, None, "rollout-7", None),
        ({"namespace": "readiness"}, None, None, None),
        (["not", "a", "dict"], None, None, None),
    ],
    ids=["in-lambda", "outside-lambda", "no-execution-name", "non-dict-event"],
)
def test_logs_carry_the_execution_name_as_correlation_id(
    logs: Logs, event: Any, context: Any, correlation_id: str | None, function_name: str | None
) -> None:
    # Given a handler decorated with observed / When it is invoked with this event and context
    result = handler(event, context)
    # Then it returns unchanged and its log line carries the execution name and, in Lambda, the function
    (line,) = logs.lines()
    assert result == {"status": "PASSED"}
    assert line["message"] == "checked" and line["service"] == "albgate"
    assert line.get("correlation_id") == correlation_id
    assert line.get("function_name") == function_name


def test_correlation_id_does_not_leak_into_the_next_invocation(logs: Logs) -> None:
    # Given one invocation for execution A / When the next one (same warm process) has no execution name
    handler({"execution_name": "A"}, None)
    handler({}, None)
    # Then only the first line is tagged
    assert [line.get("correlation_id") for line in logs.lines()] == ["A", None]


def test_parallel_invocations_tag_their_own_lines(logs: Logs) -> None:
    # Given handlers running on threads at once (Map iterations in the simulation)
    barrier = threading.Barrier(2)

    @obs.observed
    def slow(event: Any, context: Any) -> None:
        barrier.wait()
        obs.logger.info("step", extra={"who": event["execution_name"]})

    threads = [threading.Thread(target=slow, args=({"execution_name": n}, None)) for n in ("A", "B")]
    # When both log while the other is inside its invocation
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then each line carries its own execution name
    assert sorted((line["who"], line["correlation_id"]) for line in logs.lines()) == [("A", "A"), ("B", "B")]


def test_domain_errors_leave_unwrapped(logs: Logs) -> None:
    # Given a handler that raises a domain error (its class name is the Step Functions error name)
    @obs.observed
    def throttled(event: Any, context: Any) -> None:
        raise ThrottledError("Rate exceeded")

    # When it is invoked / Then exactly that exception leaves
    with pytest.raises(ThrottledError, match="Rate exceeded"):
        throttled({"execution_name": "A"}, None)


def test_metrics_are_flushed_as_emf_in_the_albgate_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a handler that records a metric
    @obs.observed
    def counted(event: Any, context: Any) -> None:
        obs.metrics.add_metric(name="StepsPassed", unit="Count", value=1)

    # When it is invoked
    counted({"execution_name": "A"}, None)
    # Then one EMF document in namespace "albgate" is printed
    (doc,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "albgate" and doc["StepsPassed"] == [1.0]


def test_no_metrics_means_no_output_and_no_warning(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a handler that records no metric / When it is invoked outside Lambda
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Powertools' "No application metrics to publish" would fail here
        handler({"execution_name": "A"}, None)
    # Then nothing but the log line is printed
    assert '"_aws"' not in capsys.readouterr().out


def test_service_name_comes_from_the_environment() -> None:
    # Given POWERTOOLS_SERVICE_NAME set, or not, in a fresh interpreter
    code = "from lambdas.handlers import _observability as o; print(o.SERVICE, o.metrics.namespace)"
    env = {k: v for k, v in os.environ.items() if k not in ("POWERTOOLS_SERVICE_NAME", "LAMBDA_TASK_ROOT")}
    outputs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, check=True).stdout.split()
        for e in (env, {**env, "POWERTOOLS_SERVICE_NAME": "albgate-eu"})
    ]
    # When the module is imported / Then the service defaults to "albgate" and the namespace is fixed
    assert outputs == [["albgate", "albgate"], ["albgate-eu", "albgate"]]
