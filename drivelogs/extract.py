"""From log to frames: read a drive log and put its camera images where the ingest path picks them up.

Reads ROS 1 bags, ROS 2 bag directories (sqlite3 or MCAP storage) and MCAP files (ROS 2 messages) with the pinned
pure-Python readers (rosbags, mcap + mcap-ros2-support), no ROS install. Messages are streamed: at most one chunk of
the log and one frame are in memory at a time, whatever the log's size.

Frames
    ``sensor_msgs/CompressedImage``: JPEG and PNG (told by their magic bytes, not the ``format`` string) pass through
    byte for byte; anything else is skipped as ``unsupported_format``.
    ``sensor_msgs/Image``: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (a 16-bit greyscale PNG, ``is_bigendian``
    honoured) and Bayer bayer_{rggb,bggr,gbrg,grbg}{8,16} (demosaiced with OpenCV's bilinear ``cvtColor``), row
    padding (``step``) dropped, encoded losslessly as PNG. Other encodings are skipped as ``unknown_encoding``.
    Frames above the ingest's limits (``PrepareOptions`` max_bytes / max_pixels, or given ones) are skipped with the
    ingest's code (``too_large_bytes``, ``too_many_pixels``) instead of being uploaded to be quarantined.

Keys
    ``incoming/<vehicle>/<camera>/<stamp>.<jpg|png>`` (contracts.lambda_env.DEFAULT_KEY_PATTERN) with the drive id in
    the object's metadata (contracts.drives.DRIVE_ID_METADATA). ``<stamp>`` is header.stamp (the log time when the
    stamp is zero) as a sortable UTC string with nanoseconds, ``20261203T101500.123456789Z``.
    The camera name comes from the topic -> name mapping, else from the topic: split on "/", drop the trailing
    transport and image-stage parts (compressed, image_raw, image_rect_color, image, ...), join the rest with "-" and
    replace every character outside ``[A-Za-z0-9._-]`` with "_", trim ".", "_" and "-" at both ends
    (``/cam/front/image_raw/compressed`` -> ``cam-front``;
    a topic that is nothing but such parts keeps them, ``/image_raw`` -> ``image_raw``). When two topics derive the
    same name the later one gets the dropped parts appended (``cam-front-image_raw``) and a problem says so.

Per camera: a frame is kept when its stamp is at least 1/rate_hz after the last kept one (``rate_limited``
otherwise; an out-of-order stamp is behind it, so it is rate limited too); a stamp equal to one of the last
``RECENT_STAMPS`` kept ones is ``duplicate_stamp``; a key the destination already holds is never overwritten
(``key_exists``: an earlier run, or a duplicate further back); stamps earlier than one already seen are extracted
and counted as ``out_of_order``.

Damaged logs never raise once the log opened: a truncated MCAP or ROS 1 bag is read up to where it stops, a corrupt
MCAP chunk is skipped and its messages counted from the chunk's message index, and the manifest's problems say what
was lost and where. For every camera, messages = extracted + skipped + lost (contracts.drives.validate_drive_manifest).
A file that is not a log at all raises ``UnreadableLog`` before anything is written.

Command line (the Processing job; logs are downloaded to a local directory, a drive split into several files is
sharded across instances by S3 key, each instance writing the manifest of its share)::

    python -m drivelogs.extract --drive-id car-7/2026-12-03 --log-dir /opt/ml/processing/input/logs \\
        --bucket roadseg-dev-inference --manifest /opt/ml/processing/output/manifest.json --rate-hz 2
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from contracts.drives import (
    DRIVE_ID_METADATA,
    DRIVE_MANIFEST_SCHEMA_VERSION,
    DriveId,
    DriveKeyError,
    validate_drive_manifest,
)
from contracts.layout import INFERENCE
from segcore.imaging import PrepareOptions

LOG = logging.getLogger("roadseg.drives.extract")

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_MAGIC = b"#ROSBAG V2.0\n"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECENT_STAMPS = 1024  # kept stamps remembered per camera for duplicate detection (bounded memory)
PNG_COMPRESSION = 1  # lossless either way; level 1 is several times faster than the default 6 for camera frames
TOPIC_SUFFIXES = frozenset({
    "compressed", "compresseddepth", "theora", "zstd", "raw", "image", "image_raw", "image_rect", "image_color",
    "image_rect_color", "image_mono", "image_rect_mono", "image_rect_raw",
})
# ROS encoding -> (bytes per sample, channels); Bayer patterns demosaic to 3 channels.
RAW_ENCODINGS: dict[str, tuple[int, int]] = {
    "rgb8": (1, 3), "bgr8": (1, 3), "rgba8": (1, 4), "bgra8": (1, 4), "mono8": (1, 1), "mono16": (2, 1),
    **{f"bayer_{p}{bits}": (bits // 8, 1) for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
}


class UnreadableLog(Exception):
    """The file is not a log this extractor reads (or cannot be opened at all); nothing was extracted from it."""


class UnsupportedMessageEncoding(Exception):
    """The topic's serialisation or schema language has no decoder (e.g. JSON, ros2idl)."""


