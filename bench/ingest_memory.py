"""Ingest's memory under a batch of large frames: the peak resident memory of decoding one SQS batch of PNGs at the
configured limits (envconfig.config.PreprocessingConfig: max_input_pixels, max_input_bytes, the ingest function's
memory_mb, batch_size), three ways in the same run:

- sequential: the frames one after another (INGEST_RECORD_CONCURRENCY=1; the floor),
- unbounded: every record of the batch decoding at once (what ingest did before the memory budget),
- budgeted: every record in its own thread, decoding through roadseg_lambda.batch.MemoryBudget as lambda/ingest.py
  does (the budget from the function's memory, roadseg_lambda.batch.decode_budget_bytes; each frame's cost from its
  header, segcore.imaging.decode_cost).

Each run is a fresh child process whose peak RSS (VmHWM) is reset before decoding (``/proc/self/clear_refs``: a
child inherits its parent's ``ru_maxrss`` across exec, so getrusage alone would report the parent's peak); the PNGs
are real files made with numpy and Pillow (a gradient with noise, at the pixel limit, under the byte limit). Prints
the peak RSS of each way, the budgeted peak against the function's memory, and the ratios.

    PYTHONPATH=lambda python bench/ingest_memory.py [--kinds rgba40,grey16-40,rgba20] [--frames N]

(lambda/ on the path: the function's code root, as the Lambda runtime has it; make bench sets it.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import reset_peak, status_kib  # bench/benchkit.py, beside this file

MIB = 1024 * 1024
# name -> (megapixels as a share of max_input_pixels, mode): the three shapes of issue 19's finding 7.
KINDS = {"rgba40": (1.0, "RGBA"), "grey16-40": (1.0, "I;16"), "rgba20": (0.5, "RGBA")}


def make_png(path: Path, pixels: int, mode: str, max_bytes: int) -> tuple[int, int]:
    """A PNG of about ``pixels`` pixels (3:2), ``mode`` RGBA or 16-bit grey, under ``max_bytes``."""
    import numpy as np
    from PIL import Image

    width = int((pixels * 3 / 2) ** 0.5)
    height = pixels // width
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :] * np.linspace(0.3, 1, height, dtype=np.float32)[:, None]
    if mode == "I;16":
        grey = (ramp * 60000).astype(np.uint16)
        grey[: height // 8] += rng.integers(0, 64, (height // 8, width), dtype=np.uint16)  # a noisy band: real data
        image = Image.fromarray(grey)  # 16-bit grey PNG
    else:
        rgba = np.empty((height, width, 4), np.uint8)
        rgba[..., 0] = (ramp * 255).astype(np.uint8)
        rgba[..., 1] = rgba[..., 0][:, ::-1]
        rgba[..., 2] = 128
        rgba[..., 3] = 255
        rgba[: height // 16, :, :3] += rng.integers(0, 8, (height // 16, width, 3), dtype=np.uint8)
        image = Image.fromarray(rgba, "RGBA")
        del rgba
    image.save(path, format="PNG", compress_level=6)
    if path.stat().st_size > max_bytes:
        raise SystemExit(f"{path.name}: {path.stat().st_size} bytes is over max_input_bytes {max_bytes}")
    return width, height


def child(way: str, png: str, frames: int, memory_mb: int, max_bytes: int, max_pixels: int) -> None:
    """Decode ``frames`` copies of ``png`` the way named; print the process's peak RSS (JSON)."""
    import resource
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from roadseg_lambda.batch import MemoryBudget, decode_budget_bytes

    from segcore.imaging import PrepareOptions, decode_cost, prepare_frame

    options = PrepareOptions(max_bytes=max_bytes, max_pixels=max_pixels)
    data = [Path(png).read_bytes() for _ in range(frames)]  # each record holds its own object's bytes
    reset_peak()  # the peak RSS starts afresh at the current RSS (Linux: clear_refs 5)
    before = status_kib("VmRSS") * 1024
    budget = MemoryBudget(decode_budget_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)},
                                              records_in_flight=frames, max_input_bytes=max_bytes))
    lock = threading.Lock()
    decoding = [0, 0]  # now, most at once

    def one(frame: bytes) -> int:
        def run() -> int:
            with lock:
                decoding[0] += 1
                decoding[1] = max(decoding[1], decoding[0])
            try:
                return len(prepare_frame(frame, options).jpeg)
            finally:
                with lock:
                    decoding[0] -= 1

        if way != "budgeted":
            return run()
        with budget.reserve(decode_cost(frame, options)):
            return run()

    started = time.perf_counter()
    if way == "sequential":
        for frame in data:
            one(frame)
    else:
        with ThreadPoolExecutor(max_workers=frames) as pool:
            list(pool.map(one, data))
    seconds = time.perf_counter() - started
    peak = status_kib("VmHWM") * 1024 or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak": peak, "before": before, "seconds": seconds, "at_once": decoding[1],
                      "budget": budget.capacity, "cost": decode_cost(data[0], options)}))


