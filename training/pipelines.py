"""SageMaker Pipelines definitions for roadseg, generated offline at CDK synth time.

Two pipelines share one set of steps::

    <prefix>-training: PrepareDataset -> TrainSegmentation -> CreateCandidateModel -> TransformValidation
                       -> EvaluateModel -> QualityGate -> (ExportModel -> RegisterModel) | GateFailed
    <prefix>-tuning:   PrepareDataset -> TuneSegmentation (best job) -> CreateCandidateModel -> ... (same)

    both:              PrepareDataset -> PrepareServingValidation -> TransformValidation (beside the training)

The gate measures what ships: PrepareServingValidation turns the validation images into exactly what the ingest
function sends the endpoints (training/serving.py: ``prepare_frame`` with the environment's preprocessing), the
transform runs on those, and EvaluateModel maps each mask back to the annotation the way the postprocess function
restores masks, scoring the ROI only (training/evaluate.py).

Only a model that passes the gate is exported and registered: ExportModel (export/model.py) rebuilds the GluonCV
network at the serving resolution, writes the edge bundle (MXNet graph for Neo, ONNX, classes, preprocessing, parity
report; contracts/bundle.py) and fails on a parity miss; the model package records the bundle (``EdgeBundle``).

The definitions are built with the SageMaker Python SDK v3 under a ``PipelineSession`` (which records
requests instead of sending them) with no credentials and no network: every deployment-specific value
(role, buckets, KMS key, images, code locations) is generated as a unique literal *sentinel* that passes
the SDK's checks, and the sentinels are then replaced in the JSON by ``${Name}`` placeholders that the
stack fills in with CloudFormation ``Fn::Sub`` (see ``PLACEHOLDERS``). Any other ``${`` in the JSON is
escaped as ``${!`` so that ``Fn::Sub`` leaves it alone.

Offline traps handled here (SDK 3.27): a region must exist before the SDK is imported (a module creates a
boto3 client at import time); role validation is switched off (``SAGEMAKER_VALIDATE_ROLE=false``) and the
role is a literal ARN; the SDK's telemetry (S3 + STS calls on a background thread) is patched out while
generating; the SDK defaults config files of the developer's machine are replaced by an empty one, so the
definitions do not depend on who runs ``cdk synth`` (an empty one, because a non-empty config is validated
against the SDK's JSON schema on every lookup, ~10 s per definition); the processing code is an ``s3://`` URI
(a local path would be uploaded while generating); ``ModelBuilder.build()`` runs before ``register()`` on the
same builder (``register()`` alone looks the default bucket up in S3); ``HyperparameterTuner`` drops the
volume KMS key and network isolation from the training job definition (put back by ``_TuningStep``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from contracts.instances import has_local_instance_storage
from contracts.job_settings import SETTINGS_DIR, SETTINGS_INPUT, classes_path
from contracts.lambda_env import PreprocessorEnvironment
from contracts.layout import PROCESSING_CODE_DIR
from contracts.layout import PROCESSING_ENTRYPOINT as _ENTRYPOINT
from contracts.naming import training_pipeline_name, tuning_pipeline_name
from training.hyperparameters import HEADS, TunableRange, tuning_ranges

# The SDK creates a boto3 client while it is imported (class body of sagemaker.ai_registry.air_hub.AIRHub),
# which raises NoRegionError without a region: provide one for the import only (removed again below).
_IMPORT_ENVIRONMENT = {
    key: value
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items()
    if key not in os.environ
}
os.environ.update(_IMPORT_ENVIRONMENT)
# Importing the SDK runs logging.basicConfig(level=INFO) (sagemaker/core/experiments/_metrics.py): undone below.
_ROOT_LOGGING = (logging.root.level, list(logging.root.handlers))

with warnings.catch_warnings():
    # The SDK imports its own deprecated shims (DeprecationWarning on import): nothing for us to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    import boto3
    import sagemaker.core.telemetry.telemetry_logging as _core_telemetry
    import sagemaker.serve.utils.telemetry_logger as _serve_telemetry
    from sagemaker.core import image_uris
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        Channel,
        DataSource,
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
        S3DataSource,
    )
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.core.transformer import Transformer
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import (
        ConditionStep,
        FailStep,
        ModelStep,
        Pipeline,
        ProcessingStep,
        TrainingStep,
        TransformStep,
        TuningStep,
    )
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train import ModelTrainer
    from sagemaker.train.tuner import HyperparameterTuner

logging.root.setLevel(_ROOT_LOGGING[0])
logging.root.handlers[:] = _ROOT_LOGGING[1]
for _key in _IMPORT_ENVIRONMENT:
    os.environ.pop(_key, None)

# --------------------------------------------------------------------------------------------------
# Interface with the stack
# --------------------------------------------------------------------------------------------------

# PrepareDataset and EvaluateModel run ``python3 <entry script> <module> [args]``. The entry script is one
# S3 object (CodeEntryUri) downloaded into CODE_DIR under its own key name, which the stack does not control
# (a CDK file asset is stored as <hash>.py): the shell runs whichever .py file arrived there.
CODE_DIR = PROCESSING_CODE_DIR
PACKAGE_DIR = "/opt/ml/processing/input/package"
PROCESSING_ENTRYPOINT = list(_ENTRYPOINT)
# ExportModel: the export environment's wheels (export/requirements.txt, one zip), installed by the entry
# script into a virtual environment without network access (processing_entry.py).
WHEELS_DIR = "/opt/ml/processing/input/wheels"

PLACEHOLDERS: dict[str, str] = {
    "RoleArn": "ARN of the SageMaker execution role that runs every step",
    "DatasetsBucket": "name of the datasets bucket: raw frames under raw/, prepared channels written under "
    "prepared/<execution id>/<channel>/",
    "ArtifactsBucket": "name of the artifacts bucket: model, predictions and evaluation under "
    "pipelines/<pipeline name>/<execution id>/, spot checkpoints under checkpoints/",
    "KmsKeyArn": "ARN of the project KMS key (job outputs, and storage volumes of instance types without "
    "local NVMe storage)",
    "AlgorithmImage": "semantic-segmentation image URI of the deployment region (training, model, registry)",
    "ProcessingImage": "Python 3 image with numpy and Pillow for PrepareDataset, PrepareServingValidation and "
    "EvaluateModel",
    "CodeEntryUri": f"s3:// URI of the single entry script jobs/processing_entry.py, any key name (mounted in "
    f"{CODE_DIR} and run as python3 <script> <module> [args])",
    "CodePackageUri": f"s3:// URI of the zip of the training/, roadseg_lambda/ and contracts/ packages (mounted in "
    f"{PACKAGE_DIR})",
    "ExportImage": "Python 3.11 image for ExportModel (MXNet 1.9.1 runs on Python <= 3.11 only)",
    "ExportWheelsUri": f"s3:// URI of the zip of the export environment's wheels (mounted in {WHEELS_DIR})",
    "JobSettingsUri": f"s3:// URI of the zip of the job settings (contracts.job_settings: the custom class list; "
    f"mounted in {SETTINGS_DIR} of PrepareDataset, EvaluateModel and ExportModel, unpacked by the entry script)",
}

# Isolated-network mode (PipelineSettings.vpc_subnet_count > 0): every processing, training, tuning job and the
# candidate model (so the transform job) gets a VpcConfig whose subnets and security groups are these placeholders,
# numbered from 0 (Subnet0, Subnet1, ...; SecurityGroup0, ...). Network isolation stays on: SageMaker then moves the
# job's data through the VPC (S3 gateway endpoint) while the container itself has no network
# (https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html,
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_VpcConfig.html: 1..16 subnets, 1..5 groups).
MAX_VPC_SUBNETS, MAX_VPC_SECURITY_GROUPS = 16, 5
NETWORK_PLACEHOLDERS: dict[str, str] = {
    "Subnet<i>": "ID of the i-th private subnet the jobs and the candidate model run in (isolated-network mode)",
    "SecurityGroup<i>": "ID of the i-th security group of the jobs and the candidate model (isolated-network mode)",
}


def network_placeholder_names(settings: PipelineSettings) -> tuple[list[str], list[str]]:
    """The subnet and security-group placeholders the definitions of ``settings`` use (empty without a VPC)."""
    return ([f"Subnet{i}" for i in range(settings.vpc_subnet_count)],
            [f"SecurityGroup{i}" for i in range(settings.vpc_security_group_count)])


# Step names (the order in which they run).
PREPARE = "PrepareDataset"
SERVE = "PrepareServingValidation"
TRAIN = "TrainSegmentation"
TUNE = "TuneSegmentation"
CREATE_MODEL = "CreateCandidateModel"
TRANSFORM = "TransformValidation"
EVALUATE = "EvaluateModel"
GATE = "QualityGate"
EXPORT = "ExportModel"
REGISTER = "RegisterModel"
FAIL = "GateFailed"

PREPARED_CHANNELS = ("train", "validation", "train_annotation", "validation_annotation", "label_map")
# The channels passed to the algorithm, with their content types (JPEG images, PNG class-index masks): the four
# mandatory ones. label_map is optional and left out: the label map PrepareDataset writes ({"scale": "1"}) is the
# algorithm's default ("If you don't provide a label map, the algorithm assumes a scale of 1",
# https://docs.aws.amazon.com/sagemaker/latest/dg/semantic-segmentation.html), and AWS documents no content type for
# it (the built-in algorithms' content types list only image/jpeg, image/png, application/x-image and
# application/x-recordio for this algorithm: https://docs.aws.amazon.com/sagemaker/latest/dg/cdf-training.html).
CHANNEL_CONTENT_TYPES = {
    "train": "image/jpeg",
    "validation": "image/jpeg",
    "train_annotation": "image/png",
    "validation_annotation": "image/png",
}
MODEL_CHANNEL_CONTENT_TYPE = "application/x-sagemaker-model"
# PrepareServingValidation's outputs: the serving-resolution JPEGs (the transform's input) and geometry.json.
SERVING_VALIDATION = "serving_validation"
SERVING_GEOMETRY = "serving_geometry"
SERVING_OUTPUTS = (SERVING_VALIDATION, SERVING_GEOMETRY)
OBJECTIVE_METRIC = "validation:mIOU"
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
# GPU instance types listed in the model package besides the transform instance type.
INFERENCE_INSTANCE_TYPES = ("ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.p3.2xlarge")


def _sdk_range(tunable: TunableRange):
    """One of training.hyperparameters.TUNABLE_RANGES as the SDK's parameter range."""
    if tunable.kind == "categorical":
        return CategoricalParameter(list(tunable.values))
    if tunable.kind == "integer":
        return IntegerParameter(int(tunable.min), int(tunable.max), scaling_type=tunable.scaling)
    return ContinuousParameter(tunable.min, tunable.max, scaling_type=tunable.scaling)


