"""Capacity and cost model of the asynchronous path: frames uploaded under ``incoming/`` -> ingest Lambda ->
async endpoint queue -> GPU instances -> results, under the environment's own scaling policy.

``roadseg env capacity`` (or :func:`simulate`, then ``report.summarize``) answers what a perception team needs to size
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


def traffic_from_options(rate: float | None, burst: str | None, profile: Path | None) -> Traffic:
    """The one pattern the command's options give (--rate, --burst or --profile)."""
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
