"""segcore.keys and segcore.metadata: keys, ids, identities, async input metadata."""

from __future__ import annotations

import re

import pytest

from segcore.imaging import PreparedFrame
from segcore.keys import (
    content_inference_id,
    decode_event_key,
    derive_inference_id,
    frame_identity,
    identity_from_async_input_key,
    object_keys,
    parse_frame_key,
    parse_s3_uri,
    quarantine_keys,
    s3_uri,
)
from segcore.metadata import MetadataTooLarge, build_async_input_metadata, parse_async_input_metadata
from segcore.settings import DEFAULT_KEY_PATTERN

PATTERN = re.compile(DEFAULT_KEY_PATTERN)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("incoming/veh-1/front/2024-05-01T10%3A00%3A00Z.jpg", "incoming/veh-1/front/2024-05-01T10:00:00Z.jpg"),
        ("incoming/veh+1/front+cam/a+b.jpg", "incoming/veh 1/front cam/a b.jpg"),
        ("incoming/v/c/%C3%A9t%C3%A9%2B1.png", "incoming/v/c/été+1.png"),
        ("incoming%2Fv%2Fc%2Fx.jpg", "incoming/v/c/x.jpg"),  # moto encodes "/" too
        ("incoming/%E8%BB%8A/%E5%89%8D/1.jpg", "incoming/車/前/1.jpg"),
    ],
)
def test_decode_event_key(raw: str, decoded: str) -> None:
    assert decode_event_key(raw) == decoded


def test_parse_frame_key_matches_default_pattern() -> None:
    frame = parse_frame_key("incoming/veh-1/front cam/2024-05-01T10:00:00.123Z.jpeg", PATTERN)
    assert frame.matched and frame.relative == "veh-1/front cam/2024-05-01T10:00:00.123Z.jpeg"
    assert (frame.vehicle, frame.camera, frame.timestamp) == ("veh-1", "front cam", "2024-05-01T10:00:00.123Z")
    unicode = parse_frame_key("incoming/車/前/été.png", PATTERN)
    assert (unicode.vehicle, unicode.camera, unicode.timestamp) == ("車", "前", "été")
    drive = parse_frame_key("incoming/car-7/2026-12-03/front/19700101T000001.000000000Z.jpg", PATTERN)
    assert (drive.vehicle, drive.camera, drive.timestamp) == ("car-7", "front", "19700101T000001.000000000Z")


@pytest.mark.parametrize("key", ["incoming/loose.jpg", "incoming/a/b/c/d/e.jpg", "incoming/v/c/frame.gif", "other/x"])
def test_unmatched_keys_give_null_fields(key: str) -> None:
    frame = parse_frame_key(key, PATTERN)
    assert not frame.matched and frame.vehicle is None and frame.camera is None and frame.timestamp is None
    assert frame.key == key


def test_inference_id_is_deterministic_per_object_version() -> None:
    base = derive_inference_id("b", "incoming/v/c/t.jpg", "v1", '"etag"')
    assert base == derive_inference_id("b", "incoming/v/c/t.jpg", "v1", "other-etag")  # version wins
    assert len(base) == 32 and re.fullmatch(r"[0-9a-f]{32}", base)
    assert base != derive_inference_id("b", "incoming/v/c/t.jpg", "v2")
    assert base != derive_inference_id("b2", "incoming/v/c/t.jpg", "v1")
    assert derive_inference_id("b", "k", None, '"abc"') == derive_inference_id("b", "k", "null", "abc")
    assert derive_inference_id("b", "k", None, "abc") != derive_inference_id("b", "k", None, "abd")
    assert content_inference_id(b"x") == content_inference_id(b"x") != content_inference_id(b"y")


@pytest.mark.parametrize(
    ("key", "identity"),
    [
        ("incoming/veh-1/front/2024-05-01T10:00:00.123Z.jpg", "veh-1/front/2024-05-01T10:00:00.123Z"),
        ("incoming/a/b/c.PNG", "a/b/c"),
        ("incoming/a/b/c.jpeg", "a/b/c"),
        ("incoming/a/b/c.tiff", "a/b/c.tiff"),
        ("elsewhere/x.jpg", "elsewhere/x"),
    ],
)
def test_frame_identity_lossless(key: str, identity: str) -> None:
    assert frame_identity(key) == identity


def test_frame_identity_sanitises_and_disambiguates() -> None:
    spaced = frame_identity("incoming/veh 1/front/straße.jpg")
    assert re.fullmatch(r"veh_1/front/stra_e~[0-9a-f]{10}", spaced)
    assert spaced.isascii()
    # Two keys that sanitise alike get different identities; a lossless one keeps no suffix.
    assert frame_identity("incoming/veh_1/front/stra_e.jpg") == "veh_1/front/stra_e"
    assert frame_identity("incoming/veh 1/front/stra?e.jpg") != spaced
    dotted = frame_identity("incoming/../x/./y.jpg")
    assert dotted.startswith("_/x/_/y~")
    assert frame_identity("incoming//a.jpg").startswith("_/a~")
    long_key = "incoming/" + "a" * 1000 + ".jpg"
    assert len(frame_identity(long_key)) == 800 + 11