class SkipFrame(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# ------------------------------------------------------------------------------------------------- naming and time


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _sanitise(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._-") or "camera"


def camera_name_for_topic(topic: str) -> str:
    """The camera name derived from a topic (the rule is in the module docstring)."""
    parts = [p for p in topic.split("/") if p]
    kept = list(parts)
    while kept and kept[-1].lower() in TOPIC_SUFFIXES:
        kept.pop()
    return _sanitise("-".join(kept or parts))


def stamp_text(ns: int) -> str:
    """A nanosecond UTC time as a sortable key part: ``20261203T101500.123456789Z``."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S") + f".{nanos:09d}Z"


def frame_key(vehicle: str, camera: str, stamp_ns: int, ext: str, prefix: str = INFERENCE.incoming) -> str:
    return f"{prefix}{vehicle}/{camera}/{stamp_text(stamp_ns)}.{ext}"


# ------------------------------------------------------------------------------------------------------------ sinks


class FrameSink(Protocol):
    """Where frames go. ``put_frame`` returns False, writing nothing, when the key already exists."""

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool: ...

    def describe(self) -> str: ...


class LocalDirectorySink:
    """Frames as files under ``root`` (the key is the relative path); metadata is not kept. Never overwrites."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = path.open("xb")  # exclusive create: never overwrites
        except FileExistsError:
            return False
        try:
            with handle:
                handle.write(body)
        except BaseException:
            path.unlink(missing_ok=True)  # no partial frame left behind
            raise
        return True

    def describe(self) -> str:
        return str(self.root)


class S3Sink:
    """Frames as objects in ``bucket``; encryption is the bucket's default. ``IfNoneMatch`` keeps S3 from
    overwriting an existing key (S3 conditional writes)."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.bucket, self.client = bucket, client

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                                   Metadata=dict(metadata), IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def describe(self) -> str:
        return f"s3://{self.bucket}/"


# ----------------------------------------------------------------------------------------------------- log readers


@dataclass(frozen=True)
class LogMessage:
    topic: str
    msgtype: str | None  # normalised ROS 2 name, "sensor_msgs/msg/Image"
    log_time: int
    decode: Callable[[], Any]  # raises UnsupportedMessageEncoding, or the library's error for bad bytes


Wanted = Callable[[str, "str | None"], bool]


def normalise_type(name: str | None) -> str | None:
    if not name:
        return None
    return name if "/msg/" in name or name.count("/") != 1 else name.replace("/", "/msg/")


class DriveLog:
    """One log file (or ROS 2 bag directory). ``messages`` yields the messages of wanted topics in file order;
    afterwards ``topic_counts`` holds every topic's count (from the index where there is one), ``lost`` the
    messages known to be lost per topic, and ``problems`` what went wrong."""

    format = "unknown"
    library = "unknown"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.problems: list[dict[str, Any]] = []
        self.topic_types: dict[str, str | None] = {}
        self.topic_counts: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.messages_read = 0
        self.complete = True

    @property
    def size_bytes(self) -> int:
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return self.path.stat().st_size

    def problem(self, kind: str, detail: str, *, topic: str | None = None, offset: int | None = None,
                messages_lost: int | None = 0) -> None:
        if messages_lost is None or messages_lost:
            self.complete = False
        self.problems.append({"kind": kind, "log": self.name, "topic": topic, "offset": offset,
                              "messages_lost": messages_lost, "detail": detail})

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:  # pragma: no cover - abstract
        raise NotImplementedError


def open_log(path: Path | str) -> DriveLog:
    """The reader for ``path`` by its content: an MCAP file, a ROS 1 bag, or a ROS 2 bag directory (or its
    metadata.yaml). UnreadableLog for anything else."""
    path = Path(path)
    if path.name == "metadata.yaml":
        path = path.parent
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            raise UnreadableLog(f"{path}: a directory without metadata.yaml is not a ROS 2 bag")
        return RosbagLog(path, ros2=True)
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise UnreadableLog(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(MCAP_MAGIC):
        return McapLog(path)
    if head.startswith(ROS1_MAGIC):
        return RosbagLog(path, ros2=False)
    if not head:
        raise UnreadableLog(f"{path}: the file is empty")
    raise UnreadableLog(f"{path}: not an MCAP file or ROS 1 bag (starts with {head[:8]!r})")


class McapLog(DriveLog):
    """An MCAP file with ROS 2 (CDR) messages, read with the mcap library's records and mcap_ros2's decoders. With an
    intact summary each chunk is read through its chunk index (a corrupt chunk is skipped, its loss counted from its
    message indexes); without one (a truncated file) the records are read in order until the file stops."""

    format = "mcap"
    library = "mcap"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from mcap_ros2.decoder import DecoderFactory

        self.library = f"mcap {_version('mcap')} + mcap-ros2-support {_version('mcap-ros2-support')}"
        self._factory = DecoderFactory()
        self._decoders: dict[int, Callable[[bytes], Any] | None] = {}
        self._unsupported_reported: set[str] = set()

    def _decoder(self, channel: Any, schema: Any) -> Callable[[bytes], Any] | None:
        if channel.id not in self._decoders:
            try:
                decoder = self._factory.decoder_for(channel.message_encoding, schema)
            except Exception:  # a schema the ROS 2 parser rejects
                decoder = None
            self._decoders[channel.id] = decoder
        return self._decoders[channel.id]

    def _message(self, channel: Any, schema: Any, record: Any) -> LogMessage:
        decoder = self._decoder(channel, schema)
        if decoder is None:
            if channel.topic not in self._unsupported_reported:
                self._unsupported_reported.add(channel.topic)
                schema_text = f"{schema.name} ({schema.encoding})" if schema is not None else "no schema"
                self.problem("unsupported_message_encoding", f"message encoding {channel.message_encoding!r}, "
                             f"{schema_text}: no ROS 2 decoder", topic=channel.topic)

            def decode() -> Any:
                raise UnsupportedMessageEncoding(channel.message_encoding)
        else:
            data = record.data

            def decode() -> Any:
                return decoder(data)

        return LogMessage(channel.topic, normalise_type(schema.name if schema else None), record.log_time, decode)

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:
        from mcap.reader import SeekingReader

        with self.path.open("rb") as handle:
            summary = None
            try:
                summary = SeekingReader(handle).get_summary()
            except Exception as exc:  # no footer: a truncated file (the stream read says where it stops)
                LOG.info("%s: no readable summary (%s); reading records in order", self.name, exc)
            if summary is not None and summary.chunk_indexes:
                yield from self._indexed(handle, summary, wanted)
            else:
                yield from self._streamed(handle, wanted)

    def _indexed(self, handle: Any, summary: Any, wanted: Wanted) -> Iterator[LogMessage]:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Chunk, Message
        from mcap.stream_reader import breakup_chunk

        channels, schemas = summary.channels, summary.schemas
        for channel in channels.values():
            schema = schemas.get(channel.schema_id)
            self.topic_types[channel.topic] = normalise_type(schema.name if schema else None)
        if summary.statistics is not None:
            for channel_id, count in summary.statistics.channel_message_counts.items():
                if channel_id in channels:
                    self.topic_counts[channels[channel_id].topic] += count
        wanted_ids = {cid for cid, ch in channels.items() if wanted(ch.topic, self.topic_types[ch.topic])}
        for index in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            if index.message_index_offsets and not wanted_ids & index.message_index_offsets.keys():
                continue  # nothing of interest in this chunk: not even decompressed
            try:
                handle.seek(index.chunk_start_offset + 1 + 8)  # past the opcode and the record length
                chunk = Chunk.read(ReadDataStream(handle))
                records = breakup_chunk(chunk, validate_crc=True)
            except Exception as exc:
                lost = self._indexed_counts(handle, index, channels)
                for topic, count in (lost or {}).items():
                    self.lost[topic] += count
                wanted_lost = None if lost is None else sum(
                    n for t, n in lost.items() if wanted(t, self.topic_types.get(t)))
                self.problem("lost_chunk", f"chunk at byte {index.chunk_start_offset} ({index.chunk_length} bytes, "
                             f"log times {index.message_start_time}..{index.message_end_time}) is unreadable: "
                             f"{type(exc).__name__}: {exc}; "
                             + ("message count unknown (no message index)" if lost is None
                                else f"{sum(lost.values())} messages lost ({dict(lost)})"),
                             offset=index.chunk_start_offset, messages_lost=wanted_lost)
                continue
            for record in records:
                if isinstance(record, Message) and record.channel_id in wanted_ids:
                    channel = channels[record.channel_id]
                    self.messages_read += 1
                    yield self._message(channel, schemas.get(channel.schema_id), record)
        if summary.statistics is None:  # no counts in the summary: what was read (wanted topics only)
            LOG.info("%s: no statistics record; topic counts cover the camera topics", self.name)

    @staticmethod
    def _indexed_counts(handle: Any, index: Any, channels: Mapping[int, Any]) -> Counter[str] | None:
        """Messages per topic in a chunk, from its message index records (outside the chunk, usually intact)."""
        from mcap.data_stream import ReadDataStream
        from mcap.records import MessageIndex

        if not index.message_index_offsets:
            return None
        counts: Counter[str] = Counter()
        try:
            for channel_id, offset in index.message_index_offsets.items():
                handle.seek(offset + 1 + 8)
                entries = MessageIndex.read(ReadDataStream(handle)).records
                topic = channels[channel_id].topic if channel_id in channels else f"<channel {channel_id}>"
                counts[topic] += len(entries)
        except Exception:
            return None
        return counts

    def _streamed(self, handle: Any, wanted: Wanted) -> Iterator[LogMessage]:
        from mcap.records import Channel, Chunk, DataEnd, Message, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        size = self.path.stat().st_size
        schemas: dict[int, Any] = {}
        channels: dict[int, Any] = {}
        wanted_ids: set[int] = set()
        data_end_seen = False

        def handle_record(record: Any) -> LogMessage | None:
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                channels[record.id] = record
                schema = schemas.get(record.schema_id)
                self.topic_types[record.topic] = normalise_type(schema.name if schema else None)
                if wanted(record.topic, self.topic_types[record.topic]):
                    wanted_ids.add(record.id)
            elif isinstance(record, Message) and record.channel_id in channels:
                channel = channels[record.channel_id]
                self.topic_counts[channel.topic] += 1
                if record.channel_id in wanted_ids:
                    self.messages_read += 1
                    return self._message(channel, schemas.get(channel.schema_id), record)
            return None

        handle.seek(0)
        records = StreamReader(handle, emit_chunks=True).records
        while True:
            offset = handle.tell()
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:
                if data_end_seen:
                    self.problem("truncated", f"the summary section is cut at byte {offset} of {size} "
                                 f"({type(exc).__name__}); every message was read", offset=offset)
                else:
                    self.problem("truncated", f"the log stops at byte {offset} of {size} ({type(exc).__name__}: "
                                 f"{exc}); messages after it are unknown", offset=offset, messages_lost=None)
                return
            if isinstance(record, DataEnd):
                data_end_seen = True
            if isinstance(record, Chunk):
                try:
                    inner = breakup_chunk(record, validate_crc=True)
                except Exception as exc:
                    if handle.tell() >= size:  # the chunk runs past the end of the file
                        self.problem("truncated", f"the log stops inside the chunk at byte {offset} of {size}; its "
                                     "messages and any after it are unknown", offset=offset, messages_lost=None)
                        return
                    self.problem("lost_chunk", f"chunk at byte {offset} is unreadable ({type(exc).__name__}: {exc});"
                                 " message count unknown (no summary)", offset=offset, messages_lost=None)
                    continue
                for item in inner:
                    message = handle_record(item)
                    if message is not None:
                        yield message
            else:
                message = handle_record(record)
                if message is not None:
                    yield message


class RosbagLog(DriveLog):
    """A ROS 1 bag or a ROS 2 bag directory through rosbags' AnyReader (types from the bag's own definitions, the
    latest ROS 2 store for bags without them). A ROS 1 bag whose index is missing or cut (a recording that stopped)
    is read chunk by chunk with rosbags' record readers instead, up to where it stops."""

    def __init__(self, path: Path, *, ros2: bool) -> None:
        super().__init__(path)
        self.ros2 = ros2
        if ros2:
            storage = "mcap" if any(path.glob("*.mcap")) else "sqlite3"
            self.format = f"rosbag2-{storage}"
        else:
            self.format = "rosbag1"
        self.library = f"rosbags {_version('rosbags')}"

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        reader = AnyReader([self.path], default_typestore=get_typestore(Stores.LATEST))
        try:
            reader.open()
        except Exception as exc:
            if self.ros2:
                raise UnreadableLog(f"{self.path}: rosbags cannot open this ROS 2 bag: {exc}") from None
            LOG.info("%s: the bag index is unreadable (%s); reading chunks in order", self.name, exc)
            yield from self._scan_ros1(wanted, str(exc))
            return
        try:
            yield from self._indexed(reader, wanted)
        finally:
            reader.close()

    def _indexed(self, reader: Any, wanted: Wanted) -> Iterator[LogMessage]:
        for name, info in reader.topics.items():
            self.topic_types[name] = normalise_type(info.msgtype)
            self.topic_counts[name] += info.msgcount
        connections = [c for c in reader.connections if wanted(c.topic, normalise_type(c.msgtype))]
        if not connections:
            return
        read: Counter[str] = Counter()
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                read[connection.topic] += 1
                self.messages_read += 1
                yield LogMessage(connection.topic, normalise_type(connection.msgtype), timestamp,
                                 _deserializer(reader.deserialize, raw, connection.msgtype))
        except Exception as exc:
            lost = {t: self.topic_counts[t] - read[t] for t in {c.topic for c in connections}}
            for topic, count in lost.items():
                self.lost[topic] += count
            self.problem("read_error", f"rosbags stopped reading: {type(exc).__name__}: {exc}; "
                         f"{sum(lost.values())} camera messages not read", messages_lost=sum(lost.values()))

    def _scan_ros1(self, wanted: Wanted, why: str) -> Iterator[LogMessage]:
        from rosbags.rosbag1.reader import Header, RecordType, decompressors, read_bytes, read_uint32
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
        from rosbags.typesys.msg import normalize_msgtype

        typestore = get_typestore(Stores.EMPTY)
        connections: dict[int, tuple[str, str]] = {}  # conn id -> (topic, msgtype)
        size = self.path.stat().st_size
        with self.path.open("rb") as bio:
            bio.readline()  # the magic line, checked by open_log
            Header.read(bio, RecordType.BAGHEADER)
            bio.seek(read_uint32(bio), os.SEEK_CUR)  # the bag header's padding
            while True:
                offset = bio.tell()
                if offset >= size:
                    break
                try:
                    header = Header.read(bio)
                    op = header.get_uint8("op")
                    if op == RecordType.CHUNK:
                        compression = header.get_string("compression")
                        data = decompressors[compression](read_bytes(bio, read_uint32(bio)))
                    elif op == RecordType.CONNECTION:
                        Header.read(bio)  # the index section's copy (the chunks had them first)
                        continue
                    else:  # index data, chunk info
                        read_bytes(bio, read_uint32(bio))
                        continue
                except Exception as exc:
                    self.problem("truncated", f"the bag index is unusable ({why}); chunks read in order until byte "
                                 f"{offset} of {size}, where the bag stops ({type(exc).__name__}: {exc}); messages "
                                 "after it are unknown", offset=offset, messages_lost=None)
                    return
                chunk = io.BytesIO(data)
                while chunk.tell() < len(data):
                    record = Header.read(chunk)
                    op = record.get_uint8("op")
                    if op == RecordType.CONNECTION:
                        conn, topic = record.get_uint32("conn"), record.get_string("topic")
                        definition = Header.read(chunk)
                        msgtype = normalize_msgtype(definition.get_string("type"))
                        if conn not in connections:
                            connections[conn] = (topic, msgtype)
                            self.topic_types[topic] = msgtype
                            if msgtype not in typestore.fielddefs:
                                typestore.register(get_types_from_msg(
                                    definition.get_string("message_definition"), msgtype))
                    elif op == RecordType.MSGDATA:
                        raw = read_bytes(chunk, read_uint32(chunk))
                        topic, msgtype = connections[record.get_uint32("conn")]
                        self.topic_counts[topic] += 1
                        if wanted(topic, msgtype):
                            self.messages_read += 1
                            yield LogMessage(topic, msgtype, record.get_time("time"),
                                             _deserializer(typestore.deserialize_ros1, raw, msgtype))
                    else:
                        read_bytes(chunk, read_uint32(chunk))
        self.problem("truncated", f"the bag index is unusable ({why}); every chunk was read in order",
                     offset=size, messages_lost=0)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:  # pragma: no cover - vendored copies
        return "unknown"


def _deserializer(deserialize: Callable[[bytes, str], Any], raw: bytes, msgtype: str) -> Callable[[], Any]:
    return lambda: deserialize(raw, msgtype)


# --------------------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    body: bytes
    ext: str  # "jpg" | "png"
    content_type: str
    size: tuple[int, int]


@dataclass(frozen=True)
class FrameLimits:
    """The ingest's refusal limits (segcore.imaging.PrepareOptions' defaults unless given)."""

    max_bytes: int = PrepareOptions.max_bytes
    max_pixels: int = PrepareOptions.max_pixels


def _as_bytes(data: Any) -> bytes:
    return data if isinstance(data, bytes) else bytes(memoryview(data))


def image_size(data: bytes, ext: str) -> tuple[int, int]:
    """(width, height) from a JPEG's SOF or a PNG's IHDR: a few header bytes, far cheaper than opening the image."""
    if ext == "png":
        if data[12:16] != b"IHDR" or len(data) < 24:
            raise ValueError("no IHDR chunk")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    index, end = 2, len(data)
    while index + 9 <= end:
        if data[index] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {index}")
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            index += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame (not DHT, JPG, DAC)
            return int.from_bytes(data[index + 7:index + 9], "big"), int.from_bytes(data[index + 5:index + 7], "big")
        if marker == 0xDA:
            break  # scan data before any frame header
        index += 2 + int.from_bytes(data[index + 2:index + 4], "big")
    raise ValueError("no JPEG frame header")


def compressed_frame(message: Any, limits: FrameLimits) -> Frame:
    """A CompressedImage's JPEG or PNG, byte for byte."""
    data = _as_bytes(message.data)
    if data.startswith(JPEG_MAGIC):
        ext, content_type = "jpg", "image/jpeg"
    elif data.startswith(PNG_MAGIC):
        ext, content_type = "png", "image/png"
    else:
        raise SkipFrame("unsupported_format", f"format {message.format!r}: neither JPEG nor PNG by its magic bytes")
    if len(data) > limits.max_bytes:
        raise SkipFrame("too_large_bytes", f"{len(data)} bytes exceeds the limit of {limits.max_bytes} bytes")
    try:
        width, height = image_size(data, ext)
    except ValueError as exc:
        raise SkipFrame("malformed", f"unreadable {ext} header: {exc}") from None
    if width * height > limits.max_pixels:
        raise SkipFrame("too_many_pixels", f"{width}x{height} exceeds the limit of {limits.max_pixels} pixels")
    return Frame(data, ext, content_type, (width, height))


def _bayer_code(encoding: str) -> int:
    import cv2

    # OpenCV's two-letter Bayer names are shifted by one pixel against ROS's (ROS rggb is COLOR_BayerBG2BGR);
    # OpenCV 5's four-letter aliases name the pattern from the top-left pixel as ROS does.
    pattern = encoding[len("bayer_"):len("bayer_") + 4].upper()
    return getattr(cv2, f"COLOR_Bayer{pattern}2BGR")


def raw_frame(message: Any, limits: FrameLimits) -> Frame:
    """An Image as a lossless PNG (cv2 writes BGR order, 8 or 16 bits per sample)."""
    import cv2
    import numpy as np

    encoding = str(message.encoding).lower()
    if encoding not in RAW_ENCODINGS:
        raise SkipFrame("unknown_encoding", f"encoding {message.encoding!r} is not one of {', '.join(RAW_ENCODINGS)}")
    width, height, step = int(message.width), int(message.height), int(message.step)
    if width == 0 or height == 0:
        raise SkipFrame("malformed", f"{width}x{height} image")
    if width * height > limits.max_pixels:
        raise SkipFrame("too_many_pixels", f"{width}x{height} exceeds the limit of {limits.max_pixels} pixels")
    sample, channels = RAW_ENCODINGS[encoding]
    row = width * sample * channels
    data = message.data
    buffer = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if step < row or buffer.size < step * height:
        raise SkipFrame("malformed", f"{buffer.size} data bytes with step {step} for {width}x{height} {encoding}")
    rows = buffer[: step * height].reshape(height, step)[:, :row]
    if sample == 2:
        big = bool(message.is_bigendian)
        pixels = np.ascontiguousarray(rows).view(">u2" if big else "<u2").astype(np.uint16, copy=False)
    else:
        pixels = rows
    pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    if encoding.startswith("bayer_"):
        image = cv2.cvtColor(np.ascontiguousarray(pixels), _bayer_code(encoding))
    elif encoding == "rgb8":
        image = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        image = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    else:  # bgr8, bgra8, mono8, mono16: already in cv2's order
        image = np.ascontiguousarray(pixels)
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - cv2 encodes every array shape built above
        raise SkipFrame("malformed", f"PNG encoding of a {width}x{height} {encoding} image failed")
    body = encoded.tobytes()
    if len(body) > limits.max_bytes:
        raise SkipFrame("too_large_bytes", f"{len(body)} bytes as PNG exceeds the limit of {limits.max_bytes} bytes")
    return Frame(body, "png", "image/png", (width, height))


# -------------------------------------------------------------------------------------------------------- extractor


@dataclass(frozen=True)
class CameraConfig:
    name: str
    rate_hz: float | None = None


@dataclass(frozen=True)
class ExtractOptions:
    """``cameras``: topic -> camera (None: every image topic, names derived from the topics)."""

    cameras: Mapping[str, CameraConfig] | None = None
    rate_hz: float | None = None  # for cameras without their own
    limits: FrameLimits = field(default_factory=FrameLimits)
    progress_seconds: float = 10.0


@dataclass
class _Camera:
    name: str
    topic: str
    rate_hz: float | None
    msgtype: str | None = None
    messages_read: int = 0
    messages_lost: int = 0
    extracted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    stamps_from_log_time: int = 0
    bytes_written: int = 0
    first: int | None = None
    last: int | None = None
    max_seen: int | None = None
    last_kept: int | None = None
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_STAMPS))
    recent_set: set[int] = field(default_factory=set)

    def remember(self, stamp: int) -> None:
        if len(self.recent) == self.recent.maxlen:
            self.recent_set.discard(self.recent[0])
        self.recent.append(stamp)
        self.recent_set.add(stamp)

    def document(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "type": self.msgtype, "rate_hz": self.rate_hz,
            "messages": self.messages_read + self.messages_lost, "messages_read": self.messages_read,
            "messages_lost": self.messages_lost, "extracted": self.extracted,
            "skipped": dict(sorted(self.skipped.items())),
            "out_of_order": self.out_of_order, "stamps_from_log_time": self.stamps_from_log_time,
            "first_stamp": None if self.first is None else stamp_text(self.first),
            "last_stamp": None if self.last is None else stamp_text(self.last),
            "bytes_written": self.bytes_written,
        }


