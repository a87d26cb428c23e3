from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from training.hyperparameters import (
    ALLOWED,
    HYPERPARAMETER_NAMES,
    TUNABLE_RANGES,
    HyperparameterError,
    Hyperparameters,
    check_incremental,
)

# Every row of the reference table (segmentation-hyperparameters).
REFERENCE_NAMES = {
    "num_classes", "num_training_samples", "backbone", "algorithm", "use_pretrained_model", "base_size",
    "crop_size", "epochs", "learning_rate", "optimizer", "lr_scheduler", "lr_scheduler_step",
    "lr_scheduler_factor", "mini_batch_size", "validation_mini_batch_size", "momentum", "weight_decay",
    "gamma1", "gamma2", "syncbn", "early_stopping", "early_stopping_min_epochs", "early_stopping_patience",
    "early_stopping_tolerance",
}
REQUIRED = {"num_classes": 19, "num_training_samples": 2975}


def make(**values) -> Hyperparameters:
    return Hyperparameters.from_mapping(values, **REQUIRED)


def test_every_reference_hyperparameter_is_modelled():
    assert set(HYPERPARAMETER_NAMES) == REFERENCE_NAMES
    assert set(Hyperparameters.model_fields) == REFERENCE_NAMES
    assert set(ALLOWED) == REFERENCE_NAMES


def test_roadseg_defaults():
    hp = Hyperparameters(**REQUIRED)
    assert (hp.backbone, hp.use_pretrained_model, hp.algorithm) == ("resnet-50", True, "deeplab")
    assert (hp.crop_size, hp.base_size, hp.optimizer, hp.lr_scheduler) == (240, 520, "sgd", "poly")
    assert hp.warnings == [] and hp.notices() == []


def test_required_hyperparameters():
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters.from_mapping({})
    message = str(info.value)
    assert "'num_classes' is required" in message and "2..254" in message
    assert "'num_training_samples' is required" in message


def test_rendered_strings():
    rendered = make(weight_decay=1e-5, learning_rate=0.01, syncbn=True).to_algorithm_strings()
    assert all(isinstance(v, str) for v in rendered.values())
    assert rendered["use_pretrained_model"] == "True"
    assert rendered["syncbn"] == "True" and rendered["early_stopping"] == "False"
    assert rendered["weight_decay"] == "0.00001"  # no "1e-05" for the algorithm to misparse
    assert rendered["learning_rate"] == "0.01"
    assert rendered["num_classes"] == "19" and rendered["num_training_samples"] == "2975"
    assert rendered["algorithm"] == "deeplab"
    # Irrelevant or unset ones are left out.
    for name in ("lr_scheduler_step", "lr_scheduler_factor", "gamma1", "gamma2", "early_stopping_patience"):
        assert name not in rendered


def test_strings_from_config_are_accepted():
    hp = make(use_pretrained_model="False", learning_rate="0.01", epochs="30", syncbn="True", crop_size=" 512 ")
    assert hp.use_pretrained_model is False and hp.syncbn is True
    assert hp.learning_rate == 0.01 and hp.epochs == 30 and hp.crop_size == 512


def test_rendering_round_trips():
    hp = make(optimizer="rmsprop", gamma1=0.95, lr_scheduler="step", lr_scheduler_step="3,6", early_stopping=True)
    rendered = hp.to_algorithm_strings()
    again = Hyperparameters.from_mapping(rendered).to_algorithm_strings()
    assert again == rendered
    assert rendered["gamma1"] == "0.95" and rendered["gamma2"] == "0.9"
    assert rendered["early_stopping_patience"] == "4"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("backbone", "resnet-18", "resnet-50, resnet-101"),
        ("algorithm", "unet", "fcn, psp, deeplab"),
        ("optimizer", "adadelta", "adam, adagrad, nag, rmsprop, sgd"),
        ("lr_scheduler", "linear", "poly, cosine, step"),
        ("learning_rate", "0", "0 < x <= 1"),
        ("learning_rate", "1.5", "0 < x <= 1"),
        ("num_classes", 1, "2..254"),
        ("num_classes", 255, "2..254"),
        ("base_size", 16, "> 16"),
        ("crop_size", "big", "> 16"),
        ("epochs", 0, "positive integer"),
        ("epochs", True, "positive integer"),
        ("mini_batch_size", -4, "positive integer"),
        ("validation_mini_batch_size", 2.5, "positive integer"),
        ("momentum", 0, "0 < x <= 1"),
        ("weight_decay", 1, "0 < x < 1"),
        ("gamma1", 1.5, "0..1"),
        ("gamma2", -0.1, "0..1"),
        ("lr_scheduler_factor", 2, "0..1"),
        ("use_pretrained_model", "maybe", "True, False"),
        ("syncbn", "yes please", "True, False"),
        ("early_stopping_tolerance", 3, "0..1"),
        ("early_stopping_patience", 0, "positive integer"),
        ("early_stopping_min_epochs", -1, ">= 0"),
    ],
)
def test_invalid_values_name_the_hyperparameter_value_and_allowed(name, value, allowed):
    values = {**REQUIRED, name: value}
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters.from_mapping(values)
    message = str(info.value)
    assert f"'{name}'" in message
    assert repr(value.strip() if isinstance(value, str) else value) in message
    assert allowed in message
    assert "pydantic" not in message and "errors.pydantic.dev" not in message


