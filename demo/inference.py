"""Stages 5-8, the deployed inference path with the Lambda handlers in-process: the SQS messages of the bucket
notification to ``ingest.handler``, the STAND-IN SEGMENTER answering the async invocations, the topics'
notifications to ``postprocess.handler``, and one frame through ``realtime.handler``."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

from contracts.layout import INFERENCE
from demo.awsenv import AwsClients
from demo.lambdas import SERVICE_NAMES, LambdaContext, Lambdas
from demo.log import RehearsalLog
from demo.options import Names
from demo.report import Report
from demo.standin import LABEL, NOTE, AsyncEndpointEmulator, SceneFrame, StandInRuntime, StandInSegmenter
from envconfig.config import EnvironmentConfig
from envconfig.lambda_env import preprocessor_environment


def function_environment(config: EnvironmentConfig, scheme: Any, names: Names, version: str) -> dict[str, str]:
    """The preprocessor functions' environment as the inference stack sets it (envconfig.lambda_env)."""
    env = preprocessor_environment(config, scheme, inference_bucket=names.inference_bucket,
                                   async_endpoint_name=names.async_endpoint,
                                   realtime_endpoint_name=names.realtime_endpoint,
                                   model_package_version=version,  # the stack takes it from the package ARN
                                   drives_table=names.drives_table)
    # Rehearsal override: overlays to look at (config: preprocessing.write_overlay).
    return dataclasses.replace(env, write_overlay=True).to_env()


def s3_event_with_version_ids(body: str, version_of: Callable[[str, str], str | None]) -> str:
    """An S3 event notification as S3 sends it for a versioned bucket: ``s3.object.versionId`` set (moto leaves it
    out). ``version_of(bucket, key)`` answers the object's current version; test events pass through unchanged."""
    event = json.loads(body)
    records = event.get("Records") if isinstance(event, dict) else None
    if not records:
        return body
    for record in records:
        s3_part = record.get("s3", {})
        obj = s3_part.get("object", {})
        if "key" in obj and "versionId" not in obj:
            version = version_of(s3_part.get("bucket", {}).get("name", ""), unquote_plus(obj["key"]))
            if version:
                obj["versionId"] = version
    return json.dumps(event)


# ---------------------------------------------------------------------------------------- 5. ingest


