"""``roadseg endpoint bench``: measure what an endpoint sustains with the frames it really gets.

The frames are what the ingest function sends: ``--frames`` distinct generated scenes (``segcore/scenes.py``)
at a camera-like size (``--source-size``, default 2048x1024), saved as the camera's JPEG (quality 95) and turned
into the inference JPEG by ``segcore.imaging.prepare_frame`` with the options the ingest function builds
from its environment, which the stack writes from the environment's ``preprocessing`` section (target size,
ROI, JPEG quality, size limits; ``contracts.lambda_env``).

``--concurrency`` threads send them round robin for ``--duration`` seconds (requests in flight then finish):

- real-time: ``InvokeEndpoint`` (image/jpeg in, image/png out); latency is the call's round trip;
- async: the frame is uploaded to ``async-input/bench/<run>/<n>.jpg`` of the inference bucket with the metadata
  the ingest function writes (so the postprocess function treats it like any frame and writes
  ``results/bench/<run>/<n>.json``), ``InvokeEndpointAsync`` is called, and the OutputLocation and
  FailureLocation are polled with HeadObject; latency runs from the upload to the output being seen (its
  resolution is the poll interval).

The result (latency percentiles of the successful requests, frames/s overall and per instance, errors by code,
throttles) is printed and written to ``<out>/endpoint-<env>-<kind>-<UTC timestamp>.json``; ``envconfig/costs.py``
reads that folder (default ``config/measurements/``). Instances: the endpoint's CurrentInstanceCount, polled
with DescribeEndpoint at the start, every ``instance_poll`` seconds and at the end, averaged over the samples.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contracts import naming
from contracts.layout import INFERENCE
from roadseg.imaging import ingest_settings
from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError

KINDS = ("realtime", "async")
ENDPOINT_OUTPUTS = {"realtime": naming.REALTIME_ENDPOINT_NAME, "async": naming.ASYNC_ENDPOINT_NAME}
CAMERA_JPEG_QUALITY = 95  # how the simulated camera saves its frames before the ingest preprocessing
REALTIME_PAYLOAD_LIMIT = 6_291_456
BENCH_PREFIX = "bench/"  # under async-input/ (and so results/) of the inference bucket
# Error codes of a refused-for-rate request (and the HTTP status some services use without a code).
THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
                            "RequestThrottled", "RequestThrottledException", "RequestLimitExceeded", "SlowDown",
                            "429"})
# Errors that no later request can escape: stop the run instead of repeating them for --duration seconds.
FATAL_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnrecognizedClientException",
                         "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "NoSuchBucket",
                         "ValidationError", "ValidationException", "InvalidSignatureException",
                         "SignatureDoesNotMatch"})
USABLE_STATES = ("InService", "Updating", "SystemUpdating", "RollingBack")


# -- frames ------------------------------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """``2048x1024`` -> (2048, 1024)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise UserError(f"--source-size '{text}' is not WIDTHxHEIGHT, e.g. 2048x1024")
    size = (int(width), int(height))
    if size[0] < 16 or size[1] < 16:
        raise UserError(f"--source-size {text} is too small: at least 16x16")
    return size


def camera_frame(width: int, height: int, seed: int) -> bytes:
    """One generated scene as the camera's JPEG, before any preprocessing."""
    from PIL import Image

    from segcore.scenes import generate_scene

    rgb, _ = generate_scene(width, height, seed)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=CAMERA_JPEG_QUALITY)
    return buf.getvalue()


def prepare_options(settings: Any) -> Any:
    """``PrepareOptions`` exactly as lambda/ingest.py builds them from its settings."""
    return settings.prepare_options()


def bench_frames(config: Any, count: int, source_size: tuple[int, int], seed: int) -> list[Any]:
    """``count`` distinct scenes, each as ``prepare_frame`` turns the camera JPEG into the inference JPEG."""
    from segcore.imaging import BadFrame, prepare_frame

    options = prepare_options(ingest_settings(config))
    frames = []
    for index in range(count):
        try:
            frames.append(prepare_frame(camera_frame(*source_size, seed + index), options))
        except BadFrame as exc:  # e.g. a source size over preprocessing.max_input_pixels
            raise UserError(f"the ingest preprocessing refuses a {source_size[0]}x{source_size[1]} frame: "
                            f"{exc.code}: {exc.reason}") from None
    return frames


