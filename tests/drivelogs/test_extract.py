"""drivelogs.extract on real logs written here (conftest.py): every image encoding, camera selection and naming,
rate limiting, duplicates and out-of-order stamps, the ingest limits, damaged logs, split drives, the S3 sink and the
command line. Every manifest is validated (counts reconcile) by the extractor itself and once more here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import cv2
import numpy as np
import pytest
from moto import mock_aws

from contracts.documents import DocumentError
from contracts.drives import DRIVE_ID_METADATA, SKIP_REASONS, validate_drive_manifest
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from contracts.layout import INFERENCE
from drivelogs.decode import FrameLimits
from drivelogs.extract import extract_drive, main
from drivelogs.extractor import CameraConfig, ExtractOptions
from drivelogs.naming import camera_name_for_topic, stamp_text
from drivelogs.readers import UnreadableLog
from drivelogs.sinks import LocalDirectorySink, S3Sink
from segcore.imaging import prepare_frame
from tests.drivelogs.log_kinds import flip_bytes

DRIVE = "car-7/2026-12-03"
FRONT = "/cam/front/image_raw/compressed"
REAR = "/cam/rear/image_raw/compressed"
KEY = re.compile(DEFAULT_KEY_PATTERN)


def frames(root: Path) -> dict[str, bytes]:
    """Every extracted frame by key (relative path), checked against the ingest's key pattern."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = path.relative_to(root).as_posix()
            assert key.startswith(INFERENCE.incoming)
            assert KEY.match(key[len(INFERENCE.incoming):]), key
            found[key] = path.read_bytes()
    return found


def reconciles(manifest: dict) -> dict:
    validate_drive_manifest(manifest)
    for camera in manifest["cameras"].values():
        assert camera["messages"] == camera["extracted"] + sum(camera["skipped"].values()) + camera["messages_lost"]
    assert json.loads(json.dumps(manifest)) == manifest
    return manifest


def extract(tmp_path: Path, logs, options: ExtractOptions | None = None, out: str = "out") -> tuple[dict, dict]:
    manifest = reconciles(extract_drive(DRIVE, logs, LocalDirectorySink(tmp_path / out), options))
    return manifest, frames(tmp_path / out)


# --------------------------------------------------------------------------------------------- formats and frames


@pytest.mark.parametrize("kind", ["mcap", "ros1", "ros2-sqlite3", "ros2-mcap"])
def test_every_log_format_gives_the_same_frames(tmp_path, drive_logs, camera_messages, kind):
    writers = {"mcap": lambda p: drive_logs.write_mcap(p / "d.mcap", camera_messages),
               "ros1": lambda p: drive_logs.write_ros1_bag(p / "d.bag", camera_messages),
               "ros2-sqlite3": lambda p: drive_logs.write_ros2_bag(p / "bag", camera_messages),
               "ros2-mcap": lambda p: drive_logs.write_ros2_bag(p / "bag", camera_messages, storage="mcap")}
    log = writers[kind](tmp_path)
    manifest, written = extract(tmp_path, [log])
    assert manifest["status"] == "complete" and manifest["problems"] == []
    assert manifest["logs"][0]["format"] == {"ros1": "rosbag1"}.get(kind, kind.replace("ros2", "rosbag2"))
    assert set(manifest["cameras"]) == {"cam-front", "cam-rear"}
    assert {t["name"]: (t["type"], t["messages"], t["camera"]) for t in manifest["topics"]} == {
        FRONT: ("sensor_msgs/msg/CompressedImage", 10, "cam-front"),
        REAR: ("sensor_msgs/msg/CompressedImage", 10, "cam-rear"),
        "/chatter": ("std_msgs/msg/String", 10, None)}
    assert manifest["totals"]["extracted"] == 20 and len(written) == 20
    # Byte for byte, under the stamp, with the extension the magic bytes say.
    by_stamp = {m.stamp: m.fields["data"] for m in camera_messages if m.topic == FRONT}
    for stamp, data in by_stamp.items():
        assert written[f"incoming/car-7/2026-12-03/cam-front/{stamp_text(stamp)}.jpg"] == data
    assert sum(key.endswith(".png") for key in written) == 10
    assert manifest["time_range"]["start"] == "20261203T101500.000000000Z"
    assert manifest["cameras"]["cam-rear"]["first_stamp"] == "20261203T101500.000000001Z"


