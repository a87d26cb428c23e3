"""The promotion pipeline (stacks/delivery): config, the synthesized example (config/examples), its gates, and that
the default synth is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts import naming
from envconfig.config import CONFIG_DIR, ConfigError, EnvironmentConfig, available_environments, load_config
from stacks.app_builder import ROOT

EXAMPLES = ROOT / "config" / "examples"


def _delivery(**delivery) -> dict:
    return {"name": "tools", "prefix": "roadseg-tools", "account": "111111111111", "region": "eu-west-1",
            "delivery": {"source": {"connection_arn": "arn:aws:codeconnections:eu-west-1:111111111111:connection/abc",
                                    "repository": "org/roadseg"}, "stages": ["staging", "prod"], **delivery}}


# -- config -----------------------------------------------------------------------------------------------------------

def test_delivery_is_absent_by_default_and_the_examples_are_not_environments():
    assert all(load_config(name).delivery is None for name in available_environments())
    assert "delivery" not in available_environments() and "staging" not in available_environments()
    config = load_config("delivery", EXAMPLES)
    assert config.delivery.stages == ["staging", "prod"]
    assert config.delivery.approval_stages == ["prod"]  # default: before every stage named prod
    assert {load_config(name, EXAMPLES).account for name in config.delivery.stages} == {"222222222222", "333333333333"}


def test_manual_approval_can_name_other_stages():
    config = EnvironmentConfig.model_validate(_delivery(manual_approval_before=["staging", "prod"]))
    assert config.delivery.approval_stages == ["staging", "prod"]
    assert EnvironmentConfig.model_validate(_delivery(manual_approval_before=[])).delivery.approval_stages == []


@pytest.mark.parametrize(("change", "message"), [
    ({"manual_approval_before": ["qa"]}, "manual_approval_before names ['qa'], which are not stages"),
    ({"stages": ["staging", "staging"]}, "stages must be unique"),
    ({"stages": ["tools"]}, "'tools' is the tools environment itself"),
    ({"source": {"repository": "org/roadseg"}}, "set exactly one of 'connection_arn'"),
    ({"source": {"codecommit": True, "repository": "org/roadseg"}}, "a CodeCommit repository name has no '/'"),
    ({"source": {"connection_arn": "arn:aws:s3:::bucket", "repository": "org/roadseg"}},
     "is not a CodeStar connection ARN"),
])
def test_invalid_delivery_sections_fail_with_one_line(tmp_path, change, message):
    raw = _delivery(**change)
    (tmp_path / "tools.yaml").write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as error:
        load_config("tools", tmp_path)
    assert message in str(error.value)
    assert all(line.strip().startswith(f"{tmp_path}") for line in str(error.value).splitlines()[1:])


def test_a_stage_must_exist_and_pin_its_account(tmp_path):
    import aws_cdk as cdk

    from stacks.app_builder import build_app

    (tmp_path / "tools.yaml").write_text(json.dumps(_delivery(stages=["qa"])))
    with pytest.raises(ConfigError, match=r"delivery.stages: no configuration for environment 'qa'"):
        build_app(load_config("tools", tmp_path), cdk.App(), tmp_path)


def test_roadseg_config_dir_variable_points_load_config_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(EXAMPLES))
    assert load_config("staging").account == "222222222222"
    assert load_config("prod").account == "333333333333"
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(tmp_path))
    assert load_config("staging", EXAMPLES).account == "222222222222"  # another explicit folder wins
    monkeypatch.delenv("ROADSEG_CONFIG_DIR")
    assert load_config("prod").account == load_config("prod", CONFIG_DIR).account == "111111111111"


# -- the synthesized example -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    import aws_cdk as cdk

    from stacks.app_builder import build_app, cdk_json_context

    outdir = tmp_path_factory.mktemp("cdk-delivery")
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": "delivery",
                                               "aws:cdk:bundling-stacks": [], "aws:cdk:disable-asset-staging": True})
    app, stacks = build_app(load_config("delivery", EXAMPLES), app, EXAMPLES)
    app.synth()  # raises on any unacknowledged cdk-nag finding, in the pipeline stack and in every stage
    template = json.loads((outdir / f"{stacks.pipeline.artifact_id}.template.json").read_text())
    return outdir, stacks, template


def _resources(template: dict, kind: str) -> dict:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _pipeline(template: dict) -> dict:
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    return pipeline["Properties"]


def _buildspec(template: dict, logical_prefix: str) -> dict:
    (project,) = [r for k, r in _resources(template, "AWS::CodeBuild::Project").items() if k.startswith(logical_prefix)]
    return json.loads(project["Properties"]["Source"]["BuildSpec"])


def test_pipeline_stages_run_in_the_configured_order(delivery):
    _, _, template = delivery
    pipeline = _pipeline(template)
    assert [s["Name"] for s in pipeline["Stages"]] == ["Source", "Build", "UpdatePipeline", "Assets", "Staging", "Prod"]
    assert pipeline["PipelineType"] == "V2"
    source = pipeline["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["FullRepositoryId"] == "example-org/roadseg"


def test_each_stage_deploys_its_environment_into_its_own_account(delivery):
    _, stacks, template = delivery
    expected = {"Staging": "222222222222", "Prod": "333333333333"}
    for stage in _pipeline(template)["Stages"][4:]:
        deploys = [a for a in stage["Actions"] if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        prefix = naming.stack_name_prefix(f"roadseg-{stage['Name'].lower()}")
        assert {a["Configuration"]["StackName"] for a in deploys} == {
            f"{prefix}Data", f"{prefix}Training", f"{prefix}Inference", f"{prefix}PipelineSmoke"}
        account = expected[stage["Name"]]
        assert all(f":iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-eu-west-1" in json.dumps(a["RoleArn"])
                   for a in deploys)
        assert all(a["Configuration"]["RoleArn"] ==  # the change sets run as the target's execution role
                   f"arn:aws:iam::{account}:role/cdk-hnb659fds-cfn-exec-role-{account}-eu-west-1"
                   for a in deploys if a["Name"].endswith(".Prepare"))
    assert [s.config.name for s in stacks.stages] == ["staging", "prod"]


def _run_orders(stage: dict) -> dict[str, int]:
    return {a["Name"]: a["RunOrder"] for a in stage["Actions"]}


def test_preflight_then_manual_approval_precede_prod_and_smoke_follows(delivery):
    _, _, template = delivery
    staging, prod = _pipeline(template)["Stages"][4:]
    assert not [a for a in staging["Actions"] if a["ActionTypeId"]["Category"] == "Approval"]
    orders = _run_orders(prod)
    first_deploy = min(o for name, o in orders.items() if name.endswith(".Prepare"))
    assert orders["Preflight"] < orders["Approve"] < first_deploy
    assert orders["Smoke"] == max(orders.values())
    staging_orders = _run_orders(staging)
    assert staging_orders["Preflight"] == 1 and staging_orders["Smoke"] == max(staging_orders.values())


def test_synth_step_runs_the_offline_gates_before_producing_the_assembly(delivery):
    _, _, template = delivery
    spec = _buildspec(template, "PipelineBuildSynth")
    assert spec["phases"]["install"]["commands"] == ["make .venv/.app-installed node_modules/.installed"]
    assert spec["phases"]["build"]["commands"] == [
        "make test", "ROADSEG_CONFIG_DIR=config/examples make synth ENV=delivery",
        ".venv/bin/python -m stacks.delivery.large_assets cdk.out"]  # last: the output is what remains
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def _synth_role_statements(template: dict) -> list[dict]:
    (project,) = [r for k, r in _resources(template, "AWS::CodeBuild::Project").items()
                  if k.startswith("PipelineBuildSynth")]
    role_id = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    return [s for policy in _resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]]


def test_the_synth_role_may_assume_exactly_the_file_publishing_roles_the_stages_assets_name(delivery):
    outdir, stacks, template = delivery
    named = set()
    for stage in stacks.stages:
        for manifest in (outdir / stage.artifact_id).glob("*.assets.json"):
            for entry in json.loads(manifest.read_text())["files"].values():
                named |= {d["assumeRoleArn"].replace("${AWS::Partition}", "aws")
                          for d in entry["destinations"].values()}
    assert named == {f"arn:aws:iam::{a}:role/cdk-hnb659fds-file-publishing-role-{a}-eu-west-1"
                     for a in ("222222222222", "333333333333")}
    assume = [s for s in _synth_role_statements(template) if s["Action"] == "sts:AssumeRole"]
    assert assume == [{"Sid": "PublishLargeAssets", "Action": "sts:AssumeRole", "Effect": "Allow",
                       "Resource": sorted(named)}]


def test_preflight_and_smoke_steps_use_the_targets_roles(delivery):
    _, stacks, template = delivery
    prod = next(s for s in stacks.stages if s.config.name == "prod")
    preflight = " ".join(_buildspec(template, "PipelineProdPreflight")["phases"]["build"]["commands"])
    assert "role/cdk-hnb659fds-lookup-role-333333333333-eu-west-1" in preflight
    assert f"roadseg --env prod env preflight --assembly cdk.out/{prod.artifact_id}" in preflight
    smoke = " ".join(_buildspec(template, "PipelineProdSmoke")["phases"]["build"]["commands"])
    assert "role/roadseg-prod-pipeline-smoke" in smoke
    assert "roadseg --env prod env outputs" in smoke and "python -m roadseg.smoke --env prod" in smoke


def test_the_smoke_role_trusts_only_the_pipelines_smoke_step(delivery):
    outdir, stacks, template = delivery
    roles = {r["Properties"].get("RoleName"): r for r in _resources(template, "AWS::IAM::Role").values()}
    assert "roadseg-delivery-smoke-prod" in roles
    prod = next(s for s in stacks.stages if s.config.name == "prod")
    smoke = json.loads((outdir / prod.artifact_id / f"{prod.smoke.artifact_id}.template.json").read_text())
    (role,) = _resources(smoke, "AWS::IAM::Role").values()
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {
        "aws:PrincipalArn": "arn:aws:iam::111111111111:role/roadseg-delivery-smoke-prod"}}
    assert role["Properties"]["RoleName"] == "roadseg-prod-pipeline-smoke"


def test_cross_account_keys_encrypt_the_artifacts(delivery):
    _, _, template = delivery
    (key,) = _resources(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    assert _pipeline(template)["ArtifactStore"]["EncryptionKey"]["Type"] == "KMS"
    (bucket,) = _resources(template, "AWS::S3::Bucket").values()
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_stage_stacks_keep_the_names_operators_use(delivery):
    outdir, stacks, _ = delivery
    for stage in stacks.stages:
        manifest = json.loads((outdir / stage.artifact_id / "manifest.json").read_text())
        names = {a["properties"].get("stackName") for a in manifest["artifacts"].values()
                 if a["type"] == "aws:cloudformation:stack"}
        prefix = naming.stack_name_prefix(stage.config.prefix)
        assert names == {*naming.stack_names(stage.config.prefix).values(), f"{prefix}PipelineSmoke"}


def test_delivery_is_nag_clean(delivery):
    from tests.stacks.test_quality_gates import SINGLE_RULE, acknowledgments

    outdir, stacks, _ = delivery
    report = json.loads((outdir / "validation-report.json").read_text())
    assert all(p["conclusion"] == "success" for p in report["pluginReports"]), report
    found = acknowledgments(stacks.pipeline)
    assert found
    for path, rule, reason in found:
        assert SINGLE_RULE.fullmatch(rule), (path, rule)
        assert len(reason) >= 20, (path, rule, reason)


def test_cfn_lint_is_clean_on_the_pipeline_and_every_stage(delivery):
    from cfnlint.api import ManualArgs

    from tests.stacks.test_quality_gates import CFN_LINT_IGNORED, _lint

    outdir, _, _ = delivery
    args = ManualArgs(ignore_checks=list(CFN_LINT_IGNORED), regions=["eu-west-1"])
    templates = sorted(outdir.rglob("*.template.json"))
    assert len(templates) == 1 + 2 * 4
    for template_file in templates:
        matches = _lint(template_file, args)
        assert not matches, f"{template_file.name}:\n" + "\n".join(str(m) for m in matches)


def test_integration_contracts_report_nothing(delivery):
    from stacks.checks.service_contracts import Assembly, Context, check

    outdir, stacks, _ = delivery
    assert check(Assembly.from_directory(outdir), Context(account_pinned=True)) == []
    for stage in stacks.stages:
        context = Context(reserved_concurrency_declared=stage.config.reserved_lambda_concurrency, account_pinned=True)
        assert check(Assembly.from_directory(outdir / stage.artifact_id), context) == [], stage.config.name


def test_the_default_dev_synth_is_unchanged(synth):
    env = synth("dev")
    assert {p.name for p in env.template_files} == {
        f"{name}.template.json" for name in naming.stack_names("roadseg-dev").values()}
    assert not list(Path(env.outdir).glob("assembly-*"))
    manifest = json.loads((env.outdir / "manifest.json").read_text())
    assert not any("stackName" in a.get("properties", {}) for a in manifest["artifacts"].values())
    assert all("AWS::CodePipeline::Pipeline" not in p.read_text() for p in env.template_files)


# -- the source connection, the step shells and runtimes ---------------------------------------------------------------

@pytest.mark.parametrize(("arn", "action"), [
    ("arn:aws:codeconnections:eu-west-1:111111111111:connection/abc", "codeconnections:UseConnection"),
    ("arn:aws:codestar-connections:eu-west-1:111111111111:connection/abc", "codestar-connections:UseConnection"),
])
def test_use_connection_action_matches_the_arns_service_prefix(arn, action):
    from stacks.delivery.pipeline import use_connection_action

    assert use_connection_action(arn) == action


def test_use_connection_action_refuses_other_arns():
    from stacks.delivery.pipeline import use_connection_action

    with pytest.raises(ValueError, match="not a CodeConnections or CodeStar Connections ARN"):
        use_connection_action("arn:aws:s3:::bucket")


def test_the_source_role_may_use_the_codeconnections_connection(delivery):
    _, _, template = delivery
    arn = load_config("delivery", EXAMPLES).delivery.source.connection_arn
    assert arn.startswith("arn:aws:codeconnections:")
    statements = [s for k, r in _resources(template, "AWS::IAM::Policy").items() if k.startswith("PipelineSource")
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    assert {"Sid": "UseTheConnection", "Action": "codeconnections:UseConnection", "Effect": "Allow",
            "Resource": arn} in statements


def test_every_codebuild_step_pins_python_and_node(delivery):
    import yaml

    from stacks.delivery.pipeline import RUNTIME_VERSIONS

    outdir, _, template = delivery
    projects = _resources(template, "AWS::CodeBuild::Project")
    assert len(projects) >= 6  # synth, self-mutation, assets, preflight and smoke of both stages
    for logical_id, project in projects.items():
        spec = project["Properties"]["Source"]["BuildSpec"]
        if spec.endswith(".yaml"):  # the asset steps' specs are files of the assembly
            spec = (outdir / spec).read_text()
        assert yaml.safe_load(spec)["phases"]["install"]["runtime-versions"] == RUNTIME_VERSIONS, logical_id


def _fake_aws(tmp_path: Path, body: str) -> dict:
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text("#!/bin/sh\n" + body + "\n")
    (bin_dir / "aws").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "AWS_ACCESS_KEY_ID": "TOOLS-ACCOUNT"}


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("failing", [
    'echo "An error occurred (AccessDenied) when calling the AssumeRole operation" >&2; exit 254',
    "exit 0",  # no credentials printed
])
def test_a_refused_assume_role_stops_the_step(tmp_path, shell, failing):
    import subprocess

    from stacks.delivery.pipeline import assume_role_command

    line = assume_role_command("arn:aws:iam::333333333333:role/roadseg-prod-pipeline-smoke", "roadseg-smoke-prod")
    done = subprocess.run([shell, "-c", line + '\necho "went on as $AWS_ACCESS_KEY_ID"'],
                          env=_fake_aws(tmp_path, failing), capture_output=True, text=True)
    assert done.returncode != 0 and "went on" not in done.stdout


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_an_assumed_role_exports_its_credentials(tmp_path, shell):
    import subprocess

    from stacks.delivery.pipeline import assume_role_command

    line = assume_role_command("arn:aws:iam::333333333333:role/r", "s")
    done = subprocess.run([shell, "-c", line + '\necho "$AWS_ACCESS_KEY_ID|$AWS_SECRET_ACCESS_KEY|$AWS_SESSION_TOKEN"'],
                          env=_fake_aws(tmp_path, r"printf 'ASIAX\tsecret/+=\ttoken+/='"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ASIAX|secret/+=|token+/="
