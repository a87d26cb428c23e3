"""Benchmark of drive-log extraction beyond ROS 2 CompressedImage (run: .venv/bin/python bench/extraction_formats.py).

The same measure as bench/extraction.py (whose scene, drop sink and timer it uses), over two more paths of the
extractor, each against the same floor: the library's own CRC-checked read of the same file in the same run.

Logs, written here in a temp dir (640x480 frames, zstd chunks of 1 MiB, mcap's writers):
  foxglove  ``foxglove.CompressedImage`` in protobuf (mcap-protobuf-support's writer, foxglove-schemas-protobuf's
            class), the same JPEGs as bench/extraction.py's compressed log: the extractor passes them through
  nv12      ``sensor_msgs/Image`` nv12 (a Y plane and interleaved half-height UV rows, 460,800 bytes a frame)
  uyvy      ``sensor_msgs/Image`` uyvy (packed 4:2:2, 614,400 bytes a frame); both converted with OpenCV and
            written as lossless PNG

Paths timed in one process on one core (CPU time, median of --runs, interleaved so drift hits every path alike):
  lib+crc   the library's read with validate_crcs=True (mcap_protobuf or mcap_ros2 decoders), touching each
            message's data and stamp, nothing else: the floor of every ratio
  extract0  drivelogs.extract.extract_drive into a sink that drops the bytes (the extractor's own cost)
  convert   (YUV only) lib+crc + OpenCV cvtColor to BGR + PNG encode at the extractor's level: the least any
            lossless conversion of these frames costs

Figures printed: extract0 / lib+crc for each log (Foxglove: the target of the ROS 2 compressed path, <= 1.3, applies:
the extractor does the same work on it), and for YUV also extract0 / convert (the extractor's own cost above the
conversion it must do). Exit code 1 when the Foxglove ratio misses 1.3 or a YUV log's extract0 / convert is above 1.3.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchkit import cpu_medians  # bench/benchkit.py, beside this file
from extraction import HEIGHT, T0, WIDTH, DropSink, scene  # bench/extraction.py, beside this file
from PIL import Image

from drivelogs.decode import PNG_COMPRESSION
from drivelogs.extract import extract_drive
from drivelogs.msgdefs import MSGDEFS

TARGET = 1.3
YUV_TO_BGR = {"nv12": "COLOR_YUV2BGR_NV12", "uyvy": "COLOR_YUV2BGR_UYVY"}


def jpeg_bodies() -> list[bytes]:
    bodies = []
    for seed in range(8):
        buf = io.BytesIO()
        Image.fromarray(scene(seed)).save(buf, "JPEG", quality=90)
        bodies.append(buf.getvalue())
    return bodies


def yuv_bytes(rgb: np.ndarray, encoding: str) -> bytes:
    """The frame in ``encoding``'s layout, made with OpenCV (nv12 from OpenCV's I420 planes)."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if encoding == "uyvy":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY).tobytes()
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    plane = WIDTH * HEIGHT
    y, u, v = i420[:plane], i420[plane: plane * 5 // 4], i420[plane * 5 // 4:]
    return np.concatenate([y, np.stack([u, v], axis=1).reshape(-1)]).tobytes()


def write_foxglove_log(path: Path, frames: int) -> Path:
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from google.protobuf.timestamp_pb2 import Timestamp
    from mcap_protobuf.writer import Writer

    bodies = jpeg_bodies()
    with path.open("wb") as handle:
        writer = Writer(handle)
        for index in range(frames):
            stamp = T0 + index * 33_333_333
            message = CompressedImage(timestamp=Timestamp(seconds=stamp // 10**9, nanos=stamp % 10**9),
                                      frame_id="front", data=bodies[index % 8], format="jpeg")
            writer.write_message("/cam/front/image", message, log_time=stamp, publish_time=stamp)
        writer.finish()
    return path


def write_yuv_log(path: Path, frames: int, encoding: str) -> Path:
    from mcap_ros2.writer import Writer

    msgtype = "sensor_msgs/msg/Image"
    bodies = [yuv_bytes(scene(seed), encoding) for seed in range(8)]
    step = WIDTH * (2 if encoding == "uyvy" else 1)
    with path.open("wb") as handle:
        writer = Writer(handle)
        schema = writer.register_msgdef(msgtype, MSGDEFS[msgtype])
        for index in range(frames):
            stamp = T0 + index * 33_333_333
            header = {"stamp": {"sec": stamp // 10**9, "nanosec": stamp % 10**9}, "frame_id": "front"}
            writer.write_message("/cam/front/image_raw", schema, {
                "header": header, "height": HEIGHT, "width": WIDTH, "encoding": encoding, "is_bigendian": 0,
                "step": step, "data": bodies[index % 8]}, log_time=stamp)
        writer.finish()
    return path


def library_read(path: Path, kind: str) -> int:
    """The library's CRC-checked read; for a YUV log with ``convert`` also OpenCV's conversion and the PNG."""
    import cv2
    from mcap.reader import make_reader

    if kind == "foxglove":
        from mcap_protobuf.decoder import DecoderFactory
    else:
        from mcap_ros2.decoder import DecoderFactory
    convert = kind.endswith("+convert")
    encoding = kind.removesuffix("+convert")
    count = 0
    with path.open("rb") as handle:
        reader = make_reader(handle, validate_crcs=True, decoder_factories=[DecoderFactory()])
        for _, _, _, message in reader.iter_decoded_messages():
            stamp = message.timestamp.seconds if kind == "foxglove" else message.header.stamp.sec
            _ = stamp, len(message.data)
            if convert:
                rows = HEIGHT * 3 // 2 if encoding == "nv12" else HEIGHT
                pixels = np.frombuffer(message.data, np.uint8).reshape(rows, -1)
                if encoding == "uyvy":
                    pixels = pixels.reshape(HEIGHT, WIDTH, 2)
                image = cv2.cvtColor(pixels, getattr(cv2, YUV_TO_BGR[encoding]))
                cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
            count += 1
    return count


def extract0(path: Path) -> int:
    return extract_drive("car-7/bench", [path], DropSink())["totals"]["extracted"]


def speed_table(work: Path, frames: int, raw_frames: int, runs: int) -> list[dict]:
    logs = {"foxglove": write_foxglove_log(work / "foxglove.mcap", frames),
            "nv12": write_yuv_log(work / "nv12.mcap", raw_frames, "nv12"),
            "uyvy": write_yuv_log(work / "uyvy.mcap", raw_frames, "uyvy")}
    rows = []
    for kind, log in logs.items():
        paths: dict[str, Callable[[], int]] = {
            "lib+crc": lambda log=log, kind=kind: library_read(log, kind),
            "extract0": lambda log=log: extract0(log),
        }
        if kind != "foxglove":
            paths["convert"] = lambda log=log, kind=kind: library_read(log, kind + "+convert")
        medians, counts = cpu_medians(paths, runs)  # interleaved, so drift hits every path alike
        floor = medians["lib+crc"]
        for name, seconds in medians.items():
            rows.append({"log": kind, "path": name, "frames": counts[name], "cpu_s": round(seconds, 3),
                         "frames_per_s_per_core": round(counts[name] / seconds, 1),
                         "ratio_to_lib_crc": round(seconds / floor, 2),
                         "log_mb": round(log.stat().st_size / 2**20, 1)})
        if len(set(counts.values())) != 1:
            raise SystemExit(f"{kind}: the paths read different frame counts {counts}: the comparison is void")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1500, help="Foxglove CompressedImage frames in its log")
    parser.add_argument("--raw-frames", type=int, default=60, help="frames in each YUV log")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-extraction-formats-") as tmp:
        rows = speed_table(Path(tmp), args.frames, args.raw_frames, args.runs)
    print(f"{'log':<9} {'path':<9} {'frames':>6} {'cpu s':>7} {'frames/s/core':>13} {'x lib+crc':>9} {'log MB':>7}")
    for row in rows:
        print(f"{row['log']:<9} {row['path']:<9} {row['frames']:>6} {row['cpu_s']:>7.3f} "
              f"{row['frames_per_s_per_core']:>13.1f} {row['ratio_to_lib_crc']:>9.2f} {row['log_mb']:>7.1f}")
    cpu = {(r["log"], r["path"]): r["cpu_s"] for r in rows}
    ok = True
    foxglove = cpu[("foxglove", "extract0")] / cpu[("foxglove", "lib+crc")]
    ok &= foxglove <= TARGET
    print(f"\nfoxglove.CompressedImage (protobuf): extract0 / lib+crc = {foxglove:.2f} "
          f"(target <= {TARGET}: {'met' if foxglove <= TARGET else 'MISSED'})")
    for encoding in ("nv12", "uyvy"):
        floor = cpu[(encoding, "extract0")] / cpu[(encoding, "lib+crc")]
        above = cpu[(encoding, "extract0")] / cpu[(encoding, "convert")]
        ok &= above <= TARGET
        print(f"{encoding}: extract0 / lib+crc = {floor:.2f} (OpenCV conversion and PNG encode included); "
              f"extract0 / convert (lib+crc + cvtColor + PNG) = {above:.2f} "
              f"(<= {TARGET}: {'met' if above <= TARGET else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
