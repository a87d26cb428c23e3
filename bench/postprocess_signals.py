"""Per-frame signals in the serving path (issue 23): what they add to the postprocess and ingest functions' own time.

Both functions run for real (lambda/postprocess.py, lambda/ingest.py) against moto's in-process S3 (no injected
latency: a real S3 call takes tens of milliseconds, so the handler times here are lower than in AWS and the ratios
higher, i.e. conservative). Each frame is handled twice in the same run, alternating, once WITH the signals (the
output signals of the mask, the result's ``signals`` object, one EMF line per frame, the ingest's decode and input
signals of the inference JPEG) and once WITHOUT them (the handler's signal steps replaced by no-ops: the function as
it was before). Prints the median handler time per frame of both, the ratio (target for postprocess: added <= 10 %),
the signal steps alone, and the EMF log bytes per frame (what CloudWatch Logs ingests for the metrics).

    PYTHONPATH=.:lambda python bench/postprocess_signals.py [--frames 30] [--width 1024 --height 512]

(lambda/ on the path: the function's code root, as the Lambda runtime has it; make bench sets it.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from contracts.layout import INFERENCE
from segcore.classes import CITYSCAPES as CITYSCAPES_SCHEME

BUCKET = "roadseg-bench-inference"
ENDPOINT = "roadseg-bench-async"
CITYSCAPES = list(CITYSCAPES_SCHEME.names)  # the one scheme definition, as the functions' CLASS_NAMES


def _environment(width: int, height: int) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "roadseg-bench", "POWERTOOLS_SERVICE_NAME": "roadseg-postprocess",
        "POWERTOOLS_LOG_LEVEL": "WARNING", "INFERENCE_BUCKET": BUCKET, "ASYNC_ENDPOINT_NAME": ENDPOINT,
        "CLASS_NAMES": json.dumps(CITYSCAPES), "TARGET_WIDTH": str(width), "TARGET_HEIGHT": str(height),
        "METRICS_ENVIRONMENT": "roadseg-bench",
    }


class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "roadseg-bench", 1024, "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:roadseg-bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _jpeg(rgb: Any, quality: int = 92) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png(mask: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, format="PNG")
    return buf.getvalue()


def _sns(note: dict) -> dict:
    return {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:sub",
                         "Sns": {"Type": "Notification", "MessageId": str(uuid.uuid4()),
                                 "TopicArn": "arn:aws:sns:us-east-1:123456789012:roadseg-success", "Subject": None,
                                 "Message": json.dumps(note), "Timestamp": "2026-12-03T10:00:01.000Z",
                                 "SignatureVersion": "1", "Signature": "", "SigningCertUrl": "",
                                 "UnsubscribeUrl": "", "MessageAttributes": {}}}]}


def _sqs(key: str, n: int) -> dict:
    body = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                         "eventTime": "2026-12-03T10:00:00.000Z", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                                "object": {"key": key, "size": 1, "eTag": f"etag{n}"}}}]}
    return {"Records": [{"messageId": f"m{n}", "receiptHandle": "r", "body": json.dumps(body), "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest", "awsRegion": "us-east-1"}]}


@contextlib.contextmanager
def _without(module: Any, replacements: dict[str, Callable]) -> Iterator[None]:
    """The module's signal steps replaced by no-ops: the handler as it was before the signals."""
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _timed(call: Callable[[], Any], sink: io.StringIO) -> float:
    with contextlib.redirect_stdout(sink):
        started = time.perf_counter()
        call()
        return time.perf_counter() - started


