"""One resolution contract: base_size, crop_size and the batch sizes derive from the serving resolution and the
training instance (training.hyperparameters.ServingContract); explicit values win, with a warning when they break it."""

from __future__ import annotations

import pytest

from contracts.instances import TRAINING_FAMILIES, TRAINING_GPUS, gpu_count
from training.hyperparameters import (
    TUNABLE_RANGES,
    ServingContract,
    contract_hyperparameters,
    tuning_ranges,
)

REQUIRED = {"num_classes": 19, "num_training_samples": 2975}


def derive(mapping=None, width=1024, height=512, instance="ml.g4dn.xlarge"):
    return contract_hyperparameters(mapping, ServingContract(width, height, instance), **REQUIRED)


# (instance type, per-GPU batch at 512x512 with resnet-50, GPUs): the table of contracts/instances.py.
FAMILY_DEFAULTS = [
    ("ml.p2.xlarge", 4, 1),
    ("ml.p3.2xlarge", 6, 1),
    ("ml.g4dn.xlarge", 6, 1),
    ("ml.g4dn.2xlarge", 6, 1),
    ("ml.g5.xlarge", 8, 1),
    ("ml.p3.8xlarge", 6, 4),
    ("ml.g4dn.12xlarge", 6, 4),
    ("ml.g5.48xlarge", 8, 8),
    ("ml.p2.16xlarge", 4, 16),
]


@pytest.mark.parametrize(("instance", "per_gpu", "gpus"), FAMILY_DEFAULTS)
def test_defaults_per_instance_family_at_the_default_serving_size(instance, per_gpu, gpus):
    hp, warnings = derive(instance=instance)
    assert (hp.base_size, hp.crop_size) == (1024, 512)  # serving long side; the driving-scene crop
    assert hp.mini_batch_size == hp.validation_mini_batch_size == per_gpu * gpus
    assert warnings == []


@pytest.mark.parametrize(
    ("width", "height", "base_size", "crop_size", "g4dn_batch"),
    [
        (1024, 512, 1024, 512, 6),
        (2048, 1024, 2048, 512, 6),  # Cityscapes' full frame: the crop stays 512
        (1280, 720, 1280, 512, 6),
        (512, 1024, 1024, 512, 6),  # portrait: long and short side, not width and height
        (960, 500, 960, 496, 6),  # short side 500: rounded down to a multiple of 8 (the algorithm rounds up)
        (640, 360, 640, 360, 12),  # below the 480 floor: the serving short side caps the crop; smaller crops, more fit
    ],
)
def test_defaults_follow_the_serving_resolution(width, height, base_size, crop_size, g4dn_batch):
    hp, warnings = derive(width=width, height=height)
    assert (hp.base_size, hp.crop_size, hp.mini_batch_size) == (base_size, crop_size, g4dn_batch)
    assert hp.crop_size % 8 == 0 and hp.crop_size <= min(width, height)
    assert warnings == []


def test_batch_follows_an_explicit_crop_and_backbone():
    assert derive({"crop_size": 480})[0].mini_batch_size == 6  # 6 x (512/480)^2 = 6.8
    assert derive({"crop_size": 256}, width=512, height=256)[0].mini_batch_size == 24  # 6 x 4
    assert derive({"backbone": "resnet-101"})[0].mini_batch_size == 4  # 6 x 3/4 (an estimate)
    assert derive({"backbone": "resnet-101"}, instance="ml.g5.12xlarge")[0].mini_batch_size == 6 * 4


def test_explicit_values_win_without_warning_when_they_keep_the_contract():
    hp, warnings = derive({"base_size": 1200, "crop_size": 480, "mini_batch_size": 4})
    assert (hp.base_size, hp.crop_size, hp.mini_batch_size) == (1200, 480, 4)  # 1200 is 17 % from 1024
    assert hp.validation_mini_batch_size == 6  # still derived
    assert warnings == []


@pytest.mark.parametrize(
    ("override", "used", "fragment"),
    [
        ({"base_size": 520}, ("base_size", 520), "base_size 520 is 49% away from the long side of the serving "
                                                 "resolution 1024x512"),
        ({"base_size": 2048}, ("base_size", 2048), "remove it to use 1024"),
        ({"crop_size": 768}, ("crop_size", 768), "crop_size 768 is above the short side (512)"),
        ({"crop_size": 240}, ("crop_size", 240), "crop_size 240 is below 480: too little context"),
        ({"crop_size": 470}, ("crop_size", 472), "crop_size 472 is below 480"),  # the rounded value is checked
        ({"mini_batch_size": 16}, ("mini_batch_size", 16), "mini_batch_size 16 is above the 6 estimated to fit "
                                                           "ml.g4dn.xlarge at crop_size 512 with resnet-50"),
        ({"validation_mini_batch_size": 32}, ("validation_mini_batch_size", 32), "may run out of GPU memory"),
    ],
)
def test_explicit_values_that_break_the_contract_win_with_a_warning(override, used, fragment):
    hp, warnings = derive(override)
    assert getattr(hp, used[0]) == used[1]
    assert len(warnings) == 1 and fragment in warnings[0], warnings


def test_a_small_serving_frame_accepts_its_own_short_side_as_crop():
    assert derive({"crop_size": 360}, width=640, height=360)[1] == []
    assert "below 360" in derive({"crop_size": 256}, width=640, height=360)[1][0]


def test_required_values_and_invalid_overrides_are_still_checked():
    with pytest.raises(ValueError, match="'crop_size' has invalid value"):
        derive({"crop_size": "wide"})
    with pytest.raises(ValueError, match="num_classes"):
        derive({"num_classes": 7})


def test_a_family_the_algorithm_does_not_document_has_no_batch_estimate():
    with pytest.raises(KeyError):
        derive(instance="ml.p4d.24xlarge")


def test_the_gpu_table_covers_the_training_families_and_marks_its_estimates():
    assert set(TRAINING_GPUS) == set(TRAINING_FAMILIES) == {"p2", "p3", "g4dn", "g5"}
    assert {f: g.memory_gib for f, g in TRAINING_GPUS.items()} == {"p2": 12, "p3": 16, "g4dn": 16, "g5": 24}
    assert not any(g.batch_measured for g in TRAINING_GPUS.values())  # estimates until measured
    assert (gpu_count("ml.g4dn.xlarge"), gpu_count("ml.p3.16xlarge"), gpu_count("ml.g5.24xlarge")) == (1, 8, 4)


@pytest.mark.parametrize(
    ("fits", "expected"), [(32, (4, 32)), (24, (4, 24)), (8, (2, 8)), (6, (2, 6)), (3, (2, 3)), (64, (4, 32))]
)
def test_tuning_searches_batch_sizes_that_fit(fits, expected):
    by_name = {r.name: r for r in tuning_ranges(fits)}
    assert (by_name["mini_batch_size"].min, by_name["mini_batch_size"].max) == expected
    assert {n: r for n, r in by_name.items() if n != "mini_batch_size"} == {
        r.name: r for r in TUNABLE_RANGES if r.name != "mini_batch_size"
    }


def test_tuning_does_not_search_a_batch_size_of_two_or_less():
    assert "mini_batch_size" not in {r.name for r in tuning_ranges(2)}
