"""One drift run: fetch (SSM -> SageMaker -> S3 for the reference, CloudWatch for the window) -> decide
(``monitoring.drift``) -> act (PutMetricData). Shared by the scheduled function (lambda/drift_monitor.py) and
``roadseg monitor status``; the boto3 clients are passed in (created once, up front: botocore clients are not safe
to create from the default session in several threads).

Calls and their permissions (stacks/drift_monitoring.py grants exactly these): ssm:GetParameter (the serving
parameter), sagemaker:DescribeModelPackage (the project's group), s3:GetObject (+ kms:Decrypt) on the profile,
cloudwatch:ListMetrics and cloudwatch:GetMetricData (no resource-level permissions), cloudwatch:PutMetricData in
``monitoring.metrics.DRIFT_NAMESPACE`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.service_limits import METRIC_RETENTION_DAYS, metric_period_floor
from contracts.signal_metrics import (
    CAMERA_DIMENSION,
    ENVIRONMENT_DIMENSION,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
    UNKNOWN_CAMERA,
)
from monitoring.drift import (
    EVIDENTLY_JS_THRESHOLD,
    EVIDENTLY_PSI_THRESHOLD,
    NANNYML_BAND_SIGMAS,
    CameraVerdict,
    DriftThresholds,
    judge,
)
from monitoring.metrics import drift_metric_data, put_requests, reference_missing_data
from monitoring.queries import batches, parse_series, parse_window, window_queries
from monitoring.reference import (
    ReferenceProfileError,
    ServingReference,
    parse_profile,
    reference_of_package,
    serving_package,
    split_s3_uri,
)

# The series ListMetrics looks for cameras by: every processed frame publishes it.
CAMERA_PROBE_SIGNAL = "brightness"


@dataclass(frozen=True)
class DriftSettings:
    environment: str  # the Environment dimension's value (the deployment's prefix)
    serving_parameter: str  # contracts.naming.serving_package_parameter(prefix)
    window_seconds: int = 3600
    thresholds: DriftThresholds = DriftThresholds()
    # The configured cameras (EnvironmentConfig.signal_cameras, the functions' METRICS_CAMERAS): judged even when
    # ListMetrics does not list them (yet). No other camera is judged except UNKNOWN_CAMERA, the catch-all the
    # functions publish every other camera as; an older series of an unconfigured name is ignored.
    cameras: tuple[str, ...] = ()
    per_signal: bool = True  # publish SignalPsi / SignalJsDistance per camera and signal

    def __post_init__(self) -> None:
        if self.window_seconds < 3600 or self.window_seconds % 3600:
            raise ValueError(f"window {self.window_seconds} s: use whole hours (1-hour data is kept 455 days)")

    def to_env(self) -> dict[str, str]:
        """The function's environment variables (``ENVIRONMENT_VARIABLES``; read back by :meth:`from_env`)."""
        t = self.thresholds
        return {"DRIFT_ENVIRONMENT": self.environment, "DRIFT_SERVING_PARAMETER": self.serving_parameter,
                "DRIFT_WINDOW_SECONDS": str(self.window_seconds), "DRIFT_PSI_THRESHOLD": repr(t.psi),
                "DRIFT_JS_THRESHOLD": repr(t.js), "DRIFT_BAND_SIGMAS": repr(t.band_sigmas),
                "DRIFT_MIN_FRAMES": str(t.min_frames), "DRIFT_CAMERAS": ",".join(self.cameras),
                "DRIFT_PER_SIGNAL": "true" if self.per_signal else "false"}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DriftSettings:
        """The settings from the function's environment; ValueError naming the variable that is missing or bad."""
        missing = [name for name in ("DRIFT_ENVIRONMENT", "DRIFT_SERVING_PARAMETER") if not env.get(name)]
        if missing:
            raise ValueError(f"environment variables {', '.join(missing)} are not set (stacks/drift_monitoring.py "
                             "sets them)")
        name = ""
        try:
            name = "DRIFT_WINDOW_SECONDS"
            window = int(env.get(name, "3600"))
            name = "DRIFT_PSI_THRESHOLD"
            psi = float(env.get(name, EVIDENTLY_PSI_THRESHOLD))
            name = "DRIFT_JS_THRESHOLD"
            js = float(env.get(name, EVIDENTLY_JS_THRESHOLD))
            name = "DRIFT_BAND_SIGMAS"
            sigmas = float(env.get(name, NANNYML_BAND_SIGMAS))
            name = "DRIFT_MIN_FRAMES"
            min_frames = int(env.get(name, DriftThresholds.min_frames))
            return cls(env["DRIFT_ENVIRONMENT"], env["DRIFT_SERVING_PARAMETER"], window,
                       DriftThresholds(psi, js, sigmas, min_frames),
                       tuple(c for c in env.get("DRIFT_CAMERAS", "").split(",") if c),
                       env.get("DRIFT_PER_SIGNAL", "true") == "true")
        except ValueError as exc:
            raise ValueError(f"environment variable {name}={env.get(name)!r}: {exc}") from None


