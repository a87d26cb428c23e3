"""Ingest with the records of a batch in threads (issue 19, findings 7 and 8, the boto3 client risk): a notification
repeated inside one batch is sent for inference once; what is decoded at once stays within the memory budget while
the other records' calls go on; clients are never created by several threads at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import ingest
import pytest
from lambda_testkit import RecordingRuntime, camera_array, encode, sqs_event, upload_frame
from PIL import Image
from roadseg_lambda import aws, batch
from roadseg_lambda.batch import KeyedLocks, MemoryBudget, decode_budget_bytes

from segcore import imaging
from segcore.imaging import PrepareOptions, decode_cost

KEY = "incoming/veh-1/front/2026-01-01T00:00:00.000Z.jpg"
MIB = 1024 * 1024


class SlowRuntime(RecordingRuntime):
    """InvokeEndpointAsync that takes a while: two threads with the same frame both get past the S3 check first."""

    def invoke_endpoint_async(self, **kwargs: Any) -> dict:
        time.sleep(0.3)
        return super().invoke_endpoint_async(**kwargs)


@pytest.fixture
def runtime(aws_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> SlowRuntime:
    recorder = SlowRuntime(boto3.client("sagemaker-runtime"))
    monkeypatch.setattr(aws, "runtime_client", lambda: recorder)
    return recorder


# ------------------------------------------------------------------------------------------- finding 8


def test_a_notification_repeated_in_one_batch_is_sent_once(aws_env, runtime, context) -> None:
    records = upload_frame(aws_env, KEY, encode(camera_array(320, 240), "JPEG"))
    twice = [records[0], {**records[0], "messageId": "copy-of-" + records[0]["messageId"]}]  # S3/SQS redelivery
    assert ingest.handler(sqs_event(twice), context) == {"batchItemFailures": []}
    assert len(runtime.calls) == 1  # once per frame version, as with records one by one
    other = upload_frame(aws_env, KEY.replace("front", "rear"), encode(camera_array(320, 240, seed=3), "JPEG"))
    assert ingest.handler(sqs_event(twice + other), context) == {"batchItemFailures": []}
    assert len(runtime.calls) == 2  # the new frame only


def test_keyed_locks_serialise_one_key_and_not_others() -> None:
    locks, active, most = KeyedLocks(), {"a": 0, "b": 0}, {"a": 0, "b": 0}
    guard = threading.Lock()

    def work(key: str) -> None:
        with locks.hold(key):
            with guard:
                active[key] += 1
                most[key] = max(most[key], active[key])
            time.sleep(0.02)
            with guard:
                active[key] -= 1

    threads = [threading.Thread(target=work, args=(k,)) for k in "aabbaabb"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == {"a": 1, "b": 1} and locks._locks == {}  # nothing kept for keys no one holds


# ------------------------------------------------------------------------------------------- finding 7


def test_budget_bounds_the_bytes_reserved_at_once_and_runs_oversized_alone() -> None:
    budget = MemoryBudget(100)
    inside: list[int] = []
    guard = threading.Lock()

    def work(cost: int) -> None:
        with budget.reserve(cost):
            with guard:
                inside.append(budget.reserved)
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(c,)) for c in (40, 40, 40, 250, 60, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.peak <= 100 and max(inside) <= 100 and budget.reserved == 0
    assert 100 in inside  # the oversized frame ran, alone (capped at the whole budget)


def test_budget_is_the_functions_memory_less_the_reserves() -> None:
    env = {batch.MEMORY_SIZE_VARIABLE: "1024"}
    assert decode_budget_bytes(env, records_in_flight=10, max_input_bytes=20 * MIB) == (1024 - 192 - 200) * MIB
    assert decode_budget_bytes({}, records_in_flight=1, max_input_bytes=MIB) == (1024 - 192 - 1) * MIB
    # A small function still decodes one frame at a time (at least one maximal frame's bytes).
    assert decode_budget_bytes({batch.MEMORY_SIZE_VARIABLE: "256"}, records_in_flight=10,
                               max_input_bytes=20 * MIB) == 20 * MIB


def _png(width: int, height: int, mode: str) -> bytes:
    import io

    im = Image.new(mode, (width, height))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@pytest.mark.parametrize(("mode", "per_pixel"), [("RGBA", 8), ("RGB", 4), ("L", 1), ("I;16", 6), ("P", 5)])
def test_decode_cost_is_read_from_the_header(mode, per_pixel) -> None:
    data = _png(640, 480, mode)
    assert decode_cost(data) == len(data) + 640 * 480 * per_pixel
    assert decode_cost(data, PrepareOptions(max_pixels=1000)) == len(data)  # refused before decoding
    assert decode_cost(b"GIF89a") == 6


def test_jpeg_cost_counts_the_draft_reduction() -> None:
    data = encode(camera_array(4096, 2048), "JPEG")
    assert decode_cost(data) == len(data) + (4096 // 4) * (2048 // 4) * 4  # decoded at 1/4 for 1024x512


def test_ingest_decodes_within_the_budget_while_calls_overlap(aws_env, runtime, context, monkeypatch) -> None:
    frames = [encode(camera_array(640, 480, seed=i), "PNG") for i in range(4)]
    cost = max(decode_cost(f) for f in frames)
    budget = MemoryBudget(cost + cost // 2)  # room for one decode at a time
    monkeypatch.setattr(ingest, "decode_budget", lambda settings: budget)
    decoding, most = [0], [0]
    guard = threading.Lock()
    real_prepare = ingest.prepare_frame

    def counted_prepare(data: bytes, options: Any) -> Any:
        with guard:
            decoding[0] += 1
            most[0] = max(most[0], decoding[0])
        time.sleep(0.05)
        try:
            return real_prepare(data, options)
        finally:
            with guard:
                decoding[0] -= 1

    monkeypatch.setattr(ingest, "prepare_frame", counted_prepare)
    records = [r for i, f in enumerate(frames) for r in upload_frame(aws_env, f"incoming/veh-1/front/{i}.png", f)]
    started = time.perf_counter()
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    elapsed = time.perf_counter() - started
    assert len(runtime.calls) == 4 and most[0] == 1 and budget.peak <= budget.capacity
    # The 0.3 s invocations still overlap: one after another they alone would take 1.2 s.
    assert elapsed < 4 * 0.3


# ------------------------------------------------------------------------------------------- the clients


def test_clients_are_created_one_at_a_time(monkeypatch) -> None:
    active, most = [0], [0]
    guard = threading.Lock()

    def slow_client(service: str, **kwargs: Any) -> object:
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        with guard:
            active[0] -= 1
        return object()

    monkeypatch.setattr(aws.boto3, "client", slow_client)
    aws.reset_clients()
    getters = [aws.s3_client, aws.runtime_client, aws.dynamodb_client, aws.sagemaker_client] * 4
    got: list[object] = []
    threads = [threading.Thread(target=lambda g=g: got.append(g())) for g in getters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    aws.reset_clients()
    assert most[0] == 1  # never two creations at once
    assert len({id(c) for c in got}) == 4  # one client per service, shared by every thread


def test_imaging_keeps_no_state_between_estimates() -> None:
    data = _png(64, 64, "RGB")
    assert decode_cost(data) == decode_cost(data) and imaging.prepare_frame(data).output_size == (64, 64)


def test_each_release_gives_freed_memory_back_before_the_next_decode(monkeypatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(batch, "_TRIM", lambda pad: trims.append(pad))
    budget = MemoryBudget(100 * MIB)
    with budget.reserve(batch.TRIM_ABOVE_BYTES):
        assert trims == []
    with budget.reserve(MIB):  # a small frame leaves nothing worth a trim
        pass
    assert trims == [0]


def test_the_estimate_decodes_nothing(monkeypatch) -> None:
    """Estimating must not decode (a PNG's getexif() would: 10 records at once would each decode outside the
    budget, as the first version of this estimate did)."""
    from PIL import ImageFile

    def no_load(self) -> None:
        raise AssertionError("decode_cost decoded the image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    for data in (_png(640, 480, "RGBA"), encode(camera_array(640, 480), "JPEG")):
        assert decode_cost(data) > len(data)
