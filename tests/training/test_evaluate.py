from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from contracts.documents import EVALUATION_SCHEMA_VERSION, validate_evaluation
from segcore.classes import CITYSCAPES, custom_scheme
from training.evaluate import (
    EvaluationError,
    confusion_matrix,
    evaluate_dirs,
    main,
    metrics_from_confusion,
    prediction_base,
)
from training.prepare import prepare_dataset

THREE = custom_scheme("three", [("road", (1, 1, 1)), ("car", (2, 2, 2)), ("person", (3, 3, 3))])
FOUR = custom_scheme("four", [*((c.name, c.color) for c in THREE.classes), ("bicycle", (4, 4, 4))])

# Hand-worked example: rows ground truth, columns prediction; the 255 pixel is skipped.
GT = np.array([[0, 0, 1], [1, 2, 2], [255, 2, 0]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0], [1, 2, 0]], dtype=np.uint8)
# pairs (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (2,2) (0,0)
HAND_CM = [[2, 1, 0],
           [0, 2, 0],
           [1, 0, 2]]


def save_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.astype(np.uint8))
    if palette:
        img.putpalette(palette)
    with path.open("wb") as handle:  # keeps names such as a.jpg.out, which Pillow cannot infer a format from
        img.save(handle, "PNG")
    return path


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix(GT, PRED, 3)
    assert cm.tolist() == HAND_CM
    assert cm.dtype == np.int64


def test_metrics_hand_computed():
    result = metrics_from_confusion(np.array(HAND_CM), THREE.names)
    m = result["metrics"]
    # IoU: road 2/(3+3-2), car 2/(2+3-2), person 2/(3+2-2)
    assert result["per_class"]["road"]["iou"] == pytest.approx(2 / 4)
    assert result["per_class"]["car"]["iou"] == pytest.approx(2 / 3)
    assert result["per_class"]["person"]["iou"] == pytest.approx(2 / 3)
    assert m["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)
    assert m["mean_accuracy"] == pytest.approx((2 / 3 + 2 / 2 + 2 / 3) / 3)
    assert m["frequency_weighted_iou"] == pytest.approx(3 / 8 * 1 / 2 + 2 / 8 * 2 / 3 + 3 / 8 * 2 / 3)
    assert result["per_class"]["road"] == {"iou": pytest.approx(0.5), "accuracy": pytest.approx(2 / 3),
                                           "support": 3, "predicted": 3, "status": "present"}
    assert result["per_class"]["person"]["predicted"] == 2
    assert result["gate"] == {"mIoU": pytest.approx(m["mIoU"]), "road": 0.5, "car": pytest.approx(2 / 3),
                              "person": pytest.approx(2 / 3)}
    assert result["multiclass_classification_metrics"] == {
        "accuracy": {"value": pytest.approx(0.75), "standard_deviation": "NaN"}}


def test_absent_and_prediction_only_classes():
    gt = np.array([[0, 0], [1, 1]], dtype=np.uint8)
    pred = np.array([[0, 2], [1, 1]], dtype=np.uint8)
    cm = confusion_matrix(gt, pred, 4)
    assert cm.tolist() == [[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    result = metrics_from_confusion(cm, FOUR.names)
    person, bicycle = result["per_class"]["person"], result["per_class"]["bicycle"]
    # person is only predicted: IoU 0, no accuracy (no support), still counted in mIoU.
    assert person == {"iou": 0.0, "accuracy": None, "support": 0, "predicted": 1, "status": "present"}
    assert bicycle == {"iou": None, "accuracy": None, "support": 0, "predicted": 0, "status": "absent"}
    assert result["metrics"]["mIoU"] == pytest.approx((1 / 2 + 2 / 2 + 0) / 3)
    assert result["metrics"]["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert result["gate"]["bicycle"] == -1.0 and result["gate"]["person"] == 0.0


def test_ignore_index_is_skipped():
    gt = np.array([[255, 255], [255, 1]], dtype=np.uint8)
    pred = np.array([[2, 0, ], [1, 0]], dtype=np.uint8)
    assert confusion_matrix(gt, pred, 3).tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(EvaluationError, match="no labelled pixels"):
        metrics_from_confusion(confusion_matrix(np.full((2, 2), 255, np.uint8), pred, 3), THREE.names)


def test_predictions_outside_the_scheme_raise():
    pred = PRED.copy()
    pred[0, 0], pred[2, 0] = 3, 19  # (2, 0) is an ignored ground-truth pixel: still a wrong model
    with pytest.raises(EvaluationError, match="values 3, 19 outside 0..2: the model predicts another class scheme"):
        confusion_matrix(GT, pred, 3)


def test_bad_ground_truth_and_shapes_raise():
    gt = GT.copy()
    gt[0, 0] = 7
    with pytest.raises(EvaluationError, match="ground truth holds values 7"):
        confusion_matrix(gt, PRED, 3)
    with pytest.raises(EvaluationError, match=r"shape \(3, 3\) but prediction has shape \(3, 2\)"):
        confusion_matrix(GT, PRED[:, :2], 3)
    with pytest.raises(EvaluationError, match="does not match 4 class names"):
        metrics_from_confusion(np.array(HAND_CM), FOUR.names)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.sampled_from([0, 1, 2, 3, 255])),
    st.data(),
)
def test_confusion_matrix_matches_a_pixel_loop(gt, data):
    pred = data.draw(hnp.arrays(np.uint8, gt.shape, elements=st.integers(0, 3)))
    expected = np.zeros((4, 4), dtype=np.int64)
    for g, p in zip(gt.ravel(), pred.ravel(), strict=True):
        if g != 255:
            expected[g, p] += 1
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 4), expected)