def _tuning_ranges(settings: PipelineSettings) -> dict:
    """Search space of the tuning pipeline (defined next to the hyperparameters it ranges over), mini_batch_size
    capped at the settings' mini_batch_size: what fits the training instance (training.hyperparameters.ServingContract)
    or an explicit override."""
    fits = int(settings.hyperparameters.get("mini_batch_size", "16"))
    return {r.name: _sdk_range(r) for r in tuning_ranges(fits)}


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

    def __post_init__(self) -> None:
        problems = [*_hyperparameter_problems(self), *_settings_problems(self)]
        if problems:
            raise ValueError("invalid pipeline settings: " + "; ".join(problems))


def build_training_pipeline(settings: PipelineSettings) -> str:
    """The ``<prefix>-training`` definition: JSON with ``${Placeholders}`` for ``Fn::Sub``."""
    name = training_pipeline_name(settings.prefix)
    with _offline_sdk() as sdk:
        params = _Parameters.for_training(settings)
        prepare, preparation_report = _prepare_step(sdk, settings, params)
        hyperparameters = {
            **_static_hyperparameters(settings),
            "epochs": params.epochs.to_string(),
            "algorithm": params.algorithm,
            "learning_rate": params.learning_rate.to_string(),
            "mini_batch_size": params.mini_batch_size.to_string(),
            "num_training_samples": _num_training_samples(preparation_report),
        }
        trainer = _model_trainer(sdk, settings, name, params, hyperparameters, spot=settings.use_spot_instances)
        channels = _training_channels(prepare, params.previous_model)
        train = TrainingStep(name=TRAIN, step_args=trainer.train(input_data_config=channels))
        model_data = train.properties.ModelArtifacts.S3ModelArtifacts
        steps = [prepare, train, *_evaluate_and_register(sdk, settings, name, params, prepare, model_data,
                                                         head=params.algorithm)]
        return _render(sdk, name, params, steps)


