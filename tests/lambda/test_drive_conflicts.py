"""Every writer of the drives table survives conflicts (issue 19, finding 6): the frames' outcome transactions
(roadseg_lambda.drive_counts), the extraction job's share and end updates (drivelogs.job), the launcher's
DRIVE item and the completion's claim (lambda/drives.py). Conflicts are injected on a moto client the way DynamoDB
answers them (TransactionConflictException for UpdateItem/PutItem, TransactionCanceledException with reason
TransactionConflict for TransactWriteItems); botocore retries neither. With the counters sharded over COUNTS# items,
the completion still fires exactly once and the counts stay exact under redelivery."""

from __future__ import annotations

import json
import random
from typing import Any

import boto3
import drives
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from roadseg_lambda import aws, drive_counts, drive_jobs
from test_drives import BUCKET, DRIVE, ENV, TABLE

from contracts import drive_table as T
from contracts.drives import DriveOutputs
from drivelogs import job


@pytest.fixture
def moto_aws(monkeypatch):
    """The drive functions' environment over moto (as in test_drives)."""
    from moto import mock_aws

    for name, value in ENV.to_env().items():
        monkeypatch.setenv(name, value)
    drives.environment.cache_clear()
    with mock_aws():
        s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
        s3.create_bucket(Bucket=BUCKET)
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", **T.key_schema())
        aws.reset_clients()
        sagemaker = boto3.client("sagemaker")
        monkeypatch.setattr(aws, "sagemaker_client", lambda: sagemaker)
        yield {"s3": s3, "ddb": ddb, "sagemaker": sagemaker}
        aws.reset_clients()
    drives.environment.cache_clear()


def conflict(operation: str) -> ClientError:
    if operation == "TransactWriteItems":
        return ClientError({"Error": {"Code": "TransactionCanceledException",
                                      "Message": "Transaction cancelled, please refer cancellation reasons for "
                                                 "specific reasons [None, TransactionConflict]"},
                            "CancellationReasons": [{"Code": "None"},
                                                    {"Code": "TransactionConflict",
                                                     "Message": "Transaction is ongoing for the item"}]}, operation)
    return ClientError({"Error": {"Code": "TransactionConflictException",
                                  "Message": "Transaction is ongoing for the item"}}, operation)


class Conflicting:
    """A DynamoDB client whose writes first fail with a conflict ``conflicts`` times in a row (each write, every
    time: the worst interleaving a busy drive sees), then reach moto."""

    WRITES = {"transact_write_items": "TransactWriteItems", "update_item": "UpdateItem", "put_item": "PutItem"}

    def __init__(self, client: Any, conflicts: int = 2) -> None:
        self.client, self.conflicts, self.injected = client, conflicts, 0
        self.exceptions = client.exceptions
        self._streak = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.client, name)
        if name not in self.WRITES:
            return real

        def write(**kwargs: Any) -> Any:
            if self._streak < self.conflicts:  # each write (its retries included) meets ``conflicts`` first
                self._streak += 1
                self.injected += 1
                raise conflict(self.WRITES[name])
            self._streak = 0
            return real(**kwargs)

        return write


def no_sleep(_: float) -> None:
    return None


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch) -> None:
    monkeypatch.setattr(T.time, "sleep", no_sleep)


def counters(ddb: Any) -> tuple[dict[str, Any] | None, dict[str, int], list[str]]:
    deserialize = TypeDeserializer().deserialize
    items = [{k: deserialize(v) for k, v in i.items()} for i in ddb.query(**T.state_query(TABLE, str(DRIVE)))["Items"]]
    drive_item, counted = T.drive_state(items)
    return drive_item, counted, [i[T.SORT_KEY] for i in items]


# ------------------------------------------------------------------------------------------- the rule