def _receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                    WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def ingest(aws: AwsClients, config: EnvironmentConfig, names: Names, arns: dict[str, str], lambdas: Lambdas,
            runtime: StandInRuntime, env: dict[str, str], report: Report, log: RehearsalLog) -> None:
    sqs, s3 = aws("sqs"), aws("s3")
    messages = _receive_all(sqs, arns["queue_url"])

    def version_of(bucket: str, key: str) -> str | None:
        return s3.head_object(Bucket=bucket, Key=key).get("VersionId")

    report.test_events = sum(1 for m in messages if '"s3:TestEvent"' in m["Body"])
    size = config.preprocessing.batch_size
    for start in range(0, len(messages), size):  # what the SQS event source mapping hands the function
        batch = messages[start:start + size]
        bodies = [s3_event_with_version_ids(m["Body"], version_of) for m in batch]
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": body,
            "attributes": m.get("Attributes", {}), "messageAttributes": {},
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # the body handed on, as SQS reports it
            "eventSource": "aws:sqs", "eventSourceARN": arns["queue_arn"], "awsRegion": names.region,
        } for m, body in zip(batch, bodies, strict=True)]}
        with lambdas.environment({**env, "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES["ingest"]}):
            response = lambdas.ingest.handler(event, LambdaContext(SERVICE_NAMES["ingest"], region=names.region))
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        report.ingest_batches += 1
        report.ingest_item_failures += len(failed)
        for m in batch:  # successes are deleted; failures stay for the retry (then the DLQ)
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=arns["queue_url"], ReceiptHandle=m["ReceiptHandle"])
    report.async_invocations = len(runtime.async_requests)
    log(f"{len(messages)} SQS messages ({report.test_events} s3:TestEvent) in {report.ingest_batches} batch(es) of "
        f"<= {size}; {len(runtime.async_requests)} async invocations; {report.ingest_item_failures} item failures")


# -------------------------------------------------------------------------------- 6. async endpoint


def answer_async(aws: AwsClients, names: Names, arns: dict[str, str], runtime: StandInRuntime,
                 segmenter: StandInSegmenter, lambdas: Lambdas, report: Report, log: RehearsalLog) -> None:
    emulator = AsyncEndpointEmulator(aws("s3"), aws("sns"), region=names.region,
                                     success_topic_arn=arns["success_topic"], error_topic_arn=arns["error_topic"],
                                     segmenter=segmenter, log=lambda m: log(m, console=False))
    for request in runtime.async_requests:
        status = emulator.answer(request, lambdas.metadata.parse_async_input_metadata)
        report.async_answers[status] = report.async_answers.get(status, 0) + 1
    log(f"{LABEL}: answered {len(runtime.async_requests)} async invocation(s): masks under "
        f"s3://{names.inference_bucket}/{INFERENCE.async_output} (metadata stand-in=true), notifications on "
        f"{names.success_topic}")


# ----------------------------------------------------------------------------------- 7. postprocess


def postprocess(aws: AwsClients, names: Names, arns: dict[str, str], lambdas: Lambdas, env: dict[str, str],
                report: Report, log: RehearsalLog) -> None:
    sqs = aws("sqs")
    messages = _receive_all(sqs, arns["tap_url"])
    for message in messages:
        envelope = json.loads(message["Body"])
        topic = envelope.get("TopicArn", "")
        record = {  # one SNS record per invocation, as SNS invokes a subscribed Lambda
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": arns.get(f"subscription:{topic}", f"{topic}:rehearsal"),
            "Sns": {"Type": envelope.get("Type", "Notification"), "MessageId": envelope.get("MessageId"),
                    "TopicArn": topic, "Subject": envelope.get("Subject"), "Message": envelope.get("Message"),
                    "Timestamp": envelope.get("Timestamp"), "SignatureVersion": envelope.get("SignatureVersion"),
                    "Signature": envelope.get("Signature"), "SigningCertUrl": envelope.get("SigningCertURL"),
                    "UnsubscribeUrl": envelope.get("UnsubscribeURL"), "MessageAttributes": {}},
        }
        with lambdas.environment({**env, "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES["postprocess"]}):
            result = lambdas.postprocess.handler({"Records": [record]},
                                                 LambdaContext(SERVICE_NAMES["postprocess"], region=names.region))
        for outcome in result.get("outcomes", []):
            report.postprocess_outcomes[outcome] = report.postprocess_outcomes.get(outcome, 0) + 1
        sqs.delete_message(QueueUrl=arns["tap_url"], ReceiptHandle=message["ReceiptHandle"])
    log(f"{len(messages)} notification(s) -> postprocess.handler: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.postprocess_outcomes.items())))


# -------------------------------------------------------------------------------------- 8. real-time


def answer_realtime(config: EnvironmentConfig, names: Names, lambdas: Lambdas, runtime: StandInRuntime,
                    env: dict[str, str], first: tuple[SceneFrame, bytes], report: Report, out: Path,
                    log: RehearsalLog) -> None:
    frame, body = first
    pre = config.preprocessing
    imaging = lambdas.imaging
    prepared = imaging.prepare_frame(body, imaging.PrepareOptions(
        target_size=(pre.target_width, pre.target_height), roi=pre.roi, max_bytes=pre.max_input_bytes,
        max_pixels=pre.max_input_pixels, jpeg_quality=pre.jpeg_quality))
    runtime.expect_realtime(prepared.jpeg, frame.key, prepared.crop_box, prepared.output_size)
    now = datetime.now(UTC)
    relative = frame.key  # the function reads vehicle/camera/timestamp from ?key=
    event = {  # Lambda function URL, payload format 2.0 (the stack's RealtimeFrontUrl)
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": f"key={quote(relative)}",
        "headers": {"content-type": "image/jpeg", "host": "rehearsal.lambda-url.localhost"},
        "queryStringParameters": {"key": relative},
        "requestContext": {"accountId": "123456789012", "apiId": "rehearsal", "domainName": "localhost",
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                           "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
                           "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                    "userAgent": "roadseg-rehearsal"}},
        "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True,
    }
    with lambdas.environment({**env, "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES["realtime"]}):
        response = lambdas.realtime.handler(event, LambdaContext(SERVICE_NAMES["realtime"], region=names.region))
    payload = json.loads(response["body"])
    folder = out / "realtime"
    folder.mkdir(parents=True, exist_ok=True)
    report.realtime = {"status_code": response["statusCode"], "key": frame.key}
    if response["statusCode"] == 200:
        mask_path = folder / "frame-0.mask.png"
        mask_path.write_bytes(base64.b64decode(payload.pop("mask_png_base64")))
        payload["stand_in"] = True
        payload["note"] = f"{LABEL}: {NOTE}"
        report.realtime.update(summary=payload["summary"], mask_path=mask_path)
    (folder / "frame-0.response.json").write_text(json.dumps(payload, indent=1))
    log(f"real-time front answered {response['statusCode']} for {frame.key} (mask from the {LABEL})")
