"""Images in and out of the endpoints from an operator's machine: request bodies, masks and overlays."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from roadseg.session import UserError
from training.classes import ClassScheme


def warn(message: str) -> None:
    print(f"roadseg: warning: {message}", file=sys.stderr, flush=True)


def jpeg_payload(path: Path) -> tuple[bytes, bool]:
    """The request body for an image file: JPEG files as they are, other images re-encoded as RGB JPEG.

    Returns ``(body, converted)``. The algorithm documents ``image/jpeg`` requests only.
    """
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return data, False
    try:
        with Image.open(io.BytesIO(data)) as img:
            buf = io.BytesIO()
            img.convert("RGB").save(buf, "JPEG", quality=95)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path} is not an image Pillow can read: {exc}") from None
    return buf.getvalue(), True


def decode_mask_png(body: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(body)) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise UserError(f"{what} is a {img.mode} image, expected a single-channel class-index PNG")
            return np.asarray(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{what} is not a PNG mask ({len(body)} bytes): {exc}") from None


def overlay(image: Image.Image, mask: np.ndarray, scheme: ClassScheme, alpha: float = 0.5) -> Image.Image:
    """The image with each classified pixel blended with its class colour; unknown values stay untouched."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if base.shape[:2] != mask.shape:
        mask = np.asarray(Image.fromarray(mask).resize((base.shape[1], base.shape[0]), Image.Resampling.NEAREST))
    colours = np.asarray(scheme.palette(), dtype=np.float32).reshape(256, 3)[mask]
    known = mask < scheme.num_classes
    out = base.copy()
    out[known] = base[known] * (1 - alpha) + colours[known] * alpha
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def write_outputs(image_bytes: bytes, mask: np.ndarray, stem: str, out_dir: Path, scheme: ClassScheme) -> list[Path]:
    """``<stem>_mask.png`` (class indices, scheme palette) and ``<stem>_overlay.png`` (alpha 0.5)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(np.unique(mask).tolist()) - scheme.valid_values())
    if unknown:
        warn(f"{stem}: mask holds values {unknown[:10]} that are not classes of the '{scheme.name}' scheme "
             f"(0..{scheme.num_classes - 1}): is --scheme right?")
    mask_img = Image.fromarray(mask.astype(np.uint8))
    mask_img.putpalette(scheme.palette())  # L -> P: viewers show class colours, values stay class indices
    mask_path = out_dir / f"{stem}_mask.png"
    mask_img.save(mask_path)
    with Image.open(io.BytesIO(image_bytes)) as img:
        if img.size != (mask.shape[1], mask.shape[0]):
            warn(f"{stem}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {img.size[0]}x{img.size[1]}; "
                 "the overlay resizes the mask")
        overlay_path = out_dir / f"{stem}_overlay.png"
        overlay(img, mask, scheme).save(overlay_path)
    return [mask_path, overlay_path]
