"""The report of one simulation (``--json``: :func:`summarize`'s dict with stable keys) and its text tables:
latencies from the cumulative curves, the oldest-request alarm, cost, ingest concurrency, S3 request rates per
prefix, and the notes that say which limit was hit. The assumptions behind the figures are in
``roadseg/capacity/model.py``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from contracts.aws_docs import ASYNC_SCALING_DOC as SCALING_DOC
from contracts.layout import INFERENCE
from roadseg.capacity.model import Simulation

TARGET_TRACKING_DOC = ("https://docs.aws.amazon.com/autoscaling/application/userguide/"
                       "target-tracking-scaling-policy-overview.html")
S3_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html"

S3_PUT_LIMIT = 3500  # PUT/COPY/POST/DELETE per second per partitioned prefix
S3_GET_LIMIT = 5500  # GET/HEAD per second per partitioned prefix
LATENCY_SAMPLES = 100_000
# The async-oldest-request alarm: Maximum of ApproximateAgeOfOldestRequest over 5 minutes, 3 periods.
OLDEST_ALARM_PERIOD_SECONDS = 300
OLDEST_ALARM_PERIODS = 3


def _padded(per_step: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(per_step)])


def _inverse(cumulative: np.ndarray, per_step: np.ndarray, x: np.ndarray, dt: float) -> np.ndarray:
    """Time at which a piecewise-linear cumulative curve (value at each step end) reaches ``x`` (> 0)."""
    idx = np.clip(np.searchsorted(cumulative, x, side="left"), 1, per_step.size)
    inside = np.divide(x - cumulative[idx - 1], per_step[idx - 1], out=np.zeros_like(x),
                       where=per_step[idx - 1] > 0)
    return (idx - 1 + np.clip(inside, 0.0, 1.0)) * dt


def _completion_times(sim: Simulation, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For frames x (cumulative index, FIFO): completion time and whether they were served (not expired).
    Within a step, expired frames leave first, then served ones."""
    dt = sim.step_seconds
    out = _padded(sim.served + sim.expired)
    idx = np.clip(np.searchsorted(out, x, side="left"), 1, sim.steps)
    position = x - out[idx - 1]
    expired = sim.expired[idx - 1]
    served = position > expired + 1e-12
    done_share = np.divide(position - expired, sim.served[idx - 1], out=np.zeros_like(x),
                           where=sim.served[idx - 1] > 0)
    return (idx - 1 + np.clip(done_share, 0.0, 1.0)) * dt, served


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "max": round(float(values.max()), 2)}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _s3_rows(sim: Simulation) -> list[dict[str, Any]]:
    dt, ing = sim.step_seconds, sim.ingest
    up, g, s, e = sim.uploaded / dt, sim.ingested / dt, sim.served / dt, sim.expired / dt
    overlay, restore = int(ing.write_overlay), int(ing.restore_original_size)
    rows = [
        (INFERENCE.incoming, "PUT", up, "PutObject by the vehicles"),
        (INFERENCE.incoming, "GET", g, "GetObject by ingest"),
        (INFERENCE.async_input, "PUT", 2 * g, "PutObject + PutObjectTagging by ingest"),
        (INFERENCE.async_input, "GET", g + (2 + overlay) * s,
         "HeadObject by ingest, GetObject by the endpoint, HeadObject by postprocess"
         + (", GetObject for the overlay" if overlay else "")),
        (INFERENCE.async_output, "PUT", s, "PutObject of the mask by the endpoint"),
        (INFERENCE.async_output, "GET", s, "GetObject by postprocess"),
        (INFERENCE.results, "PUT", (1 + overlay + restore) * s,
         "PutObject of the result JSON" + (" + overlay" if overlay else "") + (" + mask" if restore else "")),
        (INFERENCE.failures, "PUT", e, "failure record per expired request"),
    ]
    table = []
    for prefix, kind, rate, requests in rows:
        limit = S3_PUT_LIMIT if kind == "PUT" else S3_GET_LIMIT
        peak = float(rate.max()) if rate.size else 0.0
        table.append({"prefix": prefix, "requests": kind, "made_by": requests,
                      "peak_per_second": round(peak, 1), "limit_per_second": limit,
                      "share_of_limit": round(peak / limit, 3), "within_limit": peak <= limit})
    return table


