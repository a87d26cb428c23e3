"""Shared fixtures: small real datasets on disk (Pillow-written PNG/JPEG files in tmp_path)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcore.scenes import write_cityscapes_tree, write_generic_tree

WIDTH, HEIGHT = 64, 32


@pytest.fixture
def cityscapes_tree(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """4 train + 2 val Cityscapes-layout scenes at 64x32."""
    root = tmp_path / "cityscapes"
    return root, write_cityscapes_tree(root, 4, 2, WIDTH, HEIGHT, seed=3)


@pytest.fixture
def generic_tree(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """4 train + 2 validation generic-layout scenes at 64x32 (images/*.jpg, masks/*.png, split.json)."""
    root = tmp_path / "generic"
    return root, write_generic_tree(root, 4, 2, WIDTH, HEIGHT, seed=5)


@pytest.fixture
def save_array() -> Callable[..., Path]:
    """Write a numpy array as an image file, optionally in a given Pillow mode and format."""

    def save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None, **kw) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(array)
        if mode is not None and img.mode != mode:
            img = img.convert(mode)
        img.save(path, fmt, **kw)
        return path

    return save
