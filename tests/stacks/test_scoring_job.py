"""The candidate-pool scoring job in the synthesized inference stack: its role reads the bundles, the frames and the
command's inputs and writes only the scores; the LabelScoringJob output names the SSM parameter whose JSON
labelling.scoring_job reads (no output embeds an import: cfn-lint W6001), and a request built from it touches only
what the role may; failed or stopped scoring jobs reach the alarm topic (the
contract async-jobs-reach-the-alarm-topic fails without the rule)."""

from __future__ import annotations

import fnmatch
import json
from datetime import UTC, datetime

import pytest

from contracts import naming
from contracts.lambda_env import DrivesEnvironment
from contracts.service_limits import MAX_SSM_STANDARD_PARAMETER_VALUE
from labelling.scoring_job import (
    BUNDLE_FILES,
    ScoringJobSettings,
    input_key,
    job_name,
    output_prefix,
    scoring_request,
)
from stacks.checks.service_contracts import Assembly
from stacks.checks.service_contracts.limits import bounded_length
from stacks.checks.service_contracts.networks import missing_vpc_config
from tests.stacks.conftest import ISOLATED_EXAMPLES
from tests.stacks.test_network_and_failure_contracts import _break, _Fakes, _job_rules, _launcher
from tests.stacks.test_service_contracts import _context, _templates

PREFIX = "roadseg-dev"
BUNDLE = "s3://dev-artifacts/pipelines/roadseg-dev-training/exec1/bundle/"


@pytest.fixture(scope="module")
def env(synth):
    return synth("dev")


@pytest.fixture(scope="module")
def template(env):
    return env.template(env.stacks.inference).to_json()


def _role_statements(template: dict) -> list[dict]:
    (policy,) = [r for k, r in template["Resources"].items()
                 if r["Type"] == "AWS::IAM::Policy" and k.startswith("LabelScoringRoleDefaultPolicy")]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _object_patterns(statements: list[dict], action: str) -> dict[str, set[str]]:
    """Bucket export ("Artifacts", "Inference") -> the object paths on which ``action`` is allowed."""
    found: dict[str, set[str]] = {}
    for statement in statements:
        if action not in _listed(statement["Action"]):
            continue
        for resource in _listed(statement["Resource"]):
            join = resource.get("Fn::Join") if isinstance(resource, dict) else None
            if join and isinstance(join[1][0], dict) and "Fn::ImportValue" in join[1][0]:
                bucket = join[1][0]["Fn::ImportValue"].split(":")[1].removesuffix("BucketArn")
                found.setdefault(bucket, set()).add(join[1][1].lstrip("/"))
    return found


def _flatten(value) -> str:
    """An output's Fn::Join with every intrinsic written as a placeholder: the JSON text a deploy would produce."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_flatten(p) for p in parts)
    return "TOKEN"


def _settings(template: dict, prefix: str = PREFIX) -> dict:
    """The SSM parameter resource the LabelScoringJob output names (its properties)."""
    name = template["Outputs"][naming.LABEL_SCORING_JOB]["Value"]
    assert name == naming.label_scoring_settings_parameter(prefix)  # a plain string: nothing to import
    (parameter,) = [r["Properties"] for r in template["Resources"].values()
                    if r["Type"] == "AWS::SSM::Parameter" and r["Properties"].get("Name") == name]
    return parameter


def _after(parts: list, key: str):
    """The intrinsic that follows ``"key":"`` in an output's Fn::Join parts."""
    (index,) = [i for i, p in enumerate(parts) if isinstance(p, str) and p.endswith(f'"{key}":"')]
    return parts[index + 1]


def test_the_role_reads_bundles_frames_and_inputs_and_writes_only_the_scores(template) -> None:
    (role,) = [r for k, r in template["Resources"].items()
               if r["Type"] == "AWS::IAM::Role" and k.startswith("LabelScoringRole")]
    assert [s["Principal"] for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]] == [
        {"Service": "sagemaker.amazonaws.com"}]
    statements = _role_statements(template)
    assert _object_patterns(statements, "s3:GetObject") == {
        "Artifacts": {"pipelines/*/bundle/*"}, "Inference": {"incoming/*", "label-scores/*/input/*"}}
    assert _object_patterns(statements, "s3:PutObject") == {"Inference": {"label-scores/*/output/*"}}
    assert not any(a.startswith("s3:Delete") for s in statements for a in _listed(s["Action"]))
    assert not any("sagemaker:" in a for s in statements for a in _listed(s["Action"]))  # it starts nothing


