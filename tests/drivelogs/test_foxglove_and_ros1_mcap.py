"""MCAP logs beyond ROS 2: Foxglove's CompressedImage and RawImage in protobuf (mcap-protobuf-support's writer,
foxglove-schemas-protobuf's classes) and in JSON (mcap's writer with a jsonschema channel), ROS 1 messages inside MCAP
(mcap-ros1-support's writer, what ``mcap convert`` writes) and a log mixing them with ROS 2 topics. Frames come out,
cameras are named from the topics, stamps come from the messages, and every message is accounted for."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.drives import validate_drive_manifest
from contracts.layout import INFERENCE
from drivelogs.extract import extract_drive
from drivelogs.msgdefs import COMPRESSED_IMAGE_MSGDEF
from drivelogs.naming import stamp_text
from drivelogs.sinks import LocalDirectorySink

DRIVE = "car-7/2026-12-03"
SECOND = 1_000_000_000
LOG_DELAY = 250_000_000  # log times lag the stamps: the keys must come from the stamps


def reconciles(manifest: dict) -> dict:
    validate_drive_manifest(manifest)
    for camera in manifest["cameras"].values():
        assert camera["messages"] == camera["extracted"] + sum(camera["skipped"].values()) + camera["messages_lost"]
    return manifest


def extract(tmp_path: Path, log: Path) -> tuple[dict, dict[str, dict[str, bytes]]]:
    """The manifest and the written frames by camera, then by file name (``<stamp>.<ext>``)."""
    out = tmp_path / "out"
    manifest = reconciles(extract_drive(DRIVE, [log], LocalDirectorySink(out)))
    written: dict[str, dict[str, bytes]] = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            assert path.relative_to(out).as_posix().startswith(INFERENCE.incoming)
            written.setdefault(path.parent.name, {})[path.name] = path.read_bytes()
    return manifest, written


def keys_of(written: dict[str, dict[str, bytes]], camera: str) -> list[str]:
    return sorted(written.get(camera, {}))


def rgb_pattern(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ writers of each kind


def protobuf_timestamp(ns: int):
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=ns // SECOND, nanos=ns % SECOND)


def foxglove_compressed(stamp: int, data: bytes, fmt: str = "jpeg"):
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

    return CompressedImage(timestamp=protobuf_timestamp(stamp), frame_id="cam", data=data, format=fmt)


def foxglove_raw(stamp: int, encoding: str, width: int, height: int, step: int, data: bytes):
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

    return RawImage(timestamp=protobuf_timestamp(stamp), frame_id="cam", width=width, height=height,
                    encoding=encoding, step=step, data=data)


JSON_SCHEMAS = {  # the fields of Foxglove's JSON schemas that the extraction reads
    "foxglove.CompressedImage": {"type": "object", "properties": {
        "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
        "frame_id": {"type": "string"}, "data": {"type": "string", "contentEncoding": "base64"},
        "format": {"type": "string"}}},
    "foxglove.RawImage": {"type": "object", "properties": {
        "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
        "frame_id": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
        "encoding": {"type": "string"}, "step": {"type": "integer"},
        "data": {"type": "string", "contentEncoding": "base64"}}},
}


def json_message(stamp: int, **fields) -> bytes:
    body = {"timestamp": {"sec": stamp // SECOND, "nsec": stamp % SECOND}, "frame_id": "cam", **fields}
    if isinstance(body.get("data"), bytes):
        body["data"] = base64.b64encode(body["data"]).decode()
    return json.dumps(body).encode()


def start_json_camera_log(writer) -> tuple[int, int]:
    """Start an MCAP ``writer`` with Foxglove's JSON image schemas and two channels: a CompressedImage front camera
    and a RawImage side camera; returns their channel ids (front, side)."""
    writer.start(profile="", library="test")
    ids = {name: writer.register_schema(name, "jsonschema", json.dumps(schema).encode())
           for name, schema in JSON_SCHEMAS.items()}
    front = writer.register_channel("/cam/front/image/compressed", "json", ids["foxglove.CompressedImage"])
    side = writer.register_channel("/cam/side/image_raw", "json", ids["foxglove.RawImage"])
    return front, side


ROS1_HEADER = """
================================================================================
MSG: std_msgs/Header
uint32 seq
time stamp
string frame_id
"""
ROS1_DEFS = {
    "sensor_msgs/Image": ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
                          "uint32 step\nuint8[] data\n" + ROS1_HEADER),
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n" + ROS1_HEADER,
    "std_msgs/String": "string data\n",
}


def ros1_class(msgtype: str):
    from mcap_ros1._vendor.genpy.dynamic import generate_dynamic

    return generate_dynamic(msgtype, ROS1_DEFS[msgtype])


def ros1_message(msgtype: str, stamp: int | None, **fields):
    from mcap_ros1._vendor.genpy import Time

    classes = ros1_class(msgtype)
    if stamp is not None:
        fields["header"] = classes["std_msgs/Header"](seq=0, stamp=Time(stamp // SECOND, stamp % SECOND),
                                                      frame_id="cam")
    return classes[msgtype](**fields)


# -------------------------------------------------------------------------------------------------------- tests


def test_foxglove_protobuf_images(tmp_path, drive_logs):
    from foxglove_schemas_protobuf.Log_pb2 import Log
    from mcap_protobuf.writer import Writer

    t0 = drive_logs.T0
    left = [rgb_pattern(6, 4, seed) for seed in range(2)]
    depth = np.arange(24, dtype="<u2").reshape(4, 6) * 2000
    log = tmp_path / "foxglove.mcap"
    with log.open("wb") as handle, Writer(handle) as writer:
        for i in range(3):
            stamp = t0 + i * SECOND // 10
            writer.write_message("/cam/front/compressed", foxglove_compressed(stamp, drive_logs.jpeg_bytes(seed=i)),
                                 log_time=stamp + LOG_DELAY, publish_time=stamp)
        for i, pixels in enumerate(left):  # rgb8 rows padded to 20 bytes
            stamp = t0 + i * SECOND // 10
            padded = np.zeros((4, 20), np.uint8)
            padded[:, :18] = pixels.reshape(4, 18)
            writer.write_message("/cam/left/image_raw", foxglove_raw(stamp, "rgb8", 6, 4, 20, padded.tobytes()),
                                 log_time=stamp + LOG_DELAY, publish_time=stamp)
        writer.write_message("/cam/depth/image_raw", foxglove_raw(t0, "mono16", 6, 4, 12, depth.tobytes()),
                             log_time=t0 + LOG_DELAY, publish_time=t0)
        writer.write_message("/cam/thermal/image_raw", foxglove_raw(t0, "32FC1", 2, 2, 8, bytes(16)),
                             log_time=t0 + LOG_DELAY, publish_time=t0)
        writer.write_message("/cam/rear/compressed", foxglove_compressed(0, drive_logs.png_bytes(), "png"),
                             log_time=t0 + LOG_DELAY, publish_time=t0)  # no timestamp: the log time
        writer.write_message("/rosout", Log(timestamp=protobuf_timestamp(t0), message="hello"),
                             log_time=t0, publish_time=t0)
    manifest, written = extract(tmp_path, log)

    cameras = manifest["cameras"]
    assert set(cameras) == {"cam-front", "cam-left", "cam-depth", "cam-thermal", "cam-rear"}
    assert {n: (c["messages"], c["extracted"]) for n, c in cameras.items()} == {
        "cam-front": (3, 3), "cam-left": (2, 2), "cam-depth": (1, 1), "cam-thermal": (1, 0), "cam-rear": (1, 1)}
    assert cameras["cam-thermal"]["skipped"] == {"unknown_encoding": 1}
    assert cameras["cam-front"]["topic"] == "/cam/front/compressed"
    assert cameras["cam-front"]["type"] == "foxglove.CompressedImage"
    assert cameras["cam-left"]["type"] == "foxglove.RawImage"
    assert keys_of(written, "cam-front") == [f"{stamp_text(t0 + i * SECOND // 10)}.jpg" for i in range(3)]
    assert keys_of(written, "cam-rear") == [f"{stamp_text(t0 + LOG_DELAY)}.png"]
    assert cameras["cam-rear"]["stamps_from_log_time"] == 1
    assert written["cam-front"][f"{stamp_text(t0)}.jpg"] == drive_logs.jpeg_bytes(seed=0)  # byte for byte
    for i, pixels in enumerate(left):
        png = written["cam-left"][f"{stamp_text(t0 + i * SECOND // 10)}.png"]
        decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decoded[:, :, ::-1], pixels)
    depth_png = written["cam-depth"][f"{stamp_text(t0)}.png"]
    assert np.array_equal(cv2.imdecode(np.frombuffer(depth_png, np.uint8), cv2.IMREAD_UNCHANGED), depth)
    topics = {t["name"]: t for t in manifest["topics"]}
    assert topics["/rosout"]["camera"] is None and topics["/rosout"]["messages"] == 1
    assert manifest["problems"] == []
    assert "mcap-protobuf-support" in manifest["logs"][0]["library"]


def test_foxglove_json_images(tmp_path, drive_logs):
    from mcap.writer import Writer

    t0 = drive_logs.T0
    pixels = rgb_pattern(4, 2, 7)
    log = tmp_path / "json.mcap"
    with log.open("wb") as handle:
        writer = Writer(handle)
        front, side = start_json_camera_log(writer)
        for i in range(2):
            stamp = t0 + i * SECOND
            writer.add_message(front, log_time=stamp + LOG_DELAY, publish_time=stamp,
                               data=json_message(stamp, format="jpeg", data=drive_logs.jpeg_bytes(seed=i)))
        writer.add_message(front, log_time=t0 + 3 * SECOND, publish_time=t0 + 3 * SECOND,
                           data=json_message(t0 + 3 * SECOND, format="jpeg", data="not base64!"))
        writer.add_message(side, log_time=t0 + LOG_DELAY, publish_time=t0,
                           data=json_message(t0, encoding="bgr8", width=4, height=2, step=12,
                                             data=pixels.tobytes()))
        writer.finish()
    manifest, written = extract(tmp_path, log)

    cameras = manifest["cameras"]
    assert set(cameras) == {"cam-front", "cam-side"}
    assert (cameras["cam-front"]["messages"], cameras["cam-front"]["extracted"]) == (3, 2)
    assert cameras["cam-front"]["skipped"] == {"undecodable": 1}
    assert keys_of(written, "cam-front") == [f"{stamp_text(t0)}.jpg", f"{stamp_text(t0 + SECOND)}.jpg"]
    assert written["cam-front"][f"{stamp_text(t0 + SECOND)}.jpg"] == drive_logs.jpeg_bytes(seed=1)
    (side_png,) = written["cam-side"].values()
    assert np.array_equal(cv2.imdecode(np.frombuffer(side_png, np.uint8), cv2.IMREAD_UNCHANGED), pixels)
    assert keys_of(written, "cam-side") == [f"{stamp_text(t0)}.png"]
    assert manifest["problems"] == []


def test_ros1_messages_inside_mcap(tmp_path, drive_logs):
    from mcap_ros1.writer import Writer

    t0 = drive_logs.T0
    pixels = rgb_pattern(5, 3, 3)
    log = tmp_path / "converted.mcap"
    with log.open("wb") as handle:
        writer = Writer(handle)
        for i in range(4):
            stamp = t0 + i * SECOND // 10
            writer.write_message("/cam/front/image_raw/compressed", ros1_message(
                "sensor_msgs/CompressedImage", stamp, format="jpeg", data=drive_logs.jpeg_bytes(seed=i)),
                log_time=stamp + LOG_DELAY)
        writer.write_message("/cam/rear/image_raw", ros1_message(
            "sensor_msgs/Image", t0, height=3, width=5, encoding="bgr8", is_bigendian=0, step=15,
            data=pixels.tobytes()), log_time=t0 + LOG_DELAY)
        writer.write_message("/chatter", ros1_message("std_msgs/String", None, data="hi"), log_time=t0)
        writer.finish()
    manifest, written = extract(tmp_path, log)

    cameras = manifest["cameras"]
    assert set(cameras) == {"cam-front", "cam-rear"}
    assert cameras["cam-front"]["type"] == "sensor_msgs/msg/CompressedImage"
    assert {n: (c["messages"], c["extracted"], c["skipped"]) for n, c in cameras.items()} == {
        "cam-front": (4, 4, {}), "cam-rear": (1, 1, {})}
    assert keys_of(written, "cam-front") == [f"{stamp_text(t0 + i * SECOND // 10)}.jpg" for i in range(4)]
    (rear_png,) = written["cam-rear"].values()
    assert np.array_equal(cv2.imdecode(np.frombuffer(rear_png, np.uint8), cv2.IMREAD_UNCHANGED), pixels)
    assert manifest["problems"] == []
    assert {t["name"]: t["type"] for t in manifest["topics"]}["/chatter"] == "std_msgs/msg/String"
    assert "rosbags" in manifest["logs"][0]["library"]


def test_mixed_log_gives_every_image_topic_a_camera(tmp_path, drive_logs):
    """One MCAP with ROS 2 CDR, ROS 1, Foxglove protobuf and Foxglove JSON image topics, and one image topic in an
    encoding nothing here reads (skipped as unsupported_message_encoding, reported once)."""
    from io import BytesIO

    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from mcap.writer import Writer
    from mcap_protobuf.schema import register_schema
    from mcap_ros2._dynamic import serialize_dynamic

    t0 = drive_logs.T0
    encode_ros2 = serialize_dynamic("sensor_msgs/msg/CompressedImage", COMPRESSED_IMAGE_MSGDEF)[
        "sensor_msgs/msg/CompressedImage"]
    log = tmp_path / "mixed.mcap"
    with log.open("wb") as handle:
        writer = Writer(handle)
        writer.start(profile="", library="test")
        ros2 = writer.register_channel("/ros2/cam/image_raw/compressed", "cdr", writer.register_schema(
            "sensor_msgs/msg/CompressedImage", "ros2msg", COMPRESSED_IMAGE_MSGDEF.encode()))
        ros1 = writer.register_channel("/ros1/cam/image_raw/compressed", "ros1", writer.register_schema(
            "sensor_msgs/CompressedImage", "ros1msg", ROS1_DEFS["sensor_msgs/CompressedImage"].encode()))
        proto = writer.register_channel("/fox/cam/compressed", "protobuf", register_schema(writer, CompressedImage))
        as_json = writer.register_channel("/json/cam", "json", writer.register_schema(
            "foxglove.RawImage", "jsonschema", json.dumps(JSON_SCHEMAS["foxglove.RawImage"]).encode()))
        flat = writer.register_channel("/flat/cam", "flatbuffer", writer.register_schema(
            "foxglove.CompressedImage", "flatbuffer", b"\x00"))
        for i in range(3):
            stamp = t0 + i * SECOND // 5
            jpeg = drive_logs.jpeg_bytes(seed=i)
            sec, nanosec = divmod(stamp, SECOND)
            writer.add_message(ros2, log_time=stamp, publish_time=stamp, data=encode_ros2(
                {"header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": "cam"}, "format": "jpeg",
                 "data": jpeg}))
            buffer = BytesIO()
            ros1_message("sensor_msgs/CompressedImage", stamp, format="jpeg", data=jpeg).serialize(buffer)
            writer.add_message(ros1, log_time=stamp, publish_time=stamp, data=buffer.getvalue())
            writer.add_message(proto, log_time=stamp, publish_time=stamp,
                               data=foxglove_compressed(stamp, jpeg).SerializeToString())
            writer.add_message(as_json, log_time=stamp, publish_time=stamp, data=json_message(
                stamp, encoding="mono8", width=4, height=2, step=4, data=bytes(range(8))))
            writer.add_message(flat, log_time=stamp, publish_time=stamp, data=b"\x00\x01")
        writer.finish()
    manifest, written = extract(tmp_path, log)

    cameras = manifest["cameras"]
    assert set(cameras) == {"ros2-cam", "ros1-cam", "fox-cam", "json-cam", "flat-cam"}
    for name in ("ros2-cam", "ros1-cam", "fox-cam", "json-cam"):
        assert (cameras[name]["messages"], cameras[name]["extracted"], cameras[name]["skipped"]) == (3, 3, {}), name
        assert keys_of(written, name) == [
            f"{stamp_text(t0 + i * SECOND // 5)}.{'png' if name == 'json-cam' else 'jpg'}" for i in range(3)]
    assert cameras["flat-cam"]["skipped"] == {"unsupported_message_encoding": 3}
    assert [(p["kind"], p["topic"]) for p in manifest["problems"]] == [("unsupported_message_encoding", "/flat/cam")]
    assert sum(len(v) for v in written.values()) == 12
    # the ROS 2, ROS 1 and Foxglove protobuf copies of a frame are the same JPEG, byte for byte
    for i in range(3):
        stamp = stamp_text(t0 + i * SECOND // 5)
        assert {written[n][f"{stamp}.jpg"] for n in ("ros2-cam", "ros1-cam", "fox-cam")} == {
            drive_logs.jpeg_bytes(seed=i)}
    library = manifest["logs"][0]["library"]
    for name in ("mcap-ros2-support", "mcap-protobuf-support", "rosbags"):
        assert name in library


@pytest.mark.parametrize("schema_name", ["sensor_msgs/msg/CompressedImage", "foxglove.SceneUpdate"])
def test_json_outside_foxglove_images_stays_unsupported(tmp_path, drive_logs, schema_name):
    log = drive_logs.write_mcap_raw_channel(tmp_path / "d.mcap", "/cam/json/image", schema_name, "jsonschema",
                                            "json", [b"{}"] * 2)
    manifest, _ = extract(tmp_path, log)
    if schema_name.startswith("sensor_msgs"):
        assert manifest["cameras"]["cam-json"]["skipped"] == {"unsupported_message_encoding": 2}
    else:  # not an image type: not a camera at all
        assert "cam-json" not in manifest["cameras"]
