"""Real-time segmentation: Lambda function URL (IAM auth) -> real-time endpoint -> mask and summary.

Handler string ``realtime.handler``, routed by Powertools' ``LambdaFunctionUrlResolver`` (the front the stack
deploys). API Gateway REST API proxy events (payload v1) still work: the same routes and error handlers are
shared with an ``APIGatewayRestResolver`` through one ``Router``.

Request: ``POST`` (any path) with the frame (JPEG or PNG) as the body; an API Gateway REST API must treat
``image/*`` (or ``*/*``) as binary media types so the body arrives base64-encoded (``isBase64Encoded: true``).
Optional query parameter ``key``: a frame key (e.g. ``incoming/veh-1/front/2024-05-01T10:00:00Z.jpg``) whose
vehicle/camera/timestamp are parsed into the summary.

Responses (JSON):

- 200 ``{"mask_png_base64": ..., "summary": <result document, mode "realtime">}``
- 400 ``{"error": <BadFrame code>, "message": ..., "detected_format": ...}``; ``bad_body`` for invalid base64
- 405 for other methods (``Allow: POST``)
- 413 ``{"error": "payload_too_large", ...}`` when the prepared JPEG exceeds REALTIME_MAX_PAYLOAD_BYTES:
  use the asynchronous path (upload the frame under ``incoming/`` of the ingest bucket)
- 502 endpoint/model error or an unusable mask; 503 endpoint throttled, missing or not ready (retry
  later, ``Retry-After`` header); 504 the endpoint did not answer in time

Each error is an exception raised where it is detected and turned into its response by one
``exception_handler``; the route itself reads the request and the endpoint's answer (fetch), builds the result
from them (``segmentation_payload``, pure) and returns it (act).

IAM needed: sagemaker:InvokeEndpoint on the real-time endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from roadseg_lambda import aws

from contracts.lambda_env import METRICS_NAMESPACE
from contracts.layout import INFERENCE
from segcore.imaging import BadFrame, PreparedFrame, prepare_frame
from segcore.keys import content_inference_id, parse_frame_key
from segcore.masks import (
    Geometry,
    MaskError,
    decode_mask_png,
    encode_mask_png,
    mask_statistics,
    restore_to_original,
)
from segcore.results import build_result_document, utc_now
from segcore.settings import Settings, get_settings

REQUIRED = ("REALTIME_ENDPOINT_NAME", "CLASS_NAMES")
LAMBDA_RESPONSE_LIMIT = 6_000_000  # synchronous invocation response limit is 6 MB; keep a margin for headers
ANY_PATH = ".+"  # a function URL accepts every path; so does the front

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))
router = Router()


# -- errors: raised where they are detected, answered by the handlers below --------------------------------------


class InvalidBody(ValueError):
    """The body is flagged base64 but is not valid base64."""


class PayloadTooLarge(ValueError):
    """The prepared frame is above the real-time payload limit."""

    def __init__(self, prepared_bytes: int, limit_bytes: int) -> None:
        super().__init__(f"prepared frame of {prepared_bytes} bytes above the limit of {limit_bytes}")
        self.prepared_bytes = prepared_bytes
        self.limit_bytes = limit_bytes


class EndpointFailed(Exception):
    """InvokeEndpoint raised (``cause``: the botocore error)."""

    def __init__(self, cause: ClientError | BotoCoreError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@router.exception_handler(NotFoundError)
def method_not_allowed(_: NotFoundError) -> Response:
    """Every path is routed for POST, so an unmatched request is one with another method."""
    return respond(405, {"error": "method_not_allowed", "message": "POST the frame (JPEG or PNG) as the body"},
                   {"Allow": "POST"})


@router.exception_handler(InvalidBody)
def invalid_body(_: InvalidBody) -> Response:
    _count("RealtimeBadFrames")
    return respond(400, {"error": "bad_body", "message": "the body is not valid base64"})


@router.exception_handler(BadFrame)
def bad_frame(bad: BadFrame) -> Response:
    _count("RealtimeBadFrames")
    logger.info("bad frame refused", extra={"code": bad.code, "reason": bad.reason})
    return respond(400, {"error": bad.code, "message": bad.reason, "detected_format": bad.detected_format})


@router.exception_handler(PayloadTooLarge)
def payload_too_large(too_large: PayloadTooLarge) -> Response:
    _count("RealtimePayloadTooLarge")
    return respond(413, {
        "error": "payload_too_large",
        "message": (
            f"the prepared frame is {too_large.prepared_bytes} bytes, above the real-time limit of "
            f"{too_large.limit_bytes} bytes: use the asynchronous path instead, upload the frame to the ingest "
            f"bucket under the {INFERENCE.incoming} prefix and read the result document from the {INFERENCE.results} "
            "prefix"
        ),
        "prepared_bytes": too_large.prepared_bytes,
        "limit_bytes": too_large.limit_bytes,
        "async_upload_prefix": INFERENCE.incoming,
    })


@router.exception_handler(EndpointFailed)
def endpoint_failed(failed: EndpointFailed) -> Response:
    _count("RealtimeEndpointErrors")
    exc = failed.cause
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


@router.exception_handler(MaskError)
def unusable_mask(exc: MaskError) -> Response:
    _count("RealtimeEndpointErrors")
    logger.error("endpoint returned an unusable mask", extra={"code": exc.code, "reason": exc.reason})
    return respond(502, {"error": "invalid_mask", "message": f"the endpoint returned an unusable mask: {exc.reason}"})


# -- the route ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRequest:
    body: bytes
    query: dict[str, str]
    requested_at: datetime


@router.post(ANY_PATH)
def segment() -> Response:
    settings = get_settings(*REQUIRED)
    request = read_request(router.current_event)
    inference_id = content_inference_id(request.body)
    frame_key = request.query.get("key")
    logger.append_keys(inference_id=inference_id, frame_key=frame_key)

    prepared = prepare(request.body, settings)
    mask_png = invoke_endpoint(settings, prepared.jpeg)
    payload, latency_ms, vru_present = segmentation_payload(
        settings, prepared, decode_mask_png(mask_png), mask_png, inference_id=inference_id, frame_key=frame_key,
        requested_at=request.requested_at)

    if latency_ms is not None:
        metrics.add_metric(name="RealtimeLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    _count("RealtimeResults")
    logger.info("real-time result", extra={"latency_ms": latency_ms, "vru_present": vru_present})
    return respond(200, payload)


function_url_app = LambdaFunctionUrlResolver()
function_url_app.include_router(router)
rest_api_app = APIGatewayRestResolver()
rest_api_app.include_router(router)


@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    get_settings(*REQUIRED)  # a configuration error fails the invocation, loudly
    _count("RealtimeRequests")
    app = function_url_app if is_function_url_event(event) else rest_api_app
    return app.resolve(event, context)


def is_function_url_event(event: dict) -> bool:
    """Function URL (and HTTP API v2) events carry ``requestContext.http``; REST API v1 events do not."""
    context = event.get("requestContext")
    return isinstance(context, dict) and isinstance(context.get("http"), dict)


# -- fetch ----------------------------------------------------------------------------------------------------


def read_request(request: BaseProxyEvent) -> FrameRequest:
    """The frame bytes, query parameters and request time of a function URL or REST API event."""
    raw = request.body or ""
    if request.is_base64_encoded:
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBody() from None
    else:
        # A text body: binary media types are not configured, or a client sent text. Sniffing refuses it.
        body = raw.encode("utf-8", errors="surrogateescape")
    query = {k: v for k, v in (request.query_string_parameters or {}).items() if isinstance(v, str)}
    context = request.get("requestContext") or {}
    epoch_ms = context.get("timeEpoch", context.get("requestTimeEpoch")) if isinstance(context, dict) else None
    requested_at = datetime.fromtimestamp(epoch_ms / 1000, UTC) if isinstance(epoch_ms, (int, float)) else utc_now()
    return FrameRequest(body=body, query=query, requested_at=requested_at)


def prepare(body: bytes, settings: Settings) -> PreparedFrame:
    """The inference JPEG; ``BadFrame`` for a frame the pipeline refuses, ``PayloadTooLarge`` above the limit."""
    prepared = prepare_frame(body, settings.prepare_options())
    if len(prepared.jpeg) > settings.realtime_max_payload_bytes:
        raise PayloadTooLarge(len(prepared.jpeg), settings.realtime_max_payload_bytes)
    return prepared


def invoke_endpoint(settings: Settings, jpeg: bytes) -> bytes:
    """The endpoint's PNG mask; ``EndpointFailed`` for any error of the call."""
    try:
        response = aws.runtime_client().invoke_endpoint(
            EndpointName=settings.realtime_endpoint_name, Body=jpeg, ContentType="image/jpeg", Accept="image/png")
        return response["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise EndpointFailed(exc) from exc


# -- pure decision ----------------------------------------------------------------------------------------------


def segmentation_payload(settings: Settings, prepared: PreparedFrame, mask: Any, mask_png: bytes, *,
                         inference_id: str, frame_key: str | None,
                         requested_at: datetime) -> tuple[dict, int | None, bool]:
    """(response payload, latency in ms, whether vulnerable road users are present) for one decoded mask."""
    geometry = Geometry(original_size=prepared.original_size, crop_box=prepared.crop_box)
    stats = mask_statistics(mask, settings.class_names, ignore_index=settings.ignore_index,
                            vru_min_pixels=settings.vru_min_pixels, geometry=geometry,
                            vru_classes=settings.vru_classes)
    if settings.restore_original_size:
        mask_png = encode_mask_png(restore_to_original(mask, geometry, settings.ignore_index))
    summary = build_result_document(
        inference_id=inference_id,
        mode="realtime",
        source_bucket=None,
        frame=parse_frame_key(frame_key, settings.key_pattern) if frame_key else None,
        original_size=prepared.original_size,
        inference_size=prepared.output_size,
        crop_box=prepared.crop_box,
        stats=stats,
        model_package_version=settings.model_package_version,
        endpoint_name=settings.realtime_endpoint_name,
        uploaded_at=requested_at,
        completed_at=utc_now(),
        mask_uri=None,
        overlay_uri=None,
    )
    payload = {"mask_png_base64": base64.b64encode(mask_png).decode("ascii"), "summary": summary}
    return payload, summary["latency_ms"], stats.vru_present


# -- act --------------------------------------------------------------------------------------------------------


def respond(status: int, payload: dict, headers: dict[str, str] | None = None) -> Response:
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
    return Response(status_code=status, content_type="application/json", body=body,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
