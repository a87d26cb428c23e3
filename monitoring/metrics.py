"""What the drift monitor publishes (PutMetricData), built from its verdicts (pure), and the names the alarms and
the dashboard use (stacks/drift_monitoring.py imports them, so both ends read one definition).

Per environment (dimension ``Environment``): ``DriftedCameras``, how many cameras the run judged drifted (charted),
and ``ReferenceMissing`` (1: the serving package has no usable reference profile, 0: it had one; alarmed). Per
camera (dimensions ``Environment``, ``Camera``; the same values as the signal metrics,
``contracts.signal_metrics``): ``DriftDetected`` (1 drift, 0 no drift; not published for a camera with too few
frames to judge, so its alarm treats missing data as not breaching) and ``DriftedSignals`` (how many signals
drifted). Per camera and signal (``Environment``, ``Camera``, ``Signal``; ``Signal`` is a name of
``contracts.signal_metrics.PUBLISHED_SIGNALS``, a fixed set of 12): ``SignalPsi`` and ``SignalJsDistance``, for the
dashboard and for diagnosis, only with ``per_signal``.

Cardinality (each combination one custom metric; CloudWatch pricing $0.30 per metric-month in the first tier):
2 per environment, 2 per camera, plus 2 x 12 = 24 per camera with ``per_signal``: 10 cameras 22 or 262 metrics ($6.60
or $78.60 a month).
PutMetricData: at most 1000 metrics per request (``contracts.service_limits.MAX_PUT_METRICS``); the datum's size is
far below the 1 MB request limit at that count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from contracts.service_limits import MAX_PUT_METRICS
from contracts.signal_metrics import CAMERA_DIMENSION, ENVIRONMENT_DIMENSION, PUBLISHED_SIGNALS
from monitoring.drift import DRIFT, OK, CameraVerdict

DRIFT_NAMESPACE = "roadseg/drift"
SIGNAL_DIMENSION = "Signal"
DRIFT_DETECTED = "DriftDetected"
DRIFTED_SIGNALS = "DriftedSignals"
DRIFTED_CAMERAS = "DriftedCameras"  # per environment: cameras judged drifted in the run (dashboard)
# Per environment: 1 when the serving package has no usable reference profile (the run judged nothing), 0 when a run
# had one; alarmed (ReferenceMissing), so a package from before the gate wrote profiles is heard once, not as an
# hourly function error.
REFERENCE_MISSING = "ReferenceMissing"
SIGNAL_PSI = "SignalPsi"
SIGNAL_JS = "SignalJsDistance"
ENVIRONMENT_DIMENSIONS: tuple[str, ...] = (ENVIRONMENT_DIMENSION,)
CAMERA_DIMENSIONS: tuple[str, ...] = (ENVIRONMENT_DIMENSION, CAMERA_DIMENSION)
SIGNAL_DIMENSIONS: tuple[str, ...] = (ENVIRONMENT_DIMENSION, CAMERA_DIMENSION, SIGNAL_DIMENSION)
# metric name -> its one dimension set (stacks/metric_catalogue.py lists the same).
DRIFT_METRICS: dict[str, tuple[str, ...]] = {DRIFTED_CAMERAS: ENVIRONMENT_DIMENSIONS,
                                             REFERENCE_MISSING: ENVIRONMENT_DIMENSIONS,
                                             DRIFT_DETECTED: CAMERA_DIMENSIONS, DRIFTED_SIGNALS: CAMERA_DIMENSIONS,
                                             SIGNAL_PSI: SIGNAL_DIMENSIONS, SIGNAL_JS: SIGNAL_DIMENSIONS}


def custom_metrics(cameras: int, per_signal: bool) -> int:
    """Custom metrics the monitor creates for one environment."""
    return 2 + cameras * (2 + (2 * len(PUBLISHED_SIGNALS) if per_signal else 0))


def _datum(name: str, dimensions: dict[str, str], value: float, stamp: datetime) -> dict[str, Any]:
    unit = "Count" if name in (DRIFTED_SIGNALS, DRIFTED_CAMERAS) else "None"
    return {"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Timestamp": stamp, "Value": float(value), "Unit": unit}


def drift_metric_data(environment: str, verdicts: Iterable[CameraVerdict], stamp: datetime, *,
                      per_signal: bool = True) -> list[dict[str, Any]]:
    """The MetricData of one run: ``DriftedCameras`` for the environment, then the judged cameras (``ok`` or
    ``drift``) only."""
    verdicts = list(verdicts)
    environment_dims = {ENVIRONMENT_DIMENSION: environment}
    data = [_datum(DRIFTED_CAMERAS, environment_dims, sum(v.drifted for v in verdicts), stamp),
            _datum(REFERENCE_MISSING, environment_dims, 0.0, stamp)]
    for verdict in verdicts:
        if verdict.status not in (OK, DRIFT):
            continue
        camera = {ENVIRONMENT_DIMENSION: environment, CAMERA_DIMENSION: verdict.camera}
        data.append(_datum(DRIFT_DETECTED, camera, 1.0 if verdict.drifted else 0.0, stamp))
        data.append(_datum(DRIFTED_SIGNALS, camera, len(verdict.drifted_signals), stamp))
        if per_signal:
            for finding in verdict.findings:
                if finding.psi is None or finding.js is None:
                    continue
                dims = {**camera, SIGNAL_DIMENSION: finding.signal}
                data.append(_datum(SIGNAL_PSI, dims, finding.psi, stamp))
                data.append(_datum(SIGNAL_JS, dims, finding.js, stamp))
    return data


def reference_missing_data(environment: str, stamp: datetime) -> list[dict[str, Any]]:
    """The MetricData of a run whose serving package has no usable reference profile."""
    return [_datum(REFERENCE_MISSING, {ENVIRONMENT_DIMENSION: environment}, 1.0, stamp)]


def put_requests(metric_data: Sequence[dict[str, Any]], size: int = MAX_PUT_METRICS) -> Iterator[dict[str, Any]]:
    """PutMetricData requests of at most ``size`` data (the API's limit is 1000 metrics per request)."""
    if not 1 <= size <= MAX_PUT_METRICS:
        raise ValueError(f"batch size {size}: PutMetricData takes 1..{MAX_PUT_METRICS} metrics")
    for start in range(0, len(metric_data), size):
        yield {"Namespace": DRIFT_NAMESPACE, "MetricData": list(metric_data[start:start + size])}
