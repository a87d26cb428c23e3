"""Real drive logs written in the test with the libraries' own writers: MCAP files with ROS 2 messages
(mcap_ros2.writer.Writer with the sensor_msgs definitions as text), ROS 1 bags and ROS 2 bags (sqlite3 and MCAP
storage) with rosbags' writers, serialised with rosbags' typestores. Frames are small real JPEG/PNG or raw arrays."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from drivelogs.msgdefs import COMPRESSED_IMAGE_MSGDEF, MSGDEFS

# 2026-12-03T10:15:00Z in nanoseconds: the stamps of the fixtures' frames start here.
T0 = int(datetime(2026, 12, 3, 10, 15, tzinfo=UTC).timestamp()) * 1_000_000_000
WIDTH, HEIGHT = 64, 32



@dataclass
class Msg:
    """One message to write: its topic, ROS 2 type, fields (no header) and the stamp / log time in ns."""

    topic: str
    msgtype: str
    fields: dict[str, Any]
    stamp: int | None = None  # None: no header (std_msgs/String)
    log_time: int | None = None  # None: the stamp (or T0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> int:
        return self.log_time if self.log_time is not None else (self.stamp or T0)


def jpeg_bytes(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def png_bytes(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def compressed(topic: str, stamp: int, data: bytes, fmt: str = "jpeg", log_time: int | None = None) -> Msg:
    return Msg(topic, "sensor_msgs/msg/CompressedImage", {"format": fmt, "data": data}, stamp, log_time)


def image(topic: str, stamp: int, encoding: str, width: int, height: int, data: bytes, step: int,
          is_bigendian: int = 0, log_time: int | None = None) -> Msg:
    return Msg(topic, "sensor_msgs/msg/Image", {"height": height, "width": width, "encoding": encoding,
                                                "is_bigendian": is_bigendian, "step": step, "data": data},
               stamp, log_time)


def string(topic: str, text: str, log_time: int) -> Msg:
    return Msg(topic, "std_msgs/msg/String", {"data": text}, None, log_time)


def _with_header(msg: Msg) -> dict[str, Any]:
    if msg.stamp is None:
        return dict(msg.fields)
    sec, nanosec = divmod(msg.stamp, 1_000_000_000)
    return {"header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": "camera"}, **msg.fields}


def write_mcap(path: Path, messages: list[Msg], chunk_size: int = 1024 * 1024, compression: str = "zstd") -> Path:
    """An MCAP file with ROS 2 messages through mcap_ros2's writer (CRCs on, as recorders write them)."""
    from mcap.writer import CompressionType
    from mcap_ros2.writer import Writer

    kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[compression]
    with path.open("wb") as handle:
        writer = Writer(handle, chunk_size=chunk_size, compression=kind)
        schemas = {}
        for msg in messages:
            if msg.msgtype not in schemas:
                schemas[msg.msgtype] = writer.register_msgdef(msg.msgtype, MSGDEFS[msg.msgtype])
            writer.write_message(msg.topic, schemas[msg.msgtype], _with_header(msg), log_time=msg.time)
        writer.finish()
    return path


def write_mcap_raw_channel(path: Path, topic: str, schema_name: str, schema_encoding: str, message_encoding: str,
                           payloads: list[bytes], extra: list[Msg] = ()) -> Path:
    """An MCAP whose first channel uses an encoding the ROS 2 decoder does not read (e.g. JSON), plus ROS 2 messages."""
    from mcap.writer import Writer
    from mcap_ros2._dynamic import serialize_dynamic

    encode = serialize_dynamic("sensor_msgs/msg/CompressedImage", COMPRESSED_IMAGE_MSGDEF)[
        "sensor_msgs/msg/CompressedImage"]
    with path.open("wb") as handle:
        writer = Writer(handle)
        writer.start(profile="", library="test")
        schema_id = writer.register_schema(schema_name, schema_encoding, b"{}")
        channel_id = writer.register_channel(topic, message_encoding, schema_id)
        for index, payload in enumerate(payloads):
            writer.add_message(channel_id, log_time=T0 + index, data=payload, publish_time=T0 + index)
        ros_schema = writer.register_schema("sensor_msgs/msg/CompressedImage", "ros2msg",
                                            COMPRESSED_IMAGE_MSGDEF.encode())
        ros_channel = writer.register_channel("/cam/front/image_raw/compressed", "cdr", ros_schema)
        for msg in extra:
            writer.add_message(ros_channel, log_time=msg.time, data=encode(_with_header(msg)), publish_time=msg.time)
        writer.finish()
    return path


