"""Approval-driven rollout: approving a model package writes it into the serving SSM parameter and updates the
inference stack, whose SSM-typed ModelPackageArn re-reads it.

CloudFormation stays the owner of the endpoints: the Lambda re-deploys the stack's previous template (every
parameter as before; the SSM-typed one re-resolves), and the endpoints' blue/green policy with rollback alarms does
the rest. Because the package lives in SSM, a later `cdk deploy` or pipeline run keeps serving it.
Pages cited as ``aws_docs.<NAME>`` are in contracts/aws_docs.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from contracts.lambda_env import SERVICE_NAMES, RolloutEnvironment
from contracts.layout import ARTIFACTS
from contracts.naming import MODEL_PACKAGE_PARAMETER, neo_compilation_job_prefix
from envconfig.config import EnvironmentConfig, FunctionConfig
from stacks.bucket_set import SharedBuckets
from stacks.compliance import acknowledge_inline_policy, acknowledged
from stacks.functions.roadseg_function import RoadsegFunction, RoadsegFunctionProps
from stacks.network import VPC_WILDCARD_REASON, allow_sagemaker_vpc
from stacks.operations_key import OperationsKey

UPDATE_STACK_DOC = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStack.html"

ROLLOUT_TIMEOUT_SECONDS = 900  # Lambda's maximum: the longest a single attempt can wait for a busy stack
FUNCTION_NO_VPC = ("The function calls only regional AWS APIs (CloudFormation); it handles no data plane "
                   "traffic, so a VPC adds cost without narrowing what it can reach.")


@dataclass(frozen=True)
class ApprovalRolloutProps:
    config: EnvironmentConfig
    model_package_group: str
    model_role: iam.IRole
    key: OperationsKey  # the DLQ and the log group
    endpoint_names: tuple[str, ...]
    # Where the edge bundles are (Neo compilation, only with training.export.neo_targets).
    buckets: SharedBuckets | None = None
    # The SSM parameter the function writes the approved package into (naming.serving_package_parameter).
    serving_parameter: str | None = None
    # Isolated-network mode: {"subnets": [...], "security_group_ids": [...]}; the Neo compilation jobs run there.
    vpc_config: dict[str, list[str]] | None = None


class ApprovalRollout(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ApprovalRolloutProps) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        cfg = props.config
        neo_targets = tuple(cfg.training.export.neo_targets)
        self.neo_role = self._neo_role(props) if neo_targets else None
        # The function's dead-letter queue is also the rule target's: EventBridge (events it cannot deliver) and
        # Lambda (invocations that failed every retry, sent with the function's role) both write into it.
        props.key.admit_eventbridge_dead_letters()
        self.function = RoadsegFunction(self, "Function", RoadsegFunctionProps(
            handler="rollout.handler",
            description="Rolls an approved model package out to the roadseg endpoints",
            # No reserved concurrency: CloudFormation runs one update of the stack at a time and refuses a second
            # one while the first is in progress. The function waits for it (polling DescribeStacks) up to its
            # timeout; with Lambda's 2 retries (about 1 and 2 minutes apart) an approval outlasts a ~45-minute
            # deploy (a pipeline run) before it reaches the DLQ, and the SSM parameter it wrote first serves it on
            # the next deploy anyway.
            function=FunctionConfig(memory_mb=256, timeout_seconds=ROLLOUT_TIMEOUT_SECONDS),
            environment=RolloutEnvironment(
                stack_name=stack.stack_name, model_package_group=props.model_package_group,
                parameter_name=MODEL_PACKAGE_PARAMETER, service_name=SERVICE_NAMES["rollout"],
                neo_targets=neo_targets,
                neo_role_arn=self.neo_role.role_arn if self.neo_role else None,
                neo_kms_key_arn=props.buckets.key.key_arn if self.neo_role else None,
                neo_job_prefix=neo_compilation_job_prefix(cfg.prefix) if neo_targets else None,
                neo_subnets=tuple(props.vpc_config["subnets"]) if self.neo_role and props.vpc_config else None,
                neo_security_groups=(tuple(props.vpc_config["security_group_ids"])
                                     if self.neo_role and props.vpc_config else None)),
            key=props.key, log_retention_days=cfg.retention.log_group_days, retain=cfg.retain,
            no_vpc_reason=FUNCTION_NO_VPC, retry_attempts=2,
            log_group_id="Logs", dead_letter_queue_id="DeadLetters"))  # the ids they had before RoadsegFunction
        self.dead_letters = self.function.failed_invocations

        stack_arn = stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{stack.stack_name}/*")
        self.function.allow(iam.PolicyStatement(
            sid="UpdateOnlyThisStack",
            actions=["cloudformation:DescribeStacks", "cloudformation:UpdateStack"], resources=[stack_arn]),
            reasons={stack_arn: "This one stack; the trailing wildcard is the stack id CloudFormation assigns at "
                                "creation."})
        # UpdateStack resolves the template's SSM-typed parameters (CDK's BootstrapVersion) with the caller's
        # credentials (aws_docs.SSM_PARAMETER_TYPES_DOC; CDK's own deploy role holds ssm:GetParameters for this reason).
        self.function.allow(iam.PolicyStatement(
            sid="ResolveSsmTypedParameters", actions=["ssm:GetParameters"],
            resources=[self._ssm_parameter_arn(name) for name in ssm_parameter_names(stack)]))
        # The approved package lives in the serving SSM parameter (the stack's SSM-typed ModelPackageArn reads it).
        if props.serving_parameter:
            self.function.allow(iam.PolicyStatement(
                sid="WriteServingPackage", actions=["ssm:PutParameter"],
                resources=[self._ssm_parameter_arn(props.serving_parameter)]))
        # Without RoleARN, UpdateStack reuses the stack's service role (CDK's CloudFormation execution role) "even
        # if the users don't have permission to pass it" (UPDATE_STACK_DOC): no iam:PassRole on it. The grants
        # below are what the update needs when the stack was deployed without a service role.
        self.function.allow(iam.PolicyStatement(
            sid="PassOnlyTheModelRole", actions=["iam:PassRole"], resources=[props.model_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        # The update replaces the model and endpoint configs and updates the endpoints in place.
        sm = lambda kind: stack.format_arn(service="sagemaker", resource=kind, resource_name="*")  # noqa: E731
        models, endpoint_configs = sm("model"), sm("endpoint-config")
        packages = stack.format_arn(service="sagemaker", resource="model-package",
                                    resource_name=f"{props.model_package_group}/*")
        self.function.allow(iam.PolicyStatement(
            sid="ReplaceServingModel",
            actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel",
                     "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                     "sagemaker:DeleteEndpointConfig", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint",
                     "sagemaker:DescribeModelPackage"],
            resources=[models, endpoint_configs,
                       *(stack.format_arn(service="sagemaker", resource="endpoint", resource_name=name)
                         for name in props.endpoint_names),
                       packages]),
            reasons={models: "CloudFormation generates the model names during the update.",
                     endpoint_configs: "CloudFormation generates the endpoint-config names during the update.",
                     packages: "Versions of this project's model package group only."})

        if self.neo_role is not None:
            jobs = stack.format_arn(service="sagemaker", resource="compilation-job",
                                    resource_name=f"{neo_compilation_job_prefix(cfg.prefix)}*")
            self.function.allow(iam.PolicyStatement(
                sid="CompileApprovedBundles",
                actions=["sagemaker:CreateCompilationJob", "sagemaker:DescribeCompilationJob"], resources=[jobs]),
                reasons={jobs: "Compilation jobs of this project: <prefix>-neo-v<version>-<target>."})
            if props.vpc_config:  # CreateCompilationJob with VpcConfig (neo-vpc.html): the role places the job
                acknowledged(self.neo_role, lambda: allow_sagemaker_vpc(self.neo_role),
                             reasons=VPC_WILDCARD_REASON.strip())
            self.function.allow(iam.PolicyStatement(
                sid="PassOnlyTheNeoRole", actions=["iam:PassRole"], resources=[self.neo_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))

        self.rule = events.Rule(
            self, "OnApproval",
            description="Model package approved in the roadseg group",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [props.model_package_group], "ModelApprovalStatus": ["Approved"]}),
        )
        self.rule.add_target(targets.LambdaFunction(
            self.function, dead_letter_queue=self.dead_letters, retry_attempts=4,
            max_event_age=cdk.Duration.hours(2)))

        self.dlq_depth = self.function.dlq_depth_alarm(
            construct_id="DeadLetterDepth",
            description="A model approval could not be rolled out: see the rollout DLQ and function logs")
        self.errors = self.function.errors_alarm(description="The rollout function failed")
        self.alarms = [self.dlq_depth, self.errors]

    def _neo_role(self, props: ApprovalRolloutProps) -> iam.Role:
        """The role SageMaker Neo compiles with: read the bundles, write the compiled models next to them, logs and
        metrics (what CreateCompilationJob's RoleArn needs: aws_docs.NEO_COMPILATION_DOC)."""
        if props.buckets is None:
            raise ValueError("training.export.neo_targets needs the buckets (ApprovalRolloutProps.buckets)")
        stack, buckets = cdk.Stack.of(self), props.buckets
        role = iam.Role(self, "NeoRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description="roadseg: SageMaker Neo compiles approved edge bundles")
        reason = "Edge bundles lie under pipelines/<pipeline>/<execution>/bundle/, compiled models beside them."
        acknowledged(role, lambda: buckets.artifacts.grant_read(role, f"{ARTIFACTS.pipelines}*"), reasons=reason)
        acknowledged(role, lambda: buckets.artifacts.grant_put(role, f"{ARTIFACTS.pipelines}*"), reasons=reason)
        acknowledged(role, lambda: buckets.key.grant_encrypt_decrypt(role), reasons="The project key.")
        logs = stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/*",
                                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[logs])), reasons="SageMaker's log groups (/aws/sagemaker/CompilationJobs).")
        acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}})),
            reasons="PutMetricData supports no resource scoping; limited to SageMaker namespaces by condition.")
        acknowledge_inline_policy(role)
        return role

    def _ssm_parameter_arn(self, name: str) -> str:
        return cdk.Stack.of(self).format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))

    def allow_granting_volume_key(self, key) -> None:
        """An endpoint config with a storage-volume KmsKeyId makes CreateEndpoint/UpdateEndpoint create a KMS grant
        with the caller's credentials (https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html):
        needed when the stack has no service role, for AWS resources only."""
        self.function.allow(iam.PolicyStatement(
            sid="EndpointVolumeKeyGrants", actions=["kms:CreateGrant"], resources=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))

    def allow_updating(self, functions: list[lambda_.IFunction]) -> None:
        """The update also changes these functions' MODEL_PACKAGE_VERSION variable."""
        self.function.allow(iam.PolicyStatement(
            sid="UpdateModelVersionOfPreprocessors",
            actions=["lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"],
            resources=[fn.function_arn for fn in functions]))


def ssm_parameter_names(stack: cdk.Stack) -> list[str]:
    """SSM parameter names behind the stack's ``AWS::SSM::Parameter::Value<...>`` parameters: the default
    synthesizer's bootstrap version parameter (``/cdk-bootstrap/<qualifier>/version``, added at synthesis) and any
    declared so far. The integration contracts check the synthesized template against this grant."""
    names = {str(child.default) for child in stack.node.children
             if isinstance(child, cdk.CfnParameter) and str(child.type).startswith("AWS::SSM::Parameter::Value")}
    qualifier = getattr(stack.synthesizer, "bootstrap_qualifier", None)
    if isinstance(stack.synthesizer, cdk.DefaultStackSynthesizer):
        names.add(f"/cdk-bootstrap/{qualifier or cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER}/version")
    return sorted(names)
