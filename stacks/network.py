"""Isolated-network mode (``network:`` in the environment file): private subnets that reach AWS only through VPC
endpoints, and what each stack needs to put its functions, jobs and models in them.

``NetworkStack`` creates (``mode: create``: private isolated subnets in two zones, no NAT, no internet gateway) or
imports (``mode: import``: IDs from the file or SSM parameters, no synth-time lookup) the VPC, and adds the S3
gateway endpoint and one interface endpoint per AWS service in ``ENDPOINT_SERVICES``, each with private DNS and an
endpoint policy scoped to this project (S3) or this account (the others). ``NetworkStack.placement(scope)`` gives a
stack the subnets and security groups for its Lambda functions (``FunctionPlacement``) and SageMaker VpcConfigs.

Which AWS service names have PrivateLink endpoints:
https://docs.aws.amazon.com/vpc/latest/privatelink/aws-services-privatelink-support.html; endpoint policies:
https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html (each service in ENDPOINT_SERVICES
cites its own page saying it supports them).
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from contracts import naming
from envconfig.config import EnvironmentConfig
from envconfig.network import IsolatedNetworkConfig, ssm_parameter_name
from stacks.bucket_set import BucketSet, SharedBuckets
from stacks.compliance import acknowledge, acknowledge_all_packs, acknowledge_inline_policy
from stacks.lambda_code import _RETENTION

NETWORK = "Network"  # stack key: <stack name prefix>Network
DYNAMODB_ENDPOINTS_DOC = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                          "privatelink-interface-endpoints.html")
HTTPS = 443
# The S3 bucket ECR stores image layers in (pulls through a VPC need it in the S3 endpoint policy):
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html#ecr-minimum-s3-perms
ECR_LAYER_BUCKET = "prod-{region}-starport-layer-bucket"
CDK_ASSETS_BUCKET = naming.cdk_assets_bucket("{account}", "{region}")  # a str.format template, as ECR_LAYER_BUCKET


@dataclass(frozen=True)
class EndpointService:
    """One interface endpoint: the PrivateLink service name suffix (com.amazonaws.<region>.<suffix>), who in this
    project calls it from inside the VPC, and the page that documents the endpoint and its policy support."""

    key: str
    suffix: str
    callers: str
    doc: str
    policy: bool = True  # the service supports endpoint policies (the page says so)


# service -> endpoint. The integration contract ``vpc-endpoints-for-called-services`` checks that every service a
# function or job calls has one (stacks/checks/service_contracts/rules.py, CALLED_SERVICES).
ENDPOINT_SERVICES: tuple[EndpointService, ...] = (
    EndpointService("SageMakerApi", "sagemaker.api",
                    "rollout and drift monitor (DescribeModelPackage); operators' SDKs",
                    "https://docs.aws.amazon.com/sagemaker/latest/dg/interface-vpc-endpoint.html"),
    EndpointService("SageMakerRuntime", "sagemaker.runtime", "ingest (InvokeEndpointAsync), real-time front "
                    "(InvokeEndpoint)", "https://docs.aws.amazon.com/sagemaker/latest/dg/interface-vpc-endpoint.html"),
    EndpointService("Sts", "sts", "SDK credential exchanges (AssumeRole*) inside the VPC",
                    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_sts_vpce.html"),
    EndpointService("Logs", "logs", "CloudWatch Logs agents of jobs and endpoints in the VPC",
                    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch-logs-and-interface-VPC.html"),
    EndpointService("Monitoring", "monitoring", "PutMetricData of jobs and endpoints in the VPC; the drift monitor "
                    "(ListMetrics, GetMetricData, PutMetricData)",
                    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-interface-VPC.html"),
    EndpointService("Kms", "kms", "SSE-KMS data keys for S3 objects and volumes used from the VPC",
                    "https://docs.aws.amazon.com/kms/latest/developerguide/kms-vpc-endpoint.html"),
    EndpointService("Sqs", "sqs", "the ingest queue and the dead-letter queues, reached from the VPC",
                    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/"
                    "sqs-internetwork-traffic-privacy.html"),
    EndpointService("Sns", "sns", "the async endpoint's success/error topics, reached from the VPC",
                    "https://docs.aws.amazon.com/sns/latest/dg/sns-vpc-endpoint.html"),
    EndpointService("EcrApi", "ecr.api", "image pulls of jobs and models (GetAuthorizationToken)",
                    "https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html"),
    EndpointService("EcrDocker", "ecr.dkr", "image pulls of jobs and models (layers then come from S3)",
                    "https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html"),
    EndpointService("CloudFormation", "cloudformation", "rollout (DescribeStacks, UpdateStack)",
                    "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/vpc-interface-endpoints.html"),
    EndpointService("Ssm", "ssm", "SSM parameters read from the VPC (operators' tooling; the drift monitor reads "
                    "the serving package)",
                    "https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-create-vpc.html"),
    EndpointService("Glue", "glue", "the drive completion function (GetTable, BatchCreatePartition of the timeline)",
                    "https://docs.aws.amazon.com/glue/latest/dg/vpc-interface-endpoints.html"),
)
XRAY = EndpointService("XRay", "xray", "active tracing of the functions (preprocessing.tracing)",
                       "https://docs.aws.amazon.com/xray/latest/devguide/xray-security-vpc-endpoint.html")
# Not created, because nothing inside the VPC calls them: Lambda (functions are invoked by S3/SQS/SNS/EventBridge
# and by operators outside), Application Auto Scaling and EventBridge (CloudFormation and SageMaker call them from
# the AWS side), Service Quotas (the operator's preflight).


def endpoint_services(config: EnvironmentConfig) -> tuple[EndpointService, ...]:
    return ENDPOINT_SERVICES + ((XRAY,) if config.preprocessing.tracing else ())


def network_stack_name(config: EnvironmentConfig) -> str:
    return f"{naming.stack_name_prefix(config.prefix)}{NETWORK}"


@dataclass(frozen=True)
class FunctionPlacement:
    """Where a Lambda function runs: the VPC, its subnets and security groups."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_groups: list[ec2.ISecurityGroup]


