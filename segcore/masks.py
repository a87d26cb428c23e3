"""Segmentation masks: decoding, statistics, restoring to the original frame, colour overlays.

A mask is a single-channel PNG whose pixel values are train IDs (class indices); ``ignore_index``
(255) means "no class". Statistics use one ``np.bincount`` pass for all class counts and, only for the
vulnerable road user (VRU) classes actually present, one comparison plus two ``any`` reductions each
for the bounding box.

Coordinates: bounding boxes are ``[x0, y0, x1, y1]`` with x1/y1 EXCLUSIVE (like Pillow crop boxes).
``bbox_inference`` is in mask pixels; ``bbox`` is mapped to the original (EXIF-oriented) frame through
the crop box: mask pixel x covers original ``[left + x*sx, left + (x+1)*sx)`` with
``sx = crop_width / mask_width``; the box is widened to whole pixels and clipped to the frame.
Fractions are relative to ALL mask pixels (ignored pixels included), so they and the ignored fraction
sum to 1. VRU entries are per class (semantic segmentation has no instances): pixel count and the box
around every pixel of that class.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

# Normalised names (lowercase, letters and digits only) treated as vulnerable road users / drivable.
VRU_CLASS_NAMES = frozenset(
    {
        "person",
        "pedestrian",
        "rider",
        "bicycle",
        "bicyclist",
        "cyclist",
        "motorcycle",
        "motorcyclist",
        "motorcyclescooter",
    }
)
DRIVABLE_CLASS_NAMES = frozenset({"road"})
MAX_MASK_PIXELS = 64_000_000


class MaskError(ValueError):
    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Geometry:
    """Where the mask sits in the original frame: the crop box (original pixels) the mask covers."""

    original_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]

    @classmethod
    def whole(cls, size: tuple[int, int]) -> Geometry:
        return cls(original_size=size, crop_box=(0, 0, size[0], size[1]))


@dataclass(frozen=True)
class VruObject:
    class_name: str
    class_index: int
    pixels: int
    bbox: tuple[int, int, int, int]  # original frame pixels (mask pixels without geometry)
    bbox_inference: tuple[int, int, int, int]  # mask pixels

    def to_dict(self) -> dict:
        return {
            "class": self.class_name,
            "class_index": self.class_index,
            "pixels": self.pixels,
            "bbox": list(self.bbox),
            "bbox_inference": list(self.bbox_inference),
        }


@dataclass(frozen=True)
class MaskStats:
    width: int
    height: int
    total_pixels: int
    ignored_pixels: int
    unknown_pixels: int  # values that are neither a class index nor ignore_index (model/config mismatch)
    class_pixels: dict[str, int]  # only classes present
    class_fractions: dict[str, float]  # only classes present
    drivable_area_fraction: float | None  # None when no class is a drivable class
    vru_objects: tuple[VruObject, ...] = field(default_factory=tuple)
    vru_min_pixels: int = 0

    @property
    def vru_present(self) -> bool:
        return bool(self.vru_objects)


def normalise_class_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def decode_mask_png(data: bytes, *, max_pixels: int = MAX_MASK_PIXELS) -> np.ndarray:
    """The class-index array (H, W) uint8 of a single-channel PNG mask; MaskError explains refusals."""
    if not data:
        raise MaskError("empty_mask", "the mask object has zero bytes")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise MaskError("mask_not_png", f"the mask is not a PNG (starts with {data[:8]!r})")
    try:
        im = Image.open(io.BytesIO(data), formats=["PNG"])
        w, h = im.size
        if w * h > max_pixels:
            raise MaskError("mask_too_large", f"{w}x{h} exceeds {max_pixels} pixels")
        im.load()
    except MaskError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise MaskError("mask_unreadable", f"the mask PNG cannot be decoded: {type(exc).__name__}: {exc}") from None
    if im.mode in ("L", "P"):
        return np.asarray(im, dtype=np.uint8)  # P: the palette indices are the class ids
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise MaskError(
                "mask_values_out_of_range", f"16-bit mask values must be 0..255, found {arr.min()}..{arr.max()}"
            )
        return arr.astype(np.uint8)
    raise MaskError("mask_not_single_channel", f"expected a single-channel (L/P) class-index PNG, got mode {im.mode}")


def encode_mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def mask_statistics(
    mask: np.ndarray,
    class_names: Sequence[str],
    *,
    ignore_index: int = 255,
    vru_min_pixels: int = 50,
    geometry: Geometry | None = None,
    vru_classes: Sequence[str] | None = None,
) -> MaskStats:
    if mask.ndim != 2:
        raise MaskError("mask_not_single_channel", f"expected a 2-D class-index array, got shape {mask.shape}")
    if mask.dtype != np.uint8:
        raise MaskError("mask_dtype", f"expected uint8 class indices, got {mask.dtype}")
    height, width = mask.shape
    total = int(mask.size)
    counts = np.bincount(mask.ravel(), minlength=256)
    n = len(class_names)
    ignored = int(counts[ignore_index]) if 0 <= ignore_index < 256 else 0
    unknown = int(counts[n:].sum()) - (ignored if ignore_index >= n else 0)

    class_pixels: dict[str, int] = {}
    class_fractions: dict[str, float] = {}
    present = np.flatnonzero(counts[:n])
    for index in present:
        name = class_names[index]
        class_pixels[name] = int(counts[index])
        class_fractions[name] = round(int(counts[index]) / total, 6) if total else 0.0

    drivable = [i for i, name in enumerate(class_names) if normalise_class_name(name) in DRIVABLE_CLASS_NAMES]
    drivable_fraction = None
    if drivable:
        drivable_fraction = round(float(counts[drivable].sum()) / total, 6) if total else 0.0

    objects = []
    # The scheme's own VRU classes when the stack names them (VRU_CLASSES), else the built-in names.
    vru = set(vru_classes) if vru_classes is not None else {n for n in class_names
                                                            if normalise_class_name(n) in VRU_CLASS_NAMES}
    for index, name in enumerate(class_names):
        if name not in vru or counts[index] < max(1, vru_min_pixels):
            continue
        hit = mask == index
        rows = np.flatnonzero(hit.any(axis=1))
        cols = np.flatnonzero(hit.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        objects.append(
            VruObject(
                class_name=name,
                class_index=index,
                pixels=int(counts[index]),
                bbox=map_box_to_original(box, (width, height), geometry),
                bbox_inference=box,
            )
        )
    return MaskStats(
        width=width,
        height=height,
        total_pixels=total,
        ignored_pixels=ignored,
        unknown_pixels=max(0, unknown),
        class_pixels=class_pixels,
        class_fractions=class_fractions,
        drivable_area_fraction=drivable_fraction,
        vru_objects=tuple(objects),
        vru_min_pixels=vru_min_pixels,
    )


def map_box_to_original(
    box: tuple[int, int, int, int], mask_size: tuple[int, int], geometry: Geometry | None
) -> tuple[int, int, int, int]:
    """Map an exclusive mask-pixel box into original frame pixels (widened to whole pixels, clipped)."""
    if geometry is None:
        return box
    left, top, right, bottom = geometry.crop_box
    sx = (right - left) / mask_size[0]
    sy = (bottom - top) / mask_size[1]
    ow, oh = geometry.original_size
    x0 = max(0, min(ow, math.floor(left + box[0] * sx + 1e-9)))
    y0 = max(0, min(oh, math.floor(top + box[1] * sy + 1e-9)))
    x1 = max(0, min(ow, math.ceil(left + box[2] * sx - 1e-9)))
    y1 = max(0, min(oh, math.ceil(top + box[3] * sy - 1e-9)))
    return (x0, y0, x1, y1)


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a class-index mask to ``size`` = (width, height)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    im = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "L")
    return np.asarray(im.resize(tuple(size), Image.Resampling.NEAREST))


def restore_to_original(mask: np.ndarray, geometry: Geometry, ignore_index: int = 255) -> np.ndarray:
    """The mask at original frame size: the crop region resized back, ``ignore_index`` outside the ROI."""
    left, top, right, bottom = geometry.crop_box
    region = resize_nearest(mask, (right - left, bottom - top))
    ow, oh = geometry.original_size
    if (left, top, right, bottom) == (0, 0, ow, oh):
        return region
    canvas = np.full((oh, ow), ignore_index, dtype=np.uint8)
    canvas[top:bottom, left:right] = region
    return canvas


def palette_lut(colors: Sequence[Sequence[int]]) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    if len(colors):
        lut[: len(colors)] = np.asarray(colors, dtype=np.uint8)[:256]
    return lut


def overlay_jpeg(
    frame: Image.Image | bytes,
    mask: np.ndarray,
    colors: Sequence[Sequence[int]],
    *,
    ignore_index: int = 255,
    alpha: float = 0.5,
    quality: int = 85,
) -> bytes:
    """The frame with the class colours blended over it (``alpha``); ignored/unknown pixels unchanged.

    The mask is resized (nearest) to the frame when their sizes differ.
    """
    image = Image.open(io.BytesIO(frame)) if isinstance(frame, (bytes, bytearray)) else frame
    image = image.convert("RGB")
    mask = resize_nearest(mask, image.size)
    lut = palette_lut(colors)
    valid = np.zeros(256, dtype=bool)
    valid[: len(colors)] = True
    if 0 <= ignore_index < 256:
        valid[ignore_index] = False
    base = np.asarray(image, dtype=np.float32)
    tint = lut[mask].astype(np.float32)
    blended = base + (tint - base) * alpha
    out = np.where(valid[mask][..., None], blended, base)
    buf = io.BytesIO()
    Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
