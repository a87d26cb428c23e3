"""Review video of one camera: the overlay JPEGs in time order, at a constant frame rate, written with PyAV.

One video frame per frame slot, so the video's clock is the drive's: a processed frame shows its overlay, a
quarantined or failed frame (or a processed one whose overlay is missing) a grey frame with the status and reason,
and a slot inferred missing from a gap in the frame times (drivelogs/scenes.py ``missing_before``) a grey
"no frame" frame. Nothing is dropped from the timing. Every frame is scaled to the first overlay's size (rounded
down to even numbers: H.264 in yuv420p needs even sides) and has its UTC time burnt in at the top left.

Codec: H.264 (``libx264``) when the installed FFmpeg has the encoder (the pinned PyAV wheel does), else MPEG-4
part 2 (``mpeg4``), in an MP4 container.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GREY = (96, 96, 96)
CODEC_PREFERENCE = ("libx264", "mpeg4")


@dataclass(frozen=True)
class VideoSlot:
    time_ns: int
    overlay: Path | None  # None: a grey frame with ``label``
    label: str  # status / reason shown on a grey frame


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    fps: float
    frames: int
    width: int
    height: int


def choose_codec() -> str:
    import av

    for name in CODEC_PREFERENCE:
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except Exception:  # listed, but not usable as an encoder in this build
                continue
            return name
    raise RuntimeError(f"the installed FFmpeg has none of the encoders {', '.join(CODEC_PREFERENCE)}")


def _stamp(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S") + f".{nanos // 1_000_000:03d}"


def _picture(slot: VideoSlot, size: tuple[int, int], font: ImageFont.ImageFont) -> Image.Image:
    image, label = None, slot.label
    if slot.overlay is not None:
        try:
            with Image.open(slot.overlay) as opened:
                image = opened.convert("RGB")
        except OSError:
            label = f"overlay unreadable: {slot.overlay.name}"  # shown like a missing overlay
    grey = image is None
    if image is None:
        image = Image.new("RGB", size, GREY)
    elif image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    draw.text((2, 1), _stamp(slot.time_ns), fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    if grey and label:
        draw.text((2, size[1] // 2), label, fill=(255, 255, 255), font=font)
    return image


def frame_size(slots: Sequence[VideoSlot]) -> tuple[int, int] | None:
    """The first readable overlay's size, rounded down to even sides (at least 2x2); None without overlays."""
    for slot in slots:
        if slot.overlay is None:
            continue
        try:
            with Image.open(slot.overlay) as image:
                width, height = image.size
        except OSError:
            continue
        return max(2, width - width % 2), max(2, height - height % 2)
    return None


def write_review_video(path: Path, slots: Sequence[VideoSlot], fps: float) -> VideoInfo | None:
    """Encode ``slots`` (in time order) at ``fps``; None (nothing written) when no slot has an overlay."""
    import av

    size = frame_size(slots)
    if size is None or not slots:
        return None
    codec = choose_codec()
    rate = Fraction(round(fps, 3)).limit_denominator(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()
    with av.open(str(path), mode="w", format="mp4") as container:
        options = {"preset": "veryfast", "crf": "23"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for slot in slots:
            picture = _picture(slot, size, font)
            frame = av.VideoFrame.from_ndarray(np.asarray(picture, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return VideoInfo(codec=codec, fps=float(rate), frames=len(slots), width=size[0], height=size[1])