def test_compressed_images_are_told_by_their_magic_bytes(tmp_path, drive_logs):
    t0 = drive_logs.T0
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.compressed(FRONT, t0, drive_logs.png_bytes(), fmt="jpeg"),  # the format string lies
        drive_logs.compressed(FRONT, t0 + 1, drive_logs.jpeg_bytes(), fmt=""),
        drive_logs.compressed(FRONT, t0 + 2, b"RIFF\x00\x00\x00\x00WEBPVP8 ", fmt="webp"),
        drive_logs.compressed(FRONT, t0 + 3, b"\x00\x00\x00\x0cjP  \r\n", fmt="16UC1; compressedDepth png"),
        drive_logs.compressed(FRONT, t0 + 4, b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 64),  # no frame header
    ])
    manifest, written = extract(tmp_path, [log])
    assert sorted(k.rsplit(".", 1)[1] for k in written) == ["jpg", "png"]
    assert manifest["cameras"]["cam-front"]["skipped"] == {"unsupported_format": 2, "malformed": 1}
    for body in written.values():
        prepare_frame(body)  # the ingest accepts what was extracted


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """A Bayer mosaic of ``rgb`` whose top-left 2x2 block reads ``pattern`` (ROS names, e.g. "rggb")."""
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    channel = {"r": 0, "g": 1, "b": 2}
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[2 * dy + dx]]]
    return out


def _raw_cases(width: int, height: int) -> list[tuple[str, np.ndarray, np.ndarray, int, int]]:
    """(encoding, the bytes as ROS lays them out incl. step padding, the expected RGB(A)/grey array, step, bigendian)"""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    rgba = rng.integers(0, 255, (height, width, 4), dtype=np.uint8)
    grey = rng.integers(0, 255, (height, width), dtype=np.uint8)
    grey16 = rng.integers(0, 65535, (height, width), dtype=np.uint16)

    def padded(rows: np.ndarray, pad: int) -> tuple[np.ndarray, int]:
        flat = rows.reshape(height, -1)
        out = np.full((height, flat.shape[1] + pad), 0xAB, np.uint8)
        out[:, : flat.shape[1]] = flat
        return out, out.shape[1]

    cases = []
    for encoding, layout, expected in (("rgb8", rgb, rgb), ("bgr8", rgb[..., ::-1], rgb), ("rgba8", rgba, rgba),
                                       ("bgra8", rgba[..., [2, 1, 0, 3]], rgba), ("mono8", grey, grey)):
        data, step = padded(np.ascontiguousarray(layout).view(np.uint8), 6)
        cases.append((encoding, data, expected, step, 0))
    for big in (0, 1):
        data, step = padded(grey16.astype(">u2" if big else "<u2").view(np.uint8), 4)
        cases.append(("mono16", data, grey16, step, big))
    return cases


@pytest.mark.parametrize("case", range(7))
def test_raw_images_become_lossless_pngs(tmp_path, drive_logs, case):
    width, height = drive_logs.WIDTH, drive_logs.HEIGHT
    encoding, data, expected, step, big = _raw_cases(width, height)[case]
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.image("/cam/front/image_raw", drive_logs.T0, encoding, width, height, data.tobytes(), step, big)])
    manifest, written = extract(tmp_path, [log])
    assert manifest["totals"]["extracted"] == 1, manifest["cameras"]
    (body,) = written.values()
    assert body.startswith(b"\x89PNG")
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded.ndim == 3:  # cv2 reads BGR(A)
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB if decoded.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    assert decoded.dtype == expected.dtype and np.array_equal(decoded, expected)
    prepare_frame(body)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_mosaics_demosaic_to_their_colour(tmp_path, drive_logs, pattern, bits):
    """A uniform colour mosaiced with the ROS pattern comes back as that colour: OpenCV's pattern naming is checked."""
    width, height = drive_logs.WIDTH, drive_logs.HEIGHT
    colour = (200, 100, 30) if bits == 8 else (52000, 26000, 7000)
    dtype = np.uint8 if bits == 8 else np.uint16
    mosaic = _mosaic(np.broadcast_to(np.array(colour, dtype), (height, width, 3)).copy(), pattern)
    data = mosaic.astype(">u2").view(np.uint8) if bits == 16 else mosaic
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [drive_logs.image(
        "/cam/front/image_raw", drive_logs.T0, f"bayer_{pattern}{bits}", width, height, data.tobytes(),
        width * bits // 8, is_bigendian=int(bits == 16))])
    _, written = extract(tmp_path, [log])
    (body,) = written.values()
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == dtype
    centre = decoded[4:-4, 4:-4, ::-1].reshape(-1, 3).astype(int)  # BGR -> RGB, away from the borders
    assert np.abs(centre - np.array(colour)).max() <= (1 if bits == 8 else 256)
    prepare_frame(body)


def test_unknown_and_malformed_raw_images_are_skipped_with_reasons(tmp_path, drive_logs):
    t0, w, h = drive_logs.T0, drive_logs.WIDTH, drive_logs.HEIGHT
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.image("/cam/front/image_raw", t0, "32FC1", w, h, bytes(w * h * 4), w * 4),
        drive_logs.image("/cam/front/image_raw", t0 + 1, "rgb8", w, h, bytes(w * 3 * (h - 1)), w * 3),  # short
        drive_logs.image("/cam/front/image_raw", t0 + 2, "rgb8", w, h, bytes(w * h * 3), w * 2),  # step < row
        drive_logs.image("/cam/front/image_raw", t0 + 3, "mono8", w, h, bytes(w * h), w),
    ])
    manifest, written = extract(tmp_path, [log])
    assert manifest["cameras"]["cam-front"]["skipped"] == {"unknown_encoding": 1, "malformed": 2}
    assert len(written) == 1


