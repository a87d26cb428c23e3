"""PrepareServingValidation (training/serving.py) and the evaluation of its predictions (training/evaluate.py):
masks predicted at the serving resolution are mapped back to the annotations, and only the ROI is scored.

That the serving step's JPEG is byte for byte the ingest function's upload is shown under moto in
tests/lambda/test_serving_parity.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.documents import EVALUATION_SCHEMA_VERSION, validate_evaluation
from contracts.lambda_env import FRAME_PREPARATION_VARIABLES, PreprocessorEnvironment
from segcore.classes import CITYSCAPES
from segcore.imaging import PrepareOptions, prepare_frame
from segcore.scenes import generate_scene
from segcore.settings import Settings
from training import evaluate, serving
from training.prepare import prepare_dataset

ROI = (0.0, 0.25, 1.0, 1.0)
# 128x64 frames, the top quarter cut off (crop 128x48), fitted into 64x32: 64x24, exactly half the size.
OPTIONS = PrepareOptions(target_size=(64, 32), roi=ROI, jpeg_quality=88)


def environment(**changes) -> dict[str, str]:
    return PreprocessorEnvironment(target_width=64, target_height=32, roi=ROI, jpeg_quality=88,
                                   **changes).frame_preparation_env()


@pytest.fixture
def scene(tmp_path: Path) -> dict:
    """One known scene as PrepareDataset leaves it (validation JPEG, annotation PNG), its label constant on 2x2
    blocks, prepared for serving; and a perfect model's answer at the serving resolution."""
    rgb, _ = generate_scene(128, 64, seed=4)
    _, half = generate_scene(64, 32, seed=4)
    label = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)  # 128x64, each 2x2 block one class
    label[:4, :8] = CITYSCAPES.ignore_index  # unlabelled pixels stay unscored anywhere
    validation, annotations = tmp_path / "validation", tmp_path / "validation_annotation"
    validation.mkdir()
    annotations.mkdir()
    Image.fromarray(rgb).save(validation / "scene.jpg", quality=95)
    Image.fromarray(label).save(annotations / "scene.png")
    geometry = serving.prepare_serving_set(validation, tmp_path / "serving", tmp_path / "geometry", OPTIONS)
    predicted = label[16:64:2, 0:128:2].copy()  # what the model sees of the scene: the ROI at half size
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    Image.fromarray(predicted).save(predictions / "scene.jpg.out", format="PNG")
    return {"root": tmp_path, "label": label, "predicted": predicted, "geometry": geometry,
            "annotations": annotations, "predictions": predictions}


def test_the_serving_set_is_prepare_frame_of_each_validation_image(scene) -> None:
    root = scene["root"]
    source = (root / "validation" / "scene.jpg").read_bytes()
    assert (root / "serving" / "scene.jpg").read_bytes() == prepare_frame(source, OPTIONS).jpeg
    frame = scene["geometry"].frames["scene"]
    assert (frame.original_size, frame.crop_box, frame.inference_size) == ((128, 64), (0, 16, 128, 64), (64, 24))
    with Image.open(root / "serving" / "scene.jpg") as sent:
        assert sent.size == (64, 24)
    assert serving.read_geometry(root / "geometry" / "geometry.json") == scene["geometry"]
    doc = json.loads((root / "geometry" / "geometry.json").read_text())
    assert doc["options"] == {"target_size": {"width": 64, "height": 32}, "roi": list(ROI), "jpeg_quality": 88,
                              "max_input_bytes": OPTIONS.max_bytes, "max_input_pixels": OPTIONS.max_pixels}
    assert doc["frames"]["scene"] == {"original_size": {"width": 128, "height": 64}, "crop_box": [0, 16, 128, 64],
                                      "inference_size": {"width": 64, "height": 24}}
    assert doc["pillow"] == Image.__version__


def test_mapping_back_reproduces_the_label_resolution_mask(scene) -> None:
    frame, label = scene["geometry"].frames["scene"], scene["label"]
    restored = evaluate.to_label_resolution(scene["predicted"], frame, CITYSCAPES.ignore_index)
    assert restored.shape == label.shape
    np.testing.assert_array_equal(restored[16:], label[16:])  # inside the ROI: the annotation, pixel for pixel
    assert (restored[:16] == CITYSCAPES.ignore_index).all()  # outside: nothing predicted


def test_evaluation_scores_the_roi_only_and_records_resolution_roi_and_head(scene) -> None:
    out = scene["root"] / "evaluation"
    result = evaluate.evaluate_dirs(scene["annotations"], scene["predictions"], CITYSCAPES, out,
                                    serving=scene["geometry"], head="deeplab")
    assert result["metrics"]["mIoU"] == 1.0 and result["metrics"]["pixel_accuracy"] == 1.0
    label = scene["label"]
    assert sum(map(sum, result["confusion_matrix"])) == int(np.count_nonzero(label[16:] != 255))
    written = json.loads((out / "evaluation.json").read_text())
    assert written == result and validate_evaluation(written) is written
    assert written["schema_version"] == EVALUATION_SCHEMA_VERSION == "1.2"
    assert written["head"] == "deeplab"
    assert written["serving"] == {
        "target_size": {"width": 64, "height": 32},
        "roi": [0.0, 0.25, 1.0, 1.0],
        "jpeg_quality": 88,
        "inference_sizes": [{"width": 64, "height": 24, "images": 1}],
        "restored_with": "nearest",
        "outside_roi": "not_scored",
        "pixels_outside_roi": int(np.count_nonzero(label[:16] != 255)),
        "pillow": Image.__version__,
    }


