"""Benchmark of the exported network: ONNX Runtime against MXNet, the same graph at the serving resolution.

Run in the export environment (it needs MXNet):

    PYTHONPATH=.:lambda .venv-export/bin/python bench/exported_model.py [--width 1024 --height 512 --frames 8]

The network is a GluonCV head on ResNet50 with random weights (the speed of a graph does not depend on its
weights), exported exactly as export/model.py exports a model: the hybridized main output
(model-symbol.json + model-0000.params, what Neo compiles) and model.onnx. Frames are generated driving scenes
(segcore/scenes.py) fed through segcore.bundle_runtime.network_input.

Timed, after --warmup frames each, frame by frame with batch 1 (what an edge device or the real-time path does):
  mxnet-cpu     the exported MXNet graph (SymbolBlock), output copied to numpy
  ort-cpu       ONNX Runtime CPUExecutionProvider, default threads
  ort-cuda      ONNX Runtime CUDAExecutionProvider, FP32 (only when this onnxruntime build has it)
  ort-cuda-fp16 the model converted with onnxruntime.transformers.float16 (inputs/outputs kept float32)
Reported: frames/s, ms per frame, speed relative to MXNet on CPU, the largest logit difference against MXNet and
the argmax agreement, and the size of each model on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contracts.bundle import BUNDLE, INPUT_NAME
from export.model import (
    HEAD_CLASSES,
    NetworkSpec,
    build_network,
    check_network_size,
    export_mxnet,
    export_onnx,
    load_exported,
)
from segcore.bundle_runtime import network_input
from segcore.scenes import generate_scene


def frames(width: int, height: int, count: int) -> list[np.ndarray]:
    from PIL import Image

    tensors = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(generate_scene(width, height, seed)[0]).save(buffer, "JPEG", quality=90)
        tensors.append(network_input(buffer.getvalue(), (width, height))[0])
    return tensors


def time_runner(run: Callable[[np.ndarray], np.ndarray], inputs: list[np.ndarray],
                warmup: int) -> tuple[list[float], list[np.ndarray]]:
    for tensor in inputs[:warmup] or inputs[:1]:
        run(tensor)
    seconds, outputs = [], []
    for tensor in inputs:
        started = time.perf_counter()
        outputs.append(run(tensor))
        seconds.append(time.perf_counter() - started)
    return seconds, outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--head", default="fcn", choices=list(HEAD_CLASSES))
    parser.add_argument("--backbone", default="resnet-50", choices=["resnet-50", "resnet-101"])
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--frames", type=int, default=8, help="timed frames per runtime")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import mxnet as mx
    import onnx
    import onnxruntime as ort

    check_network_size(args.head, args.width, args.height)
    spec = NetworkSpec(head=args.head, backbone=args.backbone, num_classes=args.num_classes)
    print(f"{spec.gluoncv_class} {args.backbone}, {args.num_classes} classes, {args.width}x{args.height}, batch 1; "
          f"{args.frames} frames after {args.warmup} warm-up; {os.cpu_count()} CPUs ({platform.processor() or '?'}); "
          f"mxnet {mx.__version__}, onnxruntime {ort.__version__}", flush=True)
    inputs = frames(args.width, args.height, max(args.frames, args.warmup))
    with tempfile.TemporaryDirectory(prefix="roadseg-bench-export-") as scratch:
        output = Path(scratch)
        net = build_network(spec, aux=False, width=args.width, height=args.height)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the heads are initialised already: only the backbone is set here
            net.initialize(mx.init.Xavier(magnitude=2))
        started = time.perf_counter()
        export_mxnet(net, output, args.width, args.height)
        export_onnx(output, args.width, args.height)
        print(f"exported in {time.perf_counter() - started:.1f} s", flush=True)
        sizes = {"mxnet": sum((output / n).stat().st_size for n in (BUNDLE.symbol, BUNDLE.params)),
                 "onnx": (output / BUNDLE.onnx).stat().st_size}

        reference = load_exported(output)
        runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "mxnet-cpu": lambda x: reference(mx.nd.array(x)).asnumpy()}
        skipped: dict[str, str] = {}

        def session(path: Path, provider: str) -> Callable[[np.ndarray], np.ndarray]:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            sess = ort.InferenceSession(str(path), options, providers=[provider])
            return lambda x: sess.run(None, {INPUT_NAME: x})[0]

        runners["ort-cpu"] = session(output / BUNDLE.onnx, "CPUExecutionProvider")
        if "CUDAExecutionProvider" in ort.get_available_providers():
            runners["ort-cuda"] = session(output / BUNDLE.onnx, "CUDAExecutionProvider")
            try:
                from onnxruntime.transformers.float16 import convert_float_to_float16

                fp16 = output / "model-fp16.onnx"
                onnx.save(convert_float_to_float16(onnx.load(str(output / BUNDLE.onnx)), keep_io_types=True),
                          str(fp16))
                sizes["onnx-fp16"] = fp16.stat().st_size
                runners["ort-cuda-fp16"] = session(fp16, "CUDAExecutionProvider")
            except Exception as exc:  # noqa: BLE001 - reported, the FP32 figures still stand
                skipped["ort-cuda-fp16"] = f"float16 conversion failed: {type(exc).__name__}: {exc}"
        else:
            skipped["ort-cuda"] = skipped["ort-cuda-fp16"] = (
                f"this onnxruntime has no CUDAExecutionProvider ({', '.join(ort.get_available_providers())})")

        timings, outputs = {}, {}
        for name, run in runners.items():
            timings[name], outputs[name] = time_runner(run, inputs[: args.frames], args.warmup)
            print(f"  {name}: {statistics.median(timings[name]) * 1000:.1f} ms median", flush=True)

    base = statistics.median(timings["mxnet-cpu"])
    print()
    print(f"{'runtime':<15}{'frames/s':>10}{'ms/frame':>10}{'vs mxnet-cpu':>14}{'max |dlogit|':>14}"
          f"{'argmax agree':>14}")
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        diff = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(
            outputs[name], outputs["mxnet-cpu"], strict=True))
        agree = float(np.mean([np.mean(np.argmax(a[0], 0) == np.argmax(b[0], 0)) for a, b in zip(
            outputs[name], outputs["mxnet-cpu"], strict=True)]))
        print(f"{name:<15}{1 / median:>10.2f}{median * 1000:>10.1f}{base / median:>13.2f}x{diff:>14.3g}{agree:>14.6f}")
    for name, reason in skipped.items():
        print(f"{name:<15} skipped: {reason}")
    print()
    print("model size: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items())
          + f" (symbol+params vs onnx: {sizes['onnx'] / sizes['mxnet']:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