def build_tuning_pipeline(settings: PipelineSettings) -> str:
    """The ``<prefix>-tuning`` definition: the training pipeline with a tuning job instead of one job."""
    name = tuning_pipeline_name(settings.prefix)
    with _offline_sdk() as sdk:
        params = _Parameters.for_tuning(settings)
        prepare, preparation_report = _prepare_step(sdk, settings, params)
        hyperparameters = {
            **_static_hyperparameters(settings),
            "epochs": params.epochs.to_string(),
            "num_training_samples": _num_training_samples(preparation_report),
        }
        # Tuning runs on demand and without checkpoints, whatever training.use_spot_instances says. The training
        # jobs of a tuning job share one TrainingJobDefinition, so one CheckpointConfig.S3Uri: the SDK copies it
        # verbatim (sagemaker.train.tuner._build_training_job_definition), the API reference documents no per-job
        # suffix (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HyperParameterTrainingJobDefinition.html,
        # API_CheckpointConfig.html), and SageMaker copies whatever is under the URI into every job when it starts
        # (https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html): parallel jobs would resume from
        # each other's checkpoints of another head. Spot without checkpoints would restart interrupted jobs from
        # scratch, and SageMaker caps MaxWaitTimeInSeconds at an hour for built-in algorithms that do not checkpoint
        # (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html).
        trainer = _model_trainer(sdk, settings, name, params, hyperparameters, spot=False)
        tuner = HyperparameterTuner(
            model_trainer=trainer,
            objective_metric_name=OBJECTIVE_METRIC,  # built-in metric: no metric definitions
            objective_type="Maximize",
            hyperparameter_ranges=_tuning_ranges(settings),  # the tuner drops these from the static hyperparameters
            strategy="Bayesian",
            max_jobs=settings.tuning_max_jobs,  # literal ints: the SDK rejects pipeline parameters here
            max_parallel_jobs=settings.tuning_max_parallel_jobs,
            base_tuning_job_name=f"{settings.prefix}-tune",
        )
        tune = _TuningStep(
            name=TUNE,
            step_args=tuner.tune(inputs=_training_channels(prepare, None)),
            volume_kms_key=_volume_kms_key(settings.training_instance_type),
        )
        model_data = tune.get_top_model_s3_uri(
            top_k=0,  # the best training job by the objective metric
            s3_bucket=_SENTINELS.artifacts_bucket,
            prefix=Join(on="/", values=_artifact_prefix(name, "training")),
        )
        steps = [prepare, tune, *_evaluate_and_register(sdk, settings, name, params, prepare, model_data,
                                                        head=_tuned_head(settings, tune))]
        return _render(sdk, name, params, steps)


# --------------------------------------------------------------------------------------------------
# Pipeline parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parameters:
    input_data: ParameterString
    dataset_layout: ParameterString
    processing_instance_type: ParameterString
    training_instance_type: ParameterString
    transform_instance_type: ParameterString
    epochs: ParameterInteger
    algorithm: ParameterString | None
    learning_rate: ParameterFloat | None
    mini_batch_size: ParameterInteger | None
    min_miou: ParameterFloat
    class_floors: tuple[tuple[str, ParameterFloat], ...]  # (class name, MinIoU<Class> parameter)
    approval_status: ParameterString
    previous_model: ParameterString | None

    @classmethod
    def for_training(cls, settings: PipelineSettings) -> _Parameters:
        hp = settings.hyperparameters
        return cls._common(
            settings,
            algorithm=ParameterString("Algorithm", default_value=hp.get("algorithm", "fcn"), enum_values=list(HEADS)),
            learning_rate=ParameterFloat("LearningRate", default_value=float(hp.get("learning_rate", "0.001"))),
            mini_batch_size=ParameterInteger("MiniBatchSize", default_value=int(hp.get("mini_batch_size", "16"))),
            # No default: the S3 URI of the model.tar.gz to continue from must be given at start.
            previous_model=ParameterString("PreviousModelS3Uri") if settings.incremental else None,
        )

    @classmethod
    def for_tuning(cls, settings: PipelineSettings) -> _Parameters:
        return cls._common(settings, algorithm=None, learning_rate=None, mini_batch_size=None, previous_model=None)

    @classmethod
    def _common(cls, settings: PipelineSettings, **specific) -> _Parameters:
        return cls(
            input_data=ParameterString("InputDataS3Uri", default_value=f"s3://{_SENTINELS.datasets_bucket}/raw/"),
            dataset_layout=ParameterString("DatasetLayout", default_value="cityscapes"),
            processing_instance_type=ParameterString(
                "ProcessingInstanceType", default_value=settings.processing_instance_type
            ),
            training_instance_type=ParameterString(
                "TrainingInstanceType", default_value=settings.training_instance_type
            ),
            transform_instance_type=ParameterString(
                "TransformInstanceType", default_value=settings.transform_instance_type
            ),
            epochs=ParameterInteger("Epochs", default_value=int(settings.hyperparameters.get("epochs", "10"))),
            min_miou=ParameterFloat("MinMIoU", default_value=float(settings.min_miou)),
            class_floors=tuple(
                (name, ParameterFloat(floor_parameter_name(name), default_value=float(floor)))
                for name, floor in settings.safety_iou_floors.items()
            ),
            approval_status=ParameterString(
                "ModelApprovalStatus", default_value="PendingManualApproval", enum_values=list(APPROVAL_STATUSES)
            ),
            **specific,
        )

    def as_list(self) -> list:
        ordered = [
            self.input_data,
            self.dataset_layout,
            self.processing_instance_type,
            self.training_instance_type,
            self.transform_instance_type,
            self.epochs,
            self.algorithm,
            self.learning_rate,
            self.mini_batch_size,
            self.min_miou,
            *(p for _, p in self.class_floors),
            self.approval_status,
            self.previous_model,
        ]
        return [p for p in ordered if p is not None]


