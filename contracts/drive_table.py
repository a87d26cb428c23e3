"""The drives table: what the ingest and postprocess functions, the drive functions (lambda/drives.py), the extraction
job and the stack agree on about it. Standard library only.

One DynamoDB table (``contracts.naming.drives_table_name``), partition key ``drive_id`` (``<vehicle>/<drive>``), sort
key ``item``:

- ``DRIVE`` (``DRIVE_ITEM``): the drive's state. The launcher creates it (``status`` = ``extracting``,
  ``log_keys``); the extraction job ends by setting ``extracted`` = N and ``status`` = ``extracted``. The drive is
  complete when ``processed + quarantined + failed == extracted`` (summed over the counter items) after the
  extraction ended; the completion function then moves ``status`` ``extracted`` -> ``building`` with a conditional
  update (one winner) and starts the builder.
- ``COUNTS#<nn>`` (``counter_item``, ``COUNTER_SHARDS`` of them per drive): each frame's outcome adds 1 to
  ``processed``, ``quarantined`` or ``failed`` (``OUTCOMES``) of ONE counter item in the same transaction that creates
  the frame's item, so a redelivered event counts nothing twice. Why shards: a drive's frames arrive as a burst
  (prod's peak: 50 ingest functions x 10 records in flight), and concurrent transactions on one item cancel each
  other (``TransactionConflict``), as does any UpdateItem/PutItem on an item a transaction holds (the extraction
  job's, the completion's): one counter item would serialize the whole drive and stall its DRIVE item
  (TRANSACTION_CONFLICTS_DOC); a single item also takes at most 1,000 write units per second, and a transactional
  write costs two (PARTITION_LIMITS_DOC, TRANSACTION_CAPACITY_DOC); separate items of one drive can be isolated on
  partitions of their own (ITEM_ISOLATION_DOC). Readers sum every ``COUNTS#`` item
  (``drive_state``), and the DRIVE item's own counters too (drives counted before the shards).
- ``FRAME#<frame key>`` (``frame_item``): one per frame, written once: its ``outcome`` and the S3 keys of the
  documents about it (``documents``: result, mask, overlay, failure, quarantine reason), which the builder's input
  manifest lists.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from contracts.drive_timeline import FRAME_STATUSES

# The AWS pages these rules rest on.
TRANSACTION_CONFLICTS_DOC = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html"
                             "#transaction-conflict-handling")
UPDATE_ITEM_ERRORS_DOC = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html"
TRANSACT_WRITE_ITEMS_DOC = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html"
# "each individual partition is limited to 1,000 write units per second and 3,000 read units per second"
PARTITION_LIMITS_DOC = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                        "warm-throughput-scenarios.html")
# Adaptive capacity isolates frequently accessed items of one partition key on partitions of their own.
ITEM_ISOLATION_DOC = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html"
                      "#isolate-frequent-access-items")
TRANSACTION_CAPACITY_DOC = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html"
                            "#transaction-capacity-handling")

PARTITION_KEY = "drive_id"
SORT_KEY = "item"
DRIVE_ITEM = "DRIVE"
FRAME_ITEM_PREFIX = "FRAME#"
COUNTER_ITEM_PREFIX = "COUNTS#"
# 32 counter items: prod's peak of ~500 outcome transactions in flight on a drive is ~16 per item, each item far
# below its 1,000 write units per second; the readers' one Query of the drive's state stays one small page.
COUNTER_SHARDS = 32

# Outcome counters of the DRIVE item (the timeline's frame statuses: one name for one fact).
PROCESSED, QUARANTINED, FAILED = FRAME_STATUSES
OUTCOMES: tuple[str, ...] = FRAME_STATUSES
EXTRACTED = "extracted"  # the number of frames the extraction job wrote (set once, at its end)

# Attributes of the DRIVE item besides the counters.
STATUS = "status"
LOG_KEYS = "log_keys"
EXTRACTION_JOB = "extraction_job"
BUILD_JOB = "build_job"
CREATED_AT = "created_at"  # ISO 8601 UTC, when the launcher created the item (the operator command's ETA starts there)
# Set while a drive job waits for SageMaker Processing capacity (CreateProcessingJob refused it with
# ResourceLimitExceeded; lambda/drives.py retries it from the capacity-wait queue), removed once the job starts:
# {"job": "extract"|"build", "since": ISO, "attempts": N, "deadline": ISO} and, after the maximum wait,
# "expired_at": ISO (the retry request is then in the capacity-wait dead-letter queue). Not a status: the extraction
# job's conditional update of ``status`` stays as it is.
WAITING_FOR_CAPACITY = "waiting_for_capacity"
# Receives of one capacity-wait message that failed (an error, not a refusal) before it goes to the dead-letter
# queue: the queue's redrive policy (stacks/drive_processing.py) and the launcher, which on the last receive hands
# the message over itself with its deadline cleared, so that a replay starts a fresh wait.
CAPACITY_WAIT_RECEIVES = 3
# Attributes of a FRAME item.
OUTCOME = "outcome"
DOCUMENTS = "documents"  # role ("result", "mask", "overlay", "failure", "quarantine", "quarantine_reason") -> S3 key
RECORDED_AT = "recorded_at"

# DRIVE status values, in order.
EXTRACTING, EXTRACTION_ENDED, BUILDING = "extracting", "extracted", "building"
EMPTY = "empty"  # the extraction ended with no frame (no image topics, all skipped): nothing to build
STATUSES = (EXTRACTING, EXTRACTION_ENDED, BUILDING, EMPTY)


def frame_item(frame_key: str) -> str:
    """Sort key of a frame's item (the frame key is the object key under incoming/)."""
    if not frame_key:
        raise ValueError("a frame item needs the frame's key")
    return f"{FRAME_ITEM_PREFIX}{frame_key}"


