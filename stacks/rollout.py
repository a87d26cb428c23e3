"""Approval-driven rollout: approving a model package updates the inference stack's ModelPackageArn.

CloudFormation stays the owner of the endpoints: the Lambda re-deploys the stack's previous template with the
new parameter value, and the endpoints' blue/green policy with rollback alarms does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from contracts.lambda_env import SERVICE_NAMES, RolloutEnvironment
from contracts.naming import MODEL_PACKAGE_PARAMETER
from stacks.compliance import acknowledge, acknowledge_all_packs, acknowledge_policy, nag_arn
from stacks.config import EnvironmentConfig
from stacks.lambda_code import RUNTIME, acknowledge_unreserved_concurrency, function_log_group, lambda_code
from stacks.metric_catalogue import metric
from stacks.operations_key import OperationsKey

UPDATE_STACK_DOC = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStack.html"
SSM_PARAMETER_TYPES_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                           "parameters-section-structure.html#aws-ssm-parameter-types")

FUNCTION_NO_VPC = ("The function calls only regional AWS APIs (CloudFormation); it handles no data plane "
                   "traffic, so a VPC adds cost without narrowing what it can reach.")


@dataclass(frozen=True)
class ApprovalRolloutProps:
    config: EnvironmentConfig
    model_package_group: str
    model_role: iam.IRole
    key: OperationsKey  # the DLQ and the log group
    endpoint_names: tuple[str, ...]


class ApprovalRollout(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ApprovalRolloutProps) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        cfg = props.config
        self.dead_letters = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=props.key.key,
            enforce_ssl=True, retention_period=cdk.Duration.days(14))
        acknowledge(self.dead_letters, "AwsSolutions-SQS3", "This queue is itself the dead-letter queue.")
        # Both EventBridge (events it cannot deliver) and Lambda (invocations that failed every retry, sent with
        # the function's role) write into this encrypted queue.
        props.key.admit_eventbridge_dead_letters()

        log_group = function_log_group(self, "Logs", cfg, props.key)
        self.function = lambda_.Function(
            self, "Function",
            runtime=RUNTIME, code=lambda_code(), handler="rollout.handler",
            description="Rolls an approved model package out to the roadseg endpoints",
            # No reserved concurrency: CloudFormation runs one update of the stack at a time and refuses a second
            # one while the first is in progress, which the function treats as retryable.
            timeout=cdk.Duration.seconds(60), memory_size=256,
            retry_attempts=2, dead_letter_queue=self.dead_letters,
            log_group=log_group,
            environment=RolloutEnvironment(
                stack_name=stack.stack_name, model_package_group=props.model_package_group,
                parameter_name=MODEL_PACKAGE_PARAMETER, service_name=SERVICE_NAMES["rollout"]).to_env(),
        )
        props.key.grant_send_to_queues(self.function)  # sqs:SendMessage alone cannot write to an encrypted queue
        stack_arn = stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{stack.stack_name}/*")
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="UpdateOnlyThisStack",
            actions=["cloudformation:DescribeStacks", "cloudformation:UpdateStack"], resources=[stack_arn]))
        # UpdateStack resolves the template's SSM-typed parameters (CDK's BootstrapVersion) with the caller's
        # credentials (SSM_PARAMETER_TYPES_DOC; CDK's own deploy role holds ssm:GetParameters for this reason).
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="ResolveSsmTypedParameters", actions=["ssm:GetParameters"],
            resources=[self._ssm_parameter_arn(name) for name in ssm_parameter_names(stack)]))
        # Without RoleARN, UpdateStack reuses the stack's service role (CDK's CloudFormation execution role) "even
        # if the users don't have permission to pass it" (UPDATE_STACK_DOC): no iam:PassRole on it. The grants
        # below are what the update needs when the stack was deployed without a service role.
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="PassOnlyTheModelRole", actions=["iam:PassRole"], resources=[props.model_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        # The update replaces the model and endpoint configs and updates the endpoints in place.
        sm = lambda kind: stack.format_arn(service="sagemaker", resource=kind, resource_name="*")  # noqa: E731
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="ReplaceServingModel",
            actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel",
                     "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                     "sagemaker:DeleteEndpointConfig", "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint",
                     "sagemaker:DescribeModelPackage"],
            resources=[sm("model"), sm("endpoint-config"),
                       *(stack.format_arn(service="sagemaker", resource="endpoint", resource_name=name)
                         for name in props.endpoint_names),
                       stack.format_arn(service="sagemaker", resource="model-package",
                                        resource_name=f"{props.model_package_group}/*")]))

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

        self.dlq_depth = cw.Alarm(
            self, "DeadLetterDepth",
            metric=metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": self.dead_letters.queue_name},
                          statistic="Maximum", period=cdk.Duration.minutes(5)),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            alarm_description="A model approval could not be rolled out: see the rollout DLQ and function logs")
        self.errors = cw.Alarm(
            self, "FunctionErrors",
            metric=metric("AWS/Lambda", "Errors", {"FunctionName": self.function.function_name}, statistic="Sum",
                          period=cdk.Duration.minutes(5)),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="The rollout function failed")
        self.alarms = [self.dlq_depth, self.errors]

        account = nag_arn(self, "sagemaker", "")[:-1]
        acknowledge_policy(self.function.role, actions=[], resources={
            nag_arn(self, "cloudformation", f"stack/{stack.stack_name}/*"):
                "This one stack; the trailing wildcard is the stack id CloudFormation assigns at creation.",
            f"{account}:model-package/{props.model_package_group}/*":
                "Versions of this project's model package group only.",
            f"{account}:model/*": "CloudFormation generates the model names during the update.",
            f"{account}:endpoint-config/*": "CloudFormation generates the endpoint-config names during the update.",
        })
        acknowledge(self.function.role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                    "service-role/AWSLambdaBasicExecutionRole]",
                    "Grants only CreateLogStream/PutLogEvents, which every function needs for its own log group.")
        acknowledge_all_packs(self.function, "LambdaInsideVPC", FUNCTION_NO_VPC)
        acknowledge_unreserved_concurrency(self.function)

    def _ssm_parameter_arn(self, name: str) -> str:
        return cdk.Stack.of(self).format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))

    def allow_granting_volume_key(self, key) -> None:
        """An endpoint config with a storage-volume KmsKeyId makes CreateEndpoint/UpdateEndpoint create a KMS grant
        with the caller's credentials (https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html):
        needed when the stack has no service role, for AWS resources only."""
        self.function.add_to_role_policy(iam.PolicyStatement(
            sid="EndpointVolumeKeyGrants", actions=["kms:CreateGrant"], resources=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))

    def allow_updating(self, functions: list[lambda_.IFunction]) -> None:
        """The update also changes these functions' MODEL_PACKAGE_VERSION variable."""
        self.function.add_to_role_policy(iam.PolicyStatement(
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
