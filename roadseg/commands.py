"""What each ``roadseg`` command does, given a :class:`Session` (names, clients) and a :class:`Printer`.

The Click layer (``roadseg/cli.py``) parses arguments and maps exceptions to exit codes; the functions here
fetch from AWS, decide, act and print, and raise ``UserError`` / ``JobFailed`` rather than exiting.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contracts import naming
from roadseg.output import Printer, when
from roadseg.session import JobFailed, Session, UserError

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
PIPELINE_OUTPUTS = {"training": naming.TRAINING_PIPELINE_NAME, "tuning": naming.TUNING_PIPELINE_NAME}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise UserError(f"'{uri}' is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise UserError(f"'{uri}' is not an s3://bucket/key URI")
    return bucket, key


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- data --------------------------------------------------------------------------------------------------------

def data_prepare(out: Printer, *, layout: str, input_dir: Path, output_dir: Path, scheme, split_file: Path | None,
                 max_bad_fraction: float | None, workers: int, configured_max_bad_fraction: float,
                 config_source: str, overwrite: bool = False) -> None:
    """Prepare locally with the bad-pair limit the pipeline's PrepareDataset step applies (the environment's
    ``training.max_bad_pair_fraction``, named by ``config_source``) unless ``max_bad_fraction`` overrides it, so
    a dataset that passes here does not fail after the upload."""
    from training.prepare import PreparationError, prepare_dataset

    if max_bad_fraction is None:
        limit, source = configured_max_bad_fraction, f"training.max_bad_pair_fraction of {config_source}"
    else:
        limit, source = max_bad_fraction, "--max-bad-fraction"
    try:
        report = prepare_dataset(input_dir, output_dir, layout, scheme, split_file=split_file,
                                 max_bad_fraction=limit, max_bad_fraction_source=source, workers=workers,
                                 overwrite=overwrite)
    except PreparationError as exc:
        raise UserError(str(exc)) from None
    splits = report["splits"]
    out.line(f"prepared {splits['train']['images']} train and {splits['validation']['images']} validation pairs "
             f"({len(report['dropped'])} dropped, {report['dropped_fraction']:.1%}; limit {limit:.1%} from {source}) "
             f"into {output_dir}; report: {Path(output_dir) / 'report.json'}"
             + (f"; replaced {report['replaced']}" if report["replaced"] else ""))


def data_upload(session: Session, out: Printer, *, directory: Path, bucket: str | None, prefix: str | None) -> None:
    from boto3.s3.transfer import TransferConfig

    from contracts.layout import DATASETS

    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise UserError(f"{root} holds no files to upload (hidden files are skipped)")
    bucket = session.name(naming.DATASETS_BUCKET_NAME, bucket, option="--bucket")
    prefix = prefix if prefix is not None else f"{DATASETS.raw}{root.resolve().name}/"
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    total = sum(p.stat().st_size for p in files)
    s3 = session.client("s3")
    config = TransferConfig(multipart_threshold=64 * 1024**2, max_concurrency=8)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload",
              disable=True if out.quiet else None) as bar:
        for path in files:
            key = prefix + path.relative_to(root).as_posix()
            s3.upload_file(str(path), bucket, key, Callback=bar.update, Config=config)
    out.line(f"uploaded {len(files)} files ({human_bytes(total)}) to s3://{bucket}/{prefix}")


# -- pipeline ----------------------------------------------------------------------------------------------------

def pipeline_name(session: Session, pipeline: str) -> str:
    """``training`` / ``tuning`` (the environment's pipelines) or an explicit pipeline name."""
    if pipeline in PIPELINE_OUTPUTS:
        return session.name(PIPELINE_OUTPUTS[pipeline], option="--pipeline <name>")
    return pipeline


def parse_params(pairs: Sequence[str]) -> list[dict[str, str]]:
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


def pipeline_start(session: Session, out: Printer, *, pipeline: str, params: Sequence[str], wait: bool,
                   timeout: float, poll_interval: float, dataset: str | None = None) -> None:
    from contracts.layout import DATASETS

    sm = session.client("sagemaker")
    name = pipeline_name(session, pipeline)
    parameters = parse_params(params)
    if dataset:
        if any(p["Name"] == "InputDataS3Uri" for p in parameters):
            raise UserError("give either --dataset or --param InputDataS3Uri=..., not both")
        bucket = session.name(naming.DATASETS_BUCKET_NAME)
        parameters.append({"Name": "InputDataS3Uri", "Value": f"s3://{bucket}/{DATASETS.raw}{dataset.strip('/')}/"})
    _check_params(sm, name, parameters)
    request: dict[str, Any] = {"PipelineName": name}
    if parameters:
        request["PipelineParameters"] = parameters
    arn = sm.start_pipeline_execution(**request)["PipelineExecutionArn"]
    out.line(arn)
    state = "Executing"
    if wait:
        deadline = time.monotonic() + timeout if timeout else None
        last = None
        while True:
            execution = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
            state = execution["PipelineExecutionStatus"]
            if state != last:
                out.info(f"{time.strftime('%H:%M:%S')} {state}")
                last = state
            if state in TERMINAL_EXECUTION_STATES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                out.document({"execution_arn": arn, "status": state})
                raise JobFailed(f"still {state} after {timeout:g} s; check later with: "
                                f"roadseg pipeline status --execution {arn}")
            time.sleep(poll_interval)
        out.document({"execution_arn": arn, "status": state})
        if state != "Succeeded":
            reason = execution.get("FailureReason")
            raise JobFailed(f"execution {state}" + (f": {reason}" if reason else ""))
        out.line("execution Succeeded")
        return
    out.document({"execution_arn": arn, "status": state})


def _step_details(sm: Any, arn: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Steps of an execution, or ``(None, why)`` when the endpoint does not implement the call."""
    from botocore.exceptions import ClientError

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


def pipeline_status(session: Session, out: Printer, *, execution_arn: str) -> None:
    sm = session.client("sagemaker")
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    state = execution["PipelineExecutionStatus"]
    out.line(f"execution: {execution_arn}", f"status:    {state}",
             f"started:   {when(execution.get('CreationTime'))}",
             f"updated:   {when(execution.get('LastModifiedTime'))}")
    if execution.get("FailureReason"):
        out.line(f"failure:   {execution['FailureReason']}")
    steps, why = _step_details(sm, execution_arn)
    if steps is None:
        out.line(f"note: step details unavailable from this endpoint (ListPipelineExecutionSteps: {why})")
    elif not steps:
        out.line("steps: none started yet")
    else:
        out.table(["STEP", "STATUS", "STARTED", "ENDED", "FAILURE"],
                  [[s.get("StepName", "?"), s.get("StepStatus", "?"), when(s.get("StartTime")),
                    when(s.get("EndTime")), s.get("FailureReason", "")] for s in steps])
    out.document({
        "execution_arn": execution_arn, "status": state, "started": execution.get("CreationTime"),
        "updated": execution.get("LastModifiedTime"), "failure": execution.get("FailureReason"),
        "steps": None if steps is None else [
            {"name": s.get("StepName"), "status": s.get("StepStatus"), "started": s.get("StartTime"),
             "ended": s.get("EndTime"), "failure": s.get("FailureReason")} for s in steps],
        "steps_unavailable": why,
    })


def pipeline_list(session: Session, out: Printer, *, limit: int) -> None:
    sm = session.client("sagemaker")
    rows = []
    for kind in PIPELINE_OUTPUTS:
        name = pipeline_name(session, kind)
        page = sm.list_pipeline_executions(PipelineName=name, SortBy="CreationTime", SortOrder="Descending",
                                           MaxResults=limit)
        for summary in page.get("PipelineExecutionSummaries", []):
            rows.append({"pipeline": name, "execution_arn": summary.get("PipelineExecutionArn"),
                         "status": summary.get("PipelineExecutionStatus"), "started": summary.get("StartTime")})
    out.table(["PIPELINE", "STATUS", "STARTED", "EXECUTION"],
              [[r["pipeline"], r["status"], when(r["started"]), r["execution_arn"]] for r in rows])
    if not rows:
        out.line("no executions yet: roadseg pipeline start")
    out.document(rows)


# -- model -------------------------------------------------------------------------------------------------------

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


def _packages(sm: Any, group: str) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    request: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime",
                               "SortOrder": "Descending", "MaxResults": 100}
    while True:
        page = sm.list_model_packages(**request)
        summaries.extend(page.get("ModelPackageSummaryList", []))
        if not page.get("NextToken"):
            return summaries
        request["NextToken"] = page["NextToken"]


def _metrics_uri(package: dict[str, Any]) -> str | None:
    return package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")


def _evaluation(session: Session, out: Printer, uri: str | None, classes: list[str],
                version: str) -> EvaluationSummary | None:
    from botocore.exceptions import ClientError

    if not uri:
        return None
    try:
        bucket, key = parse_s3_uri(uri)
        doc = json.loads(session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        out.warn(f"version {version}: cannot read metrics {uri}: {error.get('Code')}: {error.get('Message')}")
        return None
    except (UserError, ValueError) as exc:
        out.warn(f"version {version}: metrics {uri} are not an evaluation JSON: {exc}")
        return None
    return summarize_evaluation(doc, classes)


def _cell(value: float | None, absent: str) -> str:
    return f"{value:.3f}" if value is not None else absent


def model_list(session: Session, out: Printer, *, group: str | None, with_metrics: bool,
               safety_classes: Sequence[str]) -> None:
    sm = session.client("sagemaker")
    group = session.name(naming.MODEL_PACKAGE_GROUP_NAME, group, option="--group")
    summaries = _packages(sm, group)
    if not summaries:
        out.line(f"model package group {group} has no model packages")
        out.document([])
        return
    safety = list(safety_classes)
    headers = ["VERSION", "APPROVAL", "STATUS", "CREATED", *(["mIoU", *safety] if with_metrics else ["METRICS"]),
               "ARN"]
    rows, documents = [], []
    for summary in summaries:
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        uri = _metrics_uri(package)
        version = str(package.get("ModelPackageVersion", summary.get("ModelPackageVersion", "-")))
        doc = {"version": version,
               "approval": package.get("ModelApprovalStatus", summary.get("ModelApprovalStatus")),
               "status": package.get("ModelPackageStatus"), "created": package.get("CreationTime"),
               "metrics_uri": uri, "arn": summary["ModelPackageArn"]}
        row = [version, doc["approval"] or "-", doc["status"] or "-", when(doc["created"])]
        if with_metrics:
            evaluation = _evaluation(session, out, uri, safety, version)
            doc["miou"] = evaluation.miou if evaluation else None
            doc["class_iou"] = evaluation.class_iou if evaluation else {c: None for c in safety}
            row += [_cell(doc["miou"], "-"),
                    *(_cell(evaluation.class_iou[c], "absent") if evaluation else "-" for c in safety)]
        else:
            row.append(uri or "-")
        row.append(doc["arn"])
        rows.append(row)
        documents.append(doc)
    out.table(headers, rows)
    out.document(documents)


def package_arn(session: Session, package: str, group: str | None) -> str:
    """A model package ARN, or a version number of the environment's group."""
    if package.isdigit():
        group = session.name(naming.MODEL_PACKAGE_GROUP_NAME, group, option="--group")
        arn = session.client("sagemaker").describe_model_package_group(
            ModelPackageGroupName=group)["ModelPackageGroupArn"]
        return arn.replace(":model-package-group/", ":model-package/") + f"/{package}"
    if ":model-package/" not in package:
        raise UserError(f"'{package}' is not a model package ARN (arn:aws:sagemaker:<region>:<account>:"
                        "model-package/...) or a version number")
    return package


def model_show(session: Session, out: Printer, *, package: str, group: str | None,
               safety_classes: Sequence[str]) -> None:
    arn = package_arn(session, package, group)
    described = session.client("sagemaker").describe_model_package(ModelPackageName=arn)
    uri = _metrics_uri(described)
    version = str(described.get("ModelPackageVersion", "-"))
    evaluation = _evaluation(session, out, uri, list(safety_classes), version)
    containers = described.get("InferenceSpecification", {}).get("Containers", [])
    doc = {"arn": arn, "version": version, "approval": described.get("ModelApprovalStatus"),
           "status": described.get("ModelPackageStatus"), "created": described.get("CreationTime"),
           "approval_note": described.get("ApprovalDescription"),
           "model_data_url": containers[0].get("ModelDataUrl") if containers else None,
           "metrics_uri": uri, "miou": evaluation.miou if evaluation else None,
           "class_iou": evaluation.class_iou if evaluation else None}
    out.line(*(f"{key + ':':<15}{'-' if value is None else when(value) if key == 'created' else value}"
               for key, value in doc.items() if key != "class_iou"))
    if evaluation:
        out.table(["CLASS", "IoU"], [[c, _cell(v, "absent")] for c, v in evaluation.class_iou.items()])
    out.document(doc)


def model_set_approval(session: Session, out: Printer, *, package: str, group: str | None, status: str,
                       note: str | None) -> None:
    arn = package_arn(session, package, group)
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if note is not None:
        if len(note) > APPROVAL_NOTE_LIMIT:
            raise UserError(f"--note is {len(note)} characters; SageMaker keeps at most {APPROVAL_NOTE_LIMIT}")
        request["ApprovalDescription"] = note
    if status == "Rejected" and not (note or "").strip():
        raise UserError("reject needs a --note saying why (it is kept as the package's ApprovalDescription)")
    session.client("sagemaker").update_model_package(**request)
    out.line(f"{arn}: {status}" + (f" ({note})" if note else ""))


# -- endpoint ----------------------------------------------------------------------------------------------------

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


def object_exists(s3: Any, uri: str) -> bool:
    """Whether an s3:// URI names an object (HeadObject; missing codes answer False, other errors raise)."""
    from botocore.exceptions import ClientError

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
            time.sleep(min(poll_interval, remaining))
    for item in pending.values():
        failures.append(f"{item.path.name}: no result after {timeout:g} s; it will appear at {item.output}")
    if failures:
        raise JobFailed("\n".join(failures))


def _collect(s3: Any, out: Printer, item: _Pending, probabilities: bool, out_dir: Path, scheme) -> list[str]:
    import numpy as np

    from roadseg.imaging import decode_mask_png, write_outputs
    from segcore.recordio import RecordIOError, argmax_mask, decode_probabilities

    body = _read_object(s3, item.output)
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


# -- env ---------------------------------------------------------------------------------------------------------

def env_outputs(session: Session, out: Printer) -> None:
    found = session.all_outputs()
    if not found:
        raise UserError(f"no stack of environment '{session.env}' is deployed in {session.region} "
                        f"(make deploy ENV={session.env})")
    out.table(["STACK", "OUTPUT", "VALUE"],
              [[stack, key, value] for stack, outputs in found.items() for key, value in sorted(outputs.items())])
    out.document(found)


def env_costs(out: Printer, environments: Sequence[str]) -> None:
    from dataclasses import asdict

    from envconfig.config import ConfigError, load_config
    from envconfig.costs import cost_table, endpoint_costs, load_prices

    try:
        configs = [load_config(name) for name in environments]
        prices = load_prices()
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    out.line(cost_table(configs, prices))
    out.document([{**asdict(c), "idle_usd_per_month": round(c.idle_usd_per_month, 2),
                   "usd_per_1000_frames": round(c.usd_per_1000_frames, 4)}
                  for config in configs for c in endpoint_costs(config, prices)])