def _rosbags_message(typestore: Any, msg: Msg, ros1: bool) -> Any:
    types = typestore.types
    fields: dict[str, Any] = {}
    for key, value in msg.fields.items():
        fields[key] = np.frombuffer(value, np.uint8).copy() if isinstance(value, bytes) else value
    if msg.stamp is not None:
        sec, nanosec = divmod(msg.stamp, 1_000_000_000)
        stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        header_fields = {"stamp": stamp, "frame_id": "camera"}
        if ros1:
            header_fields["seq"] = 0
        fields = {"header": types["std_msgs/msg/Header"](**header_fields), **fields}
    return types[msg.msgtype](**fields)


def write_ros1_bag(path: Path, messages: list[Msg], chunk_threshold: int | None = None) -> Path:
    """A ROS 1 bag with rosbags' writer and the Noetic typestore (definitions and md5sums in the connections)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS1_NOETIC)
    writer = Writer(path)
    if chunk_threshold is not None:
        writer.chunk_threshold = chunk_threshold
    with writer:
        connections: dict[str, Any] = {}
        for msg in messages:
            if msg.topic not in connections:
                connections[msg.topic] = writer.add_connection(msg.topic, msg.msgtype, typestore=typestore)
            data = typestore.serialize_ros1(_rosbags_message(typestore, msg, ros1=True), msg.msgtype)
            writer.write(connections[msg.topic], msg.time, data)
    return path


def write_ros2_bag(path: Path, messages: list[Msg], storage: str = "sqlite3") -> Path:
    """A ROS 2 bag directory (version 9) with rosbags' writer and its latest ROS 2 typestore."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.LATEST)
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections: dict[str, Any] = {}
        for msg in messages:
            if msg.topic not in connections:
                connections[msg.topic] = writer.add_connection(msg.topic, msg.msgtype, typestore=typestore)
            data = typestore.serialize_cdr(_rosbags_message(typestore, msg, ros1=False), msg.msgtype)
            writer.write(connections[msg.topic], msg.time, data)
    return path


@pytest.fixture
def camera_messages() -> list[Msg]:
    """Two cameras at 10 Hz for 1 s (JPEG front, PNG rear) and a chatter topic."""
    messages: list[Msg] = []
    for index in range(10):
        stamp = T0 + index * 100_000_000
        messages.append(compressed("/cam/front/image_raw/compressed", stamp, jpeg_bytes(seed=index)))
        messages.append(compressed("/cam/rear/image_raw/compressed", stamp + 1, png_bytes(seed=index), fmt="png"))
        messages.append(string("/chatter", f"hello {index}", stamp + 2))
    return messages


@pytest.fixture
def drive_logs() -> SimpleNamespace:
    """The writers and frame makers above (test modules cannot import a conftest under --import-mode=importlib)."""
    return SimpleNamespace(T0=T0, WIDTH=WIDTH, HEIGHT=HEIGHT, Msg=Msg, jpeg_bytes=jpeg_bytes, png_bytes=png_bytes,
                           compressed=compressed, image=image, string=string, write_mcap=write_mcap,
                           write_mcap_raw_channel=write_mcap_raw_channel, write_ros1_bag=write_ros1_bag,
                           write_ros2_bag=write_ros2_bag)
