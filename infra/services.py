"""One Lambda per HTTP service (container images with the ``serve`` extra) behind an HTTP API.

Each function runs the same image with a different handler (the image CMD), named here by import
path only: the CDK app never imports the services. Functions read the buckets and nothing else;
with the pgstac profile, those that search the catalogue join the VPC and reach the RDS proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, CfnOutput, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import InfraConfig
from infra.iam import bucket_read_statements
from infra.images import REPO_ROOT, SERVICES_CONTEXT_EXCLUDE, SERVICES_DOCKERFILE, split_image_ref
from infra.network import Network
from infra.pgstac import PgstacDatabase


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    handler: str  # import path of the Lambda handler: module.attribute
    memory_mb: int
    timeout_s: int
    routes: tuple[str, ...]  # HTTP API routes; () means the $default route
    cloudfront: tuple[tuple[str, str], ...]  # (path pattern, cache kind) behaviours, see infra.cdn
    methods: tuple[str, ...] = ("GET", "HEAD")
    uses_catalog: bool = True  # searches the catalogue: joins the VPC with the pgstac profile
    # writes the consolidation store (a schema of the pgstac database, its own user): deployed with the pgstac
    # profile only — without a database the store would be a SQLite file on S3, which the API refuses (503)
    uses_store: bool = False


# HTTP API integrations time out at 30 s: no function may run longer behind it.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "stac", "services.handlers.stac.handler", 1024, 15, ("/stac", "/stac/{proxy+}"),
        (("/stac/*", "api"),), methods=("GET", "HEAD", "POST"),
    ),
    ServiceSpec(
        "tiles", "services.handlers.tiles.handler", 3008, 29,
        ("/tiles/{proxy+}", "/wmts", "/wmts/{proxy+}", "/wms", "/wms/{proxy+}"),
        (("/tiles/*", "tiles"), ("/wmts*", "ogc"), ("/wms*", "ogc")),
    ),
    ServiceSpec(
        "vector", "services.handlers.vector.handler", 1024, 15, ("/vector", "/vector/{proxy+}"),
        (("/vector/*", "tiles"),), uses_catalog=False,
    ),
    ServiceSpec(
        "downloads", "services.handlers.downloads.handler", 1024, 29,
        ("/downloads", "/downloads/{proxy+}", "/stats", "/stats/{proxy+}"),
        (("/downloads/*", "api"), ("/stats/*", "api")),
    ),
    ServiceSpec("viewer", "services.handlers.viewer.handler", 512, 10, (), (), uses_catalog=False),
    # Authenticated writes: never cached at the edge, Authorization and cookies forwarded (cache kind "private").
    ServiceSpec(
        "consolidation", "services.handlers.consolidation.handler", 1024, 29,
        ("/consolidation", "/consolidation/{proxy+}"), (("/consolidation/*", "private"),),
        methods=("GET", "HEAD", "POST"), uses_catalog=False, uses_store=True,
    ),
)
HANDLERS: dict[str, str] = {spec.name: spec.handler for spec in SERVICES}


def deployed_services(with_database: bool) -> tuple[ServiceSpec, ...]:
    """The services a deployment has: those that write the consolidation store need the database."""
    return tuple(spec for spec in SERVICES if with_database or not spec.uses_store)
# The setting that lets the services honour forwarding headers (only behind a proxy that writes them).
TRUST_FORWARDED_ENV = "OCSGE_TRUST_FORWARDED_HEADERS"


def service_environment(config: InfraConfig) -> dict[str, str]:
    """Environment every service Lambda shares (settings of ``ocsge.settings`` plus GDAL)."""
    from ocsge.gdal_env import GDAL_ENV  # at synth time, not import time (ARCHITECTURE.md §2): stdlib only

    return {
        "OCSGE_STORAGE_ROOT": config.storage_root,
        "OCSGE_CATALOG_BACKEND": "pgstac" if config.pgstac else "embedded",
        "OCSGE_S3_REGION": Aws.REGION,
        "OCSGE_QUIET": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **({"OCSGE_PUBLIC_URL": config.public_url} if config.public_url else {}),
        # STAC asset hrefs: the storage root behind CloudFront (range reads, no Lambda in the way). Always
        # set: without public_url it is the path /{data_prefix}, resolved against the host of each request.
        "OCSGE_ASSET_BASE_URL": config.asset_base_url,
        # The proxy in front is CloudFront, whose viewer-request functions write X-Forwarded-Host from the
        # viewer's Host and delete a client's Forwarded/X-Forwarded-Port (infra.edge_query): trust them.
        TRUST_FORWARDED_ENV: "1",
        **GDAL_ENV,
    }


class ServicesStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        network: Network | None = None,
        pgstac: PgstacDatabase | None = None,
        auth_environment: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self._asset: ecr_assets.DockerImageAsset | None = None
        env = service_environment(config)
        if pgstac is not None:
            env.update(pgstac.client_environment(pgstac.reader_secret, pgstac.READER))
        self.functions: dict[str, lambda_.Function] = {}
        self.services = deployed_services(pgstac is not None)
        for spec in self.services:
            spec_env = {**env, **(auth_environment or {})} if spec.uses_store else env
            self.functions[spec.name] = self._function(spec, spec_env, network if pgstac else None, pgstac)

        self.api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=f"ocsge-{config.env_name}",
            description="OCS GE services (read only); CloudFront is the public entry point",
            create_default_stage=False,
            default_integration=integrations.HttpLambdaIntegration("Viewer", self.functions["viewer"]),
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=["*"],
                allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.HEAD, apigw.CorsHttpMethod.POST,
                               apigw.CorsHttpMethod.OPTIONS],
                allow_headers=["Content-Type", "Range", "If-None-Match", "Accept", "Accept-Encoding"],
                expose_headers=["ETag", "Content-Length", "Content-Range", "Link"],
                max_age=Duration.days(1),
            ),
        )
        apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=1000, burst_limit=2000),
        )
        for spec in self.services:
            if not spec.routes:
                continue
            integration = integrations.HttpLambdaIntegration(f"{spec.name.title()}Integration",
                                                             self.functions[spec.name])
            for path in spec.routes:
                self.api.add_routes(
                    path=path,
                    methods=[apigw.HttpMethod(m) for m in spec.methods],
                    integration=integration,
                )
        # The API's host name, what CloudFront uses as origin (https://{id}.execute-api.{region}.amazonaws.com).
        self.api_domain = f"{self.api.api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}"
        CfnOutput(self, "ApiEndpoint", value=self.api.api_endpoint)

    def _code(self, spec: ServiceSpec) -> lambda_.DockerImageCode:
        """The one services image (built once at deploy), run with this service's handler as CMD."""
        image = self.config.services_image
        if image:  # prebuilt image in ECR: no Docker needed at deploy time
            repository_name, tag = split_image_ref(image)
            repository = ecr.Repository.from_repository_name(self, f"{spec.name.title()}Repo", repository_name)
            return lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=tag, cmd=[spec.handler])
        if self._asset is None:
            self._asset = ecr_assets.DockerImageAsset(
                self,
                "ServicesImage",
                directory=str(REPO_ROOT),
                file=SERVICES_DOCKERFILE,
                exclude=SERVICES_CONTEXT_EXCLUDE,
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
        return lambda_.DockerImageCode.from_ecr(
            self._asset.repository, tag_or_digest=self._asset.image_tag, cmd=[spec.handler]
        )

    def _function(
        self,
        spec: ServiceSpec,
        env: dict[str, str],
        network: Network | None,
        pgstac: PgstacDatabase | None,
    ) -> lambda_.Function:
        construct_id = f"{spec.name.title()}Function"
        log_group = logs.LogGroup(
            self,
            f"{spec.name.title()}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        in_vpc = network is not None and pgstac is not None and (spec.uses_catalog or spec.uses_store)
        fn = lambda_.DockerImageFunction(
            self,
            construct_id,
            function_name=f"ocsge-{self.config.env_name}-{spec.name}",
            description=f"OCS GE {spec.name} service ({spec.handler})",
            code=self._code(spec),
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            architecture=lambda_.Architecture.X86_64,
            environment={**env, "POWERTOOLS_SERVICE_NAME": f"ocsge-{spec.name}",
                         # X-Ray is off (tracing=DISABLED): keep Powertools from tracing into nowhere
                         "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "OCSGE"},
            log_group=log_group,
            tracing=lambda_.Tracing.DISABLED,
            vpc=network.vpc if in_vpc else None,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED) if in_vpc else None,
            security_groups=[pgstac.client_security_group] if in_vpc else None,
        )
        for statement in bucket_read_statements(self.config):
            fn.add_to_role_policy(statement)
        if in_vpc and spec.uses_catalog:
            pgstac.reader_secret.grant_read(fn)
        else:
            fn.add_environment("OCSGE_CATALOG_BACKEND", "embedded")  # cannot reach the database
        if in_vpc and spec.uses_store:
            for key, value in pgstac.consolidation_environment().items():
                fn.add_environment(key, value)
            pgstac.consolidation_secret.grant_read(fn)
        return fn