def floor_parameter_name(class_name: str) -> str:
    """``traffic light`` -> ``MinIoUTrafficLight`` (pipeline parameter names must be alphanumeric)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", class_name) if w]
    return "MinIoU" + "".join(w[0].upper() + w[1:] for w in words)


def gate_json_path(key: str) -> str:
    """JsonPath of ``evaluation.json["gate"][key]``: dot notation, brackets for names like ``traffic light``."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"gate.{key}"
    return f"gate['{key}']"


# --------------------------------------------------------------------------------------------------
# Steps, in the order they run
# --------------------------------------------------------------------------------------------------


def _prepare_step(sdk: _Sdk, settings: PipelineSettings, params: _Parameters) -> tuple[ProcessingStep, PropertyFile]:
    """PrepareDataset: raw frames -> algorithm channels under s3://<datasets>/prepared/<execution id>/."""
    outputs = [
        _processing_output(name, Join(on="/", values=_prepared_prefix(name))) for name in (*PREPARED_CHANNELS, "report")
    ]
    step_args = _processor(sdk, settings, f"{settings.prefix}-prepare", params).run(
        inputs=[
            *_code_inputs(),
            _settings_input(),
            _processing_input("data", params.input_data, "/opt/ml/processing/input/data"),
        ],
        outputs=outputs,
        arguments=[
            "prepare",
            "--layout",
            params.dataset_layout,
            "--input",
            "/opt/ml/processing/input/data",
            "--output",
            "/opt/ml/processing/output",
            # report.json goes to the `report` output, where the PreparationReport property file reads it.
            "--report-dir",
            "/opt/ml/processing/output/report",
            *_scheme_arguments(settings),
            "--max-bad-fraction",
            _decimal(settings.max_bad_pair_fraction),
        ],
    )
    report = PropertyFile(name="PreparationReport", output_name="report", path="report.json")
    return ProcessingStep(name=PREPARE, step_args=step_args, property_files=[report]), report


def _static_hyperparameters(settings: PipelineSettings) -> dict[str, str]:
    return {"num_classes": str(settings.num_classes), **settings.hyperparameters}


def _num_training_samples(preparation_report: PropertyFile) -> Join:
    # Hyperparameter values must be strings: Std:Join turns the report's integer into one.
    return JsonGet(step_name=PREPARE, property_file=preparation_report, json_path="num_training_samples").to_string()


def _model_trainer(
    sdk: _Sdk,
    settings: PipelineSettings,
    pipeline_name: str,
    params: _Parameters,
    hyperparameters: Mapping,
    *,
    spot: bool,
) -> ModelTrainer:
    """The built-in algorithm (no source code) with the project's storage and encryption; on spot capacity with
    checkpoints under checkpoints/<pipeline>/<execution id> if ``spot`` (one training job per execution only)."""
    return ModelTrainer(
        training_image=_SENTINELS.algorithm_image,
        role=_SENTINELS.role_arn,
        sagemaker_session=sdk.session,
        base_job_name=f"{settings.prefix}-train",
        hyperparameters=dict(hyperparameters),
        compute=Compute(
            instance_type=params.training_instance_type,
            instance_count=1,  # the algorithm trains on one instance (several GPUs allowed)
            volume_size_in_gb=settings.volume_size_gb,
            volume_kms_key_id=_volume_kms_key(settings.training_instance_type),
            enable_managed_spot_training=spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=settings.max_runtime_seconds,
            max_wait_time_in_seconds=settings.max_wait_seconds if spot else None,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=Join(on="/", values=_artifact_uri(pipeline_name, "training")),
            kms_key_id=_SENTINELS.kms_key_arn,
        ),
        # Spot jobs can be interrupted: checkpoints let SageMaker resume them.
        checkpoint_config=CheckpointConfig(s3_uri=Join(on="/", values=_checkpoint_uri(pipeline_name)))
        if spot
        else None,
        networking=_networking(settings),  # the built-in algorithm needs no network
        training_input_mode="File",
    )


def _training_channels(prepare: ProcessingStep, previous_model: ParameterString | None) -> list[Channel]:
    """The prepared channels (+ the previous model for incremental training), read in File mode."""
    channels = [
        _channel(name, prepare.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri, content_type)
        for name, content_type in CHANNEL_CONTENT_TYPES.items()
    ]
    if previous_model is not None:
        channels.append(_channel("model", previous_model, MODEL_CHANNEL_CONTENT_TYPE))
    return channels


