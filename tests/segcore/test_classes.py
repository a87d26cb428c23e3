from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from segcore.classes import (
    CAMVID,
    CITYSCAPES,
    DRIVABLE_CLASSES,
    ClassScheme,
    SegClass,
    custom_scheme,
    get_scheme,
    load_classes_file,
    scheme_from_config,
)

CITYSCAPES_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
# cityscapesScripts labels.py: labelId -> trainId for the evaluated classes.
OFFICIAL_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def test_cityscapes_classes_in_official_order():
    assert CITYSCAPES.names == CITYSCAPES_NAMES
    assert CITYSCAPES.num_classes == 19
    assert [c.train_id for c in CITYSCAPES.classes] == list(range(19))
    assert CITYSCAPES.index("traffic light") == 6
    assert CITYSCAPES.classes[CITYSCAPES.index("car")].color == (0, 0, 142)
    assert CITYSCAPES.classes[CITYSCAPES.index("road")].color == (128, 64, 128)


def test_cityscapes_label_lut_matches_official_mapping():
    lut = CITYSCAPES.label_lut()
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    for label_id in range(256):
        assert lut[label_id] == OFFICIAL_LABEL_TO_TRAIN.get(label_id, 255), label_id


def test_train_to_label_lut_round_trips():
    forward, inverse = CITYSCAPES.label_lut(), CITYSCAPES.train_to_label_lut()
    for train_id in [*range(19), 255]:
        assert forward[inverse[train_id]] == train_id
    assert inverse[255] == 0  # "unlabeled"


def test_palette_for_pillow_p_mode():
    palette = CITYSCAPES.palette()
    assert len(palette) == 768 and all(isinstance(v, int) for v in palette)
    assert palette[255 * 3 : 256 * 3] == [0, 0, 0]
    assert palette[19 * 3 : 255 * 3] == [0] * (236 * 3)
    mask = np.array([[0, 13, 255], [10, 11, 18]], dtype=np.uint8)
    img = Image.fromarray(mask)
    img.putpalette(palette)
    rgb = np.asarray(img.convert("RGB"))
    for (y, x), value in np.ndenumerate(mask):
        expected = (0, 0, 0) if value == 255 else CITYSCAPES.classes[value].color
        assert tuple(rgb[y, x]) == expected


def test_camvid_scheme():
    assert CAMVID.num_classes == 11
    assert CAMVID.names[0] == "sky" and CAMVID.names[-1] == "bicyclist"
    assert CAMVID.label_id_to_train_id is None
    with pytest.raises(ValueError, match="no label-id mapping.*0..10"):
        CAMVID.label_lut()


def test_index_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        CITYSCAPES.index("traffic_light")
    message = str(info.value)
    assert "traffic_light" in message and "traffic light" in message and "bicycle" in message


def test_schemes_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CITYSCAPES.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        CITYSCAPES.label_id_to_train_id[7] = 3  # type: ignore[index]
    assert hash(CITYSCAPES) == hash(CITYSCAPES)


def test_valid_values():
    assert CAMVID.valid_values() == frozenset([*range(11), 255])


def test_custom_scheme():
    scheme = custom_scheme("lanes", [("background", (0, 0, 0)), ("lane", (255, 255, 255)), ("curb", (9, 9, 9))])
    assert scheme.names == ("background", "lane", "curb")
    assert scheme.index("curb") == 2
    assert scheme.palette()[3:6] == [255, 255, 255]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([("only", (1, 2, 3))], "has 1 classes; the algorithm needs 2..254"),
        ([(f"c{i}", (i % 256, 0, 0)) for i in range(255)], "has 255 classes"),
        ([("a", (1, 2, 3)), ("b", (1, 2, 3)), ("a", (0, 0, 0))], "repeated: a"),
        ([("a", (1, 2, 300)), ("b", (1, 2, 3))], "colour .* must be three ints in 0..255"),
        ([("a", (1, 2)), ("b", (1, 2, 3))], "must be \\[r, g, b\\]"),
        ([("", (1, 2, 3)), ("b", (1, 2, 3))], "non-empty name"),
    ],
)
def test_custom_scheme_rejects(classes, message):
    with pytest.raises(ValueError, match=message):
        custom_scheme("bad", classes)


def test_scheme_requires_train_id_order():
    with pytest.raises(ValueError, match="train-id order"):
        ClassScheme("x", (SegClass(1, "a", (0, 0, 0)), SegClass(0, "b", (0, 0, 0))))
    with pytest.raises(ValueError, match="neither a class"):
        ClassScheme("x", (SegClass(0, "a", (0, 0, 0)), SegClass(1, "b", (0, 0, 0))), label_id_to_train_id={3: 7})


