"""SageMaker asynchronous inference notifications (the SNS message body), parsed and checked.

Shape (AWS "Check prediction results" documentation)::

    {"awsRegion": "us-east-1", "eventTime": "2022-01-25T22:46:00.608Z", "receivedTime": "2022-01-25T22:46:00.455Z",
     "invocationStatus": "Completed" | "Failed", "failureReason": "ClientError: ..." (Failed only),
     "requestParameters": {"endpointName": "...", "inputLocation": "s3://...", "contentType": "...", "accept": "..."},
     "responseParameters": {"contentType": "...", "outputLocation": "s3://..."} (Completed; Failed may carry
     "failureLocation" when S3FailurePath is configured),
     "inferenceId": "...", "eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "InferenceResult"}

``parse_async_notification`` raises ``NotificationError`` with ``kind`` "malformed" (not JSON, missing or
mistyped fields) or "foreign" (another endpoint, or an input outside this pipeline's async input prefix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from segcore.keys import identity_from_async_input_key, parse_s3_uri
from segcore.results import parse_iso8601

COMPLETED = "Completed"
FAILED = "Failed"


class NotificationError(ValueError):
    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind  # "malformed" | "foreign"
        self.reason = reason


@dataclass(frozen=True)
class AsyncNotification:
    status: str  # COMPLETED | FAILED
    inference_id: str
    endpoint_name: str
    input_location: str
    input_bucket: str
    input_key: str
    identity: str
    output_location: str | None
    failure_location: str | None
    failure_reason: str | None
    event_time: datetime | None
    received_time: datetime | None

    @property
    def endpoint_latency_ms(self) -> int | None:
        if self.event_time is None or self.received_time is None:
            return None
        return max(0, round((self.event_time - self.received_time).total_seconds() * 1000))


def parse_async_notification(
    message: str | None, *, endpoint_name: str, inference_bucket: str, async_input_prefix: str
) -> AsyncNotification:
    if not isinstance(message, str) or not message.strip():
        raise NotificationError("malformed", "the SNS message is empty")
    try:
        doc = json.loads(message)
    except json.JSONDecodeError as exc:
        raise NotificationError("malformed", f"the SNS message is not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(doc, dict):
        raise NotificationError("malformed", f"the SNS message is a JSON {type(doc).__name__}, not an object")
    source = doc.get("eventSource")
    if source is not None and source != "aws:sagemaker":
        raise NotificationError("foreign", f"eventSource is {source!r}, not 'aws:sagemaker'")

    status = doc.get("invocationStatus")
    if status not in (COMPLETED, FAILED):
        raise NotificationError("malformed", f"invocationStatus must be 'Completed' or 'Failed', got {status!r}")
    inference_id = doc.get("inferenceId")
    if not isinstance(inference_id, str) or not inference_id:
        raise NotificationError("malformed", "inferenceId is missing")
    request = doc.get("requestParameters")
    if not isinstance(request, dict):
        raise NotificationError("malformed", "requestParameters is missing")
    endpoint = request.get("endpointName")
    if not isinstance(endpoint, str) or not endpoint:
        raise NotificationError("malformed", "requestParameters.endpointName is missing")
    if endpoint != endpoint_name:
        raise NotificationError(
            "foreign", f"endpoint {endpoint!r} is not this pipeline's async endpoint {endpoint_name!r}"
        )
    input_location = request.get("inputLocation")
    try:
        input_bucket, input_key = parse_s3_uri(input_location)
    except ValueError as exc:
        raise NotificationError("malformed", f"requestParameters.inputLocation: {exc}") from None
    identity = identity_from_async_input_key(input_key, async_input_prefix)
    if input_bucket != inference_bucket or identity is None:
        raise NotificationError(
            "foreign", f"input {input_location} is not under s3://{inference_bucket}/{async_input_prefix}"
        )

    response = doc.get("responseParameters")
    response = response if isinstance(response, dict) else {}
    output_location = response.get("outputLocation")
    failure_location = response.get("failureLocation")
    if status == COMPLETED:
        try:
            parse_s3_uri(output_location)
        except ValueError as exc:
            raise NotificationError("malformed", f"responseParameters.outputLocation: {exc}") from None
    failure_reason = doc.get("failureReason")
    return AsyncNotification(
        status=status,
        inference_id=inference_id,
        endpoint_name=endpoint,
        input_location=input_location,
        input_bucket=input_bucket,
        input_key=input_key,
        identity=identity,
        output_location=output_location if isinstance(output_location, str) else None,
        failure_location=failure_location if isinstance(failure_location, str) else None,
        failure_reason=str(failure_reason) if failure_reason is not None else None,
        event_time=parse_iso8601(doc.get("eventTime")),
        received_time=parse_iso8601(doc.get("receivedTime")),
    )