class _TuningStep(TuningStep):
    """TuningStep that keeps what the SDK's tuner drops from the training job definition (3.27).

    ``HyperparameterTuner`` rebuilds ``ResourceConfig`` without ``VolumeKmsKeyId`` and copies only the
    VPC part of ``Networking``, losing ``EnableNetworkIsolation``; both are put back here.
    """

    def __init__(self, *, volume_kms_key: str | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._volume_kms_key = volume_kms_key

    @property
    def arguments(self):
        request = super().arguments
        definition = request["TrainingJobDefinition"]
        definition["EnableNetworkIsolation"] = True
        if self._volume_kms_key is not None:
            definition["ResourceConfig"]["VolumeKmsKeyId"] = self._volume_kms_key
        return request


def _tuned_head(settings: PipelineSettings, tune: TuningStep):
    """The segmentation head of the tuning pipeline's candidate: the tuned ``algorithm`` of the job whose model is
    evaluated (TrainingJobSummaries[0], as get_top_model_s3_uri(top_k=0)), or the static one if it is not tuned."""
    if "algorithm" in _tuning_ranges(settings):
        return tune.properties.TrainingJobSummaries[0].TunedHyperParameters["algorithm"]
    return settings.hyperparameters.get("algorithm", "fcn")  # the algorithm's own default head


def _evaluate_and_register(
    sdk: _Sdk,
    settings: PipelineSettings,
    pipeline_name: str,
    params: _Parameters,
    prepare: ProcessingStep,
    model_data,
    *,
    head,
) -> list:
    """PrepareServingValidation, CreateCandidateModel -> TransformValidation -> EvaluateModel -> QualityGate
    (ExportModel -> RegisterModel | GateFailed). ``head``: the candidate's ``algorithm`` (a parameter or a property),
    recorded."""
    builder = ModelBuilder(
        image_uri=_SENTINELS.algorithm_image,
        s3_model_data_url=model_data,
        role_arn=_SENTINELS.role_arn,
        sagemaker_session=sdk.session,
        network=_networking(settings),
        log_level=logging.ERROR,  # its default (DEBUG) overrides the SDK logger level set by _quiet_sdk
    )
    serving = _serving_step(sdk, settings, params, prepare)
    create_model = ModelStep(name=CREATE_MODEL, step_args=builder.build())
    transform = _transform_step(sdk, settings, pipeline_name, params, serving, create_model)
    evaluate, evaluation_report = _evaluate_step(sdk, settings, pipeline_name, params, prepare, serving, transform,
                                                 head=head)
    evaluation_json = Join(
        on="/",
        values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, "evaluation.json"],
    )
    export = _export_step(sdk, settings, pipeline_name, params, serving, evaluate, model_data)
    # The same builder: register() without an earlier build() looks the default bucket up in S3.
    register = ModelStep(
        name=REGISTER,
        step_args=builder.register(
            model_package_group_name=settings.model_package_group,
            approval_status=params.approval_status,
            content_types=["image/jpeg"],
            response_types=["image/png"],
            inference_instances=_inference_instance_types(settings),
            transform_instances=_inference_instance_types(settings),
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_json)
            ),
            customer_metadata_properties={
                "ClassScheme": settings.class_scheme,
                "NumClasses": str(settings.num_classes),
                # The edge bundle of this model: an approval carries it (and the rollout compiles it for Neo). Values
                # are 1-256 characters of letters, digits, spaces and _.:/=+-@ (CustomerMetadataMap in botocore's
                # sagemaker model; https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html):
                # the longest bundle URI fits (tests/training/test_pipelines.py).
                "EdgeBundle": export.properties.ProcessingOutputConfig.Outputs[EXPORT_BUNDLE].S3Output.S3Uri,
                # The network's fixed input size (the serving resolution): Neo's data shape [1, 3, H, W].
                "ServingSize": f"{settings.serving_preprocessing.target_width}x"
                               f"{settings.serving_preprocessing.target_height}",
            },
        ),
    )
    gate = _quality_gate(
        params, evaluation_report, if_passed=[export, register], if_failed=_gate_failed(params, evaluation_report)
    )
    return [serving, create_model, transform, evaluate, gate]


EXPORT_BUNDLE = "bundle"


def _export_step(
    sdk: _Sdk,
    settings: PipelineSettings,
    pipeline_name: str,
    params: _Parameters,
    serving: ProcessingStep,
    evaluate: ProcessingStep,
    model_data,
) -> ProcessingStep:
    """ExportModel: the candidate's ``model.tar.gz`` -> the edge bundle under pipelines/<name>/<execution>/bundle/
    (export/model.py), in the Python 3.11 export image with the shipped wheels. Fails when the parameters do not
    match the rebuilt network or ONNX Runtime disagrees with MXNet on the serving validation frames."""
    model, validation = "/opt/ml/processing/input/model", "/opt/ml/processing/input/serving_validation"
    evaluation, output = "/opt/ml/processing/input/evaluation", f"/opt/ml/processing/output/{EXPORT_BUNDLE}"
    # The serving resolution, ROI and limits reach the export as the serving step's (the functions') environment.
    processor = _processor(sdk, settings, f"{settings.prefix}-export", params,
                           env=settings.serving_preprocessing.frame_preparation_env(), image=_SENTINELS.export_image)
    step_args = processor.run(
        inputs=[
            *_code_inputs(),
            _settings_input(),
            _processing_input("wheels", _SENTINELS.export_wheels_uri, WHEELS_DIR),
            _processing_input("model", model_data, model),
            _processing_input(
                "serving_validation",
                serving.properties.ProcessingOutputConfig.Outputs[SERVING_VALIDATION].S3Output.S3Uri,
                validation,
            ),
            _processing_input(
                "evaluation",
                evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
                evaluation,
            ),
        ],
        outputs=[_processing_output(EXPORT_BUNDLE, Join(on="/", values=_artifact_uri(pipeline_name, EXPORT_BUNDLE)),
                                    output)],
        arguments=[
            "export",
            "--model",
            model,
            "--validation",
            validation,
            "--evaluation",
            f"{evaluation}/evaluation.json",
            "--output",
            output,
            "--max-logit-difference",
            _decimal(settings.export_max_logit_difference),
            "--min-argmax-agreement",
            _decimal(settings.export_min_argmax_agreement),
            "--max-parity-frames",
            str(settings.export_parity_frames),
            *_scheme_arguments(settings),
        ],
    )
    return ProcessingStep(name=EXPORT, step_args=step_args)


