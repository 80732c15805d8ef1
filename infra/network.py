"""The VPC of the batch jobs (and, with the pgstac profile, of the database and the Lambdas that query it).

No NAT gateway: batch instances sit in public subnets (they pull images from ECR and read S3 through
a gateway endpoint), the database and the Lambdas that reach it sit in isolated subnets with
endpoints for S3 and Secrets Manager only.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import InfraConfig


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        subnets = [ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20)]
        if config.pgstac:
            subnets.append(
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/16"),
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=subnets,
            restrict_default_security_group=False,  # avoids a custom-resource Lambda; the default SG is unused
        )
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        if config.pgstac:
            self.vpc.add_interface_endpoint(
                "SecretsManager",
                service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            )


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = Network(self, "Network", config)
