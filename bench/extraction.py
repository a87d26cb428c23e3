"""Benchmark of drive-log extraction (run: .venv/bin/python bench/extraction.py).

Logs are MCAP files with ROS 2 messages written here (mcap_ros2's writer, zstd chunks of 1 MiB) in a temp dir:
640x480 frames as sensor_msgs/CompressedImage (JPEG, q90, a smooth scene with noise: about 60 KB) and as raw
sensor_msgs/Image rgb8 (921,600 bytes each).

Paths timed in one process on one core (CPU time, so the figures are per core; median of --runs, interleaved):
  library   the library's own read of the same messages: make_reader + iter_decoded_messages (mcap_ros2 decoders),
            touching each message's data and stamp, nothing else
  lib+crc   the same with validate_crcs=True (the extractor checks every chunk's CRC, to detect corrupt chunks)
  extract   drivelogs.extract.extract_drive into a local directory (what the job does, file writes included)
  extract0  the same into a sink that drops the bytes (the extractor's own cost without the disk)
  floor     (raw only) library + cv2 PNG encode of each frame: the least a lossless conversion costs

Memory: peak RSS above the post-import baseline (and tracemalloc's peak for the Python side) of extract_drive over
logs of 200 and 1000 compressed frames, each in a fresh subprocess: it must not grow with the log.

Target: compressed extract0 / lib+crc <= 1.3 (the extractor's own cost against the library's read with the checks the
extractor needs; the job writes frames to S3, so this machine's per-file disk cost is shown, not judged).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchkit import cpu_medians, reset_peak, status_kib  # bench/benchkit.py, beside this file
from PIL import Image

from drivelogs.extract import extract_drive
from drivelogs.msgdefs import MSGDEFS
from drivelogs.sinks import LocalDirectorySink

WIDTH, HEIGHT = 640, 480
T0 = 1_796_292_900 * 1_000_000_000


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, (x + y) * 127 // (WIDTH + HEIGHT)], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def write_log(path: Path, frames: int, raw: bool) -> Path:
    from mcap_ros2.writer import Writer

    msgtype = "sensor_msgs/msg/Image" if raw else "sensor_msgs/msg/CompressedImage"
    bodies = []
    for seed in range(8):
        array = scene(seed)
        if raw:
            bodies.append(array.tobytes())
        else:
            buf = io.BytesIO()
            Image.fromarray(array).save(buf, "JPEG", quality=90)
            bodies.append(buf.getvalue())
    with path.open("wb") as handle:
        writer = Writer(handle)
        schema = writer.register_msgdef(msgtype, MSGDEFS[msgtype])
        for index in range(frames):
            stamp = T0 + index * 33_333_333
            header = {"stamp": {"sec": stamp // 10**9, "nanosec": stamp % 10**9}, "frame_id": "front"}
            if raw:
                message = {"header": header, "height": HEIGHT, "width": WIDTH, "encoding": "rgb8",
                           "is_bigendian": 0, "step": WIDTH * 3, "data": bodies[index % 8]}
            else:
                message = {"header": header, "format": "jpeg", "data": bodies[index % 8]}
            writer.write_message("/cam/front/image_raw" + ("" if raw else "/compressed"), schema, message,
                                 log_time=stamp)
        writer.finish()
    return path


def library_read(path: Path, png: bool = False, crc: bool = False) -> int:
    import cv2
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    count = 0
    with path.open("rb") as handle:
        reader = make_reader(handle, validate_crcs=crc, decoder_factories=[DecoderFactory()])
        for _, _, _, message in reader.iter_decoded_messages():
            _ = message.header.stamp.sec, len(message.data)
            if png:
                array = np.frombuffer(message.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
                cv2.imencode(".png", cv2.cvtColor(array, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
            count += 1
    return count


class DropSink:
    def put_frame(self, key, body, content_type, metadata) -> bool:
        return True

    def describe(self) -> str:
        return "nowhere"


def extract(path: Path, work: Path | None) -> int:
    if work is None:
        sink = DropSink()
    else:
        out = Path(tempfile.mkdtemp(dir=work))
        sink = LocalDirectorySink(out)
    return extract_drive("car-7/bench", [path], sink)["totals"]["extracted"]


def speed_table(work: Path, frames: int, raw_frames: int, runs: int) -> list[dict]:
    logs = {"compressed": write_log(work / "compressed.mcap", frames, raw=False),
            "raw rgb8": write_log(work / "raw.mcap", raw_frames, raw=True)}
    rows = []
    for kind, log in logs.items():
        paths: dict[str, Callable[[], int]] = {
            "library": lambda log=log: library_read(log),
            "lib+crc": lambda log=log: library_read(log, crc=True),
            "extract": lambda log=log: extract(log, work),
            "extract0": lambda log=log: extract(log, None),
        }
        if kind == "raw rgb8":
            paths["floor"] = lambda log=log: library_read(log, png=True)
        medians, counts = cpu_medians(paths, runs)
        library = medians["library"]
        for name, seconds in medians.items():
            rows.append({"log": kind, "path": name, "frames": counts[name], "cpu_s": round(seconds, 3),
                         "frames_per_s_per_core": round(counts[name] / seconds, 1),
                         "ratio_to_library": round(seconds / library, 2),
                         "log_mb": round(log.stat().st_size / 2**20, 1)})
    return rows


def child_memory(log: Path, out: Path, warmup: Path) -> None:
    """Peak RSS above the baseline after imports (and a warm-up frame), plus tracemalloc's peak (a second run).

    The peak is VmHWM reset before the extraction (``5`` to /proc/self/clear_refs, Linux >= 4.0), not ru_maxrss: a
    child started with fork + exec keeps its parent's peak there, so every drive length would show the parent's size.
    """
    import drivelogs.extract  # noqa: F401  (imports counted in the baseline)

    extract(warmup, out)  # lazy imports and first-use allocations belong to the baseline
    baseline = status_kib("VmRSS")
    if not reset_peak():
        raise SystemExit("/proc/self/clear_refs is not writable: no peak RSS of the extraction alone")
    extracted = extract(log, out)
    peak = status_kib("VmHWM")
    tracemalloc.start()  # a second extraction, traced (tracing's bookkeeping would inflate the first one's RSS)
    extract(log, out)
    _, traced_peak = tracemalloc.get_traced_memory()
    print(json.dumps({"extracted": extracted, "rss_growth_mib": round((peak - baseline) / 1024, 1),
                      "tracemalloc_peak_mib": round(traced_peak / 2**20, 1)}))


def memory_table(work: Path, sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    write_log(work / "memory-warmup.mcap", 5, raw=False)
    for frames in sizes:
        log = write_log(work / f"memory-{frames}.mcap", frames, raw=False)
        result = subprocess.run([sys.executable, __file__, "--child-memory", str(log), "--work", str(work)],
                                check=True, capture_output=True, text=True)
        rows.append({"frames": frames, "log_mb": round(log.stat().st_size / 2**20, 1),
                     **json.loads(result.stdout.strip().splitlines()[-1])})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="compressed frames in the speed log")
    parser.add_argument("--raw-frames", type=int, default=60, help="raw rgb8 frames in the speed log")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-sizes", default="200,1000")
    parser.add_argument("--child-memory", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.child_memory, args.work, args.work / "memory-warmup.mcap")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-extraction-") as tmp:
        work = Path(tmp)
        speed = speed_table(work, args.frames, args.raw_frames, args.runs)
        memory = memory_table(work, tuple(int(n) for n in args.memory_sizes.split(",")))
    print(f"{'log':<11} {'path':<9} {'frames':>6} {'cpu s':>7} {'frames/s/core':>13} {'x library':>9} {'log MB':>7}")
    for row in speed:
        print(f"{row['log']:<11} {row['path']:<9} {row['frames']:>6} {row['cpu_s']:>7.3f} "
              f"{row['frames_per_s_per_core']:>13.1f} {row['ratio_to_library']:>9.2f} {row['log_mb']:>7.1f}")
    print()
    print(f"{'frames':>6} {'log MB':>7} {'RSS growth MiB':>14} {'tracemalloc peak MiB':>20}")
    for row in memory:
        print(f"{row['frames']:>6} {row['log_mb']:>7.1f} {row['rss_growth_mib']:>14.1f} "
              f"{row['tracemalloc_peak_mib']:>20.1f}")
    cpu = {(r["log"], r["path"]): r["cpu_s"] for r in speed}
    # The target compares like with like: the extractor's own cost (extract0: the job's frames go to S3, not to this
    # machine's disk) against the library's own read with the chunk CRC checks the extractor needs to find corrupt
    # chunks (mcap's validate_crcs). The other ratios are printed as they are.
    ratio = cpu[("compressed", "extract0")] / cpu[("compressed", "lib+crc")]
    grows = memory[-1]["rss_growth_mib"] > 2 * max(memory[0]["rss_growth_mib"], 8.0)
    print(f"\ncompressed: extract0 / lib+crc = {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'}); "
          f"extract0 / library (no CRC checks) = "
          f"{cpu[('compressed', 'extract0')] / cpu[('compressed', 'library')]:.2f}; with one file per frame on "
          f"local disk: extract / library = {cpu[('compressed', 'extract')] / cpu[('compressed', 'library')]:.2f}")
    raw_ratio = cpu[("raw rgb8", "extract")] / cpu[("raw rgb8", "floor")]
    print(f"raw rgb8: extract / floor (library + PNG encode) = {raw_ratio:.2f}")
    print(f"memory: {'GROWS' if grows else 'flat'} with the log")
    return 0 if ratio <= 1.3 and not grows else 1


if __name__ == "__main__":
    sys.exit(main())
