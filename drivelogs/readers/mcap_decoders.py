"""Decoders for an MCAP channel's messages by its message encoding and schema: ROS 2 ``cdr`` (mcap-ros2-support),
ROS 1 ``ros1`` with a ``ros1msg`` schema (what ``mcap convert`` writes; rosbags' ROS 1 deserialiser with the types
the schema defines, so the messages look like those of a ROS 1 bag), ``protobuf`` (mcap-protobuf-support: Foxglove's
schemas and any other) and ``json`` for the Foxglove schemas (``foxglove.CompressedImage``, ``foxglove.RawImage``:
their ``bytes`` fields are base64 in JSON). Anything else has no decoder (``None``): the reader reports the topic's
messages as ``unsupported_message_encoding``.

A ROS 2 bag recorded with ``--compression-mode message`` stores each message's CDR bytes as one zstd frame; only its
``metadata.yaml`` says so, and a split bag's MCAP files are read without it. A CDR payload starts with its
encapsulation header (``00 0x``), a zstd frame with the magic ``28 B5 2F FD``: such a payload is decompressed
(zstandard) before it is decoded (``McapDecoders.decompress``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from drivelogs.readers.log import library_version

Decoder = Callable[[bytes], Any]
# Foxglove JSON schemas' fields of type bytes (base64 strings in the message).
FOXGLOVE_JSON_BYTES = {"foxglove.CompressedImage": ("data",), "foxglove.RawImage": ("data",)}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes (RFC 8878); a CDR payload starts with 00


def zstd_compressed(data: bytes) -> bool:
    """Whether a message payload is a zstd frame (rosbag2's per-message compression) rather than CDR bytes."""
    return bytes(data[:4]) == ZSTD_MAGIC


def _namespace(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_namespace(v) for v in value]
    return value


def foxglove_json_decoder(schema_name: str) -> Decoder:
    """A Foxglove JSON message as attributes (``message.timestamp.sec``), its bytes fields base64-decoded."""
    byte_fields = FOXGLOVE_JSON_BYTES.get(schema_name, ())

    def decode(data: bytes) -> Any:
        fields = json.loads(data)
        if not isinstance(fields, dict):
            raise ValueError(f"a JSON {type(fields).__name__}, not an object")
        for name in byte_fields:
            if name in fields:
                fields[name] = base64.b64decode(fields[name], validate=True)
        return _namespace(fields)

    return decode


class McapDecoders:
    """One decoder per (message encoding, schema); None where there is none. The libraries load on first use."""

    def __init__(self) -> None:
        self._ros2: Any = None
        self._protobuf: Any = None
        self._ros1: Any = None  # rosbags typestore holding the ros1msg schemas' types
        self._zstd: Any = None
        self.used: set[str] = set()  # the decoding libraries used, for the log's ``library``

    def library(self) -> str:
        names = ["mcap", *sorted(self.used)] if self.used else ["mcap", "mcap-ros2-support"]
        return " + ".join(f"{name} {library_version(name)}" for name in names)

    def decompress(self, data: bytes) -> bytes:
        """A message-compressed payload's CDR bytes: its one zstd frame, whole (ValueError if cut or damaged)."""
        import zstandard

        if self._zstd is None:
            self._zstd = zstandard.ZstdDecompressor()
        stream = self._zstd.decompressobj()
        try:
            out = stream.decompress(bytes(data))
        except zstandard.ZstdError as exc:
            raise ValueError(f"zstd: {exc}") from exc
        if not stream.eof:
            raise ValueError(f"zstd: the frame is cut ({len(data)} bytes, {len(out)} decompressed)")
        self.used.add("zstandard")
        return out

    def decoder_for(self, message_encoding: str, schema: Any) -> Decoder | None:
        if message_encoding == "cdr":
            return self._ros2_decoder(message_encoding, schema)
        if schema is None:
            return None
        if message_encoding == "ros1" and schema.encoding == "ros1msg":
            return self._ros1_decoder(schema)
        if message_encoding == "protobuf" and schema.encoding == "protobuf":
            return self._protobuf_decoder(message_encoding, schema)
        if message_encoding == "json" and schema.name in FOXGLOVE_JSON_BYTES:
            return foxglove_json_decoder(schema.name)
        return None

    def _ros2_decoder(self, message_encoding: str, schema: Any) -> Decoder | None:
        if self._ros2 is None:
            from mcap_ros2.decoder import DecoderFactory

            self._ros2 = DecoderFactory()
        decoder = self._ros2.decoder_for(message_encoding, schema)
        if decoder is not None:
            self.used.add("mcap-ros2-support")
        return decoder

    def _protobuf_decoder(self, message_encoding: str, schema: Any) -> Decoder | None:
        if self._protobuf is None:
            from mcap_protobuf.decoder import DecoderFactory

            self._protobuf = DecoderFactory()
        decoder = self._protobuf.decoder_for(message_encoding, schema)
        if decoder is not None:
            self.used.add("mcap-protobuf-support")
        return decoder

    def _ros1_decoder(self, schema: Any) -> Decoder | None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
        from rosbags.typesys.msg import normalize_msgtype

        if self._ros1 is None:
            self._ros1 = get_typestore(Stores.EMPTY)
        typestore = self._ros1
        msgtype = normalize_msgtype(schema.name)
        if msgtype not in typestore.fielddefs:
            types = get_types_from_msg(bytes(schema.data).decode(), msgtype)
            typestore.register({k: v for k, v in types.items() if k not in typestore.fielddefs})
        self.used.add("rosbags")

        def decode(data: bytes) -> Any:
            return typestore.deserialize_ros1(data, msgtype)

        return decode
