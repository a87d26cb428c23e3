"""Frames for the labelling hand-off tests: real JPEG files and RGB arrays made with Pillow, masks with classes in
blocks (as a model's masks look) and an ignore band, so a round trip that shifts, drops or repaints a pixel fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelling.archive import FrameToLabel, LabelImportError
from segcore.classes import CITYSCAPES, IGNORE_INDEX, ClassScheme

WIDTH, HEIGHT = 64, 48


def block_mask(seed: int, scheme: ClassScheme = CITYSCAPES, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Blocks of 8x8 pixels of random classes, a row of single-pixel speckles and an ignore band at the top."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, scheme.num_classes, size=(height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    mask = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))[:height, :width].copy()
    mask[height // 2, :] = rng.integers(0, scheme.num_classes, size=width, dtype=np.uint8)
    mask[:3, :] = IGNORE_INDEX
    return mask


def only_problem(read: Callable[..., object], *args: object, **kwargs: object) -> str:
    """The message of the LabelImportError ``read(*args, **kwargs)`` raises, checked to be one problem on one line."""
    with pytest.raises(LabelImportError) as excinfo:
        read(*args, **kwargs)
    message = str(excinfo.value)
    assert "\n" not in message and len(excinfo.value.problems) == 1
    return message


def rgb_image(seed: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    return np.random.default_rng(1000 + seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture
def frames(tmp_path: Path) -> list[FrameToLabel]:
    """Four frames: two as JPEG files (Pillow-written), two as RGB arrays; each with its source key and version."""
    result = []
    for i in range(4):
        image: np.ndarray | Path = rgb_image(i)
        if i % 2 == 0:
            path = tmp_path / "source" / f"frame{i}.jpg"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(image).save(path, quality=90)
            image = path
        result.append(
            FrameToLabel(
                name=f"v1__d1__front__{1700000000 + i}",
                image=image,
                mask=block_mask(i),
                source_key=f"incoming/v1/d1/front/{1700000000 + i}.jpg",
                source_version_id=f"version-{i}",
            )
        )
    return result
