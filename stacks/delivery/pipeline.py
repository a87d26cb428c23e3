"""``DeliveryStack``: the CDK Pipelines ``CodePipeline`` that promotes roadseg through the ``delivery.stages``.

Waves, in order: Source (CodeStar connection or CodeCommit) -> Build (``Synth``: the set-up commands, the offline
gates of ``make test``, ``make synth`` of the delivery app, then ``python -m stacks.delivery.large_assets``, which
publishes the large file assets and strips them from the output that every deploy action receives: CodePipeline's
256 MB input-artifact limit) -> UpdatePipeline (self-mutation) -> Assets ->
one wave per stage: ``Preflight`` (``roadseg env preflight`` of that stage's nested cloud assembly, with the target
account's CDK lookup role), ``Approve`` (manual, before the stages of ``delivery.approval_stages``), the stacks'
deploys, then ``Smoke`` (roadseg/smoke.py with the stage's smoke role).

Target accounts are bootstrapped with ``--trust <tools account>``, which makes their deploy, publishing and lookup
roles assumable from the tools account (README "Deploy through a pipeline").
"""

from __future__ import annotations

import shlex

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import pipelines
from constructs import Construct

from contracts import naming
from envconfig.config import EnvironmentConfig
from stacks.checks.service_contracts.delivery import STRIP_MODULE
from stacks.compliance import partition_of
from stacks.delivery.compliance import acknowledge_pipeline, harden_artifact_bucket, literal_role_arns
from stacks.delivery.stage import RoadsegStage, smoke_role_name

# "When specifying a resource in the IAM policy, the service prefix needs to match that of the resource"
# (CodeStar Connections was renamed CodeConnections; console-created ARNs are arn:aws:codeconnections:... since 2024).
CONNECTION_RENAME_DOC = "https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html"
BOOTSTRAP_QUALIFIER = naming.CDK_BOOTSTRAP_QUALIFIER  # the CDK default; `cdk bootstrap --qualifier` changes it
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# Pinned, not the image's defaults, which change when a version reaches end of life ("To avoid unexpected changes to
# the build environment, we recommend specifying a runtime version in the buildspec file": RUNTIMES_DOC). Merged into
# every CodeBuild step (synth, assets, self-mutation, preflight, smoke).
RUNTIMES_DOC = "https://docs.aws.amazon.com/codebuild/latest/userguide/available-runtimes.html"
RUNTIME_VERSIONS = {"python": "3.12", "nodejs": "22"}


def delivery_stack_name(config: EnvironmentConfig) -> str:
    """``roadseg-delivery`` -> ``RoadsegDeliveryPipeline``."""
    return f"{naming.stack_name_prefix(config.prefix)}Pipeline"


def stage_id(env: str) -> str:
    """``staging`` -> ``Staging`` (the stage's construct id and the pipeline stage's name)."""
    return "".join(part.capitalize() for part in env.split("-"))


def use_connection_action(connection_arn: str) -> str:
    """The UseConnection action whose service prefix matches the connection ARN's (CONNECTION_RENAME_DOC)."""
    service = connection_arn.split(":")[2] if connection_arn.count(":") >= 5 else ""
    if service not in ("codeconnections", "codestar-connections"):
        raise ValueError(f"{connection_arn!r} is not a CodeConnections or CodeStar Connections ARN")
    return f"{service}:UseConnection"


def lookup_role_arn(config: EnvironmentConfig) -> str:
    return (f"arn:aws:iam::{config.account}:role/cdk-{BOOTSTRAP_QUALIFIER}-lookup-role-"
            f"{config.account}-{config.region}")


def file_publishing_role_arn(config: EnvironmentConfig) -> str:
    """The target's bootstrap role that cdk-assets assumes to upload file assets (its assets.json names it)."""
    return (f"arn:{partition_of(config.region)}:iam::{config.account}:role/cdk-{BOOTSTRAP_QUALIFIER}-file-publishing-"
            f"role-{config.account}-{config.region}")


