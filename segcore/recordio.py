"""Read and write the Semantic Segmentation algorithm's probability output without MXNet or generated code.

With ``Accept: application/x-recordio-protobuf`` the endpoint answers with MXNet RecordIO framing around a
SageMaker ``aialgs.data.Record`` protobuf message holding two features: ``target`` (Float32Tensor, the
class probabilities flattened in (1, C, H, W) order) and ``shape`` (Int32Tensor, ``[1, C, H, W]``). The SDK
v3 deserializer for it is broken and ``record_pb2`` is no longer shipped, so both layers are decoded here
by hand: standard library and numpy only.

RecordIO framing (dmlc-core ``recordio.h``), all words little-endian::

    uint32 magic 0xced7230a | uint32 lrec (cflag << 29 | length) | payload (length bytes) | zero pad to 4

``cflag`` 0 is a whole record. A writer splits a payload at every 4-byte-aligned occurrence of the magic
word (so a reader that lost sync can find the next header): the first part has cflag 1, middle parts 2,
the last 3, and the reader joins the parts with the magic word put back between them.

Protobuf messages (proto2, field numbers as in SageMaker's ``record.proto``)::

    Record        { map<string, Value> features = 1; map<string, Value> label = 2; }
    Value         { oneof { Float32Tensor float32_tensor = 2; Float64Tensor float64_tensor = 3;
                            Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
    Float32Tensor { repeated float  values = 1 [packed]; repeated uint64 keys = 2 [packed];
                    repeated uint64 shape = 3 [packed]; }      # Float64Tensor / Int32Tensor alike
    Bytes         { repeated bytes value = 1; optional string content_type = 2; }

The reader accepts packed and unpacked repeated fields (as every protobuf parser must) and skips unknown
fields. Every malformed input raises :class:`RecordIOError` saying what is wrong and at which byte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
MAX_PART_BYTES = (1 << LENGTH_BITS) - 1
CFLAG_WHOLE, CFLAG_START, CFLAG_MIDDLE, CFLAG_END = 0, 1, 2, 3
CONTENT_TYPE = "application/x-recordio-protobuf"

# Protobuf wire types.
_VARINT, _FIXED64, _LEN, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5
_VALUE_FIELDS = {2: "float32", 3: "float64", 7: "int32"}  # Value oneof field number -> tensor dtype
_VALUE_FIELD_OF = {v: k for k, v in _VALUE_FIELDS.items()}
_BYTES_FIELD = 9
_FLOAT_WIDTH = {"float32": ("<f4", 4, _FIXED32), "float64": ("<f8", 8, _FIXED64)}
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

BytesLike = bytes | bytearray | memoryview


class RecordIOError(ValueError):
    """The data is not valid RecordIO-wrapped Record protobuf; the message says what and at which byte."""


@dataclass(frozen=True)
class Tensor:
    """One Float32Tensor, Float64Tensor or Int32Tensor: flat values, optional sparse keys and shape."""

    dtype: str  # "float32", "float64" or "int32"
    values: np.ndarray
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.dtype not in _VALUE_FIELD_OF:
            raise ValueError(f"tensor dtype {self.dtype!r} is not one of {', '.join(_VALUE_FIELD_OF)}")

    def dense(self) -> np.ndarray:
        """The tensor as a numpy array: reshaped to ``shape`` when given, scattered by ``keys`` when sparse."""
        if self.keys.size:
            if not self.shape:
                raise RecordIOError(f"sparse {self.dtype} tensor has {self.keys.size} keys but no shape")
            size = int(np.prod(self.shape))
            if self.keys.size != self.values.size:
                raise RecordIOError(f"sparse tensor has {self.keys.size} keys but {self.values.size} values")
            if int(self.keys.max()) >= size:
                raise RecordIOError(f"sparse tensor key {int(self.keys.max())} is outside its shape {self.shape}")
            out = np.zeros(size, dtype=self.values.dtype)
            out[self.keys.astype(np.int64)] = self.values
            return out.reshape(self.shape)
        if self.shape:
            if int(np.prod(self.shape)) != self.values.size:
                raise RecordIOError(f"tensor shape {self.shape} needs {int(np.prod(self.shape))} values, "
                                    f"it has {self.values.size}")
            return self.values.reshape(self.shape)
        return self.values


@dataclass(frozen=True)
class BytesValue:
    """The ``Bytes`` member of ``Value``: raw byte strings and an optional content type."""

    values: tuple[bytes, ...]
    content_type: str | None = None


Feature = Tensor | BytesValue


@dataclass(frozen=True)
class Record:
    """One decoded ``aialgs.data.Record``; ``offset`` is where its RecordIO header starts in the stream."""

    features: dict[str, Feature]
    label: dict[str, Feature] = field(default_factory=dict)
    offset: int = 0


# ------------------------------------------------------------------------------------------ RecordIO


def iter_recordio(data: BytesLike) -> Iterator[tuple[int, BytesLike]]:
    """Yield ``(offset, payload)`` per logical record; multi-part records come back joined."""
    for offset, payload, _ in _iter_parts(data):
        yield offset, payload


def _iter_parts(data: BytesLike) -> Iterator[tuple[int, BytesLike, int]]:
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    size, pos = len(view), 0
    while pos < size:
        start, parts = pos, []
        while True:
            if size - pos < 8:
                where = "record header" if not parts else f"next part of the record started at byte {start}"
                raise RecordIOError(
                    f"truncated input: {size - pos} byte(s) at byte {pos} where a {where} (8 bytes) should be"
                )
            magic, lrec = struct.unpack_from("<II", view, pos)
            if magic != MAGIC:
                raise RecordIOError(
                    f"bad RecordIO magic 0x{magic:08x} at byte {pos} (expected 0x{MAGIC:08x}): not RecordIO data, "
                    "or the length of the record before it is wrong"
                )
            cflag, length = lrec >> LENGTH_BITS, lrec & MAX_PART_BYTES
            if cflag > CFLAG_END:
                raise RecordIOError(f"invalid continuation flag {cflag} in the header at byte {pos} (valid: 0..3)")
            if not parts and cflag in (CFLAG_MIDDLE, CFLAG_END):
                raise RecordIOError(
                    f"header at byte {pos} continues a multi-part record (cflag {cflag}) but no record was "
                    "started with cflag 1"
                )
            if parts and cflag in (CFLAG_WHOLE, CFLAG_START):
                raise RecordIOError(
                    f"multi-part record started at byte {start} is unfinished: the header at byte {pos} has "
                    f"cflag {cflag}, expected 2 (middle) or 3 (end)"
                )
            body, padded = pos + 8, (length + 3) & ~3
            if body + length > size:
                raise RecordIOError(
                    f"truncated input: the header at byte {pos} announces a {length}-byte payload but only "
                    f"{size - body} byte(s) follow"
                )
            if body + padded > size:
                raise RecordIOError(
                    f"truncated input: the {length}-byte payload at byte {body} lacks its {padded - length} "
                    f"padding byte(s) (payloads are padded to a multiple of 4)"
                )
            parts.append(view[body : body + length])
            pos = body + padded
            if cflag in (CFLAG_WHOLE, CFLAG_END):
                break
        yield start, parts[0] if len(parts) == 1 else MAGIC_BYTES.join(bytes(p) for p in parts), len(parts)


def read_recordio(data: BytesLike) -> list[bytes]:
    """Every record's payload, as bytes."""
    return [bytes(payload) for _, payload in iter_recordio(data)]


