"""Raw image encodings with a direct layout (8UC1, 8UC3, 16UC1) and the YUV family, encoded here with OpenCV; and
damaged logs: ROS 2 bag directories whose storage file is cut (MCAP, sqlite3, file-compressed MCAP), ROS 1 bags
damaged in their first 4 KB, all written with rosbags and then damaged. Every manifest reconciles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.drives import validate_drive_manifest
from drivelogs.extract import extract_drive
from drivelogs.readers import open_log
from drivelogs.sinks import LocalDirectorySink
from tests.drivelogs.log_kinds import flip_bytes, write_zstd_ros2_mcap

DRIVE = "car-7/2026-12-03"
FRONT = "/cam/front/image_raw/compressed"
RAW = "/cam/front/image_raw"
W, H = 96, 64


def extract(tmp_path: Path, logs: list[Path], out: str = "out") -> tuple[dict, dict[str, bytes]]:
    manifest = extract_drive(DRIVE, logs, LocalDirectorySink(tmp_path / out))
    validate_drive_manifest(manifest)
    for camera in manifest["cameras"].values():
        assert camera["messages"] == camera["extracted"] + sum(camera["skipped"].values()) + camera["messages_lost"]
    assert json.loads(json.dumps(manifest)) == manifest
    written = {p.relative_to(tmp_path / out).as_posix(): p.read_bytes()
               for p in sorted((tmp_path / out).rglob("*")) if p.is_file()}
    return manifest, written


def scene(width: int = W, height: int = H) -> np.ndarray:
    """A small BGR picture with smooth gradients and soft-edged shapes (a sky, a road, a car), as a camera sees."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    image[..., 0] = 200 - 80 * y / height  # blue falls towards the road
    image[..., 1] = 90 + 60 * x / width
    image[..., 2] = 60 + 120 * (y / height) ** 2
    image = image.astype(np.uint8)
    cv2.rectangle(image, (0, height * 2 // 3), (width, height), (90, 90, 90), -1)  # the road
    cv2.circle(image, (width // 3, height // 2), height // 6, (30, 40, 200), -1)  # a red car
    cv2.line(image, (width // 2, height), (width // 2, height * 2 // 3), (240, 240, 240), 2)
    return cv2.GaussianBlur(image, (5, 5), 0)


def decoded(body: bytes) -> np.ndarray:
    assert body.startswith(b"\x89PNG")
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(("encoding", "same_as"), [("8UC1", "mono8"), ("8UC3", "bgr8"), ("16UC1", "mono16")])
def test_opencv_type_encodings_are_their_ros_twins(tmp_path, drive_logs, encoding, same_as):
    bgr = scene()
    pixels = {"mono8": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), "bgr8": bgr,
              "mono16": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257}[same_as]
    step = W * pixels.itemsize * (3 if pixels.ndim == 3 else 1)
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.image(RAW, drive_logs.T0, encoding, W, H, pixels.tobytes(), step),
        drive_logs.image(RAW, drive_logs.T0 + 1, same_as, W, H, pixels.tobytes(), step)])
    manifest, written = extract(tmp_path, [log])
    assert manifest["cameras"]["cam-front"]["extracted"] == 2 and manifest["status"] == "complete"
    ours, twin = (decoded(body) for body in written.values())
    assert ours.dtype == pixels.dtype and np.array_equal(ours, pixels) and np.array_equal(ours, twin)


def _yuv(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """The image in ``encoding``'s byte layout, encoded with OpenCV (4:2:0 semi-planar from OpenCV's I420 planes)."""
    if encoding in ("yuv422", "uyvy"):
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY)
    if encoding in ("yuyv", "yuv422_yuy2"):
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2)
    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: width * height], i420[width * height: width * height * 5 // 4], i420[width * height * 5 // 4:]
    uv = np.stack([u, v] if encoding == "nv12" else [v, u], axis=1).reshape(-1)
    return np.concatenate([y, uv]).reshape(height * 3 // 2, width)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuyv", "yuv422_yuy2", "nv12", "nv21"])
def test_yuv_frames_come_back_as_the_picture(tmp_path, drive_logs, encoding):
    bgr = scene()
    data = _yuv(bgr, encoding)
    pad = 8  # row padding, dropped by the decoder
    rows = data.reshape(data.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], axis=1)
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.image(RAW, drive_logs.T0, encoding, W, H, padded.tobytes(), padded.shape[1])])
    manifest, written = extract(tmp_path, [log])
    assert manifest["cameras"]["cam-front"]["extracted"] == 1, manifest["cameras"]
    (body,) = written.values()
    image = decoded(body)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    error = np.abs(image.astype(int) - bgr.astype(int))
    assert error.mean() < 4 and np.percentile(error, 99) < 40, (error.mean(), error.max())
    # Swapped chroma (the wrong member of the family) is far off: the test tells the layouts apart.
    twin = {"nv12": "nv21", "nv21": "nv12", "yuv422": "yuyv", "uyvy": "yuyv"}.get(encoding, "uyvy")
    wrong = cv2.cvtColor(data, getattr(cv2, {"nv12": "COLOR_YUV2BGR_NV12", "nv21": "COLOR_YUV2BGR_NV21",
                                              "yuyv": "COLOR_YUV2BGR_YUY2", "uyvy": "COLOR_YUV2BGR_UYVY"}[twin]))
    assert np.abs(wrong.astype(int) - bgr.astype(int)).mean() > 3 * error.mean()


