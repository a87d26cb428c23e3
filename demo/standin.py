"""The STAND-IN SEGMENTER and the emulated SageMaker runtime around it. Not a model.

No trained model exists locally, and moto cannot run one (its ``invoke_endpoint_async`` writes a canned
answer to a random bucket and sends no notification; its ``invoke_endpoint`` cannot take binary bodies).
So the rehearsal answers inference requests itself: the mask of a frame is the scene generator's exact
ground truth for that frame (same seed), cropped to the frame's region of interest and resized to the
inference size with nearest neighbour, then degraded by tile noise: a ``noise`` fraction of 8x8 tiles take
the labels of a neighbouring tile, which looks like a model's boundary errors and invents no classes.

Everything produced here is labelled: S3 objects carry ``stand-in`` metadata and a tag, log lines say
"STAND-IN SEGMENTER", and the rehearsal's summary says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError
from PIL import Image

from segcore.scenes import generate_scene

LABEL = "STAND-IN SEGMENTER"
NOTE = "stand-in output: scene ground truth + tile noise, not a model prediction"
TILE = 8
S3_METADATA = {"stand-in": "true", "produced-by": "roadseg local rehearsal stand-in segmenter"}
S3_TAGGING = "roadseg-demo=stand-in-segmenter"


def degrade(mask: np.ndarray, fraction: float, rng: np.random.Generator, tile: int = TILE) -> np.ndarray:
    """Copy of ``mask`` where ``fraction`` of the tiles carry a neighbouring tile's labels (boundary confusion)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"noise fraction must be within 0..1, got {fraction}")
    h, w = mask.shape
    rows, cols = -(-h // tile), -(-w // tile)
    count = round(fraction * rows * cols)
    out = mask.copy()
    if count == 0:
        return out
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    for index in rng.choice(rows * cols, size=count, replace=False):
        ty, tx = divmod(int(index), cols)
        dy, dx = offsets[int(rng.integers(len(offsets)))]
        sy, sx = min(max(ty + dy, 0), rows - 1), min(max(tx + dx, 0), cols - 1)
        target = out[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
        source = mask[sy * tile:(sy + 1) * tile, sx * tile:(sx + 1) * tile]
        th, tw = min(target.shape[0], source.shape[0]), min(target.shape[1], source.shape[1])
        target[:th, :tw] = source[:th, :tw]
    return out


def encode_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def _nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return np.asarray(Image.fromarray(mask, "L").resize(tuple(size), Image.Resampling.NEAREST))


@dataclass(frozen=True)
class SceneFrame:
    """One generated camera frame: where it was put and how to regenerate its ground truth."""

    key: str
    scene_seed: int
    width: int
    height: int
    index: int


class StandInSegmenter:
    """Answers a frame's inference with its ground truth (cropped, resized, degraded). Deterministic per seed."""

    def __init__(self, noise: float, seed: int, log: Callable[[str], None]) -> None:
        self.noise = noise
        self.seed = seed
        self.log = log
        self.frames: dict[str, SceneFrame] = {}
        self._truth: dict[str, np.ndarray] = {}

    def register(self, frame: SceneFrame, truth: np.ndarray | None = None) -> None:
        self.frames[frame.key] = frame
        if truth is not None:
            self._truth[frame.key] = truth

    def ground_truth(self, key: str) -> np.ndarray:
        if key not in self._truth:
            frame = self.frames[key]
            self._truth[key] = generate_scene(frame.width, frame.height, frame.scene_seed)[1]
        return self._truth[key]

    def segment(self, key: str, crop_box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
        frame = self.frames[key]
        left, top, right, bottom = crop_box
        truth = _nearest(self.ground_truth(key)[top:bottom, left:right], size)
        rng = np.random.default_rng([self.seed, frame.index, 7])
        mask = degrade(truth, self.noise, rng)
        self.log(f"{LABEL}: {key} -> {size[0]}x{size[1]} mask (ground truth, {self.noise:.0%} tiles perturbed)")
        return mask


def _validate(client: Any, operation: str, params: dict[str, Any]) -> None:
    """Check the request against the SageMaker runtime API model, as botocore would before sending it."""
    from botocore.validate import validate_parameters

    model = client.meta.service_model.operation_model(operation)
    validate_parameters(params, model.input_shape)


@dataclass
class AsyncRequest:
    params: dict[str, Any]
    received_at: datetime
    output_location: str


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, amt: int | None = None) -> bytes:
        data, self._data = (self._data, b"") if amt is None else (self._data[:amt], self._data[amt:])
        return data


@dataclass
class StandInRuntime:
    """What ``roadseg_lambda.aws.runtime_client()`` returns during the rehearsal (both endpoints emulated).

    ``invoke_endpoint_async`` records the request (validated against the API model) and answers like
    SageMaker: an ``OutputLocation`` under the endpoint's configured S3 output path; the mask is written
    there later by :meth:`AsyncEndpointEmulator.answer`. ``invoke_endpoint`` answers the real-time front at
    once with the stand-in mask of a frame registered with :meth:`expect_realtime` (matched by body hash).
    """

    real: Any  # a boto3 sagemaker-runtime client: used for its API model only, never called
    segmenter: StandInSegmenter
    output_prefix_uri: str  # s3://<inference bucket>/<async-output prefix> (the endpoint's S3OutputPath)
    failure_prefix_uri: str  # s3://<inference bucket>/<async-failures prefix> (its S3FailurePath)
    async_requests: list[AsyncRequest] = field(default_factory=list)
    realtime_requests: list[dict[str, Any]] = field(default_factory=list)
    _expected: dict[str, tuple[str, tuple[int, int, int, int], tuple[int, int]]] = field(default_factory=dict)

    def invoke_endpoint_async(self, **params: Any) -> dict[str, Any]:
        _validate(self.real, "InvokeEndpointAsync", params)
        name = uuid.uuid4()
        location = f"{self.output_prefix_uri}{name}.out"
        self.async_requests.append(AsyncRequest(dict(params), datetime.now(UTC), location))
        return {"InferenceId": params.get("InferenceId") or str(name), "OutputLocation": location,
                "FailureLocation": f"{self.failure_prefix_uri}{name}-error.out"}

    def expect_realtime(self, body: bytes, key: str, crop_box: tuple[int, int, int, int],
                        size: tuple[int, int]) -> None:
        self._expected[hashlib.sha256(body).hexdigest()] = (key, crop_box, size)

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        _validate(self.real, "InvokeEndpoint", params)
        self.realtime_requests.append({k: v for k, v in params.items() if k != "Body"})
        expected = self._expected.get(hashlib.sha256(params["Body"]).hexdigest())
        if expected is None:
            raise ClientError({"Error": {"Code": "ModelError", "Message": f"{LABEL}: unknown frame"},
                               "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")
        key, crop_box, size = expected
        mask = self.segmenter.segment(key, crop_box, size)
        return {"Body": _Body(encode_png(mask)), "ContentType": "image/png", "InvokedProductionVariant": "AllTraffic"}


class AsyncEndpointEmulator:
    """Plays the async endpoint's part after InvokeEndpointAsync: output object, then the SNS notification."""

    def __init__(self, s3: Any, sns: Any, *, region: str, success_topic_arn: str, error_topic_arn: str,
                 segmenter: StandInSegmenter, log: Callable[[str], None]) -> None:
        self.s3, self.sns, self.region = s3, sns, region
        self.success_topic_arn, self.error_topic_arn = success_topic_arn, error_topic_arn
        self.segmenter, self.log = segmenter, log

    def answer(self, request: AsyncRequest, metadata_parser: Callable[[dict[str, str]], Any]) -> str:
        """Write the stand-in mask and publish the notification; returns "Completed" or "Failed"."""
        params = request.params
        in_bucket, in_key = params["InputLocation"][5:].split("/", 1)
        note: dict[str, Any] = {
            "awsRegion": self.region,
            "receivedTime": _iso(request.received_at),
            "requestParameters": {"accept": params.get("Accept"), "contentType": params.get("ContentType"),
                                  "endpointName": params["EndpointName"], "inputLocation": params["InputLocation"]},
            "inferenceId": params.get("InferenceId"),
            "eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "InferenceResult",
        }
        try:
            head = self.s3.head_object(Bucket=in_bucket, Key=in_key)
            meta = metadata_parser(head.get("Metadata", {}))
            mask = self.segmenter.segment(meta.source_key, meta.crop_box, meta.inference_size)
        except (ClientError, ValueError, KeyError) as exc:
            note.update(eventTime=_iso(datetime.now(UTC)), invocationStatus="Failed",
                        failureReason=f"ClientError: {LABEL} could not answer: {exc}")
            self.sns.publish(TopicArn=self.error_topic_arn, Message=json.dumps(note))
            self.log(f"{LABEL}: {params['InputLocation']} failed: {exc}")
            return "Failed"
        out_bucket, out_key = request.output_location[5:].split("/", 1)
        self.s3.put_object(Bucket=out_bucket, Key=out_key, Body=encode_png(mask), ContentType="image/png",
                           Metadata=S3_METADATA, Tagging=S3_TAGGING)
        note.update(eventTime=_iso(datetime.now(UTC)), invocationStatus="Completed",
                    responseParameters={"contentType": "image/png", "outputLocation": request.output_location})
        self.sns.publish(TopicArn=self.success_topic_arn, Message=json.dumps(note))
        return "Completed"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
