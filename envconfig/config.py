"""Typed, validated per-environment configuration (``config/<env>.yaml``).

One file per environment; ``cdk synth -c env=<name>`` picks it. Every key is declared here with its
allowed values, unknown keys are rejected, and any error is reported as one line naming the file, the
key and what is allowed (``ConfigError``), never as a pydantic traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The instance-family facts are defined once in contracts/instances.py; re-exported here for existing importers.
from contracts.instances import ALGORITHM_DOCS, HOSTING_FAMILIES, INFERENCE_CPU_FAMILIES, TRAINING_FAMILIES
from contracts.instances import GPU_FAMILIES as GPU_FAMILIES
from contracts.instances import NVME_FAMILIES as NVME_FAMILIES
from contracts.instances import instance_family as instance_family
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from envconfig.network import IsolatedNetworkConfig
from segcore.classes import MAX_CLASSES, MIN_CLASSES, SCHEME_NAMES, get_scheme, scheme_from_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
# Another folder of environment files for load_config (e.g. config/examples), as `-c config_dir=` is for synth.
CONFIG_DIR_VARIABLE = "ROADSEG_CONFIG_DIR"

ML_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[0-9]*(x?large|medium|small|metal)$")


class ConfigError(ValueError):
    """A configuration file is missing or invalid; the message says where and how to fix it."""


def _ml_instance(value: str) -> str:
    if not ML_INSTANCE.match(value):
        raise ValueError(
            f"'{value}' is not a SageMaker instance type: use the ml.<family>.<size> form, e.g. ml.g4dn.xlarge"
        )
    return value


def _documented_instance(value: str, families: tuple[str, ...], use: str) -> str:
    """An instance type of one of the families the Semantic Segmentation algorithm documents for ``use``."""
    _ml_instance(value)
    family = instance_family(value)
    if family in families:
        return value
    allowed = f"use one of the families {', '.join(families)}"
    if family not in GPU_FAMILIES:
        cpu = "" if use == "training" else \
            f" (CPU {', '.join(INFERENCE_CPU_FAMILIES)} is documented too, but roadseg hosts on GPUs by design)"
        raise ValueError(f"'{value}' has no GPU: {allowed}, the GPU families the Semantic Segmentation algorithm "
                         f"documents for {use}{cpu}; see {ALGORITHM_DOCS}")
    raise ValueError(f"'{value}': the Semantic Segmentation algorithm does not document {family} for {use}: {allowed}; "
                     f"see {ALGORITHM_DOCS}")


def _training_instance(value: str) -> str:
    return _documented_instance(value, TRAINING_FAMILIES, "training")


def _hosting_instance(value: str) -> str:
    return _documented_instance(value, HOSTING_FAMILIES, "inference")


MlInstance = Annotated[str, AfterValidator(_ml_instance)]
# The instance matrix (contracts.instances): training GPU-only on the documented families; the endpoints and the
# validation transform on the documented GPU inference families.
TrainingInstance = Annotated[str, AfterValidator(_training_instance)]
HostingInstance = Annotated[str, AfterValidator(_hosting_instance)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemovalPolicy(StrEnum):
    destroy = "destroy"
    retain = "retain"


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


IoUFloor = Annotated[float, Field(ge=0, le=1)]


class CustomClass(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[a-z][a-z0-9_ ]*$")]
    color: tuple[int, int, int]
    # A vulnerable road user (pedestrian, cyclist, ...): the scheme's vulnerable_road_users.
    vulnerable: bool = False

    @field_validator("color")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= c <= 255 for c in value):
            raise ValueError("each colour component must be within 0..255")
        return value


class ClassesConfig(_Strict):
    """Which label scheme the model predicts (see segcore/classes.py) and the quality gate's class floors."""

    scheme: Literal[SCHEME_NAMES] = "cityscapes"
    custom: list[CustomClass] | None = None
    # IoU floor per safety-critical class: a model below any floor is not registered. Left out (or null): the
    # scheme's defaults (ClassScheme.safety_iou_floors; cityscapes: person, rider, bicycle, motorcycle; camvid:
    # pedestrian, bicyclist). Scheme custom has none: it must list its floors, or {} to gate on mIoU only.
    # After validation this is always the mapping in force, never None.
    safety_critical_iou_floors: dict[str, IoUFloor] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _scheme_default_floors(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("safety_critical_iou_floors") is not None:
            return data
        data = {k: v for k, v in data.items() if k != "safety_critical_iou_floors"}
        scheme = data.get("scheme", "cityscapes")
        if scheme in SCHEME_NAMES and scheme != "custom":  # custom: checked below; an unknown name by `scheme`
            data["safety_critical_iou_floors"] = dict(get_scheme(scheme).safety_iou_floors)
        return data

    @model_validator(mode="after")
    def _custom_consistent(self) -> ClassesConfig:
        if self.scheme == "custom":
            if not self.custom:
                raise ValueError("scheme 'custom' needs a 'custom' list of classes (name and color)")
            if not MIN_CLASSES <= len(self.custom) <= MAX_CLASSES:
                raise ValueError(
                    f"num_classes must be within {MIN_CLASSES}..{MAX_CLASSES}, the custom list has {len(self.custom)}"
                )
            names = [c.name for c in self.custom]
            if len(set(names)) != len(names):
                raise ValueError("custom class names must be unique")
            if "safety_critical_iou_floors" not in self.model_fields_set:
                example = ", ".join(f"{c.name}: 0.5" for c in self.custom if c.vulnerable) or "<class name>: 0.5"
                raise ValueError(
                    "scheme 'custom' has no default safety floors: set classes.safety_critical_iou_floors to the IoU "
                    f"floor of each safety-critical class (e.g. {{{example}}}), or to {{}} to gate on mIoU only"
                )
        elif self.custom is not None:
            raise ValueError(f"'custom' classes are only allowed with scheme 'custom', not '{self.scheme}'")
        scheme_from_config(self).check_class_names(self.safety_critical_iou_floors, "safety_critical_iou_floors")
        return self


class RetentionConfig(_Strict):
    inference_output_days: PositiveInt = 30
    quarantine_days: PositiveInt = 90
    noncurrent_version_days: PositiveInt = 90
    access_log_days: PositiveInt = 365
    log_group_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                            2557, 2922, 3288, 3653] = 30
    abort_incomplete_upload_days: PositiveInt = 7


