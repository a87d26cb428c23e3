"""Fixtures of the operator command's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.scenes import write_generic_tree


@pytest.fixture
def generic_tree(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """4 train + 2 validation generic-layout scenes at 64x32 (images/*.jpg, masks/*.png, split.json)."""
    root = tmp_path / "generic"
    return root, write_generic_tree(root, 4, 2, 64, 32, seed=5)
