"""segcore.imaging: every accepted and refused input class, on real images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from lambda_testkit import camera_array, encode
from PIL import Image, ImageOps

from segcore.imaging import BadFrame, PreparedFrame, PrepareOptions, fit_size, prepare_frame, sniff_format


def decoded(prepared: PreparedFrame) -> np.ndarray:
    im = Image.open(io.BytesIO(prepared.jpeg))
    assert im.format == "JPEG" and im.mode == "RGB"
    assert im.size == prepared.output_size
    return np.asarray(im).astype(np.int16)


def refused(data: bytes, **options) -> BadFrame:
    with pytest.raises(BadFrame) as info:
        prepare_frame(data, PrepareOptions(**options))
    assert info.value.code and info.value.reason
    return info.value


# ------------------------------------------------------------------------------------- accepted


def test_jpeg_smaller_than_target_is_not_upscaled(frame_jpeg: bytes) -> None:
    p = prepare_frame(frame_jpeg)  # 320x240 into 1024x512
    assert (p.source_format, p.source_mode) == ("jpeg", "RGB")
    assert p.original_size == (320, 240) and p.output_size == (320, 240) and p.scale == 1.0
    assert p.crop_box == (0, 0, 320, 240) and p.conversions == ()
    decoded(p)


def test_jpeg_downscale_uses_draft(frame_jpeg: bytes, frame_rgb: np.ndarray) -> None:
    p = prepare_frame(frame_jpeg, PrepareOptions(target_size=(160, 80)))
    assert p.output_size == (107, 80)  # 320x240 fitted inside 160x80, aspect kept
    assert "jpeg_draft_1/2" in p.conversions and "resize_bilinear" in p.conversions
    assert p.scale == pytest.approx(107 / 320)
    reference = np.asarray(Image.fromarray(frame_rgb).resize((107, 80), Image.Resampling.LANCZOS)).astype(np.int16)
    assert np.abs(decoded(p) - reference).mean() < 6


@pytest.mark.parametrize(
    ("size", "target", "expected"),
    [
        ((2048, 1024), (1024, 512), (1024, 512)),
        ((1920, 1080), (1024, 512), (910, 512)),
        ((1000, 2000), (1024, 512), (256, 512)),
        ((1280, 400), (1024, 512), (1024, 320)),
        ((800, 400), (1024, 512), (800, 400)),
        ((3, 5000), (1024, 512), (1, 512)),
    ],
)
def test_fit_size_keeps_aspect_ratio(size: tuple[int, int], target: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_size(size, target) == expected


def test_png_aspect_preserving_resize() -> None:
    data = encode(camera_array(640, 240, seed=2), "PNG")
    p = prepare_frame(data, PrepareOptions(target_size=(160, 160)))
    assert p.source_format == "png" and p.original_size == (640, 240)
    assert p.output_size == (160, 60) and p.scale == pytest.approx(0.25)
    assert "resize_bilinear" in p.conversions
    decoded(p)


def test_sixteen_bit_png_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    p = prepare_frame(data, PrepareOptions(jpeg_quality=95))
    assert "16bit_to_8bit" in p.conversions and p.source_mode.startswith("I")
    out = decoded(p)
    assert np.abs(out[..., 0] - (ramp >> 8)).max() <= 3  # >> 8, JPEG tolerance
    assert out.max() >= 250 and out.min() <= 3  # clipping would saturate almost everything at 255
    flat = np.full((48, 64), 0xABCD, dtype=np.uint16)
    assert np.abs(decoded(prepare_frame(encode(Image.fromarray(flat), "PNG"))) - 0xAB).max() <= 1


def test_sixteen_bit_rgb_png() -> None:
    # Pillow reads 16-bit RGB PNGs as 8-bit RGB (high bytes); the result must keep the colour.
    raw = b"".join(b"\x00" + bytes([0xC0, 0x00, 0x40, 0x00, 0x10, 0x00]) * 32 for _ in range(24))
    data = _png(32, 24, bit_depth=16, colour_type=2, raw=raw)
    out = decoded(prepare_frame(data))
    assert np.abs(out.reshape(-1, 3).mean(axis=0) - [0xC0, 0x40, 0x10]).max() <= 3


def test_cmyk_jpeg_converted_to_rgb() -> None:
    rgb = Image.new("RGB", (64, 48), (200, 60, 30))
    data = encode(rgb.convert("CMYK"), "JPEG", quality=95)
    p = prepare_frame(data)
    assert p.source_mode == "CMYK" and "cmyk_to_rgb" in p.conversions
    assert np.abs(decoded(p).reshape(-1, 3).mean(axis=0) - [200, 60, 30]).max() < 6


@pytest.mark.parametrize(
    ("mode", "expected_conversion"),
    [
        ("RGBA", "dropped_alpha"),
        ("LA", "dropped_alpha"),
        ("L", "l_to_rgb"),
        ("P", "palette_to_rgb"),
        ("1", "1bit_to_l"),
    ],
)
def test_png_modes_become_rgb(mode: str, expected_conversion: str) -> None:
    base = Image.fromarray(camera_array(64, 48, seed=4))
    image = base.convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.new("L", base.size, 10))  # nearly transparent: colours are kept, alpha dropped
    p = prepare_frame(encode(image, "PNG"))
    assert p.source_mode == mode and expected_conversion in p.conversions
    out = decoded(p)
    if mode in ("L", "LA", "1"):
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    if mode == "RGBA":  # the colours under the alpha survive: same pixels as the RGB frame through JPEG
        same_as_rgb = np.asarray(Image.open(io.BytesIO(encode(base, "JPEG", quality=90)))).astype(np.int16)
        assert np.abs(out - same_as_rgb).mean() < 1


def test_grayscale_jpeg() -> None:
    data = encode(Image.fromarray(camera_array(64, 48)).convert("L"), "JPEG")
    p = prepare_frame(data)
    assert p.source_mode == "L" and "l_to_rgb" in p.conversions


def test_progressive_jpeg(frame_rgb: np.ndarray) -> None:
    data = encode(frame_rgb, "JPEG", quality=90, progressive=True)
    assert prepare_frame(data, PrepareOptions(target_size=(80, 60))).output_size == (80, 60)


def _quadrant_image(width: int = 64, height: int = 48) -> Image.Image:
    """Red top-left quadrant, green elsewhere on the top, blue bottom half."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, :] = (0, 200, 0)
    arr[height // 2 :, :] = (0, 0, 200)
    arr[: height // 2, : width // 2] = (220, 0, 0)
    return Image.fromarray(arr)


def _with_orientation(image: Image.Image, orientation: int, **params) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes(), **params)


def test_exif_orientation_6_rotates() -> None:
    data = _with_orientation(_quadrant_image(), 6)
    p = prepare_frame(data)
    assert p.orientation == 6 and "exif_orientation_6" in p.conversions
    assert p.original_size == (48, 64) and p.output_size == (48, 64)  # width and height swapped
    out = decoded(p)
    # Orientation 6 = rotate 90 degrees clockwise: the raw top-left (red) lands top-right, blue on the left.
    assert out[5, 40, 0] > 180 and out[5, 40, 2] < 60
    assert out[32, 5, 2] > 150 and out[32, 5, 0] < 60


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_exif_transpose(orientation: int) -> None:
    source = Image.fromarray(camera_array(400, 300, seed=orientation))
    data = _with_orientation(source, orientation)
    roi = (0.1, 0.2, 0.9, 1.0)
    p = prepare_frame(data, PrepareOptions(target_size=(100, 100), roi=roi))
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert p.original_size == reference.size
    w, h = reference.size
    box = (int(roi[0] * w), int(roi[1] * h), int(np.ceil(roi[2] * w)), int(np.ceil(roi[3] * h)))
    assert p.crop_box == box
    expected = np.asarray(reference.crop(box).resize(p.output_size, Image.Resampling.LANCZOS)).astype(np.int16)
    assert np.abs(decoded(p) - expected).mean() < 8


def test_roi_crop_in_fractions() -> None:
    arr = np.zeros((240, 320, 3), dtype=np.uint8)
    arr[:120] = (220, 20, 20)  # top half red
    arr[120:] = (20, 20, 220)  # bottom half blue
    p = prepare_frame(encode(arr, "PNG"), PrepareOptions(target_size=(160, 160), roi=(0.0, 0.5, 1.0, 1.0)))
    assert p.crop_box == (0, 120, 320, 240)
    assert p.output_size == (160, 60) and p.scale == pytest.approx(0.5)
    out = decoded(p)
    assert out[..., 2].min() > 180 and out[..., 0].max() < 70  # only the blue bottom half remains


def test_roi_with_jpeg_draft() -> None:
    arr = camera_array(1280, 960, seed=9).copy()
    arr[480:, :640] = (250, 250, 0)
    data = encode(arr, "JPEG", quality=95)
    p = prepare_frame(data, PrepareOptions(target_size=(80, 80), roi=(0.0, 0.5, 0.5, 1.0)))
    assert p.crop_box == (0, 480, 640, 960) and p.output_size == (80, 60)
    assert any(c.startswith("jpeg_draft_1/") for c in p.conversions)
    assert np.abs(decoded(p) - np.array([250, 250, 0])).mean() < 8


# ------------------------------------------------------------------------------------- refused


def test_zero_bytes() -> None:
    bad = refused(b"")
    assert bad.code == "empty" and bad.detected_format == "empty"


def test_text_file() -> None:
    bad = refused(b"hello, this is not a frame\n" * 10)
    assert bad.code == "unsupported_format" and bad.detected_format == "text"


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "gif"), ("TIFF", "tiff"), ("BMP", "bmp")])
def test_other_image_formats(fmt: str, name: str) -> None:
    bad = refused(encode(Image.fromarray(camera_array(64, 48)), fmt))
    assert bad.code == "unsupported_format" and bad.detected_format == name and name in bad.reason


