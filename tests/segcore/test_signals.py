"""segcore.signals: each signal moves the way its meaning says on real images, masks and probability tensors, and the
drift statistics match hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from contracts.signals import (
    BIN_EDGE_CONVENTION,
    FRAME_SIGNALS,
    MONITORED_SIGNALS,
    SIGNAL_BIN_EDGES,
    validate_reference_profile,
)
from segcore.classes import CAMVID, CITYSCAPES, custom_scheme
from segcore.masks import mask_statistics
from segcore.scenes import generate_scene
from segcore.signals import (
    decode_input_signals,
    dhash_distance,
    distribution_distance,
    downscale_mask,
    encode_input_signals,
    frame_signals,
    histogram,
    input_signals,
    jensen_shannon_distance,
    label_flicker,
    output_signals,
    output_signals_from_fractions,
    population_stability_index,
    probability_signals,
    rarity,
    reference_profile,
    region_scores,
)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return generate_scene(640, 360, seed=3)


def _pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb)


# ------------------------------------------------------------------------------------------------- input


def test_brightness_and_contrast_follow_the_frame(scene):
    rgb = scene[0]
    base = input_signals(rgb)
    night = input_signals(np.asarray(ImageEnhance.Brightness(_pil(rgb)).enhance(0.3)))
    flat = input_signals(np.asarray(ImageEnhance.Contrast(_pil(rgb)).enhance(0.2)))
    assert night["brightness"] == pytest.approx(base["brightness"] * 0.3, rel=0.05)
    assert night["contrast"] < base["contrast"] * 0.4
    assert flat["contrast"] < base["contrast"] * 0.3
    black = input_signals(np.zeros((240, 320, 3), np.uint8))
    white = input_signals(np.full((240, 320, 3), 255, np.uint8))
    assert (black["brightness"], black["contrast"], black["saturation"], black["sharpness"]) == (0, 0, 0, 0)
    assert white["brightness"] == pytest.approx(1.0) and white["saturation"] == 0


def test_sharpness_drops_when_blurred(scene):
    rgb = scene[0]
    sharp = input_signals(rgb)["sharpness"]
    soft = input_signals(np.asarray(_pil(rgb).filter(ImageFilter.GaussianBlur(2))))["sharpness"]
    blurred = input_signals(np.asarray(_pil(rgb).filter(ImageFilter.GaussianBlur(8))))["sharpness"]
    assert sharp > soft > blurred >= 0
    assert blurred < sharp / 10


def test_saturation_grey_vs_saturated():
    grey = np.full((200, 300, 3), 128, np.uint8)
    red = np.zeros((200, 300, 3), np.uint8)
    red[..., 0] = 200
    half = red.copy()
    half[..., 1:] = 100  # (200, 100, 100): S = (200 - 100) / 200
    assert input_signals(grey)["saturation"] == 0
    assert input_signals(red)["saturation"] == pytest.approx(1.0)
    assert input_signals(half)["saturation"] == pytest.approx(0.5)


def test_box_downsample_matches_the_full_frame_mean(scene):
    rgb = np.asarray(_pil(scene[0]).resize((1920, 1080)))
    signals = input_signals(rgb)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert signals["brightness"] == pytest.approx(luma.mean() / 255, abs=0.005)  # factor 8 divides 1920 and 1080
    assert signals["contrast"] == pytest.approx(luma.std() / 255, rel=0.2)  # the box average smooths a little


def test_an_alpha_channel_is_left_out(scene):
    rgb = np.ascontiguousarray(np.asarray(_pil(scene[0]).resize((1280, 720))))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert input_signals(rgba) == input_signals(rgb)


def test_signals_need_an_rgb_frame():
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        input_signals(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        input_signals(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="at least 9 x 9"):
        input_signals(np.zeros((4, 400, 3), np.uint8))


def test_dhash_finds_near_duplicates(scene):
    rgb = scene[0]
    other = generate_scene(640, 360, seed=11)[0]
    h = input_signals(rgb)["dhash"]
    assert len(h) == 16 and int(h, 16) >= 0
    jpeg_like = np.asarray(_pil(rgb).filter(ImageFilter.GaussianBlur(1)))
    darker = np.asarray(ImageEnhance.Brightness(_pil(rgb)).enhance(0.8))
    assert dhash_distance(h, input_signals(jpeg_like)["dhash"]) <= 6
    assert dhash_distance(h, input_signals(darker)["dhash"]) <= 6
    assert dhash_distance(h, input_signals(other)["dhash"]) >= 12
    assert dhash_distance(h, h) == 0


def test_input_signals_encode_and_decode(scene):
    signals = input_signals(scene[0])
    text = encode_input_signals(signals)
    assert len(text) <= 160 and text.startswith("b=") and f"h={signals['dhash']}" in text
    back = decode_input_signals(text)
    assert set(back) == {"brightness", "contrast", "sharpness", "saturation", "dhash"}
    for name in ("brightness", "contrast", "saturation"):
        assert back[name] == pytest.approx(signals[name], abs=5e-5)
    assert back["sharpness"] == pytest.approx(signals["sharpness"], abs=0.05)
    assert back["dhash"] == signals["dhash"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("b=0.5;x=1", "'x=1' is not <code>=<value>"),
    ("b=bright", "b='bright' is not a number"),
    ("b=0.5;b=0.6", "names 'b' twice"),
    ("h=xyz", "not 16 lower-case hex digits"),
    ("s=-3", "finite number >= 0"),
    ("b=nan", "finite number >= 0"),
    ("b" * 200, "at most 160"),
])
def test_decode_refuses_garbage_with_one_clear_line(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        decode_input_signals(text)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ output


def _mask_of(shares: dict[str, float], names, size=(100, 100)) -> np.ndarray:
    flat = np.full(size[0] * size[1], 255, np.uint8)
    start = 0
    for name, share in shares.items():
        count = round(share * flat.size)
        flat[start : start + count] = 255 if name == "ignore" else names.index(name)
        start += count
    return flat.reshape(size)


def test_output_signals_cityscapes_known_mix():
    names = CITYSCAPES.names
    mask = _mask_of({"road": 0.4, "sidewalk": 0.1, "vegetation": 0.05, "terrain": 0.05, "sky": 0.1, "car": 0.1,
                     "bicycle": 0.05, "person": 0.05, "ignore": 0.1}, list(names))
    out = output_signals(mask, names, vru_classes=CITYSCAPES.vulnerable_road_users)
    # shares of the 90 % labelled pixels; bicycle is a VRU here, never a vehicle; terrain is in no group
    assert out["frac_road"] == pytest.approx(0.4 / 0.9, abs=1e-6)
    assert out["frac_sidewalk"] == pytest.approx(0.1 / 0.9, abs=1e-6)
    assert out["frac_vegetation"] == pytest.approx(0.05 / 0.9, abs=1e-6)
    assert out["frac_sky"] == pytest.approx(0.1 / 0.9, abs=1e-6)
    assert out["frac_vehicles"] == pytest.approx(0.1 / 0.9, abs=1e-6)
    assert out["frac_vru"] == pytest.approx(0.1 / 0.9, abs=1e-6)
    assert out["drivable_fraction"] == pytest.approx(0.4 / 0.9, abs=1e-6)
    assert out["vru_present"] == 1
    fractions = {n: float((mask == i).sum()) / mask.size for i, n in enumerate(names) if (mask == i).any()}
    from_doc = output_signals_from_fractions(fractions, vru_classes=CITYSCAPES.vulnerable_road_users, vru_present=True)
    assert from_doc == pytest.approx(out)


def test_output_signals_camvid_and_custom_groups():
    out = output_signals(_mask_of({"tree": 0.5, "bicyclist": 0.5}, list(CAMVID.names)), CAMVID.names,
                         vru_classes=CAMVID.vulnerable_road_users)
    assert (out["frac_vegetation"], out["frac_vru"], out["frac_vehicles"]) == (0.5, 0.5, 0.0)
    scheme = custom_scheme("custom", [("Road", (1, 1, 1)), ("Traffic Cone", (2, 2, 2)), ("Wheelchair user", (3, 3, 3)),
                                      ("Sky", (4, 4, 4))], vulnerable_road_users=["Wheelchair user"])
    mask = _mask_of({"Road": 0.25, "Traffic Cone": 0.25, "Wheelchair user": 0.25, "Sky": 0.25}, list(scheme.names))
    out = output_signals(mask, scheme.names, vru_classes=scheme.vulnerable_road_users,
                         drivable_classes=["Road"])
    assert (out["frac_road"], out["frac_vru"], out["frac_sky"], out["drivable_fraction"]) == (0.25, 0.25, 0.25, 0.25)
    assert out["vru_present"] == 1


def test_output_signals_edge_cases():
    names = CITYSCAPES.names
    all_ignored = output_signals(np.full((20, 20), 255, np.uint8), names)
    assert all_ignored["frac_road"] is None and all_ignored["vru_present"] == 0
    few_people = _mask_of({"person": 0.003, "road": 0.997}, list(names))  # 30 pixels < the 50-pixel VRU minimum
    assert output_signals(few_people, names)["vru_present"] == 0
    assert output_signals(few_people, names, vru_min_pixels=10)["vru_present"] == 1
    no_road = custom_scheme("custom", [("a", (1, 1, 1)), ("b", (2, 2, 2))])
    assert output_signals(np.zeros((5, 5), np.uint8), no_road.names)["drivable_fraction"] is None
    with pytest.raises(ValueError, match="H x W uint8"):
        output_signals(np.zeros((5, 5), np.int32), names)


def test_output_signals_on_a_generated_scene(scene):
    rgb, mask = scene
    out = output_signals(mask, CITYSCAPES.names, vru_classes=CITYSCAPES.vulnerable_road_users)
    # postprocess already counts the classes (mask_statistics): the same signals from its counts, no second pass
    stats = mask_statistics(mask, CITYSCAPES.names, vru_classes=CITYSCAPES.vulnerable_road_users)
    assert output_signals_from_fractions(stats.class_pixels, vru_classes=CITYSCAPES.vulnerable_road_users,
                                         vru_present=stats.vru_present) == out
    total = sum(out[f"frac_{g}"] for g in ("road", "sidewalk", "vegetation", "sky", "vehicles", "vru"))
    assert 0.3 < total <= 1.0 + 1e-6
    assert out["frac_road"] > 0.05 and out["frac_sky"] > 0.05


# ------------------------------------------------------------------------------------------------ flicker


def test_downscale_mask_samples_pixel_centres():
    mask = np.repeat(np.arange(4, dtype=np.uint8), 25)[None, :].repeat(10, axis=0)  # 100 wide, 4 bands
    small = downscale_mask(mask, (8, 2))
    assert small.shape == (2, 8)
    assert small[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_label_flicker():
    names = list(CITYSCAPES.names)
    first = _mask_of({"road": 0.5, "sky": 0.5}, names, size=(96, 96))
    assert label_flicker(None, first) is None
    assert label_flicker(first, first) == 0.0
    second = first.copy()
    second[:, :48][second[:, :48] == names.index("road")] = names.index("car")  # road: the top half; a quarter changes
    assert label_flicker(first, second) == pytest.approx(0.25, abs=0.01)
    # pixels ignored in either mask are not compared
    ignored = second.copy()
    ignored[:, :48] = 255
    assert label_flicker(first, ignored) == 0.0
    assert label_flicker(first, np.full_like(first, 255)) is None
    # masks of different inference sizes are compared at the same downscaled size
    assert label_flicker(first, np.asarray(Image.fromarray(second).resize((192, 192), Image.NEAREST))) == \
        pytest.approx(0.25, abs=0.02)


# ------------------------------------------------------------------------------------------------- model


def test_probability_signals_known_entropy_and_margin():
    classes, h, w = 4, 64, 64
    confident = np.zeros((classes, h, w), np.float32)
    confident[1] = 1.0
    out = probability_signals(confident, region=32)
    assert out == {"mean_entropy": 0.0, "mean_margin": 1.0, "region_score": 0.0}
    uniform = np.full((classes, h, w), 0.25, np.float32)
    out = probability_signals(uniform, region=32)
    assert out["mean_entropy"] == pytest.approx(1.0) and out["mean_margin"] == pytest.approx(0.0)
    # (0.7, 0.1, 0.1, 0.1): entropy -(0.7 ln 0.7 + 3 x 0.1 ln 0.1) / ln 4, margin 0.6
    mixed = np.empty((classes, h, w), np.float32)
    mixed[:] = np.array([0.7, 0.1, 0.1, 0.1], np.float32)[:, None, None]
    expected = -(0.7 * math.log(0.7) + 3 * 0.1 * math.log(0.1)) / math.log(4)
    out = probability_signals(mixed * 5.0)  # unnormalised scores are renormalised per pixel
    assert out["mean_entropy"] == pytest.approx(expected, abs=1e-5)
    assert out["mean_margin"] == pytest.approx(0.6, abs=1e-5)


def test_region_score_picks_the_impure_uncertain_region():
    classes, h, w = 3, 64, 64
    p = np.zeros((classes, h, w), np.float32)
    p[0] = 1.0  # confident and pure everywhere
    # bottom-right region: half class 1, half class 2, each at 0.5 / 0.5 between them (uncertain)
    p[:, 32:, 32:] = 0.0
    p[1, 32:, 32:48] = 0.5
    p[2, 32:, 32:48] = 0.5
    p[1, 32:, 48:] = 0.4
    p[2, 32:, 48:] = 0.6
    grid = region_scores(p, 32)
    assert grid.shape == (2, 2)
    assert grid[0, 0] == grid[0, 1] == grid[1, 0] == 0.0
    assert grid[1, 1] > 0.3
    assert probability_signals(p, region=32)["region_score"] == pytest.approx(float(grid[1, 1]), abs=1e-6)
    with pytest.raises(ValueError, match="C x H x W"):
        probability_signals(np.zeros((1, 4, 4), np.float32))


# ------------------------------------------------------------------------------------- class-mix distances


def test_rarity_and_distribution_distance():
    training = {"road": 0.4, "sky": 0.2, "car": 0.1, "person": 0.01}
    common = rarity({"road": 0.7, "sky": 0.3}, training)
    rare = rarity({"road": 0.7, "person": 0.3}, training)
    unseen = rarity({"road": 0.7, "unicorn": 0.3}, training)
    assert 0 < common < rare < unseen <= 1
    assert common == pytest.approx((0.7 * -math.log(0.4) + 0.3 * -math.log(0.2)) / -math.log(1e-4), abs=1e-6)
    assert rarity({}, training) == 0.0
    assert distribution_distance({"road": 0.5, "sky": 0.5}, {"road": 1, "sky": 1}) == 0.0
    assert distribution_distance({"road": 1.0}, {"sky": 1.0}) == 1.0
    assert 0 < distribution_distance({"road": 0.6, "sky": 0.4}, {"road": 0.5, "sky": 0.5}) < 0.2


# ------------------------------------------------------------------------------------------------ drift


def test_histogram_uses_the_fixed_bins():
    # PR(n:m)'s convention, (low, high]: 0.05 (an inner edge) in the first bin; at or below 0.0 in the first bin,
    # above the last edge in the last
    assert histogram([0.0, 0.04, 0.05, 0.051, 0.99, 1.0, 1.7, -0.2, None, float("nan")], "brightness") == \
        [4, 1] + [0] * 17 + [3]
    assert BIN_EDGE_CONVENTION == "(low, high]"
    sharp = histogram([0.0, 0.05, 1.0, 1e9], "sharpness")
    assert len(sharp) == len(SIGNAL_BIN_EDGES["sharpness"]) - 1 and sum(sharp) == 4 and sharp[-1] == 1
    assert histogram([0, 1, 1], "vru_present") == [1, 2]
    # the numpy fast path (a float or integer array) counts what the per-value path counts
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.random(10_000), np.asarray(SIGNAL_BIN_EDGES["brightness"]), [np.nan, np.inf]])
    assert histogram(values, "brightness") == histogram([*values.tolist(), None], "brightness")
    assert sum(histogram(values, "brightness")) == 10_000 + 21
    assert histogram(np.asarray([0, 1, 1]), "vru_present") == [1, 2]
    with pytest.raises(ValueError, match="not a numeric frame signal"):
        histogram(["abc"], "dhash")


def test_psi_and_js_by_hand():
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == 0.0
    # shares (0.5, 0.5) vs (0.9, 0.1): (0.4 ln 1.8) + (-0.4 ln 0.2)
    assert population_stability_index([50, 50], [90, 10]) == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2),
                                                                            abs=1e-6)
    assert jensen_shannon_distance([1, 2, 3], [2, 4, 6]) == 0.0
    assert jensen_shannon_distance([1, 0], [0, 1]) == 1.0
    # (0.5, 0.5) vs (1, 0): m = (0.75, 0.25); JSD = 0.5 KL(p||m) + 0.5 KL(q||m), base 2
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = 1.0 * math.log2(1 / 0.75)
    assert jensen_shannon_distance([1, 1], [1, 0]) == pytest.approx(math.sqrt((kl_p + kl_q) / 2), abs=1e-6)
    with pytest.raises(ValueError, match="same bins"):
        population_stability_index([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        jensen_shannon_distance([0, 0], [1, 1])


def test_reference_profile_per_camera_and_overall():
    rng = np.random.default_rng(5)
    records = []
    for index in range(1200):
        camera = "front" if index % 2 else "rear"
        record = frame_signals(input={"brightness": float(rng.uniform(0.4, 0.6)) if camera == "front" else 0.1,
                                      "dhash": "0" * 16},
                               output={"frac_road": 0.3, "vru_present": index % 3 == 0})
        record["camera"] = camera
        records.append(record)
    doc = validate_reference_profile(reference_profile(records, camera_of=lambda r: r["camera"], chunk_size=100,
                                                       model_package_version="3"))
    assert doc["frames"] == 1200 and doc["model_package_version"] == "3"
    assert set(doc["cameras"]) == {"*", "front", "rear"}
    assert set(doc["cameras"]["front"]) == set(MONITORED_SIGNALS)
    front, rear, overall = (doc["cameras"][c]["brightness"] for c in ("front", "rear", "*"))
    assert sum(front["counts"]) == 600 and sum(overall["counts"]) == 1200
    # 0.1 is an edge: its bin is (0.05, 0.1] (PR(n:m)'s convention)
    assert rear["counts"][1] == 600 and rear["std"] == 0.0 and rear["mean"] == pytest.approx(0.1)
    assert len(front["chunk_means"]) == 6 and all(0.45 < m < 0.55 for m in front["chunk_means"])
    assert doc["cameras"]["*"]["vru_present"]["counts"] == [800, 400]
    assert doc["cameras"]["*"]["flicker"]["mean"] is None and doc["cameras"]["*"]["flicker"]["counts"] == [0] * 20


def test_frame_signals_is_flat_and_complete():
    record = frame_signals(input={"brightness": 0.5}, output={"frac_sky": 0.2}, flicker=0.1,
                           model={"mean_entropy": 0.3})
    assert list(record) == [s.name for s in FRAME_SIGNALS]
    assert (record["brightness"], record["frac_sky"], record["flicker"], record["mean_entropy"]) == (0.5, 0.2, 0.1, 0.3)
    assert record["contrast"] is None
    with pytest.raises(ValueError, match="not an input signal"):
        frame_signals(input={"frac_sky": 0.2})
