"""Real-time front: one frame over HTTPS (function URL, IAM auth) -> this function -> real-time endpoint -> mask
and summary.
Pages cited as ``aws_docs.<NAME>`` are in contracts/aws_docs.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from contracts import naming
from contracts.lambda_env import PreprocessorEnvironment
from envconfig.config import EnvironmentConfig
from stacks.functions.preprocessor import preprocessor_function_props
from stacks.functions.roadseg_function import RoadsegFunction
from stacks.operations_key import OperationsKey


@dataclass(frozen=True)
class RealtimeFrontProps:
    config: EnvironmentConfig
    environment: PreprocessorEnvironment  # shared by the preprocessors; the function sets its service name
    key: OperationsKey  # the log group, the failed-invocation queue


class RealtimeFront(RoadsegFunction):
    """Also creates, next to itself, ``<id>InvokePolicy``: a managed policy for the front's callers."""

    def __init__(self, scope: Construct, construct_id: str, props: RealtimeFrontProps) -> None:
        super().__init__(scope, construct_id, preprocessor_function_props(
            props.config, props.environment, props.key, module="realtime",
            function=props.config.preprocessing.realtime,
            description="Preprocesses one frame and returns its mask from the real-time endpoint"))
        stack = cdk.Stack.of(self)
        self.url = self.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        self.invoke_policy = self._invoke_url_policy(scope, f"{construct_id}InvokePolicy", props.config.prefix)
        # InvokeEndpoint: Preprocessors grants it with RealtimeEndpoint.grant_invoke (the endpoint owns its ARN).
        self.errors = self.errors_alarm()
        self.alarms = [self.errors]
        cdk.CfnOutput(stack, naming.REALTIME_FRONT_URL, value=self.url.url,
                      description="POST a JPEG/PNG frame (SigV4-signed, service lambda) for its mask")

    def _invoke_url_policy(self, scope: Construct, construct_id: str, prefix: str) -> iam.ManagedPolicy:
        """What a caller of the IAM-authenticated function URL needs: since October 2025 a new function URL needs
        both lambda:InvokeFunctionUrl and lambda:InvokeFunction (aws_docs.FUNCTION_URL_DOC)."""
        policy = iam.ManagedPolicy(
            scope, construct_id,
            description=f"{prefix}: call the real-time front's function URL (SigV4)",
            statements=[
                iam.PolicyStatement(sid="InvokeTheFunctionUrl", actions=["lambda:InvokeFunctionUrl"],
                                    resources=[self.function_arn],
                                    conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}),
                iam.PolicyStatement(sid="InvokeTheFunction", actions=["lambda:InvokeFunction"],
                                    resources=[self.function_arn]),
            ])
        cdk.CfnOutput(cdk.Stack.of(self), naming.REALTIME_FRONT_INVOKE_POLICY_ARN, value=policy.managed_policy_arn,
                      description="Attach to the roles or users that call the real-time front")
        return policy

    def grant_invoke_url(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` call the function URL: lambda:InvokeFunctionUrl (URL auth type AWS_IAM) and
        lambda:InvokeFunction, which CDK grants only for calls made through the function URL
        (``lambda:InvokedViaFunctionUrl``), as aws_docs.FUNCTION_URL_DOC asks."""
        return super().grant_invoke_url(grantee)
