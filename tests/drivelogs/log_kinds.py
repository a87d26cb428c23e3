"""Every kind of drive log the suite builds, one small log (or set of logs) each, written with the libraries' own
writers (tests/drivelogs/conftest.py's writers and the tests' own), damaged where the kind says so, with the number
of image messages written per topic: what the extraction must account for.

``outcomes()`` extracts each kind and returns one row per kind (log format, status, image messages written,
extracted, skipped by reason, lost, problem kinds); tests/drivelogs/test_log_kinds.py checks that every row's
counts reconcile and that docs/drives.md's table "What each log kind gives" is this table. Regenerate it with

    .venv/bin/python bench/log_kinds_table.py --write-docs docs/drives.md
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml

from tests.drivelogs import conftest as writers

DRIVE = "car-7/kinds"
FRONT = "/cam/front/image_raw/compressed"
REAR = "/cam/rear/image_raw/compressed"
RAW = "/cam/front/image_raw"
TICK = 100_000_000
DOCS_BEGIN = "<!-- log-kinds:begin (generated: python bench/log_kinds_table.py --write-docs docs/drives.md) -->"
DOCS_END = "<!-- log-kinds:end -->"

LOGS = SimpleNamespace(T0=writers.T0, WIDTH=writers.WIDTH, HEIGHT=writers.HEIGHT, Msg=writers.Msg,
                       jpeg_bytes=writers.jpeg_bytes, png_bytes=writers.png_bytes, compressed=writers.compressed,
                       image=writers.image, string=writers.string, write_mcap=writers.write_mcap,
                       write_mcap_raw_channel=writers.write_mcap_raw_channel, write_ros1_bag=writers.write_ros1_bag,
                       write_ros2_bag=writers.write_ros2_bag)  # what the drive_logs fixture gives the tests


@dataclass(frozen=True)
class Built:
    logs: list[Path]
    written: dict[str, int]  # image topic -> image messages written to it (before any damage)
    damaged: bool = False  # the logs were damaged after writing: some messages may be unknown


def two_cameras(count: int = 10) -> list:
    """Two cameras at 10 Hz (JPEG front, PNG rear) and a chatter topic, as the conftest fixture writes them."""
    messages = []
    for index in range(count):
        stamp = writers.T0 + index * TICK
        messages.append(writers.compressed(FRONT, stamp, writers.jpeg_bytes(seed=index)))
        messages.append(writers.compressed(REAR, stamp + 1, writers.png_bytes(seed=index), fmt="png"))
        messages.append(writers.string("/chatter", f"hello {index}", stamp + 2))
    return messages


def front_frames(count: int) -> list:
    return [writers.compressed(FRONT, writers.T0 + i * 50_000_000, writers.jpeg_bytes(seed=i)) for i in range(count)]


def cut(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])


def truncated(log: Path, keep: float | int, written: int) -> Built:
    """``log`` (FRONT frames only) cut to its first ``keep`` bytes (a fraction of them when a float)."""
    cut(log, keep)
    return Built([log], {FRONT: written}, damaged=True)


def flip_bytes(path: Path, start: int, count: int = 16) -> None:
    """Invert ``count`` bytes of ``path`` from ``start`` (damage that keeps the file's length)."""
    data = bytearray(path.read_bytes())
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))


def storage_file(bag: Path) -> Path:
    (file,) = [p for p in bag.iterdir() if p.name != "metadata.yaml"]
    return file


# ------------------------------------------------------------------------------------------------------- builders


def mcap_ros2(tmp: Path) -> Built:
    return Built([writers.write_mcap(tmp / "d.mcap", two_cameras())], {FRONT: 10, REAR: 10})


def ros1_bag(tmp: Path) -> Built:
    return Built([writers.write_ros1_bag(tmp / "d.bag", two_cameras())], {FRONT: 10, REAR: 10})


def ros2_sqlite3(tmp: Path) -> Built:
    return Built([writers.write_ros2_bag(tmp / "bag", two_cameras(), storage="sqlite3")], {FRONT: 10, REAR: 10})


