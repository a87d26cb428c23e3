"""The signal metrics' contract (names, dimensions, the fixed quarantine reasons), their EMF documents, and the async
input's metadata with the input signals against S3's 2 KB user-metadata limit."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from roadseg_lambda.signal_metrics import frame_count_documents, signal_document, to_line

from contracts.drives import DRIVE_ID_METADATA
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from contracts.service_limits import MAX_S3_USER_METADATA_BYTES, check_s3_user_metadata, s3_user_metadata_bytes
from contracts.signal_metrics import (
    EMF_MAX_DIMENSIONS_PER_SET,
    EMF_MAX_METRICS_PER_DIRECTIVE,
    OTHER_REASON,
    PUBLISHED_SIGNALS,
    QUARANTINE_DIMENSIONS,
    QUARANTINE_REASONS,
    SIGNAL_DIMENSIONS,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
    UNKNOWN_CAMERA,
    camera_value,
    custom_metrics_per_month,
    reason_value,
)
from contracts.signals import (
    INPUT_SIGNALS,
    INPUT_SIGNALS_METADATA_KEY,
    INPUT_SIGNALS_METADATA_MAX_CHARS,
    NUMERIC_SIGNALS,
    OUTPUT_SIGNALS,
)
from segcore.imaging import PreparedFrame
from segcore.keys import INFERENCE_ID_LENGTH, parse_frame_key
from segcore.metadata import MetadataTooLarge, build_async_input_metadata, parse_async_input_metadata

ROOT = Path(__file__).resolve().parents[2]


def test_published_signals_are_the_numeric_input_and_output_signals() -> None:
    assert set(PUBLISHED_SIGNALS) == (set(INPUT_SIGNALS) | set(OUTPUT_SIGNALS)) & set(NUMERIC_SIGNALS)
    assert "dhash" not in SIGNAL_METRICS and "flicker" not in SIGNAL_METRICS
    assert SIGNAL_METRICS["frac_road"] == "FracRoad" and SIGNAL_METRICS["vru_present"] == "VruPresent"
    names = list(SIGNAL_METRICS.values())
    assert len(set(names)) == len(names) and all(re.fullmatch(r"[A-Z][A-Za-z]+", n) for n in names)
    assert len(names) <= EMF_MAX_METRICS_PER_DIRECTIVE
    assert len(QUARANTINE_DIMENSIONS) <= EMF_MAX_DIMENSIONS_PER_SET
    assert not SIGNAL_METRICS_NAMESPACE.startswith("AWS/")


def test_every_quarantine_code_in_the_sources_is_a_fixed_reason() -> None:
    """The Reason dimension's values are a fixed set: every BadFrame code raised anywhere is in it."""
    codes = set()
    for path in [*ROOT.joinpath("segcore").glob("*.py"), *ROOT.joinpath("lambda").glob("*.py")]:
        codes |= set(re.findall(r'BadFrame\(\s*"([a-z_]+)"', path.read_text()))
    assert codes == set(QUARANTINE_REASONS)
    assert reason_value("too_small") == "too_small" and reason_value("a brand new code") == OTHER_REASON


CONFIGURED = ("front", "cam_2.left-up")


@pytest.mark.parametrize(("camera", "value"), [("front", "front"), ("cam_2.left-up", "cam_2.left-up"),
                                                (None, UNKNOWN_CAMERA), ("", UNKNOWN_CAMERA),
                                                ("front cam", UNKNOWN_CAMERA), ("x" * 64, UNKNOWN_CAMERA),
                                                # a loose upload veh/drive-0001/frame.jpg: the drive reads as camera
                                                ("drive-0001", UNKNOWN_CAMERA), ("rear", UNKNOWN_CAMERA)])
def test_camera_values_stay_low_cardinality(camera: str | None, value: str) -> None:
    assert camera_value(camera, CONFIGURED) == value


def test_without_configured_cameras_every_frame_is_unknown() -> None:
    assert camera_value("front", ()) == UNKNOWN_CAMERA
    doc = signal_document({"brightness": 0.5}, environment="e", camera="front", timestamp_ms=0)
    assert doc["Camera"] == UNKNOWN_CAMERA