# ------------------------------------------------------------------------------------------ cameras and timestamps


def test_camera_names_from_topics():
    assert camera_name_for_topic("/cam/front/image_raw/compressed") == "cam-front"
    assert camera_name_for_topic("/sensors/camera_left/image_rect_color") == "sensors-camera_left"
    assert camera_name_for_topic("/image_raw") == "image_raw"
    assert camera_name_for_topic("/vehicle/cäm 1/image") == "vehicle-c_m_1"
    assert camera_name_for_topic("/vehicle/cam/ü/image") == "vehicle-cam"  # separators trimmed at the ends
    assert stamp_text(1_796_292_900_123_456_789) == "20261203T101500.123456789Z"


def test_cameras_from_config_with_names_and_rates(tmp_path, drive_logs, camera_messages):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", camera_messages)
    options = ExtractOptions(cameras={FRONT: CameraConfig("front", rate_hz=4.0), "/cam/missing": CameraConfig("x")})
    manifest, written = extract(tmp_path, [log], options)
    assert set(manifest["cameras"]) == {"front", "x"}
    front = manifest["cameras"]["front"]
    # 10 Hz thinned to >= 250 ms apart: 0, 300, 600, 900 ms.
    assert front["extracted"] == 4 and front["skipped"] == {"rate_limited": 6} and front["rate_hz"] == 4.0
    assert all(key.startswith("incoming/car-7/2026-12-03/front/") for key in written)
    assert [p["kind"] for p in manifest["problems"]] == ["camera_topic_missing"]
    assert manifest["cameras"]["x"]["messages"] == 0


def test_derived_name_collisions_get_a_suffix(tmp_path, drive_logs):
    t0 = drive_logs.T0
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.compressed("/cam/front/image_raw/compressed", t0, drive_logs.jpeg_bytes()),
        drive_logs.image("/cam/front/image_raw", t0, "mono8", 64, 32, bytes(64 * 32), 64)])
    manifest, written = extract(tmp_path, [log])
    assert set(manifest["cameras"]) == {"cam-front-image_raw-compressed", "cam-front-image_raw"}
    assert len(written) == 2
    assert [p["kind"] for p in manifest["problems"]] == ["camera_name_collision"] * 2
    assert manifest["status"] == "complete"