def test_yuv_with_odd_sizes_or_short_data_and_other_encodings_are_skipped(tmp_path, drive_logs):
    t0 = drive_logs.T0
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.image(RAW, t0, "yuyv", W - 1, H, bytes((W - 1) * H * 2), (W - 1) * 2),  # odd width
        drive_logs.image(RAW, t0 + 1, "nv12", W, H, bytes(W * H), W),  # no chroma plane
        drive_logs.image(RAW, t0 + 2, "nv21", W, H - 1, bytes(W * H * 2), W),  # odd height
        drive_logs.image(RAW, t0 + 3, "32FC1", W, H, bytes(W * H * 4), W * 4),
        drive_logs.image(RAW, t0 + 4, "yuv420", W, H, bytes(W * H * 2), W),
        drive_logs.image(RAW, t0 + 5, "uyvy", W, H, _yuv(scene(), "uyvy").tobytes(), W * 2),
    ])
    manifest, written = extract(tmp_path, [log])
    assert manifest["cameras"]["cam-front"]["skipped"] == {"malformed": 3, "unknown_encoding": 2}
    assert len(written) == 1


# ------------------------------------------------------------------------------------------- damaged ROS 2 bags


def _frames(drive_logs, count: int, size: tuple[int, int] = (W, H)) -> list:
    return [drive_logs.compressed(FRONT, drive_logs.T0 + i * 50_000_000, drive_logs.jpeg_bytes(*size, seed=i))
            for i in range(count)]


def _cut(path: Path, fraction: float) -> int:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return len(data)


def _storage_file(bag: Path) -> Path:
    (file,) = [p for p in bag.iterdir() if p.name != "metadata.yaml"]
    return file


def test_truncated_mcap_in_a_bag_directory_reads_like_the_lone_file(tmp_path, drive_logs):
    # rosbags' MCAP writer closes a chunk at 1 MiB: 40 frames of ~80 KB make several chunks.
    bag = drive_logs.write_ros2_bag(tmp_path / "bag", _frames(drive_logs, 40, (320, 240)), storage="mcap")
    storage = _storage_file(bag)
    _cut(storage, 0.7)
    lone = tmp_path / "lone.mcap"
    shutil.copyfile(storage, lone)
    lone_manifest, lone_written = extract(tmp_path, [lone], out="lone")
    manifest, written = extract(tmp_path, [bag])
    front = manifest["cameras"]["cam-front"]
    assert 0 < len(written) < 40 and len(written) == len(lone_written) == front["extracted"]
    assert sorted(k.rsplit("/", 1)[1] for k in written) == sorted(k.rsplit("/", 1)[1] for k in lone_written)
    assert front["messages"] == 40 and front["messages_lost"] == 40 - len(written)  # from metadata.yaml
    assert manifest["status"] == "partial" and not manifest["logs"][0]["complete"]
    assert manifest["logs"][0]["format"] == "rosbag2-mcap"
    (summary,) = [p for p in manifest["problems"] if p["kind"] == "read_error"]
    assert summary["messages_lost"] == 40 - len(written) and summary["log"] == "bag"
    assert any(p["kind"] == "truncated" and p["log"] == f"bag/{storage.name}" for p in manifest["problems"])
    assert lone_manifest["status"] == "partial"


