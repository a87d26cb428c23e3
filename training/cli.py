"""roadseg command line: prepare and upload data, run the pipelines, review models, segment images.

    python -m training.cli prepare --layout cityscapes --input DIR --output DIR [--scheme cityscapes]
    python -m training.cli upload --dir DIR --bucket BUCKET [--prefix raw/<name>/]
    python -m training.cli start --pipeline NAME [--param Key=Value ...] [--wait]
    python -m training.cli status --execution ARN
    python -m training.cli models --group NAME [--with-metrics]
    python -m training.cli approve --arn ARN [--note TEXT]
    python -m training.cli reject --arn ARN --note TEXT
    python -m training.cli invoke --endpoint NAME --image FILE --out-dir DIR
    python -m training.cli submit --endpoint NAME --bucket BUCKET --image FILE [FILE ...] --out-dir DIR

Every command takes ``--region`` (default: AWS_DEFAULT_REGION, then the profile's region). User errors and
AWS errors print one message (the AWS error code and message, never a traceback) and exit with status 2;
a pipeline execution or async inference that fails or times out exits with status 1.
All AWS clients come from :func:`make_client`, so tests can point them at moto or stub them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from stacks.layout import DATASETS, INFERENCE
from training.classes import SCHEME_NAMES, VULNERABLE_ROAD_USERS, ClassScheme, get_scheme, load_classes_file
from training.recordio import CONTENT_TYPE as RECORDIO_CONTENT_TYPE
from training.recordio import RecordIOError, argmax_mask, decode_probabilities

PROG = "python -m training.cli"
REALTIME_PAYLOAD_LIMIT = 6_291_456  # SageMaker real-time request/response body limit (6 MiB)
ASYNC_PAYLOAD_LIMIT = 1024**3  # async inference input limit (1 GB)
APPROVAL_NOTE_LIMIT = 1024
TERMINAL_EXECUTION_STATES = ("Succeeded", "Failed", "Stopped")
# What an endpoint that lacks an operation answers: moto raises NotImplementedError in-process and
# returns HTTP 500 (code "500") as a server; AWS-compatible stand-ins use these codes or HTTP 501.
UNSUPPORTED_OPERATION_CODES = frozenset(
    {"NotImplemented", "NotImplementedException", "UnknownOperationException", "InvalidAction",
     "UnsupportedOperation", "500", "501"}
)
MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class UserError(Exception):
    """Something the user can fix: bad arguments, missing files, payload too large."""


def make_client(service: str, region: str) -> Any:
    """The one place AWS clients are created (tests replace it to use moto or botocore's Stubber)."""
    config = Config(user_agent_extra="roadseg-cli", retries={"mode": "standard"},
                    read_timeout=70 if service == "sagemaker-runtime" else 60)
    return boto3.session.Session(region_name=region).client(service, config=config)


class Aws:
    """Clients of one region, created on first use through :func:`make_client`."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = make_client(service, self.region)
        return self._clients[service]


def resolve_region(explicit: str | None) -> str:
    region = explicit or os.environ.get("AWS_DEFAULT_REGION") or boto3.session.Session().region_name
    if not region:
        raise UserError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    return region


# ------------------------------------------------------------------------------------------ helpers


def _print(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise UserError(f"'{uri}' is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise UserError(f"'{uri}' is not an s3://bucket/key URI")
    return bucket, key


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def _scheme(args: argparse.Namespace) -> ClassScheme:
    try:
        custom = load_classes_file(args.classes_file) if getattr(args, "classes_file", None) else None
        return get_scheme(args.scheme, custom)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value or "-")


# ------------------------------------------------------------------------------------ image helpers


def jpeg_payload(path: Path) -> tuple[bytes, bool]:
    """The request body for an image file: JPEG files as they are, other images re-encoded as RGB JPEG.

    Returns ``(body, converted)``. The algorithm documents ``image/jpeg`` requests only.
    """
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return data, False
    try:
        with Image.open(io.BytesIO(data)) as img:
            buf = io.BytesIO()
            img.convert("RGB").save(buf, "JPEG", quality=95)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path} is not an image Pillow can read: {exc}") from None
    return buf.getvalue(), True


def decode_mask_png(body: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(body)) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise UserError(f"{what} is a {img.mode} image, expected a single-channel class-index PNG")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{what} is not a PNG mask ({len(body)} bytes): {exc}") from None


def overlay(image: Image.Image, mask: np.ndarray, scheme: ClassScheme, alpha: float = 0.5) -> Image.Image:
    """The image with each classified pixel blended with its class colour; unknown values stay untouched."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if base.shape[:2] != mask.shape:
        mask = np.asarray(Image.fromarray(mask).resize((base.shape[1], base.shape[0]), Image.Resampling.NEAREST))
    colours = np.asarray(scheme.palette(), dtype=np.float32).reshape(256, 3)[mask]
    known = mask < scheme.num_classes
    out = base.copy()
    out[known] = base[known] * (1 - alpha) + colours[known] * alpha
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def write_outputs(image_bytes: bytes, mask: np.ndarray, stem: str, out_dir: Path, scheme: ClassScheme) -> list[Path]:
    """``<stem>_mask.png`` (class indices, scheme palette) and ``<stem>_overlay.png`` (alpha 0.5)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(np.unique(mask).tolist()) - scheme.valid_values())
    if unknown:
        _warn(f"{stem}: mask holds values {unknown[:10]} that are not classes of the '{scheme.name}' scheme "
              f"(0..{scheme.num_classes - 1}): is --scheme right?")
    mask_img = Image.fromarray(mask.astype(np.uint8))
    mask_img.putpalette(scheme.palette())  # L -> P: viewers show class colours, values stay class indices
    mask_path = out_dir / f"{stem}_mask.png"
    mask_img.save(mask_path)
    with Image.open(io.BytesIO(image_bytes)) as img:
        if img.size != (mask.shape[1], mask.shape[0]):
            _warn(f"{stem}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {img.size[0]}x{img.size[1]}; "
                  "the overlay resizes the mask")
        overlay_path = out_dir / f"{stem}_overlay.png"
        overlay(img, mask, scheme).save(overlay_path)
    return [mask_path, overlay_path]


# ----------------------------------------------------------------------------------------- commands


def cmd_prepare(args: argparse.Namespace) -> int:
    from training.prepare import PreparationError, prepare_dataset

    scheme = _scheme(args)
    try:
        report = prepare_dataset(args.input, args.output, args.layout, scheme, split_file=args.split_file,
                                 max_bad_fraction=args.max_bad_fraction, workers=max(1, args.workers))
    except PreparationError as exc:
        raise UserError(str(exc)) from None
    splits = report["splits"]
    _print(f"prepared {splits['train']['images']} train and {splits['validation']['images']} validation pairs "
           f"({len(report['dropped'])} dropped) into {args.output}; report: {Path(args.output) / 'report.json'}")
    return 0


def cmd_upload(args: argparse.Namespace, aws: Aws) -> int:
    from boto3.s3.transfer import TransferConfig

    root = Path(args.dir)
    if not root.is_dir():
        raise UserError(f"--dir {root} is not a directory")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise UserError(f"--dir {root} holds no files to upload (hidden files are skipped)")
    prefix = args.prefix if args.prefix is not None else f"{DATASETS.raw}{root.resolve().name}/"
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    total = sum(p.stat().st_size for p in files)
    s3 = aws("s3")
    config = TransferConfig(multipart_threshold=64 * 1024**2, max_concurrency=8)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", disable=None) as bar:
        for path in files:
            key = prefix + path.relative_to(root).as_posix()
            s3.upload_file(str(path), args.bucket, key, Callback=bar.update, Config=config)
    _print(f"uploaded {len(files)} files ({_human(total)}) to s3://{args.bucket}/{prefix}")
    return 0


def _parse_params(pairs: Sequence[str]) -> list[dict[str, str]]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--param '{pair}' is not Key=Value")
        if key in params:
            raise UserError(f"--param {key} is given twice")
        params[key] = value
    return [{"Name": k, "Value": v} for k, v in params.items()]


def _check_params(sm: Any, pipeline: str, params: list[dict[str, str]]) -> None:
    """Refuse parameter names the pipeline does not declare (SageMaker would fail the execution later)."""
    if not params:
        return
    definition = sm.describe_pipeline(PipelineName=pipeline).get("PipelineDefinition") or ""
    try:
        declared = {p["Name"] for p in json.loads(definition).get("Parameters", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return  # definition not readable here: let SageMaker judge
    unknown = sorted(p["Name"] for p in params if p["Name"] not in declared)
    if unknown:
        raise UserError(f"pipeline {pipeline} has no parameter(s) {', '.join(unknown)}; it takes: "
                        f"{', '.join(sorted(declared)) or 'none'}")


def cmd_start(args: argparse.Namespace, aws: Aws) -> int:
    sm = aws("sagemaker")
    params = _parse_params(args.param or [])
    _check_params(sm, args.pipeline, params)
    request: dict[str, Any] = {"PipelineName": args.pipeline}
    if params:
        request["PipelineParameters"] = params
    arn = sm.start_pipeline_execution(**request)["PipelineExecutionArn"]
    _print(arn)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    last = None
    while True:
        execution = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        state = execution["PipelineExecutionStatus"]
        if state != last:
            print(f"{time.strftime('%H:%M:%S')} {state}", file=sys.stderr, flush=True)
            last = state
        if state in TERMINAL_EXECUTION_STATES:
            break
        if deadline is not None and time.monotonic() >= deadline:
            _warn(f"still {state} after {args.timeout} s; check later with: {PROG} status --execution {arn}")
            return 1
        time.sleep(args.poll_interval)
    if state != "Succeeded":
        reason = execution.get("FailureReason")
        _print(f"execution {state}" + (f": {reason}" if reason else ""))
        return 1
    _print("execution Succeeded")
    return 0


def _step_details(sm: Any, arn: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Steps of an execution, or ``(None, why)`` when the endpoint does not implement the call."""
    steps: list[dict[str, Any]] = []
    try:
        request: dict[str, Any] = {"PipelineExecutionArn": arn, "SortOrder": "Ascending"}
        while True:
            page = sm.list_pipeline_execution_steps(**request)
            steps.extend(page.get("PipelineExecutionSteps", []))
            if not page.get("NextToken"):
                return steps, None
            request["NextToken"] = page["NextToken"]
    except NotImplementedError as exc:  # moto, in-process
        return None, str(exc) or "not implemented"
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in UNSUPPORTED_OPERATION_CODES or status == 501:
            message = " ".join(str(error.get("Message", "")).split())[:120]
            return None, f"{code or status}: {message}".rstrip(": ")
        raise


def cmd_status(args: argparse.Namespace, aws: Aws) -> int:
    sm = aws("sagemaker")
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=args.execution)
    state = execution["PipelineExecutionStatus"]
    lines = [f"execution: {args.execution}", f"status:    {state}",
             f"started:   {_when(execution.get('CreationTime'))}",
             f"updated:   {_when(execution.get('LastModifiedTime'))}"]
    if execution.get("FailureReason"):
        lines.append(f"failure:   {execution['FailureReason']}")
    _print(*lines)
    steps, why = _step_details(sm, args.execution)
    if steps is None:
        _print(f"note: step details unavailable from this endpoint (ListPipelineExecutionSteps: {why})")
    elif not steps:
        _print("steps: none started yet")
    else:
        rows = [[s.get("StepName", "?"), s.get("StepStatus", "?"), _when(s.get("StartTime")),
                 _when(s.get("EndTime")), s.get("FailureReason", "")] for s in steps]
        _print(*format_table(["STEP", "STATUS", "STARTED", "ENDED", "FAILURE"], rows))
    return 0


