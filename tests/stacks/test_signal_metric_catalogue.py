"""The per-frame signal metrics in the metric catalogue: an alarm, anomaly-detection alarm or dashboard row on a signal
series passes the integration contract only with the dimensions the functions publish ({Environment, Camera}; the
quarantine counts {Environment, Camera, Reason}), and the catalogue says what the EMF documents say. No synthesis:
the rule runs over hand-built templates."""

from __future__ import annotations

import json

import pytest
from roadseg_lambda.signal_metrics import frame_count_documents, signal_document

from contracts.signal_metrics import (
    FRAMES_QUARANTINED_METRIC,
    FRAMES_RECEIVED_METRIC,
    PUBLISHED_SIGNALS,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
)
from stacks.checks.service_contracts import RULES, Assembly, Context
from stacks.metric_catalogue import CATALOGUE, metric, spec

RULE = "metric-published-with-these-dimensions"


def _violations(resources: dict[str, dict]) -> list:
    assembly = Assembly({"Monitoring": {"Resources": resources}})
    return list(RULES[RULE](assembly, Context(reserved_concurrency_declared=False, account_pinned=False)))


def _alarm(name: str, dimensions: tuple[str, ...]) -> dict:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "Namespace": SIGNAL_METRICS_NAMESPACE, "MetricName": name, "Statistic": "Average", "Period": 3600,
        "EvaluationPeriods": 1, "Threshold": 0.1, "ComparisonOperator": "GreaterThanThreshold",
        "Dimensions": [{"Name": d, "Value": "x"} for d in dimensions]}}


def _anomaly_alarm(name: str, dimensions: tuple[str, ...]) -> dict:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "EvaluationPeriods": 3, "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold",
        "ThresholdMetricId": "band", "Metrics": [
            {"Id": "m1", "ReturnData": True, "MetricStat": {"Stat": "Average", "Period": 3600, "Metric": {
                "Namespace": SIGNAL_METRICS_NAMESPACE, "MetricName": name,
                "Dimensions": [{"Name": d, "Value": "x"} for d in dimensions]}}},
            {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(m1, 3)"}]}}


def test_every_published_series_is_in_the_catalogue_as_the_functions_print_it() -> None:
    frame = signal_document(dict.fromkeys(PUBLISHED_SIGNALS, 0.5), environment="e", camera="front", timestamp_ms=0)
    documents = [frame, *frame_count_documents(environment="e", camera="front", quarantine_code="empty",
                                               timestamp_ms=0)]
    printed = 0
    for document in documents:
        directive = document["_aws"]["CloudWatchMetrics"][0]
        for entry in directive["Metrics"]:
            spec(directive["Namespace"], entry["Name"]).check_dimensions(frozenset(directive["Dimensions"][0]))
            printed += 1
    assert printed == len(SIGNAL_METRICS) + 2
    in_catalogue = {name for namespace, name in CATALOGUE if namespace == SIGNAL_METRICS_NAMESPACE}
    assert {*SIGNAL_METRICS.values(), FRAMES_RECEIVED_METRIC, FRAMES_QUARANTINED_METRIC} <= in_catalogue


@pytest.mark.parametrize("signal", ["brightness", "frac_sky", "drivable_fraction"])
def test_alarms_on_a_camera_series_pass_with_environment_and_camera(signal: str) -> None:
    name = SIGNAL_METRICS[signal]
    assert _violations({"Plain": _alarm(name, ("Environment", "Camera")),
                        "Anomaly": _anomaly_alarm(name, ("Environment", "Camera")),
                        "Quarantine": _alarm(FRAMES_QUARANTINED_METRIC, ("Environment", "Camera", "Reason")),
                        "Received": _alarm(FRAMES_RECEIVED_METRIC, ("Environment", "Camera"))}) == []


@pytest.mark.parametrize(("name", "dimensions"), [
    ("FracSky", ("Environment", "Camera", "service")),  # Powertools' dimension: not on the signal series
    ("FracSky", ("Camera",)),
    ("Brightness", ("Environment", "Camera", "Vehicle")),
    (FRAMES_QUARANTINED_METRIC, ("Environment", "Camera")),
    ("Dhash", ("Environment", "Camera")),  # a string signal is never a metric
])
def test_alarms_on_other_dimension_sets_never_see_a_datapoint(name: str, dimensions: tuple[str, ...]) -> None:
    for alarm in (_alarm(name, dimensions), _anomaly_alarm(name, dimensions)):
        (violation,) = _violations({"Broken": alarm})
        assert name in str(violation)


def test_dashboard_rows_on_signal_series_are_checked() -> None:
    def dashboard(row: list) -> dict:
        widget = {"type": "metric", "properties": {"metrics": [row]}}
        body = json.dumps({"widgets": [widget]})
        return {"Type": "AWS::CloudWatch::Dashboard", "Properties": {"DashboardBody": body}}

    good = [SIGNAL_METRICS_NAMESPACE, "Brightness", "Environment", "roadseg-dev", "Camera", "front"]
    assert _violations({"Dashboard": dashboard(good)}) == []
    (violation,) = _violations({"Dashboard": dashboard([*good, "Vehicle", "car-7"])})
    assert "Brightness" in str(violation)


def test_the_stacks_build_signal_metrics_only_with_the_published_dimensions() -> None:
    metric(SIGNAL_METRICS_NAMESPACE, "FracRoad", {"Environment": "roadseg-dev", "Camera": "front"},
           statistic="Average")
    with pytest.raises(ValueError, match="not published with the dimensions"):
        metric(SIGNAL_METRICS_NAMESPACE, "FracRoad", {"Camera": "front"}, statistic="Average")
