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
from monitoring.metrics import drift_metric_data, put_requests
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
    cameras: tuple[str, ...] = ()  # judged even when ListMetrics does not list them (yet)
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

    def to_dict(self) -> dict[str, Any]:
        return {"window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
                "reference": None if self.reference is None else {
                    "model_package_arn": self.reference.package_arn,
                    "model_package_version": self.reference.package_version,
                    "profile": self.reference.profile_uri},
                "cameras": [v.to_dict() for v in self.verdicts]}


# Frames of the last minutes are still on their way (the async endpoint, postprocess, EMF extraction from the log):
# a window ends on the last whole hour at least this long before the run.
SETTLE = timedelta(minutes=15)


def window_bounds(now: datetime, window_seconds: int) -> tuple[datetime, datetime]:
    """The last whole window that ended ``SETTLE`` before ``now``: it ends on the hour (so the one-period query has
    one data point and hourly runs tile time), ``window_seconds`` long."""
    end = (now.astimezone(UTC) - SETTLE).replace(minute=0, second=0, microsecond=0)
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
    """Cameras with a signal series in this environment (ListMetrics: metrics with data in the past two weeks),
    without the catch-all ``UNKNOWN_CAMERA``."""
    cameras = set()
    for page in cloudwatch.get_paginator("list_metrics").paginate(
            Namespace=SIGNAL_METRICS_NAMESPACE, MetricName=SIGNAL_METRICS[CAMERA_PROBE_SIGNAL],
            Dimensions=[{"Name": ENVIRONMENT_DIMENSION, "Value": environment}]):
        for metric in page.get("Metrics", []):
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if set(dims) == {ENVIRONMENT_DIMENSION, CAMERA_DIMENSION} and dims[CAMERA_DIMENSION] != UNKNOWN_CAMERA:
                cameras.add(dims[CAMERA_DIMENSION])
    return sorted(cameras)


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
    loaded = load_reference(clients["ssm"], clients["sagemaker"], clients["s3"], settings.serving_parameter)
    if loaded is None:
        return DriftRun(None, start, end)
    reference, profile = loaded
    cameras = sorted(set(discover_cameras(clients["cloudwatch"], settings.environment)) | set(settings.cameras))
    signals = judged_signals(profile)
    check_retention(start, now, settings.window_seconds)
    queries, index = window_queries(settings.environment, cameras, signals, settings.window_seconds)
    results, requests = get_metric_data(clients["cloudwatch"], queries, start, end)
    windows = parse_window(results, index)
    verdicts = judge(profile, {camera: windows.get(camera, {}) for camera in cameras}, settings.thresholds,
                     signals=signals, window={"start": start.isoformat(), "end": end.isoformat()})
    return DriftRun(reference, start, end, verdicts, requests, profile)


def publish(cloudwatch: Any, settings: DriftSettings, run: DriftRun) -> int:
    """PutMetricData of the run's verdicts (time stamped at the window's end); how many data were published."""
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