def test_duplicates_out_of_order_zero_stamps_and_rate(tmp_path, drive_logs):
    t0, jpeg = drive_logs.T0, drive_logs.jpeg_bytes()
    ms = 1_000_000
    stamps = [t0, t0 + 100 * ms, t0 + 100 * ms, t0 + 50 * ms, t0 + 300 * ms, t0 + 320 * ms, t0 + 600 * ms]
    messages = [drive_logs.compressed(FRONT, s, jpeg, log_time=t0 + i * ms) for i, s in enumerate(stamps)]
    messages.append(drive_logs.compressed(FRONT, 0, jpeg, log_time=t0 + 900 * ms))  # no stamp: the log time
    log = drive_logs.write_mcap(tmp_path / "d.mcap", messages)
    manifest, written = extract(tmp_path, [log], ExtractOptions(rate_hz=5.0))
    front = manifest["cameras"]["cam-front"]
    # 5 Hz keeps stamps >= 200 ms after the last kept one: 0, 300, 600 and 900 (the log time); the repeated 100 and
    # the late 50 are within 200 ms of the last kept frame, so rate limited rather than duplicates.
    assert front["skipped"] == {"rate_limited": 4}
    assert front["extracted"] == 4 and front["out_of_order"] == 1 and front["stamps_from_log_time"] == 1
    assert sorted(k.rsplit("/", 1)[1] for k in written)[-1] == "20261203T101500.900000000Z.jpg"

    # Without a rate limit the repeated stamp is a duplicate, and the late one is extracted (and counted).
    manifest, written = extract(tmp_path, [log], out="all")
    front = manifest["cameras"]["cam-front"]
    assert front["skipped"] == {"duplicate_stamp": 1} and front["extracted"] == 7 and front["out_of_order"] == 1


def test_frames_over_the_ingest_limits_are_not_uploaded(tmp_path, drive_logs):
    t0 = drive_logs.T0
    big_jpeg = drive_logs.jpeg_bytes(400, 300)
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [
        drive_logs.compressed(FRONT, t0, big_jpeg),
        drive_logs.compressed(FRONT, t0 + 1, drive_logs.jpeg_bytes(200, 100)),
        drive_logs.image("/cam/rear/image_raw", t0, "mono8", 200, 100, bytes(200 * 100), 200),
        drive_logs.image("/cam/rear/image_raw", t0 + 1, "mono8", 64, 32, bytes(64 * 32), 64)])
    limits = FrameLimits(max_bytes=len(big_jpeg) - 1, max_pixels=200 * 100 - 1)
    manifest, written = extract(tmp_path, [log], ExtractOptions(limits=limits))
    assert manifest["cameras"]["cam-front"]["skipped"] == {"too_large_bytes": 1, "too_many_pixels": 1}
    assert manifest["cameras"]["cam-rear"]["skipped"] == {"too_many_pixels": 1}
    assert len(written) == 1 and manifest["options"]["max_pixels"] == limits.max_pixels


# ---------------------------------------------------------------------------------------------------- damaged logs


def _many(drive_logs, count: int) -> list:
    t0 = drive_logs.T0
    return [drive_logs.compressed(FRONT, t0 + i * 50_000_000, drive_logs.jpeg_bytes(seed=i)) for i in range(count)]


def test_truncated_mcap_gives_what_was_recorded(tmp_path, drive_logs):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", _many(drive_logs, 30), chunk_size=4000)
    data = log.read_bytes()
    log.write_bytes(data[: int(len(data) * 0.6)])
    manifest, written = extract(tmp_path, [log])
    assert manifest["status"] == "partial" and not manifest["logs"][0]["complete"]
    (problem,) = manifest["problems"]
    assert problem["kind"] == "truncated" and problem["messages_lost"] is None
    assert 0 < problem["offset"] <= int(len(data) * 0.6)
    assert 5 < len(written) < 30 and manifest["cameras"]["cam-front"]["extracted"] == len(written)


def test_mcap_cut_in_its_summary_loses_nothing(tmp_path, drive_logs):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", _many(drive_logs, 10), chunk_size=4000)
    log.write_bytes(log.read_bytes()[:-40])  # the footer and some of the summary
    manifest, written = extract(tmp_path, [log])
    assert len(written) == 10 and manifest["status"] == "complete"
    assert [(p["kind"], p["messages_lost"]) for p in manifest["problems"]] == [("truncated", 0)]


