"""export/model.py: the edge bundle of a gated model.

The export runs where MXNet runs (.venv-export, Python 3.11 with MXNet 1.9.1): these tests build GluonCV networks with
random weights saved the way the algorithm saves them (tests/export/algorithm_model.py, in that environment), run
``python -m export.model`` there, and read the bundle here, in the main environment (its own ONNX Runtime segments
a frame with the bundle's model.onnx through segcore.bundle_runtime). The models and the exports are made once per
module, two at a time (two cores), to keep the file near a minute and a half.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.bundle import (
    BUNDLE,
    INPUT_NAME,
    neo_data_input_config,
    validate_bundle,
    validate_parity,
    validate_preprocessing,
)
from contracts.documents import EVALUATION_SCHEMA_VERSION
from contracts.lambda_env import FRAME_PREPARATION_VARIABLES
from export.model import (
    ExportError,
    adaptive_pool_matrix,
    parameter_differences,
    parse_hyperparameters,
)
from segcore.bundle_runtime import logits_to_mask, network_input
from segcore.classes import CITYSCAPES
from segcore.scenes import generate_scene
from training.evaluate import metrics_from_confusion

REPO = Path(__file__).resolve().parents[2]
EXPORT_PYTHON = REPO / ".venv-export" / "bin" / "python"
BUILDER = Path(__file__).with_name("algorithm_model.py")
# Small, but large enough that PSP's pyramid pools (1, 2, 3, 6 over an 8x16 feature map) use uneven windows.
WIDTH, HEIGHT = 128, 64
NUM_CLASSES = CITYSCAPES.num_classes
THRESHOLDS = ["--max-logit-difference", "0.001", "--min-argmax-agreement", "0.999"]
# head, saved with the auxiliary head: both ways the algorithm might have saved it.
MODELS = {"fcn": True, "deeplab": False, "psp": True}


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FRAME_PREPARATION_VARIABLES}
    # One thread each: the exports run two at a time on two cores.
    env.update(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'lambda'}", OMP_NUM_THREADS="1",
               TARGET_WIDTH=str(WIDTH), TARGET_HEIGHT=str(HEIGHT), ROI="", MAX_INPUT_BYTES="20971520",
               MAX_INPUT_PIXELS="40000000", JPEG_QUALITY="90")
    return env


def _start(args: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([str(EXPORT_PYTHON), *args], cwd=REPO, env=dict(env or _environment()),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _in_pairs(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run the commands two at a time (the machine has two cores), results in order."""
    results: list[subprocess.CompletedProcess] = []
    for first in range(0, len(commands), 2):
        running = [_start(args) for args in commands[first:first + 2]]
        results += [_finish(process) for process in running]
    return results


@pytest.fixture(scope="module")
def export_python() -> Path:
    if not EXPORT_PYTHON.is_file():
        pytest.fail(f"the export environment {EXPORT_PYTHON.parent.parent} is missing: run "
                    "`make .venv-export/.installed` (Python 3.11 with MXNet 1.9.1, export/requirements.txt)")
    return EXPORT_PYTHON


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, export_python) -> dict[str, Path]:
    """Validation frames, an evaluation report and one model.tar.gz per head (built two at a time)."""
    root = tmp_path_factory.mktemp("export")
    frames = root / "serving_validation"
    frames.mkdir()
    for index in range(3):
        # Prepared frames fit inside the serving size: the third has another aspect ratio (padded bottom-right).
        size = (WIDTH, HEIGHT) if index < 2 else (WIDTH, HEIGHT - 16)
        rgb, _ = generate_scene(*size, seed=40 + index)
        Image.fromarray(rgb).save(frames / f"frame{index}.jpg", quality=90)
    cm = np.diag(np.arange(1, NUM_CLASSES + 1) * 100) + 3
    evaluation = {"schema_version": EVALUATION_SCHEMA_VERSION, "scheme": "cityscapes", "num_images": 3,
                  **metrics_from_confusion(cm, CITYSCAPES.names), "head": None, "serving": None,
                  "incumbent": None, "reference_profile": None}
    (root / "evaluation.json").write_text(json.dumps(evaluation))
    builds = [[str(BUILDER), "--output", str(root / f"{head}.tar.gz"), "--head", head, "--num-classes",
               str(NUM_CLASSES), "--width", str(WIDTH), "--height", str(HEIGHT), "--seed", str(seed),
               *([] if aux else ["--no-aux"])] for seed, (head, aux) in enumerate(MODELS.items())]
    for result in _in_pairs(builds):
        assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "frames": frames, "evaluation": root / "evaluation.json",
            **{head: root / f"{head}.tar.gz" for head in MODELS}}