def write_recordio(payloads: Iterable[BytesLike]) -> bytes:
    """Frame payloads as dmlc-core's RecordIOWriter does, splitting at 4-byte-aligned magic words."""
    out = bytearray()
    for payload in payloads:
        data = bytes(payload)
        words = np.frombuffer(data, dtype="<u4", count=len(data) // 4)
        cuts = (np.flatnonzero(words == MAGIC) * 4).tolist()
        pieces, begin = [], 0
        for cut in cuts:
            pieces.append(data[begin:cut])
            begin = cut + 4
        pieces.append(data[begin:])
        for n, piece in enumerate(pieces):
            if len(piece) > MAX_PART_BYTES:
                raise ValueError(f"a RecordIO part holds at most {MAX_PART_BYTES} bytes, this one {len(piece)}")
            if len(pieces) == 1:
                cflag = CFLAG_WHOLE
            else:
                cflag = CFLAG_START if n == 0 else CFLAG_END if n == len(pieces) - 1 else CFLAG_MIDDLE
            out += struct.pack("<II", MAGIC, (cflag << LENGTH_BITS) | len(piece))
            out += piece
            out += b"\0" * (-len(piece) % 4)
    return bytes(out)


# ------------------------------------------------------------------------------ protobuf wire format


class _ProtoError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos, self.message = pos, message


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _ProtoError(start, f"truncated varint ({pos - start} byte(s) before the end of its message)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _ProtoError(start, "varint longer than 10 bytes")


def _fields(buf: memoryview, pos: int, end: int, message: str) -> Iterator[tuple[int, int, Any, int]]:
    """Yield ``(field_number, wire_type, value, field_offset)``; LEN values are ``(start, end)`` offsets."""
    while pos < end:
        at = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _ProtoError(at, f"{message}: field number 0 is invalid (corrupt data)")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise _ProtoError(at, f"{message}: field {number} needs {width} bytes, {end - pos} remain")
            value, pos = buf[pos : pos + width], pos + width
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _ProtoError(
                    at, f"{message}: field {number} announces {length} bytes but only {end - pos} remain "
                    "(truncated or corrupt)"
                )
            value, pos = (pos, pos + length), pos + length
        elif wire in (_START_GROUP, _END_GROUP):
            raise _ProtoError(at, f"{message}: field {number} uses the deprecated group encoding (not a Record)")
        else:
            raise _ProtoError(at, f"{message}: field {number} has invalid wire type {wire} (corrupt data)")
        yield number, wire, value, at


def _packed_varints(buf: memoryview, start: int, end: int) -> list[int]:
    values, pos = [], start
    while pos < end:
        value, pos = _varint(buf, pos, end)
        values.append(value)
    return values


def _as_int32(value: int) -> int:
    value &= 0xFFFFFFFF  # int32 is sign-extended to 64 bits on the wire
    return value - (1 << 32) if value >= 1 << 31 else value


def _parse_tensor(buf: memoryview, start: int, end: int, dtype: str) -> Tensor:
    chunks: list[np.ndarray] = []
    keys: list[int] = []
    shape: list[int] = []
    what = f"{dtype} tensor"
    for number, wire, value, at in _fields(buf, start, end, what):
        if number == 1:
            if dtype == "int32":
                if wire == _LEN:
                    ints = [_as_int32(v) for v in _packed_varints(buf, *value)]
                elif wire == _VARINT:
                    ints = [_as_int32(value)]
                else:
                    raise _ProtoError(at, f"{what}: values field has wire type {wire}, expected varint or packed")
                chunks.append(np.asarray(ints, dtype=np.int32))
            else:
                numpy_type, width, scalar_wire = _FLOAT_WIDTH[dtype]
                if wire == _LEN:
                    lo, hi = value
                    if (hi - lo) % width:
                        raise _ProtoError(at, f"{what}: packed values are {hi - lo} bytes, not a multiple of {width}")
                    chunks.append(np.frombuffer(buf[lo:hi], dtype=numpy_type))
                elif wire == scalar_wire:
                    chunks.append(np.frombuffer(value, dtype=numpy_type))
                else:
                    raise _ProtoError(at, f"{what}: values field has wire type {wire}, expected {scalar_wire} "
                                          "or packed")
        elif number in (2, 3):
            target = keys if number == 2 else shape
            if wire == _LEN:
                target.extend(_packed_varints(buf, *value))
            elif wire == _VARINT:
                target.append(value)
            else:
                name = "keys" if number == 2 else "shape"
                raise _ProtoError(at, f"{what}: {name} field has wire type {wire}, expected varint or packed")
    out_type = {"float32": np.float32, "float64": np.float64, "int32": np.int32}[dtype]
    if not chunks:
        values = np.zeros(0, dtype=out_type)
    elif len(chunks) == 1:
        values = chunks[0].astype(out_type)  # copy: never keep a view into the caller's buffer
    else:
        values = np.concatenate(chunks).astype(out_type, copy=False)
    return Tensor(dtype, values, np.asarray(keys, dtype=np.uint64), tuple(shape))


def _parse_bytes(buf: memoryview, start: int, end: int) -> BytesValue:
    values: list[bytes] = []
    content_type = None
    for number, wire, value, at in _fields(buf, start, end, "Bytes value"):
        if number in (1, 2):
            if wire != _LEN:
                raise _ProtoError(at, f"Bytes value: field {number} has wire type {wire}, expected length-delimited")
            raw = bytes(buf[value[0] : value[1]])
            if number == 1:
                values.append(raw)
            else:
                content_type = _utf8(raw, value[0], "Bytes content_type")
    return BytesValue(tuple(values), content_type)


def _utf8(raw: bytes, pos: int, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _ProtoError(pos, f"{what} is not UTF-8 ({exc.reason})") from None


def _parse_value(buf: memoryview, start: int, end: int, name: str) -> Feature | None:
    found: Feature | None = None
    for number, wire, value, at in _fields(buf, start, end, f"value of '{name}'"):
        if number in _VALUE_FIELDS or number == _BYTES_FIELD:
            if wire != _LEN:
                raise _ProtoError(at, f"value of '{name}': field {number} has wire type {wire}, expected a message")
            if number == _BYTES_FIELD:
                found = _parse_bytes(buf, *value)
            else:
                found = _parse_tensor(buf, *value, _VALUE_FIELDS[number])  # oneof: the last member wins
    return found


def _parse_map_entry(buf: memoryview, start: int, end: int, map_name: str) -> tuple[str, Feature | None]:
    key, value_span = "", None
    for number, wire, value, at in _fields(buf, start, end, f"{map_name} entry"):
        if number in (1, 2) and wire != _LEN:
            raise _ProtoError(at, f"{map_name} entry: field {number} has wire type {wire}, expected length-delimited")
        if number == 1:
            key = _utf8(bytes(buf[value[0] : value[1]]), value[0], f"{map_name} key")
        elif number == 2:
            value_span = value
    return key, (None if value_span is None else _parse_value(buf, *value_span, key))


def parse_record(payload: BytesLike, offset: int = 0, single_part: bool = True) -> Record:
    """Decode one ``Record`` protobuf message: the payload of the RecordIO record whose header is at ``offset``.

    Error messages name the byte within the payload and, for single-part records (whose payload is one
    contiguous run starting 8 bytes after the header), the byte within the whole stream.
    """
    buf = memoryview(payload).cast("B") if not isinstance(payload, bytes) else memoryview(payload)
    features: dict[str, Feature] = {}
    label: dict[str, Feature] = {}
    try:
        for number, wire, value, at in _fields(buf, 0, len(buf), "Record"):
            if number in (1, 2):
                map_name = "features" if number == 1 else "label"
                if wire != _LEN:
                    raise _ProtoError(at, f"Record: {map_name} field has wire type {wire}, expected a map entry")
                key, feature = _parse_map_entry(buf, *value, map_name)
                if feature is not None:
                    (features if number == 1 else label)[key] = feature
    except _ProtoError as exc:
        where = f"payload byte {exc.pos}" + (f", stream byte {offset + 8 + exc.pos}" if single_part else "")
        raise RecordIOError(f"record at byte {offset}: {exc.message} ({where})") from None
    return Record(features, label, offset)


def decode_records(data: BytesLike) -> list[Record]:
    """Every Record of a RecordIO stream, in order."""
    return [parse_record(payload, offset, parts == 1) for offset, payload, parts in _iter_parts(data)]


# ------------------------------------------------------------------------------------------- writer


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # negative int32/int64: ten bytes, two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _len_field(number: int, body: bytes) -> bytes:
    return _key(number, _LEN) + _encode_varint(len(body)) + body


def _encode_tensor(tensor: Tensor) -> bytes:
    body = b""
    values = np.asarray(tensor.values).reshape(-1)
    if values.size:
        if tensor.dtype == "int32":
            packed = b"".join(_encode_varint(int(v)) for v in values.tolist())
        else:
            packed = values.astype(_FLOAT_WIDTH[tensor.dtype][0]).tobytes()
        body += _len_field(1, packed)
    for number, ints in ((2, np.asarray(tensor.keys).reshape(-1).tolist()), (3, list(tensor.shape))):
        if ints:
            if any(i < 0 for i in ints):
                raise ValueError(f"tensor keys and shape are unsigned, got {ints}")
            body += _len_field(number, b"".join(_encode_varint(int(i)) for i in ints))
    return body


def as_feature(value: Any) -> Feature:
    """A Tensor/BytesValue from a numpy array (float32, float64, integer), bytes, or a feature object."""
    if isinstance(value, (Tensor, BytesValue)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return BytesValue((bytes(value),))
    array = np.asarray(value)
    if array.dtype == np.float32:
        return Tensor("float32", array.reshape(-1))
    if array.dtype == np.float64:
        return Tensor("float64", array.reshape(-1))
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        ints = array.astype(np.int64).reshape(-1)
        if ints.size and (ints.min() < _INT32_MIN or ints.max() > _INT32_MAX):
            raise ValueError("integer feature values must fit int32")
        return Tensor("int32", ints.astype(np.int32))
    raise ValueError(f"cannot encode a {array.dtype} array as a Record feature (use float32, float64 or int)")


def _encode_value(feature: Feature) -> bytes:
    if isinstance(feature, BytesValue):
        body = b"".join(_len_field(1, v) for v in feature.values)
        if feature.content_type is not None:
            body += _len_field(2, feature.content_type.encode("utf-8"))
        return _len_field(_BYTES_FIELD, body)
    return _len_field(_VALUE_FIELD_OF[feature.dtype], _encode_tensor(feature))


def serialize_record(features: Mapping[str, Any], label: Mapping[str, Any] | None = None) -> bytes:
    """One ``Record`` message: map entries in the mappings' order, features before label."""
    out = bytearray()
    for number, mapping in ((1, features), (2, label or {})):
        for name, value in mapping.items():
            entry = _len_field(1, name.encode("utf-8")) + _len_field(2, _encode_value(as_feature(value)))
            out += _len_field(number, entry)
    return bytes(out)


def encode_records(records: Iterable[Mapping[str, Any] | Record]) -> bytes:
    """A RecordIO stream of Records; each item is a Record or a mapping of feature name to value."""
    payloads = []
    for record in records:
        if isinstance(record, Record):
            payloads.append(serialize_record(record.features, record.label))
        else:
            payloads.append(serialize_record(record))
    return write_recordio(payloads)


def encode_probabilities(*maps: np.ndarray) -> bytes:
    """What the endpoint returns for ``(C, H, W)`` probability maps: one record each, target + shape."""
    records = []
    for probs in maps:
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 3:
            raise ValueError(f"probabilities must be (num_classes, H, W), got shape {probs.shape}")
        records.append({"target": probs.reshape(-1), "shape": np.asarray([1, *probs.shape], dtype=np.int32)})
    return encode_records(records)


# ------------------------------------------------------------------------------------ probabilities


def probabilities_from_record(record: Record) -> np.ndarray:
    """``(num_classes, H, W)`` float32 from the ``target`` values and the ``shape`` feature."""
    where = f"record at byte {record.offset}"
    target = record.features.get("target")
    if not isinstance(target, Tensor) or target.dtype == "int32":
        present = ", ".join(sorted(record.features)) or "none"
        raise RecordIOError(f"{where} has no float 'target' tensor (features present: {present})")
    shape_feature = record.features.get("shape")
    if isinstance(shape_feature, Tensor):
        raw_shape = shape_feature.dense().reshape(-1)
        if raw_shape.size and not np.all(np.equal(np.mod(raw_shape, 1), 0)):
            raise RecordIOError(f"{where}: 'shape' holds non-integer values {raw_shape.tolist()}")
        shape = [int(v) for v in raw_shape.tolist()]
    elif shape_feature is None and target.shape:
        shape = list(target.shape)
    else:
        raise RecordIOError(f"{where} has no int32 'shape' feature and its target tensor carries no shape")
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]  # the algorithm reports (1, C, H, W): drop the batch axis
    if len(shape) != 3 or min(shape) < 1:
        raise RecordIOError(f"{where}: shape {shape} is not (num_classes, H, W) or (1, num_classes, H, W)")
    values = Tensor(target.dtype, target.values, target.keys, target.shape if target.keys.size else ()).dense()
    expected = shape[0] * shape[1] * shape[2]
    if values.size != expected:
        raise RecordIOError(
            f"{where}: shape {shape} needs {expected} target values but the tensor holds {values.size} "
            "(truncated or mismatched output)"
        )
    return values.reshape(shape).astype(np.float32, copy=False)


def decode_probability_maps(data: BytesLike) -> list[np.ndarray]:
    """One ``(num_classes, H, W)`` array per record of the stream."""
    return [probabilities_from_record(record) for record in decode_records(data)]


def decode_probabilities(data: BytesLike) -> np.ndarray:
    """The ``(num_classes, H, W)`` float32 probabilities of a one-image response."""
    records = decode_records(data)
    if len(records) != 1:
        raise RecordIOError(
            f"expected one record (one image) but the data holds {len(records)}"
            + ("" if records else f" ({len(data)} bytes)")
            + ("; use decode_probability_maps for several" if len(records) > 1 else "")
        )
    return probabilities_from_record(records[0])


def argmax_mask(probs: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` class-index mask: the most probable class per pixel (ties: the lowest index)."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"probabilities must be (num_classes, H, W), got shape {probs.shape}")
    if probs.shape[0] > 256:
        raise ValueError(f"{probs.shape[0]} classes do not fit a uint8 mask (at most 256)")
    return np.argmax(probs, axis=0).astype(np.uint8)