def test_a_wrong_prediction_inside_the_roi_counts_and_nothing_outside_can(scene) -> None:
    wrong = scene["predicted"].copy()
    wrong[:, :32] = CITYSCAPES.index("sky")  # the left half of the ROI
    Image.fromarray(wrong).save(scene["predictions"] / "scene.jpg.out", format="PNG")
    result = evaluate.evaluate_dirs(scene["annotations"], scene["predictions"], CITYSCAPES, serving=scene["geometry"])
    label = scene["label"][16:]
    right = np.count_nonzero(label[:, :64] == CITYSCAPES.index("sky")) + np.count_nonzero(label[:, 64:] != 255)
    assert result["metrics"]["pixel_accuracy"] == pytest.approx(right / np.count_nonzero(label != 255))


def test_evaluation_errors_name_the_file(scene) -> None:
    args = (scene["annotations"], scene["predictions"], CITYSCAPES)
    Image.fromarray(scene["label"]).save(scene["predictions"] / "scene.jpg.out", format="PNG")
    with pytest.raises(evaluate.EvaluationError, match=r"scene.jpg.out: the prediction is 128x64 but its inference "
                                                       r"image was 64x24"):
        evaluate.evaluate_dirs(*args, serving=scene["geometry"])
    other = serving.ServingGeometry(options=OPTIONS, frames={})
    with pytest.raises(evaluate.EvaluationError, match="1 ground-truth images have no serving geometry .*: scene"):
        evaluate.evaluate_dirs(*args, serving=other)
    Image.fromarray(scene["label"][:32]).save(scene["annotations"] / "scene.png")
    with pytest.raises(evaluate.EvaluationError, match="ground truth scene.png is 128x32 but its frame was 128x64"):
        evaluate.evaluate_dirs(*args, serving=scene["geometry"])


def test_evaluate_cli_with_the_serving_geometry(scene, capsys) -> None:
    root = scene["root"]
    argv = ["--ground-truth", str(scene["annotations"]), "--predictions", str(scene["predictions"]), "--output",
            str(root / "eval"), "--serving-geometry", str(root / "geometry" / "geometry.json"), "--head", "psp"]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "through the serving preprocessing (fitted into 64x32, ROI [0.0, 0.25, 1.0, 1.0]" in printed
    written = json.loads((root / "eval" / "evaluation.json").read_text())
    assert written["head"] == "psp" and written["serving"]["roi"] == [0.0, 0.25, 1.0, 1.0]
    (root / "geometry" / "geometry.json").write_text("{not json")
    assert evaluate.main(argv) == 2
    assert "cannot read the serving geometry" in capsys.readouterr().err


def test_serving_cli_reads_the_functions_variables(tmp_path: Path, capsys) -> None:
    validation = tmp_path / "validation"
    validation.mkdir()
    Image.fromarray(generate_scene(128, 64, seed=1)[0]).save(validation / "a.jpg")
    argv = ["--input", str(validation), "--output", str(tmp_path / "out"), "--geometry-dir", str(tmp_path / "geo"),
            "--workers", "2"]
    assert serving.main(argv, environ={**environment(), "UNRELATED": "x"}) == 0
    assert "prepared 1 validation frames as the service receives them: 64x24 (1)" in capsys.readouterr().out
    assert serving.main(argv, environ={}) == 2
    err = capsys.readouterr().err
    assert "lacks TARGET_WIDTH, TARGET_HEIGHT, ROI" in err and "Traceback" not in err
    assert serving.main(argv, environ=environment() | {"ROI": "0,0,2,1"}) == 2
    assert "ROI:" in capsys.readouterr().err


def test_options_are_the_ingest_functions_options() -> None:
    variables = environment(max_input_bytes=12345, max_input_pixels=99999)
    assert set(variables) == set(FRAME_PREPARATION_VARIABLES)
    assert serving.options_from_environment(variables) == Settings.from_env(variables).prepare_options() == \
        PrepareOptions(target_size=(64, 32), roi=ROI, max_bytes=12345, max_pixels=99999, jpeg_quality=88)
    whole = PreprocessorEnvironment().frame_preparation_env()
    assert whole["ROI"] == "" and serving.options_from_environment(whole).roi is None


def test_prepared_validation_channel_goes_through_whole(cityscapes_tree, tmp_path: Path) -> None:
    root, names = cityscapes_tree
    prepared = tmp_path / "prepared"
    prepare_dataset(root, prepared, "cityscapes", CITYSCAPES)
    geometry = serving.prepare_serving_set(prepared / "validation", tmp_path / "serving", tmp_path / "geometry",
                                           PrepareOptions(target_size=(32, 16)), workers=2)
    assert set(geometry.frames) == {p.stem for p in (prepared / "validation_annotation").iterdir()}
    assert {p.name for p in (tmp_path / "serving").iterdir()} == {f"{n}.jpg" for n in geometry.frames}
    assert geometry.inference_sizes() == [{"width": 32, "height": 16, "images": len(names["validation"])}]


@pytest.mark.parametrize(("content", "message"), [
    ('{"schema_version": "9"}', "schema_version '9' is not '1.0'"),
    ('{"schema_version": "1.0", "options": {}}', "is not a serving geometry file: KeyError"),
    ("[]", "is not a serving geometry file"),
])
def test_bad_geometry_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "geometry.json"
    path.write_text(content)
    with pytest.raises(serving.ServingError, match=message):
        serving.read_geometry(path)


def test_no_validation_images(tmp_path: Path) -> None:
    with pytest.raises(serving.ServingError, match="does not exist"):
        serving.prepare_serving_set(tmp_path / "none", tmp_path / "o", tmp_path / "g", OPTIONS)
    with pytest.raises(serving.ServingError, match="no validation images"):
        serving.prepare_serving_set(tmp_path, tmp_path / "o", tmp_path / "g", OPTIONS)