def test_object_and_quarantine_keys() -> None:
    keys = object_keys("veh/cam/ts", async_input_prefix="async-input/", results_prefix="results/", failures_prefix="f/")
    assert keys.async_input == "async-input/veh/cam/ts.jpg"
    assert keys.result == "results/veh/cam/ts.json"
    assert keys.overlay == "results/veh/cam/ts.overlay.jpg"
    assert keys.restored_mask == "results/veh/cam/ts.mask.png"
    assert keys.failure == "f/veh/cam/ts.json"
    assert identity_from_async_input_key(keys.async_input, "async-input/") == "veh/cam/ts"
    assert identity_from_async_input_key("other/veh.jpg", "async-input/") is None
    assert identity_from_async_input_key("async-input/.jpg", "async-input/") is None
    assert quarantine_keys("incoming/v c/été.gif", "quarantine/") == (
        "quarantine/incoming/v c/été.gif",
        "quarantine/incoming/v c/été.gif.reason.json",
    )


def test_s3_uris() -> None:
    assert parse_s3_uri(s3_uri("b", "a/b c/d.png")) == ("b", "a/b c/d.png")
    for bad in ("http://b/k", "s3://b", "s3:///k", "s3://b/", None):
        with pytest.raises(ValueError):
            parse_s3_uri(bad)  # type: ignore[arg-type]


def _prepared() -> PreparedFrame:
    return PreparedFrame(
        jpeg=b"\xff\xd8\xff",
        source_format="jpeg",
        source_mode="RGB",
        original_size=(1920, 1080),
        output_size=(910, 512),
        crop_box=(0, 0, 1920, 1080),
        scale=910 / 1920,
    )


def test_async_input_metadata_roundtrip_with_unicode_key() -> None:
    frame = parse_frame_key("incoming/車 1/front+cam/été 100%.jpg", PATTERN)
    meta = build_async_input_metadata(
        inference_id="abc",
        source_bucket="ingest",
        frame=frame,
        source_version_id="v1",
        prepared=_prepared(),
        uploaded_at="2026-01-01T00:00:00.000Z",
        submitted_at="2026-01-01T00:00:00.100Z",
    )
    assert all(k.isascii() and v.isascii() for k, v in meta.items())
    parsed = parse_async_input_metadata(meta)
    assert parsed.source_key == frame.key
    assert (parsed.vehicle, parsed.camera, parsed.timestamp) == ("車 1", "front+cam", "été 100%")
    assert parsed.original_size == (1920, 1080) and parsed.inference_size == (910, 512)
    assert parsed.crop_box == (0, 0, 1920, 1080) and parsed.scale == pytest.approx(910 / 1920)
    assert parsed.source_version_id == "v1" and parsed.inference_id == "abc"
    assert parsed.uploaded_at == "2026-01-01T00:00:00.000Z" and parsed.source_format == "jpeg"
    # S3 returns metadata keys lower-cased; unmatched keys have no vehicle/camera/timestamp
    unmatched = build_async_input_metadata(
        inference_id="abc",
        source_bucket="ingest",
        frame=parse_frame_key("incoming/loose.jpg", PATTERN),
        source_version_id=None,
        prepared=_prepared(),
        uploaded_at=None,
        submitted_at="2026-01-01T00:00:00.100Z",
    )
    assert "vehicle" not in unmatched and parse_async_input_metadata(unmatched).vehicle is None


def test_async_input_metadata_limits_and_errors() -> None:
    with pytest.raises(MetadataTooLarge):
        build_async_input_metadata(
            inference_id="abc",
            source_bucket="ingest",
            frame=parse_frame_key("incoming/v/c/" + "é" * 300 + ".jpg", PATTERN),
            source_version_id=None,
            prepared=_prepared(),
            uploaded_at=None,
            submitted_at="x",
        )
    with pytest.raises(ValueError, match="lacks 'original-width'"):
        parse_async_input_metadata({"source-bucket": "b"})
    good = build_async_input_metadata(
        inference_id="abc",
        source_bucket="ingest",
        frame=parse_frame_key("incoming/v/c/t.jpg", PATTERN),
        source_version_id=None,
        prepared=_prepared(),
        uploaded_at=None,
        submitted_at="x",
    )
    with pytest.raises(ValueError, match="malformed"):
        parse_async_input_metadata({**good, "original-width": "wide"})
    with pytest.raises(ValueError, match="four integers"):
        parse_async_input_metadata({**good, "crop-box": "1,2,3"})
