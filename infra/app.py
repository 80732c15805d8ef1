"""The CDK app: ``cdk synth`` runs this file (see ``cdk.json``); tests call :func:`synth`.

Stacks, in deployment order (each named ``Ocsge-{env_name}-{part}``):

- ``Network``: the VPC (batch, and the database with the pgstac profile);
- ``Pgstac`` (only with ``-c pgstac=on``): RDS PostgreSQL, RDS Proxy, secrets, pgstac migration;
- ``Services``: one Lambda per HTTP service, the HTTP API;
- ``Auth``: the Cognito user pool, app client and role groups of the consolidation API (``infra/auth.py``);
- ``Storage``: the buckets and the CloudFront distribution in front of buckets and services;
- ``Batch``: compute environments, queues, one job definition per pipeline step;
- ``Pipeline`` (``Pipeline1``… beyond 40 départements): one Step Functions state machine per département.

Configuration comes from the context only (``infra.config``); a bad value stops the synth before any
construct is built, with a message that names the key and the value.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by the cdk CLI (``python3 app.py``): make ``infra`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import infra  # noqa: F401  (its __init__ quiets jsii's Node banner before aws_cdk starts Node)

import aws_cdk as cdk
from aws_cdk import cx_api

from infra.config import CONTEXT_KEYS, InfraConfig, InfraConfigError, load


def build(app: cdk.App, config: InfraConfig) -> dict[str, cdk.Stack]:
    """Add every stack of ``config`` to ``app``; returns them by part name."""
    from infra.auth import AuthStack
    from infra.batch import BatchStack
    from infra.network import NetworkStack
    from infra.pgstac import PgstacStack
    from infra.pipeline import PipelineStack, pipeline_parts
    from infra.services import ServicesStack
    from infra.storage import StorageStack

    env = cdk.Environment(
        account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=config.region or os.environ.get("CDK_DEFAULT_REGION"),
    )
    common: dict[str, Any] = {"env": env} if (env.account or env.region) else {}
    stacks: dict[str, cdk.Stack] = {}

    network = NetworkStack(app, config.stack_name("Network"), config=config,
                           description="OCS GE: VPC", **common)
    stacks["Network"] = network
    database = None
    if config.pgstac:
        pgstac = PgstacStack(app, config.stack_name("Pgstac"), config=config, network=network.network,
                             description="OCS GE: pgstac on RDS PostgreSQL behind RDS Proxy", **common)
        stacks["Pgstac"] = pgstac
        database = pgstac.database
    auth = AuthStack(app, config.stack_name("Auth"), config=config,
                     description="OCS GE: Cognito users and role groups of the consolidation API", **common)
    services = ServicesStack(app, config.stack_name("Services"), config=config, network=network.network,
                             pgstac=database, auth_environment=auth.api_environment,
                             description="OCS GE: service Lambdas and HTTP API", **common)
    stacks["Services"] = services
    stacks["Auth"] = auth
    stacks["Storage"] = StorageStack(app, config.stack_name("Storage"), config=config,
                                     api_domain=services.api_domain,
                                     description="OCS GE: S3 buckets and CloudFront", **common)
    batch = BatchStack(app, config.stack_name("Batch"), config=config, network=network.network,
                       pgstac=database, description="OCS GE: AWS Batch (GPU inference, CPU steps)", **common)
    stacks["Batch"] = batch
    topic = None
    for part, chunk in pipeline_parts(config.departements):
        pipeline = PipelineStack(app, config.stack_name(part), config=config, batch_stack=batch,
                                 departements=chunk, topic=topic,
                                 description=f"OCS GE: Step Functions pipelines of {chunk[0]}…{chunk[-1]}", **common)
        topic = pipeline.topic
        stacks[part] = pipeline
    untaggable = ["AWS::RDS::DBProxyTargetGroup"]  # CDK thinks it is; CloudFormation refuses Tags there
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", "ocsge", exclude_resource_types=untaggable)
        cdk.Tags.of(stack).add("environment", config.env_name, exclude_resource_types=untaggable)
    return stacks


def context_of(app: cdk.App) -> dict[str, Any]:
    """The values this app reads, from ``cdk.json`` and ``-c key=value``."""
    return {key: app.node.try_get_context(key) for key in CONTEXT_KEYS}


def synth(context: Mapping[str, Any] | None = None, outdir: str | Path | None = None) -> cx_api.CloudAssembly:
    """Validate ``context``, build every stack and synthesise the cloud assembly (templates, assets).

    No Docker and no network: container images are staged as assets here and built by ``cdk deploy``.
    Raises :class:`~infra.config.InfraConfigError` for a bad context value.
    """
    config = load(dict(context or {}))
    app = cdk.App(context=dict(context or {}), outdir=str(outdir) if outdir else None, analytics_reporting=False)
    build(app, config)
    return app.synth()


def main() -> None:
    app = cdk.App()
    try:
        config = load(context_of(app))
    except InfraConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    build(app, config)
    app.synth()


if __name__ == "__main__":
    main()
