"""Ingest under a drive's burst: the ingest function's frames/s per instance, records of a batch overlapped against
one after another, with an injected per-call latency on every S3 and SageMaker call (moto answers instantly; a real
call inside a region takes tens of milliseconds).

Both paths run the real handler (lambda/ingest.py) on the same SQS batches of the same frames in one process, with
INGEST_RECORD_CONCURRENCY=1 (the baseline: Powertools' sequential batch processing) and =10. Prints frames/s and
the ratio (target >= 4x at 30 ms).

    PYTHONPATH=lambda python bench/ingest_overlap.py [--latency-ms 30] [--batches 3] [--width 1280 --height 720]

(lambda/ on the path: the function's code root, as the Lambda runtime has it; make bench sets it.)
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import time

BUCKET = "roadseg-bench-inference"
ENDPOINT = "roadseg-bench-async"


def _environment(concurrency: int) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "roadseg-bench", "POWERTOOLS_SERVICE_NAME": "roadseg-ingest",
        "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true",
        "INFERENCE_BUCKET": BUCKET, "ASYNC_ENDPOINT_NAME": ENDPOINT,
        "CLASS_NAMES": json.dumps(["road", "person"]), "INGEST_RECORD_CONCURRENCY": str(concurrency),
    }


def _frames(count: int, width: int, height: int) -> list[bytes]:
    from PIL import Image

    from segcore.scenes import generate_scene

    frames = []
    for i in range(count):
        rgb, _ = generate_scene(width, height, seed=100 + i)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
        frames.append(buf.getvalue())
    return frames


def _batch(keys: list[str], start: int) -> dict:
    records = []
    for i, key in enumerate(keys):
        body = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                             "eventTime": "2026-12-03T10:00:00.000Z", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                                    "object": {"key": key, "size": 1, "eTag": f"etag{start + i}"}}}]}
        records.append({"messageId": f"m{start + i}", "receiptHandle": "r", "body": json.dumps(body),
                        "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest", "awsRegion": "us-east-1"})
    return {"Records": records}


class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "roadseg-ingest", 1024, "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:roadseg-ingest"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _run(concurrency: int, frames: list[bytes], batches: int, latency_s: float) -> tuple[float, int]:
    """Seconds for ``batches`` batches of 10 new frames each, and the number of async invocations made."""
    import boto3
    from moto import mock_aws

    from contracts.layout import INFERENCE

    os.environ.update(_environment(concurrency))
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        keys = []
        for b in range(batches):
            for i, frame in enumerate(frames):
                key = f"{INFERENCE.incoming}veh-{concurrency}/front/2026-12-03T10-00-{b:02d}-{i:02d}.jpg"
                s3.put_object(Bucket=BUCKET, Key=key, Body=frame)
                keys.append(key)
        from roadseg_lambda import aws

        from segcore.settings import get_settings

        ingest = importlib.import_module("ingest")
        get_settings.cache_clear()
        aws.reset_clients()
        invocations = 0

        def slow(**_kwargs) -> None:  # every request the function sends waits as a regional call would
            time.sleep(latency_s)

        def count(**_kwargs) -> None:
            nonlocal invocations
            invocations += 1

        aws.s3_client().meta.events.register("before-send", slow)
        runtime = aws.runtime_client()
        runtime.meta.events.register("before-send", slow)
        runtime.meta.events.register("after-call.sagemaker-runtime.InvokeEndpointAsync", count)
        started = time.perf_counter()
        for b in range(batches):
            response = ingest.handler(_batch(keys[b * len(frames):(b + 1) * len(frames)], b * len(frames)),
                                      _Context())
            if response.get("batchItemFailures"):
                raise SystemExit(f"ingest reported failures: {response['batchItemFailures']}")
        return time.perf_counter() - started, invocations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args(argv)
    frames = _frames(10, args.width, args.height)
    latency = args.latency_ms / 1000
    sequential, n1 = _run(1, frames, args.batches, latency)
    overlapped, n10 = _run(10, frames, args.batches, latency)
    total = args.batches * len(frames)
    if n1 != total or n10 != total:
        raise SystemExit(f"expected {total} invocations per path, got {n1} and {n10}")
    print(f"ingest, {total} frames {args.width}x{args.height} in batches of 10, {args.latency_ms:.0f} ms per AWS call")
    print(f"{'path':<34}{'frames/s':>10}{'ratio':>8}")
    print(f"{'one record after another (base)':<34}{total / sequential:>10.1f}{1.0:>8.2f}")
    print(f"{'10 records overlapped':<34}{total / overlapped:>10.1f}{sequential / overlapped:>8.2f}   (target >= 4)")


if __name__ == "__main__":
    main()