def _is_object_arn(resource) -> bool:
    """An ARN naming objects (``bucket/key...``), not a whole bucket: its text, intrinsics aside, has a ``/``."""
    if isinstance(resource, str):
        return resource == "*" or "/" in resource.split(":::", 1)[-1]
    if "Fn::Join" in resource:
        return any(_is_object_arn(p) for p in resource["Fn::Join"][1] if isinstance(p, str) and "/" in p)
    if "Fn::Sub" in resource:
        return "/" in _listed(resource["Fn::Sub"])[0].split(":::", 1)[-1]
    return False


def test_no_s3_action_reaches_a_whole_bucket_beyond_the_listings_the_inputs_need(template) -> None:
    """Bucket-level S3 actions: only s3:ListBucket (S3Prefix inputs are listed), each narrowed to the prefixes the
    request names; object actions never on ``*``; no GetBucket*, no List* wildcard."""
    statements = [s for s in _role_statements(template) if any(a.startswith("s3:") for a in _listed(s["Action"]))]
    bucket_wide = [s for s in statements if not all(_is_object_arn(r) for r in _listed(s["Resource"]))]
    assert {s["Sid"] for s in bucket_wide} == {"ListCodeAssets", "ListJobInputs"}, bucket_wide
    for statement in bucket_wide:
        assert _listed(statement["Action"]) == ["s3:ListBucket"]
        assert list(statement["Condition"]) in (["StringEquals"], ["StringLike"])
        (prefixes,) = statement["Condition"].values()
        assert set(prefixes) == {"s3:prefix"} and "*" not in _listed(prefixes["s3:prefix"])
    listings = {s["Sid"]: _listed(s["Condition"][next(iter(s["Condition"]))]["s3:prefix"]) for s in bucket_wide}
    assert listings["ListJobInputs"] == ["label-scores/*/input/*"]
    assert len(listings["ListCodeAssets"]) == 3  # the entry script, package and wheels objects, by key
    assert not any(a in ("s3:*", "s3:List*", "s3:GetBucket*", "s3:GetObject*") or a.startswith("s3:Delete")
                   for s in statements for a in _listed(s["Action"]))
    (assets,) = [s for s in statements if s.get("Sid") == "ReadCodeAssets"]
    assert len(_listed(assets["Resource"])) == 3  # one object each, not the bootstrap bucket's /*
    kms = [a for s in _role_statements(template) for a in _listed(s["Action"]) if a.startswith("kms:")]
    assert sorted(kms) == ["kms:Decrypt", "kms:GenerateDataKey"], kms  # read SSE-KMS objects, write the scores


def _imports(value) -> list[str]:
    """The export names an output's value imports."""
    if isinstance(value, dict):
        return [value["Fn::ImportValue"]] if "Fn::ImportValue" in value else [
            name for v in value.values() for name in _imports(v)]
    return [name for v in value for name in _imports(v)] if isinstance(value, list) else []


def _data_outputs(env, templates: dict) -> tuple[str, str]:
    """The data stack's InferenceBucketName and DataKeyArn, resolved as the deploy would (what the command joins)."""
    data = env.stacks.data.stack_name
    outputs = templates[data]["Outputs"]
    assert not outputs[naming.DATA_KEY_ARN].get("Export")  # plain: the exported BucketsDataKeyArn... stays as it was
    assembly = Assembly(templates)
    return tuple(assembly.text(data, outputs[key]["Value"]) for key in (naming.INFERENCE_BUCKET_NAME,
                                                                          naming.DATA_KEY_ARN))


def test_the_data_stacks_outputs_name_the_bucket_and_key_the_role_is_granted(env) -> None:
    """The bucket and key the command joins to LabelScoringJob are the ones the scoring role's grants import (the
    data stack's exports), and the drive jobs' key (the drive launcher's KMS_KEY_ARN)."""
    templates = _templates(env)
    bucket, key = _data_outputs(env, templates)
    stack = env.stacks.inference.stack_name
    assembly = Assembly(templates)
    resources = {r for s in assembly.statements(stack, {"Statement": _role_statements(templates[stack])})
                 for r in s.resources}
    assert bucket.endswith(".Ref}}") and f"{bucket.removesuffix('.Ref}}')}.Arn}}}}/incoming/*" in resources, (
        bucket, resources)
    assert key in resources, (key, resources)  # the grant on the data key
    (launcher,) = [r for k, r in templates[stack]["Resources"].items()
                   if k.startswith("DriveProcessingLauncher") and r["Type"] == "AWS::Lambda::Function"]
    assert key == assembly.text(stack, launcher["Properties"]["Environment"]["Variables"]["KMS_KEY_ARN"])