def test_error_is_a_value_error():
    assert issubclass(HyperparameterError, ValueError)


def test_unknown_hyperparameter_lists_known_names():
    with pytest.raises(HyperparameterError) as info:
        make(optmizer="sgd", precision_dtype="float16")
    message = str(info.value)
    assert "'optmizer' (did you mean 'optimizer'?)" in message
    assert "'precision_dtype'" in message
    assert ", ".join(HYPERPARAMETER_NAMES) in message


def test_conflicting_required_value():
    with pytest.raises(HyperparameterError, match="'num_classes' is '11' in the configuration but roadseg computed 19"):
        Hyperparameters.from_mapping({"num_classes": "11"}, num_classes=19, num_training_samples=4)
    assert Hyperparameters.from_mapping({"num_classes": "19"}, num_classes=19, num_training_samples=4).num_classes == 19


def test_direct_construction_still_validates():
    with pytest.raises(ValidationError):
        Hyperparameters(num_classes=19, num_training_samples=0)


def test_model_is_frozen():
    hp = make()
    with pytest.raises(ValidationError):
        hp.optimizer = "adam"


# ------------------------------------------------------------------------------ lr_scheduler_step


def test_step_scheduler_requires_steps():
    with pytest.raises(HyperparameterError, match="lr_scheduler_step is required when lr_scheduler is 'step'"):
        make(lr_scheduler="step")


def test_steps_rejected_without_step_scheduler():
    with pytest.raises(HyperparameterError, match="lr_scheduler_step is only used with lr_scheduler 'step', not 'cos"):
        make(lr_scheduler="cosine", lr_scheduler_step="5")


@pytest.mark.parametrize(("steps", "problem"), [("5,3", "increasing"), ("5,5", "increasing"), ("0,4", "positive"),
                                                ("a,b", "positive"), ("4,", "positive"), ("-2", "positive")])
def test_bad_steps(steps, problem):
    with pytest.raises(HyperparameterError) as info:
        make(lr_scheduler="step", lr_scheduler_step=steps)
    assert "'lr_scheduler_step'" in str(info.value) and problem in str(info.value) and repr(steps) in str(info.value)


@pytest.mark.parametrize(("steps", "rendered"), [(" 5, 10 ", "5,10"), ([4, 8], "4,8"), (7, "7")])
def test_steps_normalised(steps, rendered):
    hp = make(lr_scheduler="step", lr_scheduler_step=steps, lr_scheduler_factor="0.5", epochs=20)
    out = hp.to_algorithm_strings()
    assert out["lr_scheduler_step"] == rendered and out["lr_scheduler_factor"] == "0.5"
    assert hp.warnings == []


def test_steps_beyond_epochs_warn():
    hp = make(lr_scheduler="step", lr_scheduler_step="5,12", epochs=10)
    assert hp.warnings == ["lr_scheduler_step epoch(s) 12 are not below epochs (10) and never take effect"]


# ------------------------------------------------------------------------ optimizer-only values


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "nag", "rmsprop"])
def test_sgd_only_values_warn_and_are_omitted(optimizer):
    hp = make(optimizer=optimizer, momentum="0.95", weight_decay=0.0005)
    rendered = hp.to_algorithm_strings()
    assert "momentum" not in rendered and "weight_decay" not in rendered
    assert len(hp.warnings) == 2
    for name, notice in zip(("momentum", "weight_decay"), hp.warnings, strict=True):
        assert notice.startswith(f"{name} is ignored: only optimizer=sgd uses it, and optimizer is {optimizer}")


def test_sgd_values_rendered_without_warning():
    hp = make(optimizer="sgd", momentum="0.95", weight_decay=0.0005)
    rendered = hp.to_algorithm_strings()
    assert (rendered["momentum"], rendered["weight_decay"]) == ("0.95", "0.0005")
    assert hp.warnings == []


