"""Drive jobs wait for SageMaker Processing capacity (issue 19): a start refused with ResourceLimitExceeded goes to the
capacity-wait queue (SQS in moto, SageMaker through Stubber) and is retried from there until it starts, or, after
the maximum wait, goes to the dead-letter queue; a duplicate or redelivered message starts nothing twice."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import boto3
import drives
import pytest
from botocore.stub import Stubber
from roadseg_lambda import aws
from test_drives import BUCKET, DRIVE, ENV, TABLE, described, drive_item, s3_event

from contracts import drive_table as T
from contracts.drives import DriveOutputs

KEY = "drives/car-7/2026-12-03.mcap"
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------- pure decisions


def wait(**changes) -> drives.CapacityWait:
    base = drives.CapacityWait(str(DRIVE), drives.EXTRACT, 3, "2026-12-03T07:00:00Z", "2026-12-03T19:00:00Z")
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(("message", "item", "action"), [
    (wait(), {"status": "extracting"}, "start"),
    (wait(deadline="2026-12-03T07:59:59Z"), {"status": "extracting"}, "expire"),
    (wait(), {"status": "extracted"}, "stale"),  # the extraction ran (another message started it)
    (wait(job=drives.BUILD), {"status": "building"}, "start"),
    (wait(job=drives.BUILD), {"status": "extracted"}, "stale"),
    (wait(), None, "missing"),
])
def test_decide_retry(message, item, action) -> None:
    assert drives.decide_retry(message, item, NOW, 12 * 3600).action == action


def test_a_replayed_message_starts_a_fresh_wait() -> None:
    decision = drives.decide_retry(wait(deadline=None), {"status": "extracting"}, NOW, 3600)
    assert decision.action == "start"
    assert (decision.wait.since, decision.wait.deadline) == ("2026-12-03T08:00:00.000Z", "2026-12-03T09:00:00.000Z")


def test_delays_grow_to_the_timers_maximum() -> None:
    assert [drives.delay_seconds(n) for n in range(1, 7)] == [60, 120, 240, 480, 900, 900]
    assert drives.delay_seconds(1, jitter=29.9) == 89 and drives.delay_seconds(9, jitter=30) == 900


@pytest.mark.parametrize("body", ["", "{}", '{"drive_id": "car-7/d", "job": "train", "attempts": 1, "since": "x"}',
                                  json.dumps({**dataclasses.asdict(wait()), "drive_id": "no-slash"})])
def test_anything_but_a_capacity_wait_is_refused_in_one_line(body) -> None:
    with pytest.raises(ValueError, match="^not a capacity wait message") as caught:
        drives.CapacityWait.parse(body)
    assert "\n" not in str(caught.value)
    assert drives.CapacityWait.parse(wait().body()) == wait()


def test_completion_leaves_a_waiting_builder_to_the_queue() -> None:
    building = {"item": "DRIVE", "drive_id": str(DRIVE), "status": "building"}
    waiting = {**building, T.WAITING_FOR_CAPACITY: {"job": "build"}}
    assert drives.decide_completion(building, waiting, {}).action == "capacity_wait"
    assert drives.decide_completion(waiting, None, {}).action == "capacity_wait"
    assert drives.decide_completion(building, building, {}).action == "launch"


# ------------------------------------------------------------------------------------------- handlers (moto)


@pytest.fixture
def waits(monkeypatch):
    """moto S3, DynamoDB and SQS (the capacity-wait queue and its dead-letter queue), SageMaker for a Stubber."""
    from moto import mock_aws

    with mock_aws():
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="capacity-wait")["QueueUrl"]
        dead = sqs.create_queue(QueueName="capacity-wait-dlq")["QueueUrl"]
        env = dataclasses.replace(ENV, capacity_queue_url=queue, capacity_dead_letter_url=dead,
                                  capacity_max_wait_seconds=12 * 3600)
        for name, value in env.to_env().items():
            monkeypatch.setenv(name, value)
        drives.environment.cache_clear()
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", **T.key_schema())
        aws.reset_clients()
        sagemaker = boto3.client("sagemaker")
        monkeypatch.setattr(aws, "sagemaker_client", lambda: sagemaker)
        monkeypatch.setattr(drives, "sqs_client", lambda: sqs)
        yield {"env": env, "sqs": sqs, "ddb": ddb, "sagemaker": sagemaker, "queue": queue, "dead": dead}
        aws.reset_clients()
    drives.environment.cache_clear()


def messages(sqs, url: str) -> list[dict]:
    """Every message of a queue, delayed ones included (moto honours DelaySeconds: read the queue's state)."""
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return [json.loads(m["Body"]) for m in found.get("Messages", [])]


def delayed(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def sqs_event(*bodies: str) -> dict:
    return {"Records": [{"eventSource": "aws:sqs", "messageId": f"m{i}", "body": body}
                        for i, body in enumerate(bodies)]}


def refused(stub: Stubber, request: dict) -> None:
    """CreateProcessingJob refused for capacity; DescribeProcessingJob finds no job of that name."""
    stub.add_client_error("create_processing_job", "ResourceLimitExceeded",
                          "The account-level service limit 'Number of concurrent processing jobs' is 4",
                          expected_params=request)
    stub.add_client_error("describe_processing_job", "ValidationException", "Could not find requested job",
                          expected_params={"ProcessingJobName": request["ProcessingJobName"]})


def recorded_wait(ddb) -> dict | None:
    return drives.plain(drive_item(ddb)).get(T.WAITING_FOR_CAPACITY)


def test_a_refused_extraction_waits_retries_and_starts_once(waits, context, monkeypatch) -> None:
    sqs, ddb, sagemaker = waits["sqs"], waits["ddb"], waits["sagemaker"]
    request = drives.extraction_request(waits["env"], DRIVE, [KEY])
    sent: list[int] = []
    original = sqs.send_message
    monkeypatch.setattr(sqs, "send_message", lambda **kw: sent.append(kw.get("DelaySeconds", 0)) or original(**kw))
    stub = Stubber(sagemaker)
    refused(stub, request)  # the launch
    refused(stub, request)  # the first retry
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, request)  # the second retry
    stub.add_client_error("create_processing_job", "ResourceInUse", expected_params=request)  # a redelivery
    stub.add_response("describe_processing_job", described(request),
                      {"ProcessingJobName": request["ProcessingJobName"]})
    with stub:
        assert drives.launch_handler(s3_event(KEY), context) == {"outcomes": ["waiting_for_capacity"]}
        assert drive_item(ddb)[T.STATUS] == {"S": T.EXTRACTING}  # the extraction job's update is unchanged
        first = recorded_wait(ddb)
        assert first["job"] == "extract" and first["attempts"] == 1 and delayed(sqs, waits["queue"]) == 1
        body = drives.CapacityWait(str(DRIVE), "extract", 1, first["since"], first["deadline"]).body()

        assert drives.launch_handler(sqs_event(body), context) == {"batchItemFailures": []}
        second = recorded_wait(ddb)
        assert second["attempts"] == 2 and second["since"] == first["since"]  # the same wait, counted on
        again = json.loads(body) | {"attempts": 2}

        assert drives.launch_handler(sqs_event(json.dumps(again)), context) == {"batchItemFailures": []}
        assert recorded_wait(ddb) is None  # started: the wait is over
        # The same message delivered again (SQS is at-least-once): the job exists, nothing starts twice.
        assert drives.launch_handler(sqs_event(json.dumps(again)), context) == {"batchItemFailures": []}
        stub.assert_no_pending_responses()
    assert 60 <= sent[0] <= 90 and 120 <= sent[1] <= 150  # message timers grow (jitter up to 30 s)
    assert all(delay <= drives.MAX_DELAY_SECONDS for delay in sent) and len(sent) == 2


def test_the_wait_ends_in_the_dead_letter_queue_and_a_replay_starts_again(waits, context) -> None:
    sqs, ddb, sagemaker = waits["sqs"], waits["ddb"], waits["sagemaker"]
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": T.EXTRACTING}, T.LOG_KEYS: {"L": [{"S": KEY}]}})
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = wait(attempts=48, since="2026-12-02T19:00:00Z", deadline=past)
    with Stubber(sagemaker) as stub:  # past the deadline: no CreateProcessingJob
        assert drives.launch_handler(sqs_event(expired.body()), context) == {"batchItemFailures": []}
        stub.assert_no_pending_responses()
    (dead,) = messages(sqs, waits["dead"])
    assert dead["deadline"] is None and dead["attempts"] == 48  # the record of the wait, ready for a replay
    assert recorded_wait(ddb)["expired_at"] and delayed(sqs, waits["queue"]) == 0

    request = drives.extraction_request(waits["env"], DRIVE, [KEY])
    with Stubber(sagemaker) as stub:  # the operator's replay (DLQ redrive): a fresh wait, and capacity is back
        stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, request)
        assert drives.launch_handler(sqs_event(json.dumps(dead)), context) == {"batchItemFailures": []}
        stub.assert_no_pending_responses()
    assert recorded_wait(ddb) is None