def test_conflicts_are_recognised_and_condition_failures_are_not() -> None:
    assert T.is_conflict(conflict("UpdateItem")) and T.is_conflict(conflict("TransactWriteItems"))
    failed = ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"},
                          "CancellationReasons": [{"Code": "ConditionalCheckFailed"},
                                                  {"Code": "TransactionConflict"}]}, "TransactWriteItems")
    assert not T.is_conflict(failed)  # the frame was counted before: an answer, not a retry
    assert drive_counts.is_duplicate(failed)
    assert not T.is_conflict(ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem"))
    assert not T.is_conflict(ValueError("TransactionConflict"))
    calls: list[int] = []

    def always(attempt: int) -> None:
        calls.append(attempt)
        raise conflict("UpdateItem")

    with pytest.raises(ClientError, match="TransactionConflictException"):
        T.retry_conflicts(always, sleep=no_sleep)
    assert calls == list(range(T.CONFLICT_ATTEMPTS))  # bounded: then the caller's own retry (SQS, Lambda)


def test_counter_shards_spread_frames_and_move_on_retry() -> None:
    keys = [f"incoming/car-7/front/{i:05d}.jpg" for i in range(2000)]
    used = {T.counter_shard(k) for k in keys}
    assert used == set(range(T.COUNTER_SHARDS))
    assert T.counter_shard(keys[0], 1) != T.counter_shard(keys[0], 0)
    assert T.counter_item(3) == "COUNTS#03"
    with pytest.raises(ValueError):
        T.counter_item(T.COUNTER_SHARDS)
    query = T.state_query(TABLE, str(DRIVE))  # COUNTS# < DRIVE < FRAME#: the state, never the frames
    assert T.COUNTER_ITEM_PREFIX < T.DRIVE_ITEM < T.FRAME_ITEM_PREFIX and query["ConsistentRead"] is True


# ------------------------------------------------------------------------------------------- the writers


def test_every_writer_retries_conflicts_and_ends_consistent(moto_aws, context, monkeypatch) -> None:
    s3, ddb = moto_aws["s3"], moto_aws["ddb"]
    busy = Conflicting(ddb, conflicts=2)
    monkeypatch.setattr(aws, "dynamodb_client", lambda: busy)
    key = f"drives/{DRIVE}.mcap"
    extraction = drive_jobs.extraction_request(ENV, DRIVE, [key])
    stub = Stubber(moto_aws["sagemaker"])
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, extraction)
    with stub:  # the launcher's conditional Put of the DRIVE item
        assert drives.launch_handler({"Records": [{"s3": {"object": {"key": key}}}]}, context) == {
            "outcomes": ["launched"]}

    frames = [f"incoming/car-7/front/{i:03d}.jpg" for i in range(40)]
    outcomes = ["processed"] * 30 + ["quarantined"] * 6 + ["failed"] * 4
    for frame, outcome in zip(frames, outcomes, strict=True):  # each one conflicts twice first
        assert drive_counts.record_outcome(busy, TABLE, str(DRIVE), frame, outcome, sleep=no_sleep) is True
    for frame in frames[:5]:  # redelivered: counted nothing
        assert drive_counts.record_outcome(busy, TABLE, str(DRIVE), frame, "failed", sleep=no_sleep) is False

    # The extraction job's share and end updates, both conflicting first.
    assert job.record_share(busy, TABLE, str(DRIVE), "algo-1", 40, 1, sleep=no_sleep) is True
    drive_item, counted, sort_keys = counters(ddb)
    assert drive_item[T.STATUS] == T.EXTRACTION_ENDED and drive_item[T.EXTRACTED] == 40
    assert counted == {"processed": 30, "quarantined": 6, "failed": 4}
    assert all(k.startswith(T.COUNTER_ITEM_PREFIX) for k in sort_keys if k != T.DRIVE_ITEM)
    assert len(sort_keys) > 2 and T.PROCESSED not in drive_item  # sharded, the DRIVE item untouched by frames

    # The completion's claim conflicts too, and still wins once.
    s3.put_object(Bucket=BUCKET, Key=DriveOutputs(DRIVE).manifest, Body=json.dumps({"cameras": {}}))
    build = drive_jobs.build_request(ENV, DRIVE, f"s3://{BUCKET}/{DriveOutputs(DRIVE).prefix}{drive_jobs.BUILD_INPUTS}")
    stub = Stubber(moto_aws["sagemaker"])
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, build)
    image = {"dynamodb": {"NewImage": {T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": "COUNTS#00"}}}}
    with stub:
        assert drives.completion_handler({"Records": [image]}, context) == {"outcomes": ["built"]}
        stub.assert_no_pending_responses()
    assert counters(ddb)[0][T.STATUS] == T.BUILDING
    assert busy.injected >= 2 * (1 + 45 + 2 + 1)


def test_a_writer_that_only_meets_conflicts_raises_for_the_callers_retry(moto_aws) -> None:
    busy = Conflicting(moto_aws["ddb"], conflicts=T.CONFLICT_ATTEMPTS)
    with pytest.raises(ClientError, match="TransactionCanceledException"):
        drive_counts.record_outcome(busy, TABLE, str(DRIVE), "incoming/a.jpg", "processed", sleep=no_sleep)
    assert counters(moto_aws["ddb"])[1] == {"processed": 0, "quarantined": 0, "failed": 0}  # nothing half-counted
    assert drive_counts.record_outcome(moto_aws["ddb"], TABLE, str(DRIVE), "incoming/a.jpg", "processed") is True


# ------------------------------------------------------------------------------------------- completion


def stream_records(ddb: Any) -> list[dict[str, Any]]:
    """The NEW_IMAGE records the filtered stream delivers: the DRIVE item and every counter item."""
    items = ddb.query(**T.state_query(TABLE, str(DRIVE)))["Items"]
    return [{"eventName": "MODIFY", "dynamodb": {"Keys": {T.PARTITION_KEY: i[T.PARTITION_KEY],
                                                          T.SORT_KEY: i[T.SORT_KEY]}, "NewImage": i}} for i in items]


def test_completion_fires_exactly_once_with_sharded_counters(moto_aws, context) -> None:
    s3, ddb = moto_aws["s3"], moto_aws["ddb"]
    s3.put_object(Bucket=BUCKET, Key=DriveOutputs(DRIVE).manifest, Body=json.dumps({"cameras": {}}))
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": T.EXTRACTING}})
    frames = [f"incoming/car-7/front/{i:03d}.jpg" for i in range(60)]
    for frame in frames[:-1]:
        drive_counts.record_outcome(ddb, TABLE, str(DRIVE), frame, "processed")
    assert job.record_share(ddb, TABLE, str(DRIVE), "algo-1", len(frames), 1) is True
    early = stream_records(ddb)
    assert drives.completion_handler({"Records": early}, context)["outcomes"][-1] == "wait"  # 59 of 60

    drive_counts.record_outcome(ddb, TABLE, str(DRIVE), frames[-1], "failed")  # the last outcome: a counter item
    records = stream_records(ddb)
    build = drive_jobs.build_request(ENV, DRIVE, f"s3://{BUCKET}/{DriveOutputs(DRIVE).prefix}{drive_jobs.BUILD_INPUTS}")
    stub = Stubber(moto_aws["sagemaker"])
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, build)  # once, or the stub refuses
    outcomes: list[str] = []
    shuffled = random.Random(19)
    with stub:
        for _ in range(5):  # redelivered batches, in any order and any size (bisected)
            batch = records[:]
            shuffled.shuffle(batch)
            size = shuffled.randint(1, 10)
            for start in range(0, len(batch), size):
                outcomes += drives.completion_handler({"Records": batch[start:start + size]}, context)["outcomes"]
        stub.assert_no_pending_responses()
    assert outcomes.count("built") == 1
    assert set(outcomes) <= {"built", "claimed_elsewhere", "superseded"}
    drive_item, counted, _ = counters(ddb)
    assert drive_item[T.STATUS] == T.BUILDING and counted == {"processed": 59, "quarantined": 0, "failed": 1}
