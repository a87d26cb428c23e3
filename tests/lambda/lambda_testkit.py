"""Helpers shared by the Lambda tests (imported by name: this directory is on pytest's pythonpath)."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from segcore.scenes import generate_scene

CITYSCAPES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]
INGEST_BUCKET = "roadseg-ingest-test"
INFERENCE_BUCKET = "roadseg-inference-test"
ASYNC_ENDPOINT = "roadseg-async"
REALTIME_ENDPOINT = "roadseg-realtime"

BASE_ENV = {
    "INFERENCE_BUCKET": INFERENCE_BUCKET,
    "ASYNC_ENDPOINT_NAME": ASYNC_ENDPOINT,
    "REALTIME_ENDPOINT_NAME": REALTIME_ENDPOINT,
    "CLASS_NAMES": json.dumps(CITYSCAPES),
    "TARGET_WIDTH": "160",
    "TARGET_HEIGHT": "80",
    "MODEL_PACKAGE_VERSION": "7",
}


def camera_array(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A driving-like RGB frame from the project's procedural scene generator."""
    return generate_scene(width, height, seed)[0]


def encode(image: Image.Image | np.ndarray, fmt: str, **params: Any) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    return encode(Image.fromarray(mask.astype(np.uint8), "L"), "PNG")


@dataclass
class FakeContext:
    function_name: str = "roadseg-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:roadseg-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/roadseg-test"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def emitted_metrics(output: str) -> dict[str, list[float]]:
    """Metric name -> values from the EMF lines Powertools printed (capsys output)."""
    found: dict[str, list[float]] = {}
    for doc in _json_objects(output):
        if "_aws" not in doc:
            continue
        for directive in doc["_aws"].get("CloudWatchMetrics", []):
            for metric in directive.get("Metrics", []):
                value = doc.get(metric["Name"])
                values = value if isinstance(value, list) else [value]
                found.setdefault(metric["Name"], []).extend(values)
    return found


def emf_documents(output: str, namespace: str) -> list[dict]:
    """The EMF documents (one per line) whose directives publish into ``namespace``."""
    return [doc for doc in _json_objects(output)
            if any(d.get("Namespace") == namespace for d in doc.get("_aws", {}).get("CloudWatchMetrics", []))]


def _json_objects(output: str) -> list[dict]:
    """The lines of ``output`` that are JSON objects (log lines and other prints are passed over)."""
    objects = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            objects.append(doc)
    return objects


def log_records(output: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "level" in doc and "message" in doc:
            records.append(doc)
    return records


def drain_queue(env: dict[str, Any]) -> list[dict]:
    """Every message now in the queue, as the SQS records Lambda's event source mapping delivers."""
    records = []
    while True:
        response = env["sqs"].receive_message(
            QueueUrl=env["queue_url"], MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        )
        messages = response.get("Messages", [])
        if not messages:
            return records
        for message in messages:
            records.append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": env["queue_arn"],
                    "awsRegion": "us-east-1",
                }
            )
            env["sqs"].delete_message(QueueUrl=env["queue_url"], ReceiptHandle=message["ReceiptHandle"])


def sqs_event(records: list[dict]) -> dict:
    return {"Records": records}


def upload_frame(env: dict[str, Any], key: str, data: bytes) -> list[dict]:
    """Put a frame into the ingest bucket; return the S3 notification records (test events dropped)."""
    drain_queue(env)  # the s3:TestEvent sent when the notification was configured
    env["s3"].put_object(Bucket=INGEST_BUCKET, Key=key, Body=data)
    return drain_queue(env)


def sns_event(message: str | dict, topic: str = "arn:aws:sns:us-east-1:123456789012:roadseg-success") -> dict:
    body = message if isinstance(message, str) else json.dumps(message)
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic}:{uuid.uuid4()}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": topic,
                    "Subject": None,
                    "Message": body,
                    "Timestamp": "2026-01-01T00:00:01.000Z",
                    "SignatureVersion": "1",
                    "Signature": "",
                    "SigningCertUrl": "",
                    "UnsubscribeUrl": "",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def async_notification(
    *,
    inference_id: str,
    input_location: str,
    output_location: str | None = None,
    status: str = "Completed",
    endpoint: str = ASYNC_ENDPOINT,
    failure_reason: str | None = None,
) -> dict:
    """A SageMaker async inference notification, shaped as documented by AWS."""
    note: dict[str, Any] = {
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:01.250Z",
        "receivedTime": "2026-01-01T00:00:00.500Z",
        "invocationStatus": status,
        "requestParameters": {
            "accept": "image/png",
            "contentType": "image/jpeg",
            "endpointName": endpoint,
            "inputLocation": input_location,
        },
        "inferenceId": inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if status == "Completed":
        note["responseParameters"] = {"contentType": "image/png", "outputLocation": output_location}
    else:
        note["failureReason"] = failure_reason or "ClientError: Received server error (500) from model."
    return note


class RecordingRuntime:
    """Stands in for ``aws.runtime_client()``: records InvokeEndpointAsync calls, fails on demand.

    Successful calls go to the real (moto-backed) boto3 client, so botocore still validates the
    parameters. ``failures`` maps an inference id (or "*") to a list of exceptions raised in turn.
    """

    def __init__(self, real: Any):
        self.real = real
        self.calls: list[dict] = []
        self.failures: dict[str, list[Exception]] = {}

    def invoke_endpoint_async(self, **kwargs: Any) -> dict:
        self.calls.append(kwargs)
        for key in (kwargs.get("InferenceId"), "*"):
            queue = self.failures.get(key)
            if queue:
                raise queue.pop(0)
        return self.real.invoke_endpoint_async(**kwargs)


def client_error(code: str, message: str = "", status: int = 400, operation: str = "InvokeEndpointAsync") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )
