"""Benchmark of candidate-pool scoring (labelling.scoring) against the bare ONNX Runtime forward of the same bundle,
one CPU core, same run (issue 22: overhead <= 1.2x).

The bundle is written as the ExportModel step writes one (export.model's classes.json and preprocessing.json
writers, bundle.json with the files' SHA-256) around a generated ONNX graph shaped like an FCN at output stride 8:
3x3 convolutions at 1/2, 1/4 and 1/8 of the input, a 1x1 classifier to the 19 Cityscapes classes and a bilinear
resize back to the input size. Its compute per pixel is set to FCN-ResNet50's (~0.58 TFLOP per 1024x512 frame, about
1.1 MFLOP per pixel; contracts reference notes) so the ratio is that of the real network at the benchmark's size;
the weights are random (speed does not depend on them). Frames: generated driving scenes (segcore/scenes.py) as
JPEGs at twice the network size, so the ingest's preparation really resizes.

Timed, interleaved frame by frame, one thread each (``intra_op_num_threads=1``: frames/s per core):
  forward   session.run on the prepared tensor (the network alone)
  scoring   Scorer.score on the JPEG: prepare_frame, network_input, the same forward, softmax, the model signals
Reported: frames/s per core of each, the ratio (target <= 1.2), the overhead in ms per frame, and the overhead
alone (no network) at 1024x512 with 19 classes, the serving size.

    PYTHONPATH=. python bench/scoring.py [--width 512 --height 256 --frames 6 --warmup 1]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

FCN_FLOP_PER_PIXEL = 0.58e12 / (1024 * 512)


def fcn_like_model(width: int, height: int, classes: int) -> tuple[bytes, float]:
    """The ONNX graph and its multiply-add FLOPs (2 per MAC) for one frame."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, flops = [], [], 0.0
    name, channels, scale = "data", 3, 1

    def conv(out_channels: int, stride: int, kernel: int = 3) -> None:
        nonlocal name, channels, scale, flops
        w = (rng.standard_normal((out_channels, channels, kernel, kernel)) * (2 / (channels * kernel * kernel)) ** 0.5)
        wname, out = f"w{len(inits)}", f"t{len(nodes)}"
        inits.append(numpy_helper.from_array(w.astype(np.float32), wname))
        nodes.append(helper.make_node("Conv", [name, wname], [out], kernel_shape=[kernel, kernel],
                                      strides=[stride, stride], pads=[kernel // 2] * 4))
        scale *= stride
        flops += 2 * (width // scale) * (height // scale) * out_channels * channels * kernel * kernel
        name, channels = out, out_channels
        relu = f"r{len(nodes)}"
        nodes.append(helper.make_node("Relu", [name], [relu]))
        name = relu

    conv(32, 2)
    conv(64, 2)
    conv(64, 1)
    conv(128, 2)
    target = FCN_FLOP_PER_PIXEL * width * height
    while flops + 2 * (width // 8) * (height // 8) * 256 * channels * 9 < target * 0.97:
        conv(256 if channels >= 128 else 128, 1)
    conv(classes, 1, kernel=1)
    sizes = numpy_helper.from_array(np.array([1, classes, height, width], dtype=np.int64), "sizes")
    inits.append(sizes)
    nodes.append(helper.make_node("Resize", [name, "", "", "sizes"], ["logits"], mode="linear"))
    graph = helper.make_graph(nodes, "fcn_like", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                                 [1, 3, height, width])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             [1, classes, height, width])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), flops


def write_bundle(root: Path, width: int, height: int) -> float:
    """A bundle the contracts accept around the generated graph; the graph's FLOPs per frame."""
    import onnx

    from contracts.bundle import validate_bundle
    from export.model import classes_document, file_entries, preprocessing_document
    from segcore.classes import CITYSCAPES

    root.mkdir(parents=True, exist_ok=True)
    model, flops = fcn_like_model(width, height, CITYSCAPES.num_classes)
    (root / "model.onnx").write_bytes(model)
    environment = {"TARGET_WIDTH": str(width), "TARGET_HEIGHT": str(height), "ROI": "",
                   "MAX_INPUT_BYTES": "20000000", "MAX_INPUT_PIXELS": "40000000", "JPEG_QUALITY": "90"}
    (root / "classes.json").write_text(json.dumps(classes_document(CITYSCAPES)))
    (root / "preprocessing.json").write_text(json.dumps(preprocessing_document(
        environment, width, height, CITYSCAPES.num_classes, CITYSCAPES.ignore_index)))
    manifest = {
        "schema_version": "1.0", "head": "fcn", "backbone": "bench", "aux_in_checkpoint": False,
        "scheme": CITYSCAPES.name, "num_classes": CITYSCAPES.num_classes,
        "network_size": {"width": width, "height": height}, "input_name": "data",
        "onnx": {"status": "exported", "reason": None, "opset": 17},
        "parity": {"status": "skipped", "frames": 0, "max_abs_logit_difference": None, "argmax_agreement": None},
        "neo": {"framework": "MXNET", "framework_version": "1.8", "data_input_config": "{}", "archive": "-"},
        "gate": {"mIoU": 0.0, "pixel_accuracy": 0.0}, "versions": {"onnx": onnx.__version__},
        "files": file_entries(root),
    }
    (root / "bundle.json").write_text(json.dumps(validate_bundle(manifest)))
    return flops


def jpeg_frames(width: int, height: int, count: int) -> list[bytes]:
    from PIL import Image

    from segcore.scenes import generate_scene

    frames = []
    for seed in range(count):
        rgb, _ = generate_scene(width, height, seed)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
        frames.append(buffer.getvalue())
    return frames


def overhead_at(width: int, height: int, classes: int, frames: list[bytes], repeats: int) -> float:
    """Seconds per frame of everything scoring does besides the network, at ``width`` x ``height``."""
    from labelling.scoring import softmax
    from segcore.bundle_runtime import network_input
    from segcore.imaging import PrepareOptions, prepare_frame
    from segcore.signals import probability_signals

    options = PrepareOptions(target_size=(width, height))
    logits = np.random.default_rng(1).standard_normal((classes, height, width)).astype(np.float32)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        prepared = prepare_frame(frames[i % len(frames)], options)
        network_input(prepared.jpeg, (width, height))
        probability_signals(softmax(logits.copy()), region=32)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    from labelling.scoring import Scorer, load_bundle
    from segcore.bundle_runtime import network_input
    from segcore.imaging import prepare_frame

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as scratch:
        flops = write_bundle(Path(scratch) / "bundle", args.width, args.height)
        bundle = load_bundle(Path(scratch) / "bundle")
        scorer = Scorer(bundle, "cpu", threads=1)
        frames = jpeg_frames(args.width * 2, args.height * 2, args.frames)
        tensors = [network_input(prepare_frame(f, bundle.prepare_options).jpeg, bundle.network_size)[0]
                   for f in frames]
        for i in range(args.warmup):
            scorer.score(frames[i % len(frames)])
        forward, scoring = [], []
        for frame, tensor in zip(frames, tensors, strict=True):
            started = time.perf_counter()
            scorer.session.run([scorer.output_name], {bundle.input_name: tensor})
            forward.append(time.perf_counter() - started)
            started = time.perf_counter()
            scorer.score(frame)
            scoring.append(time.perf_counter() - started)
    f, s = statistics.median(forward), statistics.median(scoring)
    print(f"graph: FCN-like, {flops / 1e9:.0f} GFLOP per {args.width}x{args.height} frame "
          f"({flops / (args.width * args.height) / 1e6:.2f} MFLOP per pixel; FCN-ResNet50 "
          f"{FCN_FLOP_PER_PIXEL / 1e6:.2f}), 19 classes, CPU, 1 thread, median of {args.frames} frames")
    print(f"forward  {1 / f:7.3f} frames/s per core ({f * 1000:.0f} ms)  [{flops / f / 1e9:.1f} GFLOP/s]")
    print(f"scoring  {1 / s:7.3f} frames/s per core ({s * 1000:.0f} ms)")
    print(f"scoring / forward: {s / f:.3f}x time per frame (target <= 1.2), overhead {(s - f) * 1000:.0f} ms per frame")
    serving = overhead_at(1024, 512, 19, jpeg_frames(2048, 1024, 2), 3)
    fcn_forward = 0.58e12 / (flops / f)
    print(f"at 1024x512 (the serving size): the work besides the network takes {serving * 1000:.0f} ms per frame; "
          f"FCN-ResNet50's 0.58 TFLOP at this run's {flops / f / 1e9:.1f} GFLOP/s per core is ~{fcn_forward:.1f} s: "
          f"{(fcn_forward + serving) / fcn_forward:.3f}x")


if __name__ == "__main__":
    main()