def counter_item(shard: int) -> str:
    """Sort key of a drive's counter item number ``shard``."""
    if not 0 <= shard < COUNTER_SHARDS:
        raise ValueError(f"counter shard {shard} is not in 0..{COUNTER_SHARDS - 1}")
    return f"{COUNTER_ITEM_PREFIX}{shard:02d}"


def counter_shard(frame_key: str, attempt: int = 0) -> int:
    """The counter item a frame's outcome goes to: spread by the frame key, the next one on each retry (a conflict
    on one item is not repeated on the same item)."""
    return (zlib.crc32(frame_key.encode()) + attempt) % COUNTER_SHARDS


def state_query(table: str, drive_id: str) -> dict[str, Any]:
    """Query (consistent) of a drive's DRIVE item and its counter items, and nothing else: the sort keys ``COUNTS#..``
    sort before ``DRIVE``, the FRAME items after it."""
    return {"TableName": table, "ConsistentRead": True,
            "KeyConditionExpression": "#pk = :drive AND #item BETWEEN :counts AND :drive_item",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#item": SORT_KEY},
            "ExpressionAttributeValues": {":drive": {"S": drive_id}, ":counts": {"S": COUNTER_ITEM_PREFIX},
                                          ":drive_item": {"S": DRIVE_ITEM}}}


def drive_state(items: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """(the DRIVE item, the outcome counters summed over the counter items and the DRIVE item) from the items of
    ``state_query`` as plain values (pure)."""
    drive: dict[str, Any] | None = None
    counters = dict.fromkeys(OUTCOMES, 0)
    for item in items:
        sort_key = str(item.get(SORT_KEY, ""))
        if sort_key == DRIVE_ITEM:
            drive = dict(item)
        elif not sort_key.startswith(COUNTER_ITEM_PREFIX):
            continue
        for outcome in OUTCOMES:
            counters[outcome] += int(item.get(outcome) or 0)
    return drive, counters


# -- conflicts -----------------------------------------------------------------------------------------------------
# Every writer of this table retries conflicts: botocore retries neither TransactionConflictException (an
# UpdateItem/PutItem on an item a transaction holds) nor a transaction cancelled with reason TransactionConflict
# (TRANSACTION_CONFLICTS_DOC, UPDATE_ITEM_ERRORS_DOC, TRANSACT_WRITE_ITEMS_DOC). A failed condition is no conflict:
# it is the answer (already counted, already claimed) and is never retried.

CONFLICT_ATTEMPTS = 8
CONFLICT_BASE_SECONDS = 0.05
CONFLICT_CAP_SECONDS = 2.0
_Result = TypeVar("_Result")


def _error(exc: BaseException) -> tuple[str | None, list[str]]:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None, []
    code = (response.get("Error") or {}).get("Code")
    reasons = [str(reason.get("Code") or "None") for reason in response.get("CancellationReasons") or []]
    return (str(code) if code else None), reasons


def is_conflict(exc: BaseException) -> bool:
    """Another request was writing the same item at the same time: retry with backoff."""
    code, reasons = _error(exc)
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    if not reasons:  # some clients put the reasons only into the message
        return "TransactionConflict" in str((getattr(exc, "response", {}).get("Error") or {}).get("Message", ""))
    return "TransactionConflict" in reasons and "ConditionalCheckFailed" not in reasons


def retry_conflicts(call: Callable[[int], _Result], *, attempts: int = CONFLICT_ATTEMPTS,
                    sleep: Callable[[float], None] = time.sleep) -> _Result:
    """``call(attempt)`` until it does not fail with a conflict (full-jitter exponential backoff); the last conflict,
    and any other error, is raised."""
    for attempt in range(attempts):
        try:
            return call(attempt)
        except Exception as exc:
            if not is_conflict(exc) or attempt + 1 >= attempts:
                raise
            ceiling = min(CONFLICT_CAP_SECONDS, CONFLICT_BASE_SECONDS * 2**attempt)
            sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def key_schema() -> dict[str, list[dict[str, str]]]:
    """The table's keys as CreateTable takes them (the stack declares the same with CDK; the rehearsal and the tests
    create the table in moto with this)."""
    return {"KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                          {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                                     {"AttributeName": SORT_KEY, "AttributeType": "S"}]}