def _serving_step(
    sdk: _Sdk, settings: PipelineSettings, params: _Parameters, prepare: ProcessingStep
) -> ProcessingStep:
    """PrepareServingValidation: each validation image as the ingest function sends it (``<name>.jpg``, its
    ``prepare_frame`` with the environment's preprocessing, passed as the functions' own environment variables) and
    ``geometry.json`` (per frame: original size, crop box, inference size) under s3://<datasets>/prepared/<execution
    id>/serving_validation/ and serving_geometry/ (training/serving.py)."""
    validation = "/opt/ml/processing/input/validation"
    processor = _processor(
        sdk, settings, f"{settings.prefix}-serving", params, env=settings.serving_preprocessing.frame_preparation_env()
    )
    step_args = processor.run(
        inputs=[
            *_code_inputs(),
            _processing_input(
                "validation", prepare.properties.ProcessingOutputConfig.Outputs["validation"].S3Output.S3Uri, validation
            ),
        ],
        outputs=[_processing_output(name, Join(on="/", values=_prepared_prefix(name))) for name in SERVING_OUTPUTS],
        arguments=[
            "serving",
            "--input",
            validation,
            "--output",
            f"/opt/ml/processing/output/{SERVING_VALIDATION}",
            "--geometry-dir",
            f"/opt/ml/processing/output/{SERVING_GEOMETRY}",
        ],
    )
    return ProcessingStep(name=SERVE, step_args=step_args)


def _transform_step(
    sdk: _Sdk,
    settings: PipelineSettings,
    pipeline_name: str,
    params: _Parameters,
    serving: ProcessingStep,
    create_model: ModelStep,
) -> TransformStep:
    """TransformValidation: one PNG class-index mask per serving-resolution JPEG (``<name>.jpg.out``), on a GPU."""
    transformer = Transformer(
        model_name=create_model.properties.ModelName,
        instance_count=1,
        instance_type=params.transform_instance_type,
        strategy="SingleRecord",  # one image per request
        assemble_with="None",
        accept="image/png",
        output_path=Join(on="/", values=_artifact_uri(pipeline_name, "predictions")),
        output_kms_key=_SENTINELS.kms_key_arn,
        volume_kms_key=_volume_kms_key(settings.transform_instance_type),
        base_transform_job_name=f"{settings.prefix}-transform",
        sagemaker_session=sdk.session,
    )
    step_args = transformer.transform(
        data=serving.properties.ProcessingOutputConfig.Outputs[SERVING_VALIDATION].S3Output.S3Uri,
        data_type="S3Prefix",
        content_type="image/jpeg",
        split_type="None",
    )
    return TransformStep(name=TRANSFORM, step_args=step_args)


def _evaluate_step(
    sdk: _Sdk,
    settings: PipelineSettings,
    pipeline_name: str,
    params: _Parameters,
    prepare: ProcessingStep,
    serving: ProcessingStep,
    transform: TransformStep,
    *,
    head,
) -> tuple[ProcessingStep, PropertyFile]:
    """EvaluateModel: predictions, mapped back with the serving geometry, vs. validation annotations -> evaluation.json
    (metrics and gate values, the serving resolution, ROI and head)."""
    ground_truth = "/opt/ml/processing/input/ground_truth"
    predictions = "/opt/ml/processing/input/predictions"
    geometry = "/opt/ml/processing/input/serving_geometry"
    output = "/opt/ml/processing/output/evaluation"
    step_args = _processor(sdk, settings, f"{settings.prefix}-evaluate", params).run(
        inputs=[
            *_code_inputs(),
            _settings_input(),
            _processing_input(
                "ground_truth",
                prepare.properties.ProcessingOutputConfig.Outputs["validation_annotation"].S3Output.S3Uri,
                ground_truth,
            ),
            _processing_input("predictions", transform.properties.TransformOutput.S3OutputPath, predictions),
            _processing_input(
                SERVING_GEOMETRY,
                serving.properties.ProcessingOutputConfig.Outputs[SERVING_GEOMETRY].S3Output.S3Uri,
                geometry,
            ),
        ],
        outputs=[
            _processing_output("evaluation", Join(on="/", values=_artifact_uri(pipeline_name, "evaluation")), output)
        ],
        arguments=[
            "evaluate",
            "--ground-truth",
            ground_truth,
            "--predictions",
            predictions,
            "--serving-geometry",
            f"{geometry}/geometry.json",
            "--head",
            head,
            "--output",
            output,
            *_scheme_arguments(settings),
        ],
    )
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    return ProcessingStep(name=EVALUATE, step_args=step_args, property_files=[report]), report


def _scheme_arguments(settings: PipelineSettings) -> list[str]:
    """--scheme, plus the class list's file in the job settings for a custom scheme (never the list inline: an
    argument holds at most 256 characters)."""
    custom = ["--classes-file", classes_path()] if settings.custom_classes_json else []
    return ["--scheme", settings.class_scheme, *custom]


def _quality_gate(
    params: _Parameters, evaluation_report: PropertyFile, *, if_passed: list, if_failed: FailStep
) -> ConditionStep:
    """QualityGate: mIoU >= MinMIoU and, for every safety-critical class, IoU >= MinIoU<Class> (all must hold)."""
    conditions = [
        ConditionGreaterThanOrEqualTo(left=_gate_value(evaluation_report, "mIoU"), right=params.min_miou),
        *(
            ConditionGreaterThanOrEqualTo(left=_gate_value(evaluation_report, name), right=floor)
            for name, floor in params.class_floors
        ),
    ]
    return ConditionStep(name=GATE, conditions=conditions, if_steps=if_passed, else_steps=[if_failed])


