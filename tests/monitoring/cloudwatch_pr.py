"""A CloudWatch stand-in for GetMetricData with percentile-rank statistics (moto computes Sum, Average, Minimum,
Maximum and SampleCount only). Everything else (ListMetrics, PutMetricData, ...) goes to the wrapped moto client.

It keeps raw values per metric and period and answers ``SampleCount``, ``Average`` and ``PR(n:m)`` as the
CloudWatch "Statistics definitions" page defines PR: the percentage of data points in (n, m], ``PR(:m)`` all <= m,
``PR(n:)`` all > n. Requests are checked against GetMetricData's limits (at most 500 queries, ids
``[a-z][a-zA-Z0-9_]*`` of at most 255 characters, unique) and botocore's own parameter validation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
from botocore.validate import validate_parameters

from contracts.service_limits import MAX_METRIC_DATA_QUERIES, check_metric_query_ids
from contracts.signal_metrics import CAMERA_DIMENSION, ENVIRONMENT_DIMENSION, SIGNAL_METRICS, SIGNAL_METRICS_NAMESPACE

PR = re.compile(r"^PR\(([0-9.]*):([0-9.]*)\)$")


def percentile_rank(values: np.ndarray, stat: str) -> float:
    match = PR.match(stat)
    if not match:
        raise ValueError(f"not a PR statistic: {stat}")
    low, high = match.groups()
    inside = np.ones(values.shape, dtype=bool)
    if low:
        inside &= values > float(low)
    if high:
        inside &= values <= float(high)
    return 100.0 * float(inside.mean())


class PercentileRankCloudWatch:
    def __init__(self, moto_client: Any) -> None:
        self._client = moto_client
        self._values: dict[tuple, dict[datetime, np.ndarray]] = defaultdict(dict)
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def record(self, environment: str, camera: str, signal: str, period_start: datetime, values: np.ndarray) -> None:
        """The raw values of one (camera, signal) in the period starting at ``period_start``; also one datum in moto
        so that ListMetrics lists the series."""
        dims = ((CAMERA_DIMENSION, camera), (ENVIRONMENT_DIMENSION, environment))
        key = (SIGNAL_METRICS_NAMESPACE, SIGNAL_METRICS[signal], dims)
        self._values[key][period_start] = np.asarray(values, dtype=np.float64)
        self._client.put_metric_data(Namespace=SIGNAL_METRICS_NAMESPACE, MetricData=[{
            "MetricName": SIGNAL_METRICS[signal], "Value": float(values[0]), "Timestamp": period_start,
            "Dimensions": [{"Name": n, "Value": v} for n, v in dims]}])

    def get_metric_data(self, **request: Any) -> dict[str, Any]:
        model = self._client.meta.service_model.operation_model("GetMetricData")
        validate_parameters(request, model.input_shape)
        queries = request["MetricDataQueries"]
        assert len(queries) <= MAX_METRIC_DATA_QUERIES, len(queries)
        assert not check_metric_query_ids(q["Id"] for q in queries)
        self.requests.append(request)
        start, end = request["StartTime"], request["EndTime"]
        results = []
        for query in queries:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
            stamps, values = [], []
            for stamp, raw in sorted(self._values.get((metric["Namespace"], metric["MetricName"], dims), {}).items()):
                if not (start <= stamp < end) or raw.size == 0:
                    continue
                if stat["Stat"] == "SampleCount":
                    value = float(raw.size)
                elif stat["Stat"] == "Average":
                    value = float(raw.mean())
                else:
                    value = percentile_rank(raw, stat["Stat"])
                stamps.append(stamp)
                values.append(value)
            results.append({"Id": query["Id"], "Label": metric["MetricName"], "Timestamps": stamps, "Values": values,
                            "StatusCode": "Complete"})
        return {"MetricDataResults": results, "Messages": []}