def test_corrupt_middle_chunk_is_skipped_and_counted(tmp_path, drive_logs):
    from mcap.reader import make_reader

    log = drive_logs.write_mcap(tmp_path / "d.mcap", _many(drive_logs, 30), chunk_size=4000)
    with log.open("rb") as handle:
        chunks = sorted(make_reader(handle).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    assert len(chunks) >= 5
    middle = chunks[len(chunks) // 2]
    flip_bytes(log, middle.chunk_start_offset + middle.chunk_length // 2)  # inside the compressed records
    manifest, written = extract(tmp_path, [log])
    (problem,) = manifest["problems"]
    front = manifest["cameras"]["cam-front"]
    assert problem["kind"] == "lost_chunk" and problem["offset"] == middle.chunk_start_offset
    assert problem["messages_lost"] == front["messages_lost"] > 0
    assert front["messages"] == 30 and front["extracted"] == 30 - front["messages_lost"] == len(written)
    assert manifest["status"] == "partial"


def test_truncated_ros1_bag_is_read_chunk_by_chunk(tmp_path, drive_logs):
    messages = _many(drive_logs, 30)
    log = drive_logs.write_ros1_bag(tmp_path / "d.bag", messages, chunk_threshold=4000)
    data = log.read_bytes()
    log.write_bytes(data[: int(len(data) * 0.6)])
    manifest, written = extract(tmp_path, [log])
    (problem,) = manifest["problems"]
    assert problem["kind"] == "truncated" and problem["messages_lost"] is None and manifest["status"] == "partial"
    assert 5 < len(written) < 30
    stamps = {stamp_text(m.stamp) for m in messages}
    assert {k.rsplit("/", 1)[1].rsplit(".", 1)[0] for k in written} <= stamps


def test_unsupported_message_encoding_is_reported(tmp_path, drive_logs):
    t0 = drive_logs.T0
    log = drive_logs.write_mcap_raw_channel(
        tmp_path / "d.mcap", "/cam/json/image", "sensor_msgs/msg/CompressedImage", "jsonschema", "json",
        [b'{"format": "jpeg"}'] * 3, extra=[drive_logs.compressed(FRONT, t0, drive_logs.jpeg_bytes())])
    manifest, written = extract(tmp_path, [log])
    assert manifest["cameras"]["cam-json"]["skipped"] == {"unsupported_message_encoding": 3}
    assert manifest["cameras"]["cam-front"]["extracted"] == 1 and len(written) == 1
    assert [(p["kind"], p["topic"]) for p in manifest["problems"]] == [
        ("unsupported_message_encoding", "/cam/json/image")]


def test_a_log_without_image_topics_says_so(tmp_path, drive_logs):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", [drive_logs.string("/chatter", "hi", drive_logs.T0)])
    manifest, written = extract(tmp_path, [log])
    assert manifest["status"] == "no_image_topics" and written == {} and manifest["cameras"] == {}
    assert manifest["problems"][0]["kind"] == "no_image_topics" and "/chatter" in manifest["problems"][0]["detail"]
    assert manifest["time_range"] is None


def test_unreadable_files_raise_before_anything_is_written(tmp_path, drive_logs, camera_messages):
    good = drive_logs.write_mcap(tmp_path / "d.mcap", camera_messages)
    bad = tmp_path / "notes.bag"
    bad.write_text("not a bag\n")
    with pytest.raises(UnreadableLog, match="notes.bag: not an MCAP file or ROS 1 bag"):
        extract_drive(DRIVE, [good, bad], LocalDirectorySink(tmp_path / "out"))
    with pytest.raises(UnreadableLog, match="cannot read"):
        extract_drive(DRIVE, [tmp_path / "missing.mcap"], LocalDirectorySink(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------- split drives, sinks, CLI


def test_a_split_drive_is_one_manifest(tmp_path, drive_logs, camera_messages):
    first = drive_logs.write_mcap(tmp_path / "d_0.mcap", camera_messages[:15])
    second = drive_logs.write_ros1_bag(tmp_path / "d_1.bag", camera_messages[15:])
    manifest, written = extract(tmp_path, [first, second])
    assert [log["name"] for log in manifest["logs"]] == ["d_0.mcap", "d_1.bag"]
    assert manifest["totals"]["extracted"] == 20 == len(written)
    assert {t["name"]: t["messages"] for t in manifest["topics"]}["/chatter"] == 10

    # Extracting again never overwrites: every key is already there.
    again, _ = extract(tmp_path, [first, second])
    assert again["totals"]["skipped"] == {"key_exists": 20} and again["totals"]["extracted"] == 0


@mock_aws
def test_s3_sink_puts_frames_with_the_drive_id(tmp_path, drive_logs, camera_messages):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="roadseg-dev-inference")
    log = drive_logs.write_mcap(tmp_path / "d.mcap", camera_messages)
    sink = S3Sink("roadseg-dev-inference", s3)
    manifest = reconciles(extract_drive(DRIVE, [log], sink))
    assert manifest["destination"] == "s3://roadseg-dev-inference/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="roadseg-dev-inference")["Contents"]]
    assert len(keys) == 20 and all(KEY.match(k[len(INFERENCE.incoming):]) for k in keys)
    head = s3.head_object(Bucket="roadseg-dev-inference", Key=keys[0])
    assert head["Metadata"] == {DRIVE_ID_METADATA: DRIVE}
    assert head["ContentType"] in ("image/jpeg", "image/png")
    again = reconciles(extract_drive(DRIVE, [log], sink))
    assert again["totals"]["skipped"] == {"key_exists": 20}


def test_command_line(tmp_path, drive_logs, camera_messages, capsys):
    logs = tmp_path / "input"
    logs.mkdir()
    drive_logs.write_mcap(logs / "d_0.mcap", camera_messages[:15])
    drive_logs.write_ros2_bag(logs / "d_1", camera_messages[15:])
    cameras = json.dumps({FRONT: {"name": "front", "rate_hz": 20}, REAR: "rear"})
    code = main(["--drive-id", DRIVE, "--log-dir", str(logs), "--output-dir", str(tmp_path / "out"),
                 "--manifest", str(tmp_path / "m" / "manifest.json"), "--cameras-json", cameras])
    assert code == 0
    manifest = reconciles(json.loads((tmp_path / "m" / "manifest.json").read_text()))
    assert [log["format"] for log in manifest["logs"]] == ["mcap", "rosbag2-sqlite3"]
    assert manifest["totals"]["extracted"] == 20 and len(frames(tmp_path / "out")) == 20

    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x00" * 64)
    for argv, message in (
        (["--drive-id", "car 7/x", "--log", str(bad)], "drive id"),
        (["--drive-id", DRIVE, "--log", str(bad)], "not an MCAP file or ROS 1 bag"),
        (["--drive-id", DRIVE, "--log", str(bad), "--cameras-json", "{"], "--cameras-json"),
        (["--drive-id", DRIVE, "--log", str(bad), "--rate-hz", "0"], "--rate-hz"),
    ):
        capsys.readouterr()
        assert main([*argv, "--output-dir", str(tmp_path / "o2"), "--manifest", str(tmp_path / "m2.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_manifest_validator_refuses_counts_that_do_not_reconcile(tmp_path, drive_logs, camera_messages):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", camera_messages)
    manifest, _ = extract(tmp_path, [log])
    broken = json.loads(json.dumps(manifest))
    broken["cameras"]["cam-front"]["extracted"] -= 1
    with pytest.raises(DocumentError, match="cameras.cam-front.messages_read"):
        validate_drive_manifest(broken)
    broken = json.loads(json.dumps(manifest))
    broken["cameras"]["cam-front"]["skipped"] = {"gremlins": 0}
    with pytest.raises(DocumentError, match="unknown reason"):
        validate_drive_manifest(broken)
    broken = json.loads(json.dumps(manifest))
    broken["totals"]["extracted"] += 1
    with pytest.raises(DocumentError, match="totals.extracted"):
        validate_drive_manifest(broken)
    assert "duplicate_stamp" in SKIP_REASONS


def test_the_shares_of_a_split_drive_merge_into_the_manifest_of_one_run(tmp_path, drive_logs, camera_messages):
    """Two instances extract one log each (ShardedByS3Key); the last to finish merges their shares: the counts,
    topics and stamps are those of one run over both logs."""
    from drivelogs.job import merge_manifests

    first = drive_logs.write_mcap(tmp_path / "d_0.mcap", camera_messages[:15])
    second = drive_logs.write_mcap(tmp_path / "d_1.mcap", camera_messages[15:])
    share_1, _ = extract(tmp_path / "host-1", [first])
    share_2, _ = extract(tmp_path / "host-2", [second])
    whole, _ = extract(tmp_path / "one-run", [first, second])
    merged = merge_manifests([share_1, share_2])
    for key in ("totals", "cameras", "time_range", "status"):
        assert merged[key] == whole[key], key
    assert {t["name"]: t["messages"] for t in merged["topics"]} == {t["name"]: t["messages"] for t in whole["topics"]}
    assert [log["name"] for log in merged["logs"]] == ["d_0.mcap", "d_1.mcap"]
    with pytest.raises(ValueError, match="different drives"):
        merge_manifests([share_1, {**share_2, "drive_id": "car-7/other"}])