def test_truncated_sqlite3_file_in_a_bag_directory_is_read_up_to_the_cut(tmp_path, drive_logs):
    messages = _frames(drive_logs, 30)
    bag = drive_logs.write_ros2_bag(tmp_path / "bag", messages, storage="sqlite3")
    _cut(_storage_file(bag), 0.6)
    with pytest.raises(Exception, match="malformed"):  # what rosbags itself makes of it
        from rosbags.highlevel import AnyReader

        with AnyReader([bag]):
            pass
    manifest, written = extract(tmp_path, [bag])
    front = manifest["cameras"]["cam-front"]
    assert 5 < len(written) < 30 and front["extracted"] == len(written)
    assert front["messages"] == 30 and front["messages_lost"] == 30 - len(written)
    assert manifest["status"] == "partial" and manifest["logs"][0]["format"] == "rosbag2-sqlite3"
    # The frames read are the first ones recorded, byte for byte.
    firsts = [m.fields["data"] for m in messages[: len(written)]]
    assert sorted(written.values()) == sorted(firsts)


def test_a_file_compressed_mcap_bag_is_labelled_mcap_and_read(tmp_path, drive_logs):
    bag = write_zstd_ros2_mcap(tmp_path / "bag", _frames(drive_logs, 10))
    storage = _storage_file(bag)
    assert storage.name.endswith(".mcap.zstd")
    assert open_log(bag).format == "rosbag2-mcap" and open_log(storage).format == "rosbag2-mcap"
    manifest, written = extract(tmp_path, [bag])
    assert manifest["status"] == "complete" and len(written) == 10
    assert manifest["logs"][0]["format"] == "rosbag2-mcap"
    # Cut, it is decompressed as far as the stream goes and read like a lone truncated MCAP.
    _cut(storage, 0.5)
    manifest, written = extract(tmp_path, [bag], out="cut")
    front = manifest["cameras"]["cam-front"]
    assert manifest["status"] == "partial" and front["messages"] == 10
    assert front["messages_lost"] == 10 - len(written) > 0


# ------------------------------------------------------------------------------------------- damaged ROS 1 bags


def _ros1(tmp_path: Path, drive_logs) -> tuple[Path, bytes]:
    bag = drive_logs.write_ros1_bag(tmp_path / "d.bag", _frames(drive_logs, 30), chunk_threshold=4000)
    return bag, bag.read_bytes()


@pytest.mark.parametrize("offset", [13, 20, 60])
def test_ros1_bag_with_a_damaged_header_is_read_from_its_first_chunk(tmp_path, drive_logs, offset):
    bag, _ = _ros1(tmp_path, drive_logs)
    flip_bytes(bag, offset)
    manifest, written = extract(tmp_path, [bag])
    assert len(written) == 30 and manifest["cameras"]["cam-front"]["messages"] == 30
    assert manifest["status"] == "complete"  # every chunk and the index section were read
    kinds = [(p["kind"], p["messages_lost"]) for p in manifest["problems"]]
    assert ("read_error", 0) in kinds and all(lost == 0 for _, lost in kinds)


@pytest.mark.parametrize("cut", [100, 2000, 4096, 4200])
def test_ros1_bag_cut_in_its_first_4kb_is_partial_not_complete(tmp_path, drive_logs, cut):
    bag, data = _ros1(tmp_path, drive_logs)
    bag.write_bytes(data[:cut])
    manifest, written = extract(tmp_path, [bag])
    assert manifest["status"] != "complete" and not manifest["logs"][0]["complete"]
    assert written == {}
    assert any(p["kind"] == "truncated" and p["messages_lost"] is None for p in manifest["problems"])


def test_ros1_bag_cut_before_its_index_loses_the_rest(tmp_path, drive_logs):
    bag, data = _ros1(tmp_path, drive_logs)
    from rosbags.rosbag1 import Reader

    with Reader(bag) as reader:  # the index section starts after the last chunk
        last_chunk_end = max(c.pos for c in reader.chunk_infos)
    bag.write_bytes(data[: last_chunk_end + 20])
    manifest, written = extract(tmp_path, [bag])
    assert manifest["status"] == "partial" and 0 < len(written) < 30
    assert [(p["kind"], p["messages_lost"]) for p in manifest["problems"]] == [("truncated", None)]