def _postprocess(frames: list[tuple[bytes, bytes]], width: int, height: int) -> dict[str, Any]:
    import boto3
    from roadseg_lambda import aws

    from contracts.signal_metrics import SIGNAL_METRICS_NAMESPACE
    from segcore.imaging import PrepareOptions, prepare_frame
    from segcore.keys import derive_inference_id, frame_identity, parse_frame_key
    from segcore.metadata import build_async_input_metadata, prepared_input_signals
    from segcore.settings import DEFAULT_KEY_PATTERN, get_settings

    postprocess = importlib.import_module("postprocess")
    get_settings.cache_clear()
    aws.reset_clients()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    pattern = __import__("re").compile(DEFAULT_KEY_PATTERN)
    notes = []
    for i, (frame, mask) in enumerate(frames * 2):  # every frame twice: once with, once without the signals
        key = f"{INFERENCE.incoming}veh-1/front/2026-12-03T10-00-00-{i:03d}.jpg"
        prepared = prepare_frame(frame, PrepareOptions(target_size=(width, height)))
        inference_id = derive_inference_id(BUCKET, key, "v1")
        input_key = f"{INFERENCE.async_input}{frame_identity(key)}.jpg"
        metadata = build_async_input_metadata(
            inference_id=inference_id, source_bucket=BUCKET, frame=parse_frame_key(key, pattern),
            source_version_id="v1", prepared=prepared, uploaded_at="2026-12-03T10:00:00.000Z",
            submitted_at="2026-12-03T10:00:00.100Z", input_signals_text=prepared_input_signals(prepared))
        s3.put_object(Bucket=BUCKET, Key=input_key, Body=prepared.jpeg, Metadata=metadata)
        output_key = f"{INFERENCE.async_output}{uuid.uuid4()}.out"
        s3.put_object(Bucket=BUCKET, Key=output_key, Body=mask)
        notes.append(_sns({
            "awsRegion": "us-east-1", "eventTime": "2026-12-03T10:00:01.250Z",
            "receivedTime": "2026-12-03T10:00:00.500Z", "invocationStatus": "Completed",
            "requestParameters": {"accept": "image/png", "contentType": "image/jpeg", "endpointName": ENDPOINT,
                                  "inputLocation": f"s3://{BUCKET}/{input_key}"},
            "responseParameters": {"contentType": "image/png", "outputLocation": f"s3://{BUCKET}/{output_key}"},
            "inferenceId": inference_id, "eventVersion": "1.0", "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult"}))
    no_signals = {"frame_signals": lambda **_: None, "output_signals_from_fractions": lambda *_, **__: None,
                  "_input_signals": lambda _meta: None,
                  "signal_metrics": SimpleNamespace(emit=lambda _doc: None, signal_document=lambda *_, **__: None)}
    with_times, without_times, sink = [], [], io.StringIO()
    count = len(frames)
    _timed(lambda: postprocess.handler(notes[-1], _Context()), io.StringIO())  # warm-up: clients, caches
    for i in range(count - 1):
        with_note, without_note = notes[i], notes[count + i]
        order = (True, False) if i % 2 == 0 else (False, True)
        for signals in order:
            if signals:
                with_times.append(_timed(lambda n=with_note: postprocess.handler(n, _Context()), sink))
            else:
                with _without(postprocess, no_signals):
                    without_times.append(_timed(lambda n=without_note: postprocess.handler(n, _Context()), sink))
    emf = [line for line in sink.getvalue().splitlines() if SIGNAL_METRICS_NAMESPACE in line]
    if len(emf) != len(with_times):
        raise SystemExit(f"expected one signal EMF line per frame with signals, got {len(emf)}")
    return {"with": statistics.median(with_times), "without": statistics.median(without_times),
            "emf_bytes": statistics.median(len(line) + 1 for line in emf), "frames": len(with_times)}


