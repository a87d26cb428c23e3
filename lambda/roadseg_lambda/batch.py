"""Powertools' SQS batch processing with the records of one batch handled side by side.

A drive arrives as a burst: the ingest function then gets full batches, and each record spends most of its time
waiting on S3 (GetObject, PutObject, tagging) and SageMaker (InvokeEndpointAsync). Handling the records of a batch
in a small thread pool overlaps those waits; the per-record contract stays Powertools' own (a record that raises is
reported in ``batchItemFailures``, the others succeed). boto3 clients are thread-safe; sessions and resources are
not, so handlers use clients only (roadseg_lambda.aws).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType


class ConcurrentBatchProcessor(BatchProcessor):
    """``BatchProcessor`` whose ``process`` runs up to ``max_workers`` records at a time (1: one after another).

    Only for queues without ordering (standard SQS): FIFO queues need Powertools' SqsFifoPartialProcessor."""

    def __init__(self, event_type: EventType, max_workers: int, **kwargs) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        super().__init__(event_type=event_type, **kwargs)
        self.max_workers = max_workers

    def process(self) -> list[tuple]:
        records = list(self.records)
        workers = min(self.max_workers, len(records))
        if workers <= 1:
            return [self._process_record(record) for record in records]
        # The success/failure handlers only append to lists (atomic under the GIL); results keep the batch order.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="record") as pool:
            return list(pool.map(self._process_record, records))
