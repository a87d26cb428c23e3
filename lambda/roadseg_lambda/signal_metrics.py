"""The per-frame signals and per-camera frame counts as CloudWatch embedded metric format (EMF) documents.

Names, namespace and dimensions come from ``contracts.signal_metrics``. These are pure functions (the document for
one frame); the handlers print the line (``emit``) and CloudWatch Logs turns it into metrics.

Not Powertools ``Metrics``: its documents carry the function's ``service`` dimension (POWERTOOLS_SERVICE_NAME) on
every metric and share one dimension set per flush, while a signal series has exactly {Environment, Camera}, and one
invocation may complete frames of several cameras. One document per frame also keeps every frame's value a separate
data point (the drift monitor reads distributions: percentile ranks need the raw values).
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Collection, Mapping
from typing import Any

from contracts.signal_metrics import (
    COUNT_UNIT,
    FRAMES_QUARANTINED_METRIC,
    FRAMES_RECEIVED_METRIC,
    QUARANTINE_DIMENSIONS,
    SIGNAL_DIMENSIONS,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
    SIGNAL_UNIT,
    camera_value,
    reason_value,
)


def _document(namespace: str, dimensions: Mapping[str, str], metrics: list[tuple[str, str, float]],
              timestamp_ms: int) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [list(dimensions)],
                "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in metrics],
            }],
        },
        **dimensions,
        **{name: value for name, _, value in metrics},
    }


def signal_document(signals: Mapping[str, Any], *, environment: str, camera: str | None,
                    timestamp_ms: int, cameras: Collection[str] = ()) -> dict[str, Any] | None:
    """One frame's published signals (``SIGNAL_METRICS``) with the dimensions {Environment, Camera}; a signal that is
    missing, null or not a finite number is left out (an input signal of a frame ingested before signals existed).
    None when no signal is left. ``cameras``: the configured names (METRICS_CAMERAS); any other camera is published as
    ``UNKNOWN_CAMERA``."""
    metrics = []
    for signal, metric in SIGNAL_METRICS.items():
        value = signals.get(signal)
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics.append((metric, SIGNAL_UNIT, float(value)))
    if not metrics:
        return None
    dimensions = dict(zip(SIGNAL_DIMENSIONS, (environment, camera_value(camera, cameras)), strict=True))
    return _document(SIGNAL_METRICS_NAMESPACE, dimensions, metrics, timestamp_ms)


def frame_count_documents(*, environment: str, camera: str | None, quarantine_code: str | None,
                         timestamp_ms: int, cameras: Collection[str] = ()) -> list[dict[str, Any]]:
    """The ingest's per-camera counts for one frame it decided about: FramesReceived {Environment, Camera} and, when
    the frame was quarantined, FramesQuarantinedByCamera {Environment, Camera, Reason}."""
    dimensions = dict(zip(SIGNAL_DIMENSIONS, (environment, camera_value(camera, cameras)), strict=True))
    documents = [_document(SIGNAL_METRICS_NAMESPACE, dimensions, [(FRAMES_RECEIVED_METRIC, COUNT_UNIT, 1.0)],
                           timestamp_ms)]
    if quarantine_code is not None:
        reason = dict(zip(QUARANTINE_DIMENSIONS, (*dimensions.values(), reason_value(quarantine_code)), strict=True))
        documents.append(_document(SIGNAL_METRICS_NAMESPACE, reason, [(FRAMES_QUARANTINED_METRIC, COUNT_UNIT, 1.0)],
                                   timestamp_ms))
    return documents


def to_line(document: Mapping[str, Any]) -> str:
    """The document as the one log line CloudWatch Logs parses (compact JSON, no NaN)."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False)


_STDOUT = threading.Lock()


def emit(document: Mapping[str, Any] | None) -> None:
    """Write the document to stdout, where the Lambda runtime sends it to CloudWatch Logs (as Powertools does), as
    one write: the ingest's records run in threads, and two frames' lines must not interleave."""
    if document is not None:
        line = to_line(document) + "\n"
        with _STDOUT:
            sys.stdout.write(line)
            sys.stdout.flush()