def _signal_steps(frames: list[tuple[bytes, bytes]]) -> float:
    """The postprocess function's signal steps alone on one mask's statistics (median seconds)."""
    import numpy as np
    from PIL import Image
    from roadseg_lambda.signal_metrics import signal_document, to_line

    from segcore.masks import mask_statistics
    from segcore.signals import frame_signals, output_signals_from_fractions

    times = []
    for _, png in frames:
        stats = mask_statistics(np.asarray(Image.open(io.BytesIO(png))), CITYSCAPES)
        started = time.perf_counter()
        signals = frame_signals(input=None, output=output_signals_from_fractions(
            stats.class_fractions, vru_present=stats.vru_present))
        to_line(signal_document(signals, environment="e", camera="front", timestamp_ms=0))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _ingest(frames: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    import boto3
    from roadseg_lambda import aws

    from segcore.imaging import PrepareOptions, prepare_frame
    from segcore.metadata import prepared_input_signals
    from segcore.settings import get_settings

    ingest = importlib.import_module("ingest")
    get_settings.cache_clear()
    aws.reset_clients()
    s3 = boto3.client("s3")
    runtime = boto3.client("sagemaker-runtime")
    original_runtime = aws.runtime_client
    aws.runtime_client = lambda: runtime  # moto answers InvokeEndpointAsync
    keys = []
    for i, (frame, _) in enumerate(frames * 2):
        key = f"{INFERENCE.incoming}veh-1/front/2026-12-03T10-00-00-{i:03d}.jpg"
        s3.put_object(Bucket=BUCKET, Key=key, Body=frame)
        keys.append(key)
    with_times, without_times, sink = [], [], io.StringIO()
    count = len(frames)
    try:
        _timed(lambda: ingest.handler(_sqs(keys[-1], 2 * count), _Context()), io.StringIO())  # warm-up
        for i in range(count - 1):
            order = (True, False) if i % 2 == 0 else (False, True)
            for signals in order:
                if signals:
                    with_times.append(_timed(lambda k=keys[i], n=i: ingest.handler(_sqs(k, n), _Context()), sink))
                else:
                    with _without(ingest, {"_input_signals": lambda _prepared: None}):
                        without_times.append(_timed(
                            lambda k=keys[count + i], n=count + i: ingest.handler(_sqs(k, n), _Context()), sink))
    finally:
        aws.runtime_client = original_runtime
    options = PrepareOptions(target_size=(int(os.environ["TARGET_WIDTH"]), int(os.environ["TARGET_HEIGHT"])))
    prepare, signals = [], []
    for frame, _ in frames:
        started = time.perf_counter()
        prepared = prepare_frame(frame, options)
        middle = time.perf_counter()
        prepared_input_signals(prepared)
        prepare.append(middle - started)
        signals.append(time.perf_counter() - middle)
    return {"with": statistics.median(with_times), "without": statistics.median(without_times),
            "prepare": statistics.median(prepare), "signals": statistics.median(signals)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--width", type=int, default=1024, help="inference width (the mask's)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--source-width", type=int, default=1920)
    parser.add_argument("--source-height", type=int, default=1080)
    args = parser.parse_args(argv)

    import numpy as np
    from moto import mock_aws

    from segcore.scenes import generate_scene

    os.environ.update(_environment(args.width, args.height))
    frames = []
    for i in range(args.frames):
        rgb, _ = generate_scene(args.source_width, args.source_height, seed=200 + i)
        _, labels = generate_scene(args.width, args.height, seed=200 + i)
        frames.append((_jpeg(rgb), _png(np.ascontiguousarray(labels, dtype=np.uint8))))
    with mock_aws():
        post = _postprocess(frames, args.width, args.height)
    steps = _signal_steps(frames)
    with mock_aws():
        boto = __import__("boto3").client("s3")
        boto.create_bucket(Bucket=BUCKET)
        ing = _ingest(frames)

    def row(label: str, seconds: float, base: float, note: str = "") -> None:
        print(f"{label:<44}{seconds * 1000:>10.2f}{seconds / base:>8.3f}{note}")

    print(f"per-frame signals in the serving path: {post['frames']} frames, masks {args.width}x{args.height}, "
          f"sources {args.source_width}x{args.source_height} JPEG, moto S3 (no latency), medians")
    print(f"{'postprocess handler':<44}{'ms/frame':>10}{'ratio':>8}")
    row("  without signals (base)", post["without"], post["without"])
    row("  with signals + EMF", post["with"], post["without"], "   (target <= 1.10)")
    row("  the signal steps alone", steps, post["without"])
    print(f"  EMF log bytes per frame: {post['emf_bytes']:.0f}")
    print(f"{'ingest handler':<44}{'ms/frame':>10}{'ratio':>8}")
    row("  without input signals (base)", ing["without"], ing["without"])
    row("  with input signals", ing["with"], ing["without"])
    row("  prepare_frame alone (base)", ing["prepare"], ing["prepare"])
    row("  input signals alone (decode + signals)", ing["signals"], ing["prepare"])


if __name__ == "__main__":
    main()
