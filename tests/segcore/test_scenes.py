from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from segcore.classes import CITYSCAPES
from segcore.scenes import generate_scene, write_broken_frames, write_cityscapes_tree, write_generic_tree

ALWAYS = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole", "traffic sign",
          "traffic light")


def test_shapes_and_types():
    rgb, mask = generate_scene(64, 32, seed=0)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert mask.shape == (32, 64) and mask.dtype == np.uint8


def test_deterministic_per_seed():
    a, b = generate_scene(96, 48, seed=42), generate_scene(96, 48, seed=42)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = generate_scene(96, 48, seed=43)
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("seed", range(5))
def test_scene_classes_present(seed):
    _, mask = generate_scene(128, 64, seed)
    present = {CITYSCAPES.names[v] for v in np.unique(mask)}
    assert set(ALWAYS) <= present
    assert set(np.unique(mask).tolist()) <= set(range(19))  # nothing ignored, nothing outside the scheme


def test_two_wheelers_appear_sometimes():
    seen = [set(np.unique(generate_scene(128, 64, seed)[1]).tolist()) for seed in range(20)]
    for name in ("rider", "bicycle"):
        count = sum(CITYSCAPES.index(name) in s for s in seen)
        assert 0 < count < 20, name


def test_image_agrees_with_mask():
    rgb, mask = generate_scene(256, 128, seed=9)
    rgb = rgb.astype(int)

    def mean(name: str) -> np.ndarray:
        return rgb[mask == CITYSCAPES.index(name)].mean(axis=0)

    sky, veg, road = mean("sky"), mean("vegetation"), mean("road")
    assert sky[2] > sky[0] + 40  # blue
    assert veg[1] > veg[0] and veg[1] > veg[2]  # green
    assert road.max() - road.min() < 20 and road.mean() < sky.mean()  # grey, darker than sky
    # Textured, not a flat recolouring of the mask.
    assert len(np.unique(rgb[mask == CITYSCAPES.index("sky")], axis=0)) > 10


def test_large_scene_is_fast():
    start = time.perf_counter()
    rgb, _ = generate_scene(2048, 1024, seed=1)
    assert time.perf_counter() - start < 1.0
    assert rgb.shape == (1024, 2048, 3)


def test_too_small():
    with pytest.raises(ValueError, match="too small"):
        generate_scene(8, 4, 0)


def test_cityscapes_tree(tmp_path):
    bases = write_cityscapes_tree(tmp_path, 3, 2, 64, 32, seed=1)
    assert len(bases["train"]) == 3 and len(bases["validation"]) == 2
    mapped = set(CITYSCAPES.label_id_to_train_id)
    for split, folder in (("train", "train"), ("validation", "val")):
        for base in bases[split]:
            city = base.split("_")[0]
            image = Image.open(tmp_path / "leftImg8bit" / folder / city / f"{base}_leftImg8bit.png")
            labels = Image.open(tmp_path / "gtFine" / folder / city / f"{base}_gtFine_labelIds.png")
            assert (image.mode, labels.mode, image.size, labels.size) == ("RGB", "L", (64, 32), (64, 32))
            label_ids = set(np.unique(np.asarray(labels)).tolist())
            assert label_ids <= mapped
            train_ids = CITYSCAPES.label_lut()[np.asarray(labels)]
            assert 255 not in train_ids  # every drawn labelId is an evaluated class
    assert {b.split("_")[0] for b in bases["train"]} == {"aachen", "bremen"}


def test_generic_tree(tmp_path):
    names = write_generic_tree(tmp_path, 2, 1, 64, 32, seed=1)
    assert json.loads((tmp_path / "split.json").read_text()) == names
    for name in names["train"] + names["validation"]:
        assert Image.open(tmp_path / "images" / f"{name}.jpg").format == "JPEG"
        mask = Image.open(tmp_path / "masks" / f"{name}.png")
        assert mask.mode == "L" and np.asarray(mask).max() < 19


def test_broken_frames_are_broken(tmp_path):
    names = write_broken_frames(tmp_path)
    assert {"empty.jpg", "truncated.jpg", "truncated.png", "notes.jpg", "animated.gif"} == set(names)
    for name in names:
        path = tmp_path / name
        if name.endswith(".gif"):
            assert Image.open(path).format == "GIF"
            continue
        with pytest.raises((OSError, SyntaxError)):
            with Image.open(path) as img:
                img.load()
