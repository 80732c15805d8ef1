"""AWS Batch: a GPU compute environment for inference, a CPU one for the other steps, their queues, and
one job definition per pipeline step, all running the batch image (entrypoint ``ocsge``).

``predict`` runs as an array job over a département's blocks: Batch sets ``AWS_BATCH_JOB_ARRAY_INDEX``
in each child and ``ocsge predict`` picks that block. ``vectorize`` runs as map/reduce jobs on the same
job definition (the state machine adds the stage's options): an array job of components per block, one
reduce of the seams and the sieve, an array job of polygons per block, one assembly — so that no job's
cost grows with the size of the département's raster. Every step is idempotent (it rewrites the same
keys), so Batch retries an attempt lost to a spot reclaim or a failed image pull, and the state
machine may resume any step; a usage error (``ocsge`` exits 2) is not retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, CfnOutput, Duration, IgnoreMode, Size, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import InfraConfig
from infra.iam import batch_statements
from infra.images import BATCH_CONTEXT_EXCLUDE, BATCH_DOCKERFILE, REPO_ROOT, split_image_ref
from infra.network import Network
from infra.pgstac import PgstacDatabase

USAGE_ERROR_EXIT_CODE = "2"  # ocsge.cli: an OcsgeError (bad input) exits 2: retrying cannot help


@dataclass(frozen=True)
class StageSpec:
    """One job of a step split into map and reduce jobs (``ocsge vectorize``): its state name suffix, the
    options added to the step's command, whether it is an array job (one child per block), and its
    resources when they differ from the step's (a map job holds one block, not the graph)."""

    name: str
    options: tuple[str, ...]
    array: bool
    vcpus: int | None = None
    memory_gib: int | None = None


@dataclass(frozen=True)
class StepSpec:
    name: str  # state name, job-definition suffix and ``ocsge`` verb
    command: tuple[str, ...]  # after the ``ocsge`` entrypoint; Ref::x are Batch parameters
    gpu: bool
    vcpus: int
    memory_gib: int
    timeout_h: int  # per attempt (per block for predict)
    publishes: bool = False  # writes the catalogue ({storage root}/stac/, and pgstac with that profile)
    array: bool = False  # one child job per block
    # with more than one block, the step runs as these jobs in turn (map/reduce) instead of one job
    stages: tuple[StageSpec, ...] = ()


# Every verb takes --departement/--millesime (publish takes its root and pgstac DSN from the environment).
_PRODUCTION_ARGS = ("--departement", "Ref::departement", "--millesime", "Ref::millesime")
_PRODUCTS_ARGS = _PRODUCTION_ARGS
STEPS: tuple[StepSpec, ...] = (
    StepSpec("predict", ("predict", *_PRODUCTION_ARGS), gpu=True, vcpus=4, memory_gib=14, timeout_h=3, array=True),
    StepSpec("vectorize", ("vectorize", *_PRODUCTION_ARGS), gpu=False, vcpus=8, memory_gib=30, timeout_h=8,
             stages=(
                 StageSpec("Map", ("--map-block", "each"), array=True, vcpus=1, memory_gib=4),
                 StageSpec("Reduce", ("--reduce",), array=False),
                 StageSpec("Polygons", ("--polygons-block", "each"), array=True, vcpus=1, memory_gib=4),
                 StageSpec("Assemble", ("--assemble",), array=False),
             )),
    StepSpec("rules", ("rules", *_PRODUCTION_ARGS), gpu=False, vcpus=8, memory_gib=60, timeout_h=8),
    StepSpec("products", ("products", *_PRODUCTS_ARGS), gpu=False, vcpus=8, memory_gib=60, timeout_h=8),
    StepSpec("publish", ("publish",), gpu=False, vcpus=2, memory_gib=7, timeout_h=2, publishes=True),
)


def batch_environment(config: InfraConfig) -> dict[str, str]:
    """Every step's settings (``ocsge.settings``). ``OCSGE_ASSET_BASE_URL`` is the one the services get: the
    publish step writes asset hrefs under it into the static catalogue and pgstac."""
    return {
        "OCSGE_STORAGE_ROOT": config.storage_root,
        "OCSGE_CATALOG_BACKEND": "embedded",
        "OCSGE_S3_REGION": Aws.REGION,
        "OCSGE_ASSET_BASE_URL": config.asset_base_url,
        "PYTHONUNBUFFERED": "1",
        **({"OCSGE_PUBLIC_URL": config.public_url} if config.public_url else {}),
    }


class BatchStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        network: Network,
        pgstac: PgstacDatabase | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        vpc = network.vpc
        public = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        jobs_sg = ec2.SecurityGroup(self, "JobsSg", vpc=vpc, description="batch jobs", allow_all_outbound=True)
        security_groups = [jobs_sg]
        if pgstac is not None:
            security_groups.append(pgstac.client_security_group)

        self.gpu_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "GpuCompute",
            vpc=vpc,
            vpc_subnets=public,
            security_groups=security_groups,
            # CDK's InstanceType wants family.size; families alone ("g6") are written below.
            instance_types=[ec2.InstanceType(t) for t in config.gpu_instance_types if "." in t],
            use_optimal_instance_classes=False,
            spot=config.spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED if config.spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2_NVIDIA)],
            minv_cpus=0,
            maxv_cpus=config.gpu_max_vcpus,
            update_to_latest_image_version=True,
        )
        cfn_gpu = self.gpu_environment.node.default_child
        cfn_gpu.add_property_override("ComputeResources.InstanceTypes", list(config.gpu_instance_types))
        self.cpu_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "CpuCompute",
            vpc=vpc,
            vpc_subnets=public,
            security_groups=security_groups,
            instance_classes=[ec2.InstanceClass.M6I, ec2.InstanceClass.R6I, ec2.InstanceClass.C6I],
            use_optimal_instance_classes=False,
            spot=config.spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED if config.spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            minv_cpus=0,
            maxv_cpus=config.cpu_max_vcpus,
            update_to_latest_image_version=True,
        )
        self.gpu_queue = batch.JobQueue(
            self, "GpuQueue", job_queue_name=f"ocsge-{config.env_name}-gpu",
            compute_environments=[batch.OrderedComputeEnvironment(compute_environment=self.gpu_environment, order=1)],
        )
        self.cpu_queue = batch.JobQueue(
            self, "CpuQueue", job_queue_name=f"ocsge-{config.env_name}-cpu",
            compute_environments=[batch.OrderedComputeEnvironment(compute_environment=self.cpu_environment, order=1)],
        )

        # One job role for every step: each reads and writes the storage root only, publish included (the
        # catalogue lives under {data_prefix}/stac/). Publish's extra reach, pgstac, is its secret below.
        self.job_role = self._job_role("WorkerRole")
        # One execution role (pull the image, write logs, read the pgstac secret) for every step.
        self.execution_role = iam.Role(
            self, "ExecutionRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="OCS GE pipeline steps: ECS agent (image pull, logs, secrets)",
        )
        image = self._image()
        env = batch_environment(config)
        self.job_definitions: dict[str, batch.EcsJobDefinition] = {}
        for step in STEPS:
            step_env = dict(env)
            secrets = None
            if step.publishes and pgstac is not None:
                step_env.update(pgstac.client_environment(pgstac.ingest_secret, pgstac.INGEST))
                secrets = {"PGPASSWORD": batch.Secret.from_secrets_manager(pgstac.ingest_secret, "password")}
            container = batch.EcsEc2ContainerDefinition(
                self,
                f"{step.name.title()}Container",
                image=image,
                command=list(step.command),
                cpu=step.vcpus,
                memory=Size.gibibytes(step.memory_gib),
                gpu=1 if step.gpu else None,
                environment=step_env,
                secrets=secrets,
                job_role=self.job_role,
                execution_role=self.execution_role,
            )
            self.job_definitions[step.name] = batch.EcsJobDefinition(
                self,
                f"{step.name.title()}Job",
                job_definition_name=f"ocsge-{config.env_name}-{step.name}",
                container=container,
                timeout=Duration.hours(step.timeout_h),
                retry_attempts=3,
                retry_strategies=[
                    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
                    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.CANNOT_PULL_CONTAINER),
                    batch.RetryStrategy.of(
                        batch.Action.EXIT, batch.Reason.custom(on_exit_code=USAGE_ERROR_EXIT_CODE)
                    ),
                ],
                propagate_tags=True,
            )
        CfnOutput(self, "GpuQueueName", value=self.gpu_queue.job_queue_name)
        CfnOutput(self, "CpuQueueName", value=self.cpu_queue.job_queue_name)

    def queue_for(self, step: StepSpec) -> batch.JobQueue:
        return self.gpu_queue if step.gpu else self.cpu_queue

    def _job_role(self, construct_id: str) -> iam.Role:
        role = iam.Role(
            self,
            construct_id,
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="OCS GE pipeline steps: read and write the storage root (products, catalogue)",
        )
        for statement in batch_statements(self.config):
            role.add_to_policy(statement)
        return role

    def _image(self) -> ecs.ContainerImage:
        if self.config.batch_image:
            repository_name, tag = split_image_ref(self.config.batch_image)
            return ecs.ContainerImage.from_ecr_repository(
                ecr.Repository.from_repository_name(self, "BatchRepo", repository_name), tag
            )
        return ecs.ContainerImage.from_asset(
            str(REPO_ROOT),
            file=BATCH_DOCKERFILE,
            exclude=BATCH_CONTEXT_EXCLUDE,
            ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
