"""Frame validation and preprocessing: bytes in, an RGB JPEG at inference resolution out.

``prepare_frame`` accepts JPEG and PNG only (sniffed by magic bytes, never by file name) and refuses
everything else with a ``BadFrame`` carrying a stable ``code``:

    empty, too_large_bytes, unsupported_format, too_many_pixels, too_small, truncated, unreadable

Pipeline (each step only when needed, each recorded in ``PreparedFrame.conversions``):

1. header only: format, dimensions -> refuse decompression bombs before any pixel is decoded
2. JPEG: ``Image.draft`` picks the largest DCT scale 1/2, 1/4 or 1/8 that keeps the decoded region at
   or above the output size (libjpeg decodes fewer pixels; the cheapest possible downscale)
3. full decode with ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` (truncated JPEGs raise OSError; PNGs
   without an IEND chunk are refused too)
4. EXIF orientation (``ImageOps.exif_transpose``), on the already reduced image
5. mode normalisation: palette/1-bit -> RGB, 16-bit grey -> 8 bit (>> 8, not clipped), alpha dropped
6. ROI crop and aspect-preserving fit in ONE resample: ``Image.resize(box=roi, reducing_gap=1.0)``
   does an integer box reduction (``Image.reduce``) first and a bilinear pass for the remainder
7. grey/CMYK -> RGB after the resize (fewer pixels to convert), JPEG encode
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Never decode truncated files leniently (this is Pillow's default; set it so no import elsewhere flips it).
ImageFile.LOAD_TRUNCATED_IMAGES = False

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"
MIN_SIDE = 16

# Formats recognised only to name them in the refusal (detected_format of the quarantine document).
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"%PDF", "pdf"),
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"\x00\x00\x00\x0cjP  ", "jpeg2000"),
    (b"8BPS", "psd"),
    (b"\x76\x2f\x31\x01", "exr"),
)

_TRANSPOSE_SWAPS_AXES = {5, 6, 7, 8}
_RESAMPLE = Image.Resampling.BILINEAR
_DRAFT_SCALES = (8, 4, 2)


class BadFrame(Exception):
    """The input is not a frame this pipeline can process. ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str, detected_format: str | None = None):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.detected_format = detected_format


@dataclass(frozen=True)
class PrepareOptions:
    target_size: tuple[int, int] = (1024, 512)
    roi: tuple[float, float, float, float] | None = None  # fractions of the oriented frame
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    jpeg_quality: int = 90


@dataclass(frozen=True)
class PreparedFrame:
    jpeg: bytes
    source_format: str  # "jpeg" | "png"
    source_mode: str  # Pillow mode as stored in the file ("RGB", "L", "CMYK", "I;16", "P", ...)
    original_size: tuple[int, int]  # (width, height) of the source frame after EXIF orientation
    output_size: tuple[int, int]  # (width, height) of ``jpeg``
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in original_size pixels; whole frame without ROI
    scale: float  # output width / crop width (the same both ways up to rounding)
    orientation: int = 1  # EXIF orientation tag that was applied (1 = none)
    conversions: tuple[str, ...] = field(default_factory=tuple)


def sniff_format(data: bytes) -> str:
    """'jpeg' or 'png' for accepted frames; otherwise a best-effort name ('gif', 'tiff', 'text', 'unknown')."""
    if not data:
        return "empty"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "heif" if data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis") else "iso-bmff"
    head = data[:512]
    if not head.strip(b"\x00"):
        return "zeros"  # an all-zero head (a pre-allocated or wiped file) is not text
    return "text" if _printable_text(head.rstrip(b"\x00")) is not None else "unknown"


