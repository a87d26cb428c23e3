"""``roadseg endpoint``: send frames to the real-time and async endpoints as the ingest function would, and show
the endpoints' state."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contracts import naming
from roadseg.commands.s3_objects import object_exists, read_object
from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError

REALTIME_PAYLOAD_LIMIT = 6_291_456  # SageMaker real-time request/response body limit (6 MiB)
ASYNC_PAYLOAD_LIMIT = 1024**3  # async inference input limit (1 GB)


def _too_large(path: Path, size: int) -> str:
    return (f"{path.name} is {size:,} bytes after the ingest preprocessing, over the real-time limit of "
            f"{REALTIME_PAYLOAD_LIMIT:,} bytes (6 MiB): "
            f"use the async endpoint instead: roadseg endpoint submit {path} --out-dir <dir>")


def endpoint_invoke(session: Session, out: Printer, *, endpoint: str | None, image: Path, out_dir: Path,
                    scheme) -> None:
    """Send what the ingest function would send for ``image`` (roadseg.imaging.serving_request) and write the mask
    restored to the original frame, with its overlay."""
    from roadseg.imaging import decode_mask_png, ingest_settings, serving_request, write_outputs

    request = serving_request(Path(image), ingest_settings(session.config))
    body = request.body
    if len(body) > REALTIME_PAYLOAD_LIMIT:
        raise UserError(_too_large(image, len(body)))
    endpoint = session.name(naming.REALTIME_ENDPOINT_NAME, endpoint, option="--endpoint")
    out.info(request.describe())
    response = session.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, ContentType="image/jpeg", Accept="image/png", Body=body)
    result = response["Body"].read()
    content_type = (response.get("ContentType") or "").split(";")[0].strip()
    if content_type and content_type != "image/png":
        raise UserError(f"endpoint {endpoint} answered {content_type}, not image/png: "
                        f"{result[:200].decode('utf-8', 'replace')}")
    mask = request.restore(decode_mask_png(result, f"the response of {endpoint}"), scheme.ignore_index)
    for written in write_outputs(request.source, mask, image.stem, out_dir, scheme):
        out.line(str(written))


@dataclass
class _Pending:
    path: Path
    request: Any  # roadseg.imaging.ServingRequest
    output: str
    failure: str | None


def endpoint_submit(session: Session, out: Printer, *, endpoint: str | None, bucket: str | None,
                    images: Sequence[Path], out_dir: Path, scheme, timeout: float, probabilities: bool,
                    input_prefix: str, poll_interval: float) -> None:
    from roadseg.imaging import ingest_settings, serving_request
    from segcore.recordio import CONTENT_TYPE as RECORDIO_CONTENT_TYPE

    paths = [Path(p) for p in images]
    names: dict[str, Path] = {}
    for path in paths:  # each goes to async-input/<stem>.jpg and comes back as <stem>_mask.png
        if path.stem in names:
            raise UserError(f"{path} and {names[path.stem]} have the same name (without extension): their async "
                            "inputs and outputs would collide")
        names[path.stem] = path
    settings = ingest_settings(session.config)
    requests = []
    for path in paths:  # what the ingest function would upload under async-input/ for this file
        request = serving_request(path, settings)
        if len(request.body) > ASYNC_PAYLOAD_LIMIT:
            raise UserError(f"{path.name} is {len(request.body):,} bytes, over the async input limit of 1 GB")
        out.info(request.describe())
        requests.append(request)
    endpoint = session.name(naming.ASYNC_ENDPOINT_NAME, endpoint, option="--endpoint")
    bucket = session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--bucket")
    prefix = input_prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    accept = RECORDIO_CONTENT_TYPE if probabilities else "image/png"
    s3, runtime = session.client("s3"), session.client("sagemaker-runtime")
    pending: dict[str, _Pending] = {}
    for path, request in zip(paths, requests):
        key = f"{prefix}{path.stem}.jpg"
        s3.upload_fileobj(io.BytesIO(request.body), bucket, key)
        response = runtime.invoke_endpoint_async(
            EndpointName=endpoint, InputLocation=f"s3://{bucket}/{key}", ContentType="image/jpeg", Accept=accept)
        inference_id = response.get("InferenceId") or key
        pending[inference_id] = _Pending(path, request, response["OutputLocation"], response.get("FailureLocation"))
        out.info(f"submitted {path.name}: {inference_id} -> {response['OutputLocation']}")

    failures: list[str] = []
    deadline = time.monotonic() + timeout
    with tqdm(total=len(pending), unit="image", desc="async inference", disable=True if out.quiet else None) as bar:
        while pending:
            for inference_id, item in list(pending.items()):
                if object_exists(s3, item.output):
                    failures.extend(_collect(s3, out, item, probabilities, out_dir, scheme))
                elif item.failure and object_exists(s3, item.failure):
                    reason = read_object(s3, item.failure)[:500].decode("utf-8", "replace").strip()
                    failures.append(f"{item.path.name}: inference failed: {reason or '(empty failure file)'} "
                                    f"({item.failure})")
                else:
                    continue
                del pending[inference_id]
                bar.update(1)
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            time.sleep(min(poll_interval, remaining))
    for item in pending.values():
        failures.append(f"{item.path.name}: no result after {timeout:g} s; it will appear at {item.output}")
    if failures:
        raise JobFailed("\n".join(failures))


def _collect(s3: Any, out: Printer, item: _Pending, probabilities: bool, out_dir: Path, scheme) -> list[str]:
    import numpy as np

    from roadseg.imaging import decode_mask_png, write_outputs
    from segcore.recordio import RecordIOError, argmax_mask, decode_probabilities

    body = read_object(s3, item.output)
    stem = item.path.stem
    try:
        if probabilities:  # saved as the endpoint answered: at the inference size, over the ROI
            probs = decode_probabilities(body)
            out_dir.mkdir(parents=True, exist_ok=True)
            probs_path = out_dir / f"{stem}_probs.npy"
            np.save(probs_path, probs)
            out.line(str(probs_path))
            mask = argmax_mask(probs)
        else:
            mask = decode_mask_png(body, item.output)
    except (RecordIOError, UserError) as exc:
        return [f"{item.path.name}: cannot decode {item.output}: {exc}"]
    mask = item.request.restore(mask, scheme.ignore_index)
    for written in write_outputs(item.request.source, mask, stem, out_dir, scheme):
        out.line(str(written))
    return []


def endpoint_status(session: Session, out: Printer) -> None:
    from botocore.exceptions import ClientError

    sm = session.client("sagemaker")
    rows = []
    for kind, key in (("real-time", naming.REALTIME_ENDPOINT_NAME), ("async", naming.ASYNC_ENDPOINT_NAME)):
        name = session.stack_outputs(naming.INFERENCE).get(key)
        doc: dict[str, Any] = {"kind": kind, "name": name, "status": "not deployed", "instance_type": None,
                               "current_instances": None, "desired_instances": None, "failure": None}
        if name:
            try:
                endpoint = sm.describe_endpoint(EndpointName=name)
            except ClientError as exc:
                if "Could not find endpoint" not in str(exc):
                    raise
            else:
                variant = (endpoint.get("ProductionVariants") or [{}])[0]
                config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
                doc.update(status=endpoint.get("EndpointStatus"), failure=endpoint.get("FailureReason"),
                           instance_type=(config.get("ProductionVariants") or [{}])[0].get("InstanceType"),
                           current_instances=variant.get("CurrentInstanceCount"),
                           desired_instances=variant.get("DesiredInstanceCount"))
        rows.append(doc)
    out.table(["ENDPOINT", "KIND", "STATUS", "INSTANCE TYPE", "INSTANCES (NOW/DESIRED)"],
              [[r["name"] or "-", r["kind"], r["status"], r["instance_type"] or "-",
                "-" if r["current_instances"] is None else f"{r['current_instances']}/{r['desired_instances']}"]
               for r in rows])
    serving = session.stack_outputs(naming.INFERENCE).get(naming.SERVING_STATUS)
    if serving:
        out.line(serving)
    out.document(rows)
