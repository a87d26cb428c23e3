"""Exactly-once drive counters (roadseg_lambda.drive_counts) under moto DynamoDB, alone and through the ingest and
postprocess handlers: redelivered events count nothing twice, each outcome has its counter, frames without a drive
(or without DRIVES_TABLE) make no DynamoDB call at all."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import ingest
import numpy as np
import postprocess
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from lambda_testkit import (
    INFERENCE_BUCKET,
    INGEST_BUCKET,
    RecordingRuntime,
    async_notification,
    camera_array,
    drain_queue,
    encode,
    mask_png,
    sns_event,
    sqs_event,
)
from roadseg_lambda import aws, drive_counts

from contracts.drive_table import PARTITION_KEY, SORT_KEY, drive_state, frame_item, key_schema, state_query
from contracts.drives import DRIVE_ID_METADATA
from segcore.keys import frame_identity
from segcore.settings import get_settings

TABLE = "roadseg-test-drives"
DRIVE = "car-7/2026-12-03"
KEY = "incoming/car-7/front/2026-12-03T08:00:00.000Z.jpg"


def create_table(client: Any) -> None:
    client.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST", **key_schema())


def drive_item(client: Any, drive: str = DRIVE) -> dict[str, Any]:
    """The drive's outcome counters as the readers see them (summed over its counter items), zeros left out."""
    plain = TypeDeserializer()
    items = [{k: plain.deserialize(v) for k, v in item.items()}
             for item in client.query(**state_query(TABLE, drive))["Items"]]
    return {k: v for k, v in drive_state(items)[1].items() if v}


@pytest.fixture
def dynamodb(aws_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    client = boto3.client("dynamodb")
    create_table(client)
    monkeypatch.setenv("DRIVES_TABLE", TABLE)
    get_settings.cache_clear()
    return client


@pytest.fixture
def runtime(aws_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> RecordingRuntime:
    recorder = RecordingRuntime(boto3.client("sagemaker-runtime"))
    monkeypatch.setattr(aws, "runtime_client", lambda: recorder)
    return recorder


class NoDynamoDB:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"DynamoDB {name} called for a frame without a drive")


# ------------------------------------------------------------------------------------------- the library


def test_each_outcome_is_counted_once_under_redelivery(dynamodb) -> None:
    for index, outcome in enumerate(["processed", "processed", "quarantined", "failed"]):
        key = f"incoming/car-7/front/{index}.jpg"
        assert drive_counts.record_outcome(dynamodb, TABLE, DRIVE, key, outcome, documents={"result": "r"}) is True
        assert drive_counts.record_outcome(dynamodb, TABLE, DRIVE, key, outcome) is False  # redelivered
        assert drive_counts.record_outcome(dynamodb, TABLE, DRIVE, key, "failed") is False  # a later, other outcome
    assert drive_item(dynamodb) == {"processed": 2, "quarantined": 1, "failed": 1}
    frame = dynamodb.get_item(TableName=TABLE, Key={PARTITION_KEY: {"S": DRIVE},
                                                    SORT_KEY: {"S": frame_item("incoming/car-7/front/0.jpg")}})["Item"]
    assert frame["outcome"] == {"S": "processed"} and frame["documents"] == {"M": {"result": {"S": "r"}}}


def test_unknown_outcome_and_missing_drive_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome 'skipped'"):
        drive_counts.outcome_transaction(TABLE, DRIVE, KEY, "skipped")
    with pytest.raises(ValueError, match="drive id"):
        drive_counts.outcome_transaction(TABLE, "", KEY, "processed")


def test_without_drive_or_table_nothing_is_called() -> None:
    def factory() -> Any:
        raise AssertionError("no client may be created")

    assert drive_counts.count_frame(TABLE, None, KEY, "processed", client=factory) == drive_counts.UNTRACKED
    assert drive_counts.count_frame(None, DRIVE, KEY, "processed", client=factory) == drive_counts.UNTRACKED


def _cancelled(*codes: str) -> ClientError:
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                        "CancellationReasons": [{"Code": c} for c in codes]}, "TransactWriteItems")


class ScriptedClient:
    def __init__(self, *errors: Exception | None) -> None:
        self.errors, self.calls = list(errors), 0

    def transact_write_items(self, **kwargs: Any) -> dict:
        self.calls += 1
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return {}


