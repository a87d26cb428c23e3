"""Benchmark of the Lambda preprocessing and mask statistics (run: .venv/bin/python bench/preprocess.py).

Input: a 2048x1024 driving scene from segcore/scenes.py (the procedural generator), encoded as
JPEG quality 95 and as PNG; target 1024x512.

Paths timed (median of --runs runs each, interleaved round-robin so drift hits every path alike):
  project  segcore.imaging.prepare_frame()
  naive    full decode + convert("RGB") + resize(LANCZOS) + JPEG encode
  floor    the least any implementation must do: decode (JPEG at reduced size via draft, PNG at full size)
           + the JPEG encode of a 1024x512 image
Memory: peak RSS above the post-import baseline, each path in a fresh subprocess (Pillow's C buffers are
invisible to tracemalloc, which is reported alongside for the Python side).

Mask statistics: mask_statistics() on a 2048x1024 class mask (with VRUs present, so bounding boxes are
computed) against the plain np.bincount floor.

Targets: JPEG project <= 1.25x floor and >= 3x faster than naive; PNG project <= 1.15x floor.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
from benchkit import wall_medians_ms  # noqa: E402  (bench/benchkit.py, beside this file)
from PIL import Image  # noqa: E402

from segcore.imaging import PrepareOptions, prepare_frame  # noqa: E402
from segcore.masks import Geometry, mask_statistics  # noqa: E402
from segcore.scenes import generate_scene  # noqa: E402

WIDTH, HEIGHT = 2048, 1024
TARGET = (1024, 512)
QUALITY = 90  # the project's default JPEG_QUALITY, used by every path's encode
CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip


def camera_frame(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> Image.Image:
    """A driving-like frame from the project's procedural scene generator (the same one the demo uses)."""
    return Image.fromarray(generate_scene(width, height, seed)[0])


def street_mask(width: int = WIDTH, height: int = HEIGHT, seed: int = 3) -> np.ndarray:
    """The generator's train-ID mask; seed 3 has all four vulnerable-road-user classes (boxes computed)."""
    return generate_scene(width, height, seed)[1]


def encode_jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def make_paths(data: bytes, fmt: str) -> dict[str, Callable[[], object]]:
    options = PrepareOptions(target_size=TARGET, jpeg_quality=QUALITY)
    small = camera_frame(*TARGET, seed=5)  # a 1024x512 image for the floor's encode

    def project() -> object:
        return prepare_frame(data, options)

    def naive() -> object:
        im = Image.open(io.BytesIO(data)).convert("RGB")
        return encode_jpeg(im.resize(TARGET, Image.Resampling.LANCZOS))

    def floor() -> object:
        im = Image.open(io.BytesIO(data))
        if fmt == "jpeg":
            im.draft("RGB", TARGET)
        im.load()
        return encode_jpeg(im if im.size == TARGET else small)

    return {"project": project, "naive": naive, "floor": floor}


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) so the peak covers only what follows (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS so the run cannot hide in memory freed by the setup (glibc)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_child(path: str, fmt: str, input_file: str) -> None:
    """Run one path once in this fresh process; print peak RSS above the baseline and tracemalloc peak."""
    data = Path(input_file).read_bytes()
    fn = make_paths(data, fmt)[path]
    gc.collect()
    _release_free_memory()
    if _reset_peak_rss() and _proc_status_kib("VmRSS") is not None:
        baseline_kib = _proc_status_kib("VmRSS")
        method = "VmHWM after clear_refs"
    else:  # ru_maxrss cannot be reset: the delta is a lower bound when setup peaked higher
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "ru_maxrss"
    tracemalloc.start()
    fn()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if method == "ru_maxrss":
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        peak_kib = _proc_status_kib("VmHWM") or 0
    print(
        json.dumps(
            {
                "rss_delta_mib": max(0, peak_kib - baseline_kib) / 1024,
                "tracemalloc_peak_mib": traced_peak / 2**20,
                "method": method,
            }
        )
    )


def measure_memory(path: str, fmt: str, input_file: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", path, fmt, str(input_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_masks(runs: int) -> dict[str, float]:
    mask = street_mask()
    geometry = Geometry.whole((WIDTH * 2, HEIGHT * 2))
    paths = {
        "mask_statistics": lambda: mask_statistics(mask, CLASSES, vru_min_pixels=50, geometry=geometry),
        "bincount_floor": lambda: np.bincount(mask.ravel(), minlength=256),
    }
    stats = mask_statistics(mask, CLASSES, vru_min_pixels=50, geometry=geometry)
    assert len(stats.vru_objects) == 4, stats.vru_objects
    return wall_medians_ms(paths, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60, help="timed runs per path (>= 50 for the report)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-path subprocess memory runs")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--memory-child", nargs=3, metavar=("PATH", "FORMAT", "INPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0

    frame = camera_frame()
    inputs = {"jpeg": None, "png": None}
    buf = io.BytesIO()
    frame.save(buf, format="JPEG", quality=95)
    inputs["jpeg"] = buf.getvalue()
    buf = io.BytesIO()
    frame.save(buf, format="PNG")
    inputs["png"] = buf.getvalue()

    report: dict[str, dict] = {}
    print(
        f"frame {WIDTH}x{HEIGHT} -> target {TARGET[0]}x{TARGET[1]}, "
        f"median of {args.runs} runs, Pillow {Image.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, data in inputs.items():
            timings = wall_medians_ms(make_paths(data, fmt), args.runs)
            entry: dict[str, object] = {"input_bytes": len(data), "median_ms": timings}
            if not args.no_memory:
                input_file = Path(tmp) / f"frame.{fmt}"
                input_file.write_bytes(data)
                entry["memory"] = {name: measure_memory(name, fmt, input_file) for name in timings}
            entry["project_over_floor"] = timings["project"] / timings["floor"]
            entry["naive_over_project"] = timings["naive"] / timings["project"]
            report[fmt] = entry
            print(f"\n{fmt.upper()} input {len(data) / 2**20:.2f} MiB")
            for name, ms in timings.items():
                line = f"  {name:<8} {ms:8.2f} ms"
                if "memory" in entry:
                    mem = entry["memory"][name]
                    line += f"   peak RSS +{mem['rss_delta_mib']:6.1f} MiB"
                    line += f"   tracemalloc peak {mem['tracemalloc_peak_mib']:6.1f} MiB"
                print(line)
            print(
                f"  project/floor = {entry['project_over_floor']:.3f}   "
                f"naive/project = {entry['naive_over_project']:.2f}"
            )

    masks = bench_masks(args.runs)
    report["mask"] = {"median_ms": masks, "stats_over_bincount": masks["mask_statistics"] / masks["bincount_floor"]}
    print(f"\nMASK {WIDTH}x{HEIGHT} (4 VRU classes present)")
    for name, ms in masks.items():
        print(f"  {name:<16} {ms:8.2f} ms")
    print(f"  mask_statistics/bincount = {report['mask']['stats_over_bincount']:.3f}")

    checks = {
        "JPEG project <= 1.25x floor": report["jpeg"]["project_over_floor"] <= 1.25,
        "JPEG project >= 3x faster than naive": report["jpeg"]["naive_over_project"] >= 3.0,
        "PNG project <= 1.15x floor": report["png"]["project_over_floor"] <= 1.15,
    }
    report["targets"] = checks
    print("\nTARGETS")
    for name, ok in checks.items():
        print(f"  {'met ' if ok else 'MISS'}  {name}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