def _any_env(synth, isolated_synth, env_name):
    return isolated_synth(env_name) if env_name in ISOLATED_EXAMPLES else synth(env_name)


ALL_ENVS = ["dev", "prod", *ISOLATED_EXAMPLES]


def test_a_standard_parameter_over_4kb_breaks_the_limits_contract(env) -> None:
    """The contract rule behind the settings' size: a value whose references, at their longest, pass 4 KB fails."""
    def grow(templates):
        stack, template = next((n, t) for n, t in templates.items()
                               if naming.LABEL_SCORING_JOB in t.get("Outputs", {}))
        (parameter,) = [r["Properties"] for r in template["Resources"].values()
                        if r["Type"] == "AWS::SSM::Parameter"
                        and r["Properties"].get("Name") == template["Outputs"][naming.LABEL_SCORING_JOB]["Value"]]
        # 40 imports of another app, each counted at DEFAULT_TOKEN_BOUND (256): 10 KB at their longest.
        parameter["Value"]["Fn::Join"][1].extend([{"Fn::ImportValue": f"Other-Subnet{i}"} for i in range(40)])
        return True

    _break(_templates(env), "ssm-standard-parameter-values-within-4kb", grow, "LabelScoring",
           _context(env))


@pytest.mark.parametrize("env_name", ALL_ENVS)
def test_no_stack_output_embeds_an_imported_value(synth, isolated_synth, env_name) -> None:
    """cfn-lint W6001: an output that embeds Fn::ImportValue. LabelScoringJob once carried the bucket and the key,
    then (isolated mode) the network stack's subnets and security groups: it now names an SSM parameter."""
    env = _any_env(synth, isolated_synth, env_name)
    found = {(name, key): _imports(output["Value"]) for name, template in _templates(env).items()
             for key, output in template.get("Outputs", {}).items() if _imports(output["Value"])}
    assert found == {}


@pytest.mark.parametrize("env_name", ALL_ENVS)
def test_the_settings_parameter_is_a_standard_string_well_under_its_size_limit(synth, isolated_synth,
                                                                                 env_name) -> None:
    """A Standard SSM String holds at most 4 KB (contracts.service_limits): the settings, every reference at its
    longest documented value (the contract layer's bounded_length), stay under half of it."""
    env = _any_env(synth, isolated_synth, env_name)
    templates = _templates(env)
    stack = env.stacks.inference.stack_name
    parameter = _settings(templates[stack], env.config.prefix)
    assert parameter["Type"] == "String" and parameter.get("Tier", "Standard") == "Standard"
    size = bounded_length(Assembly(templates), stack, parameter["Value"])
    assert size < MAX_SSM_STANDARD_PARAMETER_VALUE // 2, size


def test_the_outputs_are_what_the_command_reads_and_a_request_stays_within_the_role(env, template) -> None:
    outputs = template["Outputs"]
    assert outputs[naming.LABEL_SCORING_JOB_PREFIX]["Value"] == naming.label_scoring_job_prefix(PREFIX)
    value = _settings(template)["Value"]
    fakes, (bucket, key) = _Fakes(), _data_outputs(env, _templates(env))
    settings = ScoringJobSettings.from_output(_flatten(value), bucket=fakes.value(bucket), kms_key_arn=fakes.value(key))
    assert settings.prefix == PREFIX and settings.subnets == ()  # dev: not in a VPC
    assert settings.volume_size_gb > 0 and settings.max_runtime_seconds > 0
    parts = value["Fn::Join"][1]
    role = _after(parts, "role_arn")
    assert role["Fn::GetAtt"][0].startswith("LabelScoringRole")
    wheels = _after(parts, "wheels_uri")
    drive_wheels = [r for k, r in template["Resources"].items() if k.startswith("DriveProcessingLauncher")
                    and r["Type"] == "AWS::Lambda::Function"][0]["Properties"]["Environment"]["Variables"]
    assert wheels in drive_wheels.values()  # the drive jobs' wheelhouse (one S3 object)

    statements = _role_statements(template)
    reads, puts = _object_patterns(statements, "s3:GetObject"), _object_patterns(statements, "s3:PutObject")
    keys = ["incoming/car-1/d1/front/001.jpg"]
    name = job_name(PREFIX, keys, BUNDLE, datetime(2026, 12, 8, tzinfo=UTC))
    request = scoring_request(settings, name=name, pool_sha256="0" * 64)
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]}
    for channel in ("bundle", "frames", "pool"):
        key = inputs[channel].split("/", 3)[3]
        assert any(fnmatch.fnmatch(key, p) for p in reads["Inference"]), key
    assert any(fnmatch.fnmatch(k, p) for k in keys for p in reads["Inference"])
    bundle_keys = [BUNDLE.split("/", 3)[3] + f for f in BUNDLE_FILES]
    assert all(any(fnmatch.fnmatch(k, p) for p in reads["Artifacts"]) for k in bundle_keys)
    assert fnmatch.fnmatch(output_prefix(name) + "model-scores.parquet", next(iter(puts["Inference"])))
    assert not any(fnmatch.fnmatch(input_key(name, "pool.txt"), p) for p in puts["Inference"])


