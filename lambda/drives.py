"""Whole drives: the launcher (S3 "Object Created" under drives/ -> the extraction job) and the completion function
(the drives table's stream -> the drive builder). Handlers ``drives.launch_handler`` and ``drives.completion_handler``.

Each is fetch -> pure decision -> act:

- launch: ``decide_launch(key)`` (contracts.drives.drive_of_log_key; anything else under drives/ is logged and
  ignored), then the DRIVE item is created (status ``extracting``, the log keys; only if it does not exist, so
  counters are never reset) and the extraction Processing job started (roadseg_lambda.drive_jobs). The job name is
  deterministic per drive: when CreateProcessingJob fails, DescribeProcessingJob of that name says whether the job
  exists ("already launched"); the API page lists no error code for a duplicate name (CREATE_PROCESSING_JOB_DOC), so
  the code alone is not trusted.
- completion: on each new image of a DRIVE item or of one of its counter items (``COUNTS#``; the event source mapping
  filters out FRAME items), the drive's state is read (one consistent Query: contracts.drive_table.state_query) and
  ``decide_completion(trigger, drive item, counters)`` decides: when the extraction has ended and processed +
  quarantined + failed (summed over the counter items) == extracted, ``status`` moves
  ``extracted`` -> ``building`` with a conditional update (exactly one invocation wins), then the builder's input
  manifest file (the documents named by the drive's FRAME items + the drive manifest) is written, the timeline
  table's partitions of the drive are registered (glue:BatchCreatePartition, existing ones kept) and the builder
  started. A DRIVE image already ``building`` (the claim's own stream record, a retry after a failed start) starts
  the builder again, which the deterministic name makes harmless.

Waiting for capacity: when CreateProcessingJob refuses a start with ``ResourceLimitExceeded`` (the account's
Processing quota, CREATE_PROCESSING_JOB_DOC), the start is deferred instead of failed: a ``CapacityWait`` (drive, job,
attempts, deadline) goes to the capacity-wait queue with a message timer (1..15 minutes, SQS_TIMERS_DOC), the DRIVE
item records ``waiting_for_capacity`` (contracts.drive_table.WAITING_FOR_CAPACITY) and the invocation succeeds. The
launcher consumes that queue (partial batch responses, LAMBDA_SQS_ERRORS_DOC): ``decide_retry`` -> rebuild the same
request (same deterministic name) -> start it, or defer it again, or, past the deadline, send it to the queue's
dead-letter queue (alarmed). A replayed message (no deadline) starts a fresh wait.

Every write to the drives table retries conflicts (contracts.drive_table.retry_conflicts: botocore does not). Other
errors are raised: S3's asynchronous invocation retries (then the function's failed-invocation queue), the stream's
event source mapping retries (then its on-failure queue).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from roadseg_lambda import aws, drive_jobs

from contracts import drive_table as T
from contracts.drives import DriveId, DriveKeyError, DriveOutputs, drive_of_log_key
from contracts.lambda_env import METRICS_NAMESPACE, DrivesEnvironment
from contracts.naming import drive_job_name
from segcore.results import iso8601, utc_now

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))


@lru_cache(maxsize=1)
def environment() -> DrivesEnvironment:
    return DrivesEnvironment.from_env(os.environ)


def _code(exc: BaseException) -> str | None:
    return aws.error_code(exc)


def conditional_write(write: Any) -> bool:
    """Run a conditional write of the drives table, retrying conflicts (T.retry_conflicts): True when written,
    False when its condition failed (an answer, never retried); other errors are raised."""
    try:
        T.retry_conflicts(write)
    except ClientError as exc:
        if _code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


# ------------------------------------------------------------------------------------------------- launch


def decide_launch(key: str) -> DriveId | None:
    """The drive a created object starts, or None for an object under drives/ that is not a drive log."""
    try:
        return drive_of_log_key(key)
    except DriveKeyError:
        return None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def launch_handler(event: dict, context: LambdaContext) -> dict:
    env = environment()
    records = event.get("Records") or []
    if records and all(r.get("eventSource") == "aws:sqs" for r in records):
        return retry_waiting(env, records)  # the capacity-wait queue
    outcomes = []
    for record in records:
        key = unquote_plus(record["s3"]["object"]["key"])
        drive = decide_launch(key)
        if drive is None:
            logger.info("not a drive log, ignored", extra={"key": key})
            outcomes.append("ignored")
            continue
        with logger.append_context_keys(drive_id=str(drive), key=key):
            outcomes.append(launch(env, drive, key))
    return {"outcomes": outcomes}


def launch(env: DrivesEnvironment, drive: DriveId, key: str) -> str:
    s3, sagemaker = aws.s3_client(), aws.sagemaker_client()
    log_keys = [key]
    if key.endswith("/" + drive_jobs.ROS2_METADATA):  # a ROS 2 bag directory: all of its objects
        prefix = key[: -len(drive_jobs.ROS2_METADATA)]
        log_keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env.inference_bucket,
                                                                                      Prefix=prefix)
                    for o in page.get("Contents", [])]
    shards = drive_jobs.shard_keys(log_keys)
    if shards:
        s3.put_object(Bucket=env.inference_bucket, Key=DriveOutputs(drive).prefix + drive_jobs.EXTRACT_INPUTS,
                      ContentType="application/json",
                      Body=json.dumps(drive_jobs.input_manifest(env.inference_bucket, shards)).encode())
    request = extraction_request(env, drive, log_keys)
    created = create_drive_item(env, drive, log_keys, request["ProcessingJobName"])
    outcome = start_or_wait(env, sagemaker, request, first_wait(env, drive, EXTRACT, utc_now()))
    logger.info("drive extraction", extra={"job": request["ProcessingJobName"], "outcome": outcome,
                                           "item_created": created, "instances":
                                           request["ProcessingResources"]["ClusterConfig"]["InstanceCount"]})
    return {STARTED: "launched", EXISTS: "already_launched"}.get(outcome, outcome)


def extraction_request(env: DrivesEnvironment, drive: DriveId, log_keys: list[str]) -> dict[str, Any]:
    """The extraction's CreateProcessingJob request: the same for the launch and for a retry after a capacity wait
    (the shard manifest file, written by the launch, is at a fixed key of the drive)."""
    shard_uri = None
    if drive_jobs.shard_keys(log_keys):
        shard_uri = drive_jobs.s3_uri(env.inference_bucket, DriveOutputs(drive).prefix + drive_jobs.EXTRACT_INPUTS)
    return drive_jobs.extraction_request(env, drive, log_keys, shard_manifest_uri=shard_uri,
                                         max_bytes=env.max_input_bytes, max_pixels=env.max_input_pixels)


def build_request(env: DrivesEnvironment, drive: DriveId) -> dict[str, Any]:
    """The builder's CreateProcessingJob request (its input manifest file is at a fixed key of the drive)."""
    manifest_key = DriveOutputs(drive).prefix + drive_jobs.BUILD_INPUTS
    return drive_jobs.build_request(env, drive, drive_jobs.s3_uri(env.inference_bucket, manifest_key))


