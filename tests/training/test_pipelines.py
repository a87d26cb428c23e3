"""The SageMaker Pipelines definitions (training/pipelines/), checked step by step on the generated JSON.

Every definition is generated with sockets blocked and no AWS credentials in the environment, then read the
way CloudFormation's Fn::Sub would hand it to SageMaker (placeholders substituted, ``${!`` unescaped).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from contracts.instances import has_local_instance_storage
from contracts.job_settings import CLASSES_FILE, SETTINGS_DIR, SETTINGS_INPUT
from contracts.service_limits import MAX_CONTAINER_ARGUMENT_LENGTH, check_container_arguments
from contracts.signals import REFERENCE_PROFILE_FILE, reference_profile_uri
from segcore.classes import classes_json, custom_scheme
from training.hyperparameters import TUNABLE_RANGES, tuning_ranges
from training.pipelines.definition import build_training_pipeline, build_tuning_pipeline
from training.pipelines.placeholders import CODE_DIR, PLACEHOLDERS, PROCESSING_ENTRYPOINT, WHEELS_DIR
from training.pipelines.settings import PipelineSettings, floor_parameter_name
from training.pipelines.steps import gate_json_path

FLOORS = {"person": 0.5, "rider": 0.4, "bicycle": 0.4, "motorcycle": 0.3, "traffic light": 0.25}

BASE = PipelineSettings(
    prefix="roadseg-test",
    model_package_group="roadseg-test-segmentation",
    num_classes=19,
    class_scheme="cityscapes",
    hyperparameters={
        "backbone": "resnet-50",
        "use_pretrained_model": "True",
        "algorithm": "deeplab",
        "epochs": "12",
        "learning_rate": "0.002",
        "mini_batch_size": "8",
        "crop_size": "240",
        "num_classes": "19",
        "early_stopping": "False",
    },
    safety_iou_floors=FLOORS,
    min_miou=0.55,
    training_instance_type="ml.p3.2xlarge",
    processing_instance_type="ml.m5.xlarge",
    transform_instance_type="ml.g4dn.xlarge",
    volume_size_gb=100,
    max_runtime_seconds=8 * 3600,
    use_spot_instances=True,
    max_wait_seconds=16 * 3600,
    max_bad_pair_fraction=0.05,
    tuning_max_jobs=6,
    tuning_max_parallel_jobs=3,
)

# What the stack substitutes (any value will do for the structure).
SUBSTITUTES = {
    "RoleArn": "arn:aws:iam::111122223333:role/test-sagemaker",
    "DatasetsBucket": "test-datasets-bucket",
    "ArtifactsBucket": "test-artifacts-bucket",
    "KmsKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/test-key",
    "AlgorithmImage": "685385470294.dkr.ecr.eu-west-1.amazonaws.com/semantic-segmentation:1",
    "ProcessingImage": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/roadseg-processing:1",
    "CodeEntryUri": "s3://test-assets/3f9a0c5d1e.py",  # a CDK file asset keeps no name
    "CodePackageUri": "s3://test-assets/8b7e6d.zip",
    "ExportImage": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
    "ExportWheelsUri": "s3://test-assets/5c4d3e.zip",
    "JobSettingsUri": "s3://test-assets/9a8b7c.zip",
}
SENTINEL_FRAGMENTS = ("roadseg-sentinel", "123456789012", "811284229777", "763104351884", "pytorch-training")
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
IMAGE_CONTENT = {"train", "validation"}
ANNOTATION_CONTENT = {"train_annotation", "validation_annotation"}


# --------------------------------------------------------------------------------------------------
# Generation under blocked sockets and without credentials
# --------------------------------------------------------------------------------------------------


class _BlockedNetwork:
    """socket.connect raises and is recorded, in every thread (telemetry would run in one)."""

    def __init__(self) -> None:
        self.attempts: list = []

    def connect(self, sock, address):
        self.attempts.append(address)
        raise OSError(f"network blocked in tests: {address!r}")


def _generate_offline(builder, settings: PipelineSettings) -> str:
    blocked = _BlockedNetwork()
    patch = pytest.MonkeyPatch()
    try:
        for variable in CREDENTIAL_VARIABLES:
            patch.delenv(variable, raising=False)
        patch.setenv("AWS_PROFILE", "roadseg-no-such-profile")  # would fail if a profile were ever read
        patch.setattr(socket.socket, "connect", blocked.connect)
        patch.setattr(socket.socket, "connect_ex", blocked.connect)
        definition = builder(settings)
    finally:
        patch.undo()
    assert blocked.attempts == [], f"generation tried to reach the network: {blocked.attempts}"
    return definition


def fn_sub(definition: str, values: dict[str, str] = SUBSTITUTES) -> str:
    """What CloudFormation Fn::Sub does to the body: ${Name} -> value, ${!Literal} -> ${Literal}."""

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        return "${" + name[1:] + "}" if name.startswith("!") else values[name]

    return re.sub(r"\$\{([^}]*)\}", substitute, definition)


@pytest.fixture(scope="module")
def raw() -> dict[str, str]:
    return {
        "training": _generate_offline(build_training_pipeline, BASE),
        "tuning": _generate_offline(build_tuning_pipeline, BASE),
    }


@pytest.fixture(scope="module")
def training(raw) -> dict:
    return json.loads(fn_sub(raw["training"]))


@pytest.fixture(scope="module")
def tuning(raw) -> dict:
    return json.loads(fn_sub(raw["tuning"]))


@pytest.fixture(scope="module")
def placeheld(raw) -> dict[str, dict]:
    """The definitions with placeholders left in (to see which value goes where)."""
    return {name: json.loads(body) for name, body in raw.items()}


def steps(definition: dict) -> dict[str, dict]:
    """All steps by name, including those inside the condition's branches."""
    found: dict[str, dict] = {}

    def visit(step_list: list) -> None:
        for step in step_list:
            found[step["Name"]] = step
            if step["Type"] == "Condition":
                visit(step["Arguments"]["IfSteps"])
                visit(step["Arguments"]["ElseSteps"])

    visit(definition["Steps"])
    return found


def referenced_steps(node) -> set[str]:
    """Names of the steps whose properties or property files a JSON fragment reads."""
    text = json.dumps(node)
    return set(re.findall(r'"Steps\.([A-Za-z0-9]+)[.\[]', text))


def parameters(definition: dict) -> dict[str, dict]:
    return {p["Name"]: p for p in definition["Parameters"]}


def get(name: str) -> dict:
    return {"Get": f"Parameters.{name}"}


def json_get(step: str, property_file: str, path: str) -> dict:
    return {"Std:JsonGet": {"PropertyFile": {"Get": f"Steps.{step}.PropertyFiles.{property_file}"}, "Path": path}}


def join(*values, on: str = "") -> dict:
    return {"Std:Join": {"On": on, "Values": list(values)}}


EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}


# --------------------------------------------------------------------------------------------------
# Offline generation, placeholders, escaping
# --------------------------------------------------------------------------------------------------


def test_generation_needs_no_network_no_credentials_and_leaves_no_telemetry_thread(raw):
    # _generate_offline already asserted zero connection attempts for both definitions.
    assert all(json.loads(body)["Version"] == "2020-12-01" for body in raw.values())
    assert not [t for t in threading.enumerate() if t.name == "sagemaker-telemetry"]