# -- measuring ---------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    latency_ms: float | None = None  # set when the request succeeded
    code: str | None = None  # error code when it failed
    throttled_attempts: int = 0
    retries: int = 0


@dataclass
class Tally:
    """What the workers report, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    throttled: int = 0
    throttled_attempts: int = 0
    retries: int = 0
    last_done: float = 0.0
    unexpected: list[BaseException] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            if outcome.code is None:
                self.latencies_ms.append(outcome.latency_ms or 0.0)
            else:
                self.errors[outcome.code] += 1
                self.throttled += outcome.code in THROTTLE_CODES
            self.throttled_attempts += outcome.throttled_attempts
            self.retries += outcome.retries
            self.last_done = time.monotonic()

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call (HTTP status without one), else the exception's class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code") or "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 429 and code not in THROTTLE_CODES:
            return "429"
        return code or str(status or type(exc).__name__)
    return type(exc).__name__


class AttemptCounter:
    """Counts the throttled attempts of the current thread's request, including those the SDK retried
    (``response-received`` fires once per HTTP attempt)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def reset(self) -> None:
        self._local.throttled = 0

    @property
    def throttled(self) -> int:
        return getattr(self._local, "throttled", 0)

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"response-received.{service}", self._on_response)
        return client

    def _on_response(self, parsed_response: Any = None, response_dict: Any = None, **_: Any) -> None:
        code = str(((parsed_response or {}).get("Error") or {}).get("Code") or "")
        status = (response_dict or {}).get("status_code")
        if code in THROTTLE_CODES or status == 429:
            self._local.throttled = self.throttled + 1


def _retries(response: Any) -> int:
    return int((response or {}).get("ResponseMetadata", {}).get("RetryAttempts") or 0)


@dataclass
class Target:
    kind: str
    endpoint: str
    bucket: str | None
    frames: list[Any]
    run_id: str
    settings: Any
    timeout: float
    poll_interval: float


def _call(counter: AttemptCounter, send: Callable[[], Outcome]) -> Outcome:
    from botocore.exceptions import BotoCoreError, ClientError

    counter.reset()
    try:
        outcome = send()
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        response = getattr(exc, "response", None)
        outcome = Outcome(code=code, retries=_retries(response))
        if code in THROTTLE_CODES:  # the final attempt was throttled too (the hook does not see stubbed calls)
            outcome.throttled_attempts = max(counter.throttled, 1)
            return outcome
    outcome.throttled_attempts = max(outcome.throttled_attempts, counter.throttled)
    return outcome


def send_realtime(runtime: Any, target: Target, frame: Any) -> Outcome:
    started = time.perf_counter()
    response = runtime.invoke_endpoint(EndpointName=target.endpoint, ContentType="image/jpeg", Accept="image/png",
                                       Body=frame.jpeg)
    response["Body"].read()
    latency = (time.perf_counter() - started) * 1000
    content_type = (response.get("ContentType") or "").split(";")[0].strip()
    if content_type != "image/png":
        return Outcome(code="UnexpectedContentType", retries=_retries(response))
    return Outcome(latency_ms=latency, retries=_retries(response))


def _exists(s3: Any, uri: str | None) -> bool:
    from roadseg.commands.s3_objects import object_exists

    return bool(uri) and object_exists(s3, uri)