def test_defaults_with_other_optimizer_do_not_warn():
    hp = make(optimizer="adam")
    assert hp.warnings == []
    assert "momentum" not in hp.to_algorithm_strings()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_rmsprop_only_values(optimizer):
    hp = make(optimizer=optimizer, gamma1=0.8, gamma2=0.7)
    assert [w.split(" ")[0] for w in hp.warnings] == ["gamma1", "gamma2"]
    assert all("only optimizer=rmsprop uses it" in w for w in hp.warnings)
    assert "gamma1" not in hp.to_algorithm_strings()
    rms = make(optimizer="rmsprop", gamma1=0.8, gamma2=0.7)
    assert rms.warnings == []
    assert rms.to_algorithm_strings()["gamma2"] == "0.7"


def test_early_stopping_values_without_early_stopping_warn():
    hp = make(early_stopping_patience=3)
    assert hp.warnings[0].startswith("early_stopping_patience is ignored: only early_stopping=True uses it")
    assert "early_stopping_patience" not in hp.to_algorithm_strings()


# --------------------------------------------------------------------------------------- crop_size


@pytest.mark.parametrize(("given", "used"), [(250, 256), (241, 248), (17, 24), (255, 256)])
def test_crop_size_rounded_up_with_notice(given, used):
    hp = make(crop_size=given)
    assert hp.crop_size == used
    assert hp.to_algorithm_strings()["crop_size"] == str(used)
    assert hp.warnings == [f"crop_size {given} is rounded up to {used} by the algorithm"]
    assert "warnings" not in hp.model_dump() and "_notices" not in hp.model_dump()


def test_crop_size_multiple_of_8_unchanged():
    hp = make(crop_size=512)
    assert hp.crop_size == 512 and hp.warnings == []


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=17, max_value=4096))
def test_crop_size_property(crop):
    used = make(crop_size=crop).crop_size
    assert used % 8 == 0 and crop <= used < crop + 8


# ------------------------------------------------------------------------------------ incremental


def test_incremental_same_shape_passes():
    new = make(crop_size=512)
    check_incremental(new.to_algorithm_strings(), make(crop_size=512, epochs=3, learning_rate=0.0001))


def test_incremental_mismatch_names_each():
    previous = {"num_classes": "11", "backbone": "resnet-101", "algorithm": "psp", "crop_size": "480"}
    with pytest.raises(HyperparameterError) as info:
        check_incremental(previous, make())
    message = str(info.value)
    for part in ("num_classes: earlier model '11', new '19'", "backbone: earlier model 'resnet-101', new 'resnet-50'",
                 "algorithm: earlier model 'psp', new 'deeplab'", "crop_size: earlier model '480', new '240'"):
        assert part in message


def test_incremental_uses_algorithm_defaults_and_quoted_values():
    # An earlier job that did not set algorithm ran the algorithm's own default, fcn.
    with pytest.raises(HyperparameterError, match="algorithm: earlier model 'fcn', new 'deeplab'"):
        check_incremental({"num_classes": "19"}, make())
    check_incremental({"num_classes": '"19"', "algorithm": '"deeplab"', "crop_size": "250"}, make(crop_size=256))


def test_incremental_needs_num_classes():
    with pytest.raises(HyperparameterError, match="no 'num_classes'"):
        check_incremental({"algorithm": "deeplab"}, make())


# ----------------------------------------------------------------------------------------- tuning


def test_tunable_ranges():
    by_name = {r.name: r for r in TUNABLE_RANGES}
    assert set(by_name) == {"learning_rate", "mini_batch_size", "momentum", "weight_decay", "optimizer", "algorithm"}
    lr = by_name["learning_rate"]
    assert (lr.kind, lr.min, lr.max, lr.scaling) == ("continuous", 1e-4, 1e-1, "Logarithmic")
    assert by_name["mini_batch_size"].as_parameter_range() == {
        "Name": "mini_batch_size", "MinValue": "4", "MaxValue": "32", "ScalingType": "Auto"}
    assert by_name["optimizer"].as_parameter_range() == {"Name": "optimizer", "Values": ["sgd", "adam", "rmsprop"]}
    assert by_name["weight_decay"].as_parameter_range()["MinValue"] == "0.00001"


def test_tunable_ranges_are_valid_hyperparameters():
    for r in TUNABLE_RANGES:
        candidates = list(r.values) if r.kind == "categorical" else [r.min, r.max]
        for value in candidates:
            value = int(value) if r.kind == "integer" else value
            assert getattr(make(**{r.name: value}), r.name) == value