@dataclass(frozen=True)
class EvaluationSummary:
    miou: float | None
    class_iou: dict[str, float | None]  # None: the class was absent from ground truth and predictions


def summarize_evaluation(doc: Any, classes: Sequence[str]) -> EvaluationSummary:
    """mIoU and per-class IoU from training/evaluate.py's evaluation.json (and a few flatter shapes)."""
    if not isinstance(doc, dict):
        return EvaluationSummary(None, {c: None for c in classes})
    metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    gate = doc.get("gate") if isinstance(doc.get("gate"), dict) else {}
    per_class = doc.get("per_class") if isinstance(doc.get("per_class"), dict) else {}

    def number(value: Any) -> float | None:
        if isinstance(value, dict):
            value = value.get("value")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    miou = next((v for v in (number(metrics.get("mIoU")), number(gate.get("mIoU")), number(doc.get("mIoU")))
                 if v is not None), None)
    ious: dict[str, float | None] = {}
    for name in classes:
        entry = per_class.get(name)
        value = number(entry.get("iou")) if isinstance(entry, dict) else None
        if value is None:
            value = number(gate.get(name))
            if value is not None and value < 0:
                value = None  # evaluate.py's "absent" gate value
        ious[name] = value
    return EvaluationSummary(miou, ious)


def cmd_models(args: argparse.Namespace, aws: Aws) -> int:
    sm = aws("sagemaker")
    summaries: list[dict[str, Any]] = []
    request: dict[str, Any] = {"ModelPackageGroupName": args.group, "SortBy": "CreationTime",
                               "SortOrder": "Descending", "MaxResults": 100}
    while True:
        page = sm.list_model_packages(**request)
        summaries.extend(page.get("ModelPackageSummaryList", []))
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    if not summaries:
        _print(f"model package group {args.group} has no model packages")
        return 0
    safety = list(args.safety_class or VULNERABLE_ROAD_USERS)
    headers = ["VERSION", "APPROVAL", "STATUS", "CREATED", "METRICS"]
    if args.with_metrics:
        headers = [*headers[:-1], "mIoU", *safety]
    headers.append("ARN")
    rows = []
    for summary in summaries:
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        uri = (package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri"))
        row = [str(package.get("ModelPackageVersion", summary.get("ModelPackageVersion", "-"))),
               package.get("ModelApprovalStatus", summary.get("ModelApprovalStatus", "-")),
               package.get("ModelPackageStatus", "-"), _when(package.get("CreationTime"))]
        if args.with_metrics:
            row.extend(_metric_cells(aws, uri, safety, row[0]))
        else:
            row.append(uri or "-")
        row.append(summary["ModelPackageArn"])
        rows.append(row)
    _print(*format_table(headers, rows))
    return 0


def _metric_cells(aws: Aws, uri: str | None, safety: list[str], version: str) -> list[str]:
    blank = ["-"] * (1 + len(safety))
    if not uri:
        return blank
    try:
        bucket, key = parse_s3_uri(uri)
        body = aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        doc = json.loads(body)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        _warn(f"version {version}: cannot read metrics {uri}: {error.get('Code')}: {error.get('Message')}")
        return blank
    except (UserError, ValueError) as exc:
        _warn(f"version {version}: metrics {uri} are not an evaluation JSON: {exc}")
        return blank
    summary = summarize_evaluation(doc, safety)

    def cell(value: float | None, absent: str) -> str:
        return f"{value:.3f}" if value is not None else absent

    return [cell(summary.miou, "-"), *(cell(summary.class_iou[c], "absent") for c in safety)]


def _set_approval(aws: Aws, arn: str, status: str, note: str | None) -> int:
    if ":model-package/" not in arn:
        raise UserError(f"'{arn}' is not a model package ARN (arn:aws:sagemaker:<region>:<account>:model-package/...)")
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if note is not None:
        if len(note) > APPROVAL_NOTE_LIMIT:
            raise UserError(f"--note is {len(note)} characters; SageMaker keeps at most {APPROVAL_NOTE_LIMIT}")
        request["ApprovalDescription"] = note
    aws("sagemaker").update_model_package(**request)
    _print(f"{arn}: {status}" + (f" ({note})" if note else ""))
    return 0


def cmd_approve(args: argparse.Namespace, aws: Aws) -> int:
    return _set_approval(aws, args.arn, "Approved", args.note)


def cmd_reject(args: argparse.Namespace, aws: Aws) -> int:
    if not args.note.strip():
        raise UserError("reject needs a --note saying why (it is kept as the package's ApprovalDescription)")
    return _set_approval(aws, args.arn, "Rejected", args.note)


def cmd_invoke(args: argparse.Namespace, aws: Aws) -> int:
    scheme = _scheme(args)
    path = Path(args.image)
    body, converted = jpeg_payload(path)
    if len(body) > REALTIME_PAYLOAD_LIMIT:
        raise UserError(_too_large(path, len(body)))
    if converted:
        _warn(f"{path.name} is not a JPEG: sending it re-encoded as JPEG (quality 95)")
    response = aws("sagemaker-runtime").invoke_endpoint(
        EndpointName=args.endpoint, ContentType="image/jpeg", Accept="image/png", Body=body)
    result = response["Body"].read()
    content_type = (response.get("ContentType") or "").split(";")[0].strip()
    if content_type and content_type != "image/png":
        raise UserError(f"endpoint {args.endpoint} answered {content_type}, not image/png: "
                        f"{result[:200].decode('utf-8', 'replace')}")
    mask = decode_mask_png(result, f"the response of {args.endpoint}")
    for written in write_outputs(body, mask, path.stem, Path(args.out_dir), scheme):
        _print(str(written))
    return 0


def _too_large(path: Path, size: int) -> str:
    return (f"{path.name} is {size:,} bytes, over the real-time limit of {REALTIME_PAYLOAD_LIMIT:,} bytes (6 MiB): "
            f"use the async endpoint instead: {PROG} submit --endpoint <async endpoint> --bucket <inference bucket> "
            f"--image {path} --out-dir <dir>")


@dataclass
class _Pending:
    path: Path
    body: bytes
    output: str
    failure: str | None


def _object_exists(s3: Any, uri: str) -> bool:
    bucket, key = parse_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in MISSING_OBJECT_CODES:
            return False
        raise


def _read_object(s3: Any, uri: str) -> bytes:
    bucket, key = parse_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def cmd_submit(args: argparse.Namespace, aws: Aws) -> int:
    scheme = _scheme(args)
    paths = [Path(p) for p in args.image]
    names: dict[str, Path] = {}
    for path in paths:
        if path.name in names:
            raise UserError(f"{path} and {names[path.name]} have the same name: their async inputs would collide")
        names[path.name] = path
    payloads = []
    for path in paths:
        body, converted = jpeg_payload(path)
        if len(body) > ASYNC_PAYLOAD_LIMIT:
            raise UserError(f"{path.name} is {len(body):,} bytes, over the async input limit of 1 GB")
        if converted:
            _warn(f"{path.name} is not a JPEG: submitting it re-encoded as JPEG (quality 95)")
        payloads.append(body)
    prefix = args.input_prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    accept = RECORDIO_CONTENT_TYPE if args.probabilities else "image/png"
    s3, runtime = aws("s3"), aws("sagemaker-runtime")
    pending: dict[str, _Pending] = {}
    for path, body in zip(paths, payloads):
        key = prefix + path.name
        s3.upload_fileobj(io.BytesIO(body), args.bucket, key)
        response = runtime.invoke_endpoint_async(
            EndpointName=args.endpoint, InputLocation=f"s3://{args.bucket}/{key}",
            ContentType="image/jpeg", Accept=accept)
        inference_id = response.get("InferenceId") or key
        pending[inference_id] = _Pending(path, body, response["OutputLocation"], response.get("FailureLocation"))
        print(f"submitted {path.name}: {inference_id} -> {response['OutputLocation']}", file=sys.stderr, flush=True)

    out_dir = Path(args.out_dir)
    failures: list[str] = []
    deadline = time.monotonic() + args.timeout
    with tqdm(total=len(pending), unit="image", desc="async inference", disable=None) as bar:
        while pending:
            for inference_id, item in list(pending.items()):
                if _object_exists(s3, item.output):
                    failures.extend(_collect(s3, item, args.probabilities, out_dir, scheme))
                elif item.failure and _object_exists(s3, item.failure):
                    reason = _read_object(s3, item.failure)[:500].decode("utf-8", "replace").strip()
                    failures.append(f"{item.path.name}: inference failed: {reason or '(empty failure file)'} "
                                    f"({item.failure})")
                else:
                    continue
                del pending[inference_id]
                bar.update(1)
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            time.sleep(min(args.poll_interval, remaining))
    for item in pending.values():
        failures.append(f"{item.path.name}: no result after {args.timeout} s; it will appear at {item.output}")
    for failure in failures:
        print(f"{PROG}: {failure}", file=sys.stderr, flush=True)
    return 1 if failures else 0


def _collect(s3: Any, item: _Pending, probabilities: bool, out_dir: Path, scheme: ClassScheme) -> list[str]:
    body = _read_object(s3, item.output)
    stem = item.path.stem
    try:
        if probabilities:
            probs = decode_probabilities(body)
            out_dir.mkdir(parents=True, exist_ok=True)
            probs_path = out_dir / f"{stem}_probs.npy"
            np.save(probs_path, probs)
            _print(str(probs_path))
            mask = argmax_mask(probs)
        else:
            mask = decode_mask_png(body, item.output)
    except (RecordIOError, UserError) as exc:
        return [f"{item.path.name}: cannot decode {item.output}: {exc}"]
    for written in write_outputs(item.body, mask, stem, out_dir, scheme):
        _print(str(written))
    return []


# ------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", default=argparse.SUPPRESS,
                        help="AWS region (default: AWS_DEFAULT_REGION, then the profile's region)")
    parser = argparse.ArgumentParser(prog=PROG, parents=[common], description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    def scheme_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--scheme", default="cityscapes", choices=SCHEME_NAMES, help="label scheme (default cityscapes)")
        p.add_argument("--classes-file", type=Path, help='scheme custom: JSON [{"name": ..., "color": [r, g, b]}]')

    p = command("prepare", "check image/mask pairs and write the algorithm's channels (runs locally)")
    p.add_argument("--layout", required=True, choices=["cityscapes", "generic"])
    p.add_argument("--input", required=True, type=Path, help="dataset root")
    p.add_argument("--output", required=True, type=Path, help="empty output directory")
    p.add_argument("--split-file", type=Path, help="generic layout: JSON or CSV split (default input/split.json)")
    p.add_argument("--max-bad-fraction", type=float, default=0.05, help="fail above this fraction of dropped pairs")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all CPUs)")
    scheme_options(p)

    p = command("upload", "upload a directory to S3 (default prefix raw/<directory name>/)")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", help="key prefix (default raw/<directory name>/)")

    p = command("start", "start a pipeline execution and print its ARN")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--param", action="append", metavar="Key=Value", help="pipeline parameter (repeatable)")
    p.add_argument("--wait", action="store_true", help="wait until the execution ends (exit 1 unless Succeeded)")
    p.add_argument("--poll-interval", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds (0: never)")

    p = command("status", "show a pipeline execution and its steps")
    p.add_argument("--execution", required=True, metavar="ARN")

    p = command("models", "list the model packages of a group")
    p.add_argument("--group", required=True)
    p.add_argument("--with-metrics", action="store_true", help="read each evaluation JSON: mIoU and safety IoUs")
    p.add_argument("--safety-class", action="append", metavar="NAME",
                   help=f"class whose IoU to show (repeatable; default {', '.join(VULNERABLE_ROAD_USERS)})")

    p = command("approve", "approve a model package (the rollout deploys it)")
    p.add_argument("--arn", required=True)
    p.add_argument("--note", help="approval description")

    p = command("reject", "reject a model package")
    p.add_argument("--arn", required=True)
    p.add_argument("--note", required=True, help="why (kept as the approval description)")

    p = command("invoke", "segment one image on the real-time endpoint (request <= 6 MiB)")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    scheme_options(p)

    p = command("submit", "segment images on the async endpoint through S3")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True, help="inference bucket (inputs go to async-input/)")
    p.add_argument("--image", required=True, nargs="+", type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for results (default 900)")
    p.add_argument("--probabilities", action="store_true",
                   help="request class probabilities (RecordIO protobuf): writes <stem>_probs.npy too")
    p.add_argument("--input-prefix", default=INFERENCE.async_input, help=argparse.SUPPRESS)
    p.add_argument("--poll-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    scheme_options(p)
    return parser


COMMANDS: dict[str, Callable[..., int]] = {
    "upload": cmd_upload, "start": cmd_start, "status": cmd_status, "models": cmd_models,
    "approve": cmd_approve, "reject": cmd_reject, "invoke": cmd_invoke, "submit": cmd_submit,
}


def _aws_error(exc: Exception) -> str:
    """One line for an AWS failure: the error code and message of the ClientError behind it."""
    error = exc if isinstance(exc, ClientError) else exc.__context__
    if not isinstance(error, ClientError):
        error = None
    if error is not None:
        info = error.response.get("Error", {})
        code, message = info.get("Code", "?"), info.get("Message", "")
        operation = getattr(error, "operation_name", "")
        return f"AWS error {code}" + (f" in {operation}" if operation else "") + f": {message}"
    return f"AWS error: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            return cmd_prepare(args)
        aws = Aws(resolve_region(getattr(args, "region", None)))
        return COMMANDS[args.command](args, aws)
    except UserError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
    except NoCredentialsError:
        print(f"{PROG} {args.command}: error: no AWS credentials found (set a profile or AWS_* variables)",
              file=sys.stderr)
    except NoRegionError:
        print(f"{PROG} {args.command}: error: no AWS region: pass --region or set AWS_DEFAULT_REGION", file=sys.stderr)
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        print(f"{PROG} {args.command}: {_aws_error(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