def test_the_ingest_key_pattern_reads_a_loose_upload_s_drive_as_camera_and_publishes_it_unknown() -> None:
    """The defect this guards: KEY_PATTERN's optional drive group lets veh/drive-0001/frame.jpg match with camera
    drive-0001; without the configured list every such upload was a new camera (14 metrics, 251 queries/hour)."""
    from contracts.lambda_env import PreprocessorEnvironment

    env = PreprocessorEnvironment.from_env({"METRICS_ENVIRONMENT": "roadseg-prod", "METRICS_CAMERAS": "front,rear"})
    assert env.metrics_cameras == ("front", "rear")
    match = env.key_pattern.match("veh/drive-0001/frame.jpg")
    assert match and match.group("camera") == "drive-0001"
    (received,) = frame_count_documents(environment="e", camera=match.group("camera"), quarantine_code=None,
                                        timestamp_ms=1, cameras=env.metrics_cameras)
    assert received["Camera"] == UNKNOWN_CAMERA
    (front,) = frame_count_documents(environment="e", camera="front", quarantine_code=None, timestamp_ms=1,
                                     cameras=env.metrics_cameras)
    assert front["Camera"] == "front"


@pytest.mark.parametrize(("raw", "fragment"), [("front,front cam", "not camera names"),
                                               ("front,unknown", "not camera names"),
                                               (",".join(f"camera-{i:04d}" for i in range(110)), "at most 1024")])
def test_metrics_cameras_refusals(raw: str, fragment: str) -> None:
    from contracts.lambda_env import EnvironmentContractError, PreprocessorEnvironment

    with pytest.raises(EnvironmentContractError, match=fragment) as caught:
        PreprocessorEnvironment.from_env({"METRICS_CAMERAS": raw})
    assert "METRICS_CAMERAS" in str(caught.value)


def test_signal_document_is_emf_with_exactly_environment_and_camera() -> None:
    signals = {"brightness": 0.41, "contrast": None, "sharpness": float("nan"), "saturation": 0.3,
               "dhash": "0123456789abcdef", "frac_road": 0.5, "vru_present": True, "flicker": 0.2}
    doc = signal_document(signals, environment="roadseg-prod", camera="front", timestamp_ms=1_700_000_000_000,
                          cameras=("front",))
    assert doc["Camera"] == "front"
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert doc["_aws"]["Timestamp"] == 1_700_000_000_000 and directive["Namespace"] == SIGNAL_METRICS_NAMESPACE
    assert directive["Dimensions"] == [list(SIGNAL_DIMENSIONS)]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {"Brightness": "None", "Saturation": "None",
                                                                      "FracRoad": "None", "VruPresent": "None"}
    assert (doc["Brightness"], doc["Saturation"], doc["FracRoad"], doc["VruPresent"]) == (0.41, 0.3, 0.5, 1.0)
    assert "Contrast" not in doc and "Sharpness" not in doc and "Flicker" not in doc  # null, NaN, not published
    assert json.loads(to_line(doc)) == doc
    assert signal_document({"dhash": "0123456789abcdef"}, environment="e", camera="c", timestamp_ms=0) is None


