"""Class (a) of the contract layer, service limits: each rule fails on a template broken its way, and the widest
configuration the config model allows (a 25-class custom scheme, six cameras with long topics, the longest prefix,
the most extraction instances) synthesizes with every template and every run-time request within the limits."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from contracts.service_limits import (
    MAX_CONTAINER_ARGUMENT_LENGTH,
    MAX_LAMBDA_ENVIRONMENT_BYTES,
    check_compilation_request,
    check_processing_request,
)
from stacks.checks.service_contracts import RULES, Assembly, Context
from stacks.checks.service_contracts.limits import (
    DEFAULT_TOKEN_BOUND,
    RESOURCE_BOUNDS,
    bounded_length,
    lambda_environment_bound,
)

LIMIT_RULES = ("pipeline-step-requests-within-limits", "resource-names-within-limits",
               "lambda-environment-within-4kb", "dynamodb-stream-filters-on-the-dynamodb-key")
WIDE = "wide"
WIDE_PREFIX = "rs-limits-longest-px1"  # 21 characters: the longest envconfig.config allows
WIDE_CLASSES = [{"name": f"wide custom class number {i:02d}", "color": [i, 255 - i, (7 * i) % 256],
                 **({"vulnerable": True} if i < 3 else {})} for i in range(25)]
WIDE_CAMERAS = {f"/sensors/vehicle/camera_{side}_wide_angle/image_rect_color/compressed": f"{side}-camera"
                for side in ("front_left", "front_center", "front_right", "rear_left", "rear_center", "rear_right")}
LONGEST_ID_PART = "V" * 64  # contracts.drives: vehicle and drive are 1..64 characters


def _violations(templates: dict, rule_name: str, environments: dict | None = None) -> list:
    return list(RULES[rule_name](Assembly(templates, environments), Context()))


@pytest.fixture(scope="module")
def dev(synth):
    env = synth("dev")
    return {s.stack_name: json.loads((env.outdir / s.template_file).read_text()) for s in env.stacks.all}


def _break(templates: dict, rule_name: str, breaker, fragment: str) -> list:
    assert _violations(templates, rule_name) == []
    broken = copy.deepcopy(templates)
    assert breaker(broken), "the breaker changed nothing"
    violations = _violations(broken, rule_name)
    assert violations, f"{rule_name} did not notice the broken template"
    assert all(v.doc.startswith("https://docs.aws.amazon.com/") for v in violations)
    assert any(fragment in str(v) for v in violations), "\n".join(map(str, violations))
    return violations


def _of_type(templates: dict, kind: str):
    for template in templates.values():
        for logical_id, body in template["Resources"].items():
            if body["Type"] == kind:
                yield logical_id, body


def _training_pipeline(templates: dict) -> dict:
    (body,) = [b for lid, b in _of_type(templates, "AWS::SageMaker::Pipeline") if "TrainingPipeline" in lid]
    return body


# -- each rule on a template broken its way ----------------------------------------------------------------------

def test_an_inline_class_list_breaks_the_argument_limit(dev):
    """The issue's failure: --classes-json with a custom scheme's JSON (7 classes already pass 256 characters)."""
    inline = json.dumps([{"name": f"road class {i}", "color": [128, 64, 128]} for i in range(7)],
                        separators=(",", ":"))
    assert len(inline) > MAX_CONTAINER_ARGUMENT_LENGTH

    def inline_classes(templates):
        body = _training_pipeline(templates)["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        text, count = re.subn(r'"--scheme", "cityscapes"',
                              '"--scheme", "custom", "--classes-json", ' + json.dumps(inline), body[0])
        body[0] = text
        return count > 0

    violations = _break(dev, "pipeline-step-requests-within-limits", inline_classes, "pass lists as files")
    assert {v.message.split(":")[0] for v in violations} >= {"step PrepareDataset", "step EvaluateModel"}


def test_too_many_arguments_and_long_environment_values_fail(dev):
    def widen(templates):
        body = _training_pipeline(templates)["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        definition = json.loads(body[0].replace("${!", "${"))
        for step in definition["Steps"]:
            if step["Name"] == "PrepareServingValidation":
                step["Arguments"]["AppSpecification"]["ContainerArguments"] += ["--x"] * 100
                step["Arguments"]["Environment"]["ROI"] = "0," * 200
        body[0] = json.dumps(definition)
        return True

    violations = _break(dev, "pipeline-step-requests-within-limits", widen, "the limit is 100")
    assert any("Environment ROI has 400 characters" in str(v) for v in violations)


def test_a_pipeline_parameter_counts_at_its_default(dev):
    def long_default(templates):
        body = _training_pipeline(templates)["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        definition = json.loads(body[0].replace("${!", "${"))
        (layout,) = [p for p in definition["Parameters"] if p["Name"] == "DatasetLayout"]
        layout["DefaultValue"] = "L" * 300
        body[0] = json.dumps(definition)
        return True

    _break(dev, "pipeline-step-requests-within-limits", long_default, "'an expression') has 300 characters")


def test_a_name_over_its_limit_fails(dev):
    def long_group(templates):
        (_, group), = _of_type(templates, "AWS::SageMaker::ModelPackageGroup")
        group["Properties"]["ModelPackageGroupName"] = "g" * 64
        return True

    _break(dev, "resource-names-within-limits", long_group, "ModelPackageGroupName")


def test_a_function_environment_over_4_kb_fails(dev):
    def camera_map_inline(templates):
        for _, function in _of_type(templates, "AWS::Lambda::Function"):
            if function["Properties"].get("Handler") == "drives.launch_handler":
                cameras = {f"/sensors/camera_{i}/image_rect_color/compressed": f"camera-{i}" for i in range(60)}
                function["Properties"]["Environment"]["Variables"]["CAMERAS"] = json.dumps(cameras)
                return True
        return False

    _break(dev, "lambda-environment-within-4kb", camera_map_inline, "largest: CAMERAS")


def test_references_count_at_their_longest(dev):
    assembly = Assembly(dev)
    (stack, table_id) = next((s, lid) for s, t in dev.items() for lid, b in t["Resources"].items()
                             if b["Type"] == "AWS::DynamoDB::Table")
    assert bounded_length(assembly, stack, {"Ref": table_id}) == RESOURCE_BOUNDS[("AWS::DynamoDB::Table", "Ref")]
    assert bounded_length(assembly, stack, {"Fn::Sub": "s3://cdk-${AWS::AccountId}-${AWS::Region}/x"}) == \
        len("s3://cdk--/x") + 12 + 14
    assert bounded_length(assembly, stack, {"Fn::Select": [1, {"Fn::Split": ["/", "a/b"]}]}) == DEFAULT_TOKEN_BOUND


def test_a_stream_filter_on_event_name_fails(dev):
    def event_name(templates):
        for _, mapping in _of_type(templates, "AWS::Lambda::EventSourceMapping"):
            for entry in (mapping["Properties"].get("FilterCriteria") or {}).get("Filters", []):
                pattern = json.loads(entry["Pattern"])
                entry["Pattern"] = json.dumps({"eventName": ["INSERT", "MODIFY"], **pattern})
                return True
        return False

    _break(dev, "dynamodb-stream-filters-on-the-dynamodb-key", event_name, "eventName besides dynamodb")


# -- the widest configuration -------------------------------------------------------------------------------------

def wide_config() -> dict:
    return {"prefix": WIDE_PREFIX, "account": "123456789012", "region": "eu-west-1",
            "classes": {"scheme": "custom", "custom": WIDE_CLASSES,
                        "safety_critical_iou_floors": {WIDE_CLASSES[0]["name"]: 0.3}},
            "drives": {"cameras": WIDE_CAMERAS, "extraction_max_instances": 100, "rate_hz": 12.5,
                       "scenes": {"touch_px": 64, "collapse_below": 0.125, "max_gap_frames": 10000,
                                  "min_duration_s": 3599.5, "min_frames": 100000, "top_scenes": 100}}}


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The widest environment, from a config folder of its own (load_config's config_dir), synthesized once with
    cdk-nag (app.synth() fails on any unacknowledged finding)."""
    import aws_cdk as cdk

    from envconfig.config import load_config
    from stacks.app_builder import build_app, cdk_json_context

    config_dir = tmp_path_factory.mktemp("wide-config")
    (config_dir / f"{WIDE}.yaml").write_text(yaml.safe_dump(wide_config()))
    outdir = tmp_path_factory.mktemp("cdk-wide")
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": WIDE, "aws:cdk:bundling-stacks": [],
                                              "aws:cdk:disable-asset-staging": True})
    config = load_config(WIDE, config_dir)
    app, stacks = build_app(config, app)
    app.synth()
    return config, stacks, Assembly.from_directory(outdir)