@dataclass(frozen=True)
class Placement:
    """Subnets and security groups as seen from one stack (SageMaker VpcConfig lists and Lambda placement)."""

    subnet_ids: list[str]
    security_group_ids: list[str]
    function: FunctionPlacement

    def sagemaker_vpc_config(self) -> dict[str, list[str]]:
        return {"subnets": list(self.subnet_ids), "security_group_ids": list(self.security_group_ids)}


def _resolve(scope: Construct, value: str, value_type: ssm.ParameterValueType) -> str:
    """A literal ID, or the SSM-typed template parameter (declared once per stack) of an ``ssm:/name`` reference."""
    name = ssm_parameter_name(value)
    if name is None:
        return value
    return ssm.StringParameter.value_for_typed_string_parameter_v2(cdk.Stack.of(scope), name, value_type)


class NetworkStack(cdk.Stack):
    @property
    def availability_zones(self) -> list[str]:
        """The zones constructs ask the stack for (interface endpoints, subnets): the configured ones, else the
        region's first two resolved by CloudFormation. CDK's default would look them up in the account at synth
        (the CLI's availability-zones context provider), which needs credentials."""
        network = getattr(self, "network", None)
        if network is not None:
            zones = (network.created().availability_zones if network.mode == "create"
                     else network.import_.availability_zones)
            if zones:
                return list(zones)
        return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(2)]

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, data: BucketSet,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if config.network is None:
            raise ValueError("NetworkStack needs a network: section")
        self.config = config
        self.network: IsolatedNetworkConfig = config.network
        self._placements: dict[str, Placement] = {}
        if self.network.mode == "create":
            self.vpc = self._create_vpc(config)
            self.workload_group: ec2.ISecurityGroup | None = ec2.SecurityGroup(
                self, "Workloads", vpc=self.vpc, allow_all_outbound=False,
                description=f"{config.prefix}: Lambda functions, SageMaker jobs and models (HTTPS to endpoints only)")
            self.workload_group.add_egress_rule(ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(HTTPS),
                                                "Interface endpoints of the VPC")
            # The S3 gateway endpoint is reached through its prefix list, whose ID differs per region and would need
            # a lookup: HTTPS to anywhere, which the route tables (local + the S3 endpoint only) confine to S3.
            self.workload_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS),
                                                "S3 through the gateway endpoint (no other route leaves the VPC)")
            admit_members(self.workload_group)
            group_ids = [self.workload_group.security_group_id]
        else:
            self.vpc = self.import_vpc(self, "Vpc")
            self.workload_group = None
            group_ids = [_resolve(self, g, ssm.ParameterValueType.AWS_EC2_SECURITYGROUP_ID)
                         for g in self.network.import_.security_group_ids]
        self.endpoint_group = ec2.SecurityGroup(
            self, "Endpoints", vpc=self.vpc, allow_all_outbound=False,
            description=f"{config.prefix}: interface endpoints, HTTPS from the project workloads only")
        for index, group_id in enumerate(group_ids):
            self.endpoint_group.add_ingress_rule(ec2.Peer.security_group_id(group_id), ec2.Port.tcp(HTTPS),
                                                 f"HTTPS from workload security group {index}")
        self.gateway = self._s3_gateway(config, data.share_with(self))
        self.dynamodb_gateway = self._dynamodb_gateway(config)
        self.interface_endpoints = {service.key: self._interface_endpoint(service)
                                    for service in endpoint_services(config)}

    # -- the VPC ---------------------------------------------------------------------------------------------------

    def _create_vpc(self, config: EnvironmentConfig) -> ec2.Vpc:
        created = self.network.created()
        # The region's first two zones, resolved by CloudFormation (Fn::GetAZs): no synth-time lookup, nothing
        # hard-coded (cfn-lint W3010); availability_zones in the file pins them instead.
        zones = list(created.availability_zones or [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(2)])
        vpc = ec2.Vpc(
            self, "Vpc", ip_addresses=ec2.IpAddresses.cidr(created.cidr),
            availability_zones=zones, nat_gateways=0,
            subnet_configuration=[ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                                                          cidr_mask=_subnet_mask(created.cidr))],
            enable_dns_hostnames=True, enable_dns_support=True)  # private DNS of interface endpoints needs both
        # Flow logs of rejected and accepted traffic, into a log group with the configured retention.
        retention = getattr(logs.RetentionDays, _RETENTION[config.retention.log_group_days])
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=retention,
                                  removal_policy=cdk.RemovalPolicy.RETAIN if config.retain else
                                  cdk.RemovalPolicy.DESTROY)
        flow_log = vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
        acknowledge_inline_policy(flow_log.node.find_child("IAMRole"))
        acknowledge_all_packs(flow_logs, "CloudWatchLogGroupEncrypted",
                              "Flow logs carry addresses and ports, no payloads; CloudWatch Logs encrypts them at "
                              "rest with its own keys, and a customer key would need a key policy admitting logs.")
        acknowledge_all_packs(vpc, "VPCDefaultSecurityGroupClosed",
                              "Nothing uses the default security group: every function, job, model and endpoint "
                              "gets its own group. Closing it needs CDK's custom-resource Lambda outside the VPC.")
        return vpc

    def import_vpc(self, scope: Construct, construct_id: str) -> ec2.IVpc:
        """The configured VPC, imported in ``scope``'s stack (no lookup; SSM references become template parameters
        of that stack)."""
        imported = self.network.import_
        return ec2.Vpc.from_vpc_attributes(
            scope, construct_id,
            vpc_id=_resolve(scope, imported.vpc_id, ssm.ParameterValueType.AWS_EC2_VPC_ID),
            availability_zones=list(imported.availability_zones),
            isolated_subnet_ids=[_resolve(scope, s, ssm.ParameterValueType.AWS_EC2_SUBNET_ID)
                                 for s in imported.private_subnet_ids],
            isolated_subnet_route_table_ids=[_resolve(scope, r, ssm.ParameterValueType.STRING)
                                             for r in imported.route_table_ids])

    # -- endpoints -------------------------------------------------------------------------------------------------

    def _s3_gateway(self, config: EnvironmentConfig, data: SharedBuckets) -> ec2.GatewayVpcEndpoint:
        gateway = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
        # S3 supports endpoint policies (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
        # privatelink-interface-endpoints.html, gateway: https://docs.aws.amazon.com/vpc/latest/privatelink/
        # vpc-endpoints-s3.html): the project's buckets, ECR's layer bucket and the CDK assets bucket only.
        buckets = [data.datasets, data.artifacts, data.inference]
        named = [f"arn:{self.partition}:s3:::{name.format(region=self.region, account=self.account)}"
                 for name in (ECR_LAYER_BUCKET, CDK_ASSETS_BUCKET)]
        gateway.add_to_policy(iam.PolicyStatement(
            sid="ProjectBucketsOnly", principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:List*", "s3:GetBucket*",
                     "s3:AbortMultipartUpload"],
            resources=[*(b.bucket_arn for b in buckets), *(b.arn_for_objects("*") for b in buckets),
                       *named, *(f"{arn}/*" for arn in named)]))
        return gateway

    def _dynamodb_gateway(self, config: EnvironmentConfig) -> ec2.GatewayVpcEndpoint:
        """The drives table from inside the VPC (ingest, postprocess, the drive functions and the extraction job).
        A gateway endpoint, as AWS recommends for traffic from within the VPC: route-table based, so the SDK's
        default endpoint name works unchanged, free, with an endpoint policy; interface endpoints are for
        on-premises and peered networks (DYNAMODB_ENDPOINTS_DOC)."""
        gateway = self.vpc.add_gateway_endpoint(
            "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB,
            subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
        table = (f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/"
                 f"{naming.drives_table_name(config.prefix)}")
        gateway.add_to_policy(iam.PolicyStatement(
            sid="ProjectTableOnly", principals=[iam.AnyPrincipal()], actions=["dynamodb:*"],
            resources=[table, f"{table}/*"], conditions={"StringEquals": {"aws:PrincipalAccount": self.account}}))
        return gateway

    def _interface_endpoint(self, service: EndpointService) -> ec2.InterfaceVpcEndpoint:
        endpoint = self.vpc.add_interface_endpoint(
            service.key, service=ec2.InterfaceVpcEndpointAwsService(service.suffix),
            private_dns_enabled=True, security_groups=[self.endpoint_group], open=False,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED))
        if service.policy:
            # This account's principals only (aws:PrincipalAccount), on any resource: the services' own IAM and
            # resource policies still decide what each principal may do.
            endpoint.add_to_policy(iam.PolicyStatement(
                sid="ThisAccountOnly", principals=[iam.AnyPrincipal()], actions=["*"], resources=["*"],
                conditions={"StringEquals": {"aws:PrincipalAccount": self.account}}))
        return endpoint

    # -- what other stacks use -------------------------------------------------------------------------------------

    def placement(self, scope: Construct) -> Placement:
        """The subnets and security groups as seen from ``scope``'s stack (built once per stack: SSM references are
        template parameters of that stack, created before anything that must see them, such as the rollout)."""
        stack = cdk.Stack.of(scope)
        if stack.node.addr in self._placements:
            return self._placements[stack.node.addr]
        if stack is self or self.network.mode == "create":
            vpc = self.vpc
            groups = [self.workload_group] if self.workload_group else []
        else:
            holder = Construct(stack, "IsolatedNetwork")
            vpc = self.import_vpc(holder, "Vpc")
            groups = [ec2.SecurityGroup.from_security_group_id(
                holder, f"Group{i}", _resolve(holder, g, ssm.ParameterValueType.AWS_EC2_SECURITYGROUP_ID),
                mutable=False) for i, g in enumerate(self.network.import_.security_group_ids)]
        if stack is not self:
            # Both modes: the endpoints (and in import mode the gateway routes on the given route tables) exist
            # before anything placed in the subnets is deployed and calls AWS through them.
            stack.add_stack_dependency(self)
        selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        placement = Placement(
            subnet_ids=list(vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids),
            security_group_ids=[g.security_group_id for g in groups],
            function=FunctionPlacement(vpc=vpc, subnets=selection, security_groups=groups))
        self._placements[stack.node.addr] = placement
        return placement


