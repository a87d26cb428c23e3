"""One environment as a deployable unit of the promotion pipeline: its stacks (``RoadsegStacks``, the same as
``make deploy`` builds) in its own account and region, plus the role the pipeline's smoke test assumes there."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts import naming
from envconfig.config import EnvironmentConfig
from stacks.compliance import acknowledge, acknowledge_inline_policy, nag_arn
from stacks.environment import RoadsegStacks


def smoke_role_name(prefix: str) -> str:
    """The role in the target account that the pipeline's smoke test assumes (``<prefix>-pipeline-smoke``)."""
    return f"{prefix}-pipeline-smoke"


def smoke_stack_name(prefix: str) -> str:
    return f"{naming.stack_name_prefix(prefix)}PipelineSmoke"


class SmokeAccessStack(cdk.Stack):
    """A role in the environment's account for the pipeline's smoke test (roadseg/smoke.py): read the stacks'
    outputs and the serving SSM parameter, and call the real-time front (its invoke policy), assumable only by
    ``caller_role_name`` of the tools account."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, stacks: RoadsegStacks,
                 tools_account: str, caller_role_name: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        caller = f"arn:{self.partition}:iam::{tools_account}:role/{caller_role_name}"
        self.role = iam.Role(
            self, "Role", role_name=smoke_role_name(config.prefix),
            description=f"{config.prefix}: the delivery pipeline's smoke test (stack outputs, one real-time frame)",
            assumed_by=iam.AccountPrincipal(tools_account).with_conditions(
                {"StringEquals": {"aws:PrincipalArn": caller}}),
            managed_policies=[stacks.inference.preprocessors.realtime.invoke_policy],
            max_session_duration=cdk.Duration.hours(1))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudformation:DescribeStacks"],
            resources=[self.format_arn(service="cloudformation", resource="stack", resource_name=f"{name}/*")
                       for name in naming.stack_names(config.prefix).values()]))
        # roadseg/smoke.py: a stage whose serving parameter names a package must still have its endpoints.
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["ssm:GetParameter"],
            resources=[self.format_arn(service="ssm", resource="parameter",
                                       resource_name=naming.serving_package_parameter(config.prefix).lstrip("/"))]))
        for name in naming.stack_names(config.prefix).values():
            acknowledge(self.role, "AwsSolutions-IAM5[Resource::" + nag_arn(self, "cloudformation", f"stack/{name}/*")
                        + "]", "A stack ARN ends in the ID CloudFormation generates; the stack name is fixed.")
        acknowledge_inline_policy(self.role)


class RoadsegStage(cdk.Stage):
    """The stacks of one environment (``config``), deployed by the pipeline into the config's account/region."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, tools_account: str,
                 smoke_caller_role_name: str, **kwargs) -> None:
        if not (config.account and config.region):
            raise ValueError(f"environment '{config.name}' must pin account and region to be a pipeline stage")
        super().__init__(scope, construct_id, env=cdk.Environment(account=config.account, region=config.region),
                         **kwargs)
        self.config = config
        self.stacks = RoadsegStacks(self, config)
        name = smoke_stack_name(config.prefix)
        self.smoke = SmokeAccessStack(
            self, name, stack_name=name, config=config, stacks=self.stacks, tools_account=tools_account,
            caller_role_name=smoke_caller_role_name,
            env=cdk.Environment(account=config.account, region=config.region),
            tags={"roadseg:environment": config.name, **config.tags},
            description=f"roadseg {config.name}: the delivery pipeline's smoke-test role")

    @property
    def all(self) -> list[cdk.Stack]:
        return [*self.stacks.all, self.smoke]
