"""The per-frame signals as CloudWatch metrics: namespace, metric names, dimensions and units, written once.

The postprocess function publishes every numeric input and output signal of each frame it completes (issue 23: the
names in ``contracts.signals``) in CloudWatch embedded metric format (EMF, one log line per frame); the ingest function
publishes the frames it received and quarantined per camera. The drift monitor reads the same series back
(GetMetricData), the alarms and the dashboard chart them, and ``stacks/metric_catalogue.py`` lists them with exactly
these dimension sets, so a query, an alarm or a widget on another set is refused at synth time.

Dimensions are LOW-cardinality on purpose: each distinct combination of dimension values is one custom metric,
billed per month. ``Environment`` is the deployment's prefix (``envconfig`` ``prefix``: several deployments may share
an account's namespace), ``Camera`` the camera position from the frame key (``KEY_PATTERN``'s ``camera`` group);
never the vehicle, the drive or the frame. Only the deployment's CONFIGURED camera names (envconfig
``drives.cameras`` values and ``monitoring.cameras``, given to the functions as ``METRICS_CAMERAS``,
contracts.lambda_env) are published as themselves; any other camera (a key that did not match the pattern, a loose
upload ``veh/drive-0001/frame.jpg`` whose drive reads as the camera, a free-text segment) is published as
``UNKNOWN_CAMERA``, so a stray upload cannot create metrics (each new camera value would be 14 metrics and 251
GetMetricData queries per drift run). A deployment with no configured cameras publishes every frame as
``UNKNOWN_CAMERA``: one series per signal, judged as one camera. Quarantine reasons are the fixed set
``QUARANTINE_REASONS`` (segcore.imaging.BadFrame codes and the ingest's
own ``key_too_long``); any other code is published as ``OTHER_REASON``.

Cost (CloudWatch pricing, https://aws.amazon.com/cloudwatch/pricing/, first tier $0.30 per metric-month, prorated by
the hour a metric is published in): ``len(SIGNAL_METRICS) * cameras * environments`` for the signals, plus
``cameras`` (``FramesReceived``) and up to ``len(QUARANTINE_REASONS) + 1`` per camera for the quarantine reasons that
occur. EMF costs no PutMetricData calls: it is billed as the log bytes the function writes (CloudWatch Logs ingestion).

EMF itself: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
(at most 100 metrics per directive, 30 dimensions per dimension set, up to 100 values per metric; the ``Timestamp``
in milliseconds since the epoch). Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType

from contracts.signals import INPUT_SIGNALS, NUMERIC_SIGNALS, OUTPUT_SIGNALS

EMF_SPECIFICATION_DOC = ("https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/"
                         "CloudWatch_Embedded_Metric_Format_Specification.html")
CLOUDWATCH_PRICING_DOC = "https://aws.amazon.com/cloudwatch/pricing/"
EMF_MAX_METRICS_PER_DIRECTIVE = 100
EMF_MAX_DIMENSIONS_PER_SET = 30

# Not the functions' operational namespace (contracts.lambda_env.METRICS_NAMESPACE, with Powertools' ``service``
# dimension): the signal series have their own dimension sets and are the drift monitor's input, read by namespace.
SIGNAL_METRICS_NAMESPACE = "roadseg/signals"

ENVIRONMENT_DIMENSION = "Environment"
CAMERA_DIMENSION = "Camera"
REASON_DIMENSION = "Reason"
SIGNAL_DIMENSIONS: tuple[str, ...] = (ENVIRONMENT_DIMENSION, CAMERA_DIMENSION)
QUARANTINE_DIMENSIONS: tuple[str, ...] = (ENVIRONMENT_DIMENSION, CAMERA_DIMENSION, REASON_DIMENSION)

UNKNOWN_CAMERA = "unknown"
OTHER_REASON = "other"
# The camera names envconfig accepts (drives.cameras values; envconfig.config.CAMERA_NAME): letters, digits, '_', '.',
# '-', at most 63 characters.
CAMERA_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# METRICS_CAMERAS (comma-separated) may take at most this share of a function's environment: Lambda allows 4 KB for
# all variables in aggregate (contracts.service_limits.MAX_LAMBDA_ENVIRONMENT_BYTES), and the class names, colours
# and key pattern need the rest. 1 KB is 16 cameras of 63 characters, or ~100 of 9.
MAX_CAMERA_LIST_BYTES = 1024
# The drift function judges the configured cameras and UNKNOWN_CAMERA; the environment's "any camera drifted" alarm is
# a composite of their per-camera drift alarms, and "The rule expression of a composite alarm can include as many as
# 100 underlying alarms" (PutCompositeAlarm). So at most 99 configured cameras.
COMPOSITE_ALARM_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutCompositeAlarm.html"
MAX_COMPOSITE_ALARM_CHILDREN = 100
MAX_JUDGED_CAMERAS = MAX_COMPOSITE_ALARM_CHILDREN
# The same page: AlarmRule is at most 10,240 characters. A rule naming its alarms by ARN (what CDK's AlarmRule.any_of
# writes) takes ~118 characters a camera with CloudFormation-generated alarm names, so ~86 cameras, not 100, would fit;
# the per-camera drift alarms are therefore named (drift_alarm_name) and the rule names them by name, which the
# AlarmRule syntax allows ("ALARM(alarm-name or alarm-ARN)"): with METRICS_CAMERAS' 1 KB every rule fits.
MAX_COMPOSITE_ALARM_RULE_CHARS = 10_240


def drift_alarm_name(prefix: str, camera: str) -> str:
    """The per-camera drift alarm's name (unique per environment prefix; alarm names allow 255 characters)."""
    return f"{prefix}-drift-{camera}"


