"""``roadseg model``: the registered model packages with their evaluations; approve and reject."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts import naming
from roadseg.commands.s3_objects import parse_s3_uri
from roadseg.output import Printer, when
from roadseg.session import Session, UserError

APPROVAL_NOTE_LIMIT = 1024


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
