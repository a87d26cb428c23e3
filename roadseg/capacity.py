"""Capacity and cost model of the asynchronous path: frames uploaded under ``incoming/`` -> ingest Lambda ->
async endpoint queue -> GPU instances -> results, under the environment's own scaling policy.

``roadseg env capacity`` (or :func:`simulate` + :func:`summarize`) answers what a perception team needs to size
the path for a traffic pattern: time to the first result from zero instances, completion latency, peak
instances, instance-hours and their cost, the Lambda concurrency the ingest path needs, and the S3 request
rate per prefix. Inputs: ``config/<env>.yaml`` (``async_endpoint`` and ``preprocessing``) and the dated price
table ``config/prices/sagemaker-inference.yaml`` (USD per instance-hour, frames/s per instance) as
``envconfig.costs`` reads it.

The model is a **fluid, time-stepped** simulation: 1-second steps, arrivals aggregated per step, O(1) work per
step (24 hours at any rate is 86,400 steps, not one event per frame). Every figure it prints is only as good as
these assumptions:

Scaling (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html and
https://docs.aws.amazon.com/autoscaling/application/userguide/target-tracking-scaling-policy-overview.html):

- The backlog is every request the endpoint has accepted and not finished: queued plus in flight, the latter
  approximated by the busy share of the instances (frames completed per second / per-instance throughput; a
  low estimate when instances hold several requests at once, which makes scale-in a little more eager).
  ``ApproximateBacklogSizePerInstance`` is the backlog divided by the instances in service, and the backlog
  itself when none is (the AWS page says that without a scale-from-zero policy the endpoint starts scaling up
  from zero only once the backlog exceeds the target-tracking value).
- Metrics are 1-minute averages; scaling is decided at minute boundaries, with no CloudWatch publication delay
  (real alarms trail by a minute or two: the times here are lower bounds).
- Target tracking: desired = ceil(metric x instances in service / target) = ceil(backlog / target), clamped to
  [min_capacity, max_capacity]. Scale-out after ``SCALE_OUT_DATAPOINTS`` (3) consecutive minutes above the
  target; scale-in is more conservative, as AWS documents (capacity is removed only once the metric stays
  clearly below the target, usually by more than 10 %): modelled as ``SCALE_IN_DATAPOINTS`` (15) consecutive
  minutes below 90 % of the target. The 3 and 15 one-minute datapoints are those of the alarms Application Auto
  Scaling creates for a target-tracking policy (visible in the CloudWatch console; the page does not list them).
- Cooldowns: no scale-in within ``scale_in_cooldown_seconds`` of the previous scale-in; a scale-out during
  ``scale_out_cooldown_seconds`` happens only to a larger count than the cooldown's own scale-out set (AWS
  counts the capacity it added towards the next one). Because the desired count is computed from the whole
  backlog, the scale-out cooldown rarely delays anything; start-up and the rule below do.
- Scale from zero: the stack's step policy adds one instance when the ``HasBacklogWithoutCapacity`` alarm
  (1-minute period, 1 datapoint) sees requests waiting with no instance in service, at most once per
  ``scale_out_cooldown_seconds``; when both policies fire, the larger count wins.
- SageMaker changes the instance count of an endpoint one update at a time (the endpoint is ``Updating``
  meanwhile): no scaling decision is taken while instances are starting; the next one is taken at the first
  minute boundary after they are in service.
- New instances serve after ``startup_seconds`` (default 360 s for a GPU instance: an ESTIMATE of launch,
  container pull and model load; measure yours in the endpoint's events) and are billed from launch. Removed
  instances stop serving and billing at once.

Service:

- Each instance completes ``frames_per_second`` frames per second: the cost table's figure for the async
  endpoint (``envconfig.costs.endpoint_costs``: a ``roadseg endpoint bench`` measurement where one matches, else the
  price table's ASSUMPTION for 1024x512 frames scaled by pixel count to ``preprocessing.target_width`` x
  ``target_height``, GPU time taken as roughly linear in pixels), or ``--frames-per-second``; independently of
  ``max_concurrent_invocations_per_instance``, which only bounds how many of them are in flight. The report
  names the serving resolution the figure is for.
- The queue is FIFO and fluid. A frame's endpoint latency is its queue wait (the horizontal distance between
  the cumulative-accepted and cumulative-completed curves) plus one service time, 1 / frames_per_second.
- Requests older than the request TTL (``RequestTTLSeconds`` the ingest function passes: 21,600 s, the
  Lambda's default) expire from the queue unprocessed; each expiry is assumed to produce an error notification
  and a ``failures/`` record.

Ingest:

- The SQS event source runs at most ``preprocessing.ingest_max_concurrency`` functions, each processing a batch
  of ``preprocessing.batch_size`` frames in ``ingest_seconds_per_batch`` (default 0.25 s per frame x batch
  size: an ESTIMATE for a 2048x1024 JPEG at 1,024 MB: GET, decode at reduced size, resize, encode, PUT,
  InvokeEndpointAsync; time yours in the function's ``Duration`` metric). Concurrency needed = arrival rate /
  batch size x seconds per batch. Above the maximum, ingest throughput is capped at max x batch / seconds per
  batch and frames wait in the SQS queue (no expiry there). End-to-end latency adds one batch duration.

S3 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html): at least 3,500
PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per partitioned prefix. The peak per-second rate
of each top-level prefix is compared with those limits: the worst case, before S3 has split the prefix into
more partitions (keys continue with ``<vehicle>/<camera>/``, so it can). Requests per frame follow the ingest
and postprocess functions (``lambda/ingest.py``, ``lambda/postprocess.py``), without retries.

Traffic patterns: a steady rate (``--rate``), a burst of N frames spread evenly over a short window
(``--burst N@START[+WINDOW]``, window 60 s by default: one drive's upload), or a daily profile
(``--profile hours.csv``: ``hour,frames_per_second``, 24 rows, repeated every day). The simulation starts
with ``min_capacity`` instances in service and empty queues, and stops at the end of the horizon: frames
still queued then are reported as unfinished, not drained.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.aws_docs import ASYNC_SCALING_DOC as SCALING_DOC

TARGET_TRACKING_DOC = ("https://docs.aws.amazon.com/autoscaling/application/userguide/"
                       "target-tracking-scaling-policy-overview.html")
S3_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html"

S3_PUT_LIMIT = 3500  # PUT/COPY/POST/DELETE per second per partitioned prefix
S3_GET_LIMIT = 5500  # GET/HEAD per second per partitioned prefix
METRIC_PERIOD_SECONDS = 60
SCALE_OUT_DATAPOINTS = 3
SCALE_IN_DATAPOINTS = 15
SCALE_IN_THRESHOLD = 0.9  # of the target
# The ingest function's RequestTTLSeconds (ASYNC_REQUEST_TTL_SECONDS, segcore/settings.py).
REQUEST_TTL_SECONDS = 21600
DEFAULT_STARTUP_SECONDS = 360.0  # estimate for a GPU instance
DEFAULT_INGEST_SECONDS_PER_FRAME = 0.25  # estimate, 2048x1024 JPEG at 1,024 MB
DEFAULT_HOURS = 24.0
DEFAULT_BURST_HOURS_AFTER_START = 2.0
DEFAULT_BURST_WINDOW_SECONDS = 60.0
MAX_HOURS = 168.0
STEP_SECONDS = 1.0
LATENCY_SAMPLES = 100_000
PLOT_SIZE = (1200, 700)  # pixels of the --plot PNG
# The async-oldest-request alarm: Maximum of ApproximateAgeOfOldestRequest over 5 minutes, 3 periods.
OLDEST_ALARM_PERIOD_SECONDS = 300
OLDEST_ALARM_PERIODS = 3


class CapacityInputError(ValueError):
    """Bad traffic or model input; the message says what and where (the command exits 2)."""


# -- traffic ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Traffic:
    """Frames uploaded under ``incoming/`` over time: a steady rate, one burst, or a 24-hour profile."""

    kind: str  # "rate" | "burst" | "profile"
    description: str
    rate: float = 0.0
    burst_frames: float = 0.0
    burst_start: float = 0.0
    burst_window: float = DEFAULT_BURST_WINDOW_SECONDS
    hourly: tuple[float, ...] = ()

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        """Frames uploaded by each time ``t`` (seconds)."""
        t = np.asarray(t, dtype=float)
        if self.kind == "rate":
            return self.rate * t
        if self.kind == "burst":
            return self.burst_frames * np.clip((t - self.burst_start) / self.burst_window, 0.0, 1.0)
        days = int(math.ceil(t.max() / 86400.0)) + 1 if t.size else 1
        edges = np.arange(24 * days + 1) * 3600.0
        per_hour = np.tile(np.asarray(self.hourly, dtype=float) * 3600.0, days)
        return np.interp(t, edges, np.concatenate([[0.0], np.cumsum(per_hour)]))

    @property
    def peak_rate(self) -> float:
        if self.kind == "rate":
            return self.rate
        if self.kind == "burst":
            return self.burst_frames / self.burst_window
        return max(self.hourly)

    def default_hours(self) -> float:
        if self.kind == "burst":
            return self.burst_start / 3600.0 + DEFAULT_BURST_HOURS_AFTER_START
        return DEFAULT_HOURS


def steady(rate: float) -> Traffic:
    if not math.isfinite(rate) or rate <= 0:
        raise CapacityInputError(f"--rate must be a positive number of frames per second, got {rate}")
    return Traffic("rate", f"steady {rate:g} frames/s", rate=float(rate))


def parse_burst(text: str) -> Traffic:
    """``N@START`` or ``N@START+WINDOW``: N frames from START seconds, spread over WINDOW seconds (default 60)."""
    usage = ("--burst must be FRAMES@START_SECONDS or FRAMES@START_SECONDS+WINDOW_SECONDS (e.g. 36000@600), "
             f"got {text!r}")
    frames_text, at, when = text.strip().partition("@")
    if not at:
        raise CapacityInputError(usage)
    start_text, plus, window_text = when.partition("+")
    try:
        frames, start = float(frames_text), float(start_text)
        window = float(window_text) if plus else DEFAULT_BURST_WINDOW_SECONDS
    except ValueError:
        raise CapacityInputError(usage) from None
    if not (math.isfinite(frames) and frames > 0):
        raise CapacityInputError(f"--burst: the number of frames must be positive, got {frames_text!r}")
    if not (math.isfinite(start) and start >= 0):
        raise CapacityInputError(f"--burst: the start must be seconds >= 0, got {start_text!r}")
    if not (math.isfinite(window) and window > 0):
        raise CapacityInputError(f"--burst: the window must be seconds > 0, got {window_text!r}")
    return Traffic("burst", f"burst of {frames:,.0f} frames at {start:g} s over {window:g} s",
                   burst_frames=frames, burst_start=start, burst_window=window)


def load_profile(path: Path) -> Traffic:
    """A daily profile: CSV ``hour,frames_per_second``, one row per hour 0..23 (an optional header, blank lines
    and ``#`` comments allowed). Errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CapacityInputError(f"{path}: cannot read the profile: {exc}") from None
    rates: dict[int, float] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(cells) != 2:
            raise CapacityInputError(f"{where}: expected 2 columns hour,frames_per_second, got {len(cells)}: "
                                     f"{','.join(row)!r}")
        if cells[0].lower() == "hour" and not rates:
            if cells[1].lower() != "frames_per_second":
                raise CapacityInputError(f"{where}: the header must be hour,frames_per_second, got {','.join(row)!r}")
            continue
        try:
            hour = int(cells[0])
        except ValueError:
            raise CapacityInputError(f"{where}: hour must be an integer 0..23, got {cells[0]!r}") from None
        if not 0 <= hour <= 23:
            raise CapacityInputError(f"{where}: hour must be within 0..23, got {hour}")
        if hour in rates:
            raise CapacityInputError(f"{where}: hour {hour} appears twice")
        try:
            rate = float(cells[1])
        except ValueError:
            raise CapacityInputError(f"{where}: frames_per_second must be a number, got {cells[1]!r}") from None
        if not (math.isfinite(rate) and rate >= 0):
            raise CapacityInputError(f"{where}: frames_per_second must be a finite number >= 0, got {cells[1]!r}")
        rates[hour] = rate
    missing = [h for h in range(24) if h not in rates]
    if missing:
        raise CapacityInputError(f"{path}: the profile needs one row for each hour 0..23; missing: "
                                 f"{', '.join(map(str, missing))}")
    if not any(rates.values()):
        raise CapacityInputError(f"{path}: every hour has 0 frames per second: nothing to simulate")
    hourly = tuple(rates[h] for h in range(24))
    return Traffic("profile", f"daily profile {path.name} (peak {max(hourly):g}, mean {sum(hourly) / 24:g} frames/s)",
                   hourly=hourly)


# -- model inputs -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fleet:
    """The async endpoint: scaling policy (config), throughput and price (cost table), start-up."""

    instance_type: str
    min_capacity: int
    max_capacity: int
    frames_per_second: float  # per instance
    target_backlog_per_instance: float
    scale_in_cooldown_seconds: float
    scale_out_cooldown_seconds: float
    max_concurrent_invocations_per_instance: int
    invocation_timeout_seconds: float
    usd_per_instance_hour: float
    startup_seconds: float = DEFAULT_STARTUP_SECONDS
    frames_per_second_source: str = "assumed"
    request_ttl_seconds: float = REQUEST_TTL_SECONDS
    serving_resolution: str = ""  # the frame size frames_per_second is for (envconfig.costs.describe_resolution)

    @property
    def service_seconds(self) -> float:
        return 1.0 / self.frames_per_second


@dataclass(frozen=True)
class Ingest:
    batch_size: int
    max_concurrency: int
    seconds_per_batch: float
    write_overlay: bool = False
    restore_original_size: bool = False

    @property
    def frames_per_second(self) -> float:
        """Most frames the ingest path submits per second (every allowed function busy)."""
        return self.max_concurrency * self.batch_size / self.seconds_per_batch

    def concurrency_for(self, rate: float) -> float:
        return rate / self.batch_size * self.seconds_per_batch


def model_inputs(config: Any, prices: Any, *, frames_per_second: float | None = None,
                 startup_seconds: float = DEFAULT_STARTUP_SECONDS,
                 ingest_seconds_per_batch: float | None = None) -> tuple[Fleet, Ingest]:
    """The fleet and ingest path of an environment (``envconfig.config.EnvironmentConfig``) priced with
    ``envconfig.costs.PriceTable``; the optional arguments override the estimates."""
    cfg, pre = config.async_endpoint, config.preprocessing
    if frames_per_second is not None and not (math.isfinite(frames_per_second) and frames_per_second > 0):
        raise CapacityInputError(f"--frames-per-second must be a positive number, got {frames_per_second}")
    if not (math.isfinite(startup_seconds) and startup_seconds >= 0):
        raise CapacityInputError(f"--startup-seconds must be >= 0, got {startup_seconds}")
    if ingest_seconds_per_batch is not None and not (math.isfinite(ingest_seconds_per_batch)
                                                     and ingest_seconds_per_batch > 0):
        raise CapacityInputError("--ingest-seconds-per-batch must be a positive number, "
                                 f"got {ingest_seconds_per_batch}")
    from envconfig.costs import endpoint_costs

    # The cost table's async row: its price, and its frames/s (a measurement where one matches, else assumed).
    row = next(c for c in endpoint_costs(config, prices) if c.endpoint == "async")
    source = ("given (--frames-per-second)" if frames_per_second else
              f"{getattr(row, 'frames_per_second_label', 'assumed')} (the cost table's figure)")
    fleet = Fleet(
        instance_type=cfg.instance_type, min_capacity=cfg.min_capacity, max_capacity=cfg.max_capacity,
        frames_per_second=float(frames_per_second or row.frames_per_second),
        target_backlog_per_instance=cfg.target_backlog_per_instance,
        scale_in_cooldown_seconds=cfg.scale_in_cooldown_seconds,
        scale_out_cooldown_seconds=cfg.scale_out_cooldown_seconds,
        max_concurrent_invocations_per_instance=cfg.max_concurrent_invocations_per_instance,
        invocation_timeout_seconds=cfg.invocation_timeout_seconds,
        usd_per_instance_hour=row.usd_per_instance_hour, startup_seconds=float(startup_seconds),
        frames_per_second_source=source, serving_resolution=row.resolution,
    )
    ingest = Ingest(
        batch_size=pre.batch_size, max_concurrency=pre.ingest_max_concurrency,
        seconds_per_batch=float(ingest_seconds_per_batch or DEFAULT_INGEST_SECONDS_PER_FRAME * pre.batch_size),
        write_overlay=pre.write_overlay, restore_original_size=pre.restore_original_size,
    )
    return fleet, ingest


# -- simulation ---------------------------------------------------------------------------------------------------

@dataclass
class Simulation:
    """Per-step series of one run (frames per step; instance counts during the step; queues at its end)."""

    traffic: Traffic
    fleet: Fleet
    ingest: Ingest
    step_seconds: float
    uploaded: np.ndarray
    ingested: np.ndarray
    served: np.ndarray
    expired: np.ndarray
    backlog: np.ndarray  # endpoint queue (queued + in flight) at the end of each step
    sqs: np.ndarray  # frames waiting for an ingest function at the end of each step
    in_service: np.ndarray
    billed: np.ndarray  # in service + starting
    events: list[tuple[float, int, int, str]] = field(default_factory=list)  # (time, from, to, why)

    @property
    def steps(self) -> int:
        return int(self.uploaded.size)

    @property
    def seconds(self) -> float:
        return self.steps * self.step_seconds


def simulate(traffic: Traffic, fleet: Fleet, ingest: Ingest, hours: float | None = None, *,
             step_seconds: float = STEP_SECONDS) -> Simulation:
    """Run the fluid model for ``hours`` (default: 24, or 2 hours after a burst starts)."""
    hours = traffic.default_hours() if hours is None else hours
    if not (math.isfinite(hours) and 0 < hours <= MAX_HOURS):
        raise CapacityInputError(f"--hours must be within (0, {MAX_HOURS:g}], got {hours:g}")
    if step_seconds <= 0 or (METRIC_PERIOD_SECONDS / step_seconds) % 1:
        raise CapacityInputError(f"the step must divide {METRIC_PERIOD_SECONDS} s, got {step_seconds:g}")
    if traffic.kind == "burst" and traffic.burst_start >= hours * 3600:
        raise CapacityInputError(f"--burst starts at {traffic.burst_start:g} s, after the {hours:g}-hour horizon")
    per_minute = int(round(METRIC_PERIOD_SECONDS / step_seconds))
    minutes = int(math.ceil(hours * 3600 / METRIC_PERIOD_SECONDS - 1e-9))
    steps = minutes * per_minute
    grid = np.arange(steps + 1) * step_seconds
    uploaded = np.diff(traffic.cumulative(grid))
    uploaded[uploaded < 0] = 0.0
    series = _run(uploaded.tolist(), fleet, ingest, step_seconds, per_minute)
    events = series.pop()
    arrays = [np.asarray(s, dtype=float) for s in series]
    return Simulation(traffic, fleet, ingest, step_seconds, uploaded, *arrays, events=events)


def _run(uploaded: list[float], fleet: Fleet, ingest: Ingest, dt: float, per_minute: int) -> list:
    """The step loop: O(1) per step, plain floats (numpy scalars would be slower here)."""
    steps = len(uploaded)
    per_instance = fleet.frames_per_second * dt
    ingest_cap = ingest.frames_per_second * dt
    ttl_steps = int(round(fleet.request_ttl_seconds / dt))
    target, lo, hi = fleet.target_backlog_per_instance, fleet.min_capacity, fleet.max_capacity
    low_threshold = SCALE_IN_THRESHOLD * target
    startup, out_cooldown, in_cooldown = fleet.startup_seconds, fleet.scale_out_cooldown_seconds, \
        fleet.scale_in_cooldown_seconds

    ingested, served, expired = [0.0] * steps, [0.0] * steps, [0.0] * steps
    backlog_end, sqs_end, in_service, billed = [0.0] * steps, [0.0] * steps, [0] * steps, [0] * steps
    cum_in_hist = [0.0] * steps
    events: list[tuple[float, int, int, str]] = []

    n, pending, ready_at = lo, 0, math.inf
    sqs = q = cum_in = cum_out = 0.0
    high = low = 0
    metric_sum = backlog_sum = 0.0
    last_out = last_in = last_step = -math.inf
    desired_at_last_out = n
    for k in range(steps):
        if pending and k * dt >= ready_at:
            n += pending
            pending = 0
        sqs += uploaded[k]
        g = sqs if sqs < ingest_cap else ingest_cap
        sqs -= g
        q += g
        cum_in += g
        cum_in_hist[k] = cum_in
        if k >= ttl_steps:
            limit = cum_in_hist[k - ttl_steps]
            if limit > cum_out:
                e = limit - cum_out
                q = q - e if q > e else 0.0
                cum_out = limit
                expired[k] = e
        capacity = n * per_instance
        s = q if q < capacity else capacity
        q -= s
        if q < 1e-9:
            q = 0.0
        cum_out += s
        ingested[k], served[k], backlog_end[k], sqs_end[k] = g, s, q, sqs
        in_service[k], billed[k] = n, n + pending
        total = q + s / per_instance  # queued + in flight (the busy share of the instances)
        backlog_sum += total
        metric_sum += total / (n if n else 1)
        if (k + 1) % per_minute:
            continue
        # A minute boundary: the alarms see this minute's datapoint.
        now = (k + 1) * dt
        metric, backlog = metric_sum / per_minute, backlog_sum / per_minute
        metric_sum = backlog_sum = 0.0
        high = high + 1 if metric > target else 0
        low = low + 1 if metric < low_threshold else 0
        if pending and now >= ready_at:
            n += pending
            pending = 0
        if pending:
            continue  # the endpoint is Updating: no other change until the instances are in service
        wanted = min(hi, max(lo, math.ceil(backlog / target - 1e-9)))  # = metric x instances / target
        new, why = n, ""
        if high >= SCALE_OUT_DATAPOINTS and wanted > n and (
                now - last_out >= out_cooldown or wanted > desired_at_last_out):
            new, why = wanted, "target tracking"
        if n == 0 and q > 0 and now - last_step >= out_cooldown and new < 1 <= hi:
            new, why = 1, "HasBacklogWithoutCapacity"
            last_step = now
        if new > n:
            events.append((now, n, new, why))
            pending, ready_at, last_out, desired_at_last_out = new - n, now + startup, now, new
            if startup == 0:
                n, pending = new, 0
        elif low >= SCALE_IN_DATAPOINTS and wanted < n and now - last_in >= in_cooldown:
            events.append((now, n, wanted, "target tracking scale-in"))
            n, last_in = wanted, now
    return [ingested, served, expired, backlog_end, sqs_end, in_service, billed, events]


# -- results ------------------------------------------------------------------------------------------------------

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
        ("incoming/", "PUT", up, "PutObject by the vehicles"),
        ("incoming/", "GET", g, "GetObject by ingest"),
        ("async-input/", "PUT", 2 * g, "PutObject + PutObjectTagging by ingest"),
        ("async-input/", "GET", g + (2 + overlay) * s,
         "HeadObject by ingest, GetObject by the endpoint, HeadObject by postprocess"
         + (", GetObject for the overlay" if overlay else "")),
        ("async-output/", "PUT", s, "PutObject of the mask by the endpoint"),
        ("async-output/", "GET", s, "GetObject by postprocess"),
        ("results/", "PUT", (1 + overlay + restore) * s,
         "PutObject of the result JSON" + (" + overlay" if overlay else "") + (" + mask" if restore else "")),
        ("failures/", "PUT", e, "failure record per expired request"),
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


# -- plot ---------------------------------------------------------------------------------------------------------

def _per_minute(sim: Simulation) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    per_minute = int(round(METRIC_PERIOD_SECONDS / sim.step_seconds))
    minutes = sim.steps // per_minute

    def peak(values: np.ndarray) -> np.ndarray:
        return values[: minutes * per_minute].reshape(minutes, per_minute).max(axis=1)

    hours = np.arange(minutes) * METRIC_PERIOD_SECONDS / 3600.0  # each minute's start (drawn as steps)
    # Frames expired by each minute's end (drawn at the minute's start, like the other series).
    expired = np.cumsum(sim.expired)[per_minute - 1: minutes * per_minute: per_minute]
    return hours, {"backlog": peak(sim.backlog), "sqs": peak(sim.sqs), "in_service": peak(sim.in_service),
                   "billed": peak(sim.billed), "expired": expired}


def first_expiry_hours(sim: Simulation) -> float | None:
    """When the first request expired in the endpoint queue (hours), None when none did."""
    steps = np.flatnonzero(sim.expired > 0)
    return float(steps[0] * sim.step_seconds / 3600.0) if steps.size else None


def _expired_label(sim: Simulation) -> str:
    ttl = sim.fleet.request_ttl_seconds
    return f"expired after the {f'{ttl / 3600:g} h' if ttl >= 3600 else f'{ttl:g} s'} TTL (frames, cumulative)"


def write_plot(sim: Simulation, path: Path, title: str) -> Path:
    """A PNG of the endpoint backlog (and the ingest queue, and the requests that expired unprocessed) and the
    instance count over time, PLOT_SIZE pixels; drawn with Pillow when matplotlib is not installed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            figure = plot_figure(sim, title)
        except ImportError:
            _plot_pillow(sim, path, title)
            return path
        figure.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise CapacityInputError(f"--plot: cannot write {path}: {exc}") from None
    return path


def plot_figure(sim: Simulation, title: str):
    """The matplotlib figure of :func:`write_plot` (ImportError without matplotlib). The legends sit right of the
    panels, where no curve runs; requests that expired unprocessed are drawn (cumulative) and the first expiry
    is marked on both panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hours, series = _per_minute(sim)
    figure = Figure(figsize=(PLOT_SIZE[0] / 100, PLOT_SIZE[1] / 100), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    figure.subplots_adjust(left=0.08, right=0.7)
    top.plot(hours, series["backlog"], color="tab:blue", label="endpoint backlog (frames)")
    if series["sqs"].any():
        top.plot(hours, series["sqs"], color="tab:orange", label="ingest queue (frames)")
    first_expiry = first_expiry_hours(sim)
    if first_expiry is not None:
        top.plot(hours, series["expired"], color="tab:purple", linestyle="--", label=_expired_label(sim))
        top.axvline(first_expiry, color="tab:purple", linestyle=":",
                    label=f"first request expired ({first_expiry:.1f} h)")
    top.set_ylabel("frames")
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    top.grid(alpha=0.3)
    bottom.step(hours, series["billed"], where="post", color="tab:red", label="instances (incl. starting)")
    bottom.step(hours, series["in_service"], where="post", color="tab:green", label="instances in service")
    bottom.axhline(sim.fleet.max_capacity, color="grey", linestyle="--", label="max_capacity")
    if first_expiry is not None:
        bottom.axvline(first_expiry, color="tab:purple", linestyle=":",
                       label=f"first request expired ({first_expiry:.1f} h)")
    bottom.set_ylabel("instances")
    bottom.set_xlabel("hours")
    bottom.set_ylim(0, max(sim.fleet.max_capacity, 1) * 1.15)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    bottom.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def _plot_pillow(sim: Simulation, path: Path, title: str) -> None:
    """The same two panels drawn with Pillow (used when matplotlib is not installed)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = PLOT_SIZE
    image = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    hours, series = _per_minute(sim)
    draw.text((width // 2, 20), title, fill="black", font=font, anchor="mm")
    left, right = 100, width - 330  # the legends go right of the panels, where no curve runs
    span = float(hours[-1] + METRIC_PERIOD_SECONDS / 3600.0) if hours.size else 1.0
    blue, orange, red, green, grey = (31, 119, 180), (255, 127, 14), (214, 39, 40), (44, 160, 44), (128, 128, 128)
    purple = (148, 103, 189)
    first_expiry = first_expiry_hours(sim)
    panels = [
        (60, height // 2 - 30, "frames",
         [("backlog", blue, "endpoint backlog"), ("sqs", orange, "ingest queue"),
          ("expired", purple, _expired_label(sim))], None),
        (height // 2 + 30, height - 60, "instances",
         [("billed", red, "instances (incl. starting)"), ("in_service", green, "instances in service")],
         float(sim.fleet.max_capacity)),
    ]
    for top, bottom, label, lines, ceiling in panels:
        peak = max([float(series[name].max()) for name, _, _ in lines if series[name].size] + [1.0])
        if ceiling is not None:
            peak = max(peak, ceiling) * 1.15
        draw.rectangle((left, top, right, bottom), outline="black")
        draw.text((left, top - 4), label, fill="black", font=font, anchor="ld")
        draw.text((left - 6, top), f"{peak:,.0f}", fill="black", font=font, anchor="rt")
        draw.text((left - 6, bottom), "0", fill="black", font=font, anchor="rb")
        legend_y = top + 8
        for name, colour, text in lines:
            values = series[name]
            if not values.size or (name in ("sqs", "expired") and not values.any()):
                continue
            # steps: each minute's value held until the next minute
            xs = np.repeat(left + np.append(hours, span) / span * (right - left), 2)[1:-1]
            ys = np.repeat(bottom - values / peak * (bottom - top), 2)
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=2)
            draw.text((right + 15, legend_y), text, fill=colour, font=font)
            legend_y += 18
        if ceiling is not None:
            y = bottom - ceiling / peak * (bottom - top)
            for x in range(left, right, 12):
                draw.line((x, y, min(x + 6, right), y), fill=grey, width=1)
            draw.text((right + 15, legend_y), "max_capacity", fill=grey, font=font)
            legend_y += 18
        if first_expiry is not None:
            x = left + first_expiry / span * (right - left)
            for y in range(top, bottom, 8):
                draw.line((x, y, x, min(y + 4, bottom)), fill=purple, width=1)
            draw.text((right + 15, legend_y), f"first request expired ({first_expiry:.1f} h)", fill=purple,
                      font=font)
    for tick in np.linspace(0, span, 7):
        x = left + tick / span * (right - left)
        draw.line((x, height - 60, x, height - 55), fill="black")
        draw.text((x, height - 52), f"{tick:.1f}", fill="black", font=font, anchor="mt")
    draw.text(((left + right) // 2, height - 22), "hours", fill="black", font=font, anchor="mm")
    image.save(path, format="PNG")


# -- the command --------------------------------------------------------------------------------------------------

def traffic_from_options(rate: float | None, burst: str | None, profile: Path | None) -> Traffic:
    chosen = [name for name, value in (("--rate", rate), ("--burst", burst), ("--profile", profile))
              if value is not None]
    if len(chosen) != 1:
        raise CapacityInputError("give exactly one traffic pattern: --rate FRAMES_PER_SECOND, --burst N@START or "
                                 "--profile FILE.csv" + (f" (got {' and '.join(chosen)})" if chosen else ""))
    if rate is not None:
        return steady(rate)
    if burst is not None:
        return parse_burst(burst)
    return load_profile(profile)


def run(config: Any, prices: Any, *, rate: float | None = None, burst: str | None = None,
        profile: Path | None = None, hours: float | None = None, frames_per_second: float | None = None,
        startup_seconds: float = DEFAULT_STARTUP_SECONDS, ingest_seconds_per_batch: float | None = None,
        plot: Path | None = None) -> tuple[dict[str, Any], Simulation]:
    """Simulate an environment on one traffic pattern; the report, and the simulation (for a plot)."""
    traffic = traffic_from_options(rate, burst, profile)
    fleet, ingest = model_inputs(config, prices, frames_per_second=frames_per_second,
                                 startup_seconds=startup_seconds, ingest_seconds_per_batch=ingest_seconds_per_batch)
    sim = simulate(traffic, fleet, ingest, hours)
    report = summarize(sim)
    report["environment"] = getattr(config, "name", None)
    if plot is not None:
        write_plot(sim, plot, f"{report['environment']}: {traffic.description} on {fleet.instance_type} "
                              f"({fleet.min_capacity}-{fleet.max_capacity} instances)")
        report["plot"] = str(plot)
    return report, sim


def command(out: Any, config: Any, *, plot: Path | None = None, **options: Any) -> dict[str, Any]:
    """``roadseg env capacity``: print the report (text or ``--json``) through a ``roadseg.output.Printer``."""
    from envconfig.config import ConfigError
    from envconfig.costs import load_prices
    from roadseg.session import UserError

    try:
        report, _ = run(config, load_prices(), plot=plot, **options)
    except (CapacityInputError, ConfigError) as exc:
        raise UserError(str(exc)) from None
    for title, headers, rows in report_tables(report):
        out.line(title)
        out.table(headers, rows)
        out.line("")
    for note in report["notes"]:
        out.line(f"note: {note}")
    if plot is not None:
        out.info(f"wrote {plot}")
    out.document(report)
    return report


__all__ = ["CapacityInputError", "Fleet", "Ingest", "Simulation", "Traffic", "command", "first_expiry_hours",
                          "load_profile", "model_inputs", "parse_burst", "plot_figure", "report_tables", "run",
                          "simulate", "steady", "summarize", "write_plot"]
