"""monitoring.queries (GetMetricData requests and their parsing), monitoring.reference and monitoring.metrics."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from contracts.service_limits import (
    MAX_PUT_METRICS,
    check_alarm_evaluation,
    check_metric_query_ids,
    metric_period_floor,
)
from contracts.signal_metrics import PUBLISHED_SIGNALS, SIGNAL_METRICS, SIGNAL_METRICS_NAMESPACE
from contracts.signals import SIGNAL_BIN_EDGES
from monitoring import simulate
from monitoring.drift import DRIFT, OK, CameraVerdict, DriftFinding, window_from_values
from monitoring.job import DriftSettings, window_bounds
from monitoring.metrics import (
    DRIFT_DETECTED,
    DRIFT_METRICS,
    DRIFT_NAMESPACE,
    DRIFTED_CAMERAS,
    REFERENCE_MISSING,
    custom_metrics,
    drift_metric_data,
    put_requests,
    reference_missing_data,
)
from monitoring.queries import BIN, batches, bin_statistic, format_bound, parse_series, parse_window, window_queries
from monitoring.reference import (
    REFERENCE_PROFILE_METADATA_KEY,
    ReferenceProfileError,
    parse_profile,
    reference_of_package,
    serving_package,
    split_s3_uri,
)
from segcore.signals import reference_profile

_spec = importlib.util.spec_from_file_location("cloudwatch_pr", Path(__file__).with_name("cloudwatch_pr.py"))
cloudwatch_pr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cloudwatch_pr)

START = datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_bin_statistics_cover_the_line_once() -> None:
    edges = SIGNAL_BIN_EDGES["brightness"]
    stats = [bin_statistic(edges, b) for b in range(len(edges) - 1)]
    assert stats[0] == "PR(:0.05)" and stats[1] == "PR(0.05:0.1)" and stats[-1] == "PR(0.95:)"
    sharp = SIGNAL_BIN_EDGES["sharpness"]
    assert bin_statistic(sharp, len(sharp) - 2) == f"PR({format_bound(sharp[-2])}:)"
    assert "e" not in format_bound(100000.0) and format_bound(100000.0) == "100000"
    assert [bin_statistic((0.0, 0.5, 1.0), b) for b in (0, 1)] == ["PR(:0.5)", "PR(0.5:)"]


def test_one_camera_is_251_queries_with_valid_ids() -> None:
    queries, index = window_queries("roadseg-dev", ["front"], list(PUBLISHED_SIGNALS), 3600)
    bins = sum(len(SIGNAL_BIN_EDGES[s]) - 1 for s in PUBLISHED_SIGNALS)
    assert len(queries) == 2 * len(PUBLISHED_SIGNALS) + bins == 251
    assert check_metric_query_ids(q["Id"] for q in queries) == []
    metric = queries[0]["MetricStat"]["Metric"]
    assert metric["Namespace"] == SIGNAL_METRICS_NAMESPACE and metric["MetricName"] == SIGNAL_METRICS["brightness"]
    assert {d["Name"] for d in metric["Dimensions"]} == {"Environment", "Camera"}
    assert [len(b) for b in batches(queries * 3)] == [500, 253]
    with pytest.raises(ValueError, match="multiple of 60"):
        window_queries("e", ["front"], ["brightness"], 90)
    with pytest.raises(ValueError, match="not published"):
        window_queries("e", ["front"], ["flicker"], 3600)


def test_parsed_windows_equal_local_histograms(monkeypatch) -> None:
    """The PR answers (as CloudWatch defines them) turn back into the histogram the job would compute locally."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    window = simulate.window(np.random.default_rng(2), 0, 3000)
    # Values exactly on every edge, in place of the first frames: PR(n:m) counts them in the bin below (n, m]; the
    # local histogram must too (contracts.signals.BIN_EDGE_CONVENTION).
    for signal, values in window.signals.items():
        edges = np.asarray(SIGNAL_BIN_EDGES[signal])
        values[:len(edges)] = edges
    with mock_aws():
        cw = cloudwatch_pr.PercentileRankCloudWatch(boto3.client("cloudwatch", region_name="us-east-1"))
        half = 1500  # two periods of the window: shares x counts add up
        for signal, values in window.signals.items():
            cw.record("env", "front", signal, START, values[:half])
            cw.record("env", "front", signal, START + timedelta(hours=1), values[half:])
        queries, index = window_queries("env", ["front"], list(PUBLISHED_SIGNALS), 3600)
        results = []
        for batch in batches(queries):
            results += cw.get_metric_data(MetricDataQueries=batch, StartTime=START,
                                          EndTime=START + timedelta(hours=2))["MetricDataResults"]
    parsed = parse_window(results, index)["front"]
    for signal, values in window.signals.items():
        local = window_from_values(signal, values)
        assert parsed[signal].frames == local.frames == 3000
        assert parsed[signal].mean == pytest.approx(local.mean)
        assert sum(parsed[signal].counts) == pytest.approx(3000)
        assert parsed[signal].counts == pytest.approx(local.counts, abs=1e-6), signal  # bin for bin
    series = parse_series(results, index)["front"]["brightness"]
    assert [p[0] for p in series] == [START, START + timedelta(hours=1)] and series[0][2] == half
    assert {k.kind for k in index.values()} >= {BIN}