def ros2_mcap(tmp: Path) -> Built:
    return Built([writers.write_ros2_bag(tmp / "bag", two_cameras(), storage="mcap")], {FRONT: 10, REAR: 10})


def write_zstd_ros2_mcap(bag: Path, frames: list) -> Path:
    """A rosbag2 MCAP bag, file-compressed with zstd (rosbags' own writer), of JPEG ``frames`` on FRONT."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.LATEST)
    types = typestore.types
    writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with writer:
        connection = writer.add_connection(FRONT, "sensor_msgs/msg/CompressedImage", typestore=typestore)
        for msg in frames:
            sec, nanosec = divmod(msg.stamp, 1_000_000_000)
            header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                                  frame_id="camera")
            image = types["sensor_msgs/msg/CompressedImage"](
                header=header, format="jpeg", data=np.frombuffer(msg.fields["data"], np.uint8).copy())
            writer.write(connection, msg.time, typestore.serialize_cdr(image, "sensor_msgs/msg/CompressedImage"))
    return bag


def ros2_mcap_zstd(tmp: Path) -> Built:
    return Built([write_zstd_ros2_mcap(tmp / "bag", front_frames(10))], {FRONT: 10})


def raw_encodings(tmp: Path) -> Built:
    w, h = writers.WIDTH, writers.HEIGHT
    rgb = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    grey = rgb[..., 0].copy()
    layouts = {"rgb8": (rgb, 3), "bgr8": (rgb, 3), "8UC3": (rgb, 3), "mono8": (grey, 1), "8UC1": (grey, 1),
               "mono16": (grey.astype("<u2") * 257, 2), "16UC1": (grey.astype("<u2") * 257, 2),
               "rgba8": (np.dstack([rgb, grey]), 4), "bgra8": (np.dstack([rgb, grey]), 4)}
    messages = [writers.image(RAW, writers.T0 + i * TICK, encoding, w, h, pixels.tobytes(), w * size)
                for i, (encoding, (pixels, size)) in enumerate(layouts.items())]
    return Built([writers.write_mcap(tmp / "d.mcap", messages)], {RAW: len(messages)})


def bayer(tmp: Path) -> Built:
    w, h = writers.WIDTH, writers.HEIGHT
    mosaic = np.random.default_rng(2).integers(0, 255, (h, w), dtype=np.uint8)
    messages = [writers.image(RAW, writers.T0 + i * TICK, f"bayer_{pattern}{bits}", w, h,
                              (mosaic if bits == 8 else mosaic.astype("<u2") * 257).tobytes(), w * bits // 8)
                for i, (pattern, bits) in enumerate([("rggb", 8), ("bggr", 8), ("gbrg", 16), ("grbg", 16)])]
    return Built([writers.write_mcap(tmp / "d.mcap", messages)], {RAW: 4})


def yuv(tmp: Path) -> Built:
    import cv2

    w, h = writers.WIDTH, writers.HEIGHT
    bgr = np.random.default_rng(3).integers(0, 255, (h, w, 3), dtype=np.uint8)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: w * h], i420[w * h: w * h * 5 // 4], i420[w * h * 5 // 4:]
    layouts = {"uyvy": (cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY), w * 2),
               "yuyv": (cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2), w * 2),
               "nv12": (np.concatenate([y, np.stack([u, v], axis=1).reshape(-1)]), w),
               "nv21": (np.concatenate([y, np.stack([v, u], axis=1).reshape(-1)]), w)}
    messages = [writers.image(RAW, writers.T0 + i * TICK, encoding, w, h, data.tobytes(), step)
                for i, (encoding, (data, step)) in enumerate(layouts.items())]
    return Built([writers.write_mcap(tmp / "d.mcap", messages)], {RAW: 4})


def unreadable_frames(tmp: Path) -> Built:
    """Image messages with nothing to extract: unknown encodings, malformed sizes, a format that is neither JPEG nor
    PNG, duplicate stamps."""
    w, h, t0 = writers.WIDTH, writers.HEIGHT, writers.T0
    messages = [writers.image(RAW, t0, "32FC1", w, h, bytes(w * h * 4), w * 4),
                writers.image(RAW, t0 + 1, "yuv420", w, h, bytes(w * h * 2), w),
                writers.image(RAW, t0 + 2, "rgb8", w, h, bytes(10), w * 3),
                writers.image(RAW, t0 + 3, "nv12", w, h - 1, bytes(w * h * 2), w),
                writers.compressed(FRONT, t0, b"GIF89a" + bytes(20), fmt="gif"),
                writers.compressed(FRONT, t0 + TICK, writers.jpeg_bytes(seed=1)),
                writers.compressed(FRONT, t0 + TICK, writers.jpeg_bytes(seed=2))]
    return Built([writers.write_mcap(tmp / "d.mcap", messages)], {RAW: 4, FRONT: 3})


def foxglove_protobuf(tmp: Path) -> Built:
    from mcap_protobuf.writer import Writer

    from tests.drivelogs.test_foxglove_and_ros1_mcap import foxglove_compressed, foxglove_raw

    w, h = writers.WIDTH, writers.HEIGHT
    pixels = np.random.default_rng(4).integers(0, 255, (h, w, 3), dtype=np.uint8)
    log = tmp / "foxglove.mcap"
    with log.open("wb") as handle, Writer(handle) as writer:
        for i in range(3):
            stamp = writers.T0 + i * TICK
            writer.write_message("/cam/front/compressed", foxglove_compressed(stamp, writers.jpeg_bytes(seed=i)),
                                 log_time=stamp, publish_time=stamp)
            writer.write_message("/cam/left/image_raw", foxglove_raw(stamp, "rgb8", w, h, w * 3, pixels.tobytes()),
                                 log_time=stamp, publish_time=stamp)
    return Built([log], {"/cam/front/compressed": 3, "/cam/left/image_raw": 3})


def foxglove_json(tmp: Path) -> Built:
    from mcap.writer import Writer

    from tests.drivelogs.test_foxglove_and_ros1_mcap import json_message, start_json_camera_log

    log = tmp / "json.mcap"
    with log.open("wb") as handle:
        writer = Writer(handle)
        front, side = start_json_camera_log(writer)
        for i in range(2):
            stamp = writers.T0 + i * TICK
            writer.add_message(front, log_time=stamp, publish_time=stamp,
                               data=json_message(stamp, format="jpeg", data=writers.jpeg_bytes(seed=i)))
            writer.add_message(side, log_time=stamp, publish_time=stamp, data=json_message(
                stamp, encoding="mono8", width=4, height=2, step=4, data=bytes(range(8))))
        writer.finish()
    return Built([log], {"/cam/front/image/compressed": 2, "/cam/side/image_raw": 2})


def ros1_in_mcap(tmp: Path) -> Built:
    from mcap_ros1.writer import Writer

    from tests.drivelogs.test_foxglove_and_ros1_mcap import ros1_message

    log = tmp / "converted.mcap"
    with log.open("wb") as handle:
        writer = Writer(handle)
        for i in range(4):
            stamp = writers.T0 + i * TICK
            writer.write_message(FRONT, ros1_message("sensor_msgs/CompressedImage", stamp, format="jpeg",
                                                     data=writers.jpeg_bytes(seed=i)), log_time=stamp)
        writer.write_message("/chatter", ros1_message("std_msgs/String", None, data="hi"), log_time=writers.T0)
        writer.finish()
    return Built([log], {FRONT: 4})


def unsupported_encoding(tmp: Path) -> Built:
    log = writers.write_mcap_raw_channel(
        tmp / "d.mcap", "/cam/json/image", "sensor_msgs/msg/CompressedImage", "jsonschema", "json",
        [b'{"format": "jpeg"}'] * 3, extra=[writers.compressed(FRONT, writers.T0, writers.jpeg_bytes())])
    return Built([log], {"/cam/json/image": 3, FRONT: 1})


def no_images(tmp: Path) -> Built:
    messages = [writers.string("/chatter", f"hello {i}", writers.T0 + i) for i in range(3)]
    return Built([writers.write_mcap(tmp / "d.mcap", messages)], {})


def message_compressed(tmp: Path, damage: frozenset[int] = frozenset()) -> Built:
    from tests.drivelogs.test_message_compression import messages_of, write_message_compressed

    messages = messages_of(LOGS)
    log = write_message_compressed(tmp / "bag_0.mcap", messages, LOGS, damage=damage)
    return Built([log], dict(Counter(m.topic for m in messages)), damaged=bool(damage))


def message_compressed_damaged(tmp: Path) -> Built:
    return message_compressed(tmp, damage=frozenset({0, 4, 7}))


def unindexed(tmp: Path) -> Built:
    from tests.drivelogs.test_nothing_lost import _unindexed_mcap

    return Built([_unindexed_mcap(tmp / "d.mcap", LOGS, [REAR, RAW, FRONT], 4096)], {FRONT: 4, REAR: 4, RAW: 4})


def indexed_without_channels(tmp: Path) -> Built:
    from tests.drivelogs.test_nothing_lost import _unindexed_mcap

    log = _unindexed_mcap(tmp / "d.mcap", LOGS, [REAR, RAW, FRONT], 4096, indexed=True)
    return Built([log], {FRONT: 4, REAR: 4, RAW: 4})


def mcap_truncated(tmp: Path) -> Built:
    return truncated(writers.write_mcap(tmp / "d.mcap", front_frames(30), chunk_size=4000), 0.6, 30)


def mcap_cut_in_summary(tmp: Path) -> Built:
    log = writers.write_mcap(tmp / "d.mcap", front_frames(10), chunk_size=4000)
    return truncated(log, len(log.read_bytes()) - 40, 10)


def mcap_corrupt_chunk(tmp: Path) -> Built:
    from mcap.reader import make_reader

    log = writers.write_mcap(tmp / "d.mcap", front_frames(30), chunk_size=4000)
    with log.open("rb") as handle:
        chunks = sorted(make_reader(handle).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    middle = chunks[len(chunks) // 2]
    flip_bytes(log, middle.chunk_start_offset + middle.chunk_length // 2)
    return Built([log], {FRONT: 30}, damaged=True)


def mcap_loose_messages(tmp: Path) -> Built:
    from tests.drivelogs.test_nothing_lost import _mcap_with_messages_outside_chunks

    return Built([_mcap_with_messages_outside_chunks(tmp / "d.mcap", LOGS, chunked=4, loose=3)], {FRONT: 7})


def ros1_truncated(tmp: Path) -> Built:
    return truncated(writers.write_ros1_bag(tmp / "d.bag", front_frames(30), chunk_threshold=4000), 0.6, 30)


def ros1_damaged_header(tmp: Path) -> Built:
    log = writers.write_ros1_bag(tmp / "d.bag", front_frames(30), chunk_threshold=4000)
    flip_bytes(log, 20)
    return Built([log], {FRONT: 30}, damaged=True)


def ros1_cut_early(tmp: Path) -> Built:
    return truncated(writers.write_ros1_bag(tmp / "d.bag", front_frames(30), chunk_threshold=4000), 2000, 30)


def ros2_mcap_truncated(tmp: Path) -> Built:
    frames = [writers.compressed(FRONT, writers.T0 + i * 50_000_000, writers.jpeg_bytes(320, 240, seed=i))
              for i in range(40)]  # rosbags closes a chunk at 1 MiB: several chunks
    bag = writers.write_ros2_bag(tmp / "bag", frames, storage="mcap")
    cut(storage_file(bag), 0.7)
    return Built([bag], {FRONT: 40}, damaged=True)


def ros2_sqlite3_truncated(tmp: Path) -> Built:
    bag = writers.write_ros2_bag(tmp / "bag", front_frames(30), storage="sqlite3")
    cut(storage_file(bag), 0.6)
    return Built([bag], {FRONT: 30}, damaged=True)


def over_count_metadata(bag: Path, extra: int = 2) -> None:
    """Make a rosbag2 bag's metadata.yaml claim ``extra`` more messages on every topic (and in all) than it holds."""
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())
    info = metadata["rosbag2_bagfile_information"]
    for entry in info["topics_with_message_count"]:
        entry["message_count"] += extra
    info["message_count"] += extra
    (bag / "metadata.yaml").write_text(yaml.safe_dump(metadata))


