"""``roadseg segment``: a real (tiny) ONNX model in an edge bundle, real JPEG/PNG frames, the command end to end.

The model is a 1x1 convolution that copies the normalised R, G and B channels to the logits of classes 0, 1 and 2,
so a red frame is "road", a green one "car" and a blue one "person" (a vulnerable road user).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from moto import mock_aws
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from contracts.bundle import validate_bundle
from contracts.documents import validate_result
from export.model import classes_document, file_entries, preprocessing_document
from roadseg import cli
from roadseg import segment as segment_module
from segcore.classes import custom_scheme

NETWORK = (64, 32)  # width, height
CLASSES = ["road", "car", "person"]
COLORS = [[128, 64, 128], [0, 0, 142], [220, 20, 60]]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
BUCKET = "roadseg-test-artifacts"


def colour_model(classes: int = 3) -> bytes:
    """data [1, 3, H, W] -> logits [1, classes, H, W]; class c is channel c (extra classes: a constant -10)."""
    weights = np.zeros((classes, 3, 1, 1), dtype=np.float32)
    for c in range(min(classes, 3)):
        weights[c, c, 0, 0] = 1.0
    bias = np.where(np.arange(classes) < 3, 0.0, -10.0).astype(np.float32)
    width, height = NETWORK
    graph = helper.make_graph(
        [helper.make_node("Conv", ["data", "weights", "bias"], ["logits"], kernel_shape=[1, 1])],
        "colour",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, height, width])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what any supported ONNX Runtime reads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_bundle(root: Path, *, names=CLASSES, model_classes: int = 3, roi: str = "", onnx_file: bool = True) -> Path:
    """A bundle as the ExportModel step writes it: its own classes.json and preprocessing.json writers, a bundle.json
    that passes the contract's validator, the files with their SHA-256."""
    root.mkdir(parents=True, exist_ok=True)
    width, height = NETWORK
    scheme = custom_scheme("custom", [(name, tuple(COLORS[i % 3])) for i, name in enumerate(names)], ["person"])
    environment = {"TARGET_WIDTH": str(width), "TARGET_HEIGHT": str(height), "ROI": roi,
                   "MAX_INPUT_BYTES": "1000000", "MAX_INPUT_PIXELS": "1000000", "JPEG_QUALITY": "90"}
    (root / "classes.json").write_text(json.dumps(classes_document(scheme)))
    preprocessing = preprocessing_document(environment, width, height, len(names), scheme.ignore_index)
    (root / "preprocessing.json").write_text(json.dumps({**preprocessing, "extra": "readers ignore unknown keys"}))
    reason = None
    if onnx_file:
        (root / "model.onnx").write_bytes(colour_model(model_classes))
    else:
        reason = "mx.onnx.export_model failed for the psp head: NotImplementedError: AdaptiveAvgPooling2D"
        (root / "model-symbol.json").write_text("{}")
    manifest = {
        "schema_version": "1.0", "head": "fcn" if onnx_file else "psp", "backbone": "resnet-50",
        "aux_in_checkpoint": False, "scheme": "custom", "num_classes": len(names),
        "network_size": {"width": width, "height": height}, "input_name": "data",
        "onnx": {"status": "exported" if onnx_file else "unavailable", "reason": reason, "opset": 13},
        "parity": {"status": "passed", "frames": 2, "max_abs_logit_difference": 1e-5, "argmax_agreement": 1.0},
        "neo": {"framework": "MXNET", "framework_version": "1.8", "data_input_config": "{}", "archive": "neo/x"},
        "gate": {"mIoU": 0.7, "pixel_accuracy": 0.9}, "versions": {"onnx": onnx.__version__},
        "files": file_entries(root),
    }
    (root / "bundle.json").write_text(json.dumps(validate_bundle(manifest)))
    return root


