"""segcore.settings: the environment variable contract."""

from __future__ import annotations

import dataclasses
import json

import pytest
from lambda_testkit import CITYSCAPES

from contracts.lambda_env import PreprocessorEnvironment
from segcore.settings import DEFAULT_KEY_PATTERN, Settings, SettingsError, default_palette, get_settings

MINIMAL = {"CLASS_NAMES": json.dumps(CITYSCAPES)}


def test_defaults() -> None:
    s = Settings.from_env(MINIMAL)
    assert s.inference_bucket is None and s.async_endpoint_name is None and s.realtime_endpoint_name is None
    assert (s.async_input_prefix, s.results_prefix, s.quarantine_prefix, s.failures_prefix) == (
        "async-input/",
        "results/",
        "quarantine/",
        "failures/",
    )
    assert s.class_names == tuple(CITYSCAPES)
    assert len(s.class_colors) == 19 and len(set(s.class_colors)) == 19
    assert s.ignore_index == 255
    assert s.target_size == (1024, 512)
    assert s.roi is None
    assert s.max_input_bytes == 20 * 1024 * 1024 and s.max_input_pixels == 40_000_000 and s.jpeg_quality == 90
    assert s.key_pattern.pattern == DEFAULT_KEY_PATTERN
    assert s.vru_min_pixels == 50 and s.write_overlay is False and s.restore_original_size is False
    assert s.model_package_version is None
    assert s.realtime_max_payload_bytes == 6_291_456
    assert s.async_request_ttl_seconds == 21600


def test_every_variable_parsed() -> None:
    env = {
        "INFERENCE_BUCKET": "my-bucket.1",
        "ASYNC_INPUT_PREFIX": "in",
        "RESULTS_PREFIX": "out/",
        "QUARANTINE_PREFIX": "q/",
        "FAILURES_PREFIX": "f",
        "ASYNC_ENDPOINT_NAME": "async-ep",
        "REALTIME_ENDPOINT_NAME": "rt-ep",
        "ASYNC_REQUEST_TTL_SECONDS": "600",
        "CLASS_NAMES": '["road", "person"]',
        "CLASS_COLORS": "[[1, 2, 3], [4, 5, 6]]",
        "IGNORE_INDEX": "254",
        "TARGET_WIDTH": "640",
        "TARGET_HEIGHT": "320",
        "ROI": "0, 0.25, 1, 0.9",
        "MAX_INPUT_BYTES": "1000",
        "MAX_INPUT_PIXELS": "5000",
        "JPEG_QUALITY": "80",
        "KEY_PATTERN": r"^(?P<vehicle>\w+)-(?P<camera>\w+)-(?P<timestamp>\d+)\.jpg$",
        "VRU_MIN_PIXELS": "10",
        "WRITE_OVERLAY": "TRUE",
        "MODEL_PACKAGE_VERSION": "12",
        "RESTORE_ORIGINAL_SIZE": "yes",
        "REALTIME_MAX_PAYLOAD_BYTES": "4096",
    }
    s = Settings.from_env(env)
    assert s.inference_bucket == "my-bucket.1"
    assert s.async_input_prefix == "in/" and s.failures_prefix == "f/"  # trailing "/" added
    assert s.class_colors == ((1, 2, 3), (4, 5, 6))
    assert s.ignore_index == 254 and s.target_size == (640, 320)
    assert s.roi == (0.0, 0.25, 1.0, 0.9)
    assert (s.max_input_bytes, s.max_input_pixels, s.jpeg_quality, s.vru_min_pixels) == (1000, 5000, 80, 10)
    assert s.key_pattern.match("car1-front-123.jpg")
    assert s.write_overlay and s.restore_original_size
    assert s.model_package_version == "12" and s.realtime_max_payload_bytes == 4096
    assert s.async_request_ttl_seconds == 600


