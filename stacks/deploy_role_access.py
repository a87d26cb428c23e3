"""What the CDK deploy role needs beyond the bootstrap template: read access to the SSM parameters behind the app's
SSM-typed template parameters (``AWS::SSM::Parameter::Value<...>``).

CloudFormation resolves those parameters when it creates a change set, with the credentials of the caller
(SSM_PARAMETER_TYPES_DOC). `cdk deploy` and the delivery pipeline's CloudFormation actions call CreateChangeSet as the
bootstrap deploy role ``cdk-<qualifier>-deploy-role-<account>-<region>``, which the bootstrap template lets read only
the bootstrap version parameter: its ``ReadVersion`` statement, "CreateChangeSet uses this to evaluate any SSM
parameters (like `CdkBootstrapVersion`)" (BOOTSTRAP_TEMPLATE_DOC). Without more, such a deploy fails with
"AccessDenied. User doesn't have permission to call ssm:GetParameters" (aws-cdk#20959; for pipelines,
aws-samples/aws-cross-account-cicd-pipeline#33).

``DeployRoleParameterAccess`` attaches a customer-managed policy to that role, from the data stack: every other stack
of an environment imports the data stack's exports, so it deploys first, in `cdk deploy` and in the pipeline alike.
With the default synthesizer the role always exists (the bootstrap stack is a precondition of every deploy), also when
an operator deploys with their own credentials (the CLI then does not assume it, and the policy only sits there). With
another synthesizer no bootstrap deploy role is used, so nothing is attached.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from envconfig.network import IsolatedNetworkConfig, ssm_parameter_name

SSM_PARAMETER_TYPES_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                           "parameters-section-structure.html#aws-ssm-parameter-types")
# Also node_modules/aws-cdk/lib/api/bootstrap/bootstrap-template.yaml (the pinned CLI's copy, what it bootstraps).
BOOTSTRAP_TEMPLATE_DOC = ("https://github.com/aws/aws-cdk-cli/blob/main/packages/aws-cdk/lib/api/bootstrap/"
                          "bootstrap-template.yaml")
READ_ACTIONS = ("ssm:GetParameters", "ssm:GetParameter")  # what the bootstrap's ReadVersion statement grants


def network_ssm_parameters(network: IsolatedNetworkConfig | None) -> list[str]:
    """The SSM parameters that isolated-import mode's ``ssm:/name`` references make template parameters of (the VPC,
    subnets, route tables and security groups: stacks.network ``_resolve``), in the file's order, once each."""
    imported = network.import_ if network is not None and network.mode == "import" else None
    if imported is None:
        return []
    values = [imported.vpc_id, *imported.private_subnet_ids, *imported.route_table_ids, *imported.security_group_ids]
    return list(dict.fromkeys(name for name in map(ssm_parameter_name, values) if name))


def deploy_role_name(stack: cdk.Stack) -> str | None:
    """The name of the role the default synthesizer deploys ``stack`` with, account and region as CloudFormation
    resolves them; None for other synthesizers."""
    synthesizer = stack.synthesizer
    if not isinstance(synthesizer, cdk.DefaultStackSynthesizer):
        return None
    # e.g. arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-deploy-role-${AWS::AccountId}-${AWS::Region}
    name = synthesizer.deploy_role_arn.rsplit("/", 1)[-1]
    return cdk.Fn.sub(name) if "${" in name else name


class DeployRoleParameterAccess(Construct):
    """``ssm:GetParameters``/``ssm:GetParameter`` for the bootstrap deploy role on exactly ``parameter_names``
    (names as templates declare them, with a leading ``/``)."""

    def __init__(self, scope: Construct, construct_id: str, *, parameter_names: list[str]) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.policy: iam.ManagedPolicy | None = None
        role_name = deploy_role_name(stack)
        if role_name is None or not parameter_names:
            return
        role = iam.Role.from_role_name(self, "CdkDeployRole", role_name)
        # Managed, not inline: the bootstrap stack owns the role's inline policies, and an update of it never
        # touches a policy it did not create.
        self.policy = iam.ManagedPolicy(
            self, "ResolveSsmParameters", roles=[role],
            description="roadseg: the CDK deploy role resolves the SSM-typed parameters of this environment's "
                        "stacks when it creates their change sets",
            statements=[iam.PolicyStatement(
                sid="ResolveSsmTypedParameters", actions=list(READ_ACTIONS),
                resources=[stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))
                           for name in parameter_names])])
