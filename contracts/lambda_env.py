"""The Lambda functions' environment variables: one codec, used by the stack to write and by the functions to read.

Each variable is a typed field of a frozen dataclass. ``to_env()`` formats every field as a string and passes
strings through untouched, so CDK tokens (the bucket name, MODEL_PACKAGE_VERSION: strings at synth time) survive.
``from_env()`` parses and validates every variable and reports all bad ones in one error that names each.
Unset and empty mean the same: the field's default.

Preprocessor variables (name: default, meaning):

- POWERTOOLS_METRICS_NAMESPACE: "roadseg"; POWERTOOLS_SERVICE_NAME: unset (one per function, ``SERVICE_NAMES``)
- INFERENCE_BUCKET: -, bucket holding async inputs, results, failures and quarantine
- ASYNC_INPUT_PREFIX, RESULTS_PREFIX, QUARANTINE_PREFIX, FAILURES_PREFIX: ``contracts.layout.INFERENCE``
  (a missing trailing "/" is added)
- ASYNC_ENDPOINT_NAME, REALTIME_ENDPOINT_NAME: -, SageMaker endpoint names
- CLASS_NAMES: -, JSON list of class names in train-ID order (2..254 unique names)
- CLASS_COLORS: generated palette, JSON list of [r, g, b] (same length as CLASS_NAMES)
- IGNORE_INDEX: 255, mask value meaning "no class" (must not be a class index)
- TARGET_WIDTH, TARGET_HEIGHT: 1024, 512, inference resolution; frames are fitted inside keeping their
  aspect ratio and never upscaled
- ROI: empty, "left,top,right,bottom" as FRACTIONS (0..1) of the EXIF-oriented source frame, e.g.
  "0,0.25,1,1" drops the top quarter. Fractions (not pixels) so one setting fits cameras of any resolution.
- MAX_INPUT_BYTES: 20971520, MAX_INPUT_PIXELS: 40000000, JPEG_QUALITY: 90 (1..95)
- KEY_PATTERN: regex with named groups vehicle, camera, timestamp (and optionally drive), matched against the key
  after "incoming/"
- VRU_MIN_PIXELS: 50 (mask pixels at inference resolution)
- WRITE_OVERLAY: false, RESTORE_ORIGINAL_SIZE: false ("true"/"false", also 1/0/yes/no)
- MODEL_PACKAGE_VERSION: empty, copied into result documents
- DRIVES_TABLE: unset, the drives table (contracts.drive_table); unset: frames of drives are not counted
- METRICS_ENVIRONMENT: unset, the Environment dimension of the signal metrics (contracts.signal_metrics), the
  deployment's prefix; unset: no signal metrics
- METRICS_CAMERAS: unset, the configured camera names, comma-separated (at most
  ``contracts.signal_metrics.MAX_CAMERA_LIST_BYTES``): the signal metrics' Camera values; any other camera, and every
  camera while it is empty, is published as "unknown"

``FRAME_PREPARATION_VARIABLES`` are the ones ``prepare_frame`` is configured with. The ingest function, the real-time
front, the quality gate's PrepareServingValidation step (a Processing job environment) and the roadseg command all
read them through this codec, so every path into the model turns a frame into the same bytes.

Rollout variables: STACK_NAME (required), MODEL_PACKAGE_GROUP (required), PARAMETER_NAME ("ModelPackageArn").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from contracts.layout import INFERENCE
from contracts.naming import MODEL_PACKAGE_PARAMETER
from contracts.signal_metrics import camera_list, parse_camera_list

# <vehicle>/<camera>/<timestamp>, or <vehicle>/<drive>/<camera>/<timestamp> (drive frames: drivelogs/naming.py)
DEFAULT_KEY_PATTERN = (r"^(?P<vehicle>[^/]+)/(?:(?P<drive>[^/]+)/)?(?P<camera>[^/]+)/(?P<timestamp>[^/]+)"
                       r"\.(?:jpe?g|png)$")
KEY_PATTERN_GROUPS = ("vehicle", "camera", "timestamp")
METRICS_NAMESPACE = "roadseg"
# Handler module -> POWERTOOLS_SERVICE_NAME of its function (the `service` dimension of its metrics).
SERVICE_NAMES = {"ingest": "roadseg-ingest", "postprocess": "roadseg-postprocess",
                 "realtime": "roadseg-realtimefront", "rollout": "roadseg-rollout", "drives": "roadseg-drives"}

# What segcore.imaging.prepare_frame is configured with (segcore.settings.Settings.prepare_options).
FRAME_PREPARATION_VARIABLES = ("TARGET_WIDTH", "TARGET_HEIGHT", "ROI", "MAX_INPUT_BYTES", "MAX_INPUT_PIXELS",
                               "JPEG_QUALITY")

Codec = TypeVar("Codec", bound="EnvironmentCodec")


class EnvironmentContractError(ValueError):
    """The environment breaks the contract; the message names every variable at fault."""

    def __init__(self, problems: list[str], missing: tuple[str, ...] = ()) -> None:
        super().__init__("invalid Lambda configuration:\n  " + "\n  ".join(problems))
        self.problems = tuple(problems)
        self.missing = missing  # required variables that are unset or empty


@dataclass(frozen=True)
class Variable:
    """How one field travels: its variable name, its parser (raises ValueError) and its formatter."""

    name: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    omit_if_none: bool = False


def variable(name: str, default: Any = MISSING, parse: Callable[[str], Any] | None = None,
             format: Callable[[Any], str] | None = None, *, omit_if_none: bool = False) -> Any:
    """A dataclass field bound to an environment variable (no default: the variable is required)."""
    spec = Variable(name, parse or _text, format or _text, omit_if_none)
    return field(default=default, metadata={"env": spec})


class EnvironmentCodec:
    """``to_env``/``from_env`` for a frozen dataclass whose fields are declared with :func:`variable`."""

    def to_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for f in fields(self):  # type: ignore[arg-type]
            spec: Variable = f.metadata["env"]
            value = getattr(self, f.name)
            if value is None:
                if not spec.omit_if_none:
                    env[spec.name] = ""
            else:
                env[spec.name] = spec.format(value)
        return env

    @classmethod
    def from_env(cls: type[Codec], environ: Mapping[str, str]) -> Codec:
        problems: list[str] = []
        missing: list[str] = []
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            spec: Variable = f.metadata["env"]
            raw = environ.get(spec.name)
            if raw is None or raw.strip() == "":
                if f.default is MISSING:
                    missing.append(spec.name)
                    problems.append(f"{spec.name}: required but not set")
                else:
                    values[f.name] = f.default
                continue
            try:
                values[f.name] = spec.parse(raw.strip())
            except ValueError as exc:
                shown = raw if len(raw) <= 120 else raw[:117] + "..."
                problems.append(f"{spec.name}: {exc} (got {shown!r})")
        problems += cls._cross_check(values)
        if problems:
            raise EnvironmentContractError(problems, tuple(missing))
        return cls(**values)

    @classmethod
    def _cross_check(cls, values: Mapping[str, Any]) -> list[str]:
        """Problems between variables that each parsed on their own (fields that failed are absent)."""
        return []


# ------------------------------------------------------------------------------------------ parsers


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _optional_text(raw: str) -> str | None:
    return raw or None


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValueError(f"must be an integer within {low}..{high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be within {low}..{high}")
        return value

    return parse


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _bucket(raw: str) -> str:
    if not _BUCKET.match(raw):
        raise ValueError("must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    return raw


def _prefix(raw: str) -> str:
    if raw.startswith("/"):
        raise ValueError("must be an S3 key prefix without a leading '/', e.g. 'results/'")
    return raw if raw.endswith("/") else raw + "/"


_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def _table_name(raw: str) -> str:
    if not _TABLE.match(raw):
        raise ValueError("must be a DynamoDB table name (3-255 letters, digits, '_', '-', '.')")
    return raw


_ENDPOINT = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _endpoint_name(raw: str) -> str:
    if not _ENDPOINT.match(raw):
        raise ValueError("must be a SageMaker endpoint name (1-63 letters, digits and '-')")
    return raw


def _vru_classes(raw: str) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError('must be a JSON list of class names, e.g. ["person", "rider"]') from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a JSON list of non-empty strings (may be empty)")
    return tuple(value)


def _neo_targets(raw: str) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError('must be a JSON list of Neo target devices, e.g. ["ml_g4dn", "jetson_xavier"]') from None
    if not isinstance(value, list) or not all(isinstance(v, str) and re.fullmatch(r"[a-z0-9_]+", v) for v in value):
        raise ValueError("must be a JSON list of Neo target device names (lower case, digits, '_'; may be empty)")
    return tuple(value)


def _class_names(raw: str) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError('must be a JSON list of class names, e.g. ["road", "sidewalk", ...]') from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a JSON list of non-empty strings")
    if not 2 <= len(value) <= 254:
        raise ValueError(f"must list 2..254 classes, got {len(value)}")
    if len(set(value)) != len(value):
        raise ValueError("class names must be unique")
    return tuple(value)


def _colors(raw: str) -> tuple[tuple[int, int, int], ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("must be a JSON list of [r, g, b] lists") from None
    if not isinstance(value, list):
        raise ValueError("must be a JSON list of [r, g, b] lists")
    colors = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in item)
        ):
            raise ValueError(f"each colour must be [r, g, b] with integers 0..255, found {item!r}")
        colors.append((item[0], item[1], item[2]))
    return tuple(colors)


def _roi(raw: str) -> tuple[float, float, float, float]:
    parts = raw.split(",")
    try:
        left, top, right, bottom = (float(p) for p in parts)
    except ValueError:
        raise ValueError("must be 'left,top,right,bottom' as fractions 0..1 of the frame, e.g. '0,0.25,1,1'") from None
    if not all(0.0 <= v <= 1.0 for v in (left, top, right, bottom)):
        raise ValueError("values are fractions of the frame and must be within 0..1 (pixel ROIs are not supported)")
    if not (left < right and top < bottom):
        raise ValueError("needs left < right and top < bottom")
    return (left, top, right, bottom)


def _key_pattern(raw: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(raw)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    missing = [g for g in KEY_PATTERN_GROUPS if g not in pattern.groupindex]
    if missing:
        raise ValueError(f"must define the named groups {', '.join(KEY_PATTERN_GROUPS)}; missing {', '.join(missing)}")
    return pattern


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be 'true' or 'false'")


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


def _format_json_list(value: tuple) -> str:
    """Empty is unset (the parser wants 2..254 classes)."""
    return json.dumps([list(v) if isinstance(v, tuple) else v for v in value]) if value else ""


def json_list(value: tuple) -> str:
    """A JSON list, "[]" included (an empty VRU list means "none", unlike an unset variable)."""
    return json.dumps(list(value))


def _format_roi(value: tuple[float, float, float, float]) -> str:
    return ",".join(str(float(v)) for v in value)


def _format_pattern(value: re.Pattern[str] | str) -> str:
    return value if isinstance(value, str) else value.pattern


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bit-interleaved), deterministic and distinct for up to 256 classes."""
    colors = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return tuple(colors)