def _stamp_ns(message: Any) -> int:
    stamp = message.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class DriveExtractor:
    """Extracts the frames of one drive's logs into a sink and builds its manifest."""

    def __init__(self, drive: DriveId, sink: FrameSink, options: ExtractOptions | None = None) -> None:
        self.drive, self.sink = drive, sink
        self.options = options or ExtractOptions()
        self.cameras: dict[str, _Camera] = {}  # by topic
        self.names: set[str] = set()
        self.problems: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.topics: dict[str, dict[str, Any]] = {}
        self.metadata = {DRIVE_ID_METADATA: str(drive)}
        self._started = time.monotonic()
        self._next_progress = self._started + self.options.progress_seconds

    # which topics are cameras
    def _wanted(self, topic: str, msgtype: str | None) -> bool:
        if topic in self.cameras:
            return True
        configured = self.options.cameras
        if configured is not None:
            config = configured.get(topic)
            if config is None:
                return False
            name = config.name
        elif msgtype in IMAGE_TYPES:
            config, name = None, camera_name_for_topic(topic)
            if name in self.names:
                unique = _sanitise(name + "-" + "-".join(p for p in topic.split("/") if p)[len(name):].strip("-"))
                while unique in self.names:
                    unique += "_"
                self.problems.append({"kind": "camera_name_collision", "log": None, "topic": topic, "offset": None,
                                      "messages_lost": 0, "detail": f"{topic} derives the camera name {name!r} of "
                                      f"another topic; its frames go to {unique!r}"})
                name = unique
        else:
            return False
        rate = config.rate_hz if config is not None and config.rate_hz is not None else self.options.rate_hz
        self.cameras[topic] = _Camera(name, topic, rate, msgtype)
        self.names.add(name)
        return True

    def extract(self, logs: Sequence[DriveLog]) -> dict[str, Any]:
        """Reads each log in turn (a split drive's files in order) and returns the validated manifest."""
        if self.options.cameras is not None:
            for topic in self.options.cameras:
                self._wanted(topic, None)
        for log in logs:
            LOG.info("drive %s: reading %s (%s, %d bytes)", self.drive, log.name, log.format, log.size_bytes)
            for message in log.messages(self._wanted):
                self._handle(self.cameras[message.topic], message)
                self._progress(log)
            for topic, count in log.lost.items():
                if topic in self.cameras:
                    self.cameras[topic].messages_lost += count
            for topic in sorted(set(log.topic_types) | set(log.topic_counts)):
                entry = self.topics.setdefault(topic, {"name": topic, "type": None, "messages": 0, "camera": None})
                entry["type"] = entry["type"] or log.topic_types.get(topic)
                entry["messages"] += log.topic_counts.get(topic, 0)  # the index's count, else what was read
            self.problems.extend(log.problems)
            self.logs.append({"name": log.name, "size_bytes": log.size_bytes, "format": log.format,
                              "library": log.library, "messages_read": log.messages_read,
                              "complete": log.complete})
        return self.manifest()

    def _skip(self, camera: _Camera, reason: str) -> None:
        camera.skipped[reason] += 1

    def _handle(self, camera: _Camera, message: LogMessage) -> None:
        camera.messages_read += 1
        camera.msgtype = camera.msgtype or message.msgtype
        if message.msgtype not in IMAGE_TYPES:
            return self._skip(camera, "not_an_image")
        try:
            decoded = message.decode()
        except UnsupportedMessageEncoding:
            return self._skip(camera, "unsupported_message_encoding")
        except Exception as exc:
            LOG.debug("%s: undecodable message: %s", message.topic, exc)
            return self._skip(camera, "undecodable")
        try:
            stamp = _stamp_ns(decoded)
        except Exception:
            return self._skip(camera, "undecodable")
        if stamp <= 0:
            stamp = message.log_time
            camera.stamps_from_log_time += 1
        if camera.max_seen is not None and stamp < camera.max_seen:
            camera.out_of_order += 1
        camera.max_seen = stamp if camera.max_seen is None else max(camera.max_seen, stamp)
        camera.first = stamp if camera.first is None else min(camera.first, stamp)
        camera.last = stamp if camera.last is None else max(camera.last, stamp)
        if stamp in camera.recent_set:
            return self._skip(camera, "duplicate_stamp")
        if camera.rate_hz and camera.last_kept is not None and stamp - camera.last_kept < 1e9 / camera.rate_hz:
            return self._skip(camera, "rate_limited")
        try:
            if message.msgtype == COMPRESSED_IMAGE_TYPE:
                frame = compressed_frame(decoded, self.options.limits)
            else:
                frame = raw_frame(decoded, self.options.limits)
        except SkipFrame as skip:
            LOG.debug("%s @ %s: %s", message.topic, stamp, skip)
            return self._skip(camera, skip.reason)
        key = frame_key(self.drive.vehicle, camera.name, stamp, frame.ext)
        if not self.sink.put_frame(key, frame.body, frame.content_type, self.metadata):
            return self._skip(camera, "key_exists")
        camera.extracted += 1
        camera.bytes_written += len(frame.body)
        camera.last_kept = stamp
        camera.remember(stamp)
        return None

    def _progress(self, log: DriveLog) -> None:
        now = time.monotonic()
        if now < self._next_progress:
            return
        self._next_progress = now + self.options.progress_seconds
        extracted = sum(c.extracted for c in self.cameras.values())
        read = sum(c.messages_read for c in self.cameras.values())
        LOG.info("drive %s: %s: %d camera messages read, %d frames extracted (%.1f frames/s)", self.drive,
                 log.name, read, extracted, extracted / max(now - self._started, 1e-9))

    def manifest(self) -> dict[str, Any]:
        cameras = {c.name: c.document() for c in self.cameras.values()}
        for topic, camera in self.cameras.items():
            if topic in self.topics:
                self.topics[topic]["camera"] = camera.name
            elif self.options.cameras is not None:
                self.problems.append({"kind": "camera_topic_missing", "log": None, "topic": topic, "offset": None,
                                      "messages_lost": 0, "detail": f"configured camera topic {topic} is in no log"})
        if not self.cameras:
            found = ", ".join(f"{t['name']} ({t['type']})" for t in self.topics.values()) or "none"
            self.problems.append({"kind": "no_image_topics", "log": None, "topic": None, "offset": None,
                                  "messages_lost": 0, "detail": f"no sensor_msgs Image or CompressedImage topic; "
                                  f"topics found: {found}"})
        stamps = [(c.first, c.last) for c in self.cameras.values() if c.first is not None]
        time_range = None
        if stamps:
            start, end = min(s for s, _ in stamps), max(e for _, e in stamps)
            time_range = {"start": stamp_text(start), "end": stamp_text(end), "start_ns": start, "end_ns": end}
        skipped: Counter[str] = Counter()
        for camera in self.cameras.values():
            skipped.update(camera.skipped)
        partial = any(p["messages_lost"] is None or p["messages_lost"] > 0 for p in self.problems)
        status = "no_image_topics" if not self.cameras else "partial" if partial else "complete"
        options = self.options
        configured = None if options.cameras is None else {t: c.name for t, c in options.cameras.items()}
        doc = {
            "schema_version": DRIVE_MANIFEST_SCHEMA_VERSION,
            "drive_id": str(self.drive),
            "status": status,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "destination": self.sink.describe(),
            "options": {"rate_hz": options.rate_hz, "max_bytes": options.limits.max_bytes,
                        "max_pixels": options.limits.max_pixels,
                        "cameras": configured},
            "logs": self.logs,
            "topics": sorted(self.topics.values(), key=lambda t: t["name"]),
            "time_range": time_range,
            "cameras": cameras,
            "problems": self.problems,
            "totals": {
                key: sum(c[key] for c in cameras.values())
                for key in ("messages", "messages_read", "messages_lost", "extracted", "out_of_order", "bytes_written")
            } | {"skipped": dict(sorted(skipped.items()))},
        }
        return validate_drive_manifest(doc)