_PLACEMENT_ATTRIBUTE = "_roadseg_function_placement"


def place_functions_in(stack: cdk.Stack, placement: FunctionPlacement) -> None:
    """Every RoadsegFunction created in ``stack`` from now on runs in ``placement`` (the inference stack calls this
    first thing in isolated-network mode, so no function can be left outside)."""
    setattr(stack, _PLACEMENT_ATTRIBUTE, placement)


def function_placement(scope: Construct) -> FunctionPlacement | None:
    """The placement of functions in ``scope``'s stack, None outside isolated-network mode."""
    return getattr(cdk.Stack.of(scope), _PLACEMENT_ATTRIBUTE, None)


# Jobs that run on several instances talk to each other inside the VPC: "in distributed processing, you must allow
# communication between the different containers in the same processing job" (PROCESSING_VPC_DOC); training the
# same (TRAINING_VPC_DOC), and with inter-container traffic encryption (on for the drive extraction) the instances
# also exchange UDP 500 and IP protocol 50 (TRAINING_ENCRYPTION_DOC). One self-referencing rule each way for all
# traffic admits exactly the group's own members, as the pages ask.
PROCESSING_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/process-vpc.html"
TRAINING_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html"
TRAINING_ENCRYPTION_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/train-encrypt.html"


def admit_members(group: ec2.SecurityGroup) -> None:
    """All traffic between the members of ``group``, both ways (the distributed jobs' instances)."""
    group.connections.allow_internally(ec2.Port.all_traffic(), "Instances of one distributed SageMaker job")
    for rule in group.node.children:
        if isinstance(rule, ec2.CfnSecurityGroupIngress):
            acknowledge_all_packs(rule, "EC2RestrictedCommonPorts",
                                  "The source is the group itself, not an address range: only the project's own "
                                  "functions, jobs and models, which distributed jobs need (process-vpc.html).")