def test_the_wide_configuration_is_the_widest_the_model_allows(wide):
    config, _, _ = wide
    assert len(config.prefix) == 21 and len(config.classes.custom) == 25 and len(config.drives.cameras) == 6
    assert len(json.dumps(WIDE_CLASSES)) > 4 * MAX_CONTAINER_ARGUMENT_LENGTH  # far beyond one argument
    assert len(json.dumps(WIDE_CAMERAS)) > MAX_CONTAINER_ARGUMENT_LENGTH


@pytest.mark.parametrize("rule_name", LIMIT_RULES)
def test_the_wide_templates_keep_every_limit(wide, rule_name):
    _, _, assembly = wide
    violations = list(RULES[rule_name](assembly, Context()))
    assert violations == [], "\n".join(map(str, violations))


def test_wide_lists_travel_as_files(wide):
    from contracts.job_settings import CAMERAS_FILE, CLASSES_FILE
    from drivelogs.extract import parse_cameras
    from segcore.classes import load_classes_file
    from stacks.code_assets import staged_job_settings

    config, stacks, assembly = wide
    pipelines = stacks.training.pipelines
    settings_dir = Path(staged_job_settings(pipelines.job_settings))
    assert [c[0] for c in load_classes_file(settings_dir / CLASSES_FILE)] == [c["name"] for c in WIDE_CLASSES]
    assert {t: c.name for t, c in parse_cameras(f"@{settings_dir / CAMERAS_FILE}").items()} == WIDE_CAMERAS
    # One asset content for both stacks: the drive jobs and the pipeline steps read the same files.
    assert stacks.inference.drive_processing.settings.asset_hash == pipelines.settings_asset.asset_hash
    for function in assembly.resources("AWS::Lambda::Function"):
        variables = (function.properties.get("Environment") or {}).get("Variables") or {}
        assert "CAMERAS" not in variables and "wide custom class number 24" not in json.dumps(
            variables.get("BUILDER_ARGUMENTS", "")), function.path
        assert lambda_environment_bound(assembly, function) <= MAX_LAMBDA_ENVIRONMENT_BYTES