def send_async(runtime: Any, s3: Any, target: Target, frame: Any, seq: int, abort: threading.Event) -> Outcome:
    """Upload with the ingest function's metadata, invoke, wait for the output or the failure."""
    from segcore.keys import frame_identity, object_keys, parse_frame_key, s3_uri
    from segcore.metadata import build_async_input_metadata

    settings = target.settings
    source_key = f"{INFERENCE.incoming}{BENCH_PREFIX}{target.run_id}/{seq:07d}.jpg"
    keys = object_keys(frame_identity(source_key), async_input_prefix=INFERENCE.async_input,
                       results_prefix=INFERENCE.results, failures_prefix=INFERENCE.failures)
    inference_id = f"{target.run_id}{seq:07d}"
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    metadata = build_async_input_metadata(
        inference_id=inference_id, source_bucket=target.bucket, frame=parse_frame_key(source_key, settings.key_pattern),
        source_version_id=None, prepared=frame, uploaded_at=now, submitted_at=now)
    started = time.perf_counter()
    uploaded = s3.put_object(Bucket=target.bucket, Key=keys.async_input, Body=frame.jpeg, ContentType="image/jpeg",
                             Metadata=metadata)
    response = runtime.invoke_endpoint_async(
        EndpointName=target.endpoint, InputLocation=s3_uri(target.bucket, keys.async_input), InferenceId=inference_id,
        ContentType="image/jpeg", Accept="image/png")
    retries = _retries(uploaded) + _retries(response)
    output, failure = response["OutputLocation"], response.get("FailureLocation")
    deadline = time.monotonic() + target.timeout
    while True:
        if _exists(s3, output):
            return Outcome(latency_ms=(time.perf_counter() - started) * 1000, retries=retries)
        if _exists(s3, failure):
            return Outcome(code="AsyncInferenceFailed", retries=retries)
        if time.monotonic() >= deadline:
            return Outcome(code="Timeout", retries=retries)
        if abort.wait(target.poll_interval):
            return Outcome(code="Interrupted", retries=retries)


class InstancePoller(threading.Thread):
    """CurrentInstanceCount (summed over the variants) at the start, periodically and at the end."""

    def __init__(self, sm: Any, endpoint: str, interval: float) -> None:
        super().__init__(daemon=True, name="instance-poller")
        self.sm, self.endpoint, self.interval = sm, endpoint, interval
        self.samples: list[int] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def sample(self) -> dict[str, Any]:
        described = self.sm.describe_endpoint(EndpointName=self.endpoint)
        count = sum(int(v.get("CurrentInstanceCount") or 0) for v in described.get("ProductionVariants") or [])
        with self.lock:
            self.samples.append(count)
        return described

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a missed sample must not end the measurement
                continue

    def summary(self) -> dict[str, Any]:
        with self.lock:
            samples = list(self.samples)
        if not samples:
            return {"mean": None, "min": None, "max": None, "samples": 0}
        return {"mean": round(sum(samples) / len(samples), 3), "min": min(samples), "max": max(samples),
                "samples": len(samples)}


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    import numpy as np

    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    p50, p90, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 90, 99])
    return {"p50": round(float(p50), 1), "p90": round(float(p90), 1), "p99": round(float(p99), 1),
            "mean": round(sum(values) / len(values), 1), "max": round(max(values), 1)}


# -- the command -------------------------------------------------------------------------------------------------

def run_bench(session: Session, out: Printer, *, kind: str, concurrency: int, duration: float, frames: int,
              source_size: str, out_dir: Path | None, endpoint: str | None, bucket: str | None, timeout: float,
              max_requests: int | None = None, seed: int = 0, poll_interval: float = 0.5,
              instance_poll: float = 15.0) -> dict[str, Any]:
    """Check the arguments and the endpoint, prepare the frames, drive the load, and record the measurement."""
    from envconfig.costs import MEASUREMENTS_DIR

    if kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}")
    size = parse_size(source_size)
    config = session.config
    out_dir = Path(out_dir) if out_dir is not None else MEASUREMENTS_DIR
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is not a directory")
    endpoint = session.name(ENDPOINT_OUTPUTS[kind], endpoint, option="--endpoint")
    bucket = session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--bucket") if kind == "async" else None
    described, instance_type = _endpoint_to_measure(session, out, kind, endpoint)
    target = _target(out, config, kind=kind, endpoint=endpoint, bucket=bucket, frames=frames, size=size, seed=seed,
                     timeout=timeout, poll_interval=poll_interval)
    load = _drive_load(session, out, target, described, concurrency=concurrency, duration=duration,
                       max_requests=max_requests, instance_poll=instance_poll)
    document = _measurement(session, load, instance_type, size)
    return _record(out, document, out_dir, session.env, load.measured_at)


