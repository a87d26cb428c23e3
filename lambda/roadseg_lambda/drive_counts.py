"""Exactly-once counting of a drive's frame outcomes in the drives table (contracts.drive_table).

``record_outcome`` is one ``TransactWriteItems``: a conditional Put of the frame's item (only if it does not exist)
and ``ADD <outcome> :1`` on the drive's item. Both happen or neither does, so a redelivered event (S3, SQS, SNS
retries; a frame re-uploaded under the same key) finds the frame's item, the transaction is cancelled with
``ConditionalCheckFailed`` on the Put, and nothing is counted twice. That is not an error: ``record_outcome`` returns
False. Any other cancellation (throttling, a conflicting transaction on the same drive item) is raised, so the
caller's retry (SQS redelivery, Lambda's asynchronous retries) counts the frame later.

https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from contracts.drive_table import (
    DOCUMENTS,
    DRIVE_ITEM,
    OUTCOME,
    OUTCOMES,
    PARTITION_KEY,
    RECORDED_AT,
    SORT_KEY,
    frame_item,
)


def outcome_transaction(table: str, drive_id: str, frame_key: str, outcome: str, *,
                        documents: Mapping[str, str | None] | None = None,
                        recorded_at: str | None = None) -> list[dict[str, Any]]:
    """The ``TransactItems`` of one frame's outcome (pure)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
    if not drive_id:
        raise ValueError("an outcome needs the frame's drive id")
    item: dict[str, Any] = {PARTITION_KEY: {"S": drive_id}, SORT_KEY: {"S": frame_item(frame_key)},
                            OUTCOME: {"S": outcome}}
    kept = {role: key for role, key in (documents or {}).items() if key}
    if kept:
        item[DOCUMENTS] = {"M": {role: {"S": key} for role, key in sorted(kept.items())}}
    if recorded_at:
        item[RECORDED_AT] = {"S": recorded_at}
    return [
        {"Put": {"TableName": table, "Item": item,
                 "ConditionExpression": "attribute_not_exists(#pk)",
                 "ExpressionAttributeNames": {"#pk": PARTITION_KEY}}},
        {"Update": {"TableName": table,
                    "Key": {PARTITION_KEY: {"S": drive_id}, SORT_KEY: {"S": DRIVE_ITEM}},
                    "UpdateExpression": "ADD #outcome :one",
                    "ExpressionAttributeNames": {"#outcome": outcome},
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
    ]


def is_duplicate(exc: BaseException) -> bool:
    """A cancelled transaction whose only failed condition is the frame item's Put (the first item)."""
    if not isinstance(exc, ClientError) or exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    if not reasons:  # older clients put the codes only into the message
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return "[ConditionalCheckFailed, None]" in message or "[ConditionalCheckFailed]" in message
    codes = _cancellation_codes(exc)
    return codes[0] == "ConditionalCheckFailed" and all(code in ("None", "") for code in codes[1:])


def _cancellation_codes(exc: ClientError) -> list[str]:
    return [str(reason.get("Code") or "None") for reason in exc.response.get("CancellationReasons") or []]


def is_conflict(exc: BaseException) -> bool:
    """Cancelled because another transaction was touching the drive's item at the same time (worth retrying)."""
    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code")
    if code == "TransactionConflictException":
        return True
    return code == "TransactionCanceledException" and "TransactionConflict" in _cancellation_codes(exc)


CONFLICT_ATTEMPTS = 5


def record_outcome(client: Any, table: str, drive_id: str, frame_key: str, outcome: str, *,
                   documents: Mapping[str, str | None] | None = None, recorded_at: str | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Count ``outcome`` for ``frame_key`` of ``drive_id`` exactly once. True: counted now; False: it was already
    counted (a redelivery). Other errors are raised (the event is retried)."""
    items = outcome_transaction(table, drive_id, frame_key, outcome, documents=documents, recorded_at=recorded_at)
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if is_duplicate(exc):
                return False
            if is_conflict(exc) and attempt + 1 < CONFLICT_ATTEMPTS:
                sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not security
                continue
            raise
        return True
    raise AssertionError("unreachable")


UNTRACKED, COUNTED, DUPLICATE = "untracked", "counted", "duplicate"


def count_frame(table: str | None, drive_id: str | None, frame_key: str, outcome: str, *,
                client: Callable[[], Any], documents: Mapping[str, str | None] | None = None,
                recorded_at: str | None = None) -> str:
    """What the handlers call at an outcome point: ``UNTRACKED`` without a drive id or without a table (no AWS call
    at all, ``client`` is not even created), else ``COUNTED`` or ``DUPLICATE`` (see :func:`record_outcome`)."""
    if not table or not drive_id:
        return UNTRACKED
    counted = record_outcome(client(), table, drive_id, frame_key, outcome, documents=documents,
                             recorded_at=recorded_at)
    return COUNTED if counted else DUPLICATE
