"""The bootstrap state machine: the controller's manual install steps as one execution that can be run and
re-run safely.

Order (why): validate everything first (a bad input changes nothing) -> check that the functions' VPC reaches every
AWS service they call (a private cluster without a NAT: each VPC endpoint, else refused, nothing changed) ->
install the controller and wait until it really works -> label the namespaces -> apply Services and Ingresses
-> wait until the controller has bound them to IP target groups and its webhook injects the gate into a dry-run
pod -> only then apply the Deployments (the gate is injected only at pod CREATE: docs/facts.md, Load Balancer
Controller: readiness gate) -> wait for them to settle -> re-create the pods still without a gate through albgate's gated rollout
(``kind: restart``, one Deployment at a time, never a bulk delete) -> end with the preflight report.

Invariant: every wait loop is bounded by a deadline its handler checks (it then answers FAILED) and ends in an
explicit Fail with an error and a cause a person can act on; every Lambda task retries exactly the retryable
error names of ``lambdas/domain/errors.py`` (plus Lambda's transient errors) and catches everything else.
Each task takes the whole state and returns it, so a re-run of a finished bootstrap changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from lambdas.domain.errors import permanent_error_names
from lambdas.domain.limits import MAX_APPLICATIONS_PER_CLUSTER, ROLLOUT_TIMEOUT_SECONDS
from stacks.constructs.handler_specs import HandlerSpec
from stacks.constructs.rollout_workflow import catch_all, invoke_lambda

PASSED, WAITING, FAILED = "PASSED", "WAITING", "FAILED"
REQUIRED_FUNCTIONS = (
    "BootstrapValidate", "BootstrapCheckNetwork", "BootstrapInstallController", "BootstrapCheckController",
    "BootstrapLabelNamespaces", "BootstrapApplyWorkloads", "BootstrapCheckBindings", "BootstrapFindUngatedPods",
    "PreflightReport",
)
# A whole bootstrap: controller (<= 15 min), bindings (<= 10 min), settling (<= 10 min) and the gated
# restarts, one at a time, each a rollout execution bounded by its own timeout. The hard stop covers the most
# restarts one bootstrap can run (one per application) at their longest, so it never cuts a restart short;
# 60 x 48 h is well under Standard workflows' one-year maximum (docs/facts.md, "AWS limits albgate checks").
BOOTSTRAP_TIMEOUT = Duration.seconds(3600 + MAX_APPLICATIONS_PER_CLUSTER * ROLLOUT_TIMEOUT_SECONDS)


class WaitLoop(sfn.StateMachineFragment):
    """check -> Choice on ``$.<key>.status``: PASSED leaves, FAILED records the reason and fails, WAITING waits
    ``$.wait_seconds`` and checks again (the handler answers FAILED once its deadline has passed)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        check: tasks.LambdaInvoke,
        question: str,
        wait_name: str,
        wait_comment: str,
        key: str,
        failure_error: str,
        on_failure: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        choice = sfn.Choice(self, question, comment="PASSED, WAITING (check again) or FAILED (deadline passed)")
        wait = sfn.Wait(self, wait_name, comment=wait_comment, time=sfn.WaitTime.seconds_path("$.wait_seconds"))
        record = sfn.Pass(
            self,
            f"Record {failure_error}",
            comment="Turn the check's verdict into the same $.failure shape a caught error has",
            parameters={"Error": failure_error, "Cause.$": f"$.{key}.reason"},
            result_path="$.failure",
        )
        done = sfn.Pass(self, f"{question.rstrip('?')}: Yes")
        catch_all(check, on_failure)
        record.next(on_failure)
        check.next(choice)
        choice.when(sfn.Condition.string_equals(f"$.{key}.status", PASSED), done)
        choice.when(sfn.Condition.string_equals(f"$.{key}.status", FAILED), record)
        choice.otherwise(wait)
        wait.next(check)
        self._start, self._ends = check, [done]

    @property
    def start_state(self) -> sfn.State:
        return self._start

    @property
    def end_states(self) -> list[sfn.INextable]:
        return self._ends