def create_drive_item(env: DrivesEnvironment, drive: DriveId, log_keys: list[str], job: str) -> bool:
    """The DRIVE item, only if absent (a redelivery or a later upload never resets the counters)."""
    item = {T.PARTITION_KEY: {"S": str(drive)}, T.SORT_KEY: {"S": T.DRIVE_ITEM}, T.STATUS: {"S": T.EXTRACTING},
            T.LOG_KEYS: {"L": [{"S": k} for k in log_keys]}, T.EXTRACTION_JOB: {"S": job},
            T.CREATED_AT: {"S": iso8601(utc_now())}}

    def put(_attempt: int) -> None:
        aws.dynamodb_client().put_item(TableName=env.drives_table, Item=item,
                                       ConditionExpression="attribute_not_exists(#pk)",
                                       ExpressionAttributeNames={"#pk": T.PARTITION_KEY})

    return conditional_write(put)


# CreateProcessingJob lists ResourceInUse ("Resource being accessed is in use"), ResourceLimitExceeded and
# ResourceNotFound: none is documented as "a job of that name exists", so DescribeProcessingJob answers that.
CREATE_PROCESSING_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html"
DESCRIBE_PROCESSING_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeProcessingJob.html"


def start_job(sagemaker: Any, request: dict[str, Any]) -> bool:
    """True: started now; False: a job of that name exists (launched before: confirmed with DescribeProcessingJob,
    whatever the create's error code). Any other failure of the create is raised."""
    try:
        sagemaker.create_processing_job(**request)
    except ClientError as exc:
        if job_exists(sagemaker, request["ProcessingJobName"]):
            logger.info("processing job exists",
                        extra={"job": request["ProcessingJobName"], "create_error": _code(exc)})
            return False
        raise
    return True


