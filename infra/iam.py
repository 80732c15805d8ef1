"""IAM statements scoped to the buckets and prefixes each role needs, and nothing wider.

Services read (``s3:GetObject`` under the storage prefix, ``s3:ListBucket`` limited to it so a missing key
answers 404, not 403). Batch jobs read it and write only under it; the publish step writes the catalogue
under ``{data_prefix}/stac/``, which that same statement covers (there is no separate catalogue bucket).
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
    """Read-only access to the storage root: products and the published catalogue (the services)."""
    return [
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[_objects(config.data_bucket, config.data_prefix)]),
        _list(config.data_bucket, config.data_prefix),
    ]


def _write(bucket: str, prefix: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
        resources=[_objects(bucket, prefix)],
    )


def batch_statements(config: InfraConfig) -> list[iam.PolicyStatement]:
    """A pipeline step, publish included: read and write the storage root (``{data_prefix}/*``)."""
    return [*bucket_read_statements(config), _write(config.data_bucket, config.data_prefix)]
