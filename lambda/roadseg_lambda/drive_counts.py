"""Exactly-once counting of a drive's frame outcomes in the drives table (contracts.drive_table).

``record_outcome`` is one ``TransactWriteItems``: a conditional Put of the frame's item (only if it does not exist)
and ``ADD <outcome> :1`` on one of the drive's counter items (``COUNTS#<nn>``, contracts.drive_table.counter_shard:
never the DRIVE item, so the frames' transactions neither conflict with the extraction job's and the completion's
updates of it nor queue on one item). Both happen or neither does, so a redelivered event (S3, SQS, SNS retries; a
frame re-uploaded under the same key) finds the frame's item, the transaction is cancelled with
``ConditionalCheckFailed`` on the Put, and nothing is counted twice. That is not an error: ``record_outcome`` returns
False. A transaction cancelled for a conflict is retried here with backoff, on the next counter item (botocore does
not retry it: contracts.drive_table.retry_conflicts); any other cancellation (throttling past botocore's retries,
validation) is raised, so the caller's retry (SQS redelivery, Lambda's asynchronous retries) counts the frame later.

https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from contracts.drive_table import (
    CONFLICT_ATTEMPTS,
    DOCUMENTS,
    OUTCOME,
    OUTCOMES,
    PARTITION_KEY,
    RECORDED_AT,
    SORT_KEY,
    counter_item,
    counter_shard,
    frame_item,
    is_conflict,
    retry_conflicts,
)

__all__ = ["CONFLICT_ATTEMPTS", "COUNTED", "DUPLICATE", "UNTRACKED", "count_frame", "is_conflict", "is_duplicate",
           "outcome_transaction", "record_outcome"]


def outcome_transaction(table: str, drive_id: str, frame_key: str, outcome: str, *,
                        documents: Mapping[str, str | None] | None = None,
                        recorded_at: str | None = None, shard: int | None = None) -> list[dict[str, Any]]:
    """The ``TransactItems`` of one frame's outcome (pure); ``shard``: the counter item (default: the frame's
    first, ``counter_shard(frame_key)``)."""
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
                    "Key": {PARTITION_KEY: {"S": drive_id},
                            SORT_KEY: {"S": counter_item(counter_shard(frame_key) if shard is None else shard)}},
                    "UpdateExpression": "ADD #outcome :one",
                    "ExpressionAttributeNames": {"#outcome": outcome},
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
    ]


def is_duplicate(exc: BaseException) -> bool:
    """A cancelled transaction whose frame item's Put (the first item) failed its condition: counted before."""
    if not isinstance(exc, ClientError) or exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    if not reasons:  # older clients put the codes only into the message
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return "[ConditionalCheckFailed," in message or "[ConditionalCheckFailed]" in message
    # The frame's item exists, so its outcome was counted with it (whatever else the counter item met meanwhile).
    return str(reasons[0].get("Code") or "None") == "ConditionalCheckFailed"


def record_outcome(client: Any, table: str, drive_id: str, frame_key: str, outcome: str, *,
                   documents: Mapping[str, str | None] | None = None, recorded_at: str | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Count ``outcome`` for ``frame_key`` of ``drive_id`` exactly once. True: counted now; False: it was already
    counted (a redelivery). Other errors are raised (the event is retried)."""
    outcome_transaction(table, drive_id, frame_key, outcome)  # bad input fails before any call

    def attempt(number: int) -> bool:
        items = outcome_transaction(table, drive_id, frame_key, outcome, documents=documents, recorded_at=recorded_at,
                                    shard=counter_shard(frame_key, number))
        try:
            client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if is_duplicate(exc):
                return False
            raise  # a conflict is retried by retry_conflicts, anything else goes to the caller
        return True

    return retry_conflicts(attempt, sleep=sleep)


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
