"""The model both endpoints serve: an approved package of the model registry, chosen at deploy time.

Synthesis makes no AWS call, so the package ARN is a CloudFormation parameter. It is SSM-typed
(``AWS::SSM::Parameter::Value<String>``, default: the SSM parameter ``naming.serving_package_parameter``), so every
deployer (`cdk deploy`, the delivery pipeline's CloudFormation actions, which pass no parameters, a manual update)
re-reads what the rollout Lambda last wrote there instead of falling back to a template default
(SSM_PARAMETER_TYPES_DOC; CFN_PARAMETER_DEFAULT_DOC). While the SSM value is ``naming.NO_MODEL_PACKAGE`` every
serving resource is left out by the ``HasModel`` condition.

``ServingPackageParameter`` (in the data stack, which deploys first) creates that SSM parameter once, with
``PutParameter`` and ``Overwrite: false``, through a custom resource: no deploy ever writes its value again (a plain
``AWS::SSM::Parameter`` would be rewritten with its template value whenever CloudFormation updates that resource).
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import custom_resources as cr
from constructs import Construct

from contracts.layout import INFERENCE
from contracts.naming import MODEL_PACKAGE_PARAMETER, NO_MODEL_PACKAGE, SSM_PARAMETER_TYPE
from stacks.bucket_set import SharedBuckets
from stacks.compliance import acknowledge, acknowledge_all_packs, acknowledge_policy, nag_arn
from stacks.network import VPC_WILDCARD_REASON, allow_sagemaker_vpc

SSM_PARAMETER_TYPES_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                           "parameters-section-structure.html#aws-ssm-parameter-types")
CFN_PARAMETER_DEFAULT_DOC = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_Parameter.html"
PUT_PARAMETER_DOC = "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html"


@dataclass(frozen=True)
class RegistryModelProps:
    buckets: SharedBuckets
    algorithm_repository_arn: str
    # The SSM parameter naming the approved package (naming.serving_package_parameter; ServingPackageParameter).
    serving_parameter: str
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
        # SSM-typed: every create and update re-reads the parameter, so no deployer can reset what the rollout set.
        self.package_arn = cdk.CfnParameter(
            stack, MODEL_PACKAGE_PARAMETER, type=SSM_PARAMETER_TYPE, default=props.serving_parameter,
            description=f"SSM parameter holding the approved model package to serve ({NO_MODEL_PACKAGE}: deploy "
                        "without endpoints). The rollout function writes it when a package of the group is approved.",
        )
        self.has_model = cdk.CfnCondition(stack, "HasModel", expression=cdk.Fn.condition_not(
            cdk.Fn.condition_equals(self.package_arn, NO_MODEL_PACKAGE)))

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


class ServingPackageParameter(Construct):
    """Creates the SSM parameter ``name`` with the value ``NO_MODEL_PACKAGE`` if it does not exist, and never writes
    it again: ``PutParameter`` with ``Overwrite: false`` on create and update (``ParameterAlreadyExists`` is the
    normal answer once the rollout has written it), nothing on delete (the approval outlives a stack's replacement;
    delete the parameter by hand when the environment is torn down for good). Standard tier, type String
    (PUT_PARAMETER_DOC); the value is a package ARN, no secret."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.name = name
        self.arn = stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))
        create_once = cr.AwsSdkCall(
            service="SSM", action="putParameter",
            parameters={"Name": name, "Value": NO_MODEL_PACKAGE, "Type": "String", "Overwrite": False,
                        "Description": "roadseg: the model package approved for serving (written by the rollout)"},
            physical_resource_id=cr.PhysicalResourceId.of(name),
            ignore_error_codes_matching="ParameterAlreadyExists")
        self.resource = cr.AwsCustomResource(
            self, "CreateOnce", on_create=create_once, on_update=create_once,
            policy=cr.AwsCustomResourcePolicy.from_statements([iam.PolicyStatement(
                actions=["ssm:PutParameter"], resources=[self.arn])]),
            install_latest_aws_sdk=False)
        acknowledge_all_packs(self.resource, "IAMNoInlinePolicy",
                              "CDK's AwsCustomResource policy: ssm:PutParameter on this one parameter, for its "
                              "provider only; a managed policy would not narrow it.")
        provider = stack.node.try_find_child(_AWS_CUSTOM_RESOURCE_PROVIDER_ID)
        if provider is not None:
            acknowledge_custom_resource_provider(provider)


_AWS_CUSTOM_RESOURCE_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"  # CDK's singleton AwsCustomResource handler


def acknowledge_custom_resource_provider(provider: Construct) -> None:
    """CDK's AwsCustomResource handler: a short-lived provisioning function that CDK generates (runtime, role and
    settings are CDK's), invoked by CloudFormation only, never by data traffic."""
    reason = ("CDK's AwsCustomResource provider: CloudFormation invokes it once per deploy to create the serving "
              "SSM parameter; CDK owns its runtime, role and settings.")
    for rule in ("AwsSolutions-L1", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                 "AWSLambdaBasicExecutionRole]"):
        acknowledge(provider, rule, reason)
    acknowledge_all_packs(provider, "LambdaConcurrency", reason + " One invocation per deploy: nothing to limit.")
    acknowledge_all_packs(provider, "LambdaDLQ", reason + " CloudFormation receives its failure and fails the "
                                                          "deploy: nothing is lost to a dead-letter queue.")
    acknowledge_all_packs(provider, "LambdaInsideVPC", reason + " It calls only the SSM API and handles no data; "
                                                                "the integration contracts exempt custom-resource "
                                                                "providers from isolated mode likewise.")
