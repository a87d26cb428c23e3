"""Frames for the segcore tests: the same camera frame as the Lambda tests (tests/lambda/lambda_testkit.py)."""

from __future__ import annotations

import numpy as np
import pytest
from lambda_testkit import camera_array, encode


@pytest.fixture(scope="session")
def frame_rgb() -> np.ndarray:
    return camera_array(320, 240)


@pytest.fixture(scope="session")
def frame_jpeg(frame_rgb: np.ndarray) -> bytes:
    return encode(frame_rgb, "JPEG", quality=92)


@pytest.fixture(scope="session")
def frame_png(frame_rgb: np.ndarray) -> bytes:
    return encode(frame_rgb, "PNG")
