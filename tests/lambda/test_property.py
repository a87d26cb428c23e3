"""Property: prepare_frame never fails unexpectedly, whatever bytes it gets.

Every input is either a valid PreparedFrame (a decodable RGB JPEG within the target) or a BadFrame with a
known code and a reason. Inputs: arbitrary byte strings and real 64x48 JPEG/PNG files mutated by
flipping, overwriting, truncating, inserting and deleting bytes.
"""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lambda_testkit import camera_array, encode
from PIL import Image

from segcore.imaging import BadFrame, PreparedFrame, PrepareOptions, prepare_frame

CODES = {"empty", "too_large_bytes", "unsupported_format", "too_many_pixels", "too_small", "truncated", "unreadable"}
OPTIONS = PrepareOptions(target_size=(32, 24), max_bytes=64 * 1024, max_pixels=4_000_000)

_BASE = Image.fromarray(camera_array(64, 48, seed=21))
SEEDS = [
    encode(_BASE, "JPEG", quality=85),
    encode(_BASE, "JPEG", quality=70, progressive=True),
    encode(_BASE, "PNG"),
    encode(_BASE.convert("L"), "PNG"),
    encode(_BASE.convert("P"), "PNG"),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[position:]
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[position : position + draw(st.integers(1, 64))]
    return bytes(data)


def check(data: bytes) -> None:
    try:
        prepared = prepare_frame(data, OPTIONS)
    except BadFrame as bad:
        assert bad.code in CODES, bad.code
        assert isinstance(bad.reason, str) and bad.reason.strip()
        return
    assert isinstance(prepared, PreparedFrame)
    assert 0 < prepared.output_size[0] <= 32 and 0 < prepared.output_size[1] <= 24
    image = Image.open(io.BytesIO(prepared.jpeg))
    image.load()
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == prepared.output_size


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_real_frames(data: bytes) -> None:
    check(data)


@settings(max_examples=100, deadline=None, database=None)
@given(st.sampled_from(SEEDS[:1] + SEEDS[2:3]), st.binary(min_size=1, max_size=8))
def test_magic_prefixed_garbage(seed: bytes, tail: bytes) -> None:
    check(seed[:16] + tail)  # a valid signature with a broken body
