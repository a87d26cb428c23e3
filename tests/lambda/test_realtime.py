"""realtime.handler: API Gateway REST (v1) and function URL events, endpoint stubbed with botocore Stubber.

moto cannot take binary InvokeEndpoint bodies (UnicodeDecodeError), so the runtime client is a real
boto3 client under ``botocore.stub.Stubber``: botocore still validates the request parameters.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
import realtime
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from lambda_testkit import REALTIME_ENDPOINT, camera_array, emitted_metrics, encode, mask_png
from PIL import Image
from roadseg_lambda import aws

from contracts.documents import validate_result
from segcore.settings import get_settings


@pytest.fixture
def stub(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    monkeypatch.setattr(aws, "runtime_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber


def rest_event(
    body: bytes | str, *, method: str = "POST", base64_encoded: bool = True, query: dict | None = None
) -> dict:
    raw = base64.b64encode(body).decode() if base64_encoded and isinstance(body, bytes) else body
    return {
        "resource": "/segment",
        "path": "/segment",
        "httpMethod": method,
        "headers": {"Content-Type": "image/jpeg"},
        "multiValueHeaders": {"Content-Type": ["image/jpeg"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/segment",
            "httpMethod": method,
            "path": "/prod/segment",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTimeEpoch": 1767225600000,
            "identity": {"sourceIp": "203.0.113.1", "userArn": "arn:aws:iam::123456789012:user/dev"},
            "accountId": "123456789012",
            "apiId": "abcdef",
        },
        "body": raw,
        "isBase64Encoded": base64_encoded,
    }


def function_url_event(body: bytes) -> dict:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "image/png"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "url-id",
            "domainName": "url-id.lambda-url.us-east-1.on.aws",
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.1",
                "userAgent": "t",
            },
            "requestId": "id",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def mask_response(mask: np.ndarray) -> dict[str, Any]:
    data = mask_png(mask)
    return {
        "Body": StreamingBody(io.BytesIO(data), len(data)),
        "ContentType": "image/png",
        "InvokedProductionVariant": "AllTraffic",
    }


EXPECTED_PARAMS = {"EndpointName": REALTIME_ENDPOINT, "Body": ANY, "ContentType": "image/jpeg", "Accept": "image/png"}


def headers_of(response: dict) -> dict[str, str]:
    """Function URL responses carry ``headers``; REST API (v1) responses, as Powertools' APIGatewayRestResolver
    builds them, ``multiValueHeaders`` (the one place the resolver-based handler answers differently)."""
    if "multiValueHeaders" in response:
        return {name: ", ".join(values) for name, values in response["multiValueHeaders"].items()}
    return response["headers"]


def body_of(response: dict) -> dict:
    assert headers_of(response)["Content-Type"] == "application/json" and response["isBase64Encoded"] is False
    return json.loads(response["body"])


def test_happy_path(stub: Stubber, context, capsys) -> None:
    frame = encode(camera_array(320, 240, seed=3), "JPEG", quality=92)
    mask = np.zeros((80, 107), dtype=np.uint8)  # TARGET 160x80: the prepared frame is 107x80
    mask[:20] = 10
    mask[50:70, 40:50] = 11
    stub.add_response("invoke_endpoint", mask_response(mask), EXPECTED_PARAMS)
    response = realtime.handler(
        rest_event(frame, query={"key": "incoming/veh-9/front/2026-01-01T00:00:00Z.jpg"}), context
    )
    assert response["statusCode"] == 200, response["body"]
    payload = body_of(response)
    returned = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload["mask_png_base64"]))))
    assert np.array_equal(returned, mask)
    summary = validate_result(payload["summary"])
    assert summary["mode"] == "realtime" and summary["endpoint_name"] == REALTIME_ENDPOINT
    assert (summary["vehicle"], summary["camera"], summary["timestamp"]) == ("veh-9", "front", "2026-01-01T00:00:00Z")
    assert summary["original_size"] == {"width": 320, "height": 240} and summary["inference_size"] == {
        "width": 107,
        "height": 80,
    }
    assert summary["class_fractions"]["person"] == round(200 / (80 * 107), 6)
    assert summary["vulnerable_road_users"]["present"] is True
    assert summary["uploaded_at"] == "2026-01-01T00:00:00.000Z" and summary["mask_uri"] is None
    assert summary["model_package_version"] == "7" and len(summary["inference_id"]) == 32
    stub.assert_no_pending_responses()
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["RealtimeResults"] == [1.0] and metrics["RealtimeRequests"] == [1.0]


def test_function_url_event_and_restored_mask(stub: Stubber, context, monkeypatch) -> None:
    monkeypatch.setenv("RESTORE_ORIGINAL_SIZE", "true")
    get_settings.cache_clear()
    stub.add_response("invoke_endpoint", mask_response(np.full((80, 107), 13, np.uint8)), EXPECTED_PARAMS)
    response = realtime.handler(function_url_event(encode(camera_array(320, 240), "PNG")), context)
    assert response["statusCode"] == 200
    payload = body_of(response)
    restored = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload["mask_png_base64"]))))
    assert restored.shape == (240, 320) and (restored == 13).all()
    assert payload["summary"]["class_fractions"] == {"car": 1.0} and payload["summary"]["frame_key"] is None


def test_prepared_frame_too_big_is_413(stub: Stubber, context, monkeypatch, capsys) -> None:
    monkeypatch.setenv("REALTIME_MAX_PAYLOAD_BYTES", "1000")
    get_settings.cache_clear()
    response = realtime.handler(rest_event(encode(camera_array(320, 240), "JPEG")), context)
    assert response["statusCode"] == 413
    payload = body_of(response)
    assert payload["error"] == "payload_too_large" and payload["limit_bytes"] == 1000
    assert "incoming/" in payload["message"] and "asynchronous" in payload["message"]
    stub.assert_no_pending_responses()  # the endpoint was not called
    assert emitted_metrics(capsys.readouterr().out)["RealtimePayloadTooLarge"] == [1.0]


@pytest.mark.parametrize(
    ("body", "base64_encoded", "code"),
    [
        (b"just some text", True, "unsupported_format"),
        ("plain text body", False, "unsupported_format"),
        (b"", True, "empty"),
        (encode(Image.fromarray(camera_array(64, 48)), "GIF"), True, "unsupported_format"),
        (encode(camera_array(160, 120), "JPEG")[:2000], True, "truncated"),
        ("%%% not base64 %%%", True, "bad_body"),
    ],
)
def test_bad_frames_are_400(stub: Stubber, context, body, base64_encoded, code) -> None:
    event = rest_event(body, base64_encoded=base64_encoded)
    if code == "bad_body":
        event["body"] = body
    response = realtime.handler(event, context)
    assert response["statusCode"] == 400
    payload = body_of(response)
    assert payload["error"] == code and payload["message"]


def test_get_is_405(stub: Stubber, context) -> None:
    response = realtime.handler(rest_event(b"", method="GET"), context)
    assert response["statusCode"] == 405 and headers_of(response)["Allow"] == "POST"
    assert body_of(response)["error"] == "method_not_allowed"


def test_function_url_get_is_405_and_responses_use_single_value_headers(stub: Stubber, context) -> None:
    event = function_url_event(b"")
    event["requestContext"]["http"]["method"] = "GET"
    response = realtime.handler(event, context)
    assert response["statusCode"] == 405
    assert response["headers"] == {"Content-Type": "application/json", "Allow": "POST"}
    assert "multiValueHeaders" not in response


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        ("ThrottlingException", 429, "Rate exceeded", 503),
        ("ServiceUnavailable", 503, "unavailable", 503),
        ("ValidationError", 400, "Endpoint roadseg-realtime of account 123456789012 not found.", 503),
        ("ModelError", 424, "Received server error (500) from primary", 502),
        ("ValidationError", 400, "1 validation error detected", 502),
    ],
)
def test_endpoint_errors(stub: Stubber, context, capsys, code, status, message, expected) -> None:
    stub.add_client_error("invoke_endpoint", service_error_code=code, service_message=message, http_status_code=status)
    response = realtime.handler(rest_event(encode(camera_array(160, 120), "JPEG")), context)
    assert response["statusCode"] == expected
    payload = body_of(response)
    assert code in payload["message"] and message in payload["message"]
    assert ("Retry-After" in headers_of(response)) == (expected == 503)
    assert emitted_metrics(capsys.readouterr().out)["RealtimeEndpointErrors"] == [1.0]


def test_endpoint_timeout_is_504(lambda_env, context, monkeypatch) -> None:
    class TimingOut:
        def invoke_endpoint(self, **kwargs: Any) -> dict:
            raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    monkeypatch.setattr(aws, "runtime_client", TimingOut)
    response = realtime.handler(rest_event(encode(camera_array(160, 120), "JPEG")), context)
    assert response["statusCode"] == 504 and body_of(response)["error"] == "endpoint_timeout"


def test_unusable_mask_is_502(stub: Stubber, context) -> None:
    data = encode(Image.new("RGB", (107, 80)), "PNG")
    stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(data), len(data))}, EXPECTED_PARAMS)
    response = realtime.handler(rest_event(encode(camera_array(320, 240), "JPEG")), context)
    assert response["statusCode"] == 502 and body_of(response)["error"] == "invalid_mask"