def any_camera_alarm_rule(alarm_names: Iterable[str]) -> str:
    """The composite "some camera drifted" rule: ALARM of any named alarm."""
    return " OR ".join(f'ALARM("{name}")' for name in alarm_names)

# Every refusal code a quarantined frame can carry: segcore.imaging.BadFrame's codes (its module docstring) and the
# ingest function's key_too_long (the async input's metadata would break S3's 2 KB limit). A test reads the sources.
QUARANTINE_REASONS: tuple[str, ...] = ("empty", "too_large_bytes", "unsupported_format", "too_many_pixels",
                                       "too_small", "truncated", "unreadable", "key_too_long")

# The per-frame signals the postprocess function publishes: every NUMERIC input and output signal (dhash is a string;
# flicker needs the previous frame, the model signals probabilities: neither exists in the serving path).
PUBLISHED_SIGNALS: tuple[str, ...] = tuple(name for name in (*INPUT_SIGNALS, *OUTPUT_SIGNALS)
                                           if name in NUMERIC_SIGNALS)


def signal_metric_name(signal: str) -> str:
    """The CloudWatch metric name of a signal: its name in CamelCase ("frac_road" -> "FracRoad")."""
    return "".join(part[:1].upper() + part[1:] for part in signal.split("_"))


# Signal name -> metric name; unit "None" (fractions, 0/1 and Laplacian variances are unitless).
SIGNAL_METRICS: Mapping[str, str] = MappingProxyType({name: signal_metric_name(name) for name in PUBLISHED_SIGNALS})
SIGNAL_UNIT = "None"

# Ingest, per frame it decided about (submitted or quarantined; a re-delivery that finds the frame submitted, and a
# frame deleted before it was read, are not counted): FramesReceived {Environment, Camera} and, for a quarantined one,
# FramesQuarantinedByCamera {Environment, Camera, Reason} (not the operational FramesQuarantined of the functions'
# namespace). Quarantine rate of a camera = FramesQuarantinedByCamera summed over reasons / FramesReceived.
FRAMES_RECEIVED_METRIC = "FramesReceived"
FRAMES_QUARANTINED_METRIC = "FramesQuarantinedByCamera"
COUNT_UNIT = "Count"


def camera_value(camera: str | None, configured: Collection[str]) -> str:
    """The Camera dimension's value for a frame's camera: the camera itself when it is one of the ``configured``
    names, else ``UNKNOWN_CAMERA`` (none, implausible, or not configured: the dimension stays bounded)."""
    return camera if camera and camera in configured and CAMERA_VALUE.match(camera) else UNKNOWN_CAMERA


def camera_list(cameras: Iterable[str]) -> str:
    """METRICS_CAMERAS' text: the names comma-separated (sorted, each once)."""
    return ",".join(sorted(set(cameras)))


def parse_camera_list(raw: str) -> tuple[str, ...]:
    """METRICS_CAMERAS' names; ValueError (saying what is wrong) for a name that is not a camera name, or a list
    longer than ``MAX_CAMERA_LIST_BYTES``."""
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    bad = [name for name in names if not CAMERA_VALUE.match(name) or name == UNKNOWN_CAMERA]
    if bad:
        raise ValueError(f"{bad} are not camera names (1-63 letters, digits, '_', '.', '-'; not {UNKNOWN_CAMERA!r})")
    if len(raw.encode()) > MAX_CAMERA_LIST_BYTES:
        raise ValueError(f"the list has {len(raw.encode())} bytes, at most {MAX_CAMERA_LIST_BYTES} (Lambda's 4 KB "
                         "environment)")
    return names


def reason_value(code: str) -> str:
    """The Reason dimension's value for a quarantine code (``OTHER_REASON`` outside the fixed set)."""
    return code if code in QUARANTINE_REASONS else OTHER_REASON


def custom_metrics_per_month(cameras: int, environments: int = 1, *, quarantine_reasons: int = 0) -> int:
    """Custom metrics these series create: the signals and FramesReceived per camera and environment, plus the
    quarantine reasons that occur (each reason seen for a camera is one more metric)."""
    return environments * cameras * (len(SIGNAL_METRICS) + 1 + quarantine_reasons)