def test_failed_or_stopped_scoring_jobs_reach_the_alarm_topic(env) -> None:
    templates = _templates(env)
    rules = _job_rules(templates)
    body = rules[f"{PREFIX}-job-failed-label-scoring"][2]["Properties"]
    assert body["EventPattern"]["detail"] == {"ProcessingJobName": [{"prefix": f"{PREFIX}-label-score-"}],
                                              "ProcessingJobStatus": ["Failed", "Stopped"]}
    assert body["Targets"][0]["Arn"]["Ref"].startswith("MonitoringAlarmTopic")

    def drop(broken):
        stack, lid, _ = _job_rules(broken)[f"{PREFIX}-job-failed-label-scoring"]
        del broken[stack]["Resources"][lid]
        return True
    violations = _break(templates, "async-jobs-reach-the-alarm-topic", drop,
                        f"the operator command starts processing jobs named {PREFIX}-label-score-*", _context(env))
    assert [v.resource for v in violations] == [f"{env.stacks.inference.stack_name}/Outputs/LabelScoringJobPrefix"]

    def narrow(broken):
        _, _, rule = _job_rules(broken)[f"{PREFIX}-job-failed-label-scoring"]
        rule["Properties"]["EventPattern"]["detail"]["ProcessingJobStatus"] = ["Failed"]  # Stopped goes unseen
        return True
    _break(templates, "async-jobs-reach-the-alarm-topic", narrow, f"{PREFIX}-label-score-*", _context(env))


@pytest.mark.parametrize("example", ["isolated-create"])
def test_isolated_network_mode_runs_the_scoring_job_in_the_vpc(isolated_synth, example) -> None:
    env = isolated_synth(example)
    template = env.templates()[env.stacks.inference.stack_name]
    value = _settings(template, env.config.prefix)["Value"]
    parts = value["Fn::Join"][1]
    subnets = _after(parts, "subnets")
    assert isinstance(subnets, dict) and "Fn::Join" in subnets  # the placement's subnets, comma-joined
    groups = _after(parts, "security_group_ids")
    assert isinstance(groups, dict)
    vpc = [s for s in _role_statements(template) if s.get("Sid") == "NetworkInterfacesInTheVpc"]
    assert vpc and "ec2:CreateNetworkInterface" in _listed(vpc[0]["Action"])
    assert json.dumps(template).count(f"{env.config.prefix}-job-failed-label-scoring") == 1


@pytest.mark.parametrize("example", ["isolated-create", "isolated-import"])
def test_scoring_requests_run_in_the_drive_jobs_subnets_and_groups(isolated_synth, example) -> None:
    """The LabelScoringJob output of an isolated environment, resolved as the deploy would, makes requests in the
    same subnets and security groups as the drive jobs' (contract class c for requests built by the command)."""
    env = isolated_synth(example)
    templates = env.templates()
    stack = env.stacks.inference.stack_name
    text = Assembly(templates).text(stack, _settings(templates[stack], env.config.prefix)["Value"])
    fakes = _Fakes()
    variables, _ = _launcher(env)
    decoded = DrivesEnvironment.from_env({k: fakes.value(v) for k, v in variables.items()})
    bucket, key = _data_outputs(env, templates)
    settings = ScoringJobSettings.from_output(fakes.value(text), bucket=fakes.value(bucket),
                                              kms_key_arn=fakes.value(key))
    assert settings.subnets and settings.subnets == tuple(decoded.job_subnets)
    assert settings.security_group_ids == tuple(decoded.job_security_groups)
    request = scoring_request(settings, name=f"{env.config.prefix}-label-score-20261208000000-0a1b2c3d",
                              pool_sha256="0" * 64)
    assert missing_vpc_config("processing", request, decoded.job_subnets, decoded.job_security_groups) is None
    assert request["NetworkConfig"]["EnableNetworkIsolation"] is True
    # The volumes and the scores under the drive jobs' data key, as a deploy resolves the data stack's output.
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == decoded.kms_key_arn
