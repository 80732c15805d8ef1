"""IAM statements scoped to the buckets and prefixes each role needs, and nothing wider.

Services read (``s3:GetObject`` under the storage and catalogue prefixes, ``s3:ListBucket`` limited to
those prefixes so a missing key answers 404, not 403). Batch jobs read what they need and write only
under their own prefix; only the publish step writes the catalogue.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from infra.config import InfraConfig


def _objects(bucket: str, prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}/*"


def _list(bucket: str, prefix: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        actions=["s3:ListBucket"],
        resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}"],
        conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
    )


def bucket_read_statements(config: InfraConfig) -> list[iam.PolicyStatement]:
    """Read-only access to the products and the catalogue (the services)."""
    return [
        iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[
                _objects(config.data_bucket, config.data_prefix),
                _objects(config.catalog_bucket, config.catalog_prefix),
            ],
        ),
        _list(config.data_bucket, config.data_prefix),
        _list(config.catalog_bucket, config.catalog_prefix),
    ]


def _write(bucket: str, prefix: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
        resources=[_objects(bucket, prefix)],
    )


def batch_statements(config: InfraConfig, *, publishes: bool) -> list[iam.PolicyStatement]:
    """A pipeline step: read both prefixes, write the products prefix; the publish step the catalogue too."""
    statements = [*bucket_read_statements(config), _write(config.data_bucket, config.data_prefix)]
    if publishes:
        statements.append(_write(config.catalog_bucket, config.catalog_prefix))
    return statements
