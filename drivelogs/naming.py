"""Camera names from topics and frame keys from stamps: the only place the extraction's key layout is spelled.

Keys are ``incoming/<vehicle>/<drive>/<camera>/<stamp>.<jpg|png>`` (contracts.lambda_env.DEFAULT_KEY_PATTERN, whose
drive segment is optional). ``<stamp>`` is a nanosecond UTC time as a sortable string, ``20261203T101500.123456789Z``.
The drive is in the key so that two drives never collide whatever their stamps (cameras that stamp time since boot
give every drive of a vehicle stamps in 1970).

The camera name derived from a topic: split on "/", drop the trailing transport and image-stage parts (compressed,
image_raw, image_rect_color, image, ...), join the rest with "-" and replace every character outside
``[A-Za-z0-9._-]`` with "_", trim ".", "_" and "-" at both ends (``/cam/front/image_raw/compressed`` -> ``cam-front``;
a topic that is nothing but such parts keeps them, ``/image_raw`` -> ``image_raw``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

from contracts.drives import DriveId
from contracts.layout import INFERENCE

TOPIC_SUFFIXES = frozenset({
    "compressed", "compresseddepth", "theora", "zstd", "raw", "image", "image_raw", "image_rect", "image_color",
    "image_rect_color", "image_mono", "image_rect_mono", "image_rect_raw",
})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_camera_name(text: str) -> str:
    """``text`` with every character a key part may not hold replaced ("camera" when nothing is left)."""
    return _UNSAFE.sub("_", text).strip("._-") or "camera"


def camera_name_for_topic(topic: str) -> str:
    """The camera name derived from a topic (the rule is in the module docstring)."""
    parts = [p for p in topic.split("/") if p]
    kept = list(parts)
    while kept and kept[-1].lower() in TOPIC_SUFFIXES:
        kept.pop()
    return safe_camera_name("-".join(kept or parts))


@lru_cache(maxsize=256)
def _second_text(seconds: int) -> str:
    # a camera gives tens of frames per second: the date formatting is done once per second, not per frame
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")


def stamp_text(ns: int) -> str:
    """A nanosecond UTC time as a sortable key part: ``20261203T101500.123456789Z``."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return f"{_second_text(seconds)}.{nanos:09d}Z"


def frame_key(drive: DriveId, camera: str, stamp_ns: int, ext: str, prefix: str = INFERENCE.incoming) -> str:
    """``incoming/<vehicle>/<drive>/<camera>/<stamp>.<ext>``: unique per drive, camera and stamp."""
    return f"{prefix}{drive.vehicle}/{drive.drive}/{camera}/{stamp_text(stamp_ns)}.{ext}"