class BootstrapWorkflow(Construct):
    """The state machine ``albgate-bootstrap``; exposes ``state_machine``.

    ``functions``: one per ``REQUIRED_FUNCTIONS`` name (from ``BOOTSTRAP_HANDLERS``). ``rollout_state_machine``:
    the gated rollout state machine (or its ARN), started with ``kind: restart`` for pods born before the label.
    ``clusters``: cluster name -> the controller settings the stack was deployed with (``region``, ``vpc_id``, the
    chart repository and version, the image mirror, the IRSA ``role_arn``). Validate Input gets them as its
    ``controller_defaults`` and refuses a cluster not among them, an input that sets what they set, and a Region
    or VPC that differs (lambdas/domain/bootstrap.py, ``configured_controller``).
    ``network``: where the functions run when they are in a VPC and the endpoints they need
    (``lambdas.domain.network.NetworkSpec.to_json``); None when they are not in a VPC.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        rollout_state_machine: sfn.IStateMachine | str,
        clusters: Mapping[str, Mapping[str, str]],
        network: Mapping[str, Any] | None = None,
        specs: Sequence[HandlerSpec] = (),
        state_machine_name: str | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        missing = sorted(set(REQUIRED_FUNCTIONS) - set(functions))
        if missing:
            raise ValueError(f"BootstrapWorkflow needs functions for {missing}")
        if not clusters:
            raise ValueError("BootstrapWorkflow needs the configured clusters: an execution may bootstrap only those")
        fn = functions
        rollout = (
            sfn.StateMachine.from_state_machine_arn(self, "RolloutStateMachine", rollout_state_machine)
            if isinstance(rollout_state_machine, str)
            else rollout_state_machine
        )

        failed = sfn.Fail(
            self,
            "Bootstrap Failed",
            comment="A step failed after retries, or a wait passed its deadline; what was changed is in $.changes",
            error_path="$.failure.Error",
            cause_path="$.failure.Cause",
        )
        refused = sfn.Fail(
            self,
            "Bootstrap Refused",
            comment="The input, or the functions' network, was refused before any cluster call: nothing was changed",
            error_path="$.failure.Error",
            cause_path="$.failure.Cause",
        )

        validate = invoke_lambda(
            self,
            "Validate Input",
            fn["BootstrapValidate"],
            "Validate the input and every manifest, refuse kube-system and the controller's namespace and "
            "instance targets on gated apps, before any cluster call",
            payload=sfn.TaskInput.from_object(
                {
                    "request": sfn.JsonPath.entire_payload,
                    "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                    # The deployed settings per cluster: what runs with cluster-admin rights is the config's, never
                    # the input's (the payload key is the one bootstrap_validate reads)
                    "controller_defaults": {name: dict(settings) for name, settings in clusters.items()},
                }
            ),
        )
        validate.add_catch(refused, errors=permanent_error_names(), result_path="$.failure")
        validate.add_catch(refused, errors=["States.ALL"], result_path="$.failure")

        check_network = invoke_lambda(
            self,
            "Check Network",
            fn["BootstrapCheckNetwork"],
            "Before any change: the functions' subnets reach every AWS service they call, through a VPC endpoint or "
            "a NAT route (a private cluster without a NAT needs each endpoint); nothing to read outside a VPC",
            payload=sfn.TaskInput.from_object(
                {"state": sfn.JsonPath.entire_payload, "network": dict(network) if network is not None else None}
            ),
        )
        check_network.add_catch(refused, errors=permanent_error_names(), result_path="$.failure")
        check_network.add_catch(refused, errors=["States.ALL"], result_path="$.failure")

        install = invoke_lambda(
            self,
            "Install Controller",
            fn["BootstrapInstallController"],
            "Apply the controller's service account, then helm upgrade --install the pinned chart with "
            "failurePolicy Fail and a lower binding backoff; skipped when the release already matches",
        )
        catch_all(install, failed)
        controller = WaitLoop(
            self,
            "Controller",
            check=invoke_lambda(self, "Check Controller", fn["BootstrapCheckController"],
                          "Deployment available, webhook failurePolicy as installed, webhook Service endpoints ready"),
            question="Controller Working?",
            wait_name="Wait For Controller",
            wait_comment="Controller pods start and elect a leader (15 s to 2 min: docs/facts.md, Load Balancer "
                         "Controller: registration and timing)",
            key="controller",
            failure_error="ControllerNotWorking",
            on_failure=failed,
        )
        label = invoke_lambda(
            self,
            "Label Namespaces For Readiness Gates",
            fn["BootstrapLabelNamespaces"],
            "Label before new pods exist: the webhook injects gates only at pod creation (never kube-system or "
            "the controller's namespace: #1628, #2282)",
        )
        catch_all(label, failed)

        def apply(state_name: str, phase: str, comment: str) -> tasks.LambdaInvoke:
            task = invoke_lambda(self, state_name, fn["BootstrapApplyWorkloads"], comment,
                           payload=sfn.TaskInput.from_object({"phase": phase, "state": sfn.JsonPath.entire_payload}))
            catch_all(task, failed)
            return task

        apply_services = apply(
            "Apply Services And Ingresses",
            "services",
            "Dry-run every hardened manifest (the API server validates it strictly), then server-side apply the "
            "Services and Ingresses first, so the binding exists before any new pod is created",
        )
        bindings = WaitLoop(
            self,
            "Bindings",
            check=invoke_lambda(self, "Check Bindings", fn["BootstrapCheckBindings"],
                          "Each Service bound to an IP target group, and a dry-run pod comes back with the gate"),
            question="Bound And Injecting?",
            wait_name="Wait For Bindings",
            wait_comment="The controller creates the load balancer, target group and binding for a new Ingress",
            key="bindings",
            failure_error="BindingsNotReady",
            on_failure=failed,
        )
        apply_deployments = apply(
            "Apply Deployments",
            "deployments",
            "Server-side apply the hardened Deployments: their new pods are created with the gate",
        )
        settle = WaitLoop(
            self,
            "Settle",
            check=invoke_lambda(self, "Find Pods Born Before The Label", fn["BootstrapFindUngatedPods"],
                          "Once each Deployment settled, list those whose current pods still lack the gate"),
            question="Deployments Settled?",
            wait_name="Wait For Deployments",
            wait_comment="Let Kubernetes finish what the apply started before judging the pods",
            key="settle",
            failure_error="DeploymentsNotSettled",
            on_failure=failed,
        )

        restart_one = tasks.StepFunctionsStartExecution(
            self,
            "Restart Through The Gates",
            comment="albgate's gated rollout with kind=restart: every pod re-created, each old pod kept until its "
            "replacement's target is healthy",
            state_machine=rollout,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,  # startExecution.sync:2: waits for the rollout
            # The restart request itself. No execution name: "<bootstrap name>-..." could pass the 80-character
            # limit; Step Functions then names it with a UUID, shown in $.restart_results.
            input=sfn.TaskInput.from_json_path_at("$"),
            result_selector={"status.$": "$.Status", "execution.$": "$.ExecutionArn"},
        )
        restarts = sfn.Map(
            self,
            "Restart Pods Born Before The Label",
            comment="One Deployment at a time: the restarts share the account's Describe* bucket (docs/facts.md, "
                    "ELB API throttling)",
            items_path="$.restarts",
            max_concurrency=1,
            result_path="$.restart_results",
        )
        restarts.item_processor(restart_one)
        record_restart = sfn.Pass(
            self,
            "Record Restart Failure",
            parameters={"Error": "RestartFailed", "Cause.$": "States.JsonToString($.failure)"},
            result_path="$.failure",
        )
        record_restart.next(failed)
        restarts.add_catch(record_restart, errors=["States.ALL"], result_path="$.failure")

        report = invoke_lambda(
            self,
            "Preflight Report",
            fn["PreflightReport"],
            "Read the cluster as it is now and list every zero-downtime risk left, with its fix",
        )
        catch_all(report, failed)
        clean = sfn.Choice(self, "No Risk Left?", comment="The report has no error-level risk")
        risks = sfn.Pass(
            self,
            "Summarise Risks",
            parameters={"Error": "RisksRemain", "Cause.$": "States.JsonToString($.report.risks)"},
            result_path="$.failure",
        )
        risks.next(sfn.Fail(self, "Bootstrap Left Risks", comment="Fix what the report names and run again",
                            error_path="$.failure.Error", cause_path="$.failure.Cause"))
        succeeded = sfn.Succeed(self, "Bootstrap Succeeded")
        clean.when(sfn.Condition.boolean_equals("$.report.ok", True), succeeded)
        clean.otherwise(risks)

        definition = (
            validate.next(check_network)
            .next(install)
            .next(controller)
            .next(label)
            .next(apply_services)
            .next(bindings)
            .next(apply_deployments)
            .next(settle)
            .next(restarts)
            .next(report)
            .next(clean)
        )

        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.RETAIN)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            timeout=BOOTSTRAP_TIMEOUT,
            comment="albgate: install the Load Balancer Controller, label namespaces, apply hardened workloads, "
            "restart pods born before the label through the gates, report remaining risks",
        )
        NagSuppressions.add_resource_suppressions(
            self.state_machine,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="lambda:InvokeFunction on '<function ARN>:*' only covers the versions and aliases of the "
                    "bootstrap's own functions (granted by LambdaInvoke); the function ARNs are explicit",
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::<[A-Za-z0-9]+\.Arn>:\*$/g")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="states:DescribeExecution/StopExecution on the executions of albgate's rollout state "
                    "machine only (granted by StepFunctionsStartExecution .sync); execution names are chosen at "
                    "run time",
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:.*:states:.*:execution:.*\*$/g")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Resource '*' only for actions without resource types: the CloudWatch Logs vended-log "
                    "delivery actions Step Functions logging requires on '*' (Step Functions developer guide, "
                    "'IAM policies for logging to CloudWatch Logs') and the X-Ray tracing actions",
                    applies_to=["Resource::*"],
                ),
            ],
            apply_to_children=True,
        )