def job_exists(sagemaker: Any, name: str) -> bool:
    try:
        sagemaker.describe_processing_job(ProcessingJobName=name)
    except ClientError as exc:
        # SageMaker answers a missing job with ValidationException ("Could not find ..."), some tools with NotFound.
        if _code(exc) in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException"):
            return False
        raise
    return True


# --------------------------------------------------------------------------------------------- completion


@dataclass(frozen=True)
class Completion:
    action: str  # "ignore" | "wait" | "claim" | "launch" | "empty" | "inconsistent" | "claimed_elsewhere" |
    # "capacity_wait"
    drive_id: str | None = None
    reason: str = ""


def is_trigger(item: dict[str, Any]) -> bool:
    """A stream image that may complete its drive: the DRIVE item or one of its counter items."""
    sort_key = str(item.get(T.SORT_KEY, ""))
    return sort_key == T.DRIVE_ITEM or sort_key.startswith(T.COUNTER_ITEM_PREFIX)


def decide_completion(trigger: dict[str, Any], drive_item: dict[str, Any] | None,
                      counters: dict[str, int]) -> Completion:
    """What a new image (``trigger``, plain Python values) asks for, given the drive's DRIVE item and its outcome
    counters as read after it (contracts.drive_table.drive_state)."""
    if not is_trigger(trigger):
        return Completion("ignore", reason="not a DRIVE or counter item")
    drive_id = trigger.get(T.PARTITION_KEY)
    if trigger.get(T.SORT_KEY) == T.DRIVE_ITEM and trigger.get(T.STATUS) == T.BUILDING:
        if (drive_item or trigger).get(T.WAITING_FOR_CAPACITY):
            # The capacity-wait queue owns the start (the wait's own updates of the DRIVE item land here too).
            return Completion("capacity_wait", drive_id, "the builder waits for Processing capacity")
        return Completion("launch", drive_id, "building: (re)start the builder, idempotent by name")
    if drive_item is None:
        return Completion("wait", drive_id, "no DRIVE item (counted before the launcher created it)")
    status = drive_item.get(T.STATUS)
    if status in (T.BUILDING, T.EMPTY):
        return Completion("claimed_elsewhere", drive_id, f"status is {status} already")
    if status != T.EXTRACTION_ENDED or drive_item.get(T.EXTRACTED) is None:
        return Completion("wait", drive_id, f"extraction not ended (status {status!r})")
    extracted = int(drive_item[T.EXTRACTED])
    done = sum(int(counters.get(outcome) or 0) for outcome in T.OUTCOMES)
    if done < extracted:
        return Completion("wait", drive_id, f"{done} of {extracted} frames have an outcome")
    if done > extracted:
        return Completion("inconsistent", drive_id, f"{done} outcomes for {extracted} extracted frames")
    if extracted == 0:
        return Completion("empty", drive_id, "the extraction wrote no frame (see the drive manifest): nothing to build")
    return Completion("claim", drive_id, f"all {extracted} frames have an outcome")


_DESERIALIZER = TypeDeserializer()


def plain(image: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: _DESERIALIZER.deserialize(v) for k, v in image.items()} if image else None


def new_image(record: dict[str, Any]) -> dict[str, Any] | None:
    return plain((record.get("dynamodb") or {}).get("NewImage"))


def read_drive_state(env: DrivesEnvironment, drive_id: str) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """The DRIVE item and the summed counters, in one consistent Query (read after the trigger's write)."""
    paginator = aws.dynamodb_client().get_paginator("query")
    items = [plain(item) or {} for page in paginator.paginate(**T.state_query(env.drives_table, drive_id))
             for item in page.get("Items", [])]
    return T.drive_state(items)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def completion_handler(event: dict, context: LambdaContext) -> dict:
    env = environment()
    triggers = [new_image(record) or {} for record in event.get("Records") or []]
    outcomes = []
    for index, trigger in enumerate(triggers):
        drive_id = trigger.get(T.PARTITION_KEY)
        later = any(t.get(T.PARTITION_KEY) == drive_id and is_trigger(t) for t in triggers[index + 1:])
        if later and str(trigger.get(T.SORT_KEY, "")).startswith(T.COUNTER_ITEM_PREFIX):
            # A later record of this batch reads the drive after this one's write too: one Query per drive suffices.
            outcomes.append("superseded")
            continue
        drive_item, counters = read_drive_state(env, str(drive_id)) if is_trigger(trigger) else (None, {})
        decision = decide_completion(trigger, drive_item, counters)
        with logger.append_context_keys(drive_id=decision.drive_id):
            outcomes.append(act_on_completion(env, decision))
    return {"outcomes": outcomes}