def _printable_text(chunk: bytes) -> str | None:
    """``chunk`` as text when it is printable UTF-8 (tabs and line breaks allowed), else None."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(ch.isprintable() or ch in "\r\n\t" for ch in text) else None


def prepare_frame(data: bytes, options: PrepareOptions | None = None) -> PreparedFrame:
    """Validate ``data`` and turn it into the inference JPEG. Raises ``BadFrame`` for every refusal."""
    opts = options or PrepareOptions()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"frame data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BadFrame("empty", "the object has zero bytes", "empty")
    if len(data) > opts.max_bytes:
        raise BadFrame(
            "too_large_bytes", f"{len(data)} bytes exceeds the limit of {opts.max_bytes} bytes", sniff_format(data)
        )
    fmt = sniff_format(data)
    if fmt not in ("jpeg", "png"):
        raise BadFrame("unsupported_format", f"only JPEG and PNG frames are accepted, this looks like {fmt}", fmt)
    if fmt == "png" and data.rfind(PNG_IEND) == -1:
        raise BadFrame("truncated", "PNG data ends before the IEND chunk (incomplete upload?)", fmt)

    conversions: list[str] = []
    im = _open(data, fmt)
    raw_w, raw_h = im.size
    if raw_w * raw_h > opts.max_pixels:
        raise BadFrame(
            "too_many_pixels", f"{raw_w}x{raw_h} = {raw_w * raw_h} pixels exceeds the limit of {opts.max_pixels}", fmt
        )
    if min(raw_w, raw_h) < MIN_SIDE:
        raise BadFrame("too_small", f"{raw_w}x{raw_h} is smaller than {MIN_SIDE} pixels on a side", fmt)
    source_mode = im.mode
    orientation = _orientation(im)
    swap = orientation in _TRANSPOSE_SWAPS_AXES
    orig_w, orig_h = (raw_h, raw_w) if swap else (raw_w, raw_h)

    crop = _crop_box((orig_w, orig_h), opts.roi)
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    out_size = fit_size((crop_w, crop_h), opts.target_size)
    if min(out_size) < MIN_SIDE:
        # An extreme aspect ratio (a 30000x16 strip fits 1024x512 as 1024x1) leaves nothing to segment.
        raise BadFrame(
            "too_small",
            f"{crop_w}x{crop_h} would be sent for inference as {out_size[0]}x{out_size[1]}, under {MIN_SIDE} pixels"
            f" on a side (inference size {opts.target_size[0]}x{opts.target_size[1]}); crop or re-encode the frame",
            fmt,
        )

    if fmt == "jpeg":
        draft = _draft_scale((crop_w, crop_h), out_size)
        if draft > 1:
            im.draft("RGB", (raw_w // draft, raw_h // draft))
            conversions.append(f"jpeg_draft_1/{draft}")
    _load(im, fmt, data)

    if orientation != 1:
        im = ImageOps.exif_transpose(im)
        conversions.append(f"exif_orientation_{orientation}")
    im = _normalise_mode(im, conversions)

    # The decoded image may be smaller than the original (JPEG draft): scale the crop box into it.
    sx, sy = im.size[0] / orig_w, im.size[1] / orig_h
    box = (crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy)
    if out_size != im.size or box != (0.0, 0.0, float(im.size[0]), float(im.size[1])):
        ratio = min((box[2] - box[0]) / out_size[0], (box[3] - box[1]) / out_size[1])
        im = im.resize(out_size, _RESAMPLE, box=box, reducing_gap=1.0 if ratio >= 2.0 else None)
        conversions.append("resize_bilinear")
    if im.mode != "RGB":
        conversions.append(f"{im.mode.lower()}_to_rgb")
        im = im.convert("RGB")

    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=opts.jpeg_quality)
    return PreparedFrame(
        jpeg=buf.getvalue(),
        source_format=fmt,
        source_mode=source_mode,
        original_size=(orig_w, orig_h),
        output_size=out_size,
        crop_box=crop,
        scale=out_size[0] / crop_w,
        orientation=orientation,
        conversions=tuple(conversions),
    )


# Bytes per pixel of a decoded image as Pillow stores it (3-channel modes take 4), and what ``_normalise_mode`` and
# the final RGB conversion allocate next to it (16-bit grey: the array copy, the 8-bit array and its image).
_DECODED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_CONVERTED_BYTES = {"RGB": 0, "L": 0, "CMYK": 0, "1": 1, "LA": 1, "P": 4, "PA": 4, "RGBA": 4, "RGBa": 4, "RGBX": 4,
                    "I;16": 4, "I;16B": 4, "I;16L": 4, "I;16N": 4, "I": 6}


def decode_cost(data: bytes, options: PrepareOptions | None = None) -> int:
    """Bytes that ``prepare_frame(data, options)`` holds at its peak, estimated from the header alone (nothing is
    decoded): the compressed data, the decoded pixels (after the JPEG draft reduction), an EXIF rotation's copy and
    the mode conversion's output. Frames that ``prepare_frame`` refuses before decoding cost their data only."""
    opts = options or PrepareOptions()
    fmt = sniff_format(data)
    if fmt not in ("jpeg", "png") or len(data) > opts.max_bytes:
        return len(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=[fmt.upper()])
            (raw_w, raw_h), mode = im.size, im.mode
            # Never im.getexif() on a PNG here: Pillow decodes the whole image to look for an eXIf chunk after the
            # pixels, which is the very cost being estimated (outside any budget). An eXIf chunk before them is in
            # im.info; one after them goes unestimated (the rotation's copy).
            orientation = _orientation(im) if fmt == "jpeg" else _png_orientation(im.info.get("exif"))
    except Exception:  # noqa: BLE001 - an unreadable header is refused by prepare_frame before any decoding
        return len(data)
    if raw_w * raw_h > opts.max_pixels or min(raw_w, raw_h) < MIN_SIDE:
        return len(data)
    pixels = raw_w * raw_h
    if fmt == "jpeg":
        oriented = (raw_h, raw_w) if orientation in _TRANSPOSE_SWAPS_AXES else (raw_w, raw_h)
        crop = _crop_box(oriented, opts.roi)
        region = (crop[2] - crop[0], crop[3] - crop[1])
        draft = _draft_scale(region, fit_size(region, opts.target_size))
        pixels = (raw_w // draft) * (raw_h // draft)
        mode = "RGB" if mode in ("RGB", "YCbCr") else mode
    decoded = _DECODED_BYTES.get(mode, 4)
    rotated = decoded if orientation != 1 else 0
    return len(data) + pixels * (decoded + rotated + _CONVERTED_BYTES.get(mode, 4))


def _png_orientation(exif: bytes | None) -> int:
    if not exif:
        return 1
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        value = parsed.get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block costs no rotation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def fit_size(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """Largest size inside ``target`` with the aspect ratio of ``size``; never larger than ``size``."""
    w, h = size
    factor = min(target[0] / w, target[1] / h, 1.0)
    if factor >= 1.0:
        return (w, h)
    return (max(1, min(target[0], round(w * factor))), max(1, min(target[1], round(h * factor))))


def _draft_scale(region: tuple[int, int], out: tuple[int, int]) -> int:
    """Largest JPEG DCT scale (8, 4, 2) that still decodes the region at or above the output size."""
    for s in _DRAFT_SCALES:
        if region[0] // s >= out[0] and region[1] // s >= out[1]:
            return s
    return 1


def _crop_box(size: tuple[int, int], roi: tuple[float, float, float, float] | None) -> tuple[int, int, int, int]:
    w, h = size
    if roi is None:
        return (0, 0, w, h)
    left = min(w - 1, math.floor(roi[0] * w))
    top = min(h - 1, math.floor(roi[1] * h))
    right = max(left + 1, min(w, math.ceil(roi[2] * w)))
    bottom = max(top + 1, min(h, math.ceil(roi[3] * h)))
    return (left, top, right, bottom)


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadFrame("too_many_pixels", f"decompression bomb refused: {exc}", fmt) from None
    except UnidentifiedImageError:
        raise BadFrame("unreadable", f"the {fmt.upper()} header cannot be parsed", fmt) from None
    except Exception as exc:  # noqa: BLE001 - malformed files raise anything from Pillow's parsers
        raise _decoder_error(exc, fmt) from None


def _load(im: Image.Image, fmt: str, data: bytes = b"") -> None:
    try:
        im.load()
    except Exception as exc:  # noqa: BLE001 - OSError, SyntaxError, ValueError, EOFError, zlib/struct errors
        if data and _tail_is_text(data):
            # A valid header followed by text (an HTML error page written over an upload) is not a short file.
            raise BadFrame(
                "unreadable",
                f"{fmt.upper()} header followed by text (an HTML or error page?), not image data; upload it again",
                fmt,
            ) from None
        raise _decoder_error(exc, fmt) from None


def _tail_is_text(data: bytes) -> bool:
    text = _printable_text(data[-256:])
    return text is not None and len(text.strip()) >= 16


def _decoder_error(exc: Exception, fmt: str) -> BadFrame:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return BadFrame("too_many_pixels", "decoding needs more memory than available", fmt)
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "end of file" in text.lower():
        return BadFrame("truncated", f"{fmt.upper()} data ends early: {text}", fmt)
    return BadFrame("unreadable", f"{fmt.upper()} data cannot be decoded: {type(exc).__name__}: {text}", fmt)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject an otherwise good frame
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


_ROWS_PER_CHUNK = 256


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    """16-bit samples scale down by 256 (>> 8); a plain convert("L") would clip everything above 255.

    Row chunks in the source's own dtype keep the temporaries to a few MB: a whole-frame int64 copy of a
    40-megapixel frame alone is 320 MB. Peak: Pillow's decoded image, its array view and the 8-bit output
    (about 5 bytes per pixel for I;16 sources, 9 for 32-bit "I").
    """
    if arr.dtype.itemsize == 1:
        return np.ascontiguousarray(arr, dtype=np.uint8)
    out = np.empty(arr.shape, dtype=np.uint8)
    signed = arr.dtype.kind == "i"
    for start in range(0, arr.shape[0], _ROWS_PER_CHUNK):
        rows = arr[start : start + _ROWS_PER_CHUNK] >> 8
        if signed or arr.dtype.itemsize > 2:
            np.clip(rows, 0, 255, out=rows)
        out[start : start + _ROWS_PER_CHUNK] = rows
    return out


def _normalise_mode(im: Image.Image, conversions: list[str]) -> Image.Image:
    """Bring any decodable mode to L, RGB or CMYK (the last two converted to RGB after the resize)."""
    mode = im.mode
    if mode in ("RGB", "L", "CMYK"):
        return im
    if mode in _SIXTEEN_BIT:
        conversions.append("16bit_to_8bit")
        return Image.fromarray(_sixteen_to_eight(np.asarray(im)), "L")
    if mode in ("LA", "La", "PA"):
        conversions.append("dropped_alpha")
        return im.convert("L") if mode != "PA" else im.convert("RGB")
    if mode in ("RGBA", "RGBa", "RGBX"):
        conversions.append("dropped_alpha")
        return im.convert("RGB")
    if mode in ("P", "1"):
        conversions.append("palette_to_rgb" if mode == "P" else "1bit_to_l")
        return im.convert("RGB") if mode == "P" else im.convert("L")
    conversions.append(f"{mode.lower()}_to_rgb")
    return im.convert("RGB")