def frame(path: Path, colour, size, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def bundle(tmp_path) -> Path:
    return write_bundle(tmp_path / "bundle")


@pytest.fixture
def frames(tmp_path) -> Path:
    """Two vehicles' frames (0001.jpg in both), another aspect ratio (PNG), a truncated JPEG, text named .jpg."""
    root = tmp_path / "frames"
    frame(root / "veh-1" / "front" / "0001.jpg", RED, (128, 64))
    frame(root / "veh-1" / "front" / "0002.png", BLUE, (48, 48), "PNG")
    frame(root / "veh-2" / "front" / "0001.jpg", GREEN, (100, 50))
    whole = frame(root / "bad" / "cut.jpg", RED, (128, 64)).read_bytes()
    (root / "bad" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "bad" / "notes.jpg").write_text("not a picture, a note someone named .jpg\n")
    (root / "veh-1" / "front" / "readme.txt").write_text("skipped: not a frame suffix")
    return root


def mask_of(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


def document_of(path: Path) -> dict:
    return validate_result(json.loads(path.read_bytes()))


class Bar:
    """Records what the command tells its progress bar."""

    seen: dict = {}

    def __init__(self, total=None, **kwargs):
        Bar.seen = {"total": total, "unit": kwargs.get("unit"), "updates": 0, "written": []}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        Bar.seen["updates"] += n

    def write(self, text, file=None):
        Bar.seen["written"].append(text)


def test_segments_a_tree_like_the_service(run, bundle, frames, tmp_path, monkeypatch):
    monkeypatch.setattr(segment_module, "tqdm", Bar)
    out = tmp_path / "out"
    rc, stdout, stderr = run("segment", frames, "--bundle", bundle, "--output", out)

    assert rc == 1  # two frames refused
    assert Bar.seen["total"] == 5 and Bar.seen["unit"] == "frame" and Bar.seen["updates"] == 5
    assert any("bad/cut.jpg: refused (truncated)" in line for line in Bar.seen["written"])
    assert any("bad/notes.jpg: refused (unsupported_format)" in line for line in Bar.seen["written"])
    assert "summary: 3 of 5 frames segmented in" in stdout and "frames/s, CPUExecutionProvider" in stdout
    assert "refused 2: truncated 1, unsupported_format 1" in stdout
    assert "  bad/notes.jpg  unsupported_format  only JPEG and PNG frames are accepted, this looks like text" in stdout
    assert "2 of 5 frames refused by the ingest preprocessing" in stderr
    assert "bundle " in stderr and "fcn/resnet-50 64x32, 3 classes" in stderr

    red = document_of(out / "veh-1" / "front" / "0001.json")
    assert red["mode"] == "edge" and red["model_package_version"] is None and red["endpoint_name"] is None
    assert (red["frame_key"], red["vehicle"], red["camera"], red["timestamp"]) == (
        "veh-1/front/0001.jpg", "veh-1", "front", "0001")
    assert red["original_size"] == {"width": 128, "height": 64}
    assert red["inference_size"] == {"width": 64, "height": 32}
    assert red["class_fractions"] == {"road": 1.0} and red["drivable_area_fraction"] == 1.0
    assert red["vulnerable_road_users"]["present"] is False
    assert (red["mask_uri"], red["overlay_uri"]) == ("0001.mask.png", "0001.overlay.jpg")
    assert mask_of(out / "veh-1" / "front" / "0001.mask.png").shape == (64, 128)
    assert np.all(mask_of(out / "veh-1" / "front" / "0001.mask.png") == 0)
    with Image.open(out / "veh-1" / "front" / "0001.overlay.jpg") as overlay:
        assert overlay.format == "JPEG" and overlay.size == (64, 32)

    # the same file name in another folder is its own result
    green = document_of(out / "veh-2" / "front" / "0001.json")
    assert green["class_fractions"] == {"car": 1.0} and green["vehicle"] == "veh-2"
    assert np.all(mask_of(out / "veh-2" / "front" / "0001.mask.png") == 1)

    # another aspect ratio: padded to the network's input, the padding cut off again
    blue = document_of(out / "veh-1" / "front" / "0002.json")
    assert blue["inference_size"] == {"width": 32, "height": 32}
    assert blue["class_fractions"] == {"person": 1.0} and blue["drivable_area_fraction"] == 0.0
    objects = blue["vulnerable_road_users"]["objects"]
    assert blue["vulnerable_road_users"]["present"] is True
    assert [(o["class"], o["bbox"], o["bbox_inference"]) for o in objects] == [("person", [0, 0, 48, 48],
                                                                               [0, 0, 32, 32])]
    assert mask_of(out / "veh-1" / "front" / "0002.mask.png").shape == (48, 48)
    assert np.all(mask_of(out / "veh-1" / "front" / "0002.mask.png") == 2)

    assert not (out / "bad").exists()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(written) == 9


def test_a_clean_run_through_click_exits_zero_without_overlays(bundle, tmp_path):
    images = tmp_path / "images"
    frame(images / "a.jpg", RED, (64, 32))
    frame(images / "a.png", GREEN, (64, 32), "PNG")  # same stem: both keep their suffix
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.cli, ["segment", str(images), "--bundle", str(bundle), "--output", str(out),
                                          "--device", "cpu", "--no-overlay"])
    assert result.exit_code == 0, result.output
    assert "summary: 2 of 2 frames segmented" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg.json", "a.jpg.mask.png", "a.png.json", "a.png.mask.png"]
    document = document_of(out / "a.png.json")
    assert document["class_fractions"] == {"car": 1.0} and document["overlay_uri"] is None
    assert document["frame_key"] == "a.png" and document["vehicle"] is None


def test_the_roi_is_cut_and_restored_as_the_functions_do(run, tmp_path):
    bundle = write_bundle(tmp_path / "bundle", roi="0,0.5,1,1")
    image = frame(tmp_path / "one.jpg", RED, (128, 64))
    rc, _, _ = run("-q", "segment", image, "--bundle", bundle, "--output", tmp_path / "out")
    assert rc == 0
    document = document_of(tmp_path / "out" / "one.json")
    assert document["crop_box"] == [0, 32, 128, 64] and document["inference_size"] == {"width": 64, "height": 16}
    mask = mask_of(tmp_path / "out" / "one.mask.png")
    assert mask.shape == (64, 128) and np.all(mask[:32] == 255) and np.all(mask[32:] == 0)


def test_the_output_folder_inside_the_inputs_is_not_segmented_again(run, bundle, tmp_path):
    images = tmp_path / "images"
    frame(images / "a.jpg", RED, (64, 32))
    for _ in range(2):
        rc, out, _ = run("segment", images, "--bundle", bundle, "--output", images / "segmented")
        assert rc == 0 and "summary: 1 of 1 frames" in out


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: (b / "classes.json").write_text("{"), "classes.json is not valid JSON"),
    (lambda b: (b / "preprocessing.json").unlink(), "preprocessing.json is missing"),
    (lambda b: _edit(b / "preprocessing.json", lambda d: d["input"].pop("width")),
     "preprocessing.json input.width: required key is missing"),
    (lambda b: _edit(b / "bundle.json", lambda d: d.update(schema_version="2.0")),
     "bundle.json schema_version: unknown version '2.0'"),
    (lambda b: _edit(b / "preprocessing.json", lambda d: d["frame_preparation"]["environment"].pop("JPEG_QUALITY")),
     "preprocessing.json frame_preparation.environment.JPEG_QUALITY: required key is missing"),
    (lambda b: _edit(b / "preprocessing.json", lambda d: d["frame_preparation"]["environment"].update(
        TARGET_WIDTH="8")),
     "preprocessing.json frame_preparation.environment.TARGET_WIDTH (TARGET_WIDTH: must be within 16..8192"),
    (lambda b: _edit(b / "classes.json", lambda d: d.update(vulnerable_road_users=["cyclist"])),
     "classes.json vulnerable_road_users (VRU_CLASSES: ['cyclist'] are not in CLASS_NAMES"),
    (lambda b: _edit(b / "classes.json", lambda d: d["classes"][1].pop("color")),
     "classes.json classes[1].color: required key is missing"),
    (lambda b: _edit(b / "preprocessing.json", lambda d: d["input"].update(mean=[0.5, 0.5, 0.5])),
     "preprocessing.json input.mean: is [0.5, 0.5, 0.5], but roadseg segment (segcore.bundle_runtime) works with"),
    (lambda b: _edit(b / "preprocessing.json", lambda d: d["output"].update(shape=[1, 5, 32, 64])),
     "preprocessing.json output.shape: is [1, 5, 32, 64]; with the 3 classes of classes.json it must be"),
    (lambda b: (b / "model.onnx").write_bytes(b"\0" + (b / "model.onnx").read_bytes()[1:]),
     "model.onnx does not match its SHA-256 in bundle.json"),
])
def test_a_broken_bundle_is_a_clear_error(run, bundle, frames, tmp_path, change, message):
    change(bundle)
    rc, out, err = run("segment", frames, "--bundle", bundle, "--output", tmp_path / "out")
    assert rc == 2 and out == ""
    assert message in err, err
    assert not (tmp_path / "out").exists()