def test_reference_chain_errors_are_one_line() -> None:
    assert serving_package("none") is None and serving_package(" ") is None
    arn = "arn:aws:sagemaker:us-east-1:1:model-package/g/3"
    assert serving_package(arn) == arn
    with pytest.raises(ReferenceProfileError, match="DriftCheckBaselines.*newer pipeline run"):
        reference_of_package({"ModelPackageArn": "arn:x", "ModelPackageVersion": 2})
    ref = reference_of_package({"ModelPackageArn": "arn:x", "ModelPackageVersion": 2, "DriftCheckBaselines": {
        "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/k/p.json"}}}})
    assert ref.package_version == "2" and split_s3_uri(ref.profile_uri) == ("b", "k/p.json")
    attached = reference_of_package({"ModelPackageArn": "arn:x", "CustomerMetadataProperties": {
        REFERENCE_PROFILE_METADATA_KEY: "s3://b/old/reference-profile.json"}})
    assert attached.profile_uri == "s3://b/old/reference-profile.json"
    with pytest.raises(ReferenceProfileError, match="not an s3://"):
        split_s3_uri("s3://bucket-only")
    with pytest.raises(ReferenceProfileError, match="s3://b/k: the reference profile is not JSON"):
        parse_profile(b"{", "s3://b/k")
    profile = reference_profile(simulate.reference_records(1, 300))
    profile["cameras"]["*"]["brightness"]["edges"] = [0, 1]
    with pytest.raises(ReferenceProfileError, match="s3://b/k: reference profile document: cameras.*brightness.edges"):
        parse_profile(json.dumps(profile), "s3://b/k")


def _verdict(camera: str, drifted: bool) -> CameraVerdict:
    finding = DriftFinding(camera, "brightness", DRIFT if drifted else OK, 1000, psi=0.5 if drifted else 0.01,
                           js=0.3 if drifted else 0.02, reasons=("distance",) if drifted else ())
    return CameraVerdict(camera, DRIFT if drifted else OK, (finding,))


def test_published_metrics_and_their_dimensions() -> None:
    stamp = START
    insufficient = CameraVerdict("side", "insufficient-data", ())
    data = drift_metric_data("roadseg-dev", [_verdict("front", True), _verdict("rear", False), insufficient], stamp)
    by_name: dict[str, list] = {}
    for datum in data:
        by_name.setdefault(datum["MetricName"], []).append(datum)
        assert tuple(d["Name"] for d in datum["Dimensions"]) == DRIFT_METRICS[datum["MetricName"]]
    assert [d["Value"] for d in by_name[DRIFTED_CAMERAS]] == [1.0]
    assert {d["Dimensions"][1]["Value"]: d["Value"] for d in by_name[DRIFT_DETECTED]} == {"front": 1.0, "rear": 0.0}
    assert len(data) == 2 + 2 * (2 + 2)  # DriftedCameras, ReferenceMissing; side is not judged: nothing for it
    assert len(drift_metric_data("e", [_verdict("front", True)], stamp, per_signal=False)) == 4
    requests = list(put_requests(data * 270))  # 2,700 data
    assert [len(r["MetricData"]) for r in requests] == [MAX_PUT_METRICS, MAX_PUT_METRICS, 700]
    assert all(r["Namespace"] == DRIFT_NAMESPACE for r in requests)
    assert custom_metrics(10, True) == 262 and custom_metrics(10, False) == 22
    (missing,) = reference_missing_data("e", stamp)
    assert (missing["MetricName"], missing["Value"], missing["Dimensions"]) == (
        REFERENCE_MISSING, 1.0, [{"Name": "Environment", "Value": "e"}])
    assert {d["MetricName"]: d["Value"] for d in data}[REFERENCE_MISSING] == 0.0  # a judged run clears the alarm


def test_limits_and_window_arithmetic() -> None:
    assert metric_period_floor(3600) == 1 and metric_period_floor(4 * 3600) == 60
    assert metric_period_floor(20 * 86400) == 300 and metric_period_floor(100 * 86400) == 3600
    assert check_alarm_evaluation(3600, 168) == [] and check_alarm_evaluation(86400, 8)
    assert check_alarm_evaluation(300, 289) and not check_alarm_evaluation(300, 288)
    start, end = window_bounds(datetime(2026, 12, 8, 10, 59, 59, tzinfo=UTC), 3 * 3600)
    assert (start, end) == (datetime(2026, 12, 8, 7, tzinfo=UTC), datetime(2026, 12, 8, 10, tzinfo=UTC))
    # 10:10 is within the settling quarter hour after 10:00: the window ending at 09:00 is the last complete one
    assert window_bounds(datetime(2026, 12, 8, 10, 10, tzinfo=UTC), 3600)[1] == datetime(2026, 12, 8, 9, tzinfo=UTC)
    # daily windows are UTC calendar days, whatever hour the schedule fires at (and 00:10 is still settling)
    day = (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))
    assert window_bounds(datetime(2026, 12, 8, 17, 42, tzinfo=UTC), 86400) == day
    assert window_bounds(datetime(2026, 12, 8, 0, 16, tzinfo=UTC), 86400) == day
    assert window_bounds(datetime(2026, 12, 8, 0, 10, tzinfo=UTC), 86400) == (day[0] - timedelta(days=1), day[0])
    assert window_bounds(datetime(2026, 12, 8, 9, 0, tzinfo=UTC), 2 * 86400) == (day[1] - timedelta(days=2), day[1])
    assert window_bounds(datetime(2026, 12, 8, 9, 0, tzinfo=UTC), 6 * 3600)[1] == datetime(2026, 12, 8, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="whole hours"):
        DriftSettings("e", "/p", window_seconds=1800)
    settings = DriftSettings("e", "/p", window_seconds=7200, cameras=("a", "b"), per_signal=False)
    assert DriftSettings.from_env(settings.to_env()) == settings