# -- setup -------------------------------------------------------------------------------------------------------

def _endpoint_to_measure(session: Session, out: Printer, kind: str, endpoint: str) -> tuple[dict[str, Any], str | None]:
    """The endpoint described (refused when it cannot serve or is of the other kind), with warnings when it is
    not steady or not the instance type the config names."""
    described, instance_type = _describe(session, kind, endpoint)
    if described.get("EndpointStatus") != "InService":
        out.warn(f"endpoint {endpoint} is {described.get('EndpointStatus')}: the figures may not be steady")
    config = session.config
    configured = (config.realtime_endpoint if kind == "realtime" else config.async_endpoint).instance_type
    if instance_type and instance_type != configured:
        out.warn(f"endpoint {endpoint} runs {instance_type}, the config says {configured}: measuring {instance_type}")
    return described, instance_type


def _describe(session: Session, kind: str, endpoint: str) -> tuple[dict[str, Any], str | None]:
    from botocore.exceptions import ClientError

    sm = session.client("sagemaker")
    try:
        described = sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if "Could not find endpoint" in str(exc):
            raise UserError(f"endpoint {endpoint} does not exist in {session.region}") from None
        raise
    status = described.get("EndpointStatus")
    if status not in USABLE_STATES:
        reason = described.get("FailureReason")
        raise UserError(f"endpoint {endpoint} is {status}: nothing to measure" + (f" ({reason})" if reason else ""))
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    is_async = bool(config.get("AsyncInferenceConfig"))
    if is_async != (kind == "async"):
        other = "async" if is_async else "realtime"
        raise UserError(f"endpoint {endpoint} is {'an asynchronous' if is_async else 'a real-time'} endpoint: "
                        f"use --kind {other}")
    instance_type = (config.get("ProductionVariants") or [{}])[0].get("InstanceType")
    return described, instance_type


def _target(out: Printer, config: Any, *, kind: str, endpoint: str, bucket: str | None, frames: int,
            size: tuple[int, int], seed: int, timeout: float, poll_interval: float) -> Target:
    """The frames prepared as the ingest function would, checked against the real-time payload limit."""
    out.info(f"preparing {frames} frame(s): {size[0]}x{size[1]} scenes through the ingest preprocessing")
    settings = ingest_settings(config)
    prepared = bench_frames(config, frames, size, seed)
    if kind == "realtime":
        too_big = [f for f in prepared if len(f.jpeg) > REALTIME_PAYLOAD_LIMIT]
        if too_big:
            raise UserError(f"a prepared frame is {len(too_big[0].jpeg):,} bytes, over the real-time limit of "
                            f"{REALTIME_PAYLOAD_LIMIT:,} bytes")
    return Target(kind=kind, endpoint=endpoint, bucket=bucket, frames=prepared, run_id=uuid.uuid4().hex[:12],
                  settings=settings, timeout=timeout, poll_interval=poll_interval)


# -- the load ----------------------------------------------------------------------------------------------------

@dataclass
class Load:
    """One run's load and what the worker threads share: the request numbers to take, when to stop, the tally."""

    target: Target
    concurrency: int
    duration: float
    max_requests: int | None
    counter: AttemptCounter  # attached to the workers' clients
    tally: Tally = field(default_factory=Tally)
    no_new_requests: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)  # requests in flight stop waiting too
    measured_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    started: float = field(default_factory=time.monotonic)
    instances: dict[str, Any] = field(default_factory=dict)  # InstancePoller.summary() once the run ended
    _sequence: Iterator[int] = field(init=False, repr=False)
    _sequence_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._sequence = iter(range(self.max_requests if self.max_requests else 2**62))

    @property
    def deadline(self) -> float:
        return self.started + self.duration

    def next_request(self) -> int | None:
        """The next request's number, None once ``max_requests`` are taken."""
        with self._sequence_lock:
            return next(self._sequence, None)