def test_import_needs_no_region_or_credentials_and_changes_no_environment_variable():
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("SAGEMAKER_")}
    script = (
        "import json, os; before = dict(os.environ); import training.pipelines.definition; "
        "print(json.dumps(dict(os.environ) == before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "true"


def test_the_settings_and_placeholders_import_without_the_sdk_and_change_no_environment_variable():
    # What the stack's pipeline_settings and the rehearsal read: no SDK import, so none of its import traps.
    script = (
        "import json, os, sys; before = dict(os.environ); "
        "import training.pipelines.settings, training.pipelines.placeholders; "
        "print(json.dumps({'sdk': sorted(m for m in sys.modules if m.split('.')[0] in ('sagemaker', 'boto3')), "
        "'environment_unchanged': dict(os.environ) == before}))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"sdk": [], "environment_unchanged": True}


def test_generation_restores_the_environment_and_logging():
    before_env = dict(os.environ)
    before_root = (logging.root.level, list(logging.root.handlers))
    before_sdk = logging.getLogger("sagemaker").level
    build_training_pipeline(BASE)
    assert dict(os.environ) == before_env
    assert (logging.root.level, list(logging.root.handlers)) == before_root
    assert logging.getLogger("sagemaker").level == before_sdk


def test_every_placeholder_is_used_and_nothing_else_is_substituted(raw):
    for name, body in raw.items():
        used = set(re.findall(r"\$\{([^!}][^}]*)\}", body))
        assert used == set(PLACEHOLDERS), name
        assert "${!" not in body, name  # nothing needed escaping in these definitions


def test_no_sentinel_is_left(raw):
    for name, body in raw.items():
        for fragment in SENTINEL_FRAGMENTS:
            assert fragment not in body, (name, fragment)


def test_other_dollar_braces_are_escaped_for_fn_sub():
    settings = dataclasses.replace(BASE, hyperparameters={**BASE.hyperparameters, "lr_scheduler": "${NotMine}"})
    body = build_training_pipeline(settings)
    assert "${!NotMine}" in body
    assert set(re.findall(r"\$\{([^!}][^}]*)\}", body)) == set(PLACEHOLDERS)
    hyperparameters = steps(json.loads(fn_sub(body)))["TrainSegmentation"]["Arguments"]["HyperParameters"]
    assert hyperparameters["lr_scheduler"] == "${NotMine}"  # what SageMaker receives after Fn::Sub


def test_generation_is_deterministic(raw):
    assert build_training_pipeline(BASE) == raw["training"]
    assert build_tuning_pipeline(BASE) == raw["tuning"]


def test_placeholders_land_where_the_stack_expects_them(placeheld):
    for definition in placeheld.values():
        by_name = steps(definition)
        prepare = by_name["PrepareDataset"]["Arguments"]
        assert prepare["RoleArn"] == "${RoleArn}"
        assert prepare["AppSpecification"]["ImageUri"] == "${ProcessingImage}"
        inputs = {i["InputName"]: i["S3Input"] for i in prepare["ProcessingInputs"]}
        assert inputs["code"]["S3Uri"] == "${CodeEntryUri}"
        assert inputs["package"]["S3Uri"] == "${CodePackageUri}"
        assert prepare["ProcessingOutputConfig"]["KmsKeyId"] == "${KmsKeyArn}"
        model = by_name["CreateCandidateModel"]["Arguments"]
        assert model["PrimaryContainer"]["Image"] == "${AlgorithmImage}"
        assert model["ExecutionRoleArn"] == "${RoleArn}"
        register = by_name["RegisterModel"]["Arguments"]
        assert register["InferenceSpecification"]["Containers"][0]["Image"] == "${AlgorithmImage}"
        assert parameters(definition)["InputDataS3Uri"]["DefaultValue"] == "s3://${DatasetsBucket}/raw/"
    training_job = steps(placeheld["training"])["TrainSegmentation"]["Arguments"]
    assert training_job["AlgorithmSpecification"]["TrainingImage"] == "${AlgorithmImage}"
    assert training_job["RoleArn"] == "${RoleArn}"
    tuning_job = steps(placeheld["tuning"])["TuneSegmentation"]["Arguments"]["TrainingJobDefinition"]
    assert tuning_job["AlgorithmSpecification"]["TrainingImage"] == "${AlgorithmImage}"
    assert tuning_job["RoleArn"] == "${RoleArn}"


# --------------------------------------------------------------------------------------------------
# Steps, types, order and dependencies
# --------------------------------------------------------------------------------------------------


def test_training_pipeline_steps_in_order(training):
    top = [(s["Name"], s["Type"]) for s in training["Steps"]]
    assert top == [
        ("PrepareDataset", "Processing"),
        ("TrainSegmentation", "Training"),
        ("PrepareServingValidation", "Processing"),
        ("CreateCandidateModel", "Model"),
        ("TransformValidation", "Transform"),
        ("EvaluateModel", "Processing"),
        ("IsFirstModel", "Condition"),
    ]
    _assert_the_two_tails(training)


def test_tuning_pipeline_steps_in_order(tuning):
    top = [(s["Name"], s["Type"]) for s in tuning["Steps"]]
    assert top == [
        ("PrepareDataset", "Processing"),
        ("TuneSegmentation", "Tuning"),
        ("PrepareServingValidation", "Processing"),
        ("CreateCandidateModel", "Model"),
        ("TransformValidation", "Transform"),
        ("EvaluateModel", "Processing"),
        ("IsFirstModel", "Condition"),
    ]
    _assert_the_two_tails(tuning)


def _assert_the_two_tails(definition: dict) -> None:
    """IsFirstModel: a first model (IncumbentModelS3Uri "") meets today's gate; otherwise the incumbent is created,
    transformed and scored first, and a gate that also reads the regressions decides."""
    branch = definition["Steps"][-1]["Arguments"]
    assert branch["Conditions"] == [{"Type": "Equals", "LeftValue": get("IncumbentModelS3Uri"), "RightValue": ""}]
    [gate] = branch["IfSteps"]
    assert (gate["Name"], gate["Type"]) == ("QualityGate", "Condition")
    assert [(s["Name"], s["Type"]) for s in gate["Arguments"]["IfSteps"]] == [("ExportModel", "Processing"),
                                                                              ("RegisterModel", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in gate["Arguments"]["ElseSteps"]] == [("GateFailed", "Fail")]
    assert [(s["Name"], s["Type"]) for s in branch["ElseSteps"]] == [
        ("CreateIncumbentModel", "Model"),
        ("TransformIncumbent", "Transform"),
        ("EvaluateVsIncumbent", "Processing"),
        ("QualityGateVsIncumbent", "Condition"),
    ]
    gate = branch["ElseSteps"][-1]["Arguments"]
    assert [(s["Name"], s["Type"]) for s in gate["IfSteps"]] == [("ExportModelVsIncumbent", "Processing"),
                                                                 ("RegisterModelVsIncumbent", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in gate["ElseSteps"]] == [("GateFailedVsIncumbent", "Fail")]


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_dependencies_follow_property_references(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    job = "TrainSegmentation" if pipeline == "training" else "TuneSegmentation"
    by_name = steps(definition)
    gate = by_name["QualityGate"]["Arguments"]
    expected = {
        "PrepareDataset": set(),
        job: {"PrepareDataset"},
        "PrepareServingValidation": {"PrepareDataset"},  # beside the training, not after it
        "CreateCandidateModel": {job},
        # The transform reads the serving-resolution frames, never PrepareDataset's full-resolution channel.
        "TransformValidation": {"CreateCandidateModel", "PrepareServingValidation"},
        # Evaluate maps the masks back with the serving geometry; the tuning pipeline's head is the tuned one.
        "EvaluateModel": {"PrepareDataset", "PrepareServingValidation", "TransformValidation"}
        | ({job} if pipeline == "tuning" else set()),
        # Only a gated model is exported, from the artifact that was evaluated, with the frames it was judged on.
        "ExportModel": {job, "PrepareServingValidation", "EvaluateModel"},
        # The reference profile is EvaluateModel's in both tails.
        "RegisterModel": {job, "EvaluateModel", "ExportModel"},
        "GateFailed": {"EvaluateModel"},
        "CreateIncumbentModel": set(),  # the IncumbentModelS3Uri parameter only
        "TransformIncumbent": {"CreateIncumbentModel", "PrepareServingValidation"},  # the same serving frames
        "EvaluateVsIncumbent": {"PrepareDataset", "PrepareServingValidation", "TransformValidation",
                                "TransformIncumbent"} | ({job} if pipeline == "tuning" else set()),
        "ExportModelVsIncumbent": {job, "PrepareServingValidation", "EvaluateVsIncumbent"},
        "RegisterModelVsIncumbent": {job, "EvaluateVsIncumbent", "EvaluateModel", "ExportModelVsIncumbent"},
        "GateFailedVsIncumbent": {"EvaluateVsIncumbent"},
    }
    for name, upstream in expected.items():
        assert referenced_steps(by_name[name]["Arguments"]) == upstream, name
    assert referenced_steps(gate["Conditions"]) == {"EvaluateModel"}
    assert referenced_steps(by_name["QualityGateVsIncumbent"]["Arguments"]["Conditions"]) == {"EvaluateVsIncumbent"}
    # No step outside the incumbent's branch reads a step inside it: SageMaker would never run such a step for a
    # first model (the branch not taken blocks everything below it).
    incumbent_branch = {s["Name"] for s in by_name["IsFirstModel"]["Arguments"]["ElseSteps"]}
    incumbent_branch |= {"ExportModelVsIncumbent", "RegisterModelVsIncumbent", "GateFailedVsIncumbent"}
    outside = set(by_name) - incumbent_branch
    own = {name: by_name[name]["Arguments"]["Conditions"] if by_name[name]["Type"] == "Condition"
           else by_name[name]["Arguments"] for name in outside}  # a condition's branches are not its own arguments
    assert {name: referenced_steps(node) & incumbent_branch for name, node in own.items()} == \
        {name: set() for name in outside}
    assert not any("DependsOn" in s for s in by_name.values())  # data references order everything


def test_pipeline_experiments_are_not_created(training, tuning):
    assert training["PipelineExperimentConfig"] is None
    assert tuning["PipelineExperimentConfig"] is None


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


def test_training_parameters(training):
    params = parameters(training)
    assert list(params) == [
        "InputDataS3Uri",
        "DatasetLayout",
        "ProcessingInstanceType",
        "TrainingInstanceType",
        "TransformInstanceType",
        "Epochs",
        "Algorithm",
        "LearningRate",
        "MiniBatchSize",
        "MinMIoU",
        "MinIoUPerson",
        "MinIoURider",
        "MinIoUBicycle",
        "MinIoUMotorcycle",
        "MinIoUTrafficLight",
        "MaxIoURegression",
        "ModelApprovalStatus",
        "IncumbentModelS3Uri",
        "IncumbentModelPackageArn",
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9]+", name) for name in params)
    assert params["InputDataS3Uri"]["DefaultValue"] == "s3://test-datasets-bucket/raw/"
    assert params["DatasetLayout"]["DefaultValue"] == "cityscapes"
    assert params["ProcessingInstanceType"]["DefaultValue"] == "ml.m5.xlarge"
    assert params["TrainingInstanceType"]["DefaultValue"] == "ml.p3.2xlarge"
    assert params["TransformInstanceType"]["DefaultValue"] == "ml.g4dn.xlarge"
    assert params["Epochs"] == {"Name": "Epochs", "Type": "Integer", "DefaultValue": 12}
    assert params["Algorithm"]["DefaultValue"] == "deeplab"
    assert params["Algorithm"]["EnumValues"] == ["fcn", "psp", "deeplab"]
    assert params["LearningRate"] == {"Name": "LearningRate", "Type": "Float", "DefaultValue": 0.002}
    assert params["MiniBatchSize"] == {"Name": "MiniBatchSize", "Type": "Integer", "DefaultValue": 8}
    assert params["MinMIoU"] == {"Name": "MinMIoU", "Type": "Float", "DefaultValue": 0.55}
    for class_name, floor in FLOORS.items():
        assert params[floor_parameter_name(class_name)]["Type"] == "Float"
        assert params[floor_parameter_name(class_name)]["DefaultValue"] == floor
    assert params["MaxIoURegression"] == {"Name": "MaxIoURegression", "Type": "Float", "DefaultValue": 0.01}
    # "" (no approved model): a first model; roadseg pipeline start fills both from the latest Approved package.
    assert params["IncumbentModelS3Uri"] == {"Name": "IncumbentModelS3Uri", "Type": "String", "DefaultValue": ""}
    assert params["IncumbentModelPackageArn"]["DefaultValue"] == ""
    assert params["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    assert set(params["ModelApprovalStatus"]["EnumValues"]) == {"PendingManualApproval", "Approved", "Rejected"}


def test_tuning_parameters_leave_out_what_the_tuner_searches(training, tuning):
    tuned = {"Algorithm", "LearningRate", "MiniBatchSize"}
    assert list(parameters(tuning)) == [name for name in parameters(training) if name not in tuned]


def test_incremental_training_adds_the_model_channel_and_its_parameter():
    definition = json.loads(
        fn_sub(_generate_offline(build_training_pipeline, dataclasses.replace(BASE, incremental=True)))
    )
    params = parameters(definition)
    assert list(params)[-1] == "PreviousModelS3Uri"
    assert params["PreviousModelS3Uri"] == {"Name": "PreviousModelS3Uri", "Type": "String"}  # required at start
    channels = {c["ChannelName"]: c for c in steps(definition)["TrainSegmentation"]["Arguments"]["InputDataConfig"]}
    assert channels["model"]["ContentType"] == "application/x-sagemaker-model"
    assert channels["model"]["DataSource"]["S3DataSource"]["S3Uri"] == get("PreviousModelS3Uri")


def test_no_model_channel_without_incremental(training):
    channels = [c["ChannelName"] for c in steps(training)["TrainSegmentation"]["Arguments"]["InputDataConfig"]]
    assert "model" not in channels
    assert "PreviousModelS3Uri" not in parameters(training)


# --------------------------------------------------------------------------------------------------
# PrepareDataset
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_prepare_step(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    step = steps(definition)["PrepareDataset"]
    args = step["Arguments"]
    assert args["AppSpecification"]["ContainerEntrypoint"] == PROCESSING_ENTRYPOINT
    assert args["AppSpecification"]["ContainerArguments"] == [
        "prepare",
        "--layout",
        get("DatasetLayout"),
        "--input",
        "/opt/ml/processing/input/data",
        "--output",
        "/opt/ml/processing/output",
        "--report-dir",
        "/opt/ml/processing/output/report",
        "--scheme",
        "cityscapes",
        "--max-bad-fraction",
        "0.05",
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["code"]["S3Uri"] == SUBSTITUTES["CodeEntryUri"]
    assert inputs["package"]["LocalPath"] == "/opt/ml/processing/input/package"
    assert inputs["package"]["S3Uri"] == SUBSTITUTES["CodePackageUri"]
    assert inputs["data"]["S3Uri"] == get("InputDataS3Uri")
    assert inputs["data"]["LocalPath"] == "/opt/ml/processing/input/data"
    outputs = {o["OutputName"]: o["S3Output"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    names = ["train", "validation", "train_annotation", "validation_annotation", "label_map", "report"]
    assert list(outputs) == names
    for name in names:
        assert outputs[name]["LocalPath"] == f"/opt/ml/processing/output/{name}"
        assert outputs[name]["S3Uri"] == join("s3:/", "test-datasets-bucket", "prepared", EXECUTION_ID, name, on="/")
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == SUBSTITUTES["KmsKeyArn"]
    cluster = args["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == get("ProcessingInstanceType")
    assert cluster["VolumeSizeInGB"] == 100
    assert cluster["VolumeKmsKeyId"] == SUBSTITUTES["KmsKeyArn"]  # m5 has no local instance storage
    assert args["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 8 * 3600}
    assert step["PropertyFiles"] == [
        {"PropertyFileName": "PreparationReport", "OutputName": "report", "FilePath": "report.json"}
    ]


def test_processing_entrypoint_runs_the_entry_script_whatever_its_key_name(tmp_path):
    # A CDK file asset is stored as <hash>.py: the entrypoint must not depend on the name.
    (tmp_path / "0f3a9c.py").write_text("import json, sys; print(json.dumps(sys.argv[1:]))")
    shell, flag, command, name = PROCESSING_ENTRYPOINT
    assert CODE_DIR in command
    command = command.replace(CODE_DIR, str(tmp_path)).replace("python3", sys.executable)
    arguments = ["prepare", "--layout", "cityscapes", "--scheme", "traffic light"]
    result = subprocess.run([shell, flag, command, name, *arguments], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == arguments


# --------------------------------------------------------------------------------------------------
# TrainSegmentation
# --------------------------------------------------------------------------------------------------


def _num_training_samples() -> dict:
    return join(json_get("PrepareDataset", "PreparationReport", "num_training_samples"))


def test_training_hyperparameters(training):
    hyperparameters = steps(training)["TrainSegmentation"]["Arguments"]["HyperParameters"]
    assert hyperparameters == {
        "num_classes": "19",
        "backbone": "resnet-50",
        "use_pretrained_model": "True",
        "algorithm": get("Algorithm"),
        "epochs": join(get("Epochs")),
        "learning_rate": join(get("LearningRate")),
        "mini_batch_size": join(get("MiniBatchSize")),
        "crop_size": "240",
        "early_stopping": "False",
        "num_training_samples": _num_training_samples(),
    }
    literal = [v for v in hyperparameters.values() if not isinstance(v, dict)]
    assert all(isinstance(v, str) for v in literal)
    assert not {"true", "false"} & set(literal)


ALGORITHM_CHANNELS = ["train", "validation", "train_annotation", "validation_annotation"]


def test_training_channels_and_content_types(training):
    channels = steps(training)["TrainSegmentation"]["Arguments"]["InputDataConfig"]
    # label_map is not passed: the map PrepareDataset writes is the algorithm's default, and AWS documents no
    # content type for that channel.
    assert [c["ChannelName"] for c in channels] == ALGORITHM_CHANNELS
    for channel in channels:
        name = channel["ChannelName"]
        assert channel["ContentType"] == ("image/jpeg" if name in IMAGE_CONTENT else "image/png"), name
        assert name in IMAGE_CONTENT | ANNOTATION_CONTENT
        assert channel["InputMode"] == "File"
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3Uri"] == {
            "Get": f"Steps.PrepareDataset.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"
        }
        assert source["S3DataType"] == "S3Prefix"
        assert source["S3DataDistributionType"] == "FullyReplicated"


def test_training_job_resources_output_and_spot(training):
    args = steps(training)["TrainSegmentation"]["Arguments"]
    assert args["AlgorithmSpecification"] == {
        "TrainingInputMode": "File",
        "TrainingImage": SUBSTITUTES["AlgorithmImage"],
    }
    assert "MetricDefinitions" not in args["AlgorithmSpecification"]
    assert args["ResourceConfig"] == {
        "InstanceType": get("TrainingInstanceType"),
        "InstanceCount": 1,
        "VolumeSizeInGB": 100,
        "VolumeKmsKeyId": SUBSTITUTES["KmsKeyArn"],
    }
    assert args["OutputDataConfig"]["S3OutputPath"] == join(
        "s3:/", "test-artifacts-bucket", "pipelines", "roadseg-test-training", EXECUTION_ID, "training", on="/"
    )
    assert args["OutputDataConfig"]["KmsKeyId"] == SUBSTITUTES["KmsKeyArn"]
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 8 * 3600, "MaxWaitTimeInSeconds": 16 * 3600}
    assert args["EnableManagedSpotTraining"] is True
    assert args["CheckpointConfig"]["S3Uri"] == join(
        "s3:/", "test-artifacts-bucket", "checkpoints", "roadseg-test-training", EXECUTION_ID, on="/"
    )
    assert args["EnableNetworkIsolation"] is True


def test_on_demand_training_has_no_spot_wait_or_checkpoints():
    settings = dataclasses.replace(BASE, use_spot_instances=False, max_wait_seconds=0)
    for builder, step_name in (
        (build_training_pipeline, "TrainSegmentation"),
        (build_tuning_pipeline, "TuneSegmentation"),
    ):
        args = steps(json.loads(fn_sub(builder(settings))))[step_name]["Arguments"]
        job = args.get("TrainingJobDefinition", args)
        assert not job.get("EnableManagedSpotTraining", False), step_name
        assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 8 * 3600}, step_name
        assert "CheckpointConfig" not in job, step_name


def test_no_volume_kms_key_on_instance_types_with_local_nvme_storage():
    settings = dataclasses.replace(
        BASE, training_instance_type="ml.g4dn.2xlarge", processing_instance_type="ml.m5d.xlarge"
    )
    for builder, job in ((build_training_pipeline, "TrainSegmentation"), (build_tuning_pipeline, "TuneSegmentation")):
        by_name = steps(json.loads(fn_sub(builder(settings))))
        args = by_name[job]["Arguments"]
        assert "VolumeKmsKeyId" not in args.get("TrainingJobDefinition", args)["ResourceConfig"]
        for processing in ("PrepareDataset", "PrepareServingValidation", "EvaluateModel"):
            assert "VolumeKmsKeyId" not in by_name[processing]["Arguments"]["ProcessingResources"]["ClusterConfig"]
        # Output encryption does not depend on the instance type.
        assert args.get("TrainingJobDefinition", args)["OutputDataConfig"]["KmsKeyId"] == SUBSTITUTES["KmsKeyArn"]


# --------------------------------------------------------------------------------------------------
# TuneSegmentation
# --------------------------------------------------------------------------------------------------


def test_tuning_job_objective_ranges_and_limits(tuning):
    config = steps(tuning)["TuneSegmentation"]["Arguments"]["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:mIOU"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    assert config["Strategy"] == "Bayesian"
    ranges = config["ParameterRanges"]
    continuous = {r["Name"]: r for r in ranges["ContinuousParameterRanges"]}
    assert continuous["learning_rate"] == {
        "Name": "learning_rate",
        "MinValue": "0.0001",
        "MaxValue": "0.1",
        "ScalingType": "Logarithmic",
    }
    assert (continuous["momentum"]["MinValue"], continuous["momentum"]["MaxValue"]) == ("0.9", "0.999")
    assert (float(continuous["weight_decay"]["MinValue"]), float(continuous["weight_decay"]["MaxValue"])) == (
        1e-5,
        1e-3,
    )
    integer = {r["Name"]: r for r in ranges["IntegerParameterRanges"]}
    # Capped at the settings' mini_batch_size (8: what fits, or an explicit value), floor a quarter of it (>= 2).
    assert (integer["mini_batch_size"]["MinValue"], integer["mini_batch_size"]["MaxValue"]) == ("2", "8")
    categorical = {r["Name"]: r["Values"] for r in ranges["CategoricalParameterRanges"]}
    assert categorical == {"optimizer": ["sgd", "adam", "rmsprop"], "algorithm": ["fcn", "psp", "deeplab"]}


def test_tuning_ranges_are_the_tunable_ranges_of_the_hyperparameters(tuning):
    ranges = steps(tuning)["TuneSegmentation"]["Arguments"]["HyperParameterTuningJobConfig"]["ParameterRanges"]
    kinds = {"continuous": "ContinuousParameterRanges", "integer": "IntegerParameterRanges",
             "categorical": "CategoricalParameterRanges"}
    generated = {r["Name"]: (kind, r) for kind, items in ranges.items() for r in items}
    expected_ranges = tuning_ranges(int(BASE.hyperparameters["mini_batch_size"]))
    assert set(generated) == {r.name for r in TUNABLE_RANGES} == {r.name for r in expected_ranges}
    for tunable in expected_ranges:
        kind, item = generated[tunable.name]
        assert kind == kinds[tunable.kind], tunable.name
        expected = tunable.as_parameter_range()
        if tunable.kind == "categorical":
            assert item["Values"] == expected["Values"]
        else:
            assert item["ScalingType"] == expected["ScalingType"], tunable.name
            assert (float(item["MinValue"]), float(item["MaxValue"])) == (tunable.min, tunable.max), tunable.name


def test_tuning_keeps_a_batch_size_too_small_to_search_static():
    settings = dataclasses.replace(BASE, hyperparameters={**BASE.hyperparameters, "mini_batch_size": "2"})
    tune = steps(json.loads(fn_sub(build_tuning_pipeline(settings))))["TuneSegmentation"]["Arguments"]
    integer = tune["HyperParameterTuningJobConfig"]["ParameterRanges"].get("IntegerParameterRanges", [])
    assert "mini_batch_size" not in {r["Name"] for r in integer}
    assert tune["TrainingJobDefinition"]["StaticHyperParameters"]["mini_batch_size"] == "2"


def test_tuning_training_job_definition(tuning):
    definition = steps(tuning)["TuneSegmentation"]["Arguments"]["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert static == {
        "num_classes": "19",
        "backbone": "resnet-50",
        "use_pretrained_model": "True",
        "epochs": join(get("Epochs")),
        "crop_size": "240",
        "early_stopping": "False",
        "num_training_samples": _num_training_samples(),
    }
    assert not {"learning_rate", "algorithm", "mini_batch_size", "optimizer"} & set(static)
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == ALGORITHM_CHANNELS
    assert all(c["InputMode"] == "File" and c["ContentType"] for c in definition["InputDataConfig"])
    assert "MetricDefinitions" not in definition["AlgorithmSpecification"]  # built-in objective metric
    # Kept although the SDK's tuner drops them (see training.pipelines.tuning_job._TuningStep):
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == SUBSTITUTES["KmsKeyArn"]
    assert definition["EnableNetworkIsolation"] is True
    assert definition["ResourceConfig"]["InstanceType"] == get("TrainingInstanceType")
    assert definition["OutputDataConfig"] == {
        "S3OutputPath": join(
            "s3:/", "test-artifacts-bucket", "pipelines", "roadseg-test-tuning", EXECUTION_ID, "training", on="/"
        ),
        "KmsKeyId": SUBSTITUTES["KmsKeyArn"],
        "CompressionType": "GZIP",
    }
    # BASE trains on spot; tuning does not (see test_tuning_jobs_share_no_checkpoint_prefix).
    assert not definition.get("EnableManagedSpotTraining", False)
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 8 * 3600}
    assert "CheckpointConfig" not in definition


def test_tuning_jobs_share_no_checkpoint_prefix(training, tuning):
    # All training jobs of a tuning job share its TrainingJobDefinition, so a CheckpointConfig there would be one
    # prefix for jobs of different heads: tuning runs on demand without checkpoints even where training uses spot.
    assert BASE.use_spot_instances
    train = steps(training)["TrainSegmentation"]["Arguments"]
    assert train["EnableManagedSpotTraining"] is True and "CheckpointConfig" in train
    definition = steps(tuning)["TuneSegmentation"]["Arguments"]["TrainingJobDefinition"]
    assert "CheckpointConfig" not in definition and not definition.get("EnableManagedSpotTraining", False)
    assert "MaxWaitTimeInSeconds" not in definition["StoppingCondition"]
    assert "checkpoints" not in json.dumps(steps(tuning)["TuneSegmentation"])


def test_tuning_candidate_is_the_best_training_job(tuning):
    model_data = steps(tuning)["CreateCandidateModel"]["Arguments"]["PrimaryContainer"]["ModelDataUrl"]
    assert model_data == join(
        "s3:/",
        "test-artifacts-bucket",
        join("pipelines", "roadseg-test-tuning", EXECUTION_ID, "training", on="/"),
        {"Get": "Steps.TuneSegmentation.TrainingJobSummaries[0].TrainingJobName"},
        "output/model.tar.gz",
        on="/",
    )


# --------------------------------------------------------------------------------------------------
# CreateCandidateModel, TransformValidation, EvaluateModel
# --------------------------------------------------------------------------------------------------


def test_candidate_model(training):
    args = steps(training)["CreateCandidateModel"]["Arguments"]
    assert args["ExecutionRoleArn"] == SUBSTITUTES["RoleArn"]
    assert args["PrimaryContainer"]["Image"] == SUBSTITUTES["AlgorithmImage"]
    assert args["PrimaryContainer"]["ModelDataUrl"] == {
        "Get": "Steps.TrainSegmentation.ModelArtifacts.S3ModelArtifacts"
    }
    assert args["EnableNetworkIsolation"] is True
    assert "ModelName" not in args  # named per execution by SageMaker


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_transform_validation(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    args = steps(definition)["TransformValidation"]["Arguments"]
    assert args["ModelName"] == {"Get": "Steps.CreateCandidateModel.ModelName"}
    assert args["TransformInput"] == {  # the frames as the service receives them
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": {
                    "Get": "Steps.PrepareServingValidation.ProcessingOutputConfig.Outputs['serving_validation']"
                    ".S3Output.S3Uri"
                },
            }
        },
        "ContentType": "image/jpeg",
        "SplitType": "None",
    }
    assert args["TransformOutput"] == {
        "S3OutputPath": join(
            "s3:/",
            "test-artifacts-bucket",
            "pipelines",
            f"roadseg-test-{pipeline}",
            EXECUTION_ID,
            "predictions",
            on="/",
        ),
        "Accept": "image/png",
        "AssembleWith": "None",
        "KmsKeyId": SUBSTITUTES["KmsKeyArn"],
    }
    # g4dn has local NVMe storage: a volume KMS key would be rejected.
    assert args["TransformResources"] == {"InstanceType": get("TransformInstanceType"), "InstanceCount": 1}
    assert args["BatchStrategy"] == "SingleRecord"


# What EvaluateModel records as the head: the Algorithm parameter, or the tuned algorithm of the evaluated job.
HEADS = {
    "training": get("Algorithm"),
    "tuning": {"Get": "Steps.TuneSegmentation.TrainingJobSummaries[0].TunedHyperParameters['algorithm']"},
}


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_serving_step_prepares_validation_as_ingest_does(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    step = steps(definition)["PrepareServingValidation"]
    args = step["Arguments"]
    assert args["AppSpecification"]["ImageUri"] == SUBSTITUTES["ProcessingImage"]
    assert args["AppSpecification"]["ContainerEntrypoint"] == PROCESSING_ENTRYPOINT
    assert args["AppSpecification"]["ContainerArguments"] == [
        "serving",
        "--input",
        "/opt/ml/processing/input/validation",
        "--output",
        "/opt/ml/processing/output/serving_validation",
        "--geometry-dir",
        "/opt/ml/processing/output/serving_geometry",
    ]
    # prepare_frame's options travel as the ingest function's own variables (contracts.lambda_env).
    assert args["Environment"] == BASE.serving_preprocessing.frame_preparation_env() == {
        "TARGET_WIDTH": "1024", "TARGET_HEIGHT": "512", "ROI": "", "MAX_INPUT_BYTES": "20971520",
        "MAX_INPUT_PIXELS": "40000000", "JPEG_QUALITY": "90"}
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert set(inputs) == {"code", "package", "validation"}
    assert inputs["validation"]["S3Uri"] == {
        "Get": "Steps.PrepareDataset.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri"
    }
    assert inputs["validation"]["LocalPath"] == "/opt/ml/processing/input/validation"
    assert inputs["package"]["S3Uri"] == SUBSTITUTES["CodePackageUri"]
    outputs = {o["OutputName"]: o["S3Output"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    assert list(outputs) == ["serving_validation", "serving_geometry"]
    for name, output in outputs.items():
        assert output["LocalPath"] == f"/opt/ml/processing/output/{name}"
        assert output["S3Uri"] == join("s3:/", "test-datasets-bucket", "prepared", EXECUTION_ID, name, on="/")
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == SUBSTITUTES["KmsKeyArn"]
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == get("ProcessingInstanceType")
    assert args["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert "PropertyFiles" not in step or not step["PropertyFiles"]


def test_serving_step_carries_the_configured_preprocessing():
    from contracts.lambda_env import PreprocessorEnvironment

    configured = PreprocessorEnvironment(target_width=960, target_height=480, roi=(0.0, 0.1, 1.0, 0.88),
                                         jpeg_quality=80, max_input_pixels=30_000_000)
    settings = dataclasses.replace(BASE, serving_preprocessing=configured)
    for builder in (build_training_pipeline, build_tuning_pipeline):
        environment = steps(json.loads(fn_sub(builder(settings))))["PrepareServingValidation"]["Arguments"][
            "Environment"]
        assert environment == {"TARGET_WIDTH": "960", "TARGET_HEIGHT": "480", "ROI": "0.0,0.1,1.0,0.88",
                               "MAX_INPUT_BYTES": "20971520", "MAX_INPUT_PIXELS": "30000000", "JPEG_QUALITY": "80"}
    # No other job gets the functions' variables.
    by_name = steps(json.loads(fn_sub(build_training_pipeline(settings))))
    # The reference profile measures vru_present with the postprocess function's VRU_MIN_PIXELS.
    vru = dataclasses.replace(BASE, serving_preprocessing=dataclasses.replace(configured, vru_min_pixels=120))
    evaluate = steps(json.loads(fn_sub(build_training_pipeline(vru))))["EvaluateModel"]["Arguments"]
    arguments = evaluate["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--vru-min-pixels") + 1] == "120"
    assert all("Environment" not in by_name[name]["Arguments"] for name in ("PrepareDataset", "EvaluateModel"))


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_evaluate_step(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    step = steps(definition)["EvaluateModel"]
    args = step["Arguments"]
    assert args["AppSpecification"]["ImageUri"] == SUBSTITUTES["ProcessingImage"]
    assert args["AppSpecification"]["ContainerEntrypoint"] == PROCESSING_ENTRYPOINT
    assert args["AppSpecification"]["ContainerArguments"] == [
        "evaluate",
        "--ground-truth",
        "/opt/ml/processing/input/ground_truth",
        "--predictions",
        "/opt/ml/processing/input/predictions",
        "--serving-geometry",
        "/opt/ml/processing/input/serving_geometry/geometry.json",
        "--head",
        HEADS[pipeline],
        "--output",
        "/opt/ml/processing/output/evaluation",
        "--scheme",
        "cityscapes",
        "--serving-frames",
        "/opt/ml/processing/input/serving_validation",
        "--vru-min-pixels",
        "50",
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    # The frames the transform read: their input signals go into the reference profile.
    assert inputs["serving_validation"] == {
        "S3Uri": {"Get": "Steps.PrepareServingValidation.ProcessingOutputConfig.Outputs['serving_validation']"
                         ".S3Output.S3Uri"},
        "LocalPath": "/opt/ml/processing/input/serving_validation", "S3DataType": "S3Prefix",
        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"}
    assert inputs["serving_geometry"]["S3Uri"] == {
        "Get": "Steps.PrepareServingValidation.ProcessingOutputConfig.Outputs['serving_geometry'].S3Output.S3Uri"
    }
    assert inputs["serving_geometry"]["LocalPath"] == "/opt/ml/processing/input/serving_geometry"
    assert inputs["ground_truth"]["S3Uri"] == {
        "Get": "Steps.PrepareDataset.ProcessingOutputConfig.Outputs['validation_annotation'].S3Output.S3Uri"
    }
    assert inputs["ground_truth"]["LocalPath"] == "/opt/ml/processing/input/ground_truth"
    assert inputs["predictions"]["S3Uri"] == {"Get": "Steps.TransformValidation.TransformOutput.S3OutputPath"}
    assert inputs["predictions"]["LocalPath"] == "/opt/ml/processing/input/predictions"
    assert inputs["package"]["S3Uri"] == SUBSTITUTES["CodePackageUri"]
    assert inputs["code"]["S3Uri"] == SUBSTITUTES["CodeEntryUri"]
    [output] = args["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "evaluation"
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/evaluation"
    assert output["S3Output"]["S3Uri"] == join(
        "s3:/", "test-artifacts-bucket", "pipelines", f"roadseg-test-{pipeline}", EXECUTION_ID, "evaluation", on="/"
    )
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == SUBSTITUTES["KmsKeyArn"]
    assert args["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert step["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


# --------------------------------------------------------------------------------------------------
# QualityGate, RegisterModel, GateFailed
# --------------------------------------------------------------------------------------------------


def _gate_get(path: str) -> dict:
    return json_get("EvaluateModel", "EvaluationReport", path)


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_quality_gate_conditions(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    conditions = steps(definition)["QualityGate"]["Arguments"]["Conditions"]
    assert len(conditions) == 1 + len(FLOORS)
    assert all(c["Type"] == "GreaterThanOrEqualTo" for c in conditions)
    pairs = [(c["LeftValue"], c["RightValue"]) for c in conditions]
    assert pairs == [
        (_gate_get("gate.mIoU"), get("MinMIoU")),
        (_gate_get("gate.person"), get("MinIoUPerson")),
        (_gate_get("gate.rider"), get("MinIoURider")),
        (_gate_get("gate.bicycle"), get("MinIoUBicycle")),
        (_gate_get("gate.motorcycle"), get("MinIoUMotorcycle")),
        (_gate_get("gate['traffic light']"), get("MinIoUTrafficLight")),
    ]


def test_gate_json_paths_resolve_on_an_evaluation_report():
    # The SDK's own (local-mode) JsonPath evaluator, on the evaluation.json shape.
    from sagemaker.core.local.utils import get_using_dot_notation

    report = {
        "metrics": {"mIoU": 0.61, "pixel_accuracy": 0.93},
        "gate": {"mIoU": 0.61, "person": 0.52, "traffic light": 0.31, "motorcycle": -1.0},
    }
    assert get_using_dot_notation(report, gate_json_path("mIoU")) == 0.61
    assert get_using_dot_notation(report, gate_json_path("person")) == 0.52
    assert get_using_dot_notation(report, gate_json_path("traffic light")) == 0.31
    assert get_using_dot_notation(report, gate_json_path("motorcycle")) == -1.0


TAILS = [("RegisterModel", "EvaluateModel", "ExportModel"),
         ("RegisterModelVsIncumbent", "EvaluateVsIncumbent", "ExportModelVsIncumbent")]


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
@pytest.mark.parametrize(("register_step", "evaluate_step", "export_step"), TAILS)
def test_register_model(pipeline, register_step, evaluate_step, export_step, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    args = steps(definition)[register_step]["Arguments"]
    assert args["ModelPackageGroupName"] == "roadseg-test-segmentation"
    assert args["ModelApprovalStatus"] == get("ModelApprovalStatus")
    spec = args["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == ["image/jpeg"]
    assert spec["SupportedResponseMIMETypes"] == ["image/png"]
    for key in ("SupportedRealtimeInferenceInstanceTypes", "SupportedTransformInstanceTypes"):
        assert spec[key][0] == "ml.g4dn.xlarge"
        assert all(t.split(".")[1] in {"g4dn", "g5", "p3"} for t in spec[key])
    [container] = spec["Containers"]
    assert container["Image"] == SUBSTITUTES["AlgorithmImage"]
    candidate = steps(definition)["CreateCandidateModel"]["Arguments"]["PrimaryContainer"]["ModelDataUrl"]
    assert container["ModelDataUrl"] == candidate  # the model that was evaluated is the one registered
    assert args["ModelMetrics"]["ModelQuality"]["Statistics"] == {  # the report the gate read
        "ContentType": "application/json",
        "S3Uri": join(
            {"Get": f"Steps.{evaluate_step}.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
            "evaluation.json",
            on="/",
        ),
    }
    # The reference profile of the gated frames (EvaluateModel's, in both tails): where the drift monitor finds it.
    assert args["DriftCheckBaselines"] == {"ModelDataQuality": {"Statistics": {
        "ContentType": "application/json",
        "S3Uri": join({"Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
                      REFERENCE_PROFILE_FILE, on="/"),
    }}}
    assert args["CustomerMetadataProperties"] == {
        "ClassScheme": "cityscapes",
        "NumClasses": "19",
        "EdgeBundle": {"Get": f"Steps.{export_step}.ProcessingOutputConfig.Outputs['bundle'].S3Output.S3Uri"},
        "ServingSize": "1024x512",
    }


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
@pytest.mark.parametrize(("evaluate_step", "export_step"), [(e, x) for _, e, x in TAILS])
def test_export_step_turns_the_gated_model_into_an_edge_bundle(pipeline, evaluate_step, export_step, training,
                                                               tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    by_name = steps(definition)
    args = by_name[export_step]["Arguments"]
    # Python 3.11 for MXNet, the same entry script, the functions' frame preparation (the serving resolution).
    assert args["AppSpecification"]["ImageUri"] == SUBSTITUTES["ExportImage"]
    assert args["AppSpecification"]["ContainerEntrypoint"] == PROCESSING_ENTRYPOINT
    assert args["Environment"] == BASE.serving_preprocessing.frame_preparation_env()
    assert args["AppSpecification"]["ContainerArguments"] == [
        "export",
        "--model", "/opt/ml/processing/input/model",
        "--validation", "/opt/ml/processing/input/serving_validation",
        "--evaluation", "/opt/ml/processing/input/evaluation/evaluation.json",
        "--output", "/opt/ml/processing/output/bundle",
        "--max-logit-difference", "0.01",
        "--min-argmax-agreement", "0.999",
        "--max-parity-frames", "8",
        "--scheme", "cityscapes",
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["wheels"]["S3Uri"] == SUBSTITUTES["ExportWheelsUri"]
    assert inputs["wheels"]["LocalPath"] == WHEELS_DIR
    candidate = by_name["CreateCandidateModel"]["Arguments"]["PrimaryContainer"]["ModelDataUrl"]
    assert inputs["model"]["S3Uri"] == candidate  # the evaluated artifact, nothing else
    assert inputs["serving_validation"]["S3Uri"] == {
        "Get": "Steps.PrepareServingValidation.ProcessingOutputConfig.Outputs['serving_validation'].S3Output.S3Uri"
    }
    assert inputs["evaluation"]["S3Uri"] == {
        "Get": f"Steps.{evaluate_step}.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"
    }
    [output] = args["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "bundle"
    assert output["S3Output"]["S3Uri"] == join(
        "s3:/", "test-artifacts-bucket", "pipelines", f"roadseg-test-{pipeline}", EXECUTION_ID, "bundle", on="/"
    )
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == SUBSTITUTES["KmsKeyArn"]
    # The wheels arrive as an input: the container needs no network, as every other step.
    assert args["NetworkConfig"]["EnableNetworkIsolation"] is True


def test_the_longest_edge_bundle_uri_is_a_valid_model_package_metadata_value():
    """CustomerMetadataMap values: 1..256 characters of [\\p{L}\\p{Z}\\p{N}_.:/=+-@] (botocore's sagemaker model)."""
    import botocore.session

    from contracts.naming import tuning_pipeline_name

    value_shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("CustomerMetadataMap").value
    longest_bucket, longest_prefix = "b" * 63, "p" * 21  # S3's limit; config's prefix pattern {1,20} after a letter
    execution_id = "a1b2c3d4e5f6"  # the last part of a pipeline execution ARN
    uri = "/".join(["s3:/", longest_bucket, "pipelines", tuning_pipeline_name(longest_prefix), execution_id, "bundle"])
    assert len(uri) <= value_shape.metadata["max"] == 256
    assert re.fullmatch(r"[\w\s.:/=+\-@]+", uri)
    settings = dataclasses.replace(BASE, export_max_logit_difference=0.05, export_min_argmax_agreement=0.99,
                                   export_parity_frames=3)
    arguments = steps(json.loads(fn_sub(build_training_pipeline(settings))))["ExportModel"]["Arguments"][
        "AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--max-logit-difference") + 1] == "0.05"
    assert arguments[arguments.index("--min-argmax-agreement") + 1] == "0.99"
    assert arguments[arguments.index("--max-parity-frames") + 1] == "3"


def test_the_reference_profile_location_is_what_the_contract_reads(training):
    # contracts.signals.reference_profile_uri reads DescribeModelPackage: the request's shape is what it returns.
    args = steps(training)["RegisterModel"]["Arguments"]
    request = {**args, "DriftCheckBaselines": {"ModelDataQuality": {"Statistics": {
        "ContentType": "application/json", "S3Uri": "s3://artifacts/pipelines/p/e/evaluation/reference-profile.json"}}}}
    assert reference_profile_uri(request) == "s3://artifacts/pipelines/p/e/evaluation/reference-profile.json"
    assert reference_profile_uri({k: v for k, v in args.items() if k != "DriftCheckBaselines"}) is None
    import botocore.session

    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("DescribeModelPackageOutput")
    node = shape
    for key in ("DriftCheckBaselines", "ModelDataQuality", "Statistics", "S3Uri"):
        node = node.members[key]  # the path exists in DescribeModelPackage's output
    assert node.type_name == "string"


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_the_incumbent_is_created_from_the_parameter_and_transforms_the_same_frames(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    by_name = steps(definition)
    model = by_name["CreateIncumbentModel"]["Arguments"]
    candidate = by_name["CreateCandidateModel"]["Arguments"]
    assert model["PrimaryContainer"]["ModelDataUrl"] == get("IncumbentModelS3Uri")
    # The same image, role and isolation as the candidate: the two differ in their model data only.
    assert {k: v for k, v in model.items() if k != "PrimaryContainer"} == \
        {k: v for k, v in candidate.items() if k != "PrimaryContainer"}
    assert model["PrimaryContainer"]["Image"] == candidate["PrimaryContainer"]["Image"]
    incumbent = by_name["TransformIncumbent"]["Arguments"]
    mine = by_name["TransformValidation"]["Arguments"]
    assert incumbent["ModelName"] == {"Get": "Steps.CreateIncumbentModel.ModelName"}
    assert incumbent["TransformInput"] == mine["TransformInput"]  # the SAME serving frames
    assert {k: v for k, v in incumbent.items() if k not in ("ModelName", "TransformOutput")} == \
        {k: v for k, v in mine.items() if k not in ("ModelName", "TransformOutput")}
    assert incumbent["TransformOutput"]["S3OutputPath"] == join(
        "s3:/", "test-artifacts-bucket", "pipelines", f"roadseg-test-{pipeline}", EXECUTION_ID,
        "incumbent-predictions", on="/")


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_evaluate_vs_incumbent_scores_both_models(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    by_name = steps(definition)
    step = by_name["EvaluateVsIncumbent"]
    args = step["Arguments"]
    first = by_name["EvaluateModel"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    container = args["AppSpecification"]["ContainerArguments"]
    # The candidate's arguments (without the reference profile's --serving-frames and --vru-min-pixels,
    # EvaluateModel's), then the incumbent's.
    assert first[-4:-3] == ["--serving-frames"] and first[-2:-1] == ["--vru-min-pixels"]
    assert container[: len(first) - 4] == first[:-4]
    assert container[len(first) - 4:] == [
        "--incumbent-predictions", "/opt/ml/processing/input/incumbent_predictions",
        join("--incumbent-model-data=", get("IncumbentModelS3Uri")),
        join("--incumbent-model-package=", get("IncumbentModelPackageArn")),
        "--incumbent-tolerance", join(get("MaxIoURegression")),
    ]
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["incumbent_predictions"]["S3Uri"] == {"Get": "Steps.TransformIncumbent.TransformOutput.S3OutputPath"}
    assert inputs["predictions"]["S3Uri"] == {"Get": "Steps.TransformValidation.TransformOutput.S3OutputPath"}
    assert "serving_validation" not in inputs
    [output] = args["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == join("s3:/", "test-artifacts-bucket", "pipelines", f"roadseg-test-{pipeline}",
                                               EXECUTION_ID, "evaluation-vs-incumbent", on="/")
    assert step["PropertyFiles"] == [
        {"PropertyFileName": "IncumbentEvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}]


def _vs_get(path: str) -> dict:
    return json_get("EvaluateVsIncumbent", "IncumbentEvaluationReport", path)


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_a_regression_beyond_the_tolerance_fails_the_gate(pipeline, training, tuning):
    """QualityGateVsIncumbent: today's floors on the same report, and every safety-critical class's regression
    (incumbent minus candidate IoU) at most MaxIoURegression."""
    definition = {"training": training, "tuning": tuning}[pipeline]
    conditions = steps(definition)["QualityGateVsIncumbent"]["Arguments"]["Conditions"]
    floors = [(c["Type"], c["LeftValue"], c["RightValue"]) for c in conditions[: 1 + len(FLOORS)]]
    assert floors == [("GreaterThanOrEqualTo", _vs_get("gate.mIoU"), get("MinMIoU")),
                      *(("GreaterThanOrEqualTo", _vs_get(gate_json_path(name)), get(floor_parameter_name(name)))
                        for name in FLOORS)]
    regressions = [(c["Type"], c["LeftValue"], c["RightValue"]) for c in conditions[1 + len(FLOORS):]]
    assert regressions == [
        ("LessThanOrEqualTo", _vs_get("incumbent.regression.person"), get("MaxIoURegression")),
        ("LessThanOrEqualTo", _vs_get("incumbent.regression.rider"), get("MaxIoURegression")),
        ("LessThanOrEqualTo", _vs_get("incumbent.regression.bicycle"), get("MaxIoURegression")),
        ("LessThanOrEqualTo", _vs_get("incumbent.regression.motorcycle"), get("MaxIoURegression")),
        ("LessThanOrEqualTo", _vs_get("incumbent.regression['traffic light']"), get("MaxIoURegression")),
    ]
    # The first model's gate reads no regression.
    assert "incumbent" not in json.dumps(steps(definition)["QualityGate"]["Arguments"]["Conditions"])


def test_the_regression_paths_resolve_on_a_report_written_by_evaluate(tmp_path):
    """The gate's JsonPaths on a real evaluation.json (training.evaluate with an incumbent), read with the SDK's own
    JsonPath evaluator, and what each condition decides."""
    import numpy as np
    from PIL import Image
    from sagemaker.core.local.utils import get_using_dot_notation

    from segcore.classes import custom_scheme as scheme_of
    from training.evaluate import Incumbent, evaluate_dirs

    scheme = scheme_of("two", [("road", (1, 1, 1)), ("traffic light", (2, 2, 2))])
    truth = np.array([[0, 0, 1, 1]] * 4, dtype=np.uint8)
    for folder, mask in (("gt", truth), ("incumbent", truth), ("candidate", np.array([[0, 0, 0, 1]] * 4, np.uint8))):
        (tmp_path / folder).mkdir()
        Image.fromarray(mask).save(tmp_path / folder / ("a.png" if folder == "gt" else "a.jpg.out"), "PNG")
    report = evaluate_dirs(tmp_path / "gt", tmp_path / "candidate", scheme,
                           incumbent=Incumbent(tmp_path / "incumbent", tolerance=0.01))
    regression = get_using_dot_notation(report, gate_json_path("traffic light", root="incumbent.regression"))
    assert regression == pytest.approx(0.5)  # 1.0 -> 0.5
    assert not regression <= BASE.incumbent_tolerance  # QualityGateVsIncumbent's condition fails
    assert get_using_dot_notation(report, gate_json_path("road", root="incumbent.regression")) == pytest.approx(1 / 3)


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_the_incumbent_gate_failure_names_each_class_regression(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    values = steps(definition)["GateFailedVsIncumbent"]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert values[:5] == ["Quality gate failed: mIoU=", _vs_get("gate.mIoU"), " (min ", get("MinMIoU"), ")"]
    for class_name in FLOORS:
        label = f"; {class_name} IoU regression vs incumbent="
        at = values.index(label)
        assert values[at: at + 5] == [label, _vs_get(gate_json_path(class_name, root="incumbent.regression")),
                                      " (max ", get("MaxIoURegression"), ")"]
    first = steps(definition)["GateFailed"]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert not any("regression" in v for v in first if isinstance(v, str))


def test_the_tolerance_comes_from_the_settings():
    settings = dataclasses.replace(BASE, incumbent_tolerance=0.03)
    definition = json.loads(fn_sub(build_training_pipeline(settings)))
    assert parameters(definition)["MaxIoURegression"]["DefaultValue"] == 0.03


@pytest.mark.parametrize("pipeline", ["training", "tuning"])
def test_fail_message_names_every_value_and_threshold(pipeline, training, tuning):
    definition = {"training": training, "tuning": tuning}[pipeline]
    message = steps(definition)["GateFailed"]["Arguments"]["ErrorMessage"]["Std:Join"]
    assert message["On"] == ""
    values = message["Values"]
    assert values[:5] == ["Quality gate failed: mIoU=", _gate_get("gate.mIoU"), " (min ", get("MinMIoU"), ")"]
    for class_name in FLOORS:
        label = f"; {class_name} IoU="
        assert label in values, class_name
        at = values.index(label)
        path = gate_json_path(class_name)
        assert values[at : at + 5] == [label, _gate_get(path), " (floor ", get(floor_parameter_name(class_name)), ")"]
    texts = [v for v in values if isinstance(v, str)]
    assert "-1" in texts[-1]


# --------------------------------------------------------------------------------------------------
# Helpers and settings validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_name", "parameter"),
    [
        ("person", "MinIoUPerson"),
        ("traffic light", "MinIoUTrafficLight"),
        ("traffic_sign", "MinIoUTrafficSign"),
        ("class 7", "MinIoUClass7"),
    ],
)
def test_floor_parameter_names_are_alphanumeric(class_name, parameter):
    assert floor_parameter_name(class_name) == parameter


@pytest.mark.parametrize(
    ("instance_type", "local_storage"),
    [
        ("ml.p3.2xlarge", False),
        ("ml.m5.xlarge", False),
        ("ml.c5.2xlarge", False),
        ("ml.p2.xlarge", False),
        ("ml.g4dn.xlarge", True),
        ("ml.g5.2xlarge", True),
        ("ml.g6e.xlarge", True),
        ("ml.p3dn.24xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.m5d.xlarge", True),
        ("ml.c6id.large", True),
    ],
)
def test_local_instance_storage(instance_type, local_storage):
    assert has_local_instance_storage(instance_type) is local_storage


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hyperparameters": {**BASE.hyperparameters, "use_pretrained_model": "true"}}, "only accepts 'True'"),
        ({"hyperparameters": {**BASE.hyperparameters, "syncbn": False}}, "must be a string"),
        ({"hyperparameters": {**BASE.hyperparameters, "num_training_samples": "100"}}, "PrepareDataset report"),
        ({"hyperparameters": {**BASE.hyperparameters, "num_classes": "12"}}, "num_classes"),
        ({"hyperparameters": {**BASE.hyperparameters, "algorithm": "unet"}}, "algorithm"),
        ({"hyperparameters": {**BASE.hyperparameters, "epochs": "ten"}}, "epochs"),
        ({"max_wait_seconds": 3600}, "max_wait_seconds"),
        ({"tuning_max_parallel_jobs": 7}, "tuning_max_parallel_jobs"),
        ({"safety_iou_floors": {"traffic light": 0.2, "traffic_light": 0.3}}, "same parameter"),
        ({"safety_iou_floors": {"person": 1.5}}, "within 0..1"),
        ({"incumbent_tolerance": -0.01}, "incumbent_tolerance -0.01 must be within 0..1"),
        ({"prefix": "roadseg_dev"}, "prefix"),
    ],
)
def test_invalid_settings_are_rejected_with_the_reason(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(BASE, **change)


def test_num_classes_hyperparameter_is_filled_in_when_absent():
    hyperparameters = {k: v for k, v in BASE.hyperparameters.items() if k != "num_classes"}
    definition = json.loads(fn_sub(build_training_pipeline(dataclasses.replace(BASE, hyperparameters=hyperparameters))))
    assert steps(definition)["TrainSegmentation"]["Arguments"]["HyperParameters"]["num_classes"] == "19"


def _custom_settings(count: int) -> PipelineSettings:
    entries = [(f"long custom class name {i:02d}", (i, 2 * i, 3 * i)) for i in range(count)]
    return dataclasses.replace(BASE, class_scheme="custom", num_classes=count, safety_iou_floors={},
                               hyperparameters={**BASE.hyperparameters, "num_classes": str(count)},
                               custom_classes_json=classes_json(custom_scheme("wide", entries)))


@pytest.mark.parametrize("build", [build_training_pipeline, build_tuning_pipeline])
def test_custom_scheme_reads_its_class_list_from_the_job_settings(build):
    """25 classes are ~1 KB of JSON: inline, every scheme step would break the 256-character argument limit; the
    steps get the job settings as an input and the file's path instead."""
    settings = _custom_settings(25)
    assert len(settings.custom_classes_json) > 4 * MAX_CONTAINER_ARGUMENT_LENGTH
    definition = json.loads(fn_sub(build(settings)))
    for step_name in ("PrepareDataset", "EvaluateModel", "ExportModel"):
        args = steps(definition)[step_name]["Arguments"]
        container = args["AppSpecification"]["ContainerArguments"]
        assert container[container.index("--scheme") + 1] == "custom"
        assert container[container.index("--classes-file") + 1] == f"{SETTINGS_DIR}/{CLASSES_FILE}"
        assert "--classes-json" not in container
        assert check_container_arguments(a for a in container if isinstance(a, str)) == []
        inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
        assert inputs[SETTINGS_INPUT]["S3Uri"] == SUBSTITUTES["JobSettingsUri"]
        assert inputs[SETTINGS_INPUT]["LocalPath"] == SETTINGS_DIR


def test_built_in_schemes_name_no_class_file():
    definition = json.loads(fn_sub(build_training_pipeline(BASE)))
    for step_name in ("PrepareDataset", "EvaluateModel", "ExportModel"):
        container = steps(definition)[step_name]["Arguments"]["AppSpecification"]["ContainerArguments"]
        assert container[container.index("--scheme") + 1] == "cityscapes" and "--classes-file" not in container


def test_custom_scheme_without_its_class_list_is_rejected():
    with pytest.raises(ValueError, match="custom_classes_json must be given exactly when class_scheme is 'custom'"):
        dataclasses.replace(BASE, class_scheme="custom")