def test_get_scheme():
    assert get_scheme("cityscapes") is CITYSCAPES
    assert get_scheme(" CamVid ") is CAMVID
    with pytest.raises(ValueError, match="unknown class scheme 'kitti'.*cityscapes, camvid, custom"):
        get_scheme("kitti")
    with pytest.raises(ValueError, match="needs its class list"):
        get_scheme("custom")
    with pytest.raises(ValueError, match="only allowed with scheme 'custom'"):
        get_scheme("camvid", [("a", (1, 1, 1)), ("b", (2, 2, 2))])


def test_scheme_from_config_objects():
    cfg = SimpleNamespace(
        scheme="custom",
        custom=[SimpleNamespace(name="road", color=(1, 2, 3)), SimpleNamespace(name="other", color=[4, 5, 6])],
    )
    scheme = scheme_from_config(cfg)
    assert scheme.names == ("road", "other")
    assert scheme.classes[1].color == (4, 5, 6)
    assert scheme_from_config(SimpleNamespace(scheme="cityscapes", custom=None)) is CITYSCAPES


def test_load_classes_file(tmp_path):
    good = tmp_path / "classes.json"
    good.write_text(json.dumps([{"name": "road", "color": [1, 2, 3]}, {"name": "car", "color": [4, 5, 6]}]))
    assert get_scheme("custom", load_classes_file(good)).names == ("road", "car")
    bad = tmp_path / "bad.json"
    bad.write_text('{"road": 1}')
    with pytest.raises(ValueError, match="expected a JSON list"):
        load_classes_file(bad)
    with pytest.raises(ValueError, match="cannot read the class list"):
        load_classes_file(tmp_path / "missing.json")


def test_drivable_classes_are_classes_of_every_built_in_scheme():
    for scheme in (CITYSCAPES, CAMVID):
        for name in DRIVABLE_CLASSES:
            scheme.index(name)


@pytest.mark.parametrize(
    ("scheme", "vulnerable", "floors"),
    [
        (CITYSCAPES, ("person", "rider", "bicycle", "motorcycle"),
         {"person": 0.5, "rider": 0.4, "bicycle": 0.4, "motorcycle": 0.3}),
        (CAMVID, ("pedestrian", "bicyclist"), {"pedestrian": 0.5, "bicyclist": 0.4}),
    ],
    ids=["cityscapes", "camvid"],
)
def test_each_built_in_scheme_carries_its_vulnerable_road_users_and_floors(scheme, vulnerable, floors):
    assert scheme.vulnerable_road_users == vulnerable
    assert dict(scheme.safety_iou_floors) == floors
    for name in (*vulnerable, *floors):
        scheme.index(name)
    with pytest.raises(TypeError):
        scheme.safety_iou_floors["person"] = 0.0  # shared constants are read-only


def test_custom_scheme_vulnerable_classes_from_flags_and_no_default_floors():
    scheme = get_scheme("custom", [{"name": "road", "color": [1, 2, 3]},
                                   {"name": "pedestrian", "color": [4, 5, 6], "vulnerable": True},
                                   SimpleNamespace(name="cyclist", color=(7, 8, 9), vulnerable=True),
                                   ("curb", (0, 0, 0))])
    assert scheme.vulnerable_road_users == ("pedestrian", "cyclist")
    assert dict(scheme.safety_iou_floors) == {}
    assert get_scheme("custom", [("a", (1, 1, 1)), ("b", (2, 2, 2))]).vulnerable_road_users == ()
    with pytest.raises(ValueError, match="'vulnerable' must be true or false"):
        get_scheme("custom", [{"name": "a", "color": [1, 1, 1], "vulnerable": "yes"}, ("b", (2, 2, 2))])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vulnerable_road_users": ("a", "person")}, r"vulnerable_road_users: \['person'\] are not classes of the 'x'"),
        ({"vulnerable_road_users": ("a", "a")}, "repeat a class"),
        ({"safety_iou_floors": {"zebra": 0.5}}, r"safety_iou_floors: \['zebra'\] are not classes .*allowed: a, b"),
        ({"safety_iou_floors": {"a": 1.5}}, "IoU floors must be numbers within 0..1"),
    ],
)
def test_scheme_rejects_vulnerable_classes_and_floors_outside_it(changes, message):
    with pytest.raises(ValueError, match=message):
        ClassScheme("x", (SegClass(0, "a", (0, 0, 0)), SegClass(1, "b", (1, 1, 1))), **changes)