@dataclass
class DriftRun:
    reference: ServingReference | None  # None: no model is serving (nothing to compare with)
    start: datetime
    end: datetime
    verdicts: list[CameraVerdict] = field(default_factory=list)
    requests: int = 0  # GetMetricData requests made
    profile: dict[str, Any] | None = None  # the reference profile document compared with
    # Why the serving package could not be compared (it has no usable reference profile); None when it could, or when
    # no package serves. Not an error: a retry cannot fix it, the ReferenceMissing alarm reports it.
    reference_missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
                **({"reference_missing": self.reference_missing} if self.reference_missing else {}),
                "reference": None if self.reference is None else {
                    "model_package_arn": self.reference.package_arn,
                    "model_package_version": self.reference.package_version,
                    "profile": self.reference.profile_uri},
                "cameras": [v.to_dict() for v in self.verdicts]}


# Frames of the last minutes are still on their way (the async endpoint, postprocess, EMF extraction from the log):
# a window ends on the last whole hour at least this long before the run.
SETTLE = timedelta(minutes=15)


DAY_SECONDS = 86_400


def window_bounds(now: datetime, window_seconds: int) -> tuple[datetime, datetime]:
    """The last whole window that ended ``SETTLE`` before ``now``, ``window_seconds`` long. It ends on the hour (so
    the one-period query has one data point and hourly runs tile time); a window of whole days ends at 00:00 UTC, so
    daily runs judge calendar days (UTC) whatever hour the schedule fires at. GetMetricData's documentation does not
    say how it aligns a 24-hour period (only how it rounds StartTime by the data's age, to the minute within 15 days):
    the query's StartTime is the window's start itself, so the one data point covers exactly the window."""
    end = (now.astimezone(UTC) - SETTLE).replace(minute=0, second=0, microsecond=0)
    if window_seconds % DAY_SECONDS == 0:
        end = end.replace(hour=0)
    return end - timedelta(seconds=window_seconds), end


def load_reference(ssm: Any, sagemaker: Any, s3: Any, parameter: str) -> tuple[ServingReference, dict] | None:
    """The serving package's reference and profile; None while no package is approved; ReferenceProfileError when the
    package has no usable profile."""
    value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    arn = serving_package(value)
    if arn is None:
        return None
    reference = reference_of_package(sagemaker.describe_model_package(ModelPackageName=arn))
    bucket, key = split_s3_uri(reference.profile_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise ReferenceProfileError(f"{reference.profile_uri} (the reference profile of {arn}) does not exist") \
            from None
    return reference, parse_profile(body, reference.profile_uri)


def discover_cameras(cloudwatch: Any, environment: str) -> list[str]:
    """Cameras with a signal series in this environment (ListMetrics: metrics with data in the past two weeks), the
    catch-all ``UNKNOWN_CAMERA`` included."""
    cameras = set()
    for page in cloudwatch.get_paginator("list_metrics").paginate(
            Namespace=SIGNAL_METRICS_NAMESPACE, MetricName=SIGNAL_METRICS[CAMERA_PROBE_SIGNAL],
            Dimensions=[{"Name": ENVIRONMENT_DIMENSION, "Value": environment}]):
        for metric in page.get("Metrics", []):
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if set(dims) == {ENVIRONMENT_DIMENSION, CAMERA_DIMENSION}:
                cameras.add(dims[CAMERA_DIMENSION])
    return sorted(cameras)


def judged_cameras(configured: Iterable[str], discovered: Iterable[str]) -> list[str]:
    """The cameras a run judges: every configured one, and ``UNKNOWN_CAMERA`` when it has a series. A discovered
    camera that is not configured (a series from before the functions published only configured names) is not
    judged: the queries per run stay bounded by the config (251 per camera)."""
    configured = set(configured) - {UNKNOWN_CAMERA}
    return sorted(configured) + ([UNKNOWN_CAMERA] if UNKNOWN_CAMERA in set(discovered) else [])


def get_metric_data(cloudwatch: Any, queries: list[dict[str, Any]], start: datetime, end: datetime
                    ) -> tuple[list[dict[str, Any]], int]:
    """Every result of ``queries`` (batched by 500, NextToken followed); and how many requests that took."""
    results, requests = [], 0
    for batch in batches(queries):
        token = None
        while True:
            kwargs = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end}
            if token:
                kwargs["NextToken"] = token
            response = cloudwatch.get_metric_data(**kwargs)
            requests += 1
            results.extend(response.get("MetricDataResults", []))
            token = response.get("NextToken")
            if not token:
                break
    return results, requests