def test_empty_values_mean_defaults() -> None:
    s = Settings.from_env({**MINIMAL, "ROI": "", "TARGET_WIDTH": " ", "CLASS_COLORS": "", "MODEL_PACKAGE_VERSION": ""})
    assert s.roi is None and s.target_width == 1024 and len(s.class_colors) == 19 and s.model_package_version is None


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("TARGET_WIDTH", "wide", "integer"),
        ("TARGET_HEIGHT", "0", "16..8192"),
        ("JPEG_QUALITY", "100", "1..95"),
        ("IGNORE_INDEX", "300", "0..255"),
        ("IGNORE_INDEX", "3", "is a class index"),
        ("ROI", "0,0,640,480", "fractions"),
        ("ROI", "0.5,0,0.2,1", "left < right"),
        ("ROI", "0,0,1", "left,top,right,bottom"),
        ("KEY_PATTERN", "(?P<vehicle>.*)", "missing camera, timestamp"),
        ("KEY_PATTERN", "([", "not a valid regular expression"),
        ("WRITE_OVERLAY", "maybe", "'true' or 'false'"),
        ("REALTIME_MAX_PAYLOAD_BYTES", "7000000", "1..6291456"),
        ("CLASS_NAMES", "road,car", "JSON list"),
        ("CLASS_NAMES", '["road"]', "2..254"),
        ("CLASS_NAMES", '["road", "road"]', "unique"),
        ("CLASS_COLORS", "[[1, 2, 3]]", "has 1 colours but CLASS_NAMES has 19"),
        ("CLASS_COLORS", "[[1, 2, 300]]", "0..255"),
        ("INFERENCE_BUCKET", "Bad_Bucket", "S3 bucket name"),
        ("ASYNC_ENDPOINT_NAME", "bad name", "endpoint name"),
        ("RESULTS_PREFIX", "/results/", "leading '/'"),
        ("ASYNC_REQUEST_TTL_SECONDS", "30", "60..21600"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**MINIMAL, name: value})
    message = str(info.value)
    assert f"{name}:" in message and fragment in message


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**MINIMAL, "TARGET_WIDTH": "x", "JPEG_QUALITY": "0", "ROI": "nope"})
    message = str(info.value)
    assert "TARGET_WIDTH:" in message and "JPEG_QUALITY:" in message and "ROI:" in message


def test_require_names_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="INFERENCE_BUCKET: required by this function but not set") as info:
        Settings.from_env(MINIMAL).require("INFERENCE_BUCKET", "ASYNC_ENDPOINT_NAME")
    assert "ASYNC_ENDPOINT_NAME" in str(info.value)
    with pytest.raises(SettingsError, match="CLASS_NAMES"):
        Settings.from_env({}).require("CLASS_NAMES")
    for name in ("INFERENCE_BUCKET", "CLASS_NAMES"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="INFERENCE_BUCKET"):
            get_settings("INFERENCE_BUCKET")
    finally:
        get_settings.cache_clear()


def test_get_settings_is_cached(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings("INFERENCE_BUCKET")
    monkeypatch.setenv("TARGET_WIDTH", "999")
    assert get_settings("INFERENCE_BUCKET") is first  # read once per process
    get_settings.cache_clear()
    assert get_settings("INFERENCE_BUCKET").target_width == 999


def test_default_palette_is_the_voc_colour_map() -> None:
    palette = default_palette(4)
    assert palette == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert len(set(default_palette(256))) == 256


def test_settings_read_what_the_stack_writes() -> None:
    """Settings is the stack's contract (contracts.lambda_env) plus two Lambda-only tunables at their defaults."""
    written = PreprocessorEnvironment(service_name="roadseg-ingest", inference_bucket="b-1", class_names=("a", "b"),
                                      roi=(0.0, 0.1, 1.0, 0.9), write_overlay=True, model_package_version="3")
    settings = Settings.from_env(written.to_env())
    assert {f.name: getattr(settings, f.name) for f in dataclasses.fields(PreprocessorEnvironment)} == {
        f.name: getattr(written, f.name) for f in dataclasses.fields(PreprocessorEnvironment)}
    assert settings.async_request_ttl_seconds == 21600 and settings.realtime_max_payload_bytes == 6_291_456