@pytest.mark.parametrize(
    ("filename", "base"),
    [
        ("frame_1.jpg.out", "frame_1"),
        ("frame_1.jpeg.out", "frame_1"),
        ("frame_1.png", "frame_1"),
        ("frame_1.PNG", "frame_1"),
        ("aachen_000000_000019.jpg.out", "aachen_000000_000019"),
        ("_SUCCESS", None),
        ("manifest.json", None),
        ("frame.jpg.out.bak", None),
        (".jpg.out", None),
    ],
)
def test_prediction_base(filename, base):
    assert prediction_base(filename) == base


# ------------------------------------------------------------------------------------- real files


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two ground-truth PNGs (P mode) and their batch-transform predictions, one per naming style."""
    gt_dir, pred_dir = tmp_path / "validation_annotation", tmp_path / "transform"
    save_png(gt_dir / "a.png", GT, THREE.palette())
    save_png(pred_dir / "a.jpg.out", PRED)
    second_gt = np.array([[2, 2, 2], [0, 0, 255]], dtype=np.uint8)
    second_pred = np.array([[2, 1, 2], [0, 0, 0]], dtype=np.uint8)
    save_png(gt_dir / "b.png", second_gt, THREE.palette())
    save_png(pred_dir / "b.png", second_pred)
    (pred_dir / "_SUCCESS").write_text("")
    return gt_dir, pred_dir, tmp_path / "eval"


def test_evaluate_dirs_accumulates_one_matrix(dirs):
    gt_dir, pred_dir, out = dirs
    result = evaluate_dirs(gt_dir, pred_dir, THREE, out)
    # second image adds (2,2) x2, (2,1) x1, (0,0) x2
    assert result["confusion_matrix"] == [[4, 1, 0], [0, 2, 0], [1, 1, 4]]
    assert result["num_images"] == 2 and result["scheme"] == "three"
    assert result["metrics"]["pixel_accuracy"] == pytest.approx(10 / 13)
    assert json.loads((out / "evaluation.json").read_text()) == result


def test_evaluation_json_shape(dirs):
    gt_dir, pred_dir, out = dirs
    evaluate_dirs(gt_dir, pred_dir, THREE, out)
    data = json.loads((out / "evaluation.json").read_text())
    assert validate_evaluation(data) is data and data["schema_version"] == EVALUATION_SCHEMA_VERSION
    assert set(data) == {"schema_version", "scheme", "num_images", "num_classes", "classes", "metrics", "per_class",
                         "gate", "confusion_matrix", "multiclass_classification_metrics", "head", "serving",
                         "incumbent", "reference_profile"}
    assert data["head"] is None and data["serving"] is None  # scored as given, not through the serving path
    assert data["classes"] == ["road", "car", "person"] and data["num_classes"] == 3
    assert set(data["metrics"]) == {"mIoU", "pixel_accuracy", "frequency_weighted_iou", "mean_accuracy"}
    assert all(isinstance(v, float) for v in data["metrics"].values())
    assert list(data["gate"]) == ["mIoU", "road", "car", "person"]
    for entry in data["per_class"].values():
        assert set(entry) == {"iou", "accuracy", "support", "predicted", "status"}
    assert all(isinstance(v, int) for row in data["confusion_matrix"] for v in row)
    assert data["multiclass_classification_metrics"]["accuracy"]["value"] == data["metrics"]["pixel_accuracy"]


def test_missing_predictions_are_listed(dirs):
    gt_dir, pred_dir, _ = dirs
    (pred_dir / "b.png").unlink()
    save_png(gt_dir / "c.png", GT)
    with pytest.raises(EvaluationError, match=r"2 of 3 ground-truth images have no prediction .*: b, c"):
        evaluate_dirs(gt_dir, pred_dir, THREE)


def test_size_mismatch_is_an_error_not_a_resize(dirs):
    gt_dir, pred_dir, _ = dirs
    save_png(pred_dir / "b.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(EvaluationError, match="prediction b.png is 6x4 but ground truth b.png is 3x2"):
        evaluate_dirs(gt_dir, pred_dir, THREE)


def test_rgb_and_unreadable_predictions(dirs):
    gt_dir, pred_dir, _ = dirs
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(pred_dir / "b.png")
    with pytest.raises(EvaluationError, match="prediction .*b.png is mode RGB: expected a single-channel"):
        evaluate_dirs(gt_dir, pred_dir, THREE)
    (pred_dir / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(EvaluationError, match="b.png cannot be read"):
        evaluate_dirs(gt_dir, pred_dir, THREE)


def test_out_of_scheme_prediction_names_the_files(dirs):
    gt_dir, pred_dir, _ = dirs
    save_png(pred_dir / "b.png", np.full((2, 3), 9, np.uint8))
    with pytest.raises(EvaluationError, match="b.png / b.png: prediction holds values 9 outside 0..2"):
        evaluate_dirs(gt_dir, pred_dir, THREE)


def test_two_predictions_for_one_image(dirs):
    gt_dir, pred_dir, _ = dirs
    shutil.copy(pred_dir / "b.png", pred_dir / "b.jpg.out")
    with pytest.raises(EvaluationError, match="two predictions for 'b'"):
        evaluate_dirs(gt_dir, pred_dir, THREE)


def test_missing_directories(tmp_path):
    with pytest.raises(EvaluationError, match="ground-truth directory .* does not exist"):
        evaluate_dirs(tmp_path / "nope", tmp_path, THREE)
    with pytest.raises(EvaluationError, match="no ground-truth .png files"):
        evaluate_dirs(tmp_path, tmp_path, THREE)


def test_perfect_predictions_on_prepared_scenes(cityscapes_tree, tmp_path):
    root, _ = cityscapes_tree
    prepared = tmp_path / "prepared"
    prepare_dataset(root, prepared, "cityscapes", CITYSCAPES)
    preds = tmp_path / "preds"
    preds.mkdir()
    for mask in (prepared / "validation_annotation").iterdir():
        shutil.copy(mask, preds / f"{mask.stem}.jpg.out")
    result = evaluate_dirs(prepared / "validation_annotation", preds, CITYSCAPES)
    assert result["metrics"]["mIoU"] == 1.0 and result["metrics"]["pixel_accuracy"] == 1.0
    present = [n for n, s in result["per_class"].items() if s["status"] == "present"]
    assert {"road", "car", "sky"} <= set(present)
    for name, stats in result["per_class"].items():
        assert result["gate"][name] == (1.0 if stats["status"] == "present" else -1.0)
    assert result["per_class"]["wall"]["status"] == "absent"  # scenes never draw walls


# -------------------------------------------------------------------------------------------- CLI


def test_cli(dirs, tmp_path, capsys):
    gt_dir, pred_dir, out = dirs
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([{"name": c.name, "color": list(c.color)} for c in THREE.classes]))
    args = ["--ground-truth", str(gt_dir), "--predictions", str(pred_dir), "--output", str(out),
            "--scheme", "custom", "--classes-file", str(classes)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("evaluated 2 images: mIoU ") and printed.count("\n") == 1
    assert json.loads((out / "evaluation.json").read_text())["classes"] == ["road", "car", "person"]


def test_cli_errors_exit_2(dirs, capsys):
    gt_dir, pred_dir, out = dirs
    (pred_dir / "a.jpg.out").unlink()
    assert main(["--ground-truth", str(gt_dir), "--predictions", str(pred_dir), "--output", str(out),
                 "--scheme", "cityscapes"]) == 2
    err = capsys.readouterr().err
    assert "have no prediction" in err and "Traceback" not in err
    assert not (out / "evaluation.json").exists()