def check_retention(start: datetime, now: datetime, period_seconds: int) -> None:
    age = (now - start).total_seconds()
    if period_seconds < metric_period_floor(age):
        raise ValueError(f"data from {start.isoformat()} needs a period of at least {metric_period_floor(age)} s")
    if age > max(METRIC_RETENTION_DAYS.values()) * 86_400:
        raise ValueError(f"{start.isoformat()} is older than CloudWatch keeps metric data "
                         f"({max(METRIC_RETENTION_DAYS.values())} days)")


def judged_signals(profile: Mapping[str, Any]) -> list[str]:
    """The published signals the profile has a distribution of (any camera)."""
    present = {name for signals in (profile.get("cameras") or {}).values() for name in signals}
    return [s for s in SIGNAL_METRICS if s in present]


def run_drift(clients: Mapping[str, Any], settings: DriftSettings, now: datetime) -> DriftRun:
    """Fetch and decide; publishes nothing (see :func:`publish`)."""
    start, end = window_bounds(now, settings.window_seconds)
    try:
        loaded = load_reference(clients["ssm"], clients["sagemaker"], clients["s3"], settings.serving_parameter)
    except ReferenceProfileError as exc:  # no profile, not found, not valid; access and service errors still raise
        return DriftRun(None, start, end, reference_missing=str(exc))
    if loaded is None:
        return DriftRun(None, start, end)
    reference, profile = loaded
    cameras = judged_cameras(settings.cameras, discover_cameras(clients["cloudwatch"], settings.environment))
    signals = judged_signals(profile)
    check_retention(start, now, settings.window_seconds)
    queries, index = window_queries(settings.environment, cameras, signals, settings.window_seconds)
    results, requests = get_metric_data(clients["cloudwatch"], queries, start, end)
    windows = parse_window(results, index)
    verdicts = judge(profile, {camera: windows.get(camera, {}) for camera in cameras}, settings.thresholds,
                     signals=signals, window={"start": start.isoformat(), "end": end.isoformat()})
    return DriftRun(reference, start, end, verdicts, requests, profile)


def publish(cloudwatch: Any, settings: DriftSettings, run: DriftRun) -> int:
    """PutMetricData of the run's verdicts, or of ReferenceMissing (time stamped at the window's end); how many data
    were published. Nothing while no model serves."""
    if run.reference_missing:
        data = reference_missing_data(settings.environment, run.end)
    elif run.reference is None:
        return 0
    else:
        data = drift_metric_data(settings.environment, run.verdicts, run.end, per_signal=settings.per_signal)
    for request in put_requests(data):
        cloudwatch.put_metric_data(**request)
    return len(data)


def signal_series(cloudwatch: Any, environment: str, cameras: Iterable[str], signals: Iterable[str],
                  start: datetime, end: datetime, period_seconds: int) -> dict[str, dict[str, list]]:
    """camera -> signal -> [(period start, mean, frames)]: the time series ``roadseg monitor status --plot`` draws."""
    queries, index = window_queries(environment, list(cameras), list(signals), period_seconds, bins=False)
    results, _ = get_metric_data(cloudwatch, queries, start, end)
    return parse_series(results, index)
