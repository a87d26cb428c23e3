"""Images in and out of the endpoints from an operator's machine: request bodies, masks and overlays.

Every path into the model sends what the ingest function sends: a frame goes through the functions' own
``prepare_frame`` with the environment's preprocessing (target size, ROI, JPEG quality, input limits), read through
the same contract the stack writes the functions' environment with, and the mask that comes back (at the inference
size) is restored to the original frame the way the postprocess function restores masks (nearest neighbour, the
ignore value outside the ROI) before the mask and overlay are written.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from roadseg.session import UserError
from segcore.classes import ClassScheme


def warn(message: str) -> None:
    print(f"roadseg: warning: {message}", file=sys.stderr, flush=True)


def ingest_settings(config: Any) -> Any:
    """The settings the ingest function reads from its environment, for this environment's ``preprocessing``:
    written and read through the same contract (``contracts.lambda_env``) the stack and the function use."""
    from contracts.lambda_env import frame_preparation_environment
    from segcore.settings import Settings

    pre = config.preprocessing
    environment = dataclasses.replace(frame_preparation_environment(pre), key_pattern=pre.key_pattern)
    return Settings.from_env(environment.to_env())


@dataclass(frozen=True)
class ServingRequest:
    """One image file as the ingest function would send it to the endpoints."""

    path: Path
    source: bytes  # the file as it is: the overlay is drawn on it
    prepared: Any  # segcore.imaging.PreparedFrame

    @property
    def body(self) -> bytes:
        """The request body: the inference JPEG."""
        return self.prepared.jpeg

    def describe(self) -> str:
        (w, h), (ow, oh) = self.prepared.original_size, self.prepared.output_size
        crop = self.prepared.crop_box
        roi = "" if crop == (0, 0, w, h) else f", ROI {list(crop)}"
        return f"{self.path.name}: {w}x{h} sent as a {ow}x{oh} JPEG ({len(self.body):,} bytes{roi}), as ingest sends it"

    def restore(self, mask: np.ndarray, ignore_index: int) -> np.ndarray:
        """The endpoint's mask on the original (EXIF-oriented) frame, as the postprocess function restores it."""
        from segcore.masks import Geometry, restore_to_original

        if (mask.shape[1], mask.shape[0]) != tuple(self.prepared.output_size):
            ow, oh = self.prepared.output_size
            warn(f"{self.path.name}: the mask is {mask.shape[1]}x{mask.shape[0]} but the request was {ow}x{oh}; "
                 "it is stretched over the region it was sent for")
        geometry = Geometry(original_size=self.prepared.original_size, crop_box=self.prepared.crop_box)
        return restore_to_original(mask, geometry, ignore_index)


def serving_request(path: Path, settings: Any) -> ServingRequest:
    """``path`` through ``prepare_frame`` with ``settings.prepare_options()`` (``ingest_settings``): the same bytes the
    ingest function would upload under async-input/ for this file."""
    from segcore.imaging import BadFrame, prepare_frame

    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    data = path.read_bytes()
    try:
        prepared = prepare_frame(data, settings.prepare_options())
    except BadFrame as exc:
        raise UserError(f"{path}: the ingest preprocessing refuses this frame ({exc.code}): {exc.reason}") from None
    return ServingRequest(path=path, source=data, prepared=prepared)


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
    """``<stem>_mask.png`` (class indices, scheme palette) and ``<stem>_overlay.png`` (alpha 0.5) over the image with
    its EXIF orientation applied, the orientation ``prepare_frame`` (hence the restored mask) uses."""
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(np.unique(mask).tolist()) - scheme.valid_values())
    if unknown:
        warn(f"{stem}: mask holds values {unknown[:10]} that are not classes of the '{scheme.name}' scheme "
             f"(0..{scheme.num_classes - 1}): is --scheme right?")
    mask_img = Image.fromarray(mask.astype(np.uint8))
    mask_img.putpalette(scheme.palette())  # L -> P: viewers show class colours, values stay class indices
    mask_path = out_dir / f"{stem}_mask.png"
    mask_img.save(mask_path)
    with Image.open(io.BytesIO(image_bytes)) as source:
        img = ImageOps.exif_transpose(source)
        if img.size != (mask.shape[1], mask.shape[0]):
            warn(f"{stem}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {img.size[0]}x{img.size[1]}; "
                 "the overlay resizes the mask")
        overlay_path = out_dir / f"{stem}_overlay.png"
        overlay(img, mask, scheme).save(overlay_path)
    return [mask_path, overlay_path]
