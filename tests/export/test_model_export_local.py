"""``roadseg model export`` for real: a model.tar.gz saved the way the algorithm saves it (a GluonCV FCN with random
weights, tests/export/algorithm_model.py, built in .venv-export), exported by the command from roadseg's own
environment, which runs export.model in .venv-export. The bundle then segments a frame with ``roadseg segment``
here. The command's wiring and errors without MXNet: tests/roadseg/test_model_export.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from contracts.bundle import BUNDLE, validate_bundle, validate_parity, validate_preprocessing
from envconfig.config import load_config
from roadseg import cli
from segcore.classes import CITYSCAPES
from segcore.scenes import generate_scene

REPO = Path(__file__).resolve().parents[2]
EXPORT_PYTHON = REPO / ".venv-export" / "bin" / "python"
BUILDER = Path(__file__).with_name("algorithm_model.py")
WIDTH, HEIGHT = 128, 64  # small: the export builds the network at the serving size
METRICS = ["--validation-miou", "0.612", "--validation-pixel-accuracy", "0.903"]
PARITY_FRAMES = load_config("dev").training.export.parity_frames


@pytest.fixture(scope="module")
def model_archive(tmp_path_factory) -> Path:
    if not EXPORT_PYTHON.is_file():
        pytest.fail(f"the export environment {EXPORT_PYTHON.parent.parent} is missing: run "
                    "`make .venv-export/.installed` (Python 3.11 with MXNet 1.9.1, export/requirements.txt)")
    archive = tmp_path_factory.mktemp("model") / "model.tar.gz"
    result = subprocess.run([str(EXPORT_PYTHON), str(BUILDER), "--output", str(archive), "--head", "fcn",
                             "--num-classes", str(CITYSCAPES.num_classes), "--width", str(WIDTH), "--height",
                             str(HEIGHT), "--seed", "3"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return archive


@pytest.fixture(scope="module")
def exported(model_archive, tmp_path_factory) -> tuple[int, Path]:
    os.environ.pop("ROADSEG_EXPORT_PYTHON", None)  # the default: .venv-export next to the project
    bundle = tmp_path_factory.mktemp("export") / "bundle"
    code = cli.main(["model", "export", str(model_archive), "--out", str(bundle), "--width", str(WIDTH),
                     "--height", str(HEIGHT), *METRICS])
    return code, bundle


def test_the_command_writes_a_valid_bundle_from_the_archive(exported):
    code, bundle_dir = exported
    assert code == 0
    bundle = validate_bundle(json.loads((bundle_dir / BUNDLE.manifest).read_text()))
    assert (bundle["head"], bundle["backbone"], bundle["num_classes"]) == ("fcn", "resnet-50", CITYSCAPES.num_classes)
    assert bundle["network_size"] == {"width": WIDTH, "height": HEIGHT} and bundle["scheme"] == "cityscapes"
    assert bundle["onnx"]["status"] == "exported"
    assert bundle["gate"] == {"mIoU": 0.612, "pixel_accuracy": 0.903}  # the training job's metrics, as given
    # Parity on generated scenes at the serving size, with the ExportModel step's thresholds.
    parity = validate_parity(json.loads((bundle_dir / BUNDLE.parity).read_text()))
    assert parity["status"] == "passed" and parity["overall"]["frames"] == PARITY_FRAMES
    assert [(f["width"], f["height"]) for f in parity["frames"]] == [(WIDTH, HEIGHT)] * PARITY_FRAMES
    export = load_config("dev").training.export
    assert parity["thresholds"] == {"max_logit_difference": export.max_logit_difference,
                                    "min_argmax_agreement": export.min_argmax_agreement}
    preprocessing = validate_preprocessing(json.loads((bundle_dir / BUNDLE.preprocessing).read_text()))
    assert preprocessing["input"]["shape"] == [1, 3, HEIGHT, WIDTH]
    # No evaluation report: none in the bundle, and the card says the model was never gated.
    on_disk = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()}
    assert BUNDLE.evaluation not in on_disk and set(bundle["files"]) == on_disk - {BUNDLE.manifest}
    for name, entry in bundle["files"].items():
        assert entry["sha256"] == hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest(), name
    card = (bundle_dir / BUNDLE.model_card).read_text()
    assert "roadseg's quality gate never saw" in card and "validation:mIOU 0.6120" in card


def test_roadseg_segment_runs_the_exported_bundle(exported, tmp_path):
    code, bundle_dir = exported
    assert code == 0
    rgb, _ = generate_scene(WIDTH * 2, HEIGHT * 2, seed=11)
    frame = tmp_path / "frame.jpg"
    Image.fromarray(rgb).save(frame, quality=92)
    assert cli.main(["segment", str(frame), "--bundle", str(bundle_dir), "--output", str(tmp_path / "out"),
                     "--device", "cpu"]) == 0
    mask = Image.open(tmp_path / "out" / "frame.mask.png")
    assert mask.size == (WIDTH * 2, HEIGHT * 2)  # class indices at the frame's own size


def test_an_archive_of_another_class_count_is_bad_input(model_archive, tmp_path, capsys):
    code = cli.main(["model", "export", str(model_archive), "--out", str(tmp_path / "bundle"), "--scheme", "camvid",
                     "--width", str(WIDTH), "--height", str(HEIGHT), *METRICS])
    assert code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("roadseg model export: error: hyperparams.json says num_classes=19 but scheme 'camvid'")
    assert not (tmp_path / "bundle" / BUNDLE.manifest).exists()


@pytest.mark.parametrize("quality", [
    [],  # neither
    ["--evaluation", "evaluation.json", *METRICS],  # both
    ["--validation-miou", "0.6"],  # one metric
])
def test_training_export_takes_an_evaluation_or_both_metrics(quality, capsys):
    from export.model import main

    with pytest.raises(SystemExit) as exit_:
        main(["--model", "m.tar.gz", "--validation", "frames", "--output", "out", "--max-logit-difference", "0.01",
              "--min-argmax-agreement", "0.999", *quality])
    assert exit_.value.code == 2
    assert "give --evaluation, or --validation-miou and --validation-pixel-accuracy" in capsys.readouterr().err


def test_training_job_metrics_are_fractions():
    from export.model import ExportError, training_job_metrics

    assert training_job_metrics(0.6, 0.9)["metrics"] == {"mIoU": 0.6, "pixel_accuracy": 0.9}
    with pytest.raises(ExportError, match="validation:mIOU must be within 0..1, got 61"):
        training_job_metrics(61, 0.9)