def measure(way: str, png: Path, args: argparse.Namespace, limits: dict[str, int]) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", way, str(png), "--frames", str(args.frames)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, ["lambda", ".", os.environ.get("PYTHONPATH")]))}
    env.update({key.upper(): str(value) for key, value in limits.items()})
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{way} on {png.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--frames", type=int, default=None, help="records per batch (default: the config's)")
    parser.add_argument("--child", nargs=2, metavar=("WAY", "PNG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.frames, int(os.environ["MEMORY_MB"]),
              int(os.environ["MAX_BYTES"]), int(os.environ["MAX_PIXELS"]))
        return 0

    from envconfig.config import PreprocessingConfig

    config = PreprocessingConfig()
    limits = {"memory_mb": config.ingest.memory_mb, "max_bytes": config.max_input_bytes,
              "max_pixels": config.max_input_pixels}
    args.frames = args.frames or min(config.batch_size, 10)
    print(f"configured limits: ingest memory {limits['memory_mb']} MB, max_input_pixels {limits['max_pixels']:,}, "
          f"max_input_bytes {limits['max_bytes'] / MIB:.0f} MiB; {args.frames} records per batch")
    failures = []
    with tempfile.TemporaryDirectory(prefix="roadseg-ingest-memory-") as tmp:
        for kind in args.kinds.split(","):
            share, mode = KINDS[kind]
            png = Path(tmp) / f"{kind}.png"
            width, height = make_png(png, int(limits["max_pixels"] * share), mode, limits["max_bytes"])
            rows = {way: measure(way, png, args, limits) for way in ("sequential", "unbounded", "budgeted")}
            budgeted = rows["budgeted"]
            print(f"\n{kind}: {width}x{height} {mode} PNG, {png.stat().st_size / MIB:.1f} MiB; estimated decode cost "
                  f"{budgeted['cost'] / MIB:.0f} MiB, budget {budgeted['budget'] / MIB:.0f} MiB")
            for way, row in rows.items():
                print(f"  {way:<10} peak RSS {row['peak'] / MIB:7.0f} MiB (before decoding {row['before'] / MIB:4.0f}) "
                      f"{row['seconds']:6.2f} s, {row['at_once']} decoding at once")
            fits = budgeted["peak"] <= limits["memory_mb"] * 1e6
            print(f"  unbounded / budgeted peak: {rows['unbounded']['peak'] / budgeted['peak']:.2f}x; "
                  f"budgeted / sequential: {budgeted['peak'] / rows['sequential']['peak']:.2f}x; budgeted "
                  f"{budgeted['seconds'] / rows['sequential']['seconds']:.2f}x the sequential time; budgeted peak "
                  f"{'within' if fits else 'OVER'} the function's {limits['memory_mb']} MB")
            if not fits:
                failures.append(kind)
    if failures:
        print(f"\nover the function's memory: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