def test_frame_counts_carry_the_reason_only_when_quarantined() -> None:
    (received,) = frame_count_documents(environment="e", camera="front cam", quarantine_code=None, timestamp_ms=1,
                                        cameras=("rear",))
    assert received["Camera"] == UNKNOWN_CAMERA and received["FramesReceived"] == 1.0
    _, quarantined = frame_count_documents(environment="e", camera="rear", quarantine_code="truncated",
                                           timestamp_ms=1, cameras=("rear",))
    assert quarantined["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [list(QUARANTINE_DIMENSIONS)]
    assert (quarantined["Camera"], quarantined["Reason"], quarantined["FramesQuarantinedByCamera"]) == (
        "rear", "truncated", 1.0)


def test_cost_in_custom_metrics() -> None:
    # 12 signals + FramesReceived per camera; two reasons seen on each of 10 cameras in one environment
    assert len(SIGNAL_METRICS) == 12
    assert custom_metrics_per_month(10) == 130
    assert custom_metrics_per_month(10, 2, quarantine_reasons=2) == 300


# ------------------------------------------------------------------------- async input metadata and S3's 2 KB

PREPARED = PreparedFrame(jpeg=b"", source_format="jpeg", source_mode="RGB", original_size=(38400, 21600),
                         output_size=(1024, 512), crop_box=(12000, 10000, 38400, 21600), scale=0.0387878787)
LONGEST_SIGNALS = "s" * INPUT_SIGNALS_METADATA_MAX_CHARS
LONGEST_BUCKET = "b" * 63  # S3 bucket names: 3..63 characters
LONGEST_DRIVE = f"{'v' * 64}/{'d' * 64}"  # contracts.drives.DriveId: 64 + 64


def _metadata(key: str, *, signals: str | None = LONGEST_SIGNALS) -> dict[str, str]:
    return build_async_input_metadata(
        inference_id="f" * INFERENCE_ID_LENGTH, source_bucket=LONGEST_BUCKET,
        frame=parse_frame_key(key, re.compile(DEFAULT_KEY_PATTERN)), source_version_id="V" * 32,  # S3's are 32
        prepared=PREPARED, uploaded_at="2026-12-31T23:59:59.999Z", submitted_at="2026-12-31T23:59:59.999Z",
        drive_id=LONGEST_DRIVE, input_signals_text=signals)


def _drive_key(camera_length: int) -> str:
    """A drive frame key with the longest vehicle and drive names and a nanosecond stamp."""
    return f"incoming/{'v' * 64}/{'d' * 64}/{'c' * camera_length}/2026-12-31T23:59:59.999999999Z.jpeg"


def test_the_largest_drive_frame_metadata_fits_with_its_signals() -> None:
    """Every field at its longest (a 63-character camera name, the longest drive id and bucket, 160 characters of
    signals) fits S3's 2 KB, even counting each key's x-amz-meta- prefix (the page leaves that open)."""
    meta = _metadata(_drive_key(63))
    assert meta[INPUT_SIGNALS_METADATA_KEY] == LONGEST_SIGNALS and meta[DRIVE_ID_METADATA] == LONGEST_DRIVE
    assert check_s3_user_metadata(meta) == []
    assert s3_user_metadata_bytes(meta, with_header_prefix=True) <= MAX_S3_USER_METADATA_BYTES
    parsed = parse_async_input_metadata(meta)
    assert parsed.input_signals_text == LONGEST_SIGNALS and parsed.camera == "c" * 63


def test_a_key_too_long_for_the_signals_drops_them_before_the_frame_is_refused() -> None:
    def fits(camera_length: int, signals: str | None) -> bool:
        try:
            return INPUT_SIGNALS_METADATA_KEY in _metadata(_drive_key(camera_length), signals=signals) or not signals
        except MetadataTooLarge:
            return False

    # the longest camera segment that keeps the signals, and the longest the frame is accepted with at all
    with_signals = max(n for n in range(1, 1200) if fits(n, LONGEST_SIGNALS))
    at_all = max(n for n in range(1, 1200) if fits(n, None))
    assert with_signals < at_all  # in between: submitted without its signals, never quarantined for them
    meta = _metadata(_drive_key(with_signals + 1))
    assert INPUT_SIGNALS_METADATA_KEY not in meta and check_s3_user_metadata(meta) == []
    assert parse_async_input_metadata(meta).input_signals() is None
    with pytest.raises(MetadataTooLarge, match="2048"):
        _metadata(_drive_key(at_all + 1))
    # each camera character counts twice (the key and the camera field), the signals once with their key
    assert math.isclose(at_all - with_signals, (len(INPUT_SIGNALS_METADATA_KEY) + INPUT_SIGNALS_METADATA_MAX_CHARS) / 2,
                        abs_tol=1)


def test_check_s3_user_metadata_names_the_largest_values() -> None:
    (problem,) = check_s3_user_metadata({"source-key": "k" * 2000, "camera": "c" * 40, "x": "1"})
    assert "2058 bytes" in problem and "source-key" in problem and "UsingMetadata" in problem
    assert s3_user_metadata_bytes({"é": "é"}) == 4  # UTF-8 bytes, not characters


# ----------------------------------------------------------------------------------- the result's signals object

def _result(signals: dict | None) -> dict:
    from datetime import UTC, datetime

    import numpy as np

    from segcore.masks import mask_statistics
    from segcore.results import build_result_document

    mask = np.zeros((12, 16), dtype=np.uint8)
    return build_result_document(
        inference_id="i", mode="async", source_bucket="b", frame=None, original_size=(16, 12),
        inference_size=(16, 12), crop_box=(0, 0, 16, 12), stats=mask_statistics(mask, ["road", "sky"]),
        model_package_version=None, endpoint_name=None, uploaded_at=None, completed_at=datetime.now(UTC),
        mask_uri=None, overlay_uri=None, signals=signals)


def test_the_result_signals_object_is_optional_and_checked_when_present() -> None:
    from contracts.documents import DocumentError, validate_result
    from contracts.signals import RESULT_SIGNALS_KEY

    assert RESULT_SIGNALS_KEY not in validate_result(_result(None))  # the real-time front's, older documents
    assert validate_result(_result({"brightness": 0.4, "dhash": "0123456789abcdef", "flicker": None}))
    with pytest.raises(DocumentError, match="signals.brightness"):
        validate_result(_result({"brightness": "bright"}))
    with pytest.raises(DocumentError, match="signals.exposure"):
        validate_result(_result({"exposure": 0.4}))