def _drive_load(session: Session, out: Printer, target: Target, described: dict[str, Any], *, concurrency: int,
                duration: float, max_requests: int | None, instance_poll: float) -> Load:
    """``concurrency`` workers send frames until the duration or the request count is spent, while the
    endpoint's instances are sampled; requests in flight then finish."""
    from roadseg import session as session_module

    counter = AttemptCounter()
    # One client per worker: a shared client's connection pool (10) would queue the requests of more workers.
    clients = [(counter.attach(session_module.make_client("sagemaker-runtime", session.region)),
                counter.attach(session_module.make_client("s3", session.region)) if target.kind == "async" else None)
               for _ in range(concurrency)]
    poller = InstancePoller(session.client("sagemaker"), target.endpoint, instance_poll)
    poller.samples.append(sum(int(v.get("CurrentInstanceCount") or 0)
                              for v in described.get("ProductionVariants") or []))
    load = Load(target, concurrency, duration, max_requests, counter)
    threads = [threading.Thread(target=_worker, args=(load, *pair), daemon=True, name=f"bench-{n}")
               for n, pair in enumerate(clients)]
    poller.start()
    for thread in threads:
        thread.start()
    try:
        _follow(out, load, threads)
    finally:
        poller.stop.set()
    try:
        poller.sample()
    except Exception:  # noqa: BLE001 - the end sample is a nicety; the periodic ones carry the run
        pass
    if load.tally.unexpected:
        raise load.tally.unexpected[0]
    load.instances = poller.summary()
    return load


def _worker(load: Load, runtime: Any, s3: Any) -> None:
    """One thread's requests, round robin over the frames: real-time calls, or async uploads and invocations."""
    target = load.target
    while not load.no_new_requests.is_set() and time.monotonic() < load.deadline:
        seq = load.next_request()
        if seq is None:
            return
        frame = target.frames[seq % len(target.frames)]
        if target.kind == "realtime":
            send = partial(send_realtime, runtime, target, frame)
        else:
            send = partial(send_async, runtime, s3, target, frame, seq, load.abort)
        try:
            outcome = _call(load.counter, send)
        except Exception as exc:  # noqa: BLE001 - a bug, reported after the run (threads cannot raise)
            with load.tally.lock:
                load.tally.unexpected.append(exc)
            load.no_new_requests.set()
            return
        load.tally.add(outcome)
        if outcome.code in FATAL_CODES:
            load.no_new_requests.set()


