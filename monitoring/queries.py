"""GetMetricData queries that read a window's per-camera signal distributions back from CloudWatch, and their
parsing (pure: builds request dicts, reads response dicts; the caller sends them).

The postprocess function publishes every frame's signals as raw values (EMF; ``contracts.signal_metrics``), so
CloudWatch can answer percentile-rank statistics on them: ``PR(n:m)`` is the percentage of the period's data points
in (n, m] (CloudWatch "Statistics definitions": exclusive below, inclusive above; ``PR(:m)`` all <= m, ``PR(n:)``
all > n). One PR query per reference bin turns into the window's histogram over the signal's fixed edges
(``contracts.signals.SIGNAL_BIN_EDGES``): the first bin open below and the last open above, as
``segcore.signals.histogram`` clips. Values exactly on an inner edge fall in the lower bin here and in the upper bin
of ``segcore.signals.histogram``: immaterial for continuous signals; ``vru_present`` (0/1, edges 0, 0.5, 1) has no
value on an inner edge. CloudWatch's percentile statistics are approximations (it keeps values in a compressed
distribution), fine for 20-bin histograms.

Per (camera, signal) the window also needs ``SampleCount`` (PR gives shares, PSI needs no counts, but the minimum
number of frames and combining several periods do) and ``Average`` (the NannyML band). A camera with 12 published
signals needs 12 x 2 + 227 bin queries = 251 queries; requests hold at most ``MAX_METRIC_DATA_QUERIES`` (500),
so :func:`batches` splits them; ids are ``q<number>`` (``contracts.service_limits.METRIC_QUERY_ID``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.service_limits import MAX_METRIC_DATA_QUERIES, check_metric_query_ids
from contracts.signal_metrics import (
    CAMERA_DIMENSION,
    ENVIRONMENT_DIMENSION,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
)
from contracts.signals import SIGNAL_BIN_EDGES
from monitoring.drift import WindowDistribution

BIN, COUNT, MEAN = "bin", "count", "mean"


@dataclass(frozen=True)
class QueryKey:
    """What one query id answers: a bin's share, the sample count or the mean of (camera, signal)."""

    camera: str
    signal: str
    kind: str  # BIN | COUNT | MEAN
    bin: int = -1