def smoke_target_role_arn(config: EnvironmentConfig) -> str:
    return f"arn:aws:iam::{config.account}:role/{smoke_role_name(config.prefix)}"


def assume_role_command(role_arn: str, session: str) -> str:
    """A POSIX shell line exporting the credentials of ``role_arn`` (CodeBuild runs buildspec 0.2 commands in one
    shell, so later commands use them). It fails hard: ``set -e`` and no pipe after ``aws`` (whose status a pipe
    would hide), so a refused AssumeRole stops the build instead of going on with the tools account's credentials."""
    query = "Credentials.[AccessKeyId,SecretAccessKey,SessionToken]"
    field = lambda n: f'"$(printf \'%s\' "$creds" | cut -f{n})"'  # noqa: E731
    return (f"set -e; creds=\"$(aws sts assume-role --role-arn {role_arn} --role-session-name {session} "
            f"--query '{query}' --output text)\"; test -n \"$creds\"; "
            f"export AWS_ACCESS_KEY_ID={field(1)} AWS_SECRET_ACCESS_KEY={field(2)} AWS_SESSION_TOKEN={field(3)}")


class DeliveryStack(cdk.Stack):
    """The promotion pipeline in the tools account (``config``: the file with ``delivery:``); ``stages``: the
    stage environments' configs, in ``delivery.stages`` order; ``config_dir``: the folder of these files relative to
    the repository root (what the pipeline's synth and steps pass as ROADSEG_CONFIG_DIR)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig,
                 stages: list[EnvironmentConfig], config_dir: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        delivery = config.delivery
        if delivery is None:
            raise ValueError(f"environment '{config.name}' has no delivery section")
        self.config = config
        config_env = f"ROADSEG_CONFIG_DIR={shlex.quote(config_dir)}" if config_dir != "config" else ""
        self.source = self._source(config)
        # A CodeBuildStep (not a ShellStep) for its role: it may assume each stage's file-publishing role, as the
        # Assets wave's role may, to publish the large assets before stripping them from cdk.out.
        self.synth = pipelines.CodeBuildStep(
            "Synth", input=self.source,
            install_commands=["make .venv/.app-installed node_modules/.installed"],
            commands=[
                "make test",  # the offline gates: ruff, lint-imports, the pytest suite
                f"{config_env} make synth ENV={config.name}".strip(),
                f".venv/bin/python -m {STRIP_MODULE} cdk.out",  # last: what remains is the output artifact
            ],
            primary_output_directory="cdk.out",
            role_policy_statements=[iam.PolicyStatement(
                sid="PublishLargeAssets", actions=["sts:AssumeRole"],
                resources=[file_publishing_role_arn(stage) for stage in stages])])
        self.pipeline = pipelines.CodePipeline(
            self, "Pipeline", pipeline_name=config.prefix, synth=self.synth, cross_account_keys=True,
            enable_key_rotation=True, pipeline_type=codepipeline.PipelineType.V2, publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE,
                                                             compute_type=codebuild.ComputeType.MEDIUM),
                partial_build_spec=codebuild.BuildSpec.from_object(
                    {"phases": {"install": {"runtime-versions": RUNTIME_VERSIONS}}})))
        self.stages: list[RoadsegStage] = []
        self.preflight_steps: dict[str, pipelines.CodeBuildStep] = {}
        self.approval_steps: dict[str, pipelines.ManualApprovalStep] = {}
        self.smoke_steps: dict[str, pipelines.CodeBuildStep] = {}
        for stage_config in stages:
            self._add_stage(config, stage_config, config_env, delivery.approval_stages)
        self.pipeline.build_pipeline()
        self._grant_connection(config)
        harden_artifact_bucket(self.pipeline.pipeline.artifact_bucket)
        acknowledge_pipeline(self)
        literal_role_arns(self, self.pipeline.pipeline.node.default_child, partition_of(config.region))

    def _source(self, config: EnvironmentConfig) -> pipelines.CodePipelineSource:
        source = config.delivery.source
        if source.codecommit:
            repository = codecommit.Repository.from_repository_name(self, "Repository", source.repository)
            return pipelines.CodePipelineSource.code_commit(repository, source.branch)
        return pipelines.CodePipelineSource.connection(source.repository, source.branch,
                                                       connection_arn=source.connection_arn)

    def _grant_connection(self, config: EnvironmentConfig) -> None:
        """CDK (2.275) grants the source action's role codestar-connections:UseConnection whatever the ARN; a
        codeconnections ARN needs codeconnections:UseConnection (CONNECTION_RENAME_DOC)."""
        arn = config.delivery.source.connection_arn
        if not arn:
            return
        action = use_connection_action(arn)
        source_stage = self.pipeline.pipeline.stages[0]
        for role in source_roles(source_stage):
            role.add_to_principal_policy(iam.PolicyStatement(sid="UseTheConnection", actions=[action],
                                                             resources=[arn]))

    def _step_role(self, config: EnvironmentConfig, kind: str, env: str, target_role_arn: str) -> iam.Role:
        """The CodeBuild role of one step, with a fixed name (the target's smoke role trusts exactly it) and only
        sts:AssumeRole on the one target role; CDK Pipelines adds the logs/artifact grants."""
        role = iam.Role(self, f"{stage_id(env)}{kind}Role", role_name=f"{config.prefix}-{kind.lower()}-{env}",
                        assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
                        description=f"roadseg delivery: the {kind.lower()} step of stage {env}")
        role.add_to_policy(iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[target_role_arn]))
        return role

    def _add_stage(self, config: EnvironmentConfig, target: EnvironmentConfig, config_env: str,
                   approvals: list[str]) -> None:
        env = target.name
        caller = f"{config.prefix}-smoke-{env}"
        stage = RoadsegStage(self, stage_id(env), config=target, tools_account=config.account,
                             smoke_caller_role_name=caller)
        self.stages.append(stage)
        install = ["make .venv/.app-installed"]
        preflight = pipelines.CodeBuildStep(
            "Preflight", input=self.source, additional_inputs={"cdk.out": self.synth.primary_output},
            install_commands=install,
            commands=[assume_role_command(lookup_role_arn(target), f"roadseg-preflight-{env}"),
                      f"{config_env} .venv/bin/roadseg --env {env} env preflight "
                      f"--assembly cdk.out/{stage.artifact_id}".strip()],
            role=self._step_role(config, "Preflight", env, lookup_role_arn(target)))
        pre: list[pipelines.Step] = [preflight]
        if env in approvals:
            approval = pipelines.ManualApprovalStep(
                "Approve", comment=f"Deploy roadseg to {env} ({target.account}/{target.region})? The previous "
                                   "stages deployed and passed their smoke tests; this stage's preflight passed.")
            approval.add_step_dependency(preflight)
            self.approval_steps[env] = approval
            pre.append(approval)
        smoke = pipelines.CodeBuildStep(
            "Smoke", input=self.source, install_commands=install,
            commands=[assume_role_command(smoke_target_role_arn(target), f"roadseg-smoke-{env}"),
                      f"{config_env} .venv/bin/roadseg --env {env} env outputs".strip(),
                      f"{config_env} .venv/bin/python -m roadseg.smoke --env {env}".strip()],
            role=self._step_role(config, "Smoke", env, smoke_target_role_arn(target)))
        self.pipeline.add_stage(stage, pre=pre, post=[smoke])
        self.preflight_steps[env] = preflight
        self.smoke_steps[env] = smoke



def source_roles(stage: codepipeline.IStage) -> list[iam.Role]:
    """The roles CodePipeline created for the actions of ``stage`` (under ``<Pipeline>/<stage name>/<action>``)."""
    scope = stage.pipeline.node.try_find_child(stage.stage_name)
    return [child for child in (scope.node.find_all() if scope else []) if isinstance(child, iam.Role)]