def _export_args(workspace: Mapping[str, Path], model: Path, output: Path, *extra: str) -> list[str]:
    return ["-m", "export.model", "--model", str(model), "--validation", str(workspace["frames"]),
            "--evaluation", str(workspace["evaluation"]), "--output", str(output), "--scheme", "cityscapes", *extra]


@pytest.fixture(scope="module")
def exports(workspace) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """One export per head, and the FCN once more with a logit threshold no float computation meets."""
    runs = {head: (workspace[head], workspace["root"] / f"bundle-{head}", THRESHOLDS) for head in MODELS}
    runs["unmeetable"] = (workspace["fcn"], workspace["root"] / "bundle-unmeetable",
                          ["--max-logit-difference", "0", "--min-argmax-agreement", "0.999"])
    results = _in_pairs([_export_args(workspace, model, output, *extra) for model, output, extra in runs.values()])
    return {name: (result, runs[name][1]) for name, result in zip(runs, results, strict=True)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------- bundles that pass


@pytest.mark.parametrize("head", ["fcn", "deeplab", "psp"])
def test_export_writes_a_bundle_whose_onnx_model_matches_mxnet(workspace, exports, head):
    result, bundle_dir = exports[head]
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"exported {head}/resnet-50 at {WIDTH}x{HEIGHT}" in result.stdout

    parity = validate_parity(json.loads((bundle_dir / BUNDLE.parity).read_text()))
    assert parity["status"] == "passed" and parity["reason"] is None
    assert [f["name"] for f in parity["frames"]] == ["frame0.jpg", "frame1.jpg", "frame2.jpg"]
    assert [(f["width"], f["height"]) for f in parity["frames"]] == [(WIDTH, HEIGHT)] * 2 + [(WIDTH, HEIGHT - 16)]
    assert parity["overall"]["frames"] == 3
    assert 0 <= parity["overall"]["max_abs_logit_difference"] < 1e-3
    assert parity["overall"]["argmax_agreement"] >= 0.999
    assert all(f["max_abs_logit_difference"] < 1e-3 and f["argmax_agreement"] >= 0.999 for f in parity["frames"])

    bundle = validate_bundle(json.loads((bundle_dir / BUNDLE.manifest).read_text()))
    assert (bundle["head"], bundle["backbone"], bundle["num_classes"]) == (head, "resnet-50", NUM_CLASSES)
    assert bundle["aux_in_checkpoint"] is MODELS[head]
    assert bundle["network_size"] == {"width": WIDTH, "height": HEIGHT}
    assert bundle["onnx"]["status"] == "exported" and bundle["onnx"]["reason"] is None
    assert bundle["parity"]["status"] == "passed"
    assert bundle["neo"]["data_input_config"] == neo_data_input_config(HEIGHT, WIDTH)
    assert {"mxnet", "gluoncv", "onnx", "onnxruntime"} <= bundle["versions"].keys()
    expected_files = {BUNDLE.onnx, BUNDLE.symbol, BUNDLE.params, BUNDLE.neo_archive, BUNDLE.classes,
                      BUNDLE.preprocessing, BUNDLE.parity, BUNDLE.evaluation, BUNDLE.model_card}
    on_disk = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()}
    assert set(bundle["files"]) == expected_files == on_disk - {BUNDLE.manifest}
    for name, entry in bundle["files"].items():
        assert entry == {"sha256": _sha256(bundle_dir / name), "bytes": (bundle_dir / name).stat().st_size}, name

    with tarfile.open(bundle_dir / BUNDLE.neo_archive) as tar:
        assert sorted(tar.getnames()) == sorted([BUNDLE.symbol, BUNDLE.params])
        assert tar.extractfile(BUNDLE.symbol).read() == (bundle_dir / BUNDLE.symbol).read_bytes()
    symbol = json.loads((bundle_dir / BUNDLE.symbol).read_text())
    assert not any("auxlayer" in node["name"] or "fcnhead1" in node["name"] for node in symbol["nodes"]), \
        "the auxiliary head must not be exported"
    assert len(symbol["heads"]) == 1  # one output: the logits

    assert (bundle_dir / BUNDLE.evaluation).read_bytes() == workspace["evaluation"].read_bytes()
    card = (bundle_dir / BUNDLE.model_card).read_text()
    assert f"{head} / resnet-50" in card and "not on a real training job's model_algo-1" in card