def test_a_refused_build_waits_and_the_completion_stream_leaves_it_alone(waits, context) -> None:
    sqs, ddb, sagemaker, env = waits["sqs"], waits["ddb"], waits["sagemaker"], waits["env"]
    boto3.client("s3").put_object(Bucket=BUCKET, Key=DriveOutputs(DRIVE).manifest, Body=b'{"cameras": {}}')
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": T.EXTRACTION_ENDED}, "extracted": {"N": "1"},
                                        "processed": {"N": "1"}})
    request = drives.build_request(env, DRIVE)
    stub = Stubber(sagemaker)
    refused(stub, request)
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, request)
    with stub:
        claim = {"dynamodb": {"NewImage": drive_item(ddb)}}
        assert drives.completion_handler({"Records": [claim]}, context) == {"outcomes": ["waiting_for_capacity"]}
        # The claim's own stream record and the wait's update of the DRIVE item: no second start, no second wait.
        waiting = {"dynamodb": {"NewImage": drive_item(ddb)}}
        assert drives.completion_handler({"Records": [waiting]}, context) == {"outcomes": ["capacity_wait"]}
        assert delayed(sqs, waits["queue"]) == 1
        record = recorded_wait(ddb)
        body = drives.CapacityWait(str(DRIVE), "build", 1, record["since"], record["deadline"]).body()
        assert drives.launch_handler(sqs_event(body), context) == {"batchItemFailures": []}
        stub.assert_no_pending_responses()
    assert drive_item(ddb)[T.STATUS] == {"S": T.BUILDING} and recorded_wait(ddb) is None


