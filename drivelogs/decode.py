"""From a decoded image message to the frame the ingest takes, or a reason to skip it.

``sensor_msgs/CompressedImage``: JPEG and PNG (told by their magic bytes, not the ``format`` string) pass through
byte for byte; anything else is skipped as ``unsupported_format``.
``sensor_msgs/Image``: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (a 16-bit greyscale PNG, ``is_bigendian`` honoured),
8UC1, 8UC3, 16UC1 (the bytes of mono8, bgr8, mono16), YUV yuv422/uyvy, yuyv/yuv422_yuy2, nv12, nv21 (converted with
OpenCV's ``cvtColor``) and Bayer bayer_{rggb,bggr,gbrg,grbg}{8,16} (demosaiced with OpenCV's bilinear ``cvtColor``),
row padding (``step``) dropped, encoded losslessly as PNG. Other encodings are skipped as ``unknown_encoding``.
Frames above the ingest's limits (``PrepareOptions`` max_bytes / max_pixels, or given ones) are skipped with the
ingest's code (``too_large_bytes``, ``too_many_pixels``) instead of being uploaded to be quarantined.

A new message type is one more entry in ``FRAME_DECODERS`` (and its stamp in ``message_stamp_ns``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from segcore.imaging import PrepareOptions

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
# Foxglove's schemas (MCAP, protobuf or JSON): the same decoders, stamps from ``timestamp``.
FOXGLOVE_COMPRESSED_IMAGE_TYPE = "foxglove.CompressedImage"
FOXGLOVE_RAW_IMAGE_TYPE = "foxglove.RawImage"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_COMPRESSION = 1  # lossless either way; level 1 is several times faster than the default 6 for camera frames
# ROS encoding -> (bytes per sample, channels); Bayer patterns demosaic to 3 channels.
RAW_ENCODINGS: dict[str, tuple[int, int]] = {
    "rgb8": (1, 3), "bgr8": (1, 3), "rgba8": (1, 4), "bgra8": (1, 4), "mono8": (1, 1), "mono16": (2, 1),
    **{f"bayer_{p}{bits}": (bits // 8, 1) for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
    # OpenCV type names with the same bytes as mono8, bgr8 and mono16.
    "8uc1": (1, 1), "8uc3": (1, 3), "16uc1": (2, 1),
    # YUV 4:2:2 packed (2 bytes a pixel) and 4:2:0 semi-planar (a Y plane, then half-height interleaved UV rows).
    "yuv422": (1, 2), "uyvy": (1, 2), "yuyv": (1, 2), "yuv422_yuy2": (1, 2), "nv12": (1, 1), "nv21": (1, 1),
}
# YUV encodings -> the OpenCV conversion to BGR (cv2 writes BGR); nv12/nv21 have height * 3 / 2 rows of bytes.
YUV_CODES: dict[str, str] = {"yuv422": "COLOR_YUV2BGR_UYVY", "uyvy": "COLOR_YUV2BGR_UYVY",
                             "yuyv": "COLOR_YUV2BGR_YUY2", "yuv422_yuy2": "COLOR_YUV2BGR_YUY2",
                             "nv12": "COLOR_YUV2BGR_NV12", "nv21": "COLOR_YUV2BGR_NV21"}
SEMI_PLANAR = frozenset({"nv12", "nv21"})


class SkipFrame(Exception):
    """No frame from this message: ``reason`` is the manifest's skip reason (contracts.drives.SKIP_REASONS)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


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
    if encoding in YUV_CODES and (width % 2 or (encoding in SEMI_PLANAR and height % 2)):
        raise SkipFrame("malformed", f"{width}x{height} {encoding}: chroma subsampling needs even dimensions")
    byte_rows = height * 3 // 2 if encoding in SEMI_PLANAR else height
    data = message.data
    buffer = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if step < row or buffer.size < step * byte_rows:
        raise SkipFrame("malformed", f"{buffer.size} data bytes with step {step} for {width}x{height} {encoding}")
    rows = buffer[: step * byte_rows].reshape(byte_rows, step)[:, :row]
    if sample == 2:
        big = bool(message.is_bigendian)
        pixels = np.ascontiguousarray(rows).view(">u2" if big else "<u2").astype(np.uint16, copy=False)
    else:
        pixels = rows
    pixels = pixels.reshape(byte_rows, width, channels) if channels > 1 else pixels.reshape(byte_rows, width)
    if encoding in YUV_CODES:
        image = cv2.cvtColor(np.ascontiguousarray(pixels), getattr(cv2, YUV_CODES[encoding]))
    elif encoding.startswith("bayer_"):
        image = cv2.cvtColor(np.ascontiguousarray(pixels), _bayer_code(encoding))
    elif encoding == "rgb8":
        image = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        image = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    else:  # bgr8, bgra8, mono8, mono16 (8UC3, 8UC1, 16UC1): already in cv2's order
        image = np.ascontiguousarray(pixels)
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - cv2 encodes every array shape built above
        raise SkipFrame("malformed", f"PNG encoding of a {width}x{height} {encoding} image failed")
    body = encoded.tobytes()
    if len(body) > limits.max_bytes:
        raise SkipFrame("too_large_bytes", f"{len(body)} bytes as PNG exceeds the limit of {limits.max_bytes} bytes")
    return Frame(body, "png", "image/png", (width, height))


def foxglove_raw_frame(message: Any, limits: FrameLimits) -> Frame:
    """A foxglove.RawImage as raw_frame reads an Image: the same encoding names, 16-bit samples little-endian."""
    return raw_frame(SimpleNamespace(encoding=message.encoding, width=message.width, height=message.height,
                                     step=message.step, data=message.data, is_bigendian=False), limits)


FRAME_DECODERS: Mapping[str, Callable[[Any, FrameLimits], Frame]] = {
    IMAGE_TYPE: raw_frame,
    COMPRESSED_IMAGE_TYPE: compressed_frame,
    FOXGLOVE_RAW_IMAGE_TYPE: foxglove_raw_frame,
    FOXGLOVE_COMPRESSED_IMAGE_TYPE: compressed_frame,
}
IMAGE_TYPES = tuple(FRAME_DECODERS)  # the message types the extractor takes for cameras


def decode_frame(msgtype: str, message: Any, limits: FrameLimits) -> Frame:
    """The frame of an image message of one of ``IMAGE_TYPES``; SkipFrame says why there is none."""
    return FRAME_DECODERS[msgtype](message, limits)


def message_stamp_ns(message: Any) -> int:
    """The image's own time (ROS header.stamp, Foxglove timestamp: protobuf seconds/nanos, JSON sec/nsec) in
    nanoseconds; zero when the recorder left it unset."""
    header = getattr(message, "header", None)
    if header is None:
        stamp = message.timestamp
        if hasattr(stamp, "seconds"):  # google.protobuf.Timestamp
            return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nsec)
    stamp = header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