def _oldest_request_ages(sim: Simulation) -> np.ndarray:
    """Age of the oldest request in the endpoint queue at each step end (0 when empty)."""
    dt = sim.step_seconds
    cum_in = _padded(sim.ingested)
    head = _padded(sim.served + sim.expired)[1:]
    waiting = sim.backlog > 0
    ages = np.zeros(sim.steps)
    if waiting.any():
        entered = _inverse(cum_in, sim.ingested, head[waiting] + 1e-9, dt)
        ages[waiting] = (np.flatnonzero(waiting) + 1) * dt - entered
    return np.maximum(ages, 0.0)


def summarize(sim: Simulation) -> dict[str, Any]:
    """The report: a dict with stable keys (``--json``)."""
    dt, fleet, ingest, traffic = sim.step_seconds, sim.fleet, sim.ingest, sim.traffic
    total_up = float(sim.uploaded.sum())
    total_served, total_expired = float(sim.served.sum()), float(sim.expired.sum())
    unfinished = max(0.0, total_up - total_served - total_expired)
    up_cum, in_cum = _padded(sim.uploaded), _padded(sim.ingested)
    left = total_served + total_expired
    fixed_e2e = ingest.seconds_per_batch + fleet.service_seconds

    latency, endpoint_latency, first_result = np.empty(0), np.empty(0), None
    if left > 0:
        samples = int(min(LATENCY_SAMPLES, max(1, math.ceil(left))))
        x = (np.arange(samples) + 0.5) / samples * left
        done, served = _completion_times(sim, x)
        uploaded_at = _inverse(up_cum, sim.uploaded, x, dt)
        entered_at = _inverse(in_cum, sim.ingested, x, dt)
        latency = (done - uploaded_at)[served] + fixed_e2e
        endpoint_latency = (done - entered_at)[served] + fleet.service_seconds
        one = np.array([min(1.0, total_up)])
        done_1, served_1 = _completion_times(sim, one)
        if left >= one[0] and served_1[0]:
            first_result = float(done_1[0] - _inverse(up_cum, sim.uploaded, one, dt)[0]) + fixed_e2e

    ages = _oldest_request_ages(sim)
    per_period = int(OLDEST_ALARM_PERIOD_SECONDS / dt)
    periods = ages[: ages.size // per_period * per_period].reshape(-1, per_period).max(axis=1) \
        if ages.size >= per_period else ages[:0]
    over = periods > fleet.invocation_timeout_seconds
    runs = np.convolve(over.astype(int), np.ones(OLDEST_ALARM_PERIODS, dtype=int), mode="valid") \
        if over.size >= OLDEST_ALARM_PERIODS else np.zeros(0)

    instance_hours = float(sim.billed.sum()) * dt / 3600.0
    cost = instance_hours * fleet.usd_per_instance_hour
    peak_rate = traffic.peak_rate
    fleet_fps = fleet.max_capacity * fleet.frames_per_second
    needed = math.ceil(peak_rate / fleet.frames_per_second - 1e-9)
    ingest_needed = ingest.concurrency_for(peak_rate)
    s3 = _s3_rows(sim)
    report: dict[str, Any] = {
        "environment": None,
        "traffic": {"kind": traffic.kind, "description": traffic.description, "hours": round(sim.seconds / 3600, 4),
                    "frames": round(total_up), "peak_frames_per_second": _round(peak_rate),
                    "mean_frames_per_second": _round(total_up / sim.seconds)},
        "model": {"instance_type": fleet.instance_type, "frames_per_second_per_instance": fleet.frames_per_second,
                  "frames_per_second_source": fleet.frames_per_second_source,
                  "serving_resolution": fleet.serving_resolution,
                  "service_seconds": _round(fleet.service_seconds), "startup_seconds": fleet.startup_seconds,
                  "startup_source": "estimate (--startup-seconds)", "step_seconds": dt,
                  "request_ttl_seconds": fleet.request_ttl_seconds,
                  "usd_per_instance_hour": fleet.usd_per_instance_hour,
                  "sources": {"async_scaling": SCALING_DOC, "target_tracking": TARGET_TRACKING_DOC,
                              "s3_limits": S3_DOC}},
        "scaling": {"min_capacity": fleet.min_capacity, "max_capacity": fleet.max_capacity,
                    "target_backlog_per_instance": fleet.target_backlog_per_instance,
                    "scale_out_cooldown_seconds": fleet.scale_out_cooldown_seconds,
                    "scale_in_cooldown_seconds": fleet.scale_in_cooldown_seconds,
                    "max_concurrent_invocations_per_instance": fleet.max_concurrent_invocations_per_instance,
                    "fleet_frames_per_second": _round(fleet_fps),
                    "instances_for_peak_rate": needed, "scaling_actions": len(sim.events)},
        "results": {
            "time_to_first_result_seconds": _round(first_result, 1),
            "latency_seconds": _percentiles(latency),
            "endpoint_latency_seconds": _percentiles(endpoint_latency),
            "frames_completed": round(total_served), "frames_expired": round(total_expired),
            "frames_unfinished": round(unfinished),
            "peak_instances": int(sim.billed.max()), "peak_instances_in_service": int(sim.in_service.max()),
            "peak_backlog_frames": round(float(sim.backlog.max())),
            "oldest_request_max_seconds": _round(float(ages.max()), 1),
            "oldest_request_alarm": bool(runs.size and runs.max() >= OLDEST_ALARM_PERIODS),
            "instance_hours": _round(instance_hours, 2), "cost_usd": _round(cost, 2),
            "usd_per_1000_frames": _round(cost / total_served * 1000, 4) if total_served else None,
        },
        "ingest": {"batch_size": ingest.batch_size, "seconds_per_batch": ingest.seconds_per_batch,
                   "concurrency_needed_at_peak": _round(ingest_needed, 1),
                   "max_concurrency": ingest.max_concurrency,
                   "frames_per_second_at_max": _round(ingest.frames_per_second),
                   "limits_throughput": ingest_needed > ingest.max_concurrency,
                   "peak_queue_frames": round(float(sim.sqs.max()))},
        "s3": s3,
    }
    report["notes"] = _notes(report)
    return report


def _notes(report: dict[str, Any]) -> list[str]:
    notes = []
    res, sc, ing, tr, model = (report["results"], report["scaling"], report["ingest"], report["traffic"],
                               report["model"])
    if tr["kind"] != "burst" and sc["fleet_frames_per_second"] < tr["peak_frames_per_second"]:
        notes.append(f"max_capacity {sc['max_capacity']} x {model['frames_per_second_per_instance']:g} frames/s = "
                     f"{sc['fleet_frames_per_second']:g} frames/s is below the peak {tr['peak_frames_per_second']:g} "
                     f"frames/s: keeping up needs max_capacity >= {sc['instances_for_peak_rate']} (and the account's "
                     f"endpoint-instance quota for {model['instance_type']})")
    if ing["limits_throughput"]:
        notes.append(f"the ingest path needs {ing['concurrency_needed_at_peak']:g} concurrent functions at the peak, "
                     f"preprocessing.ingest_max_concurrency is {ing['max_concurrency']}: ingest tops out at "
                     f"{ing['frames_per_second_at_max']:g} frames/s and frames wait in the SQS queue "
                     f"(peak {ing['peak_queue_frames']:,})")
    if res["frames_expired"]:
        notes.append(f"{res['frames_expired']:,} frames expired in the endpoint queue after the "
                     f"{model['request_ttl_seconds']:g} s request TTL (failure records, no result)")
    if res["frames_unfinished"]:
        notes.append(f"{res['frames_unfinished']:,} frames were still queued at the end of the horizon; latencies "
                     "are over completed frames only")
    if res["oldest_request_alarm"]:
        notes.append(f"requests waited longer than invocation_timeout_seconds: the async-oldest-request-age alarm "
                     f"fires (oldest {res['oldest_request_max_seconds']:g} s)")
    for row in report["s3"]:
        if not row["within_limit"]:
            notes.append(f"S3 {row['prefix']} {row['requests']} peaks at {row['peak_per_second']:,} requests/s, above "
                         f"the {row['limit_per_second']:,}/s of one partitioned prefix: expect 503 Slow Down until S3 "
                         "partitions it further")
    return notes


def report_tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of the text report."""
    res, sc, ing, tr, model = (report["results"], report["scaling"], report["ingest"], report["traffic"],
                               report["model"])

    def seconds(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,.1f} s" if value < 120 else f"{value:,.0f} s ({value / 60:,.1f} min)"

    def spread(p: dict[str, float | None]) -> str:
        return " / ".join(seconds(p[k]) for k in ("p50", "p95", "max"))

    summary = [
        ["traffic", f"{tr['description']}, {tr['hours']:g} h, {tr['frames']:,} frames"],
        ["instance type", f"{model['instance_type']}, {model['frames_per_second_per_instance']:g} frames/s each, "
                          f"{model['frames_per_second_source']}"
                          + (f", for {model['serving_resolution']} frames" if model["serving_resolution"] else "")
                          + f"; start-up {model['startup_seconds']:g} s (estimate)"],
        ["scaling", f"{sc['min_capacity']}-{sc['max_capacity']} instances, target backlog "
                    f"{sc['target_backlog_per_instance']:g}/instance, cooldowns out "
                    f"{sc['scale_out_cooldown_seconds']:g} s / in {sc['scale_in_cooldown_seconds']:g} s"],
        ["fleet capacity", f"{sc['fleet_frames_per_second']:g} frames/s at max_capacity; " + (
            f"the burst takes {tr['frames'] / sc['fleet_frames_per_second'] / 60:,.1f} min to process at that rate"
            if tr["kind"] == "burst" else
            f"the peak {tr['peak_frames_per_second']:g} frames/s needs {sc['instances_for_peak_rate']} instances")],
        ["time to first result", seconds(res["time_to_first_result_seconds"])],
        ["latency p50 / p95 / max", spread(res["latency_seconds"]) + " (upload to result)"],
        ["endpoint latency p50 / p95 / max", spread(res["endpoint_latency_seconds"]) + " (queue wait + service)"],
        ["frames completed / expired / unfinished",
         f"{res['frames_completed']:,} / {res['frames_expired']:,} / {res['frames_unfinished']:,}"],
        ["peak instances", f"{res['peak_instances']} ({sc['scaling_actions']} scaling actions)"],
        ["peak endpoint backlog", f"{res['peak_backlog_frames']:,} frames, oldest request "
                                  f"{seconds(res['oldest_request_max_seconds'])}"],
        ["instance-hours", f"{res['instance_hours']:,.2f}"],
        ["cost", f"USD {res['cost_usd']:,.2f} at {model['usd_per_instance_hour']:g}/instance-hour"
                 + (f" (USD {res['usd_per_1000_frames']:.4f} per 1,000 frames)" if res["usd_per_1000_frames"] else "")],
        ["ingest Lambda concurrency", f"{ing['concurrency_needed_at_peak']:g} needed at the peak, max "
                                      f"{ing['max_concurrency']} (batch {ing['batch_size']}, "
                                      f"{ing['seconds_per_batch']:g} s per batch, estimate)"],
    ]
    s3 = [[r["prefix"], r["requests"], f"{r['peak_per_second']:,.1f}", f"{r['limit_per_second']:,}",
           f"{100 * r['share_of_limit']:.1f} %", r["made_by"]] for r in report["s3"]]
    return [
        (f"Capacity of the async path ({report['environment'] or 'config'})", ["quantity", "value"], summary),
        ("S3 requests per second at the peak, per prefix", ["prefix", "requests", "peak/s", "limit/s", "of limit",
                                                             "made by"], s3),
    ]