def _follow(out: Printer, load: Load, threads: list[threading.Thread]) -> None:
    """The progress bar until every worker ended; Ctrl-C stops new requests and those waiting for a result."""
    bar = tqdm(total=max(1, round(load.duration)), unit="s", desc=f"bench {load.target.kind}",
               disable=True if out.quiet else None, bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s{postfix}")
    try:
        while alive := [t for t in threads if t.is_alive()]:
            alive[0].join(timeout=0.25)
            elapsed = time.monotonic() - load.started
            bar.n = min(bar.total, elapsed)
            with load.tally.lock:
                ok, failed = len(load.tally.latencies_ms), sum(load.tally.errors.values())
            bar.set_postfix_str(f"ok {ok}, errors {failed}, {ok / elapsed if elapsed else 0:.1f} frames/s"
                                + (", finishing requests in flight" if elapsed >= load.duration else ""))
    except KeyboardInterrupt:
        load.no_new_requests.set()
        load.abort.set()
        raise
    finally:
        bar.close()


# -- the measurement ---------------------------------------------------------------------------------------------

def _measurement(session: Session, load: Load, instance_type: str | None, size: tuple[int, int]) -> dict[str, Any]:
    """The measurement record ``envconfig/costs.py`` reads (MEASUREMENT_SCHEMA_VERSION)."""
    from envconfig.costs import MEASUREMENT_SCHEMA_VERSION, serving_head, serving_target
    from roadseg import __version__

    target, tally, prepared = load.target, load.tally, load.target.frames
    elapsed = max((tally.last_done or time.monotonic()) - load.started, 1e-9)
    ok = len(tally.latencies_ms)
    fps = ok / elapsed
    per_instance = fps / load.instances["mean"] if load.instances["mean"] else None
    target_size, roi = serving_target(session.config)
    document = {
        "schema_version": MEASUREMENT_SCHEMA_VERSION,
        "env": session.env,
        "region": session.region,
        "kind": target.kind,
        "endpoint": target.endpoint,
        "instance_type": instance_type,
        "head": serving_head(session.config),
        "resolution": list(prepared[0].output_size),
        "source_resolution": list(size),
        "target_size": list(target_size),
        "roi": list(roi) if roi else None,
        "jpeg_quality": target.settings.jpeg_quality,
        "frames": len(prepared),
        "request_bytes_mean": round(sum(len(f.jpeg) for f in prepared) / len(prepared)),
        "concurrency": load.concurrency,
        "duration": load.duration,
        "max_requests": load.max_requests,
        "elapsed_s": round(elapsed, 3),
        "counts": {"requests": tally.requests, "ok": ok, "errors": sum(tally.errors.values()),
                   "throttled": tally.throttled, "throttled_attempts": tally.throttled_attempts,
                   "retries": tally.retries},
        "errors_by_code": dict(sorted(tally.errors.items())),
        "latency_ms": percentiles(tally.latencies_ms),
        "frames_per_second": round(fps, 3),
        "instances": load.instances,
        "frames_per_second_per_instance": round(per_instance, 3) if per_instance is not None else None,
        "measured_at": load.measured_at.isoformat().replace("+00:00", "Z"),
        "roadseg_version": __version__,
    }
    if target.kind == "async":
        document["poll_interval_s"] = target.poll_interval
        document["input_prefix"] = f"s3://{target.bucket}/{INFERENCE.async_input}{BENCH_PREFIX}{target.run_id}/"
    return document


def _record(out: Printer, document: dict[str, Any], out_dir: Path, env: str, measured_at: datetime) -> dict[str, Any]:
    """Write the measurement and print it; a run without one successful request writes nothing and fails."""
    if document["counts"]["ok"] == 0:
        summary = ", ".join(f"{code} {n}" for code, n in document["errors_by_code"].items())
        out.document({**document, "file": None})
        raise JobFailed(f"every request failed ({document['counts']['requests']}: {summary or 'none sent'}); "
                        "no result file written")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = _result_path(out_dir, env, document["kind"], measured_at)
    path.write_text(json.dumps(document, indent=2) + "\n")
    _print(out, document, path)
    out.document({**document, "file": str(path)})
    return document


def _result_path(out_dir: Path, env: str, kind: str, stamp: datetime) -> Path:
    base = f"endpoint-{env}-{kind}-{stamp.strftime('%Y%m%dT%H%M%SZ')}"
    for suffix in ("", *(f"-{n}" for n in range(2, 100))):
        path = out_dir / f"{base}{suffix}.json"
        if not path.exists():
            return path
    raise UserError(f"{out_dir} already holds {base}.json and 98 more of the same second")


def _print(out: Printer, doc: dict[str, Any], path: Path) -> None:
    counts, latency, instances = doc["counts"], doc["latency_ms"], doc["instances"]
    errors = ", ".join(f"{code} {n}" for code, n in doc["errors_by_code"].items())
    per_instance = doc["frames_per_second_per_instance"]
    resolution = "x".join(map(str, doc["resolution"]))
    source = "x".join(map(str, doc["source_resolution"]))
    out.line(
        f"endpoint {doc['endpoint']} ({doc['kind']}, {doc['instance_type'] or '?'}, head {doc['head']}): "
        f"{resolution} frames from {source} scenes, concurrency {doc['concurrency']}, {doc['elapsed_s']:.1f} s",
        f"requests {counts['requests']}: ok {counts['ok']}, errors {counts['errors']}"
        + (f" ({errors})" if errors else "")
        + f", throttled {counts['throttled']} ({counts['throttled_attempts']} throttled attempts, "
          f"{counts['retries']} retries)",
        f"latency ms: p50 {_ms(latency['p50'])}  p90 {_ms(latency['p90'])}  p99 {_ms(latency['p99'])}",
        f"frames/s: {doc['frames_per_second']:.2f} overall, "
        + (f"{per_instance:.2f} per instance" if per_instance is not None else "per instance unknown (no instance)")
        + f" (instances: mean {instances['mean']}, {instances['samples']} sample(s))",
        f"wrote {path}",
    )


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"
