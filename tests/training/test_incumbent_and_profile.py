"""EvaluateModel's two additions: the incumbent scored on the same pixels (issue 22 s.5) and the reference profile of
the gated frames (issue 23 s.2), on small real files (Pillow-written PNG masks and JPEG frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.documents import DocumentError, validate_evaluation
from contracts.signals import ALL_CAMERAS, MONITORED_SIGNALS, REFERENCE_PROFILE_FILE, validate_reference_profile
from labelling.archive import frame_name_for_key
from segcore.classes import CITYSCAPES, custom_scheme
from segcore.signals import input_signals
from training.evaluate import (
    EvaluationError,
    Incumbent,
    camera_of_frame_name,
    compare_with_incumbent,
    evaluate_dirs,
    main,
    metrics_from_confusion,
)

THREE = custom_scheme("three", [("road", (1, 1, 1)), ("car", (2, 2, 2)), ("person", (3, 3, 3))])
GT = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [255, 2, 2, 0]], dtype=np.uint8)
# The incumbent gets every person pixel; the candidate misses two of the four (predicts road there).
INCUMBENT = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [0, 2, 2, 0]], dtype=np.uint8)
CANDIDATE = np.array([[0, 0, 1, 1], [0, 0, 2, 1], [0, 0, 2, 0]], dtype=np.uint8)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:  # names such as a.jpg.out: Pillow cannot infer the format from them
        Image.fromarray(array).save(handle, "PNG")
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    found = {name: tmp_path / name for name in ("gt", "candidate", "incumbent", "out")}
    for base in ("a", "b"):
        _png(found["gt"] / f"{base}.png", GT)
        _png(found["candidate"] / f"{base}.jpg.out", CANDIDATE)
        _png(found["incumbent"] / f"{base}.jpg.out", INCUMBENT)
    return found


def _iou(gt: np.ndarray, pred: np.ndarray, cls: int) -> float:
    valid = gt != 255
    inter = np.sum((gt == cls) & (pred == cls) & valid)
    union = np.sum(((gt == cls) | (pred == cls)) & valid)
    return float(inter / union)


def test_without_an_incumbent_the_report_says_null(dirs):
    result = evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, dirs["out"])
    assert result["incumbent"] is None and result["reference_profile"] is None
    assert validate_evaluation(json.loads((dirs["out"] / "evaluation.json").read_text()))
    assert not (dirs["out"] / REFERENCE_PROFILE_FILE).exists()


def test_the_incumbent_is_scored_on_the_same_pixels_and_the_regression_is_per_class(dirs):
    incumbent = Incumbent(dirs["incumbent"], "s3://artifacts/pipelines/x/model.tar.gz",
                          "arn:aws:sagemaker:eu-west-1:111122223333:model-package/roadseg-dev-segmentation/3", 0.01)
    result = evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, dirs["out"], incumbent=incumbent)
    written = json.loads((dirs["out"] / "evaluation.json").read_text())
    assert validate_evaluation(written) and written["incumbent"] == result["incumbent"]
    compared = result["incumbent"]
    assert compared["model_data"] == incumbent.model_data and compared["model_package"] == incumbent.model_package
    # Hand-checked against per-image IoUs (both images are the same, so the split IoU is the image IoU).
    for index, name in enumerate(THREE.names):
        mine, theirs = _iou(GT, CANDIDATE, index), _iou(GT, INCUMBENT, index)
        assert result["per_class"][name]["iou"] == pytest.approx(mine)
        assert compared["per_class"][name]["iou"] == pytest.approx(theirs)
        assert compared["delta"][name] == pytest.approx(mine - theirs)
        assert compared["regression"][name] == pytest.approx(theirs - mine)
    assert compared["regression"]["person"] == pytest.approx(1.0 - 0.5)  # 4 of 4 vs 2 of 4 person pixels
    assert compared["regression"]["car"] == 0.0  # the same car pixels
    assert compared["regression"]["mIoU"] == pytest.approx(compared["metrics"]["mIoU"] - result["metrics"]["mIoU"])
    assert compared["tolerance"] == 0.01
    # Worst first: person (0.5), road (the missed person pixels became false road: 1 - 4/6), mIoU.
    assert compared["beyond_tolerance"] == ["person", "road", "mIoU"]
    assert compared["regression"]["road"] == pytest.approx(1 - 4 / 6)


def test_the_same_model_has_no_regression(dirs):
    incumbent = Incumbent(dirs["candidate"], tolerance=0.0)
    compared = evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, incumbent=incumbent)["incumbent"]
    assert set(compared["regression"].values()) == {0.0}
    assert set(compared["delta"].values()) == {0.0}
    assert compared["beyond_tolerance"] == []


def test_a_class_without_ground_truth_has_no_measurable_regression():
    # Ground truth: road and car only. The incumbent predicts no person (class absent for it), the candidate a few
    # person pixels (IoU 0): no person pixel exists to be right about, so the regression is 0 and the floors decide.
    classes = list(THREE.names)
    cm_candidate = np.array([[8, 0, 2], [0, 5, 0], [0, 0, 0]])
    cm_incumbent = np.array([[10, 0, 0], [0, 5, 0], [0, 0, 0]])
    candidate, incumbent = metrics_from_confusion(cm_candidate, classes), metrics_from_confusion(cm_incumbent, classes)
    compared = compare_with_incumbent(candidate, incumbent, tolerance=0.01)
    assert candidate["per_class"]["person"]["iou"] == 0.0 and incumbent["per_class"]["person"]["iou"] is None
    assert compared["regression"]["person"] == 0.0 and compared["delta"]["person"] is None
    assert compared["regression"]["road"] == pytest.approx(1.0 - 0.8)
    assert compared["beyond_tolerance"] == ["mIoU", "road"]  # mIoU 1.0 -> 0.6 (person counts for the candidate)
    assert compare_with_incumbent(candidate, incumbent)["beyond_tolerance"] is None  # no tolerance: not judged


def test_an_incumbent_prediction_missing_is_named(dirs):
    (dirs["incumbent"] / "b.jpg.out").unlink()
    with pytest.raises(EvaluationError, match=r"1 of 2 ground-truth images have no incumbent prediction .*: b"):
        evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, incumbent=Incumbent(dirs["incumbent"]))
    with pytest.raises(EvaluationError, match="incumbent predictions directory .* does not exist"):
        evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, incumbent=Incumbent(dirs["out"] / "nowhere"))


def test_an_incumbent_of_another_scheme_is_refused(dirs):
    _png(dirs["incumbent"] / "a.jpg.out", np.full_like(GT, 7))
    with pytest.raises(EvaluationError, match=r"incumbent: a.png / a.jpg.out: prediction holds values 7"):
        evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, incumbent=Incumbent(dirs["incumbent"]))


def test_the_evaluation_document_checks_the_incumbent_block(dirs):
    result = evaluate_dirs(dirs["gt"], dirs["candidate"], THREE, incumbent=Incumbent(dirs["incumbent"]))
    broken = json.loads(json.dumps(result))
    broken["incumbent"]["regression"]["person"] = "0.5"
    with pytest.raises(DocumentError) as info:
        validate_evaluation(broken)
    assert info.value.key == "incumbent.regression.person"


def test_cli_with_an_incumbent(dirs, capsys):
    code = main(["--ground-truth", str(dirs["gt"]), "--predictions", str(dirs["candidate"]), "--output",
                 str(dirs["out"]), "--scheme", "custom", "--classes-json",
                 json.dumps([{"name": c.name, "color": list(c.color)} for c in THREE.classes]),
                 "--incumbent-predictions", str(dirs["incumbent"]), "--incumbent-model-data", "",
                 "--incumbent-model-package", "arn:aws:sagemaker:eu-west-1:1:model-package/g/1",
                 "--incumbent-tolerance", "0.01"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "largest regression person +0.5000 IoU; beyond the tolerance 0.01: person, road, mIoU" in out
    written = json.loads((dirs["out"] / "evaluation.json").read_text())["incumbent"]
    assert written["model_data"] is None  # the pipeline parameter's empty default means none
    assert written["model_package"] == "arn:aws:sagemaker:eu-west-1:1:model-package/g/1"


def test_cli_refuses_a_tolerance_outside_0_1(dirs, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--ground-truth", str(dirs["gt"]), "--predictions", str(dirs["candidate"]), "--output",
              str(dirs["out"]), "--incumbent-predictions", str(dirs["incumbent"]), "--incumbent-tolerance", "5"])
    assert info.value.code == 2
    assert "--incumbent-tolerance 5.0 must be within 0..1" in capsys.readouterr().err


def test_cli_refuses_a_vru_threshold_below_one_pixel(dirs, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--ground-truth", str(dirs["gt"]), "--predictions", str(dirs["candidate"]), "--output",
              str(dirs["out"]), "--vru-min-pixels", "0"])
    assert info.value.code == 2 and "--vru-min-pixels 0 must be at least 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ reference profile


@pytest.mark.parametrize(
    ("key", "camera"),
    [
        ("incoming/car-7/d1/front/20261203T101500.123456789Z.jpg", "front"),
        ("incoming/car-7/front-left/20261203T101500.1Z.jpg", "front-left"),  # no drive segment
        ("car-7/d1/rear/20261203T101500.1Z.jpg", "rear"),  # a key relative to the incoming prefix
        ("frankfurt_000000_000294_leftImg8bit.png", ALL_CAMERAS),  # a dataset name: no camera
        ("incoming/a/b/c/d/e/f.jpg", ALL_CAMERAS),  # not a frame key's shape
    ],
)
def test_camera_of_frame_name_reads_what_frame_name_for_key_wrote(key, camera):
    assert camera_of_frame_name(frame_name_for_key(key)) == camera


def _serving_frame(path: Path, seed: int, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = (rng.integers(0, 256, size=(48, 96, 3)) * scale).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, "JPEG", quality=95)
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_the_reference_profile_holds_the_signals_of_the_gated_frames(tmp_path):
    names = [frame_name_for_key(f"incoming/car-7/d1/{camera}/2026120{i}T101500.0Z.jpg")
             for i, camera in enumerate(("front", "front", "rear"))]
    road, sky, person = CITYSCAPES.names.index("road"), CITYSCAPES.names.index("sky"), CITYSCAPES.names.index("person")
    masks = []
    decoded = []
    for i, name in enumerate(names):
        mask = np.full((48, 96), road, dtype=np.uint8)
        mask[: 12 * (i + 1)] = sky  # 1/4, 2/4, 3/4 sky
        if i == 2:
            mask[40:, :10] = person  # 80 pixels: a VRU present (>= 50)
        masks.append(mask)
        _png(tmp_path / "gt" / f"{name}.png", mask)
        _png(tmp_path / "pred" / f"{name}.jpg.out", mask)
        decoded.append(_serving_frame(tmp_path / "frames" / f"{name}.jpg", seed=i, scale=(0.3 if i == 2 else 1.0)))
    result = evaluate_dirs(tmp_path / "gt", tmp_path / "pred", CITYSCAPES, tmp_path / "out",
                           serving_frames_dir=tmp_path / "frames")
    assert result["reference_profile"] == REFERENCE_PROFILE_FILE
    profile = json.loads((tmp_path / "out" / REFERENCE_PROFILE_FILE).read_text())
    assert validate_reference_profile(profile) is not None
    assert profile["frames"] == 3 and profile["model_package_version"] is None
    assert sorted(profile["cameras"]) == [ALL_CAMERAS, "front", "rear"]
    everything = profile["cameras"][ALL_CAMERAS]
    assert set(everything) == set(MONITORED_SIGNALS)
    assert sum(everything["brightness"]["counts"]) == 3
    assert sum(profile["cameras"]["front"]["frac_sky"]["counts"]) == 2
    assert everything["frac_sky"]["mean"] == pytest.approx((0.25 + 0.5 + 0.75) / 3, abs=1e-6)
    assert profile["cameras"]["rear"]["vru_present"]["mean"] == 1.0
    assert profile["cameras"]["front"]["vru_present"]["mean"] == 0.0
    # Input signals of the JPEG as decoded (what the ingest function's prepared frame is, up to the codec).
    expected = np.mean([input_signals(rgb)["brightness"] for rgb in decoded])
    assert everything["brightness"]["mean"] == pytest.approx(expected, abs=1e-6)
    assert profile["cameras"]["rear"]["brightness"]["mean"] < 0.5 * profile["cameras"]["front"]["brightness"]["mean"]
    assert everything["flicker"]["counts"] == [0] * 20 and everything["flicker"]["mean"] is None  # not a drive
    # The environment's VRU_MIN_PIXELS (here 100 > the rear frame's 80 person pixels) is what the profile measures
    # vru_present with, as the postprocess function does: the pipeline passes --vru-min-pixels.
    evaluate_dirs(tmp_path / "gt", tmp_path / "pred", CITYSCAPES, tmp_path / "out100",
                  serving_frames_dir=tmp_path / "frames", vru_min_pixels=100)
    stricter = json.loads((tmp_path / "out100" / REFERENCE_PROFILE_FILE).read_text())
    assert stricter["cameras"]["rear"]["vru_present"]["mean"] == 0.0


def test_a_serving_frame_missing_from_the_profile_is_named(tmp_path):
    _png(tmp_path / "gt" / "a.png", GT)
    _png(tmp_path / "pred" / "a.jpg.out", CANDIDATE)
    (tmp_path / "frames").mkdir()
    with pytest.raises(EvaluationError, match=r"serving frame .*a.jpg is missing"):
        evaluate_dirs(tmp_path / "gt", tmp_path / "pred", THREE, tmp_path / "out",
                      serving_frames_dir=tmp_path / "frames")