def ros2_metadata_over_counts(tmp: Path) -> Built:
    bag = writers.write_ros2_bag(tmp / "bag", front_frames(5))
    over_count_metadata(bag)
    return Built([bag], {FRONT: 5}, damaged=True)


def split_drive(tmp: Path) -> Built:
    messages = two_cameras()
    first = writers.write_mcap(tmp / "d_0.mcap", messages[:15])
    second = writers.write_mcap(tmp / "d_1.mcap", messages[15:])
    return Built([first, second], {FRONT: 10, REAR: 10})


def one_log_unreadable(tmp: Path) -> Built:
    good = writers.write_mcap(tmp / "d_0.mcap", two_cameras())
    bad = tmp / "d_1"
    bad.mkdir()
    (bad / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping\n")
    return Built([good, bad], {FRONT: 10, REAR: 10}, damaged=True)


KINDS: dict[str, tuple[str, Callable[[Path], Built]]] = {
    "mcap-ros2": ("MCAP, ROS 2 CompressedImage (JPEG, PNG) and a non-image topic", mcap_ros2),
    "ros1-bag": ("ROS 1 bag, the same messages", ros1_bag),
    "ros2-sqlite3": ("ROS 2 bag directory, sqlite3 storage", ros2_sqlite3),
    "ros2-mcap": ("ROS 2 bag directory, MCAP storage", ros2_mcap),
    "ros2-mcap-zstd": ("ROS 2 bag directory, file-compressed MCAP (`*.mcap.zstd`)", ros2_mcap_zstd),
    "raw": ("MCAP, raw Image rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1, 8UC3, 16UC1", raw_encodings),
    "bayer": ("MCAP, raw Image Bayer (8 and 16 bits)", bayer),
    "yuv": ("MCAP, raw Image uyvy, yuyv, nv12, nv21", yuv),
    "unreadable-frames": ("MCAP, unknown or malformed encodings, a GIF, a duplicate stamp", unreadable_frames),
    "foxglove-protobuf": ("MCAP, foxglove.CompressedImage and RawImage (protobuf)", foxglove_protobuf),
    "foxglove-json": ("MCAP, foxglove.CompressedImage and RawImage (JSON)", foxglove_json),
    "ros1-in-mcap": ("MCAP, ROS 1 messages (`ros1msg`, what `mcap convert` writes)", ros1_in_mcap),
    "unsupported-encoding": ("MCAP, an image topic in JSON without a Foxglove schema", unsupported_encoding),
    "no-images": ("MCAP without image topics", no_images),
    "message-compressed": ("MCAP, ROS 2 message-compressed (zstd), without metadata.yaml", message_compressed),
    "message-compressed-cut": ("the same, three payloads cut", message_compressed_damaged),
    "unindexed": ("MCAP without index or summary, channels in any order", unindexed),
    "index-without-channels": ("MCAP with chunk indexes but no channels in its summary", indexed_without_channels),
    "mcap-truncated": ("MCAP cut at 60%", mcap_truncated),
    "mcap-cut-summary": ("MCAP cut inside its summary", mcap_cut_in_summary),
    "mcap-corrupt-chunk": ("MCAP with a corrupt chunk in the middle", mcap_corrupt_chunk),
    "mcap-loose-messages": ("MCAP with messages outside chunks", mcap_loose_messages),
    "ros1-truncated": ("ROS 1 bag cut at 60%", ros1_truncated),
    "ros1-damaged-header": ("ROS 1 bag with a damaged header", ros1_damaged_header),
    "ros1-cut-early": ("ROS 1 bag cut at 2,000 bytes", ros1_cut_early),
    "ros2-mcap-truncated": ("ROS 2 bag directory, its MCAP file cut at 70%", ros2_mcap_truncated),
    "ros2-sqlite3-truncated": ("ROS 2 bag directory, its sqlite3 file cut at 60%", ros2_sqlite3_truncated),
    "ros2-over-count": ("ROS 2 bag directory whose metadata.yaml over-counts", ros2_metadata_over_counts),
    "split": ("a split drive: two MCAP files", split_drive),
    "one-unreadable": ("two logs, the second an unreadable bag directory", one_log_unreadable),
}


# -------------------------------------------------------------------------------------------------------- outcomes


def extract(kind: str, tmp: Path) -> tuple[Built, dict[str, Any]]:
    from drivelogs.extract import extract_drive
    from drivelogs.sinks import LocalDirectorySink

    folder = tmp / kind
    folder.mkdir(parents=True)
    built = KINDS[kind][1](folder)
    manifest = extract_drive(DRIVE, built.logs, LocalDirectorySink(folder / "out"))
    return built, manifest


def outcome(kind: str, built: Built, manifest: dict[str, Any]) -> dict[str, Any]:
    totals = manifest["totals"]
    problems = Counter(p["kind"] for p in manifest["problems"])
    unknown = any(p["messages_lost"] is None for p in manifest["problems"])
    return {
        "kind": kind, "what": KINDS[kind][0],
        "format": ", ".join(sorted({log["format"] for log in manifest["logs"]})),
        "status": manifest["status"], "written": sum(built.written.values()), "cameras": len(manifest["cameras"]),
        "extracted": totals["extracted"], "skipped": dict(sorted(totals["skipped"].items())),
        "lost": totals["messages_lost"], "loss_unknown": unknown, "problems": dict(sorted(problems.items())),
    }


def outcomes(tmp: Path) -> list[dict[str, Any]]:
    return [outcome(kind, *extract(kind, tmp)) for kind in KINDS]


def markdown(rows: list[dict[str, Any]]) -> str:
    def counts(mapping: dict[str, int]) -> str:
        return ", ".join(f"`{k}` {v}" for k, v in mapping.items()) or "–"

    lines = ["| log | format | status | image messages written | extracted | skipped | lost | problems |",
             "|---|---|---|---:|---:|---|---:|---|"]
    for row in rows:
        lost = f"{row['lost']}{' + unknown' if row['loss_unknown'] else ''}"
        lines.append(f"| {row['what']} | {row['format']} | `{row['status']}` | {row['written']} | "
                     f"{row['extracted']} | {counts(row['skipped'])} | {lost} | {counts(row['problems'])} |")
    return "\n".join(lines) + "\n"


def replace_docs_table(text: str, table: str) -> str:
    pattern = re.compile(re.escape(DOCS_BEGIN) + r"\n.*?" + re.escape(DOCS_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {DOCS_BEGIN} ... {DOCS_END} section")
    return pattern.sub(lambda _: f"{DOCS_BEGIN}\n{table}{DOCS_END}", text)


def docs_table(text: str) -> str:
    match = re.search(re.escape(DOCS_BEGIN) + r"\n(.*?)" + re.escape(DOCS_END), text, re.S)
    return match.group(1) if match else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract every log kind the suite builds; print the outcome table.")
    parser.add_argument("--write-docs", type=Path, help="replace the generated table in this Markdown file")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="log-kinds-"))
    try:
        table = markdown(outcomes(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.write_docs:
        args.write_docs.write_text(replace_docs_table(args.write_docs.read_text(), table))
        print(f"{args.write_docs}: table of {len(KINDS)} log kinds written")
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