def _gate_failed(params: _Parameters, evaluation_report: PropertyFile) -> FailStep:
    """GateFailed: names every measured value next to its threshold (-1 = class absent from validation)."""
    values: list = [
        "Quality gate failed: mIoU=",
        _gate_value(evaluation_report, "mIoU"),
        " (min ",
        params.min_miou,
        ")",
    ]
    for name, floor in params.class_floors:
        values += [f"; {name} IoU=", _gate_value(evaluation_report, name), " (floor ", floor, ")"]
    values.append("; an IoU of -1 means the class is absent from the validation set")
    return FailStep(name=FAIL, error_message=Join(on="", values=values))


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def _processor(
    sdk: _Sdk,
    settings: PipelineSettings,
    base_job_name: str,
    params: _Parameters,
    env: Mapping[str, str] | None = None,
    image: str | None = None,
) -> Processor:
    """``python3 <entry script> <module> [args]`` in the processing image, isolated from the network.

    A plain Processor with the code as an input: ScriptProcessor(code=...) would run the script by the
    basename of its URI, which a CDK asset does not keep.
    """
    return Processor(
        role=_SENTINELS.role_arn,
        image_uri=image or _SENTINELS.processing_image,
        entrypoint=PROCESSING_ENTRYPOINT,
        instance_count=1,
        instance_type=params.processing_instance_type,
        volume_size_in_gb=settings.volume_size_gb,
        volume_kms_key=_volume_kms_key(settings.processing_instance_type),
        output_kms_key=_SENTINELS.kms_key_arn,
        max_runtime_in_seconds=settings.max_runtime_seconds,
        base_job_name=base_job_name,
        sagemaker_session=sdk.session,
        network_config=NetworkConfig(enable_network_isolation=True, **_vpc_arguments(settings)),
        env=dict(env) if env else None,
    )


def _vpc_arguments(settings: PipelineSettings) -> dict[str, list[str]]:
    """``subnets``/``security_group_ids`` as sentinels (replaced by NETWORK_PLACEHOLDERS), nothing without a VPC."""
    if not settings.vpc_subnet_count:
        return {}
    return {"subnets": [_subnet_sentinel(i) for i in range(settings.vpc_subnet_count)],
            "security_group_ids": [_security_group_sentinel(i) for i in range(settings.vpc_security_group_count)]}


def _networking(settings: PipelineSettings) -> Networking:
    return Networking(enable_network_isolation=True, **_vpc_arguments(settings))


def _subnet_sentinel(index: int) -> str:
    return f"subnet-roadseg{index:02d}sentinel"


def _security_group_sentinel(index: int) -> str:
    return f"sg-roadseg{index:02d}sentinel"


def _code_inputs() -> list[ProcessingInput]:
    return [
        _processing_input("code", _SENTINELS.code_entry_uri, CODE_DIR),
        _processing_input("package", _SENTINELS.code_package_uri, PACKAGE_DIR),
    ]


def _settings_input() -> ProcessingInput:
    """The job settings (contracts.job_settings), one zip the entry script unpacks where the arguments point."""
    return _processing_input(SETTINGS_INPUT, _SENTINELS.job_settings_uri, SETTINGS_DIR)


def _processing_input(name: str, s3_uri, local_path: str) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(s3_uri=s3_uri, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"),
    )


def _processing_output(name: str, s3_uri, local_path: str | None = None) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=s3_uri, local_path=local_path or f"/opt/ml/processing/output/{name}", s3_upload_mode="EndOfJob"
        ),
    )


def _channel(name: str, s3_uri, content_type: str) -> Channel:
    return Channel(
        channel_name=name,
        content_type=content_type,
        compression_type="None",
        input_mode="File",
        data_source=DataSource(
            s3_data_source=S3DataSource(
                s3_data_type="S3Prefix", s3_uri=s3_uri, s3_data_distribution_type="FullyReplicated"
            )
        ),
    )


def _gate_value(evaluation_report: PropertyFile, key: str) -> JsonGet:
    return JsonGet(step_name=EVALUATE, property_file=evaluation_report, json_path=gate_json_path(key))


def _prepared_prefix(name: str) -> list:
    return ["s3:/", _SENTINELS.datasets_bucket, "prepared", ExecutionVariables.PIPELINE_EXECUTION_ID, name]


def _artifact_prefix(pipeline_name: str, name: str) -> list:
    return ["pipelines", pipeline_name, ExecutionVariables.PIPELINE_EXECUTION_ID, name]


def _artifact_uri(pipeline_name: str, name: str) -> list:
    return ["s3:/", _SENTINELS.artifacts_bucket, *_artifact_prefix(pipeline_name, name)]


def _checkpoint_uri(pipeline_name: str) -> list:
    return ["s3:/", _SENTINELS.artifacts_bucket, "checkpoints", pipeline_name, ExecutionVariables.PIPELINE_EXECUTION_ID]


def _volume_kms_key(default_instance_type: str) -> str | None:
    # Decided on the configured default instance type: overriding the instance-type parameter at start
    # with a family on the other side of the local-storage line needs a configuration change instead.
    return None if has_local_instance_storage(default_instance_type) else _SENTINELS.kms_key_arn


def _inference_instance_types(settings: PipelineSettings) -> list[str]:
    return list(dict.fromkeys((settings.transform_instance_type, *INFERENCE_INSTANCE_TYPES)))


def _decimal(value: float) -> str:
    return format(Decimal(repr(float(value))), "f")