def test_webp_named_when_pillow_can_write_it() -> None:
    try:
        data = encode(Image.fromarray(camera_array(64, 48)), "WEBP")
    except (KeyError, OSError):
        pytest.skip("Pillow built without WebP")
    assert refused(data).detected_format == "webp"


@pytest.mark.parametrize("cut", [1, 2, 100, "half"])
def test_truncated_jpeg(frame_jpeg: bytes, cut: int | str) -> None:
    end = len(frame_jpeg) // 2 if cut == "half" else len(frame_jpeg) - int(cut)
    assert refused(frame_jpeg[:end]).code == "truncated"
    assert refused(frame_jpeg[:end], target_size=(80, 60)).code == "truncated"  # draft path too


@pytest.mark.parametrize("cut", [1, 12, 20, "half"])
def test_truncated_png(frame_png: bytes, cut: int | str) -> None:
    end = len(frame_png) // 2 if cut == "half" else len(frame_png) - int(cut)
    assert refused(frame_png[:end]).code == "truncated"


def test_jpeg_header_only() -> None:
    assert refused(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00").code in ("unreadable", "truncated")


def _png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0, raw: bytes | None = None) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if raw is None:
        raw = b"".join(b"\x00" + b"\x00" * width for _ in range(min(height, 4)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _patch_ihdr(png: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR dimensions of a real PNG and fix the chunk CRC (zlib.crc32)."""
    ihdr_start = 8
    length = struct.unpack(">I", png[ihdr_start : ihdr_start + 4])[0]
    body = bytearray(png[ihdr_start + 4 : ihdr_start + 8 + length])  # type + data
    body[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(body)))
    return png[: ihdr_start + 4] + bytes(body) + crc + png[ihdr_start + 8 + length + 4 :]


def test_decompression_bomb_png_refused_before_decoding(frame_png: bytes) -> None:
    bomb = _patch_ihdr(frame_png, 50_000, 50_000)
    assert Image.open(io.BytesIO(_patch_ihdr(frame_png, 400, 300))).size == (400, 300)  # the patch is valid
    bad = refused(bomb)
    assert bad.code == "too_many_pixels" and "2500000000" in bad.reason
    # Pillow's own bomb guard (above 2 x Image.MAX_IMAGE_PIXELS) is mapped to the same code.
    assert refused(bomb, max_pixels=10**12).code == "too_many_pixels"


def test_huge_one_bit_png_refused() -> None:
    data = encode(Image.new("1", (9000, 5000)), "PNG")  # 45 Mpx, a few kB
    assert len(data) < 100_000
    assert refused(data).code == "too_many_pixels"


def test_pixel_and_byte_limits(frame_jpeg: bytes) -> None:
    assert refused(frame_jpeg, max_pixels=320 * 240 - 1).code == "too_many_pixels"
    assert prepare_frame(frame_jpeg, PrepareOptions(max_pixels=320 * 240)).output_size == (320, 240)
    bad = refused(frame_jpeg, max_bytes=1000)
    assert bad.code == "too_large_bytes" and bad.detected_format == "jpeg"


def test_tiny_frame_refused() -> None:
    assert refused(encode(Image.new("RGB", (8, 8)), "PNG")).code == "too_small"


def test_corrupt_png_crc() -> None:
    data = bytearray(encode(Image.fromarray(camera_array(64, 48)), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: CRC mismatch
    assert refused(bytes(data)).code in ("unreadable", "too_many_pixels", "truncated")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x18ftypheic", "heif"),
        (b"%PDF-1.7", "pdf"),
        (b"", "empty"),
        (b"plain text", "text"),
        (bytes(range(256)), "unknown"),
    ],
)
def test_sniff_format(data: bytes, name: str) -> None:
    assert sniff_format(data) == name


# -- mends found with a drive's edge-case frames (issue 13) ----------------------------------------------------------


def test_an_extreme_strip_is_refused_rather_than_sent_as_a_one_pixel_frame() -> None:
    strip = encode(Image.new("RGB", (30000, 16), (90, 90, 90)), "PNG")
    bad = refused(strip, target_size=(1024, 512))
    assert bad.code == "too_small"
    assert "1024x1" in bad.reason and "30000x16" in bad.reason


def test_a_strip_that_still_fits_above_the_minimum_is_prepared() -> None:
    frame = prepare_frame(encode(Image.new("RGB", (2048, 64), (90, 90, 90)), "PNG"), PrepareOptions((1024, 512)))
    assert frame.output_size == (1024, 32)


def test_zero_bytes_are_not_called_text() -> None:
    zeros = b"\x00" * (1024 * 1024)
    assert sniff_format(zeros) == "zeros"
    bad = refused(zeros)
    assert bad.code == "unsupported_format" and bad.detected_format == "zeros"


def test_a_jpeg_header_followed_by_html_is_unreadable_not_truncated() -> None:
    rng = np.random.default_rng(7)
    jpeg = encode(Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)), "JPEG")
    page = b"<!DOCTYPE html><html><body>" + b"Access denied. " * 300 + b"</body></html>\n"
    bad = refused(jpeg[: len(jpeg) // 2] + page)
    assert bad.code == "unreadable" and "followed by text" in bad.reason
    # A JPEG that really stops short keeps its code.
    assert refused(jpeg[: len(jpeg) // 2]).code == "truncated"


def test_sixteen_bit_conversion_keeps_temporaries_small() -> None:
    import tracemalloc

    from segcore.imaging import _sixteen_to_eight

    height, width = 2500, 4000  # 10 megapixels: the old int64 path allocated 80 MB on top of the output
    source = np.random.default_rng(3).integers(0, 65536, (height, width), dtype=np.uint16)
    tracemalloc.start()
    try:
        out = _sixteen_to_eight(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, (source >> 8).astype(np.uint8))
    output_bytes = height * width
    chunk_bytes = 256 * width * source.itemsize
    assert peak <= output_bytes + 3 * chunk_bytes, f"peak {peak} bytes for a {output_bytes}-byte output"


def test_thirty_two_bit_greyscale_is_clipped_not_wrapped() -> None:
    from segcore.imaging import _sixteen_to_eight

    values = np.array([[-5, 0, 255 << 8, 70000 << 8]], dtype=np.int32)
    assert _sixteen_to_eight(values).tolist() == [[0, 0, 255, 255]]
