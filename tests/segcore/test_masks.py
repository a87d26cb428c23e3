"""segcore.masks: hand-checkable statistics, geometry mapping, decoding, restoring, overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from lambda_testkit import CITYSCAPES, encode, mask_png
from PIL import Image

from segcore.masks import (
    Geometry,
    MaskError,
    decode_mask_png,
    encode_mask_png,
    map_box_to_original,
    mask_statistics,
    overlay_jpeg,
    resize_nearest,
    restore_to_original,
)

ROAD, SIDEWALK, SKY, PERSON, RIDER, CAR, MOTORCYCLE, BICYCLE = 0, 1, 10, 11, 12, 13, 17, 18


def test_fractions_and_vru_on_a_small_mask() -> None:
    mask = np.array(
        [
            [SKY, SKY, SKY, SKY, SKY, SKY, SKY, SKY],
            [SKY, SKY, SKY, SKY, SKY, 255, 255, SKY],
            [CAR, CAR, PERSON, PERSON, SIDEWALK, SIDEWALK, SIDEWALK, SIDEWALK],
            [ROAD, ROAD, PERSON, PERSON, ROAD, ROAD, ROAD, ROAD],
            [ROAD, ROAD, ROAD, PERSON, ROAD, ROAD, BICYCLE, ROAD],
            [ROAD, ROAD, ROAD, ROAD, ROAD, ROAD, ROAD, ROAD],
        ],
        dtype=np.uint8,
    )
    stats = mask_statistics(mask, CITYSCAPES, ignore_index=255, vru_min_pixels=2)
    assert (stats.width, stats.height, stats.total_pixels, stats.ignored_pixels, stats.unknown_pixels) == (
        8,
        6,
        48,
        2,
        0,
    )
    assert stats.class_pixels == {"road": 20, "sidewalk": 4, "sky": 14, "person": 5, "car": 2, "bicycle": 1}
    assert stats.class_fractions["road"] == round(20 / 48, 6)
    assert stats.class_fractions["person"] == round(5 / 48, 6)
    assert "rider" not in stats.class_fractions and "truck" not in stats.class_fractions  # only present classes
    assert sum(stats.class_pixels.values()) + stats.ignored_pixels == stats.total_pixels
    assert stats.drivable_area_fraction == round(20 / 48, 6)
    # person (5 px) passes vru_min_pixels=2, bicycle (1 px) does not
    assert stats.vru_present and [o.class_name for o in stats.vru_objects] == ["person"]
    person = stats.vru_objects[0]
    assert person.pixels == 5 and person.class_index == PERSON
    assert person.bbox_inference == (2, 2, 4, 5)  # x0, y0 inclusive; x1, y1 exclusive
    assert person.bbox == person.bbox_inference  # no geometry: mask coordinates


def test_vru_threshold_and_absence() -> None:
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[0:2, 0:2] = RIDER  # 4 px
    assert not mask_statistics(mask, CITYSCAPES, vru_min_pixels=5).vru_present
    stats = mask_statistics(mask, CITYSCAPES, vru_min_pixels=4)
    assert [(o.class_name, o.bbox) for o in stats.vru_objects] == [("rider", (0, 0, 2, 2))]
    assert mask_statistics(np.full((4, 4), SKY, np.uint8), CITYSCAPES).vru_objects == ()


def test_every_vru_class_gets_a_box() -> None:
    mask = np.full((20, 30), ROAD, dtype=np.uint8)
    mask[1:3, 1:4] = PERSON
    mask[5:9, 10:12] = RIDER
    mask[12:20, 0:1] = MOTORCYCLE
    mask[0:1, 20:30] = BICYCLE
    mask[15:16, 25:26] = BICYCLE  # same class elsewhere: one union box per class
    stats = mask_statistics(mask, CITYSCAPES, vru_min_pixels=1)
    boxes = {o.class_name: o.bbox for o in stats.vru_objects}
    assert boxes == {
        "person": (1, 1, 4, 3),
        "rider": (10, 5, 12, 9),
        "motorcycle": (0, 12, 1, 20),
        "bicycle": (20, 0, 30, 16),
    }


def test_unknown_values_and_custom_ignore() -> None:
    mask = np.array([[0, 1, 19, 200], [254, 254, 0, 0]], dtype=np.uint8)
    stats = mask_statistics(mask, CITYSCAPES, ignore_index=254)
    assert stats.ignored_pixels == 2 and stats.unknown_pixels == 2  # 19 and 200 are not classes
    assert stats.class_pixels == {"road": 3, "sidewalk": 1}


def test_no_drivable_class_gives_null_fraction() -> None:
    stats = mask_statistics(np.zeros((2, 2), np.uint8), ["sky", "pedestrian"])
    assert stats.drivable_area_fraction is None and stats.class_fractions == {"sky": 1.0}


def test_camvid_names_are_vulnerable_road_users() -> None:
    names = ["sky", "road", "pedestrian", "bicyclist"]
    mask = np.array([[2] * 60 + [3] * 60], dtype=np.uint8)
    stats = mask_statistics(mask, names, vru_min_pixels=50)
    assert [o.class_name for o in stats.vru_objects] == ["pedestrian", "bicyclist"]
    assert stats.drivable_area_fraction == 0.0


def test_a_schemes_own_vru_classes_replace_the_built_in_names() -> None:
    names = ["road", "walker", "person"]
    mask = np.array([[1] * 60 + [2] * 60], dtype=np.uint8)
    stats = mask_statistics(mask, names, vru_min_pixels=50, vru_classes=("walker",))
    assert [o.class_name for o in stats.vru_objects] == ["walker"]  # "person" is not one of this scheme's VRUs
    assert mask_statistics(mask, names, vru_min_pixels=50, vru_classes=()).vru_objects == ()


def test_boxes_map_back_to_original_coordinates() -> None:
    # a 4x2 mask covering the crop box (100, 50)-(180, 90) of a 200x100 frame: 20 original px per mask px
    geometry = Geometry(original_size=(200, 100), crop_box=(100, 50, 180, 90))
    assert map_box_to_original((1, 0, 3, 1), (4, 2), geometry) == (120, 50, 160, 70)
    assert map_box_to_original((0, 0, 4, 2), (4, 2), geometry) == (100, 50, 180, 90)
    # whole frame at half resolution (scale 0.5)
    whole = Geometry.whole((640, 480))
    assert map_box_to_original((10, 20, 30, 40), (320, 240), whole) == (20, 40, 60, 80)
    # non-integer scale widens to whole pixels and clips to the frame
    odd = Geometry.whole((1920, 1080))
    assert map_box_to_original((0, 0, 910, 512), (910, 512), odd) == (0, 0, 1920, 1080)
    assert map_box_to_original((1, 1, 2, 2), (910, 512), odd) == (2, 2, 5, 5)


def test_statistics_with_geometry() -> None:
    mask = np.full((60, 80), ROAD, dtype=np.uint8)
    mask[10:20, 30:40] = PERSON
    stats = mask_statistics(mask, CITYSCAPES, vru_min_pixels=50, geometry=Geometry((320, 480), (0, 240, 320, 480)))
    person = stats.vru_objects[0]
    assert person.bbox_inference == (30, 10, 40, 20)
    assert person.bbox == (120, 280, 160, 320)  # x*4, 240 + y*4


def test_decode_mask_png_modes() -> None:
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(decode_mask_png(mask_png(mask)), mask)
    palette = Image.fromarray(mask, "L").convert("P")
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    assert np.array_equal(decode_mask_png(encode(palette, "PNG")), mask)  # indices, not colours
    sixteen = Image.fromarray(mask.astype(np.uint16))
    assert np.array_equal(decode_mask_png(encode(sixteen, "PNG")), mask)
    assert np.array_equal(decode_mask_png(encode_mask_png(mask)), mask)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_mask"),
        (b"\xff\xd8\xff\xe0 not png", "mask_not_png"),
        (encode(Image.new("RGB", (4, 4)), "PNG"), "mask_not_single_channel"),
        (encode(Image.fromarray(np.full((2, 2), 300, np.uint16)), "PNG"), "mask_values_out_of_range"),
        (mask_png(np.zeros((64, 64), np.uint8))[:60], "mask_unreadable"),
    ],
)
def test_decode_mask_png_errors(data: bytes, code: str) -> None:
    with pytest.raises(MaskError) as info:
        decode_mask_png(data)
    assert info.value.code == code


def test_decode_mask_png_size_limit() -> None:
    with pytest.raises(MaskError, match="mask_too_large"):
        decode_mask_png(mask_png(np.zeros((100, 100), np.uint8)), max_pixels=9999)


def test_resize_nearest_and_restore() -> None:
    mask = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    assert np.array_equal(resize_nearest(mask, (4, 4)), np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1))
    assert resize_nearest(mask, (2, 2)) is mask
    restored = restore_to_original(mask, Geometry((6, 5), (2, 1, 6, 5)), ignore_index=255)
    assert restored.shape == (5, 6)
    assert (restored[0] == 255).all() and (restored[:, :2] == 255).all()
    assert np.array_equal(restored[1:, 2:], np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1))
    whole = restore_to_original(mask, Geometry.whole((4, 4)))
    assert whole.shape == (4, 4) and set(np.unique(whole)) == {1, 2, 3, 4}


def test_overlay_blends_classes_and_keeps_ignored_pixels() -> None:
    frame = Image.new("RGB", (64, 32), (100, 100, 100))
    mask = np.full((16, 32), 255, dtype=np.uint8)  # half resolution: resized to the frame
    mask[:, :16] = 0  # left half class 0
    colors = [(200, 0, 0), (0, 200, 0)]
    out = np.asarray(Image.open(io.BytesIO(overlay_jpeg(encode(frame, "JPEG", quality=95), mask, colors)))).astype(int)
    assert out.shape == (32, 64, 3)
    assert np.abs(out[4:28, 4:28] - [150, 50, 50]).max() <= 4  # 0.5 * grey + 0.5 * red
    assert np.abs(out[4:28, 36:60] - [100, 100, 100]).max() <= 4  # ignored: unchanged