def _longest(assembly: Assembly, stack: str, value) -> str:
    """A deploy-time value at its longest that still parses: references filled to their bound (RESOURCE_BOUNDS)."""
    text = assembly.text(stack, value)
    fills = {"AWS::S3::Bucket": "b", "AWS::DynamoDB::Table": "t", "AWS::SQS::Queue": "q"}

    def fill(match: re.Match) -> str:
        resource = assembly.templates[match[1]]["Resources"][match[2]]
        kind, attribute = resource["Type"], match[3]
        size = RESOURCE_BOUNDS.get((kind, attribute), 64)
        if attribute == "Arn":
            head = f"arn:aws-us-gov:{kind.split('::')[1].lower()}:ap-southeast-4:123456789012:"
            return head + "r" * (size - len(head))
        return fills.get(kind, "n") * size

    text = re.sub(r"\{\{([^/}]+)/([^.}]+)\.([^}]+)\}\}", fill, text)
    text = text.replace("${Select}", "b" * 63)  # a bucket name cut out of its imported ARN
    return (text.replace("${AWS::AccountId}", "123456789012").replace("${AWS::Region}", "ap-southeast-4")
            .replace("${AWS::Partition}", "aws-us-gov"))


def _drive_environment(assembly: Assembly, handler: str):
    from contracts.lambda_env import DrivesEnvironment

    (function,) = [f for f in assembly.resources("AWS::Lambda::Function") if f.properties.get("Handler") == handler]
    variables = function.properties["Environment"]["Variables"]
    return DrivesEnvironment.from_env({k: _longest(assembly, function.stack, v) for k, v in variables.items()})