# --------------------------------------------------------------------------------------- the codecs


@dataclass(frozen=True)
class PreprocessorEnvironment(EnvironmentCodec):
    """What the ingest, postprocess and real-time functions are configured with (see the module docstring)."""

    metrics_namespace: str = variable("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)
    service_name: str | None = variable("POWERTOOLS_SERVICE_NAME", None, omit_if_none=True)
    inference_bucket: str | None = variable("INFERENCE_BUCKET", None, _bucket)
    async_input_prefix: str = variable("ASYNC_INPUT_PREFIX", INFERENCE.async_input, _prefix)
    results_prefix: str = variable("RESULTS_PREFIX", INFERENCE.results, _prefix)
    quarantine_prefix: str = variable("QUARANTINE_PREFIX", INFERENCE.quarantine, _prefix)
    failures_prefix: str = variable("FAILURES_PREFIX", INFERENCE.failures, _prefix)
    async_endpoint_name: str | None = variable("ASYNC_ENDPOINT_NAME", None, _endpoint_name)
    realtime_endpoint_name: str | None = variable("REALTIME_ENDPOINT_NAME", None, _endpoint_name)
    class_names: tuple[str, ...] = variable("CLASS_NAMES", (), _class_names, _format_json_list)
    # None: the default palette for the classes (filled in on construction).
    class_colors: tuple[tuple[int, int, int], ...] = variable("CLASS_COLORS", None, _colors, _format_json_list)
    ignore_index: int = variable("IGNORE_INDEX", 255, int_range(0, 255))
    target_width: int = variable("TARGET_WIDTH", 1024, int_range(16, 8192))
    target_height: int = variable("TARGET_HEIGHT", 512, int_range(16, 8192))
    roi: tuple[float, float, float, float] | None = variable("ROI", None, _roi, _format_roi)
    max_input_bytes: int = variable("MAX_INPUT_BYTES", 20 * 1024 * 1024, int_range(1, 2**40))
    max_input_pixels: int = variable("MAX_INPUT_PIXELS", 40_000_000, int_range(256, 2**40))
    jpeg_quality: int = variable("JPEG_QUALITY", 90, int_range(1, 95))
    key_pattern: re.Pattern[str] = variable("KEY_PATTERN", re.compile(DEFAULT_KEY_PATTERN), _key_pattern,
                                            _format_pattern)
    vru_min_pixels: int = variable("VRU_MIN_PIXELS", 50, int_range(1, 2**40))
    # The scheme's vulnerable road users (names from CLASS_NAMES); unset: the built-in VRU names of the
    # Cityscapes and CamVid schemes (segcore.masks).
    vru_classes: tuple[str, ...] | None = variable("VRU_CLASSES", None, _vru_classes, json_list,
                                                   omit_if_none=True)
    write_overlay: bool = variable("WRITE_OVERLAY", False, parse_bool, _format_bool)
    restore_original_size: bool = variable("RESTORE_ORIGINAL_SIZE", False, parse_bool, _format_bool)
    model_package_version: str | None = variable("MODEL_PACKAGE_VERSION", None, _optional_text)
    # The drives table (contracts.drive_table): ingest and postprocess count each drive frame's outcome in it.
    # Unset: no drive tracking (frames with drive metadata are processed like any other).
    drives_table: str | None = variable("DRIVES_TABLE", None, _table_name, omit_if_none=True)
    # The Environment dimension of the per-frame signal metrics (contracts.signal_metrics): the deployment's prefix.
    # Unset: the functions publish no signal metrics (the result documents still carry the signals).
    metrics_environment: str | None = variable("METRICS_ENVIRONMENT", None, _optional_text, omit_if_none=True)
    # The configured camera names (comma-separated): the only Camera values the signal metrics carry; any other
    # camera is published as "unknown" (contracts.signal_metrics.camera_value). Unset: every frame is "unknown".
    metrics_cameras: tuple[str, ...] | None = variable("METRICS_CAMERAS", None, parse_camera_list, camera_list,
                                                       omit_if_none=True)

    def __post_init__(self) -> None:
        if self.class_colors is None:
            object.__setattr__(self, "class_colors", default_palette(len(self.class_names)))
        if isinstance(self.key_pattern, str):  # the stack passes the config's text
            object.__setattr__(self, "key_pattern", re.compile(self.key_pattern))

    @property
    def target_size(self) -> tuple[int, int]:
        return (self.target_width, self.target_height)

    def frame_preparation_env(self) -> dict[str, str]:
        """The ``FRAME_PREPARATION_VARIABLES`` of ``to_env()``: what a job that prepares frames needs."""
        env = self.to_env()
        return {name: env[name] for name in FRAME_PREPARATION_VARIABLES}

    @classmethod
    def _cross_check(cls, values: Mapping[str, Any]) -> list[str]:
        problems = []
        names, colors, ignore = values.get("class_names"), values.get("class_colors"), values.get("ignore_index")
        if names and colors is not None and len(colors) != len(names):
            problems.append(f"CLASS_COLORS: has {len(colors)} colours but CLASS_NAMES has {len(names)} classes; "
                            "give one [r, g, b] per class")
        vru = values.get("vru_classes")
        if names and vru:
            unknown = sorted(set(vru) - set(names))
            if unknown:
                problems.append(f"VRU_CLASSES: {unknown} are not in CLASS_NAMES; list vulnerable road users by "
                                "their class names")
        if names and isinstance(ignore, int) and ignore < len(names):
            problems.append(f"IGNORE_INDEX: {ignore} is a class index (CLASS_NAMES has {len(names)} classes); "
                            f"use a value >= {len(names)}, usually 255")
        return problems


def frame_preparation_environment(preprocessing: Any) -> PreprocessorEnvironment:
    """The frame-preparation fields of a config's ``preprocessing`` section
    (``envconfig.config.PreprocessingConfig``, or anything with those attributes) and its ``vru_min_pixels``; every
    other field keeps its default. The one mapping from the config to what
    ``prepare_frame`` does: the preprocessors' environment, the gate's serving step and the roadseg command start here.
    """
    return PreprocessorEnvironment(
        target_width=preprocessing.target_width, target_height=preprocessing.target_height,
        roi=tuple(float(v) for v in preprocessing.roi) if preprocessing.roi else None,
        max_input_bytes=preprocessing.max_input_bytes, max_input_pixels=preprocessing.max_input_pixels,
        jpeg_quality=preprocessing.jpeg_quality,
        # Not frame preparation, but how the postprocess function measures vru_present: the gate's reference profile
        # (EvaluateModel --vru-min-pixels) must measure it the same way. Not in frame_preparation_env().
        vru_min_pixels=getattr(preprocessing, "vru_min_pixels", 50))


@dataclass(frozen=True)
class RolloutEnvironment(EnvironmentCodec):
    """What the rollout function is configured with: which stack parameter to set for which package group."""

    stack_name: str = variable("STACK_NAME")
    model_package_group: str = variable("MODEL_PACKAGE_GROUP")
    parameter_name: str = variable("PARAMETER_NAME", MODEL_PACKAGE_PARAMETER)
    service_name: str | None = variable("POWERTOOLS_SERVICE_NAME", None, omit_if_none=True)
    # SageMaker Neo: compile the approved package's edge bundle for these targets (training.export.neo_targets),
    # with this role, encrypting the output with this key, under this job-name prefix. Empty: no compilation.
    neo_targets: tuple[str, ...] = variable("NEO_TARGETS", (), _neo_targets, json_list)
    neo_role_arn: str | None = variable("NEO_ROLE_ARN", None, omit_if_none=True)
    neo_kms_key_arn: str | None = variable("NEO_KMS_KEY_ARN", None, omit_if_none=True)
    neo_job_prefix: str | None = variable("NEO_JOB_PREFIX", None, omit_if_none=True)
    # Isolated-network mode: the compilation jobs' VpcConfig (neo-vpc.html); unset: the jobs run without a VPC.
    neo_subnets: tuple[str, ...] | None = variable("NEO_SUBNETS", None, lambda raw: _id_list(raw),
                                                   lambda value: _format_id_list(value), omit_if_none=True)
    neo_security_groups: tuple[str, ...] | None = variable("NEO_SECURITY_GROUPS", None, lambda raw: _id_list(raw),
                                                           lambda value: _format_id_list(value), omit_if_none=True)


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("must be a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _json_dumps(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _optional_float(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number of frames per second, e.g. 10") from None
    if not 0 < value <= 1000:
        raise ValueError("must be within 0 (exclusive)..1000")
    return value


def _id_list(raw: str) -> tuple[str, ...]:
    """Comma-separated AWS resource ids (subnet-..., sg-...); empty: none."""
    ids = tuple(part.strip() for part in raw.split(",") if part.strip())
    if any(not re.fullmatch(r"[a-z]+-[0-9a-zA-Z]+", i) for i in ids):
        raise ValueError("must be comma-separated AWS ids such as subnet-0abc,subnet-0def")
    return ids


def _format_id_list(value: tuple[str, ...]) -> str:
    return ",".join(value)


@dataclass(frozen=True)
class DrivesEnvironment(EnvironmentCodec):
    """What the drive functions (lambda/drives.py: launcher and completion) are configured with: the table, the
    bucket, and everything the two Processing job requests need (roadseg_lambda.drive_jobs builds them)."""

    drives_table: str = variable("DRIVES_TABLE", parse=_table_name)
    inference_bucket: str = variable("INFERENCE_BUCKET", parse=_bucket)
    job_prefix: str = variable("JOB_PREFIX")  # contracts.naming.drive_job_prefix's environment prefix
    extraction_role_arn: str = variable("EXTRACTION_ROLE_ARN")
    builder_role_arn: str = variable("BUILDER_ROLE_ARN")
    processing_image: str = variable("PROCESSING_IMAGE")
    code_entry_uri: str = variable("CODE_ENTRY_URI")  # s3:// of jobs/processing_entry.py
    code_package_uri: str = variable("CODE_PACKAGE_URI")  # s3:// of the processing package zip
    drive_wheels_uri: str = variable("DRIVE_WHEELS_URI")  # s3:// of the drive wheelhouse zip
    kms_key_arn: str = variable("KMS_KEY_ARN")  # volumes and outputs of both jobs
    extraction_instance_type: str = variable("EXTRACTION_INSTANCE_TYPE", "ml.m5.xlarge")
    extraction_max_instances: int = variable("EXTRACTION_MAX_INSTANCES", 4, int_range(1, 100))
    builder_instance_type: str = variable("BUILDER_INSTANCE_TYPE", "ml.m5.xlarge")
    volume_size_gb: int = variable("VOLUME_SIZE_GB", 100, int_range(1, 16384))
    max_runtime_seconds: int = variable("MAX_RUNTIME_SECONDS", 4 * 3600, int_range(60, 5 * 86400))
    rate_hz: float | None = variable("RATE_HZ", None, _optional_float, omit_if_none=True)
    # s3:// of the job settings zip (contracts.job_settings: classes.json, cameras.json), both jobs' ``settings`` input.
    settings_uri: str | None = variable("SETTINGS_URI", None, omit_if_none=True)
    # Extra arguments of the extraction naming settings files ({"--cameras-json": "@<settings>/cameras.json"}).
    extraction_arguments: dict[str, Any] = variable("EXTRACTION_ARGUMENTS", None, _json_object, _json_dumps,
                                                    omit_if_none=True)
    # {"/topic": "camera"} passed inline (drivelogs.extract --cameras-json): only for runs without the settings
    # asset, and only while it fits a container argument (256 characters); the stacks never set it: the camera map
    # travels as the settings' cameras.json, which keeps this environment small (Lambda: 4 KB in all).
    cameras: dict[str, Any] = variable("CAMERAS", None, _json_object, _json_dumps, omit_if_none=True)
    # Extra arguments of the builder (scheme and scene thresholds: {"--scheme": "custom", "--min-frames": "3", ...}).
    builder_arguments: dict[str, Any] = variable("BUILDER_ARGUMENTS", None, _json_object, _json_dumps,
                                                 omit_if_none=True)
    # The ingest function's input limits (preprocessing.max_input_*): extraction skips what ingest would refuse.
    max_input_bytes: int | None = variable("MAX_INPUT_BYTES", None, int_range(1, 2**40), omit_if_none=True)
    max_input_pixels: int | None = variable("MAX_INPUT_PIXELS", None, int_range(256, 2**40), omit_if_none=True)
    # Isolated-network mode: the drive jobs' VpcConfig (the jobs run in the VPC's private subnets); empty: no VPC.
    job_subnets: tuple[str, ...] = variable("JOB_SUBNETS", (), _id_list, _format_id_list)
    job_security_groups: tuple[str, ...] = variable("JOB_SECURITY_GROUPS", (), _id_list, _format_id_list)
    glue_database: str | None = variable("GLUE_DATABASE", None, omit_if_none=True)
    glue_table: str | None = variable("GLUE_TABLE", None, omit_if_none=True)
    service_name: str | None = variable("POWERTOOLS_SERVICE_NAME", None, omit_if_none=True)
    # Waiting for Processing capacity (lambda/drives.py): the queue a refused start request is sent to (with a delay),
    # its dead-letter queue (a wait that outlasted CAPACITY_MAX_WAIT_SECONDS), the maximum wait. No queue: a refused
    # start is raised (the invocation's own retries).
    capacity_queue_url: str | None = variable("CAPACITY_QUEUE_URL", None, omit_if_none=True)
    capacity_dead_letter_url: str | None = variable("CAPACITY_DEAD_LETTER_URL", None, omit_if_none=True)
    capacity_max_wait_seconds: int = variable("CAPACITY_MAX_WAIT_SECONDS", 12 * 3600, int_range(60, 7 * 86400))
