"""`Rollout Step Passed` events: the synthesized state machine itself publishes one per passed step on albgate's
event bus, run by moto against the simulated cluster; a queue subscribed to the bus reads them."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from albgate.sim.albgate_strategy import LAMBDA_SECONDS, SimClock, quiet_powertools
from albgate.sfn_local.extract import extract_state_machine
from albgate.sfn_local.runner import LocalStateMachine
from albgate.sim import Simulation, load_scenario
from albgate.sim.strategies import bootstrap_hardened
from albgate.template import state_machine_id, synthesized_template
from lambdas.domain.contract import EVENT_SOURCE, ROLLOUT_STEP_PASSED
from lambdas.handlers import _runtime

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def rollout_with_a_subscriber(scenario: str) -> tuple[str, list[dict]]:
    """Run one albgate rollout; return its status and the step events a queue on the albgate bus received."""
    sim = Simulation(bootstrap_hardened(load_scenario(SCENARIOS / scenario)))
    sim.run_until(sim.rollout_start)
    template = synthesized_template()
    extracted = extract_state_machine(template, state_machine_id(template))

    def invoke(logical_id, handler, event):
        sim.advance(LAMBDA_SECONDS)
        return machine.invoke_handler(logical_id, handler, event)

    _runtime.use_ports(lambda cluster: sim.ports)
    try:
        with quiet_powertools(), LocalStateMachine(extracted, SimClock(sim), invoke=invoke,
                                                   on_task_token=lambda t: t.succeed({})) as machine:
            sqs, events = boto3.client("sqs", region_name="us-east-1"), boto3.client("events", region_name="us-east-1")
            queue = sqs.create_queue(QueueName="step-events")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            events.put_rule(Name="steps", EventBusName="albgate",
                            EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [ROLLOUT_STEP_PASSED]}))
            events.put_targets(Rule="steps", EventBusName="albgate", Targets=[{"Id": "q", "Arn": arn}])
            result = machine.run(sim.rollout_request().model_dump(mode="json"), name="step-events-1")
            received = []
            while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                received += [json.loads(m["Body"]) for m in batch]
                sqs.delete_message_batch(QueueUrl=queue, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    finally:
        _runtime.use_ports(None)
    return result.status, received


def test_every_passed_step_is_announced_with_the_execution_and_its_console_link():
    # Given the example app rolled by the deployed state machine, a queue subscribed to albgate's step events
    status, received = rollout_with_a_subscriber("seed-app.yaml")
    # Then the rollout succeeded and each of its 3 steps was announced once, in order
    assert status == "SUCCEEDED"
    details = sorted((e["detail"] for e in received), key=lambda d: d["step"])
    assert [(d["step"], d["steps"], d["new_pods"], d["mode"]) for d in details] == [
        (1, 3, 1, "rollout"), (2, 3, 2, "rollout"), (3, 3, 3, "rollout")]
    # every step's old targets are announced out of the pool: each gate took its old pods out of service and saw
    # the controller deregister them before it released the new pods (docs/rollout.md, "Out of service before
    # release")
    assert [d["old_targets"] for d in details] == ["PASSED", "PASSED", "PASSED"]
    d = details[0]
    assert (d["namespace"], d["deployment"], d["image"]) == ("readiness", "nginx-app", "ikubernetes/myapp:v2")
    assert d["execution_name"] == "step-events-1" and d["execution_arn"].endswith(":step-events-1")
    assert d["console_url"] == ("https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
                                f"#/v2/executions/details/{d['execution_arn']}")
    assert all(e["source"] == EVENT_SOURCE and e["detail-type"] == ROLLOUT_STEP_PASSED for e in received)


def test_a_rollbacks_steps_are_announced_as_rollback():
    status, received = rollout_with_a_subscriber("broken-image.yaml")
    assert status == "FAILED"  # RolledBack
    assert [(e["detail"]["mode"], e["detail"]["image"]) for e in received] == [("rollback", "ikubernetes/myapp:v1")]