def act_on_completion(env: DrivesEnvironment, decision: Completion) -> str:
    if decision.action in ("ignore", "wait", "claimed_elsewhere", "capacity_wait"):
        return decision.action
    if decision.action == "inconsistent":
        _count("DriveCountInconsistencies")
        logger.error("drive counters exceed the extracted frames: not built", extra={"reason": decision.reason})
        return decision.action
    drive = DriveId.parse(str(decision.drive_id))
    if decision.action == "empty":
        marked = claim(env, drive, to=T.EMPTY)
        logger.info("drive has no frames: not built", extra={"reason": decision.reason, "marked": marked})
        return "empty"
    if decision.action == "claim" and not claim(env, drive):
        logger.info("another invocation claimed the build")
        return "claimed_elsewhere"
    return start_builder(env, drive)


def claim(env: DrivesEnvironment, drive: DriveId, to: str = T.BUILDING) -> bool:
    """status extracted -> ``to`` (building, or empty), only if it is still extracted: exactly one caller gets
    True."""
    job = {":job": {"S": drive_job_name(env.job_prefix, "build", str(drive))}} if to == T.BUILDING else {}

    def update(_attempt: int) -> None:
        aws.dynamodb_client().update_item(
            TableName=env.drives_table, Key={T.PARTITION_KEY: {"S": str(drive)}, T.SORT_KEY: {"S": T.DRIVE_ITEM}},
            UpdateExpression="SET #status = :to" + (", #job = :job" if job else ""),
            ConditionExpression="#status = :extracted",
            ExpressionAttributeNames={"#status": T.STATUS, **({"#job": T.BUILD_JOB} if job else {})},
            ExpressionAttributeValues={":to": {"S": to}, ":extracted": {"S": T.EXTRACTION_ENDED}, **job})

    return conditional_write(update)


def frame_documents(env: DrivesEnvironment, drive: DriveId) -> list[dict[str, str]]:
    """The ``documents`` of every FRAME item of the drive."""
    paginator = aws.dynamodb_client().get_paginator("query")
    found = []
    for page in paginator.paginate(
            TableName=env.drives_table, KeyConditionExpression="#pk = :drive AND begins_with(#item, :frame)",
            ExpressionAttributeNames={"#pk": T.PARTITION_KEY, "#item": T.SORT_KEY, "#docs": T.DOCUMENTS},
            ExpressionAttributeValues={":drive": {"S": str(drive)}, ":frame": {"S": T.FRAME_ITEM_PREFIX}},
            ProjectionExpression="#docs"):
        for item in page.get("Items", []):
            documents = item.get(T.DOCUMENTS, {}).get("M", {})
            found.append({role: value["S"] for role, value in documents.items() if "S" in value})
    return found


def start_builder(env: DrivesEnvironment, drive: DriveId) -> str:
    """Write the builder's input manifest file, register the partitions and start the builder: "built",
    "already_building" or "waiting_for_capacity"."""
    s3, bucket = aws.s3_client(), env.inference_bucket
    keys = drive_jobs.build_input_keys(drive, frame_documents(env, drive))
    s3.put_object(Bucket=bucket, Key=DriveOutputs(drive).prefix + drive_jobs.BUILD_INPUTS,
                  ContentType="application/json", Body=json.dumps(drive_jobs.input_manifest(bucket, keys)).encode())
    if env.glue_database and env.glue_table:
        register_partitions(env, drive)
    request = build_request(env, drive)
    outcome = start_or_wait(env, aws.sagemaker_client(), request, first_wait(env, drive, BUILD, utc_now()))
    logger.info("drive build", extra={"job": request["ProcessingJobName"], "outcome": outcome,
                                      "documents": len(keys)})
    return {STARTED: "built", EXISTS: "already_building"}.get(outcome, outcome)