class TuningConfig(_Strict):
    max_jobs: Annotated[int, Field(ge=1, le=500)] = 12
    max_parallel_jobs: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _parallel_le_max(self) -> TuningConfig:
        if self.max_parallel_jobs > self.max_jobs:
            raise ValueError(f"max_parallel_jobs ({self.max_parallel_jobs}) must be <= max_jobs ({self.max_jobs})")
        return self


# SageMaker Neo's target devices for an MXNet graph that roadseg offers (botocore's TargetDevice enum has no ml_g5,
# ml_g6 or jetson_orin: newer GPUs take the bundle's ONNX graph to TensorRT / Triton instead, see docs/edge-bundle.md).
NeoTarget = Literal["ml_c5", "ml_m5", "ml_g4dn", "ml_p3", "ml_inf1", "jetson_xavier", "jetson_nano", "jetson_tx2"]


class ExportConfig(_Strict):
    """The ExportModel step (export/model.py): every model that passes the quality gate becomes an edge bundle
    (MXNet graph for Neo, ONNX, classes, preprocessing, parity report) at the serving resolution."""

    # Parity of ONNX Runtime with MXNet on the serving validation frames: the step fails beyond these.
    max_logit_difference: Annotated[float, Field(gt=0, le=10)] = 0.01
    min_argmax_agreement: Annotated[float, Field(ge=0.9, le=1)] = 0.999
    parity_frames: Annotated[int, Field(ge=1, le=100)] = 8
    # Neo compilation jobs created from the exported graph when a model package is approved (empty: none).
    neo_targets: list[NeoTarget] = Field(default_factory=list)

    @field_validator("neo_targets")
    @classmethod
    def _unique_targets(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("neo_targets: each target at most once")
        return value


class TrainingConfig(_Strict):
    instance_type: TrainingInstance = "ml.p3.2xlarge"
    volume_size_gb: Annotated[int, Field(ge=10, le=16384)] = 100
    max_runtime_hours: Annotated[int, Field(ge=1, le=120)] = 24
    use_spot_instances: bool = False
    max_wait_hours: Annotated[int, Field(ge=1, le=240)] = 48
    processing_instance_type: MlInstance = "ml.m5.xlarge"
    transform_instance_type: HostingInstance = "ml.g4dn.xlarge"
    # Algorithm hyperparameters that differ from the defaults: training/hyperparameters.py's, with base_size,
    # crop_size and the batch sizes derived from preprocessing.target_width/target_height and instance_type
    # (ServingContract). A value given here wins, with a warning at synth when it breaks that contract.
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    min_miou: Annotated[float, Field(ge=0, le=1)] = 0.5
    # The gate against the incumbent (the latest Approved model package, scored on the same validation frames): the
    # largest IoU a safety-critical class may lose (the pipelines' MaxIoURegression default). A first model has none.
    incumbent_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_bad_pair_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05
    # Adds the algorithm's `model` channel (PreviousModelS3Uri parameter) to the training pipeline.
    incremental: bool = False
    tuning: TuningConfig = TuningConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _spot_wait(self) -> TrainingConfig:
        if self.use_spot_instances and self.max_wait_hours < self.max_runtime_hours:
            raise ValueError(
                f"max_wait_hours ({self.max_wait_hours}) must be >= max_runtime_hours "
                f"({self.max_runtime_hours}) with spot training"
            )
        return self


class _Capacity(_Strict):
    instance_type: HostingInstance = "ml.g4dn.xlarge"
    min_capacity: NonNegativeInt = 1
    max_capacity: NonNegativeInt = 2

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity ({self.min_capacity}) must be <= max_capacity ({self.max_capacity})")
        if self.max_capacity < 1:
            raise ValueError("max_capacity must be at least 1")
        return self


class DataCaptureConfig(_Strict):
    enabled: bool = False
    sampling_percentage: Annotated[int, Field(ge=1, le=100)] = 10


class RealtimeEndpointConfig(_Capacity):
    min_capacity: Annotated[int, Field(ge=1)] = 1
    target_invocations_per_instance: Annotated[float, Field(gt=0)] = 300.0
    data_capture: DataCaptureConfig = DataCaptureConfig()


class AsyncEndpointConfig(_Capacity):
    min_capacity: NonNegativeInt = 0
    max_concurrent_invocations_per_instance: Annotated[int, Field(ge=1, le=1000)] = 4
    target_backlog_per_instance: Annotated[float, Field(gt=0)] = 5.0
    invocation_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 900
    scale_in_cooldown_seconds: NonNegativeInt = 600
    scale_out_cooldown_seconds: NonNegativeInt = 300


# AWS keeps at least 100 units of an account's Lambda concurrency unreserved, and new accounts often have a
# quota of far less than the default 1,000, so a reservation can fail the first deploy ("decreases account's
# UnreservedConcurrentExecution below its minimum value"). Reservations are therefore opt-in; the ingest path is
# bounded by its event source's maximum concurrency instead, which takes nothing from the unreserved pool.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html
LAMBDA_UNRESERVED_MINIMUM = 100


class FunctionConfig(_Strict):
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 1024
    # None: no reservation (the function shares the account's unreserved pool).
    reserved_concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    timeout_seconds: Annotated[int, Field(ge=3, le=900)] = 60


# The PSP and DeepLabV3 heads build their pooling branches at height//8 x width//8 of the serving size and must meet
# the dilated backbone's ceil(size/8) feature map (export/model.py, OUTPUT_STRIDE and check_network_size): any
# other size fails the ExportModel step, after a whole GPU training run. The tuning pipeline always tries those
# heads and the training pipeline's Algorithm parameter allows them, so every serving size must be a multiple.
SERVING_SIZE_MULTIPLE = 8


def _serving_dimension(value: int) -> int:
    if value % SERVING_SIZE_MULTIPLE:
        lower = value - value % SERVING_SIZE_MULTIPLE
        raise ValueError(f"{value} is not a multiple of {SERVING_SIZE_MULTIPLE}, which the psp and deeplab heads need "
                         f"(the tuning pipeline tries them; ExportModel would fail after training): use {lower} or "
                         f"{lower + SERVING_SIZE_MULTIPLE}")
    return value


class PreprocessingConfig(_Strict):
    """Lambda preprocessors: frames in (incoming/), requests to the endpoints, results out."""

    target_width: Annotated[int, Field(ge=16, le=8192)] = 1024
    target_height: Annotated[int, Field(ge=16, le=8192)] = 512
    # Region of interest as fractions of the (EXIF-oriented) frame: left, top, right, bottom in 0..1,
    # e.g. [0, 0, 1, 0.85] cuts the car's own hood off the bottom 15 %.
    roi: tuple[float, float, float, float] | None = None
    max_input_bytes: Annotated[int, Field(ge=1024)] = 20 * 1024 * 1024
    max_input_pixels: Annotated[int, Field(ge=256)] = 40_000_000
    jpeg_quality: Annotated[int, Field(ge=1, le=95)] = 90
    key_pattern: str = DEFAULT_KEY_PATTERN  # drive frames carry a drive segment (drivelogs/naming.py)
    vru_min_pixels: Annotated[int, Field(ge=1)] = 50
    write_overlay: bool = False
    restore_original_size: bool = False
    batch_size: Annotated[int, Field(ge=1, le=100)] = 10
    max_receive_count: Annotated[int, Field(ge=1, le=100)] = 5
    tracing: bool = False
    # How many ingest functions the SQS event source runs at most (ScalingConfig.MaximumConcurrency, 2..1000):
    # bounds the load on the async endpoint without reserving account concurrency.
    # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
    ingest_max_concurrency: Annotated[int, Field(ge=2, le=1000)] = 10
    ingest: FunctionConfig = FunctionConfig(memory_mb=1024)
    postprocess: FunctionConfig = FunctionConfig(memory_mb=1024)
    realtime: FunctionConfig = FunctionConfig(memory_mb=1536, timeout_seconds=60)

    @field_validator("target_width", "target_height")
    @classmethod
    def _serving_size(cls, value: int) -> int:
        return _serving_dimension(value)

    @field_validator("key_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            groups = set(re.compile(value).groupindex)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if not {"vehicle", "camera", "timestamp"} <= groups:
            raise ValueError("needs the named groups vehicle, camera and timestamp")
        return value

    @field_validator("roi")
    @classmethod
    def _roi(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is not None and not (0 <= value[0] < value[2] <= 1 and 0 <= value[1] < value[3] <= 1):
            raise ValueError("roi must be [left, top, right, bottom] as fractions of the frame, 0 <= left < right <= 1 "
                             "and 0 <= top < bottom <= 1")
        return value


# -- whole drives (stacks/drive_processing.py) ------------------------------------------------------------------------

CAMERA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class SceneThresholds(_Strict):
    """The drive builder's scene detection (drivelogs/build.py); unset: the builder's own default."""

    touch_px: Annotated[int, Field(ge=0, le=64)] | None = None
    collapse_below: Annotated[float, Field(ge=0, le=1)] | None = None
    max_gap_frames: Annotated[int, Field(ge=0, le=10_000)] | None = None
    min_duration_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    min_frames: Annotated[int, Field(ge=1, le=100_000)] | None = None
    top_scenes: Annotated[int, Field(ge=0, le=100)] | None = None

    def builder_arguments(self) -> dict[str, str]:
        """The builder's command-line options of the thresholds that are set."""
        options = {"touch_px": "--touch-px", "collapse_below": "--collapse-below",
                   "max_gap_frames": "--max-gap-frames", "min_duration_s": "--min-duration",
                   "min_frames": "--min-frames", "top_scenes": "--top-scenes"}
        return {option: f"{value:g}" if isinstance(value, float) else str(value)
                for name, option in options.items() if (value := getattr(self, name)) is not None}


class DrivesConfig(_Strict):
    """Whole drives: logs under drives/ of the inference bucket -> extraction job -> frames -> builder job."""

    # ROS topic -> camera name (the frames' <camera> key part); empty: every image topic, named after its topic.
    cameras: dict[str, str] = Field(default_factory=dict)
    # Frames per second kept per camera (None: every frame of the log).
    rate_hz: Annotated[float, Field(gt=0, le=1000)] | None = None
    extraction_instance_type: MlInstance = "ml.m5.xlarge"
    # Split MCAP files of one drive are shared out over at most this many instances (ShardedByS3Key).
    extraction_max_instances: Annotated[int, Field(ge=1, le=100)] = 4
    builder_instance_type: MlInstance = "ml.m5.xlarge"
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] = 100
    max_runtime_hours: Annotated[int, Field(ge=1, le=120)] = 4
    scenes: SceneThresholds = SceneThresholds()
    launcher: FunctionConfig = FunctionConfig(memory_mb=256, timeout_seconds=60)
    completion: FunctionConfig = FunctionConfig(memory_mb=512, timeout_seconds=300)
    # Retries of a failed batch of stream records before it goes to the completion function's dead-letter queue.
    stream_retry_attempts: Annotated[int, Field(ge=0, le=100)] = 5
    # How long a drive job refused for lack of SageMaker Processing capacity (ResourceLimitExceeded) keeps being
    # retried (every 1..15 minutes) before its start request goes to the capacity-wait dead-letter queue (alarmed).
    capacity_max_wait_hours: Annotated[int, Field(ge=1, le=168)] = 12

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, value: dict[str, str]) -> dict[str, str]:
        for topic, camera in value.items():
            if not topic.startswith("/"):
                raise ValueError(f"cameras: topic {topic!r} must be a ROS topic name starting with '/'")
            if not CAMERA_NAME.match(camera):
                raise ValueError(f"cameras: camera name {camera!r} of {topic} must be 1-63 letters, digits, '_', "
                                 "'.', '-' (it becomes a part of the frame keys and a timeline partition)")
        if len(set(value.values())) != len(value):
            raise ValueError("cameras: each camera name at most once (two topics would write the same frames)")
        return value


# -- monitoring: label-free drift per camera (issue 23, stacks/drift_monitoring.py, docs/drift.md) --------------------

# Signals with a CloudWatch anomaly-detection alarm per camera by default: the INPUT signals only (what a night, a
# dirty or re-mounted camera moves). Not the output signals (class fractions, drivable fraction): their band is
# learnt from the serving model's own history, so every rollout of a better model would move them out of it and
# fire; output drift is judged against the new model's reference profile by the drift function instead
# (docs/drift.md).
DEFAULT_ANOMALY_SIGNALS = ("brightness", "contrast", "sharpness", "saturation")
# Per-camera alarms the inference stack may hold: CloudFormation allows 500 resources per stack
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html) and prod has ~140.
MAX_CAMERA_ALARMS = 240


