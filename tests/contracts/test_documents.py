"""contracts.documents: the validators accept what the builders build and name the key of a bad document."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contracts.documents import (
    EVALUATION_SCHEMA_VERSION,
    QUARANTINE_SCHEMA_VERSION,
    RESULT_SCHEMA_VERSION,
    DocumentError,
    validate_evaluation,
    validate_failure,
    validate_quarantine,
    validate_result,
)
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from segcore.classes import custom_scheme
from segcore.keys import parse_frame_key
from segcore.masks import Geometry, mask_statistics
from segcore.results import (
    build_failure_document,
    build_quarantine_document,
    build_result_document,
    to_json_bytes,
)
from training.evaluate import evaluate_dirs

CLASSES = ["road", "sidewalk", "person", "bicycle"]
WHEN = datetime(2026, 3, 1, 8, 15, 30, 250000, tzinfo=UTC)


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as a reader gets it: through the same JSON encoding the functions write."""
    return json.loads(to_json_bytes(doc))


def result_document(*, with_frame: bool = True) -> dict[str, Any]:
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[:20] = 0
    mask[20:] = 1
    mask[30:45, 10:20] = 2
    mask[40:52, 50:60] = 3
    stats = mask_statistics(mask, CLASSES, vru_min_pixels=10, geometry=Geometry((160, 120), (0, 0, 160, 120)))
    frame = parse_frame_key("incoming/veh-1/front/2026-03-01T08:15:30.250Z.jpg", re.compile(DEFAULT_KEY_PATTERN))
    return build_result_document(
        inference_id="1769244c04e73a17ca9e18f11efbe132", mode="async" if with_frame else "realtime",
        source_bucket="roadseg-ingest" if with_frame else None, frame=frame if with_frame else None,
        original_size=(160, 120), inference_size=(80, 60), crop_box=(0, 0, 160, 120), stats=stats,
        model_package_version="7" if with_frame else None, endpoint_name="roadseg-dev-async",
        uploaded_at=WHEN if with_frame else None, completed_at=WHEN + timedelta(seconds=3),
        mask_uri="s3://b/async-output/5f0c.out" if with_frame else None, overlay_uri=None, endpoint_latency_ms=750)


def quarantine_document() -> dict[str, Any]:
    return build_quarantine_document(source_bucket="roadseg-ingest", source_key="incoming/veh-042/front/x.jpg",
                                     code="unsupported_format", reason="only JPEG and PNG frames are accepted",
                                     detected_format="gif", size_bytes=106, quarantined_at=WHEN,
                                     source_version_id="15f04ec3", inference_id="14ba6a2c6542596d45f0c012ca81565c")


def failure_document() -> dict[str, Any]:
    return build_failure_document(inference_id="abc", source_bucket=None, frame=None, code="inference_failed",
                                  reason="ClientError: boom", endpoint_name="roadseg-dev-async",
                                  input_location="s3://b/async-input/a.jpg", failed_at=WHEN)


@pytest.fixture(scope="module")
def evaluation_document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evaluation")
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    truth = np.array([[0, 0, 1], [1, 2, 2], [255, 2, 0]], dtype=np.uint8)
    prediction = np.array([[0, 1, 1], [1, 2, 0], [1, 2, 0]], dtype=np.uint8)
    Image.fromarray(truth).save(gt_dir / "a.png")
    Image.fromarray(prediction).save(pred_dir / "a.png")
    scheme = custom_scheme("three", [("road", (1, 1, 1)), ("car", (2, 2, 2)), ("person", (3, 3, 3))])
    evaluate_dirs(gt_dir, pred_dir, scheme, root / "out")
    return json.loads(Path(root / "out" / "evaluation.json").read_text())


def test_builders_stamp_the_schema_versions(evaluation_document: dict[str, Any]) -> None:
    assert result_document()["schema_version"] == RESULT_SCHEMA_VERSION
    assert quarantine_document()["schema_version"] == QUARANTINE_SCHEMA_VERSION
    assert evaluation_document["schema_version"] == EVALUATION_SCHEMA_VERSION


def test_validators_accept_what_the_builders_build(evaluation_document: dict[str, Any]) -> None:
    for doc in (result_document(), result_document(with_frame=False)):
        assert validate_result(stored(doc)) == doc
    assert validate_quarantine(stored(quarantine_document())) == quarantine_document()
    assert validate_failure(stored(failure_document())) == failure_document()
    assert validate_evaluation(evaluation_document) is evaluation_document
    assert result_document()["vulnerable_road_users"]["objects"]  # the nested list is exercised