def _subnet_mask(cidr: str) -> int:
    """A quarter of the VPC per subnet (up to three zones and a spare)."""
    return int(cidr.split("/")[1]) + 2


def acknowledge_vpc_function(function: Construct, role: Construct) -> None:
    """What a function in the VPC adds: CDK attaches AWSLambdaVPCAccessExecutionRole (ENI management)."""
    acknowledge(role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole]",
                "Lambda creates and deletes the function's network interfaces in the private subnets with exactly "
                "the EC2 actions of this AWS managed policy (https://docs.aws.amazon.com/lambda/latest/dg/"
                "configuration-vpc.html).")


# What a SageMaker execution role needs for jobs and models with a VpcConfig: SageMaker creates their network
# interfaces with the role (https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html, "CreateTrainingJob
# API: Execution Role Permissions" with a VpcConfig). The Describe* actions and CreateNetworkInterface support no
# narrower resource than "*" for this use.
# ec2:DescribeVpcEndpoints: the hosted-endpoints VPC page lists it among the permissions a model in a VPC needs
# (HOST_VPC_DOC); the same role also runs the models' endpoints here.
SAGEMAKER_VPC_ACTIONS = ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                         "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission",
                         "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
                         "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcEndpoints"]
HOST_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/host-vpc.html"
VPC_WILDCARD_REASON = (" In the VPC, SageMaker manages the jobs' and models' network interfaces with this role: the "
                       "EC2 Describe* and network-interface actions take no narrower resource (sagemaker-roles).")
SAGEMAKER_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html"


def allow_sagemaker_vpc(role: iam.IRole) -> None:
    """Let SageMaker place this role's jobs or models in the VPC (their network interfaces)."""
    role.add_to_principal_policy(iam.PolicyStatement(sid="NetworkInterfacesInTheVpc", actions=SAGEMAKER_VPC_ACTIONS,
                                                     resources=["*"]))
