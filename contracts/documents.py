"""Versioned shapes of the JSON documents roadseg writes for others to read.

- result (``results/<id>.json``, and the real-time front's ``summary``), written by the postprocess and real-time
  functions and read by consumers of the inference bucket;
- failure (``failures/<id>.json``) and quarantine (``quarantine/<key>.reason.json``), written by the functions;
- evaluation (``evaluation.json``), written by training/evaluate.py and read by the quality gate (JsonGet) and
  the model registry (model metrics).

Each document carries ``schema_version``. A schema lists the keys a reader may rely on and their types; extra keys
are allowed, so adding one is not a new version, while removing or retyping one is. A key that readers may rely on
from now on is a new minor version (evaluation 1.1 adds ``head`` and ``serving``, 1.2 ``incumbent`` and
``reference_profile``); the validators keep accepting the older versions. The validators are plain Python (no
jsonschema in the Lambda bundle or the processing container).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RESULT_SCHEMA_VERSION = "1.0"
FAILURE_SCHEMA_VERSION = "1.0"
QUARANTINE_SCHEMA_VERSION = "1.0"
EVALUATION_SCHEMA_VERSION = "1.2"


class DocumentError(ValueError):
    """A document does not match its schema; ``key`` is the dotted path of the offending key."""

    def __init__(self, document: str, key: str, problem: str) -> None:
        super().__init__(f"{document} document: {key}: {problem}")
        self.document, self.key, self.problem = document, key, problem


# ---------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Nullable:
    of: Any


@dataclass(frozen=True)
class ListOf:
    item: Any
    length: int | None = None


@dataclass(frozen=True)
class MapOf:
    """An object with arbitrary string keys (class names) and values of one type."""

    value: Any


NUMBER = "number"  # int or float, never bool
STR, INT, BOOL = str, int, bool


def _type_name(spec: Any) -> str:
    if spec == NUMBER:
        return "a number"
    if isinstance(spec, Nullable):
        return f"{_type_name(spec.of)} or null"
    if isinstance(spec, ListOf):
        return f"a list{f' of {spec.length}' if spec.length is not None else ''} of {_type_name(spec.item)}"
    if isinstance(spec, (MapOf, dict)):
        return "an object"
    return {str: "a string", int: "an integer", bool: "a boolean", float: "a number"}.get(spec, str(spec))


def _check(document: str, path: str, value: Any, spec: Any) -> None:
    def fail(problem: str) -> None:
        raise DocumentError(document, path, problem)

    if isinstance(spec, Nullable):
        if value is not None:
            _check(document, path, value, spec.of)
        return
    wrong = f"must be {_type_name(spec)}, got {type(value).__name__}"
    if spec == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(wrong)
    elif spec is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(wrong)
    elif isinstance(spec, type):
        if not isinstance(value, spec):
            fail(wrong)
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            fail(wrong)
        if spec.length is not None and len(value) != spec.length:
            fail(f"must have {spec.length} items, got {len(value)}")
        for index, item in enumerate(value):
            _check(document, f"{path}[{index}]", item, spec.item)
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            fail(wrong)
        for key, item in value.items():
            _check(document, f"{path}.{key}", item, spec.value)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            fail(wrong)
        _check_keys(document, path, value, spec)
    else:  # pragma: no cover - a schema bug, not a document problem
        raise TypeError(f"unknown schema type {spec!r}")


def _check_keys(document: str, prefix: str, value: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    for key, spec in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in value:
            raise DocumentError(document, path, "required key is missing")
        _check(document, path, value[key], spec)


def _validate(document: str, doc: Any, schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise DocumentError(document, "", f"must be a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if "schema_version" not in doc:
        raise DocumentError(document, "schema_version", "required key is missing")
    if version not in schemas:
        raise DocumentError(document, "schema_version", f"unknown version {version!r} (known: {', '.join(schemas)})")
    _check_keys(document, "", doc, schemas[version])
    return doc


# -------------------------------------------------------------------------------------------- schemas

_SIZE = {"width": INT, "height": INT}
_BOX = ListOf(INT, 4)
_FRAME = {"source_bucket": Nullable(STR), "frame_key": Nullable(STR), "vehicle": Nullable(STR),
          "camera": Nullable(STR), "timestamp": Nullable(STR)}

RESULT_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "inference_id": STR,
        "mode": STR,  # "async" | "realtime"
        **_FRAME,
        "original_size": _SIZE,
        "inference_size": _SIZE,
        "crop_box": _BOX,
        "model_package_version": Nullable(STR),
        "endpoint_name": Nullable(STR),
        "uploaded_at": Nullable(STR),
        "completed_at": STR,
        "latency_ms": Nullable(INT),
        "endpoint_latency_ms": Nullable(INT),
        "pixels": {"mask_width": INT, "mask_height": INT, "total": INT, "ignored": INT, "unknown": INT},
        "class_fractions": MapOf(NUMBER),
        "drivable_area_fraction": Nullable(NUMBER),
        "vulnerable_road_users": {
            "present": BOOL,
            "min_pixels": INT,
            "objects": ListOf({"class": STR, "class_index": INT, "pixels": INT, "bbox": _BOX, "bbox_inference": _BOX}),
        },
        "mask_uri": Nullable(STR),
        "overlay_uri": Nullable(STR),
    },
}

FAILURE_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "status": STR,  # "failed"
        "inference_id": Nullable(STR),
        **_FRAME,
        "code": STR,
        "reason": STR,
        "endpoint_name": Nullable(STR),
        "model_package_version": Nullable(STR),
        "input_location": Nullable(STR),
        "failure_location": Nullable(STR),
        "uploaded_at": Nullable(STR),
        "failed_at": STR,
        "latency_ms": Nullable(INT),
    },
}

QUARANTINE_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "source_bucket": STR,
        "source_key": STR,
        "code": STR,  # empty, too_large_bytes, unsupported_format, too_many_pixels, too_small, truncated, ...
        "reason": STR,
        "detected_format": Nullable(STR),
        "size_bytes": Nullable(INT),
        "quarantined_at": STR,
        "source_version_id": Nullable(STR),
        "inference_id": Nullable(STR),
    },
}

_EVALUATION_1_0: dict[str, Any] = {
    "schema_version": STR,
    "scheme": STR,
    "num_images": INT,
    "num_classes": INT,
    "classes": ListOf(STR),
    "metrics": {"mIoU": NUMBER, "pixel_accuracy": NUMBER, "frequency_weighted_iou": NUMBER,
                "mean_accuracy": NUMBER},
    "per_class": MapOf({"iou": Nullable(NUMBER), "accuracy": Nullable(NUMBER), "support": INT, "predicted": INT,
                        "status": STR}),
    "gate": MapOf(NUMBER),  # "mIoU" and one value per class: what the quality gate reads
    "confusion_matrix": ListOf(ListOf(INT)),
    "multiclass_classification_metrics": {"accuracy": {"value": NUMBER, "standard_deviation": STR}},
}
# What was measured: 1.1 adds the segmentation head of the model and how its predictions were made. ``serving`` is
# null only when the predictions were scored as given, at the annotations' resolution (local runs, the rehearsal); the
# pipelines always measure the serving path: validation frames prepared exactly as the ingest function prepares them
# (target size, ROI, JPEG quality), masks mapped back to the annotations (nearest neighbour, undoing scale and crop),
# pixels outside the ROI not scored (the service never sees them).
_SERVING = {
    "target_size": _SIZE,  # the size frames are fitted inside (TARGET_WIDTH x TARGET_HEIGHT)
    "roi": Nullable(ListOf(NUMBER, 4)),  # [left, top, right, bottom] fractions of the frame; null: the whole frame
    "jpeg_quality": INT,
    "inference_sizes": ListOf({"width": INT, "height": INT, "images": INT}),  # what the model saw, per size
    "restored_with": STR,  # "nearest"
    "outside_roi": STR,  # "not_scored"
    "pixels_outside_roi": INT,  # labelled pixels left out because they lie outside the ROI
}
_METRICS = {"mIoU": NUMBER, "pixel_accuracy": NUMBER, "frequency_weighted_iou": NUMBER, "mean_accuracy": NUMBER}
# 1.2: the incumbent (the approved model when the candidate was gated, scored on the same pixels; null for a first
# model) and the reference profile written next to the report (contracts.signals.REFERENCE_PROFILE_FILE; null when
# none was written). ``regression`` is what the gate compares with its tolerance: incumbent minus candidate IoU,
# "mIoU" and per class, 0 where a class has no ground-truth pixels.
_INCUMBENT = {
    "model_data": Nullable(STR),
    "model_package": Nullable(STR),
    "metrics": _METRICS,
    "per_class": _EVALUATION_1_0["per_class"],
    "delta": MapOf(Nullable(NUMBER)),  # candidate minus incumbent IoU per class
    "regression": MapOf(NUMBER),
    "tolerance": Nullable(NUMBER),
    "beyond_tolerance": Nullable(ListOf(STR)),
}
EVALUATION_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": _EVALUATION_1_0,
    "1.1": {**_EVALUATION_1_0, "head": Nullable(STR), "serving": Nullable(_SERVING)},
}
EVALUATION_SCHEMAS["1.2"] = {**EVALUATION_SCHEMAS["1.1"], "incumbent": Nullable(_INCUMBENT),
                             "reference_profile": Nullable(STR)}


def validate_result(doc: Any) -> dict[str, Any]:
    """The document itself if it is a valid result document, else DocumentError naming the key. The optional
    ``signals`` object (contracts.signals.RESULT_SIGNALS_KEY: the frame's signals, written by the postprocess function;
    absent from older documents and the real-time front's) is checked when present."""
    _validate("result", doc, RESULT_SCHEMAS)
    from contracts.signals import RESULT_SIGNALS_KEY, validate_result_signals  # contracts.signals imports this module

    if RESULT_SIGNALS_KEY in doc:
        validate_result_signals(doc[RESULT_SIGNALS_KEY])
    return doc


def validate_failure(doc: Any) -> dict[str, Any]:
    return _validate("failure", doc, FAILURE_SCHEMAS)


def validate_quarantine(doc: Any) -> dict[str, Any]:
    return _validate("quarantine", doc, QUARANTINE_SCHEMAS)


def validate_evaluation(doc: Any) -> dict[str, Any]:
    """Also checks what the gate relies on: one gate value per class plus mIoU, a C x C confusion matrix."""
    _validate("evaluation", doc, EVALUATION_SCHEMAS)
    classes = doc["classes"]
    if doc["num_classes"] != len(classes):
        raise DocumentError("evaluation", "num_classes", f"is {doc['num_classes']} but classes lists {len(classes)}")
    missing = [name for name in ("mIoU", *classes) if name not in doc["gate"]]
    if missing:
        raise DocumentError("evaluation", f"gate.{missing[0]}", "required key is missing")
    matrix = doc["confusion_matrix"]
    if len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
        raise DocumentError("evaluation", "confusion_matrix", f"must be {len(classes)} x {len(classes)}")
    return doc