def _without(doc: dict[str, Any], path: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[part]
    del target[last]
    return doc


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    return doc


@pytest.mark.parametrize("key", ["schema_version", "inference_id", "pixels.total", "vulnerable_road_users.present",
                                 "completed_at", "class_fractions", "overlay_uri"])
def test_a_missing_result_key_is_named(key: str) -> None:
    with pytest.raises(DocumentError, match="required key is missing") as info:
        validate_result(_without(result_document(), key))
    assert info.value.key == key and info.value.document == "result"


@pytest.mark.parametrize(
    ("key", "value", "reported"),
    [
        ("latency_ms", "3000", "latency_ms"),
        ("latency_ms", 3000.5, "latency_ms"),
        ("original_size.width", True, "original_size.width"),
        ("crop_box", [0, 0, 160], "crop_box"),
        ("class_fractions.road", "0.4", "class_fractions.road"),
        ("vulnerable_road_users.objects.0.bbox", [1, 2, 3, "4"], "vulnerable_road_users.objects[0].bbox[3]"),
        ("mode", None, "mode"),
        ("schema_version", "0.9", "schema_version"),
    ],
)
def test_a_wrongly_typed_result_key_is_named(key: str, value: Any, reported: str) -> None:
    with pytest.raises(DocumentError) as info:
        validate_result(_with(result_document(), key, value))
    assert info.value.key == reported
    assert str(info.value).startswith(f"result document: {reported}: ")


def test_quarantine_and_failure_keys_are_named() -> None:
    with pytest.raises(DocumentError) as info:
        validate_quarantine(_without(quarantine_document(), "source_key"))
    assert info.value.key == "source_key"
    with pytest.raises(DocumentError) as info:
        validate_quarantine(_with(quarantine_document(), "size_bytes", "106"))
    assert info.value.key == "size_bytes"
    with pytest.raises(DocumentError) as info:
        validate_failure(_with(failure_document(), "failed_at", None))
    assert info.value.key == "failed_at"


def test_evaluation_keys_the_gate_reads_are_checked(evaluation_document: dict[str, Any]) -> None:
    cases = [
        (_without(evaluation_document, "gate.person"), "gate.person"),
        (_without(evaluation_document, "metrics.mIoU"), "metrics.mIoU"),
        (_with(evaluation_document, "per_class.car.iou", "0.5"), "per_class.car.iou"),
        (_with(evaluation_document, "num_classes", 4), "num_classes"),
        (_with(evaluation_document, "confusion_matrix", [[1, 2, 3]]), "confusion_matrix"),
        (_without(evaluation_document, "schema_version"), "schema_version"),
    ]
    for doc, key in cases:
        with pytest.raises(DocumentError) as info:
            validate_evaluation(doc)
        assert info.value.key == key, str(info.value)


def test_evaluation_1_1_records_what_was_measured_and_1_0_stays_readable(evaluation_document: dict[str, Any]) -> None:
    assert EVALUATION_SCHEMA_VERSION == "1.2"  # 1.2 adds incumbent and reference_profile (tests/training)
    assert evaluation_document["head"] is None and evaluation_document["serving"] is None  # scored as given
    for key in ("head", "serving"):
        with pytest.raises(DocumentError) as info:
            validate_evaluation(_without(evaluation_document, key))
        assert info.value.key == key
    # Reports written before 1.1 (no head, no serving) are still valid documents of their version.
    old = {k: v for k, v in evaluation_document.items() if k not in ("head", "serving")}
    assert validate_evaluation({**old, "schema_version": "1.0"})
    serving = {"target_size": {"width": 1024, "height": 512}, "roi": [0.0, 0.0, 1.0, 0.88], "jpeg_quality": 90,
               "inference_sizes": [{"width": 1024, "height": 451, "images": 500}], "restored_with": "nearest",
               "outside_roi": "not_scored", "pixels_outside_roi": 12345}
    measured = {**evaluation_document, "head": "deeplab", "serving": serving}
    assert validate_evaluation(measured) is measured
    with pytest.raises(DocumentError) as info:
        validate_evaluation({**measured, "serving": {**serving, "roi": [0, 1]}})
    assert info.value.key == "serving.roi"
    with pytest.raises(DocumentError) as info:
        validate_evaluation(_without(measured, "serving.target_size"))
    assert info.value.key == "serving.target_size"


def test_extra_keys_are_allowed_and_non_objects_refused(evaluation_document: dict[str, Any]) -> None:
    assert validate_evaluation({**evaluation_document, "stand_in": True, "note": "rehearsal"})
    with pytest.raises(DocumentError, match="must be a JSON object"):
        validate_result([result_document()])
