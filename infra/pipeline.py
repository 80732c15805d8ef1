"""Step Functions: one state machine per département, run once per millésime.

    start_at? ─► predict (array job over the blocks) ─► vectorize ─► rules ─► products ─► publish ─► done
                    └────────── any step fails after its retries ──► notify (SNS) ─► Fail

    vectorize, with more than one block: map (array) ─► reduce ─► polygons (array) ─► assemble

Input: ``{"millesime": 2024, "blocks": 120, "start_at": "predict"}``. ``blocks`` is the number of
inference blocks of the département (the array size; 1 runs a single job), ``start_at`` (default
``predict``) resumes a failed execution at the step that failed: every step is idempotent and the
steps before it left their products in storage. Each step is a Batch job run synchronously
(``.sync``); Batch retries attempts lost to spot reclaims, the state machine retries throttled or
failed submissions, then catches everything into the failure path.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.batch import STEPS, BatchStack, StageSpec, StepSpec
from infra.config import STEP_NAMES, InfraConfig

# State machines per stack: each definition is ~10 kB of template, and a template must stay under 1 MB
# (and 500 resources); ``-c departements=all`` (101) therefore spans three pipeline stacks.
MACHINES_PER_STACK = 40
STEP_RETRY_ERRORS = ["Batch.AWSBatchException", "Batch.BatchException", "Batch.TooManyRequestsException"]


def pipeline_parts(departements: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """Stack part names and their départements: ``Pipeline`` alone, or ``Pipeline1``… by chunks."""
    chunks = [departements[i:i + MACHINES_PER_STACK] for i in range(0, len(departements), MACHINES_PER_STACK)]
    if len(chunks) == 1:
        return [("Pipeline", chunks[0])]
    return [(f"Pipeline{index}", chunk) for index, chunk in enumerate(chunks, start=1)]


def _token(code: str) -> str:
    return "D" + code.rjust(3, "0")


class PipelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, batch_stack: BatchStack,
                 departements: tuple[str, ...], topic: sns.ITopic | None = None, **kwargs) -> None:
        """State machines for ``departements``; the first pipeline stack creates the failure topic."""
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.batch = batch_stack
        if topic is None:
            topic = sns.Topic(self, "Failures", display_name=f"OCS GE {config.env_name} pipeline failures",
                              enforce_ssl=True)
            if config.notify_email:
                topic.add_subscription(subscriptions.EmailSubscription(config.notify_email))
            CfnOutput(self, "FailureTopicArn", value=topic.topic_arn)
        self.topic = topic
        self.role = iam.Role(
            self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="OCS GE pipelines: submit the step jobs, follow them, notify failures",
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS,
                                       removal_policy=RemovalPolicy.DESTROY)
        self.state_machines: dict[str, sfn.StateMachine] = {}
        for code in departements:
            token = _token(code)
            machine = sfn.StateMachine(
                self,
                f"Pipeline{token}",
                state_machine_name=f"ocsge-{config.env_name}-{token}",
                comment=f"OCS GE production of département {code}: predict, vectorize, rules, products, publish",
                definition_body=sfn.DefinitionBody.from_chainable(self._definition(code, token)),
                role=self.role,
                timeout=Duration.days(7),
                logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ERROR),
            )
            self.state_machines[code] = machine

    def _definition(self, code: str, token: str) -> sfn.IChainable:
        scope = Construct(self, f"Definition{token}")
        bad_input = sfn.Fail(
            scope, "BadInput", error="OcsgeBadInput",
            cause='input: {"millesime": YYYY, "blocks": N >= 1, "start_at": "' + '|'.join(STEP_NAMES) + '"}',
        )
        failed = sfn.Fail(
            scope, "PipelineFailed", error="OcsgePipelineFailed",
            cause="a step failed after its retries: see the notification, fix, then start again with start_at",
        )
        notify = tasks.SnsPublish(
            scope,
            "NotifyFailure",
            topic=self.topic,
            subject=f"OCS GE {token} pipeline failed",
            message=sfn.TaskInput.from_object({
                "departement": code,
                "millesime": sfn.JsonPath.string_at("$.millesime"),
                "failed_step": sfn.JsonPath.string_at("$.failed_step"),
                "error": sfn.JsonPath.string_at("$.error.Error"),
                "cause": sfn.JsonPath.string_at("$.error.Cause"),
                "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                "resume": sfn.JsonPath.format("start a new execution with millesime={}, blocks={}, start_at={}",
                                              sfn.JsonPath.string_at("$.millesime"),
                                              sfn.JsonPath.string_at("$.blocks"),
                                              sfn.JsonPath.string_at("$.failed_step")),
            }),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5))
        notify.next(failed)

        # Step chain, built from the end so that each step knows its successor.
        done = sfn.Succeed(scope, "Done")
        entries: dict[str, sfn.IChainable] = {}
        successor: sfn.IChainable = done
        for step in reversed(STEPS):
            on_failure = sfn.Pass(scope, f"{step.name.title()}Failed", result=sfn.Result.from_string(step.name),
                                  result_path="$.failed_step").next(notify)
            if step.stages:
                entries[step.name] = (
                    sfn.Choice(scope, f"{step.name.title()}Blocks")
                    .when(sfn.Condition.number_greater_than("$.blocks", 1),
                          self._stages(scope, token, step, successor, on_failure))
                    .otherwise(self._job(scope, token, step, successor, on_failure, array=False))
                )
            elif step.array:
                array_job = self._job(scope, token, step, successor, on_failure, array=True)
                one_job = self._job(scope, token, step, successor, on_failure, array=False)
                entries[step.name] = (
                    sfn.Choice(scope, f"{step.name.title()}Blocks")
                    .when(sfn.Condition.number_greater_than("$.blocks", 1), array_job)
                    .otherwise(one_job)
                )
            else:
                entries[step.name] = self._job(scope, token, step, successor, on_failure, array=False)
            successor = entries[step.name]

        resume = sfn.Choice(scope, "StartAt", comment="resume at a step: the ones before it are done")
        for name in STEP_NAMES:
            resume.when(sfn.Condition.string_equals("$.start_at", name), entries[name])
        resume.otherwise(bad_input)

        normalise = sfn.Pass(
            scope,
            "Arguments",
            parameters={
                "departement": code,
                "millesime": sfn.JsonPath.format("{}", sfn.JsonPath.string_at("$.millesime")),
                "blocks": sfn.JsonPath.number_at("$.blocks"),
                "start_at": sfn.JsonPath.string_at("$.start_at"),
            },
        ).next(resume)
        validate = (
            sfn.Choice(scope, "ValidInput")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.millesime"),
                    sfn.Condition.is_numeric("$.blocks"),
                    sfn.Condition.number_greater_than_equals("$.blocks", 1),
                    sfn.Condition.is_string("$.start_at"),
                ),
                normalise,
            )
            .otherwise(bad_input)
        )
        default_blocks = sfn.Pass(scope, "DefaultBlocks", result=sfn.Result.from_number(1), result_path="$.blocks")
        default_blocks.next(validate)
        blocks_given = (
            sfn.Choice(scope, "BlocksGiven")
            .when(sfn.Condition.is_present("$.blocks"), validate)
            .otherwise(default_blocks)
        )
        default_start = sfn.Pass(scope, "DefaultStartAt", result=sfn.Result.from_string("predict"),
                                 result_path="$.start_at")
        default_start.next(blocks_given)
        return (
            sfn.Choice(scope, "StartAtGiven")
            .when(sfn.Condition.is_present("$.start_at"), blocks_given)
            .otherwise(default_start)
        )

    def _stages(self, scope: Construct, token: str, step: StepSpec, successor: sfn.IChainable,
                on_failure: sfn.IChainable) -> sfn.IChainable:
        """The map/reduce jobs of a step, chained in order; the first one."""
        for stage in reversed(step.stages):
            successor = self._job(scope, token, step, successor, on_failure, array=stage.array, stage=stage)
        return successor

    def _job(self, scope: Construct, token: str, step: StepSpec, successor: sfn.IChainable,
             on_failure: sfn.IChainable, *, array: bool, stage: StageSpec | None = None) -> tasks.BatchSubmitJob:
        state = step.name.title() + ("Blocks" if array else "") + "Job"
        state_name = step.name.title() if not step.array else f"{step.name.title()}{'Array' if array else 'One'}"
        overrides = None
        command = step.command
        if stage is not None:
            state = state_name = f"{step.name.title()}{stage.name}"
            command = (*step.command, *stage.options)
            overrides = tasks.BatchContainerOverrides(
                command=list(command),
                vcpus=stage.vcpus,
                memory=Size.gibibytes(stage.memory_gib) if stage.memory_gib else None,
            )
        job = tasks.BatchSubmitJob(
            scope,
            state,
            state_name=state_name,
            job_name=f"{token}-{step.name}",
            job_queue_arn=self.batch.queue_for(step).job_queue_arn,
            job_definition_arn=self.batch.job_definitions[step.name].job_definition_arn,
            array_size=sfn.JsonPath.number_at("$.blocks") if array else None,
            payload=sfn.TaskInput.from_object({
                "departement": sfn.JsonPath.string_at("$.departement"),
                "millesime": sfn.JsonPath.string_at("$.millesime"),
            }),
            container_overrides=overrides,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
            comment=f"ocsge {' '.join(command)}",
        )
        job.add_retry(errors=STEP_RETRY_ERRORS, max_attempts=4, interval=Duration.seconds(30), backoff_rate=2)
        job.add_retry(errors=["States.TaskFailed"], max_attempts=1, interval=Duration.minutes(2))
        job.add_catch(on_failure, errors=["States.ALL"], result_path="$.error")
        job.next(successor)
        return job