def test_preprocessing_and_classes_describe_the_serving_input(exports):
    _, bundle_dir = exports["fcn"]
    preprocessing = validate_preprocessing(json.loads((bundle_dir / BUNDLE.preprocessing).read_text()))
    assert preprocessing["frame_preparation"]["environment"] == {
        "TARGET_WIDTH": str(WIDTH), "TARGET_HEIGHT": str(HEIGHT), "ROI": "", "MAX_INPUT_BYTES": "20971520",
        "MAX_INPUT_PIXELS": "40000000", "JPEG_QUALITY": "90"}
    network = preprocessing["input"]
    assert (network["name"], network["layout"], network["channel_order"]) == (INPUT_NAME, "NCHW", "RGB")
    assert network["shape"] == [1, 3, HEIGHT, WIDTH] and network["scale"] == pytest.approx(1 / 255)
    assert preprocessing["output"]["shape"] == [1, NUM_CLASSES, HEIGHT, WIDTH]
    classes = json.loads((bundle_dir / BUNDLE.classes).read_text())
    assert [c["name"] for c in classes["classes"]] == list(CITYSCAPES.names)
    assert classes["classes"][0]["color"] == list(CITYSCAPES.classes[0].color)
    assert classes["ignore_index"] == 255 and "person" in classes["vulnerable_road_users"]


