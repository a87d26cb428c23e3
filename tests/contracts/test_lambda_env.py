"""contracts.lambda_env: one codec for the Lambdas' environment (the stack writes with it, the functions read)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from contracts.lambda_env import (
    DEFAULT_KEY_PATTERN,
    SERVICE_NAMES,
    EnvironmentContractError,
    PreprocessorEnvironment,
    RolloutEnvironment,
    default_palette,
)

CITYSCAPES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
              "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# The variables the stack wrote before the codec existed: names and formats must not change.
STACK_VARIABLES = {
    "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME", "INFERENCE_BUCKET", "ASYNC_INPUT_PREFIX",
    "RESULTS_PREFIX", "QUARANTINE_PREFIX", "FAILURES_PREFIX", "ASYNC_ENDPOINT_NAME", "REALTIME_ENDPOINT_NAME",
    "CLASS_NAMES", "CLASS_COLORS", "IGNORE_INDEX", "TARGET_WIDTH", "TARGET_HEIGHT", "ROI", "MAX_INPUT_BYTES",
    "MAX_INPUT_PIXELS", "JPEG_QUALITY", "KEY_PATTERN", "VRU_MIN_PIXELS", "WRITE_OVERLAY", "RESTORE_ORIGINAL_SIZE",
    "MODEL_PACKAGE_VERSION", "VRU_CLASSES",
}


def deployed(**changes: object) -> PreprocessorEnvironment:
    """An environment as the stack builds it for one function."""
    values: dict[str, object] = dict(
        service_name=SERVICE_NAMES["ingest"], inference_bucket="roadseg-dev-inference-1a2b",
        async_endpoint_name="roadseg-dev-async", realtime_endpoint_name="roadseg-dev-realtime",
        class_names=CITYSCAPES, target_width=910, target_height=512, max_input_bytes=10_000_000,
        max_input_pixels=30_000_000, jpeg_quality=85, vru_min_pixels=20, model_package_version="7",
        vru_classes=("person", "rider", "bicycle", "motorcycle"))
    values.update(changes)
    return PreprocessorEnvironment(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "environment",
    [
        PreprocessorEnvironment(),
        deployed(),
        deployed(roi=(0.0, 0.25, 1.0, 0.85)),
        deployed(roi=None, write_overlay=True, restore_original_size=True, model_package_version=None),
        deployed(class_names=("road", "person", "bicycle"), class_colors=((1, 2, 3), (4, 5, 6), (7, 8, 9)),
                 ignore_index=3, vru_classes=("person", "bicycle")),
        deployed(class_names=("lane", "kerb"), vru_classes=(),
                 key_pattern=r"^(?P<vehicle>\w+)_(?P<camera>\w+)_(?P<timestamp>\d+)$"),
        deployed(vru_classes=("person", "rider")),
        deployed(class_names=("road", "walker"), vru_classes=()),
    ],
    ids=["defaults", "deployed", "roi", "no-roi-flags-on", "custom-colors", "custom-pattern", "vru", "no-vru"],
)
def test_round_trip(environment: PreprocessorEnvironment) -> None:
    env = environment.to_env()
    assert all(isinstance(v, str) for v in env.values())
    assert PreprocessorEnvironment.from_env(env) == environment


def test_written_variables_keep_their_names_and_formats() -> None:
    env = deployed(roi=(0.0, 0.25, 1.0, 0.85)).to_env()
    assert set(env) == STACK_VARIABLES
    assert env["CLASS_NAMES"] == json.dumps(list(CITYSCAPES))
    assert env["CLASS_COLORS"] == json.dumps([list(c) for c in default_palette(19)])
    assert env["ROI"] == "0.0,0.25,1.0,0.85" and deployed().to_env()["ROI"] == ""
    assert (env["WRITE_OVERLAY"], env["RESTORE_ORIGINAL_SIZE"]) == ("false", "false")
    assert env["KEY_PATTERN"] == DEFAULT_KEY_PATTERN and env["IGNORE_INDEX"] == "255"
    assert env["ASYNC_INPUT_PREFIX"] == "async-input/" and env["POWERTOOLS_METRICS_NAMESPACE"] == "roadseg"
    assert "POWERTOOLS_SERVICE_NAME" not in PreprocessorEnvironment().to_env()  # set per function only


def test_default_palette_fills_unset_colours() -> None:
    environment = PreprocessorEnvironment(class_names=("a", "b", "c"))
    assert environment.class_colors == default_palette(3)
    assert PreprocessorEnvironment.from_env({"CLASS_NAMES": '["a", "b", "c"]'}) == environment


def test_key_pattern_is_compiled_whether_given_as_text_or_regex() -> None:
    assert deployed(key_pattern=DEFAULT_KEY_PATTERN) == deployed(key_pattern=re.compile(DEFAULT_KEY_PATTERN))
    assert deployed().key_pattern.match("veh-1/front/2026-01-01T00:00:00Z.jpg")


def test_tokens_pass_through_to_env_untouched() -> None:
    bucket, version = "${Token[TOKEN.812]}", "${Token[TOKEN.907]}"
    env = deployed(inference_bucket=bucket, model_package_version=version).to_env()
    assert env["INFERENCE_BUCKET"] == bucket and env["MODEL_PACKAGE_VERSION"] == version


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("TARGET_WIDTH", "wide", "integer"),
        ("INFERENCE_BUCKET", "${Token[TOKEN.812]}", "S3 bucket name"),
        ("ROI", "0,0,640,480", "fractions"),
        ("CLASS_NAMES", "road,car", "JSON list"),
        ("CLASS_COLORS", "[[1, 2, 3]]", "has 1 colours but CLASS_NAMES has 19"),
        ("KEY_PATTERN", "(?P<vehicle>.*)", "missing camera, timestamp"),
        ("WRITE_OVERLAY", "maybe", "'true' or 'false'"),
        ("IGNORE_INDEX", "3", "is a class index"),
    ],
)
def test_a_bad_value_is_reported_with_its_variable(name: str, value: str, fragment: str) -> None:
    env = {**deployed().to_env(), name: value}
    with pytest.raises(EnvironmentContractError) as info:
        PreprocessorEnvironment.from_env(env)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{name}:") and fragment in info.value.problems[0]
    assert info.value.missing == ()


def test_every_bad_variable_is_reported_at_once() -> None:
    env = {**deployed().to_env(), "TARGET_WIDTH": "x", "JPEG_QUALITY": "0", "ROI": "nope"}
    with pytest.raises(EnvironmentContractError) as info:
        PreprocessorEnvironment.from_env(env)
    assert [p.split(":")[0] for p in info.value.problems] == ["TARGET_WIDTH", "ROI", "JPEG_QUALITY"]


def test_unset_and_empty_mean_the_default() -> None:
    env = {**deployed().to_env(), "TARGET_WIDTH": " ", "ROI": ""}
    del env["JPEG_QUALITY"]
    parsed = PreprocessorEnvironment.from_env(env)
    assert parsed == deployed(target_width=1024, jpeg_quality=90)


def test_rollout_round_trip_and_defaults() -> None:
    environment = RolloutEnvironment(stack_name="RoadsegDevInference", model_package_group="roadseg-dev-segmentation",
                                     service_name=SERVICE_NAMES["rollout"])
    env = environment.to_env()
    assert env == {"STACK_NAME": "RoadsegDevInference", "MODEL_PACKAGE_GROUP": "roadseg-dev-segmentation",
                   "PARAMETER_NAME": "ModelPackageArn", "POWERTOOLS_SERVICE_NAME": "roadseg-rollout",
                   "NEO_TARGETS": "[]"}  # explicit: no Neo compilation
    assert RolloutEnvironment.from_env(env) == environment
    assert RolloutEnvironment.from_env({**env, "PARAMETER_NAME": "Other"}) == dataclasses.replace(
        environment, parameter_name="Other")
    neo = dataclasses.replace(environment, neo_targets=("ml_g4dn", "jetson_xavier"), neo_role_arn="arn:role",
                              neo_kms_key_arn="arn:key", neo_job_prefix="roadseg-dev-neo-")
    assert RolloutEnvironment.from_env(neo.to_env()) == neo
    with pytest.raises(EnvironmentContractError, match="NEO_TARGETS"):
        RolloutEnvironment.from_env({**env, "NEO_TARGETS": '["ml g4dn"]'})


def test_rollout_names_missing_required_variables() -> None:
    with pytest.raises(EnvironmentContractError) as info:
        RolloutEnvironment.from_env({"PARAMETER_NAME": "ModelPackageArn", "STACK_NAME": ""})
    assert info.value.missing == ("STACK_NAME", "MODEL_PACKAGE_GROUP")
    assert "STACK_NAME: required but not set" in str(info.value)


def test_vru_classes_must_be_classes() -> None:
    env = deployed(vru_classes=("person",)).to_env()
    env["VRU_CLASSES"] = json.dumps(["walker"])
    with pytest.raises(EnvironmentContractError, match=r"VRU_CLASSES: \['walker'\] are not in CLASS_NAMES"):
        PreprocessorEnvironment.from_env(env)