def register_partitions(env: DrivesEnvironment, drive: DriveId) -> int:
    """Add the drive's (vehicle, camera, date) partitions to the timeline table (existing ones are kept): the
    builder writes under them. The partitions come from the drive manifest's cameras and stamps."""
    import boto3  # the Glue client only here: the other paths never pay for it

    body = aws.s3_client().get_object(Bucket=env.inference_bucket, Key=DriveOutputs(drive).manifest)["Body"].read()
    partitions = drive_jobs.timeline_partitions(drive, json.loads(body))
    if not partitions:
        return 0
    glue = boto3.client("glue")
    table = glue.get_table(DatabaseName=env.glue_database, Name=env.glue_table)["Table"]
    requests = drive_jobs.partition_inputs(table["StorageDescriptor"], [p for p in partitions])
    created = 0
    for start in range(0, len(requests), 100):  # BatchCreatePartition takes up to 100
        batch = requests[start:start + 100]
        errors = glue.batch_create_partition(DatabaseName=env.glue_database, TableName=env.glue_table,
                                             PartitionInputList=batch).get("Errors", [])
        unexpected = [e for e in errors if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"]
        if unexpected:
            raise RuntimeError(f"glue:BatchCreatePartition failed for {unexpected}")
        created += len(batch) - len(errors)
    logger.info("timeline partitions", extra={"partitions": len(requests), "created": created})
    return created


# ---------------------------------------------------------------------------------------- capacity wait

# "You have exceeded an SageMaker resource limit" (CREATE_PROCESSING_JOB_DOC): the Processing quota of the account
# (jobs, instances of a type). It clears when other jobs end, so the start waits instead of failing.
CAPACITY_ERROR = "ResourceLimitExceeded"
# Message timers: 0 to 900 seconds per message, standard queues only (FIFO queues have none).
SQS_TIMERS_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-message-timers.html"
# Partial batch responses: the messages named in batchItemFailures come back after the visibility timeout.
LAMBDA_SQS_ERRORS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html"
MAX_DELAY_SECONDS = 900
FIRST_DELAY_SECONDS = 60
MAX_JITTER_SECONDS = 30  # a fleet's burst of drives does not come back all at once
EXTRACT, BUILD = "extract", "build"
EXPIRED_AT = "expired_at"  # in the DRIVE item's waiting_for_capacity, once the wait went to the dead-letter queue
STARTED, EXISTS, WAITING = "started", "exists", "waiting_for_capacity"


@dataclass(frozen=True)
class CapacityWait:
    """A start that SageMaker refused for capacity: the body of a capacity-wait message (JSON)."""

    drive_id: str
    job: str  # EXTRACT | BUILD
    attempts: int  # refused starts so far
    since: str  # ISO 8601 UTC, the first refusal
    deadline: str | None  # ISO 8601 UTC; None: a message replayed from the dead-letter queue (a fresh wait)

    def body(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, body: str) -> CapacityWait:
        """ValueError (one line) for anything but a capacity wait."""
        try:
            data = json.loads(body)
            wait = cls(drive_id=str(data["drive_id"]), job=str(data["job"]), attempts=int(data["attempts"]),
                       since=str(data["since"]), deadline=None if data.get("deadline") is None
                       else str(data["deadline"]))
            DriveId.parse(wait.drive_id)
            _parse_time(wait.since)
            if wait.deadline is not None:
                _parse_time(wait.deadline)
        except (ValueError, KeyError, TypeError, DriveKeyError) as exc:
            raise ValueError(f"not a capacity wait message: {exc}") from None
        if wait.job not in (EXTRACT, BUILD) or wait.attempts < 0:
            raise ValueError(f"not a capacity wait message: job {wait.job!r}, attempts {wait.attempts}")
        return wait


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def first_wait(env: DrivesEnvironment, drive: DriveId, job: str, now: datetime) -> CapacityWait:
    """The wait recorded when the first start of ``job`` is refused."""
    return CapacityWait(str(drive), job, 1, iso8601(now),
                        iso8601(now + timedelta(seconds=env.capacity_max_wait_seconds)))


def delay_seconds(attempts: int, jitter: float = 0.0) -> int:
    """The message timer after ``attempts`` refusals: 1, 2, 4, 8 minutes, then 15 (the timers' maximum)."""
    return int(min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** min(max(attempts, 1) - 1, 4) + jitter))


@dataclass(frozen=True)
class Retry:
    action: str  # "start" | "expire" | "stale" | "missing"
    wait: CapacityWait  # the wait to go on with (a replayed message: a fresh deadline)
    reason: str = ""