def test_bad_and_orphaned_messages_fail_alone(waits, context) -> None:
    ddb, sagemaker = waits["ddb"], waits["sagemaker"]
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": T.EXTRACTION_ENDED}})
    orphan = wait(drive_id="car-9/never-uploaded").body()
    with Stubber(sagemaker) as stub:  # a stale wait (the extraction ran) and two failures: no start at all
        assert drives.launch_handler(sqs_event("not json", wait().body(), orphan), context) == {
            "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]}
        stub.assert_no_pending_responses()


def test_without_a_capacity_queue_the_refusal_is_raised(waits, context, monkeypatch) -> None:
    from botocore.exceptions import ClientError

    monkeypatch.delenv("CAPACITY_QUEUE_URL")
    drives.environment.cache_clear()
    request = drives.extraction_request(waits["env"], DRIVE, [KEY])
    with Stubber(waits["sagemaker"]) as stub:
        refused(stub, request)
        with pytest.raises(ClientError, match="ResourceLimitExceeded"):
            drives.launch_handler(s3_event(KEY), context)


def test_a_wait_whose_record_cannot_be_written_is_not_redelivered(monkeypatch) -> None:
    # The message is already sent: raising would redeliver the handled message and start a second chain of waits.
    from botocore.exceptions import ClientError

    def refuse(*_args, **_kwargs):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                          "UpdateItem")

    monkeypatch.setattr(drives, "update_drive_item", refuse)
    drives.record_wait(ENV, wait(), drives.wait_record(wait()))  # logged and counted, not raised


def test_a_message_failing_its_last_receive_goes_to_the_dead_letter_queue_with_a_fresh_wait(waits, monkeypatch) -> None:
    # The redrive policy would move it unchanged, deadline included: a replay after the deadline would expire at once.
    sqs, env = waits["sqs"], waits["env"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("the drives table is unreachable")

    monkeypatch.setattr(drives, "retry_start", broken)
    body = wait(deadline="2026-12-03T09:00:00Z").body()
    early = {"eventSource": "aws:sqs", "messageId": "m0", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}
    last = {**early, "messageId": "m1",
            "attributes": {"ApproximateReceiveCount": str(T.CAPACITY_WAIT_RECEIVES)}}
    assert drives.retry_waiting(env, [early, last]) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    (handed,) = messages(sqs, waits["dead"])
    assert handed["deadline"] is None and handed["drive_id"] == str(DRIVE)
