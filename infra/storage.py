"""The private S3 bucket of the storage root: every product, and the STAC catalogue that ``ocsge publish``
writes under ``{data_prefix}/stac/`` (static catalogue and the snapshot the STAC API loads).

The bucket blocks every form of public access, encrypts at rest, refuses plain HTTP and keeps its
data when the stack is deleted. Readers come through CloudFront (origin access control, in
:mod:`infra.cdn`) or IAM (Lambdas, batch jobs). Writers stage under ``{prefix}/_tmp/`` and copy into
place (``ocsge.storage.TMP_PREFIX``); a writer killed between the two leaves a temporary key that the
lifecycle rule below expires. (A separate catalogue bucket, which nothing wrote, is gone from the app;
being retained, a deployed one stays in the account until removed by hand.)
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.cdn import Cdn
from infra.config import InfraConfig

TMP_EXPIRY_DAYS = 2


class Buckets(Construct):
    """The data bucket (construct ids unchanged, so a deployed bucket keeps its logical id)."""

    def __init__(self, scope: Construct, construct_id: str, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.data = self._bucket(
            "Data",
            config.data_bucket,
            lifecycle=[
                s3.LifecycleRule(
                    id="expire-temporary-keys",
                    prefix=config.tmp_prefix,
                    expiration=Duration.days(TMP_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(2)
                ),
            ],
            versioned=False,  # products are rebuilt, not edited: old versions would only cost money
        )

    def _bucket(self, construct_id: str, name: str, lifecycle: list[s3.LifecycleRule], versioned: bool) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned,
            lifecycle_rules=lifecycle,
            removal_policy=RemovalPolicy.RETAIN,
            cors=[
                # Range reads of COG/PMTiles from browsers through CloudFront or presigned URLs.
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.GET, s3.HttpMethods.HEAD],
                    allowed_origins=["*"],
                    allowed_headers=["Range", "If-None-Match", "If-Match"],
                    exposed_headers=["ETag", "Content-Length", "Content-Range", "Accept-Ranges"],
                    max_age=3600,
                )
            ],
        )


class StorageStack(Stack):
    """The bucket and the CloudFront distribution that serves it and the services.

    The distribution lives with the bucket because origin access control writes the distribution's
    ARN into the bucket policy: across stacks that is a reference cycle. The services stack comes
    first and knows the bucket by name (from context), so nothing points back at it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, api_domain: str,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.buckets = Buckets(self, "Buckets", config)
        self.cdn = Cdn(
            self, "Cdn", config=config, api_domain=api_domain,
            data_bucket=self.buckets.data,
        )
        CfnOutput(self, "PublicUrl", value=f"https://{self.cdn.distribution.distribution_domain_name}")
        CfnOutput(self, "DistributionId", value=self.cdn.distribution.distribution_id)
        CfnOutput(self, "DataBucketName", value=self.buckets.data.bucket_name)