def test_wide_drive_job_requests_fit_at_their_longest(wide):
    """The launcher's and the completion function's requests, from their synthesized environments with every
    reference at its longest, for the longest drive ids contracts/drives.py allows and 100 extraction instances."""
    from roadseg_lambda import drive_jobs

    from contracts.drives import DriveId, DriveOutputs
    from contracts.job_settings import SETTINGS_INPUT, cameras_argument, classes_path

    _, _, assembly = wide
    drive = DriveId(LONGEST_ID_PART, "D" * 64)
    launcher = _drive_environment(assembly, "drives.launch_handler")
    completion = _drive_environment(assembly, "drives.completion_handler")
    assert launcher.extraction_max_instances == 100 and launcher.cameras is None
    prefix = f"drives/{drive.vehicle}/{drive.drive}/"
    shards = [prefix + "metadata.yaml"] + [f"{prefix}{drive.drive}_{i}.mcap" for i in range(150)]
    requests = [
        drive_jobs.extraction_request(launcher, drive, [f"drives/{drive}.mcap"], max_bytes=2**40, max_pixels=2**40),
        drive_jobs.extraction_request(launcher, drive, shards, max_bytes=2**40, max_pixels=2**40,
                                      shard_manifest_uri=drive_jobs.s3_uri(launcher.inference_bucket,
                                                                           DriveOutputs(drive).prefix + "x" * 40)),
        drive_jobs.build_request(completion, drive, drive_jobs.s3_uri(completion.inference_bucket,
                                                                      DriveOutputs(drive).prefix + "x" * 40)),
    ]
    for request in requests:
        assert check_processing_request(request) == []
        assert SETTINGS_INPUT in {i["InputName"] for i in request["ProcessingInputs"]}
    assert requests[1]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 100
    extract_args, build_args = (requests[0]["AppSpecification"]["ContainerArguments"],
                                requests[2]["AppSpecification"]["ContainerArguments"])
    assert extract_args[extract_args.index("--cameras-json") + 1] == cameras_argument()
    assert build_args[build_args.index("--classes-file") + 1] == classes_path()


def test_wide_compilation_requests_fit_at_their_longest(wide):
    """Neo jobs the rollout creates (lambda/rollout.py compilation_jobs, read only here) for every target the config
    offers, the longest prefix, a five-digit package version and the longest bundle URI the pipeline writes."""
    import typing

    from rollout import EDGE_BUNDLE_KEY, SERVING_SIZE_KEY, compilation_jobs

    from contracts import naming
    from envconfig.config import NeoTarget

    config, _, _ = wide
    bundle = f"s3://{'b' * 63}/pipelines/{naming.training_pipeline_name(config.prefix)}/{'e' * 32}/bundle"
    jobs = compilation_jobs({EDGE_BUNDLE_KEY: bundle, SERVING_SIZE_KEY: "8192x8192"}, 99999,
                            targets=list(typing.get_args(NeoTarget)),
                            job_prefix=naming.neo_compilation_job_prefix(config.prefix),
                            role_arn="arn:aws-us-gov:iam::123456789012:role/" + "r" * 64,
                            kms_key_arn="arn:aws-us-gov:kms:ap-southeast-4:123456789012:key/" + "k" * 36)
    assert len(jobs) == len(typing.get_args(NeoTarget))
    for job in jobs:
        assert check_compilation_request(job) == [], job["CompilationJobName"]
