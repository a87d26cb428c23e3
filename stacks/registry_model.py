"""The model both endpoints serve: an approved package of the model registry, chosen at deploy time.

Synthesis makes no AWS call, so the package ARN is a CloudFormation parameter (set by the rollout Lambda or
`cdk deploy --parameters`). While it is empty every serving resource is left out by the `HasModel` condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from contracts.layout import INFERENCE
from contracts.naming import MODEL_PACKAGE_PARAMETER
from stacks.bucket_set import SharedBuckets
from stacks.compliance import acknowledge_policy, nag_arn
from stacks.network import VPC_WILDCARD_REASON, allow_sagemaker_vpc


@dataclass(frozen=True)
class RegistryModelProps:
    buckets: SharedBuckets
    algorithm_repository_arn: str
    # Isolated-network mode: {"subnets": [...], "security_group_ids": [...]} (stacks.network.Placement)
    vpc_config: dict[str, list[str]] | None = None


def apply_condition(scope: Construct, condition: cdk.CfnCondition) -> None:
    """Make every CloudFormation resource under ``scope`` conditional."""
    for construct in scope.node.find_all():
        if isinstance(construct, cdk.CfnResource):
            construct.cfn_options.condition = condition


class RegistryModel(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: RegistryModelProps) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.package_arn = cdk.CfnParameter(
            stack, MODEL_PACKAGE_PARAMETER, type="String", default="",
            allowed_pattern=r"^$|^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+$",
            description="Approved model package to serve (empty: deploy without endpoints). "
                        "Set automatically when a package of the group is approved.",
        )
        self.has_model = cdk.CfnCondition(
            stack, "HasModel", expression=cdk.Fn.condition_not(cdk.Fn.condition_equals(self.package_arn, "")))

        buckets = props.buckets
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="roadseg endpoints: pull the algorithm image, read the model, write outputs")
        buckets.artifacts.grant_read(self.role)
        buckets.inference.grant_read(self.role, f"{INFERENCE.async_input}*")
        for prefix in (INFERENCE.async_output, INFERENCE.async_failures, INFERENCE.data_capture):
            buckets.inference.grant_put(self.role, f"{prefix}*")
        buckets.key.grant_encrypt_decrypt(self.role)
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[props.algorithm_repository_arn]))
        self.role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[stack.format_arn(service="logs", resource="log-group",
                                        resource_name="/aws/sagemaker/Endpoints/*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}}))

        if props.vpc_config:
            allow_sagemaker_vpc(self.role)
        prefix = buckets.export_prefix
        acknowledge_policy(self.role, actions=["s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*",
                                               "kms:GenerateDataKey*", "kms:ReEncrypt*"], resources={
            "*": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource scoping; "
                 "PutMetricData is limited to SageMaker namespaces by condition."
                 + (VPC_WILDCARD_REASON if props.vpc_config else ""),
            f"{prefix}:ArtifactsBucketArn/*": "Model packages reference model.tar.gz files anywhere under the "
                                              "artifacts bucket's pipeline outputs.",
            f"{prefix}:InferenceBucketArn/{INFERENCE.async_input}*": "Async requests are read from this prefix.",
            f"{prefix}:InferenceBucketArn/{INFERENCE.async_output}*": "Async results are written to this prefix.",
            f"{prefix}:InferenceBucketArn/{INFERENCE.async_failures}*": "Async failures are written here.",
            f"{prefix}:InferenceBucketArn/{INFERENCE.data_capture}*": "Sampled real-time requests/responses.",
            nag_arn(self, "logs", "log-group:/aws/sagemaker/Endpoints/*"):
                "Endpoints log to /aws/sagemaker/Endpoints/<endpoint name> with per-instance streams.",
        })

        # No name: CloudFormation generates one, so a new package replaces the model without a name clash.
        self.model = sagemaker.CfnModel(
            self, "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                model_package_name=self.package_arn.value_as_string),
            enable_network_isolation=True,
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(**props.vpc_config) if props.vpc_config else None,
        )
        self.model.node.add_dependency(self.role)
        self.model.cfn_options.condition = self.has_model

    def allow_reading_alarms(self, alarm_names: list[str]) -> None:
        """Deployment guardrails read the auto-rollback alarms with the model's execution role: "Ensure that your
        IAM execution role has permission to perform the cloudwatch:DescribeAlarms action on the auto-rollback
        alarms you specify" (https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html).
        Without it the blue/green rollback cannot see its alarms. Names, not references: the alarms exist only
        while a model is approved, the role always."""
        stack = cdk.Stack.of(self)
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadRollbackAlarms", actions=["cloudwatch:DescribeAlarms"],
            resources=[stack.format_arn(service="cloudwatch", resource="alarm", resource_name=name,
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME) for name in alarm_names]))

    @property
    def model_name(self) -> str:
        return self.model.attr_model_name