# --------------------------------------------------------------------------------------------------
# Settings checks
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Offline generation and rendering
# --------------------------------------------------------------------------------------------------

_REGION = "us-east-1"  # only used to pick sentinel values; nothing regional remains in the output


@dataclass(frozen=True)
class _Sentinels:
    """Unique literal stand-ins that satisfy the SDK's checks, replaced by ``${Name}`` at the end."""

    # Real image URIs (from the SDK's offline table), so that nothing validates against a fake.
    algorithm_image: str
    processing_image: str
    export_image: str
    role_arn: str = "arn:aws:iam::123456789012:role/roadseg-sentinel-role"
    datasets_bucket: str = "roadseg-sentinel-datasets"
    artifacts_bucket: str = "roadseg-sentinel-artifacts"
    kms_key_arn: str = "arn:aws:kms:us-east-1:123456789012:key/roadseg-sentinel-kms"
    code_entry_uri: str = "s3://roadseg-sentinel-code/entry/processing_entry.py"
    code_package_uri: str = "s3://roadseg-sentinel-code/package/training.zip"
    export_wheels_uri: str = "s3://roadseg-sentinel-code/wheels/export.zip"
    job_settings_uri: str = "s3://roadseg-sentinel-code/settings/job-settings.zip"

    def placeholders(self) -> dict[str, str]:
        """sentinel -> placeholder, most specific first (URIs before the buckets they contain)."""
        return {
            self.code_entry_uri: "CodeEntryUri",
            self.code_package_uri: "CodePackageUri",
            self.export_wheels_uri: "ExportWheelsUri",
            self.job_settings_uri: "JobSettingsUri",
            self.role_arn: "RoleArn",
            self.kms_key_arn: "KmsKeyArn",
            self.algorithm_image: "AlgorithmImage",
            self.processing_image: "ProcessingImage",
            self.export_image: "ExportImage",
            self.datasets_bucket: "DatasetsBucket",
            self.artifacts_bucket: "ArtifactsBucket",
            **{_subnet_sentinel(i): f"Subnet{i}" for i in range(MAX_VPC_SUBNETS)},
            **{_security_group_sentinel(i): f"SecurityGroup{i}" for i in range(MAX_VPC_SECURITY_GROUPS)},
        }


@dataclass(frozen=True)
class _Sdk:
    session: PipelineSession


@contextlib.contextmanager
def _offline_sdk() -> Iterator[_Sdk]:
    """Hermetic SDK: fixed region, no credentials lookup, no role validation, no telemetry, no user config."""
    with tempfile.TemporaryDirectory(prefix="roadseg-sdk-config-") as config_dir:
        config_file = Path(config_dir, "config.yaml")
        # Empty on purpose: the SDK validates a non-empty config against its JSON schema on every lookup
        # (~0.13 s each, ~10 s per definition); telemetry is patched out below instead of opted out.
        config_file.write_text("{}\n")
        environment = {
            "AWS_DEFAULT_REGION": _REGION,
            "AWS_REGION": _REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_VALIDATE_ROLE": "false",
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(config_file),
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config_file),
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_PROFILE": None,
        }
        with (
            _environment(environment),
            _patched(_core_telemetry, "_send_telemetry_request", _no_telemetry),
            _patched(_serve_telemetry, "_send_telemetry", _no_telemetry),
            _quiet_sdk(),
        ):
            # Static dummy credentials: the credential chain (profiles, SSO, metadata) is never consulted,
            # and a request sent by mistake would fail instead of using the caller's identity.
            boto_session = boto3.Session(
                region_name=_REGION, aws_access_key_id="offline", aws_secret_access_key="offline"
            )
            session = PipelineSession(
                boto_session=boto_session,
                default_bucket=_SENTINELS.artifacts_bucket,
            )
            yield _Sdk(session=session)


def _render(sdk: _Sdk, name: str, params: _Parameters, steps: Sequence) -> str:
    pipeline = Pipeline(
        name=name,
        parameters=params.as_list(),
        steps=steps,
        sagemaker_session=sdk.session,
        pipeline_experiment_config=None,  # no automatic Experiments/Trials per execution
    )
    definition = pipeline.definition().replace("${", "${!")  # Fn::Sub would read any other ${ as a variable
    for sentinel, placeholder in _SENTINELS.placeholders().items():
        definition = definition.replace(sentinel, "${" + placeholder + "}")
    return definition


def _no_telemetry(*_args, **_kwargs) -> None:
    return None


@contextlib.contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _patched(module, attribute: str, replacement) -> Iterator[None]:
    original = getattr(module, attribute)
    setattr(module, attribute, replacement)
    try:
        yield
    finally:
        setattr(module, attribute, original)


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Keep cdk synth output readable: the SDK logs every default it applies and warns about known behaviour."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "sagemaker"]
    loggers.append(logging.getLogger("sagemaker"))
    levels = [(lg, lg.level) for lg in loggers]
    try:
        for lg, _ in levels:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in levels:
            lg.setLevel(level)


def _make_sentinels() -> _Sentinels:
    with _quiet_sdk():
        return _Sentinels(
            algorithm_image=image_uris.retrieve("semantic-segmentation", _REGION),
            # PyTorch CPU training image: Python 3 with numpy and Pillow.
            processing_image=image_uris.retrieve(
                "pytorch",
                _REGION,
                version="2.8",
                py_version="py312",
                instance_type="ml.m5.xlarge",
                image_scope="training",
            ),
            # Python 3.11 (MXNet 1.9.1's ceiling): the PyTorch 2.5 CPU training image; the export installs its own
            # pinned environment into a venv, so only the interpreter comes from the image.
            export_image=image_uris.retrieve(
                "pytorch", _REGION, version="2.5", py_version="py311", instance_type="ml.m5.xlarge",
                image_scope="training",
            ),
        )


_SENTINELS = _make_sentinels()
