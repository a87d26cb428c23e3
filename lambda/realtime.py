"""Real-time segmentation: API Gateway REST API (proxy integration, payload v1, IAM auth) -> endpoint.

Handler string ``realtime.handler``. Also accepts Lambda function URL events (payload v2).

Request: ``POST`` with the frame (JPEG or PNG) as the body; API Gateway must treat ``image/*`` (or
``*/*``) as binary media types so the body arrives base64-encoded (``isBase64Encoded: true``). Optional
query parameter ``key``: a frame key (e.g. ``incoming/veh-1/front/2024-05-01T10:00:00Z.jpg``) whose
vehicle/camera/timestamp are parsed into the summary.

Responses (JSON):

- 200 ``{"mask_png_base64": ..., "summary": <result document, mode "realtime">}``
- 400 ``{"error": <BadFrame code>, "message": ..., "detected_format": ...}``
- 405 for other methods
- 413 ``{"error": "payload_too_large", ...}`` when the prepared JPEG exceeds REALTIME_MAX_PAYLOAD_BYTES:
  use the asynchronous path (upload the frame under ``incoming/`` of the ingest bucket)
- 502 endpoint/model error or an unusable mask; 503 endpoint throttled, missing or not ready (retry
  later, ``Retry-After`` header); 504 the endpoint did not answer in time

IAM needed: sagemaker:InvokeEndpoint on the real-time endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, LambdaFunctionUrlEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from roadseg_lambda import aws
from roadseg_lambda.imaging import BadFrame, PrepareOptions, prepare_frame
from roadseg_lambda.keys import content_inference_id, parse_frame_key
from roadseg_lambda.masks import (
    Geometry,
    MaskError,
    decode_mask_png,
    encode_mask_png,
    mask_statistics,
    restore_to_original,
)
from roadseg_lambda.results import build_result_document, utc_now
from roadseg_lambda.settings import get_settings

from contracts.lambda_env import METRICS_NAMESPACE

REQUIRED = ("REALTIME_ENDPOINT_NAME", "CLASS_NAMES")
LAMBDA_RESPONSE_LIMIT = 6_000_000  # synchronous invocation response limit is 6 MB; keep a margin for headers

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))


@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings(*REQUIRED)
    _count("RealtimeRequests")
    method, body, query, requested_at = parse_request(event)
    if method != "POST":
        return respond(
            405,
            {"error": "method_not_allowed", "message": "POST the frame (JPEG or PNG) as the body"},
            {"Allow": "POST"},
        )
    if body is None:
        _count("RealtimeBadFrames")
        return respond(400, {"error": "bad_body", "message": "the body is not valid base64"})

    inference_id = content_inference_id(body)
    frame_key = query.get("key")
    frame = parse_frame_key(frame_key, settings.key_pattern) if frame_key else None
    with logger.append_context_keys(inference_id=inference_id, frame_key=frame_key):
        try:
            prepared = prepare_frame(
                body,
                PrepareOptions(
                    target_size=settings.target_size,
                    roi=settings.roi,
                    max_bytes=settings.max_input_bytes,
                    max_pixels=settings.max_input_pixels,
                    jpeg_quality=settings.jpeg_quality,
                ),
            )
        except BadFrame as bad:
            _count("RealtimeBadFrames")
            logger.info("bad frame refused", extra={"code": bad.code, "reason": bad.reason})
            return respond(400, {"error": bad.code, "message": bad.reason, "detected_format": bad.detected_format})

        if len(prepared.jpeg) > settings.realtime_max_payload_bytes:
            _count("RealtimePayloadTooLarge")
            return respond(
                413,
                {
                    "error": "payload_too_large",
                    "message": (
                        f"the prepared frame is {len(prepared.jpeg)} bytes, above the real-time limit of "
                        f"{settings.realtime_max_payload_bytes} bytes: use the asynchronous path instead, "
                        "upload the frame to the ingest bucket under the incoming/ prefix and read the result "
                        "document from the results/ prefix"
                    ),
                    "prepared_bytes": len(prepared.jpeg),
                    "limit_bytes": settings.realtime_max_payload_bytes,
                    "async_upload_prefix": "incoming/",
                },
            )

        try:
            response = aws.runtime_client().invoke_endpoint(
                EndpointName=settings.realtime_endpoint_name,
                Body=prepared.jpeg,
                ContentType="image/jpeg",
                Accept="image/png",
            )
            mask_png = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            return endpoint_error(exc)

        try:
            mask = decode_mask_png(mask_png)
        except MaskError as exc:
            _count("RealtimeEndpointErrors")
            logger.error("endpoint returned an unusable mask", extra={"code": exc.code, "reason": exc.reason})
            return respond(
                502, {"error": "invalid_mask", "message": f"the endpoint returned an unusable mask: {exc.reason}"}
            )

        geometry = Geometry(original_size=prepared.original_size, crop_box=prepared.crop_box)
        stats = mask_statistics(
            mask,
            settings.class_names,
            ignore_index=settings.ignore_index,
            vru_min_pixels=settings.vru_min_pixels,
            geometry=geometry,
        )
        if settings.restore_original_size:
            mask_png = encode_mask_png(restore_to_original(mask, geometry, settings.ignore_index))
        completed_at = utc_now()
        summary = build_result_document(
            inference_id=inference_id,
            mode="realtime",
            source_bucket=None,
            frame=frame,
            original_size=prepared.original_size,
            inference_size=prepared.output_size,
            crop_box=prepared.crop_box,
            stats=stats,
            model_package_version=settings.model_package_version,
            endpoint_name=settings.realtime_endpoint_name,
            uploaded_at=requested_at,
            completed_at=completed_at,
            mask_uri=None,
            overlay_uri=None,
        )
        payload = {"mask_png_base64": base64.b64encode(mask_png).decode("ascii"), "summary": summary}
        if summary["latency_ms"] is not None:
            metrics.add_metric(name="RealtimeLatency", unit=MetricUnit.Milliseconds, value=summary["latency_ms"])
        _count("RealtimeResults")
        logger.info("real-time result", extra={"latency_ms": summary["latency_ms"], "vru_present": stats.vru_present})
        return respond(200, payload)


def parse_request(event: dict) -> tuple[str, bytes | None, dict[str, str], datetime | None]:
    """(method, body bytes or None when the base64 is invalid, query parameters, request time)."""
    context = event.get("requestContext") or {}
    if isinstance(context, dict) and isinstance(context.get("http"), dict):  # function URL / HTTP API v2
        request: Any = LambdaFunctionUrlEvent(event)
        epoch_ms = context.get("timeEpoch")
    else:  # REST API proxy v1
        request = APIGatewayProxyEvent(event)
        epoch_ms = context.get("requestTimeEpoch") if isinstance(context, dict) else None
    method = (request.http_method or "").upper()
    raw = request.body or ""
    if request.is_base64_encoded:
        try:
            body: bytes | None = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            body = None
    else:
        # A text body: binary media types are not configured, or a client sent text. Sniffing refuses it.
        body = raw.encode("utf-8", errors="surrogateescape")
    query = {k: v for k, v in (request.query_string_parameters or {}).items() if isinstance(v, str)}
    requested_at = datetime.fromtimestamp(epoch_ms / 1000, UTC) if isinstance(epoch_ms, (int, float)) else utc_now()
    return method, body, query, requested_at


def endpoint_error(exc: Exception) -> dict:
    _count("RealtimeEndpointErrors")
    code = aws.error_code(exc)
    message = aws.error_message(exc)
    if isinstance(exc, ReadTimeoutError):
        status, error = 504, "endpoint_timeout"
    elif aws.is_transient(exc):
        status, error = 503, "endpoint_unavailable"
    else:
        status, error = 502, "endpoint_error"
    logger.error("endpoint invocation failed", extra={"status": status, "error_code": code, "error": message})
    headers = {"Retry-After": "5"} if status == 503 else None
    return respond(
        status,
        {"error": error, "message": f"the segmentation endpoint failed: {code or type(exc).__name__}: {message}"},
        headers,
    )


def respond(status: int, payload: dict, headers: dict[str, str] | None = None) -> dict:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if len(body) > LAMBDA_RESPONSE_LIMIT:
        status, body = (
            502,
            json.dumps(
                {
                    "error": "response_too_large",
                    "message": "the response exceeds the Lambda 6 MB limit: use the asynchronous path",
                }
            ),
        )
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
