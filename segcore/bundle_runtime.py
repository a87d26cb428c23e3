"""A frame in, a mask out, the way an edge bundle says: the one definition of the network's input and output.

The export step (export/model.py, Python 3.11 with MXNet) measures parity with these functions, and
``roadseg segment`` (any Python with ONNX Runtime) segments with them, so both feed the network the same tensor.
The frame itself is prepared first by the ingest function's own ``prepare_frame`` (validation, EXIF orientation,
ROI, fit into the serving size, JPEG); this module starts from that inference JPEG. numpy and Pillow only.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from contracts.bundle import FIT, MEAN, STD


def network_input(jpeg: bytes | Image.Image, network_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The float32 NCHW tensor [1, 3, H, W] for ``network_size`` = (width, height), and the frame's own (width,
    height) inside it. RGB scaled to 0..1, normalised with ``MEAN``/``STD``; a frame smaller than the network
    (another aspect ratio) is padded bottom-right with zeros (``FIT``), i.e. with the mean colour."""
    im = jpeg if isinstance(jpeg, Image.Image) else Image.open(io.BytesIO(jpeg))
    im = im.convert("RGB")
    width, height = network_size
    if im.width > width or im.height > height:
        raise ValueError(
            f"a {im.width}x{im.height} frame does not fit the network's {width}x{height} input ({FIT}): prepare it"
            " with the bundle's preprocessing first"
        )
    rgb = np.asarray(im, dtype=np.float32) / 255.0
    normalised = (rgb - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    tensor = np.zeros((1, 3, height, width), dtype=np.float32)
    tensor[0, :, : im.height, : im.width] = normalised.transpose(2, 0, 1)
    return tensor, (im.width, im.height)


def logits_to_mask(logits: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Class indices (uint8, height x width of the frame) from logits [1, C, H, W]: argmax over classes, the
    padding cut off."""
    if logits.ndim != 4 or logits.shape[0] != 1:
        raise ValueError(f"expected logits of shape [1, C, H, W], got {list(logits.shape)}")
    if logits.shape[1] > 255:
        raise ValueError(f"{logits.shape[1]} classes do not fit a uint8 mask (255 is the ignore value)")
    width, height = frame_size
    return np.argmax(logits[0, :, :height, :width], axis=0).astype(np.uint8)