def test_conflicts_are_retried_other_cancellations_raised() -> None:
    client = ScriptedClient(_cancelled("None", "TransactionConflict"), None)
    assert drive_counts.record_outcome(client, TABLE, DRIVE, KEY, "processed", sleep=lambda _: None) is True
    assert client.calls == 2
    client = ScriptedClient(*[_cancelled("None", "TransactionConflict")] * drive_counts.CONFLICT_ATTEMPTS)
    with pytest.raises(ClientError):
        drive_counts.record_outcome(client, TABLE, DRIVE, KEY, "processed", sleep=lambda _: None)
    with pytest.raises(ClientError):  # the counter update itself failed: not a duplicate
        drive_counts.record_outcome(ScriptedClient(_cancelled("None", "ValidationError")), TABLE, DRIVE, KEY,
                                    "processed")
    assert drive_counts.record_outcome(ScriptedClient(_cancelled("ConditionalCheckFailed", "None")), TABLE, DRIVE,
                                       KEY, "processed") is False


# ------------------------------------------------------------------------------------------- the handlers


def upload_drive_frame(aws_env: dict[str, Any], key: str, data: bytes, drive: str | None = DRIVE) -> list[dict]:
    """Like the extraction job: the frame with the drive id in its user metadata."""
    drain_queue(aws_env)
    aws_env["s3"].put_object(Bucket=INGEST_BUCKET, Key=key, Body=data,
                             Metadata={DRIVE_ID_METADATA: drive} if drive else {})
    return drain_queue(aws_env)


def test_ingest_counts_a_quarantined_drive_frame_once(aws_env, dynamodb, runtime, context) -> None:
    records = upload_drive_frame(aws_env, KEY, b"GIF89a not a frame")
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}  # redelivered
    assert drive_item(dynamodb) == {"quarantined": 1}
    frame = dynamodb.get_item(TableName=TABLE, Key={PARTITION_KEY: {"S": DRIVE}, SORT_KEY: {"S": frame_item(KEY)}})
    assert frame["Item"]["documents"]["M"]["quarantine_reason"] == {"S": f"quarantine/{KEY}.reason.json"}


def test_drive_frame_through_ingest_and_postprocess_counts_once(aws_env, dynamodb, runtime, context) -> None:
    s3 = aws_env["s3"]
    records = upload_drive_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    call = runtime.calls[0]
    input_key = f"async-input/{frame_identity(KEY)}.jpg"
    assert s3.head_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Metadata"][DRIVE_ID_METADATA] == DRIVE
    output_key = f"async-output/{uuid.uuid4()}.out"
    s3.put_object(Bucket=INFERENCE_BUCKET, Key=output_key, Body=mask_png(np.zeros((80, 107), np.uint8)))
    note = async_notification(inference_id=call["InferenceId"], input_location=call["InputLocation"],
                              output_location=f"s3://{INFERENCE_BUCKET}/{output_key}")
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["completed"]}
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["completed"]}  # SNS redelivery
    assert drive_item(dynamodb) == {"processed": 1}
    documents = dynamodb.get_item(TableName=TABLE, Key={PARTITION_KEY: {"S": DRIVE},
                                                        SORT_KEY: {"S": frame_item(KEY)}})["Item"]["documents"]["M"]
    assert documents["result"] == {"S": f"results/{frame_identity(KEY)}.json"}
    assert documents["mask"] == {"S": output_key}


def test_failed_drive_frame_is_counted_failed(aws_env, dynamodb, runtime, context) -> None:
    records = upload_drive_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    ingest.handler(sqs_event(records), context)
    call = runtime.calls[0]
    note = async_notification(inference_id=call["InferenceId"], input_location=call["InputLocation"],
                              status="Failed", failure_reason="boom")
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["failed"]}
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["failed"]}
    assert drive_item(dynamodb) == {"failed": 1}


@pytest.mark.parametrize("drive", [None, "not a drive id"])
def test_frames_without_a_drive_make_no_dynamodb_call(aws_env, dynamodb, runtime, context, monkeypatch,
                                                      drive) -> None:
    monkeypatch.setattr(aws, "dynamodb_client", lambda: NoDynamoDB())
    records = upload_drive_frame(aws_env, KEY, b"GIF89a not a frame", drive=drive)
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    records = upload_drive_frame(aws_env, KEY.replace(".jpg", "-b.jpg"), encode(camera_array(160, 120), "JPEG"),
                                 drive=drive)
    ingest.handler(sqs_event(records), context)
    call = runtime.calls[0]
    note = async_notification(inference_id=call["InferenceId"], input_location=call["InputLocation"],
                              status="Failed", failure_reason="boom")
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["failed"]}


def test_without_drives_table_drive_frames_are_not_counted(aws_env, runtime, context, monkeypatch) -> None:
    monkeypatch.setattr(aws, "dynamodb_client", lambda: NoDynamoDB())
    records = upload_drive_frame(aws_env, KEY, b"GIF89a not a frame")
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
