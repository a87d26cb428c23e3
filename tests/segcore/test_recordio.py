"""RecordIO-protobuf probability output: framing, hand-written protobuf reader/writer, error reporting."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcore.recordio import (
    MAGIC_BYTES,
    BytesValue,
    Record,
    RecordIOError,
    Tensor,
    argmax_mask,
    decode_probabilities,
    decode_probability_maps,
    decode_records,
    encode_probabilities,
    encode_records,
    iter_recordio,
    parse_record,
    read_recordio,
    serialize_record,
    write_recordio,
)

# (C=2, H=2, W=2) probabilities, all exactly representable in float32.
PROBS = np.array([[[0.25, 0.75], [0.5, 1.0]], [[0.75, 0.25], [0.5, 0.0]]], dtype=np.float32)

# The same, as the endpoint's response, assembled by hand from the wire-format rules.
HAND_BUILT = bytes.fromhex(
    # RecordIO header: magic 0xced7230a (LE), lrec = cflag 0 << 29 | length 67 (0x43)
    "0a23d7ce" "43000000"
    # Record.features (field 1, LEN) entry of 46 bytes
    "0a2e"
    "0a06" + b"target".hex()  # entry.key (field 1): "target"
    + "1224"  # entry.value (field 2): Value, 36 bytes
    + "1222"  # Value.float32_tensor (field 2): Float32Tensor, 34 bytes
    + "0a20"  # Float32Tensor.values (field 1, packed): 32 bytes = 8 floats, little-endian
    "0000803e" "0000403f" "0000003f" "0000803f"  # class 0: 0.25 0.75 / 0.5 1.0
    "0000403f" "0000803e" "0000003f" "00000000"  # class 1: 0.75 0.25 / 0.5 0.0
    # Record.features entry of 17 bytes
    "0a11"
    "0a05" + b"shape".hex()  # key "shape"
    + "1208"  # Value, 8 bytes
    + "3a06"  # Value.int32_tensor (field 7, LEN): Int32Tensor, 6 bytes
    + "0a04" "01020202"  # Int32Tensor.values packed varints: [1, 2, 2, 2]
    # payload is 67 bytes: one zero byte pads it to 68
    "00"
)


def test_hand_built_bytes_match_the_encoder_byte_for_byte():
    assert len(HAND_BUILT) == 76
    assert encode_probabilities(PROBS) == HAND_BUILT
    shape = np.array([1, 2, 2, 2], dtype=np.int32)
    assert encode_records([{"target": PROBS.reshape(-1), "shape": shape}]) == HAND_BUILT


def test_hand_built_bytes_decode_to_the_probabilities_and_mask():
    probs = decode_probabilities(HAND_BUILT)
    assert probs.dtype == np.float32 and probs.shape == (2, 2, 2)
    np.testing.assert_array_equal(probs, PROBS)
    mask = argmax_mask(probs)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[1, 0], [0, 0]])  # tie at (1, 0): the lower class index wins


def test_record_fields_are_exposed():
    (record,) = decode_records(HAND_BUILT)
    assert set(record.features) == {"target", "shape"} and record.label == {} and record.offset == 0
    shape = record.features["shape"]
    assert isinstance(shape, Tensor) and shape.dtype == "int32" and shape.values.tolist() == [1, 2, 2, 2]


def test_multi_record_stream_keeps_order_and_offsets():
    rng = np.random.default_rng(0)
    maps = [rng.random((3, 4, 5), dtype=np.float32), rng.random((2, 1, 7), dtype=np.float32), PROBS]
    data = encode_probabilities(*maps)
    decoded = decode_probability_maps(data)
    assert len(decoded) == 3
    for got, want in zip(decoded, maps):
        np.testing.assert_array_equal(got, want)
    offsets = [offset for offset, _ in iter_recordio(data)]
    assert offsets[0] == 0 and offsets == sorted(offsets) and all(o % 4 == 0 for o in offsets)
    with pytest.raises(RecordIOError, match="expected one record .* holds 3"):
        decode_probabilities(data)


def test_empty_input_is_no_record():
    assert read_recordio(b"") == []
    with pytest.raises(RecordIOError, match="holds 0"):
        decode_probabilities(b"")


def test_multi_part_record_is_joined_with_the_magic_word_put_back():
    data = (
        MAGIC_BYTES + struct.pack("<I", 1 << 29 | 4) + b"abcd"
        + MAGIC_BYTES + struct.pack("<I", 2 << 29 | 0)
        + MAGIC_BYTES + struct.pack("<I", 3 << 29 | 2) + b"ef\0\0"
        + MAGIC_BYTES + struct.pack("<I", 3) + b"xyz\0"
    )
    assert read_recordio(data) == [b"abcd" + MAGIC_BYTES + MAGIC_BYTES + b"ef", b"xyz"]
    # the writer produces exactly that framing for the same payloads
    assert write_recordio([b"abcd" + MAGIC_BYTES + MAGIC_BYTES + b"ef", b"xyz"]) == data


def test_float_values_that_look_like_the_magic_survive_a_round_trip():
    magic_float = np.frombuffer(MAGIC_BYTES, dtype="<f4")[0]
    probs = np.full((2, 3, 4), magic_float, dtype=np.float32)
    probs[0, 0, 0] = 0.5
    data = encode_probabilities(probs)
    flags = [struct.unpack_from("<I", data, o + 4)[0] >> 29 for o in range(0, len(data) - 3, 4)
             if data[o : o + 4] == MAGIC_BYTES and o + 8 <= len(data)]
    assert 1 in flags and 3 in flags  # the writer really split the payload
    np.testing.assert_array_equal(decode_probabilities(data), probs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.binary(max_size=9), st.just(MAGIC_BYTES)), max_size=6).map(b"".join),
                max_size=4))
def test_framing_round_trips_any_payload(payloads):
    data = write_recordio(payloads)
    assert len(data) % 4 == 0
    assert read_recordio(data) == payloads


def test_round_trip_of_every_value_kind_and_the_label_map():
    features = {
        "f32": Tensor("float32", np.array([1.5, -2.0], dtype=np.float32), shape=(2, 1)),
        "f64": np.array([1e300, -0.125]),
        "i32": np.array([-1, 0, 2**31 - 1, -(2**31)], dtype=np.int64),
        "sparse": Tensor("float32", np.array([7.0], dtype=np.float32), np.array([5], dtype=np.uint64), (2, 3)),
        "blob": BytesValue((b"\x00\x01", b""), "application/octet-stream"),
    }
    (record,) = decode_records(encode_records([Record(features, {"values": np.array([3], dtype=np.int32)})]))
    assert record.features["f32"].dense().tolist() == [[1.5], [-2.0]]
    assert record.features["f64"].dtype == "float64" and record.features["f64"].values.tolist() == [1e300, -0.125]
    assert record.features["i32"].values.tolist() == [-1, 0, 2**31 - 1, -(2**31)]
    assert record.features["sparse"].dense().tolist() == [[0, 0, 0], [0, 0, 7.0]]
    assert record.features["blob"] == BytesValue((b"\x00\x01", b""), "application/octet-stream")
    assert record.label["values"].values.tolist() == [3]


def test_unpacked_repeated_values_and_unknown_fields_are_accepted():
    # Float32Tensor with two unpacked floats (field 1, wire type 5) and an unknown varint field 15.
    tensor = b"\x0d" + struct.pack("<f", 0.5) + b"\x0d" + struct.pack("<f", 0.25) + b"\x78\x01"
    value = b"\x12" + bytes([len(tensor)]) + tensor
    entry = b"\x0a\x06target\x12" + bytes([len(value)]) + value
    shape_tensor = b"\x08\x01\x08\x02\x08\x01\x08\x01"  # unpacked int32 values 1, 2, 1, 1
    shape_value = b"\x3a" + bytes([len(shape_tensor)]) + shape_tensor
    shape_entry = b"\x0a\x05shape\x12" + bytes([len(shape_value)]) + shape_value
    payload = (b"\x0a" + bytes([len(entry)]) + entry + b"\x0a" + bytes([len(shape_entry)]) + shape_entry
               + b"\x1a\x03uid")  # Record.uid (field 3): ignored
    probs = decode_probabilities(write_recordio([payload]))
    assert probs.shape == (2, 1, 1) and probs.ravel().tolist() == [0.5, 0.25]


def test_shape_may_come_from_the_target_tensor_itself():
    payload = serialize_record({"target": Tensor("float32", PROBS.reshape(-1), shape=(2, 2, 2))})
    np.testing.assert_array_equal(decode_probabilities(write_recordio([payload])), PROBS)


def test_google_protobuf_agrees_with_the_hand_written_codec():
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="roadseg_test_record.proto", package="aialgs.data", syntax="proto2")
    for name, scalar in (("Float32Tensor", "TYPE_FLOAT"), ("Int32Tensor", "TYPE_INT32")):
        msg = fdp.message_type.add(name=name)
        msg.field.add(name="values", number=1, label=3, type=getattr(descriptor_pb2.FieldDescriptorProto, scalar),
                      options=descriptor_pb2.FieldOptions(packed=True))
        for field_name, number in (("keys", 2), ("shape", 3)):
            msg.field.add(name=field_name, number=number, label=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
                          options=descriptor_pb2.FieldOptions(packed=True))
    value = fdp.message_type.add(name="Value")
    value.oneof_decl.add(name="value")
    for field_name, number, type_name in (("float32_tensor", 2, "Float32Tensor"), ("int32_tensor", 7, "Int32Tensor")):
        value.field.add(name=field_name, number=number, label=1, oneof_index=0,
                        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=f".aialgs.data.{type_name}")
    record = fdp.message_type.add(name="Record")
    entry = record.nested_type.add(name="FeaturesEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, label=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    entry.field.add(name="value", number=2, label=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                    type_name=".aialgs.data.Value")
    record.field.add(name="features", number=1, label=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                     type_name=".aialgs.data.Record.FeaturesEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    Message = message_factory.GetMessageClass(pool.FindMessageTypeByName("aialgs.data.Record"))

    # Their bytes -> our reader.
    theirs = Message()
    theirs.features["target"].float32_tensor.values.extend(PROBS.ravel().tolist())
    theirs.features["shape"].int32_tensor.values.extend([1, 2, 2, 2])
    theirs.features["neg"].int32_tensor.values.extend([-5])
    ours = parse_record(theirs.SerializeToString())
    assert ours.features["neg"].values.tolist() == [-5]
    np.testing.assert_array_equal(decode_probabilities(write_recordio([theirs.SerializeToString()])), PROBS)
    # Our bytes -> their parser.
    (payload,) = read_recordio(HAND_BUILT)
    parsed = Message.FromString(payload)
    assert list(parsed.features["shape"].int32_tensor.values) == [1, 2, 2, 2]
    assert list(parsed.features["target"].float32_tensor.values) == PROBS.ravel().tolist()


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (HAND_BUILT[:5], r"truncated input: 5 byte\(s\) at byte 0 where a record header"),
        (HAND_BUILT[:40], r"header at byte 0 announces a 67-byte payload but only 32 byte\(s\) follow"),
        (HAND_BUILT[:75], r"lacks its 1 padding byte"),
        (b"\x00" * 8 + HAND_BUILT, r"bad RecordIO magic 0x00000000 at byte 0"),
        (HAND_BUILT + b"\x01\x02\x03\x04", r"truncated input: 4 byte\(s\) at byte 76"),
        (HAND_BUILT + HAND_BUILT[:4] + b"\x00\x00\x00\xa0", r"invalid continuation flag 5 in the header at byte 76"),
        (MAGIC_BYTES + struct.pack("<I", 3 << 29), r"header at byte 0 continues a multi-part record \(cflag 3\)"),
        (MAGIC_BYTES + struct.pack("<I", 1 << 29) + HAND_BUILT,
         r"multi-part record started at byte 0 is unfinished: the header at byte 8 has cflag 0"),
        (MAGIC_BYTES + struct.pack("<I", 1 << 29), r"next part of the record started at byte 0"),
    ],
)
def test_framing_errors_say_what_and_where(data, message):
    with pytest.raises(RecordIOError, match=message):
        decode_records(data)


def _with_payload(payload: bytes) -> bytes:
    return write_recordio([payload])


def test_corrupt_protobuf_names_the_payload_and_stream_byte():
    payload = bytearray(read_recordio(HAND_BUILT)[0])
    payload[1] = 0x7F  # the first map entry now claims 127 bytes
    with pytest.raises(RecordIOError, match=r"record at byte 0: Record: field 1 announces 127 bytes but only 65 "
                                            r"remain .*\(payload byte 0, stream byte 8\)"):
        decode_records(_with_payload(bytes(payload)))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x0a\x02\x0a\x80", r"truncated varint .*payload byte 3"),
        (b"\x08" + b"\xff" * 10 + b"\x01", r"varint longer than 10 bytes"),
        (b"\x0b", r"deprecated group encoding"),
        (b"\x0e", r"invalid wire type 6"),
        (b"\x00", r"field number 0"),
        (b"\x0a\x05\x0a\x01t\x12\x02", r"features entry: field 2 announces 2 bytes but only 0 remain"),
        (b"\x0a\x0b\x0a\x01t\x12\x06\x12\x04\x0a\x02\x00\x00", r"packed values are 2 bytes, not a multiple of 4"),
        (b"\x0a\x04\x0a\x02\xff\xfe", r"features key is not UTF-8"),
    ],
)
def test_protobuf_errors(payload, message):
    with pytest.raises(RecordIOError, match=message):
        decode_records(_with_payload(payload))


def test_missing_or_inconsistent_features_are_reported():
    no_target = encode_records([{"shape": np.array([1, 2, 2, 2], dtype=np.int32)}])
    with pytest.raises(RecordIOError, match=r"no float 'target' tensor \(features present: shape\)"):
        decode_probabilities(no_target)
    short = encode_records([{"target": PROBS.reshape(-1)[:7], "shape": np.array([1, 2, 2, 2], dtype=np.int32)}])
    with pytest.raises(RecordIOError, match=r"shape \[2, 2, 2\] needs 8 target values but the tensor holds 7"):
        decode_probabilities(short)
    flat_shape = encode_records([{"target": PROBS.reshape(-1), "shape": np.array([8], dtype=np.int32)}])
    with pytest.raises(RecordIOError, match=r"shape \[8\] is not \(num_classes, H, W\)"):
        decode_probabilities(flat_shape)
    no_shape = encode_records([{"target": PROBS.reshape(-1)}])
    with pytest.raises(RecordIOError, match="no int32 'shape' feature"):
        decode_probabilities(no_shape)


def test_argmax_mask_validates_its_input():
    with pytest.raises(ValueError, match="must be \\(num_classes, H, W\\)"):
        argmax_mask(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="do not fit a uint8 mask"):
        argmax_mask(np.zeros((300, 1, 1)))
    big = np.zeros((256, 1, 2), dtype=np.float32)
    big[255, 0, 1] = 1
    assert argmax_mask(big).tolist() == [[0, 255]]