def format_bound(value: float) -> str:
    """A PR bound without an exponent (CloudWatch reads plain decimals), trailing zeros dropped."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def bin_statistic(edges: Sequence[float], index: int) -> str:
    """The PR statistic of bin ``index`` of ``edges``: the first bin takes everything up to its upper edge, the last
    everything above its lower edge (the histogram clips out-of-range values into them)."""
    bins = len(edges) - 1
    if not 0 <= index < bins:
        raise ValueError(f"bin {index} of {bins}")
    if bins == 1:
        return "SampleCount"  # a single bin holds every value (no such signal today)
    if index == 0:
        return f"PR(:{format_bound(edges[1])})"
    if index == bins - 1:
        return f"PR({format_bound(edges[index])}:)"
    return f"PR({format_bound(edges[index])}:{format_bound(edges[index + 1])})"


def _metric(environment: str, camera: str, signal: str) -> dict[str, Any]:
    return {"Namespace": SIGNAL_METRICS_NAMESPACE, "MetricName": SIGNAL_METRICS[signal],
            "Dimensions": [{"Name": ENVIRONMENT_DIMENSION, "Value": environment},
                           {"Name": CAMERA_DIMENSION, "Value": camera}]}


def window_queries(environment: str, cameras: Iterable[str], signals: Iterable[str], period_seconds: int, *,
                   bins: bool = True) -> tuple[list[dict[str, Any]], dict[str, QueryKey]]:
    """The MetricDataQuery list for every (camera, signal) and what each id answers. ``bins=False``: counts and
    means only (the time series of ``roadseg monitor status --plot``)."""
    if period_seconds < 60 or period_seconds % 60:
        raise ValueError(f"period {period_seconds} s: use a multiple of 60 s (GetMetricData beyond 3 hours)")
    unknown = [s for s in signals if s not in SIGNAL_METRICS]
    if unknown:
        raise ValueError(f"signals {unknown} are not published as metrics (contracts.signal_metrics.SIGNAL_METRICS)")
    queries: list[dict[str, Any]] = []
    index: dict[str, QueryKey] = {}

    def add(key: QueryKey, stat: str) -> None:
        query_id = f"q{len(queries)}"
        index[query_id] = key
        queries.append({"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": _metric(environment, key.camera, key.signal), "Period": period_seconds, "Stat": stat}})

    for camera in cameras:
        for signal in signals:
            add(QueryKey(camera, signal, COUNT), "SampleCount")
            add(QueryKey(camera, signal, MEAN), "Average")
            if bins:
                edges = SIGNAL_BIN_EDGES[signal]
                for b in range(len(edges) - 1):
                    add(QueryKey(camera, signal, BIN, b), bin_statistic(edges, b))
    problems = check_metric_query_ids(index)
    if problems:  # cannot happen with q<number>; kept so a change of the id scheme cannot slip through
        raise ValueError("; ".join(problems))
    return queries, index


def batches(queries: Sequence[dict[str, Any]], size: int = MAX_METRIC_DATA_QUERIES) -> Iterator[list[dict[str, Any]]]:
    """Requests of at most ``size`` queries. The queries of one (camera, signal) may span two requests: every query
    is self-contained (no metric math), so parsing joins the answers by id."""
    if not 1 <= size <= MAX_METRIC_DATA_QUERIES:
        raise ValueError(f"batch size {size}: GetMetricData takes 1..{MAX_METRIC_DATA_QUERIES} queries")
    for start in range(0, len(queries), size):
        yield list(queries[start:start + size])


@dataclass
class _Series:
    counts: dict[datetime, float]
    means: dict[datetime, float]
    bins: dict[int, dict[datetime, float]]


def _collect(results: Iterable[Mapping[str, Any]], index: Mapping[str, QueryKey]) -> dict[tuple[str, str], _Series]:
    series: dict[tuple[str, str], _Series] = {}
    for result in results:
        key = index.get(result.get("Id", ""))
        if key is None:
            continue
        entry = series.setdefault((key.camera, key.signal), _Series({}, {}, {}))
        values = dict(zip(result.get("Timestamps") or [], result.get("Values") or [], strict=False))
        if key.kind == COUNT:
            entry.counts.update(values)
        elif key.kind == MEAN:
            entry.means.update(values)
        else:
            entry.bins.setdefault(key.bin, {}).update(values)
    return series


def parse_window(results: Iterable[Mapping[str, Any]], index: Mapping[str, QueryKey]
                 ) -> dict[str, dict[str, WindowDistribution]]:
    """camera -> signal -> the window's distribution, from the ``MetricDataResults`` of every request. Several
    periods in the window add up: each period's PR shares times its sample count. A period with data but no
    answer for a bin counts 0 there (CloudWatch omits nothing it computed; a missing bin is an empty one)."""
    out: dict[str, dict[str, WindowDistribution]] = {}
    for (camera, signal), entry in _collect(results, index).items():
        bins = len(SIGNAL_BIN_EDGES[signal]) - 1
        counts = [0.0] * bins
        frames = 0.0
        weighted_mean = 0.0
        for stamp, samples in entry.counts.items():
            if not samples or samples <= 0:
                continue
            frames += samples
            for b in range(bins):
                counts[b] += (entry.bins.get(b, {}).get(stamp, 0.0) or 0.0) / 100.0 * samples
            weighted_mean += (entry.means.get(stamp) or 0.0) * samples
        out.setdefault(camera, {})[signal] = WindowDistribution(
            signal, tuple(counts), frames, weighted_mean / frames if frames else None)
    return out


def parse_series(results: Iterable[Mapping[str, Any]], index: Mapping[str, QueryKey]
                 ) -> dict[str, dict[str, list[tuple[datetime, float, float]]]]:
    """camera -> signal -> [(period start, mean, frames)] in time order (the plot's points)."""
    out: dict[str, dict[str, list[tuple[datetime, float, float]]]] = {}
    for (camera, signal), entry in _collect(results, index).items():
        points = [(stamp, entry.means[stamp], entry.counts.get(stamp, 0.0)) for stamp in sorted(entry.means)]
        out.setdefault(camera, {})[signal] = points
    return out