def decide_retry(wait: CapacityWait, drive_item: dict[str, Any] | None, now: datetime,
                 max_wait_seconds: int) -> Retry:
    """What a capacity-wait message asks for, given the drive's DRIVE item (plain values) read now."""
    if drive_item is None:
        return Retry("missing", wait, "no DRIVE item")
    status = drive_item.get(T.STATUS)
    expected = T.EXTRACTING if wait.job == EXTRACT else T.BUILDING
    if status != expected:
        return Retry("stale", wait, f"status is {status!r}, not {expected}: the {wait.job} job ran")
    if wait.deadline is None:
        fresh = replace(wait, since=iso8601(now), deadline=iso8601(now + timedelta(seconds=max_wait_seconds)))
        return Retry("start", fresh, "replayed from the dead-letter queue: a fresh wait")
    if now >= _parse_time(wait.deadline):
        return Retry("expire", wait, f"waited since {wait.since}, {wait.attempts} refused starts")
    return Retry("start", wait, f"attempt {wait.attempts + 1}")


def start_or_wait(env: DrivesEnvironment, sagemaker: Any, request: dict[str, Any], wait: CapacityWait) -> str:
    """Start the job: STARTED, EXISTS, or WAITING (refused for capacity: ``wait`` is sent to the capacity-wait queue
    and recorded on the DRIVE item). Without a capacity-wait queue, the refusal is raised."""
    kind = "Extractions" if wait.job == EXTRACT else "Builds"
    try:
        started = start_job(sagemaker, request)
    except ClientError as exc:
        if _code(exc) != CAPACITY_ERROR or not env.capacity_queue_url:
            raise
        defer(env, wait)
        if wait.attempts == 1:
            _count("DrivesWaitingForCapacity")
        logger.warning("no Processing capacity: the start waits", extra={
            "job": request["ProcessingJobName"], "attempts": wait.attempts, "deadline": wait.deadline,
            "error": aws.error_message(exc)})
        return WAITING
    _count(f"Drive{kind}Started" if started else f"Drive{kind}AlreadyStarted")
    return STARTED if started else EXISTS


def defer(env: DrivesEnvironment, wait: CapacityWait) -> None:
    """The message first (a lost item update leaves a wait that still retries; the reverse would lose the drive),
    then the DRIVE item's record of it."""
    sqs_client().send_message(QueueUrl=env.capacity_queue_url, MessageBody=wait.body(),
                              DelaySeconds=delay_seconds(wait.attempts, random.uniform(0, MAX_JITTER_SECONDS)))  # noqa: S311
    record_wait(env, wait, wait_record(wait))


def record_wait(env: DrivesEnvironment, wait: CapacityWait, record: dict[str, Any]) -> None:
    """The DRIVE item's record of a wait whose message is already sent: a failure here is logged and counted, not
    raised, since a raise would redeliver the message that was handled and start a second chain of waits."""
    try:
        update_drive_item(env, wait.drive_id, "SET #wait = :wait", {":wait": record})
    except ClientError as exc:
        _count("DriveCapacityWaitNotRecorded")
        logger.warning("capacity wait not recorded on the DRIVE item (the wait itself goes on)",
                       extra={"drive_id": wait.drive_id, "error": _code(exc)})


def wait_record(wait: CapacityWait, expired_at: str | None = None) -> dict[str, Any]:
    """The DRIVE item's ``waiting_for_capacity`` (contracts.drive_table.WAITING_FOR_CAPACITY), as DynamoDB takes it."""
    record = {"job": {"S": wait.job}, "since": {"S": wait.since}, "attempts": {"N": str(wait.attempts)},
              "deadline": {"S": str(wait.deadline)}}
    if expired_at:
        record[EXPIRED_AT] = {"S": expired_at}
    return {"M": record}


def update_drive_item(env: DrivesEnvironment, drive_id: str, expression: str,
                      values: dict[str, Any] | None = None) -> bool:
    """An update of an existing DRIVE item's capacity wait (False: no DRIVE item; never creates one)."""
    def update(_attempt: int) -> None:
        aws.dynamodb_client().update_item(
            TableName=env.drives_table, Key={T.PARTITION_KEY: {"S": drive_id}, T.SORT_KEY: {"S": T.DRIVE_ITEM}},
            UpdateExpression=expression, ConditionExpression="attribute_exists(#pk)",
            ExpressionAttributeNames={"#pk": T.PARTITION_KEY, "#wait": T.WAITING_FOR_CAPACITY},
            **({"ExpressionAttributeValues": values} if values else {}))

    return conditional_write(update)