def test_the_bundles_onnx_model_segments_a_frame_in_the_main_environment(exports):
    """What ``roadseg segment`` does: this environment's ONNX Runtime, segcore.bundle_runtime's input and mask."""
    import onnxruntime

    _, bundle_dir = exports["deeplab"]
    session = onnxruntime.InferenceSession(str(bundle_dir / BUNDLE.onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    rgb, _ = generate_scene(WIDTH - 32, HEIGHT - 8, seed=7)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    tensor, frame_size = network_input(buffer.getvalue(), (WIDTH, HEIGHT))
    (logits,) = session.run(None, {INPUT_NAME: tensor})
    assert logits.shape == (1, NUM_CLASSES, HEIGHT, WIDTH) and logits.dtype == np.float32
    mask = logits_to_mask(logits, frame_size)
    assert mask.shape == (HEIGHT - 8, WIDTH - 32) and mask.dtype == np.uint8
    assert int(mask.max()) < NUM_CLASSES


def test_a_parity_threshold_that_cannot_be_met_fails_the_step(exports):
    result, bundle_dir = exports["unmeetable"]
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("export: error: ONNX Runtime disagrees with MXNet on the serving validation frames")
    assert "max |logit difference|" in error and "> 0.0" in error and "--max-logit-difference" in error
    assert "Traceback" not in result.stderr
    parity = validate_parity(json.loads((bundle_dir / BUNDLE.parity).read_text()))
    assert parity["status"] == "failed" and parity["thresholds"]["max_logit_difference"] == 0
    assert not (bundle_dir / BUNDLE.manifest).exists(), "a failed export must not look like a bundle"


# ------------------------------------------------------------------------------------------ bad input


def _tar(path: Path, members: Mapping[str, bytes | Path]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in members.items():
            if isinstance(content, Path):
                tar.add(content, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture(scope="module")
def fcn_parameters(workspace) -> Path:
    """model_algo-1 of the FCN archive, to pair with other hyperparameters."""
    target = workspace["root"] / "fcn-model_algo-1"
    with tarfile.open(workspace["fcn"]) as tar:
        target.write_bytes(tar.extractfile("model_algo-1").read())
    return target


def _hyperparameters(**changes: str) -> bytes:
    values = {"algorithm": "fcn", "backbone": "resnet-50", "num_classes": str(NUM_CLASSES), **changes}
    return json.dumps(values).encode()


def _fails(workspace, model: Path, tmp_path: Path, *, env: Mapping[str, str] | None = None) -> str:
    result = _finish(_start(_export_args(workspace, model, tmp_path / "bundle", *THRESHOLDS), env))
    assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("export: error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_a_corrupt_archive_is_reported(workspace, tmp_path):
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"\x1f\x8b\x08\x00 this is not what SageMaker wrote" * 10)
    error = _fails(workspace, tmp_path, tmp_path)  # the folder holding model.tar.gz
    assert f"{model} is not a readable tar archive" in error and "model.tar.gz" in error


def test_an_archive_without_the_network_is_reported(workspace, tmp_path):
    model = _tar(tmp_path / "model.tar.gz", {"hyperparams.json": _hyperparameters()})
    error = _fails(workspace, model, tmp_path)
    assert "lacks model_algo-1" in error and "holds hyperparams.json" in error


def test_an_unknown_head_is_reported(workspace, tmp_path):
    model = _tar(tmp_path / "model.tar.gz", {"hyperparams.json": _hyperparameters(algorithm="unet"),
                                             "model_algo-1": b"unused"})
    error = _fails(workspace, model, tmp_path)
    assert "unknown head algorithm='unet'" in error and "fcn, psp, deeplab" in error


def test_a_class_count_other_than_the_schemes_is_reported(workspace, tmp_path):
    model = _tar(tmp_path / "model.tar.gz", {"hyperparams.json": _hyperparameters(num_classes="11"),
                                             "model_algo-1": b"unused"})
    error = _fails(workspace, model, tmp_path)
    assert "num_classes=11 but scheme 'cityscapes' has 19 classes" in error and "--scheme" in error


def test_parameters_of_another_class_count_are_reported(workspace, export_python, tmp_path):
    parameters = tmp_path / "model_algo-1"
    script = ("import sys, mxnet as mx; mx.nd.save(sys.argv[1], "
              "{'head.block.4.weight': mx.nd.zeros((11, 512, 1, 1)), 'head.block.4.bias': mx.nd.zeros((11,))})")
    subprocess.run([str(export_python), "-c", script, str(parameters)], check=True, cwd=REPO, env=_environment())
    model = _tar(tmp_path / "model.tar.gz", {"hyperparams.json": _hyperparameters(), "model_algo-1": parameters})
    error = _fails(workspace, model, tmp_path)
    assert "model_algo-1 predicts 11 classes" in error and "num_classes=19" in error


def test_parameters_of_another_backbone_are_listed(workspace, fcn_parameters, tmp_path):
    model = _tar(tmp_path / "model.tar.gz", {"hyperparams.json": _hyperparameters(backbone="resnet-101"),
                                             "model_algo-1": fcn_parameters})
    error = _fails(workspace, model, tmp_path)
    assert "does not match a GluonCV FCN with backbone resnet-101" in error
    assert "missing from the file: layer3." in error and "more)" in error
    assert "hyperparams.json" in error


def test_the_serving_environment_is_required(workspace, tmp_path):
    env = _environment()
    del env["TARGET_HEIGHT"]
    error = _fails(workspace, workspace["fcn"], tmp_path, env=env)
    assert "lacks TARGET_HEIGHT" in error


# ----------------------------------------------------------------------- pure helpers (no MXNet here)


def _adaptive_average_pool(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """MXNet's definition, window by window."""
    height, width = x.shape
    result = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            top, bottom = (i * height) // out_h, -((-(i + 1) * height) // out_h)
            left, right = (j * width) // out_w, -((-(j + 1) * width) // out_w)
            result[i, j] = x[top:bottom, left:right].mean()
    return result


@pytest.mark.parametrize(("height", "width", "out_h", "out_w"),
                         [(8, 16, 6, 6), (64, 128, 3, 3), (5, 7, 2, 3), (4, 4, 6, 6), (9, 9, 1, 1)])
def test_pooling_matrices_reproduce_adaptive_average_pooling(height, width, out_h, out_w):
    x = np.random.default_rng(height * width).normal(size=(height, width))
    pooled = adaptive_pool_matrix(height, out_h) @ x @ adaptive_pool_matrix(width, out_w).T
    np.testing.assert_allclose(pooled, _adaptive_average_pool(x, out_h, out_w), rtol=1e-5, atol=1e-6)
    assert adaptive_pool_matrix(height, out_h).dtype == np.float32


def test_hyperparameters_are_read_as_the_algorithm_writes_them():
    spec = parse_hyperparameters({"algorithm": "psp", "backbone": "resnet-101", "num_classes": "19",
                                  "crop_size": "240"})
    assert (spec.head, spec.backbone, spec.num_classes) == ("psp", "resnet-101", 19)
    assert (spec.gluoncv_class, spec.gluoncv_backbone) == ("PSPNet", "resnet101")
    tolerant = parse_hyperparameters({"algorithm": ' "DeepLab" ', "backbone": "resnet50", "num_classes": 12.0})
    assert (tolerant.head, tolerant.backbone, tolerant.num_classes) == ("deeplab", "resnet-50", 12)
    assert parse_hyperparameters({"num_classes": "2"}).head == "fcn"  # the algorithm's defaults
    for bad, message in (({"num_classes": "19.5"}, "not an integer"), ({}, "num_classes is missing"),
                         ({"num_classes": "19", "backbone": "vgg16"}, "unknown backbone"),
                         ({"num_classes": "300"}, "within 2..254"), ([], "expected a JSON object")):
        with pytest.raises(ExportError, match=message):
            parse_hyperparameters(bad)


def test_parameter_differences_list_names_and_counts():
    expected = {f"layer.{i}.weight": (4, 4) for i in range(14)} | {"head.weight": (19, 8)}
    saved = {f"layer.{i}.weight": (4, 4) for i in range(2, 14)} | {"head.weight": (11, 8), "aux.weight": (1,)}
    message = parameter_differences(expected, saved)
    assert "2 missing from the file: layer.0.weight, layer.1.weight" in message
    assert "1 unexpected in the file: aux.weight" in message
    assert "head.weight (file [11, 8], network [19, 8])" in message
    assert parameter_differences(expected, dict(expected)) is None
    many = parameter_differences({f"p{i:02d}": (1,) for i in range(25)}, {})
    assert "25 missing" in many and "(15 more)" in many

