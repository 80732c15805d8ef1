"""Optional pgstac profile: RDS PostgreSQL behind an RDS Proxy, secrets in Secrets Manager, and the
pgstac schema installed by a custom resource that runs ``pypgstac migrate``.

Only deployed with ``-c pgstac=on`` (../shared/reference/serving-stack.md §8.1: the embedded catalogue
is the default, pgstac is for transactions, very large catalogues or eoAPI compatibility). Lambdas
fan out, so they reach the database through the proxy, one connection each (§1: connection
exhaustion is the most reported eoAPI problem). Three database users, each with its own secret:
the RDS admin (migrations only), ``ocsge_read`` (services: ``pgstac_read``) and ``ocsge_ingest``
(the publish step: ``pgstac_ingest``). Clients get ``OCSGE_PGSTAC_DSN`` without a password plus the
ARN of their secret; ``PGPASSWORD`` comes from the secret (injected by Batch, read by the Lambda at
cold start), never from plain configuration.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import InfraConfig
from infra.images import PGSTAC_MIGRATE_DIR
from infra.network import Network

PGSTAC_VERSION = "0.10.0"  # pypgstac pin of the pgstac extra: schema and clients move in lockstep
DATABASE = "pgstac"
PORT = 5432


class PgstacDatabase(Construct):
    READER = "ocsge_read"
    INGEST = "ocsge_ingest"
    CONSOLIDATION = "ocsge_consolidation"  # owns the schema ``consolidation`` (the consolidation API's store)

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, network: Network) -> None:
        super().__init__(scope, construct_id)
        vpc = network.vpc
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # Clients (Lambdas, batch jobs, the migration) carry this group; the proxy and the database
        # admit it, so that no client stack has to edit this one's rules.
        self.client_security_group = ec2.SecurityGroup(
            self, "ClientSg", vpc=vpc, description="pgstac clients", allow_all_outbound=True
        )
        proxy_sg = ec2.SecurityGroup(self, "ProxySg", vpc=vpc, description="RDS proxy", allow_all_outbound=True)
        db_sg = ec2.SecurityGroup(self, "DbSg", vpc=vpc, description="pgstac database", allow_all_outbound=False)
        proxy_sg.add_ingress_rule(self.client_security_group, ec2.Port.tcp(PORT), "clients to proxy")
        db_sg.add_ingress_rule(proxy_sg, ec2.Port.tcp(PORT), "proxy to database")
        db_sg.add_ingress_rule(self.client_security_group, ec2.Port.tcp(PORT), "migration to database")

        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16),
            instance_type=ec2.InstanceType(config.pgstac_instance_type),
            vpc=vpc,
            vpc_subnets=isolated,
            security_groups=[db_sg],
            credentials=rds.Credentials.from_generated_secret("pgstac_admin"),
            database_name=DATABASE,
            allocated_storage=20,
            max_allocated_storage=200,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            multi_az=False,
            publicly_accessible=False,
            backup_retention=Duration.days(7),
            deletion_protection=config.env_name == "prod",
            removal_policy=RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=["postgresql"],
            cloudwatch_logs_retention=logs.RetentionDays.ONE_MONTH,
        )
        self.admin_secret = self.instance.secret
        self.reader_secret = self._user_secret("ReaderSecret", self.READER)
        self.ingest_secret = self._user_secret("IngestSecret", self.INGEST)
        self.consolidation_secret = self._user_secret("ConsolidationSecret", self.CONSOLIDATION)

        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            proxy_target=rds.ProxyTarget.from_instance(self.instance),
            secrets=[self.reader_secret, self.ingest_secret, self.consolidation_secret],
            vpc=vpc,
            vpc_subnets=isolated,
            security_groups=[proxy_sg],
            require_tls=True,
            max_connections_percent=80,  # leave room for the migration and operators
            idle_client_timeout=Duration.minutes(10),
        )

        migrate = lambda_.DockerImageFunction(
            self,
            "MigrateFunction",
            description=f"pypgstac migrate to pgstac {PGSTAC_VERSION}, database users and grants",
            code=lambda_.DockerImageCode.from_image_asset(
                str(PGSTAC_MIGRATE_DIR),
                build_args={"PYPGSTAC_VERSION": PGSTAC_VERSION},
                platform=ecr_assets.Platform.LINUX_AMD64,
            ),
            memory_size=512,
            timeout=Duration.minutes(10),
            vpc=vpc,
            vpc_subnets=isolated,
            security_groups=[self.client_security_group],
            log_group=logs.LogGroup(
                self, "MigrateLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        for secret in (self.admin_secret, self.reader_secret, self.ingest_secret, self.consolidation_secret):
            secret.grant_read(migrate)
        provider = cr.Provider(
            self,
            "MigrateProvider",
            on_event_handler=migrate,
            log_group=logs.LogGroup(
                self, "ProviderLogs", retention=logs.RetentionDays.ONE_WEEK, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        self.migration = CustomResource(
            self,
            "Migration",
            service_token=provider.service_token,
            resource_type="Custom::PgstacMigration",
            properties={
                "pgstac_version": PGSTAC_VERSION,
                "database": DATABASE,
                "admin_secret_arn": self.admin_secret.secret_arn,
                "reader_secret_arn": self.reader_secret.secret_arn,
                "ingest_secret_arn": self.ingest_secret.secret_arn,
                "consolidation_secret_arn": self.consolidation_secret.secret_arn,
            },
        )
        self.migration.node.add_dependency(self.instance)

    def _user_secret(self, construct_id: str, username: str) -> secretsmanager.Secret:
        return secretsmanager.Secret(
            self,
            construct_id,
            description=f"pgstac database user {username}",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"username": "{username}"}}',
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=32,
            ),
        )

    def consolidation_environment(self) -> dict[str, str]:
        """The consolidation store: its own user through the proxy, the password from its secret at run time."""
        return {
            "OCSGE_CONSOLIDATION_DSN": self.dsn(self.CONSOLIDATION),
            "OCSGE_CONSOLIDATION_DSN_SECRET_ARN": self.consolidation_secret.secret_arn,
        }

    def dsn(self, username: str) -> str:
        """libpq DSN without the password (``PGPASSWORD`` supplies it), through the proxy, TLS required."""
        return f"postgresql://{username}@{self.proxy.endpoint}:{PORT}/{DATABASE}?sslmode=require"

    def client_environment(self, secret: secretsmanager.ISecret, username: str) -> dict[str, str]:
        return {
            "OCSGE_CATALOG_BACKEND": "pgstac",
            "OCSGE_PGSTAC_DSN": self.dsn(username),
            "OCSGE_PGSTAC_SECRET_ARN": secret.secret_arn,
        }


class PgstacStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, network: Network,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.database = PgstacDatabase(self, "Pgstac", config=config, network=network)
        CfnOutput(self, "ProxyEndpoint", value=self.database.proxy.endpoint)
        CfnOutput(self, "ReaderSecretArn", value=self.database.reader_secret.secret_arn)