def read_drive_item(env: DrivesEnvironment, drive_id: str) -> dict[str, Any] | None:
    found = aws.dynamodb_client().get_item(
        TableName=env.drives_table, ConsistentRead=True,
        Key={T.PARTITION_KEY: {"S": drive_id}, T.SORT_KEY: {"S": T.DRIVE_ITEM}}).get("Item")
    return plain(found)


def retry_waiting(env: DrivesEnvironment, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The capacity-wait queue's batch: each message retried on its own; those that fail are reported (partial batch
    response), come back after the visibility timeout and, after the redrive policy's receives, go to the
    dead-letter queue."""
    failures, outcomes = [], []
    for record in records:
        try:
            wait = CapacityWait.parse(record.get("body") or "")
        except ValueError as exc:
            logger.error(str(exc), extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        with logger.append_context_keys(drive_id=wait.drive_id, job=wait.job):
            try:
                outcomes.append(retry_start(env, wait, utc_now()))
            except Exception:  # reported for this message only; the others of the batch are done
                logger.exception("capacity-wait retry failed")
                if not hand_over_on_last_receive(env, wait, record):
                    failures.append({"itemIdentifier": record["messageId"]})
    logger.info("capacity-wait batch", extra={"outcomes": outcomes, "failed": len(failures)})
    return {"batchItemFailures": failures}


def hand_over_on_last_receive(env: DrivesEnvironment, wait: CapacityWait, record: dict[str, Any]) -> bool:
    """On a message's last receive, send it to the dead-letter queue with its deadline cleared (True: handled).
    The redrive policy would move it there unchanged, deadline included, and a replay after that deadline would
    expire at once instead of starting a fresh wait."""
    receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    if receives < T.CAPACITY_WAIT_RECEIVES:
        return False
    try:
        fresh = replace(wait, deadline=None)
        sqs_client().send_message(QueueUrl=env.capacity_dead_letter_url, MessageBody=fresh.body())
    except ClientError:
        logger.exception("capacity-wait message not handed to the dead-letter queue (the redrive policy will move it)")
        return False
    _count("DriveCapacityWaitsFailed")
    logger.error("capacity-wait retry failed on its last receive: the start request is in the capacity-wait "
                 "dead-letter queue (replay it there after fixing the cause)")
    return True


def retry_start(env: DrivesEnvironment, wait: CapacityWait, now: datetime) -> str:
    item = read_drive_item(env, wait.drive_id)
    decision = decide_retry(wait, item, now, env.capacity_max_wait_seconds)
    if decision.action == "missing":
        raise RuntimeError(f"capacity wait for {wait.drive_id}: {decision.reason}")
    if decision.action == "stale":
        logger.info("capacity wait no longer needed", extra={"reason": decision.reason})
        return "stale"
    if decision.action == "expire":
        expired = replace(wait, deadline=None)  # replayed from the dead-letter queue, it starts a fresh wait
        sqs_client().send_message(QueueUrl=env.capacity_dead_letter_url, MessageBody=expired.body())
        record_wait(env, wait, wait_record(wait, iso8601(now)))
        _count("DriveCapacityWaitsExpired")
        logger.error("no Processing capacity within the maximum wait: the start request is in the capacity-wait "
                     "dead-letter queue (replay it there)", extra={"reason": decision.reason})
        return "expired"
    drive = DriveId.parse(wait.drive_id)
    request = (extraction_request(env, drive, [str(k) for k in item.get(T.LOG_KEYS) or []])
               if wait.job == EXTRACT else build_request(env, drive))
    next_wait = replace(decision.wait, attempts=decision.wait.attempts + 1)
    outcome = start_or_wait(env, aws.sagemaker_client(), request, next_wait)
    if outcome != WAITING:
        update_drive_item(env, wait.drive_id, "REMOVE #wait")
        logger.info("drive job started after waiting for capacity",
                    extra={"job": request["ProcessingJobName"], "outcome": outcome, "since": wait.since})
    return outcome


@lru_cache(maxsize=1)
def sqs_client() -> Any:
    import boto3  # only the capacity wait sends messages

    return boto3.client("sqs")


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