def extract_drive(drive: DriveId | str, logs: Sequence[Path | str], sink: FrameSink,
                  options: ExtractOptions | None = None) -> dict[str, Any]:
    """Open every log first (UnreadableLog before anything is written), then extract them in order."""
    drive_id = drive if isinstance(drive, DriveId) else DriveId.parse(drive)
    opened = [open_log(path) for path in logs]
    return DriveExtractor(drive_id, sink, options).extract(opened)


# -------------------------------------------------------------------------------------------------- command line


def logs_in(directory: Path) -> list[Path]:
    """The logs of a local input directory, in name order: *.mcap and *.bag files and ROS 2 bag directories (a
    directory holding metadata.yaml stands for its storage files)."""
    found: list[Path] = []
    for path in sorted(directory.rglob("*")):
        if path.name == "metadata.yaml":
            found.append(path.parent)
        elif path.is_file() and path.suffix in (".mcap", ".bag"):
            if not (path.parent / "metadata.yaml").is_file():
                found.append(path)
    return found


def parse_cameras(text: str) -> dict[str, CameraConfig]:
    """``{"/topic": "name"}``, ``{"/topic": {"name": "front", "rate_hz": 2}}`` or a list of topics (derived names);
    the text itself or ``@file``."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    value = json.loads(text)
    if isinstance(value, list):
        value = {topic: camera_name_for_topic(topic) for topic in value}
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object {topic: name} or a list of topics")
    cameras: dict[str, CameraConfig] = {}
    for topic, spec in value.items():
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
            raise ValueError(f"{topic}: give a camera name or {{'name': ..., 'rate_hz': ...}}")
        name = spec.get("name") or camera_name_for_topic(topic)
        if _sanitise(name) != name:
            raise ValueError(f"{topic}: camera name {name!r} must be letters, digits, '.', '_' or '-'")
        rate = spec.get("rate_hz")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"{topic}: rate_hz must be a positive number")
        cameras[topic] = CameraConfig(name, None if rate is None else float(rate))
    names = [c.name for c in cameras.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"two topics map to the same camera name: {sorted(n for n in names if names.count(n) > 1)}")
    return cameras


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m drivelogs.extract", description=__doc__.split("\n")[0])
    parser.add_argument("--drive-id", required=True, help="<vehicle>/<drive>, e.g. car-7/2026-12-03")
    parser.add_argument("--log", action="append", default=[], type=Path, help="a log file or ROS 2 bag directory "
                        "(repeat for a drive split into several files, in order)")
    parser.add_argument("--log-dir", type=Path, help="every log in this directory (the job's input)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output-dir", type=Path, help="write frames under this directory")
    target.add_argument("--bucket", help="put frames into this S3 bucket (the inference bucket)")
    parser.add_argument("--manifest", required=True, type=Path, help="where to write the drive manifest (JSON)")
    parser.add_argument("--cameras-json", help='{"/topic": "name" | {"name": ..., "rate_hz": ...}} or @file')
    parser.add_argument("--rate-hz", type=float, help="keep at most this many frames per second per camera")
    parser.add_argument("--max-bytes", type=int, default=FrameLimits.max_bytes)
    parser.add_argument("--max-pixels", type=int, default=FrameLimits.max_pixels)
    parser.add_argument("--progress-seconds", type=float, default=10.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)

    def usage(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    try:
        drive = DriveId.parse(args.drive_id)
    except DriveKeyError as exc:
        return usage(str(exc))
    paths = list(args.log)
    if args.log_dir is not None:
        if not args.log_dir.is_dir():
            return usage(f"--log-dir {args.log_dir}: not a directory")
        paths += logs_in(args.log_dir)
    if not paths:
        return usage("no logs: give --log PATH or a --log-dir with *.mcap, *.bag or ROS 2 bag directories")
    if args.rate_hz is not None and not args.rate_hz > 0:
        return usage(f"--rate-hz must be positive, got {args.rate_hz}")
    if args.max_bytes <= 0 or args.max_pixels <= 0:
        return usage("--max-bytes and --max-pixels must be positive")
    try:
        cameras = parse_cameras(args.cameras_json) if args.cameras_json else None
    except (OSError, ValueError) as exc:
        return usage(f"--cameras-json: {exc}")
    try:
        logs = [open_log(path) for path in paths]
    except UnreadableLog as exc:
        return usage(str(exc))
    sink: FrameSink = LocalDirectorySink(args.output_dir) if args.output_dir else S3Sink(args.bucket)
    options = ExtractOptions(cameras=cameras, rate_hz=args.rate_hz,
                             limits=FrameLimits(args.max_bytes, args.max_pixels),
                             progress_seconds=args.progress_seconds)
    started = time.monotonic()
    try:
        manifest = DriveExtractor(drive, sink, options).extract(logs)
    except UnreadableLog as exc:
        return usage(str(exc))
    args.manifest.parent.mkdir(parents=True, exist_ok=True)
    args.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    totals, elapsed = manifest["totals"], time.monotonic() - started
    LOG.info("drive %s: %s, %d frames extracted from %d camera messages (%d skipped, %d lost) in %.1f s "
             "(%.1f frames/s); manifest %s", drive, manifest["status"], totals["extracted"], totals["messages"],
             sum(totals["skipped"].values()), totals["messages_lost"], elapsed,
             totals["extracted"] / max(elapsed, 1e-9), args.manifest)
    for problem in manifest["problems"]:
        LOG.warning("%s: %s: %s", problem["log"] or "drive", problem["kind"], problem["detail"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
