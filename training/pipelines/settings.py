"""What the pipelines need from the environment configuration, validated on creation; imports no SageMaker SDK."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from contracts.lambda_env import PreprocessorEnvironment
from training.hyperparameters import HEADS

# A VpcConfig names 1..16 subnets and 1..5 security groups
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_VpcConfig.html).
MAX_VPC_SUBNETS, MAX_VPC_SECURITY_GROUPS = 16, 5
# The pipeline parameters `roadseg pipeline start` fills from the latest Approved model package of the group (the
# incumbent the gate compares with; roadseg/commands/pipeline.py): its model.tar.gz and its ARN. "" means none.
INCUMBENT_MODEL_PARAMETER = "IncumbentModelS3Uri"
INCUMBENT_PACKAGE_PARAMETER = "IncumbentModelPackageArn"


@dataclass(frozen=True)
class PipelineSettings:
    """Everything the pipelines need from the environment configuration (validated on creation)."""

    prefix: str
    model_package_group: str
    num_classes: int
    class_scheme: str
    hyperparameters: Mapping[str, str]
    safety_iou_floors: Mapping[str, float]
    min_miou: float
    training_instance_type: str
    processing_instance_type: str
    transform_instance_type: str
    volume_size_gb: int
    max_runtime_seconds: int
    use_spot_instances: bool
    max_wait_seconds: int
    max_bad_pair_fraction: float
    tuning_max_jobs: int
    tuning_max_parallel_jobs: int
    incremental: bool = False
    # scheme "custom": the class list as JSON (segcore.classes.classes_json). It reaches Prepare, Evaluate and
    # Export as classes.json of the job settings (JobSettingsUri), never inline: a container argument holds at most
    # 256 characters (contracts.service_limits), which 7 classes already pass.
    custom_classes_json: str | None = None
    # How the ingest function prepares frames (its FRAME_PREPARATION_VARIABLES): PrepareServingValidation prepares
    # the validation images with exactly these (contracts.lambda_env.frame_preparation_environment of the config).
    serving_preprocessing: PreprocessorEnvironment = field(default_factory=PreprocessorEnvironment)
    # Isolated-network mode: how many subnets and security groups the jobs' VpcConfig names (NETWORK_PLACEHOLDERS);
    # 0 and 0: no VpcConfig (the default).
    vpc_subnet_count: int = 0
    vpc_security_group_count: int = 0
    # ExportModel's parity check of ONNX Runtime against MXNet on the serving validation frames (config export.*).
    export_max_logit_difference: float = 0.01
    export_min_argmax_agreement: float = 0.999
    export_parity_frames: int = 8
    # The gate against the incumbent (config training.incumbent_tolerance): the largest IoU a safety-critical class
    # may lose against the approved model on the same validation frames (MaxIoURegression's default).
    incumbent_tolerance: float = 0.01

    def __post_init__(self) -> None:
        problems = [*_hyperparameter_problems(self), *_settings_problems(self)]
        if problems:
            raise ValueError("invalid pipeline settings: " + "; ".join(problems))


def floor_parameter_name(class_name: str) -> str:
    """``traffic light`` -> ``MinIoUTrafficLight`` (pipeline parameter names must be alphanumeric)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", class_name) if w]
    return "MinIoU" + "".join(w[0].upper() + w[1:] for w in words)


def _hyperparameter_problems(settings: PipelineSettings) -> Iterator[str]:
    for key, value in settings.hyperparameters.items():
        if not isinstance(value, str):
            yield f"hyperparameter {key}={value!r} must be a string (render it first)"
        elif value.lower() in ("true", "false") and value not in ("True", "False"):
            yield f"hyperparameter {key}={value!r}: the algorithm only accepts 'True' or 'False'"
    if "num_training_samples" in settings.hyperparameters:
        yield "hyperparameter num_training_samples must not be given: it comes from the PrepareDataset report"
    declared = settings.hyperparameters.get("num_classes", str(settings.num_classes))
    if declared != str(settings.num_classes):
        yield f"hyperparameter num_classes={declared!r} must be {str(settings.num_classes)!r} (settings.num_classes)"
    for key, parse in (("epochs", int), ("learning_rate", float), ("mini_batch_size", int)):
        value = settings.hyperparameters.get(key)
        if isinstance(value, str):
            try:
                parse(value)
            except ValueError:
                yield f"hyperparameter {key}={value!r} is not a{'n integer' if parse is int else ' number'}"
    algorithm = settings.hyperparameters.get("algorithm")
    if algorithm is not None and algorithm not in HEADS:
        yield f"hyperparameter algorithm={algorithm!r} must be one of {', '.join(HEADS)}"


def _settings_problems(settings: PipelineSettings) -> Iterator[str]:
    if not re.fullmatch(r"[A-Za-z0-9](-*[A-Za-z0-9])*", settings.prefix) or len(settings.prefix) > 200:
        yield f"prefix {settings.prefix!r} must be letters, digits and single hyphens (a pipeline name prefix)"
    if not 0 <= settings.min_miou <= 1:
        yield f"min_miou {settings.min_miou} must be within 0..1"
    parameter_names: dict[str, str] = {}
    for name, floor in settings.safety_iou_floors.items():
        parameter = floor_parameter_name(name)
        if parameter == "MinIoU" or "'" in name or "." in name or name == "mIoU":
            yield f"safety class name {name!r} cannot be gated (needs a letter or digit, no quote or dot, not mIoU)"
        elif parameter in parameter_names:
            yield f"safety classes {parameter_names[parameter]!r} and {name!r} map to the same parameter {parameter}"
        parameter_names[parameter] = name
        if not 0 <= floor <= 1:
            yield f"IoU floor of {name!r} ({floor}) must be within 0..1"
    if not 0 <= settings.incumbent_tolerance <= 1:
        yield f"incumbent_tolerance {settings.incumbent_tolerance} must be within 0..1 (an IoU difference)"
    if (settings.class_scheme == "custom") != bool(settings.custom_classes_json):
        yield "custom_classes_json must be given exactly when class_scheme is 'custom'"
    if settings.vpc_subnet_count or settings.vpc_security_group_count:
        if not (1 <= settings.vpc_subnet_count <= MAX_VPC_SUBNETS
                and 1 <= settings.vpc_security_group_count <= MAX_VPC_SECURITY_GROUPS):
            yield (f"a VpcConfig needs 1..{MAX_VPC_SUBNETS} subnets and 1..{MAX_VPC_SECURITY_GROUPS} security groups, "
                   f"got {settings.vpc_subnet_count} and {settings.vpc_security_group_count}")
    if settings.use_spot_instances and settings.max_wait_seconds < settings.max_runtime_seconds:
        yield f"max_wait_seconds ({settings.max_wait_seconds}) must be >= max_runtime_seconds with spot instances"
    if not 1 <= settings.tuning_max_parallel_jobs <= settings.tuning_max_jobs:
        yield (
            f"tuning_max_parallel_jobs ({settings.tuning_max_parallel_jobs}) must be within 1..tuning_max_jobs "
            f"({settings.tuning_max_jobs})"
        )