class MonitoringConfig(_Strict):
    """The scheduled drift check: every camera's last window against the serving model's reference profile."""

    enabled: bool = True
    drift_schedule: Literal["hourly", "daily"] = "hourly"
    # The window each run judges, ending on the hour (None: the schedule's period, 1 or 24 hours).
    window_hours: Annotated[int, Field(ge=1, le=168)] | None = None
    # Twice Evidently's defaults (PSI 0.1, Jensen-Shannon distance 0.1; a signal drifts when both reach theirs), and
    # NannyML's band (reference chunk means +/- 3 sigma). On hourly windows whose scene mix varies, the anchors' 0.1
    # fired 0.75 false alarms a week on the simulated fleet, 0.2 none, and still caught every injected drift within
    # 6 windows (docs/drift.md, bench/drift.py).
    psi_threshold: Annotated[float, Field(gt=0, le=10)] = 0.2
    js_threshold: Annotated[float, Field(gt=0, le=1)] = 0.2
    band_sigmas: Annotated[float, Field(gt=0, le=10)] = 3.0
    min_frames: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    # Drifted windows in a row before a drift alarm fires (period x windows at most 7 days: PutMetricAlarm).
    alarm_windows: Annotated[int, Field(ge=1, le=24)] = 3
    # Cameras with their own alarms and dashboard row (None: the drives.cameras names). Every camera that publishes
    # signals is judged either way, and the environment's DriftedCameras alarm covers them all. Each adds
    # 1 + len(anomaly_signals) alarms to the inference stack: at most MAX_CAMERA_ALARMS in all (EnvironmentConfig).
    cameras: list[str] | None = None
    anomaly_signals: list[str] = Field(default_factory=lambda: list(DEFAULT_ANOMALY_SIGNALS))
    anomaly_band_std: Annotated[float, Field(gt=0, le=10)] = 3.0  # ANOMALY_DETECTION_BAND width, in std devs
    per_signal_metrics: bool = True  # SignalPsi / SignalJsDistance per camera and signal (24 metrics per camera)
    function: FunctionConfig = FunctionConfig(memory_mb=512, timeout_seconds=300)

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, value: list[str] | None) -> list[str] | None:
        for camera in value or ():
            if not CAMERA_NAME.match(camera):
                raise ValueError(f"cameras: {camera!r} must be 1-63 letters, digits, '_', '.', '-' (a camera name)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("cameras: each camera at most once")
        return value

    @field_validator("anomaly_signals")
    @classmethod
    def _signals(cls, value: list[str]) -> list[str]:
        from contracts.signal_metrics import PUBLISHED_SIGNALS

        unknown = [s for s in value if s not in PUBLISHED_SIGNALS]
        if unknown:
            raise ValueError(f"anomaly_signals: {unknown} are not published per camera (use any of "
                             f"{', '.join(PUBLISHED_SIGNALS)})")
        return value

    @property
    def schedule_hours(self) -> int:
        return 1 if self.drift_schedule == "hourly" else 24

    @property
    def window(self) -> int:
        """The judged window in hours."""
        return self.window_hours or self.schedule_hours

    @model_validator(mode="after")
    def _alarm_range(self) -> MonitoringConfig:
        from contracts.service_limits import check_alarm_evaluation

        problems = check_alarm_evaluation(self.schedule_hours * 3600, self.alarm_windows)
        if problems:
            raise ValueError(f"alarm_windows {self.alarm_windows} with a {self.drift_schedule} schedule: {problems[0]}")
        return self


# -- delivery: the promotion pipeline (stacks/delivery), opt-in ------------------------------------------------------

CODESTAR_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:[0-9]{12}:connection/[A-Za-z0-9-]+$")


class DeliverySourceConfig(_Strict):
    """Where the pipeline pulls the project from: a CodeStar (CodeConnections) connection with an ``owner/name``
    repository, or a CodeCommit repository in the tools account."""

    connection_arn: str | None = None
    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")]
    branch: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\s~^:?*\[\\]+$")] = "main"
    codecommit: bool = False

    @field_validator("connection_arn")
    @classmethod
    def _connection(cls, value: str | None) -> str | None:
        if value is not None and not CODESTAR_CONNECTION_ARN.match(value):
            raise ValueError(f"'{value}' is not a CodeStar connection ARN: use arn:aws:codeconnections:<region>:"
                             "<account>:connection/<id> (Developer Tools > Settings > Connections)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DeliverySourceConfig:
        if self.codecommit == (self.connection_arn is not None):
            raise ValueError("set exactly one of 'connection_arn' (with repository: owner/name) or 'codecommit: true' "
                             "(with repository: the CodeCommit repository name)")
        if self.connection_arn is not None and "/" not in self.repository:
            raise ValueError(f"repository '{self.repository}': a connection source needs owner/name")
        if self.codecommit and "/" in self.repository:
            raise ValueError(f"repository '{self.repository}': a CodeCommit repository name has no '/'")
        return self


EnvironmentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,15}$")]


class DeliveryConfig(_Strict):
    """The promotion pipeline: runs in this file's ``account``/``region`` (the tools account) and deploys the
    ``stages`` in order, each an environment whose own config file (same folder) pins its account and region."""

    source: DeliverySourceConfig
    stages: Annotated[list[EnvironmentName], Field(min_length=1, max_length=10)]
    # Stages preceded by a manual approval. Left out (or null): every stage named prod.
    manual_approval_before: list[EnvironmentName] | None = None

    @model_validator(mode="after")
    def _stages(self) -> DeliveryConfig:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be unique, got {self.stages}")
        unknown = sorted(set(self.manual_approval_before or ()) - set(self.stages))
        if unknown:
            raise ValueError(f"manual_approval_before names {unknown}, which are not stages ({self.stages})")
        return self

    @property
    def approval_stages(self) -> list[str]:
        if self.manual_approval_before is None:
            return [stage for stage in self.stages if stage == "prod"]
        return list(self.manual_approval_before)


class EnvironmentConfig(_Strict):
    """Everything that differs between deployments of roadseg."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,15}$")]
    prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")]
    account: Annotated[str, Field(pattern=r"^[0-9]{12}$")] | None = None
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")] | None = None
    removal_policy: RemovalPolicy = RemovalPolicy.destroy
    classes: ClassesConfig = ClassesConfig()
    retention: RetentionConfig = RetentionConfig()
    training: TrainingConfig = TrainingConfig()
    realtime_endpoint: RealtimeEndpointConfig = RealtimeEndpointConfig()
    async_endpoint: AsyncEndpointConfig = AsyncEndpointConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    drives: DrivesConfig = DrivesConfig()
    tags: dict[str, str] = Field(default_factory=dict)
    # The promotion pipeline (stacks/delivery); this file's account/region are then the tools account.
    delivery: DeliveryConfig | None = None
    # Isolated-network mode (stacks/network.py): absent, nothing runs in a VPC.
    network: IsolatedNetworkConfig | None = None
    # Label-free drift per camera (issue 23).
    monitoring: MonitoringConfig = MonitoringConfig()

    @model_validator(mode="after")
    def _account_needs_region(self) -> EnvironmentConfig:
        if self.account and not self.region:
            raise ValueError("'account' is set without 'region': set both, or neither for an env-agnostic synth")
        if self.name != "dev" and not (self.account and self.region):
            raise ValueError(f"environment '{self.name}' must pin 'account' and 'region' (only dev may leave them out)")
        return self

    @model_validator(mode="after")
    def _outputs_outlive_their_readers(self) -> EnvironmentConfig:
        minimum = minimum_output_days(self.drives.max_runtime_hours)
        for key in ("inference_output_days", "quarantine_days"):
            days = getattr(self.retention, key)
            if days < minimum:
                raise ValueError(
                    f"retention.{key}: {days} days is shorter than the latest a reader may need these objects, "
                    f"{minimum} days (a dead-letter message replayed after its {DEAD_LETTER_RETENTION_DAYS}-day "
                    f"retention, after the drive stream's {STREAM_MAX_RECORD_AGE_HOURS} h of retries and a drive "
                    f"extraction of drives.max_runtime_hours {self.drives.max_runtime_hours} h): set it to {minimum} "
                    "or more")
        return self

    @model_validator(mode="after")
    def _delivery_stages(self) -> EnvironmentConfig:
        if self.delivery is not None and not self.account:
            raise ValueError("delivery: set 'account' and 'region' of this file to the tools account that runs the "
                             "pipeline")
        if self.delivery is not None and self.name in self.delivery.stages:
            raise ValueError(f"delivery.stages: '{self.name}' is the tools environment itself, not a stage")
        return self

    @model_validator(mode="after")
    def _camera_alarms_fit(self) -> EnvironmentConfig:
        from contracts.signal_metrics import (
            MAX_COMPOSITE_ALARM_RULE_CHARS,
            MAX_JUDGED_CAMERAS,
            UNKNOWN_CAMERA,
            any_camera_alarm_rule,
            drift_alarm_name,
        )

        # A drift alarm per judged camera (every configured camera and "unknown"), anomaly alarms per monitored one.
        judged = len(self.signal_cameras) + 1
        anomaly = len(self.monitored_cameras) * len(self.monitoring.anomaly_signals)
        if judged + anomaly > MAX_CAMERA_ALARMS:
            raise ValueError(
                f"monitoring: {judged} drift alarms (configured cameras and 'unknown') and {anomaly} anomaly alarms "
                f"are {judged + anomaly} alarms, more than {MAX_CAMERA_ALARMS} (CloudFormation's 500 resources per "
                "stack): list fewer monitoring.cameras or anomaly_signals")
        if judged > MAX_JUDGED_CAMERAS:
            raise ValueError(
                f"monitoring: {judged - 1} configured cameras (drives.cameras, monitoring.cameras); at most "
                f"{MAX_JUDGED_CAMERAS - 1}: the any-camera drift alarm combines one alarm per camera and 'unknown', "
                f"and a composite alarm takes at most {MAX_JUDGED_CAMERAS}")
        rule = any_camera_alarm_rule(drift_alarm_name(self.prefix, camera)
                                     for camera in [*self.signal_cameras, UNKNOWN_CAMERA])
        if len(rule) > MAX_COMPOSITE_ALARM_RULE_CHARS:
            raise ValueError(
                f"monitoring: the any-camera drift alarm's rule would be {len(rule):,} characters, more than "
                f"{MAX_COMPOSITE_ALARM_RULE_CHARS:,} (PutCompositeAlarm): use shorter or fewer camera names")
        return self

    @model_validator(mode="after")
    def _signal_cameras_fit(self) -> EnvironmentConfig:
        from contracts.signal_metrics import UNKNOWN_CAMERA, camera_list, parse_camera_list

        if UNKNOWN_CAMERA in self.signal_cameras:
            raise ValueError(f"cameras: {UNKNOWN_CAMERA!r} is the signal metrics' name for every unconfigured camera; "
                             "name the camera differently")
        try:
            parse_camera_list(camera_list(self.signal_cameras))
        except ValueError as exc:
            raise ValueError(f"drives.cameras and monitoring.cameras together: {exc}; name fewer cameras or shorter "
                             "names") from None
        return self

    @property
    def monitored_cameras(self) -> list[str]:
        """Cameras with their own drift and anomaly alarms: monitoring.cameras, else the drives' camera names."""
        if self.monitoring.cameras is not None:
            return list(self.monitoring.cameras)
        return sorted(set(self.drives.cameras.values()))

    @property
    def signal_cameras(self) -> list[str]:
        """The configured camera names (drives.cameras values and monitoring.cameras): the only Camera values the
        signal metrics carry (METRICS_CAMERAS); every other camera is published and judged as "unknown"."""
        return sorted(set(self.drives.cameras.values()) | set(self.monitoring.cameras or ()))

    @property
    def retain(self) -> bool:
        return self.removal_policy is RemovalPolicy.retain

    @property
    def reserved_lambda_concurrency(self) -> int:
        """Units of account concurrency this environment's functions reserve (0 unless configured)."""
        cfg, drives = self.preprocessing, self.drives
        return sum(fn.reserved_concurrency or 0
                   for fn in (cfg.ingest, cfg.postprocess, cfg.realtime, drives.launcher, drives.completion))


# What reads results/, failures/, quarantine/ and async-* late (stacks/bucket_set.py expires them): the drive builder
# reads every frame's documents once the drive's last frame has an outcome, and a dead-letter replay reads what the
# failed message names. SQS keeps dead letters 14 days (stacks/functions/roadseg_function.py encrypted_queue; the
# maximum, https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-queue-parameters.html);
# the drive stream retries a batch for at most 24 h (max_record_age in stacks/drive_processing.py) before its
# dead-letter queue; a drive's first frames are written up to drives.max_runtime_hours before its last.
DEAD_LETTER_RETENTION_DAYS = 14
STREAM_MAX_RECORD_AGE_HOURS = 24


def minimum_output_days(drive_runtime_hours: int) -> int:
    """The shortest expiry of the inference outputs that no drive build or dead-letter replay can outlive."""
    return DEAD_LETTER_RETENTION_DAYS + -(-(STREAM_MAX_RECORD_AGE_HOURS + drive_runtime_hours) // 24)


def available_environments(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


def _section_models(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field holds (through Optional, Annotated and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in getattr(annotation, "__args__", ()) for model in _section_models(arg)]


def section_keys(loc: tuple[Any, ...], model: type[BaseModel] | None = None) -> list[str]:
    """The keys allowed in the section at ``loc`` (a pydantic error location; a union member's name in it is
    skipped); [] where the location is no section of the config model."""
    models: list[type[BaseModel]] = [model or EnvironmentConfig]
    for part in loc:
        named = [m for m in models if m.__name__ == part]
        if named:  # pydantic names the union member it tried
            models = named
            continue
        fields = [f for m in models for name, f in m.model_fields.items() if part in (name, f.alias)]
        if not fields:
            return []
        models = _section_models(fields[0].annotation)
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """What to say about an unknown key: the close allowed key (difflib, as training/hyperparameters.py), else the
    allowed keys."""
    import difflib

    allowed = section_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if loc else []
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    if allowed:
        return f"unknown key (allowed here: {', '.join(allowed)})"
    return "unknown key (check the spelling; allowed keys are the fields of the section)"


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line ``<file>:<line>:<column>: not valid YAML: <problem>`` (PyYAML's marks count from 0, editors from 1)."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        problem += f" ({context}" + (f" from line {context_mark.line + 1}" if context_mark else "") + ")"
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    return f"{where}: not valid YAML: {problem}"


def _format_error(path: Path, error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<top level>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = _unknown_key(tuple(err["loc"]))
        elif err["type"] == "enum" or err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        lines.append(f"{path}: {key}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(env: str, config_dir: Path = CONFIG_DIR) -> EnvironmentConfig:
    if config_dir == CONFIG_DIR and os.environ.get(CONFIG_DIR_VARIABLE):  # the delivery pipeline's steps
        config_dir = Path(os.environ[CONFIG_DIR_VARIABLE])
    path = config_dir / f"{env}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no configuration for environment '{env}': {path} does not exist "
            f"(available: {', '.join(available_environments(config_dir)) or 'none'})"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    raw.setdefault("name", env)
    if raw["name"] != env:
        raise ConfigError(f"{path}: name: '{raw['name']}' must match the file name '{env}'")
    try:
        return EnvironmentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None
