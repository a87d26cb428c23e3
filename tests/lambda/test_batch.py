"""roadseg_lambda.batch: records of one SQS batch overlap, failures stay per record."""

from __future__ import annotations

import threading
import time

import pytest
from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from roadseg_lambda.batch import ConcurrentBatchProcessor


def _event(n: int) -> dict:
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": str(i), "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
                        for i in range(n)]}


def test_records_overlap_up_to_max_workers_and_failures_are_per_record():
    running, peak, lock = 0, 0, threading.Lock()

    def handler(record) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        if int(record.body) % 4 == 0:
            raise RuntimeError(f"record {record.body} failed")
        return record.body

    processor = ConcurrentBatchProcessor(event_type=EventType.SQS, max_workers=5,
                                         raise_on_entire_batch_failure=False)
    response = process_partial_response(event=_event(10), record_handler=handler, processor=processor)
    assert peak == 5
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m0", "m4", "m8"]


def test_one_worker_is_sequential():
    order: list[str] = []

    def handler(record) -> None:
        order.append(record.body)

    processor = ConcurrentBatchProcessor(event_type=EventType.SQS, max_workers=1)
    process_partial_response(event=_event(4), record_handler=handler, processor=processor)
    assert order == ["0", "1", "2", "3"]


def test_a_batch_that_fails_entirely_still_raises_as_powertools_does():
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    def fail(record):
        raise ValueError("no")

    processor = ConcurrentBatchProcessor(event_type=EventType.SQS, max_workers=3)
    with pytest.raises(BatchProcessingError):
        process_partial_response(event=_event(3), record_handler=fail, processor=processor)


def test_zero_workers_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrentBatchProcessor(event_type=EventType.SQS, max_workers=0)
