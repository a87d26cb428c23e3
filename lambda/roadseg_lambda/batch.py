"""Powertools' SQS batch processing with the records of one batch handled side by side, within a memory budget.

A drive arrives as a burst: the ingest function then gets full batches, and each record spends most of its time
waiting on S3 (GetObject, PutObject, tagging) and SageMaker (InvokeEndpointAsync). Handling the records of a batch
in a small thread pool overlaps those waits; the per-record contract stays Powertools' own (a record that raises is
reported in ``batchItemFailures``, the others succeed). boto3 clients are thread-safe once created, but creating
them from the default session in several threads at once is not (botocore#2991, boto3#1592): roadseg_lambda.aws
creates them under a lock, and the handler creates them before fanning out.

Decoding is the one step that needs much memory (a 40 MP RGBA PNG decodes to 160 MB, plus its conversions): ten of
them at once exceed a 1,024 MB function. ``MemoryBudget`` bounds what is decoded at once by bytes estimated from the
image header (segcore.imaging.decode_cost) while the network calls of the other records go on. ``KeyedLocks``
makes records of one frame version (a notification repeated inside a batch) run one after the other, so the
second finds the first's submission and sends nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

MIB = 1024 * 1024
# What the function needs besides decoding: the Python runtime with boto3, Powertools, Pillow and numpy imported
# (~130 MiB resident in bench/ingest_memory.py) plus headroom for the clients' buffers and the JPEGs being sent.
RUNTIME_RESERVE_BYTES = 192 * MIB
# Lambda's configured memory, in MB, as the runtime exposes it to the function (a reserved environment variable:
# "The amount of memory available to the function in MB", LAMBDA_RESERVED_VARIABLES_DOC).
MEMORY_SIZE_VARIABLE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
LAMBDA_RESERVED_VARIABLES_DOC = ("https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html"
                                 "#configuration-envvars-runtime")
DEFAULT_MEMORY_MB = 1024


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


def _glibc_trim() -> Any:
    """glibc's ``malloc_trim`` (Lambda's Amazon Linux runs glibc), or None elsewhere. A decode frees its pixels into
    the arena of the thread that ran it, and glibc keeps freed arena memory resident: without a trim, ten worker
    threads decoding one after another hold ten decodes' worth (bench/ingest_memory.py measured it)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _glibc_trim()
TRIM_ABOVE_BYTES = 32 * MIB  # glibc's largest mmap threshold: smaller blocks may sit in the arenas


def return_freed_memory() -> None:
    if _TRIM is not None:
        _TRIM(0)


class MemoryBudget:
    """At most ``capacity`` bytes reserved at once. A request above the capacity runs alone (it waits until
    nothing else is reserved): a frame the limits admit is decoded, never refused for the budget's sake. Each
    release gives the freed memory back to the system before the next reservation starts (``return_freed_memory``),
    so the budget is what is resident."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a memory budget needs a positive capacity, got {capacity}")
        self.capacity = capacity
        self.reserved = 0
        self.peak = 0  # the most reserved at once (tests, the benchmark)
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        amount = max(0, min(int(nbytes), self.capacity))
        with self._changed:
            self._changed.wait_for(lambda: self.reserved + amount <= self.capacity)
            self.reserved += amount
            self.peak = max(self.peak, self.reserved)
        try:
            yield
        finally:
            if amount >= TRIM_ABOVE_BYTES:  # small frames leave nothing worth a trim (it walks every arena)
                return_freed_memory()
            with self._changed:
                self.reserved -= amount
                self._changed.notify_all()


def decode_budget_bytes(environ: Mapping[str, str], *, records_in_flight: int, max_input_bytes: int) -> int:
    """What the records of one invocation may decode at once: the function's memory (``MEMORY_SIZE_VARIABLE``)
    minus the runtime's reserve and the compressed frames the other records hold while they wait (each at most
    ``max_input_bytes``); at least one maximal frame's bytes, so a small function still decodes one at a time."""
    try:
        memory_mb = int(environ.get(MEMORY_SIZE_VARIABLE) or DEFAULT_MEMORY_MB)
    except ValueError:
        memory_mb = DEFAULT_MEMORY_MB
    free = memory_mb * MIB - RUNTIME_RESERVE_BYTES - records_in_flight * max_input_bytes
    return max(free, max_input_bytes, 1)


class KeyedLocks:
    """One lock per key while someone holds or waits for it (memory does not grow with the keys ever seen)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