def _edit(path: Path, edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_a_model_whose_class_count_differs_from_classes_json(run, frames, tmp_path):
    names = [*CLASSES, "sky"]
    bundle = write_bundle(tmp_path / "bundle", names=names, model_classes=3)
    rc, _, err = run("segment", frames, "--bundle", bundle, "--output", tmp_path / "out")
    assert rc == 2
    assert "model.onnx outputs 3 classes but classes.json lists 4: the files are from different models" in err


def test_a_bundle_without_onnx_points_at_neo(run, frames, tmp_path):
    bundle = write_bundle(tmp_path / "psp", onnx_file=False)
    rc, _, err = run("segment", frames, "--bundle", bundle)
    assert rc == 2
    assert ("has no model.onnx: the export could not produce ONNX for this model (mx.onnx.export_model failed for "
            "the psp head: NotImplementedError: AdaptiveAvgPooling2D)") in err
    assert "model-symbol.json" in err and "SageMaker Neo" in err


def test_missing_bundle_and_frames(run, bundle, frames, tmp_path):
    rc, _, err = run("segment", frames, "--bundle", tmp_path / "nowhere")
    assert rc == 2 and f"bundle {tmp_path / 'nowhere'} does not exist" in err
    rc, _, err = run("segment", tmp_path / "nothing.jpg", "--bundle", bundle)
    assert rc == 2 and "nothing.jpg does not exist" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = run("segment", tmp_path / "empty", "--bundle", bundle)
    assert rc == 2 and "no .jpg/.jpeg/.png files in" in err
    rc, _, err = run("segment", frames, "--bundle", bundle, "--device", "tpu")
    assert rc == 2 and "Invalid value for '--device'" in err


def test_cuda_requested_but_absent(run, bundle, frames, monkeypatch, tmp_path):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    rc, _, err = run("segment", frames, "--bundle", bundle, "--device", "cuda", "--output", tmp_path / "out")
    assert rc == 2 and "--device cuda: this ONNX Runtime has no CUDAExecutionProvider" in err


def test_execution_providers():
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert segment_module.execution_providers("auto", both) == both
    assert segment_module.execution_providers("cuda", both) == both
    assert segment_module.execution_providers("cpu", both) == ["CPUExecutionProvider"]
    assert segment_module.execution_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_a_bundle_in_s3(run, offline_aws_env, tmp_path):
    local = write_bundle(tmp_path / "bundle")
    image = frame(tmp_path / "one.png", BLUE, (64, 32), "PNG")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for path in local.iterdir():
            s3.upload_file(str(path), BUCKET, f"pipelines/abc/bundle/{path.name}")
        s3.put_object(Bucket=BUCKET, Key="pipelines/abc/bundle/neo/model.tar.gz", Body=b"not downloaded")

        rc, out, err = run("--region", "us-east-1", "segment", image, "--bundle", f"s3://{BUCKET}/pipelines/abc/bundle",
                           "--output", tmp_path / "out")
        assert rc == 0, err
        assert f"bundle s3://{BUCKET}/pipelines/abc/bundle: fcn/resnet-50 64x32" in err
        assert document_of(tmp_path / "out" / "one.json")["class_fractions"] == {"person": 1.0}

        rc, _, err = run("segment", image, "--bundle", f"s3://{BUCKET}/pipelines/other/")
        assert rc == 2 and f"no bundle.json under s3://{BUCKET}/pipelines/other/" in err
