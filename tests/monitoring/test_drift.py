"""monitoring.drift (the pure verdicts) on hand-made histograms and on generated streams with injected drift."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.signal_metrics import PUBLISHED_SIGNALS
from contracts.signals import ALL_CAMERAS, validate_reference_profile
from monitoring import simulate
from monitoring.drift import (
    DRIFT,
    INSUFFICIENT,
    NO_REFERENCE,
    OK,
    DriftThresholds,
    WindowDistribution,
    camera_verdict,
    compare_signal,
    reference_band,
    window_from_values,
)
from segcore.signals import reference_profile

FRAMES_PER_WINDOW = 2000  # a camera at ~0.55 Hz over an hour; the benchmark runs 2 Hz (docs/drift.md)
# What a test stream may take at most to raise the verdict after the drift's onset (the obstruction ramps up).
WINDOWS_TO_DETECT = {"night": 1, "remount": 1, "obstruction": 2, "class_mix": 1}


@pytest.fixture(scope="module")
def profile() -> dict:
    return validate_reference_profile(reference_profile(simulate.reference_records(1, 2000), chunk_size=200))


def _windows(window: simulate.Window) -> dict[str, WindowDistribution]:
    return {name: window_from_values(name, values) for name, values in window.signals.items()}


def test_identical_distributions_do_not_drift() -> None:
    reference = {"counts": [10] * 20, "mean": 0.5, "chunk_means": [0.49, 0.5, 0.51]}
    window = WindowDistribution("brightness", tuple([50.0] * 20), 1000, 0.5)
    found = compare_signal("front", "brightness", reference, window, DriftThresholds())
    assert found.status == OK and found.psi == 0 and found.js == 0 and found.reasons == ()


def test_a_shifted_histogram_drifts_on_both_distances() -> None:
    reference = {"counts": [100] * 10 + [0] * 10, "mean": 0.25, "chunk_means": []}
    window = WindowDistribution("brightness", tuple([0.0] * 10 + [100.0] * 10), 1000, 0.75)
    found = compare_signal("front", "brightness", reference, window, DriftThresholds())
    assert found.status == DRIFT and found.reasons == ("distance",)
    assert found.psi > 1 and found.js > 0.9
    assert found.band is None  # fewer than two chunks: no band to judge by


def test_one_distance_alone_is_not_drift() -> None:
    """PSI just over 0.1 with a Jensen-Shannon distance under 0.1: both anchors must agree."""
    reference = {"counts": [500, 500], "mean": None, "chunk_means": []}
    window = WindowDistribution("vru_present", (660.0, 340.0), 1000, None)
    found = compare_signal("front", "vru_present", reference, window, DriftThresholds())
    assert found.psi >= 0.1 and found.js < 0.2
    strict = DriftThresholds(js=found.js + 0.01)
    assert compare_signal("front", "vru_present", reference, window, strict).status == OK
    loose = DriftThresholds(js=found.js - 0.01)
    assert compare_signal("front", "vru_present", reference, window, loose).status == DRIFT


def test_mean_outside_the_reference_band_drifts() -> None:
    reference = {"counts": [10] * 20, "mean": 0.5, "chunk_means": [0.49, 0.5, 0.51, 0.5]}
    band = reference_band(reference["chunk_means"], 3.0)
    assert band is not None and band[0] == pytest.approx(0.5 - 3 * np.std([0.49, 0.5, 0.51, 0.5], ddof=1))
    window = WindowDistribution("brightness", tuple([50.0] * 20), 1000, band[1] + 0.001)
    found = compare_signal("front", "brightness", reference, window, DriftThresholds())
    assert found.status == DRIFT and found.reasons == ("band",)


def test_too_few_frames_and_no_reference_are_not_judged() -> None:
    reference = {"counts": [10] * 20, "mean": 0.5, "chunk_means": []}
    few = WindowDistribution("brightness", tuple([1.0] * 20), 20, 0.5)
    assert compare_signal("front", "brightness", reference, few, DriftThresholds()).status == INSUFFICIENT
    assert compare_signal("front", "brightness", None, WindowDistribution("brightness", tuple([50.0] * 20), 1000),
                          DriftThresholds()).status == NO_REFERENCE
    verdict = camera_verdict("front", {"cameras": {}}, {}, DriftThresholds(), signals=["brightness"])
    assert verdict.status == INSUFFICIENT and verdict.findings[0].status == INSUFFICIENT


def test_window_counts_must_match_the_fixed_bins() -> None:
    with pytest.raises(ValueError, match="21 bins|counts for"):
        WindowDistribution("brightness", (1.0,) * 5, 5)


def test_the_camera_own_reference_wins_over_all_cameras(profile: dict) -> None:
    both = {**profile, "cameras": {ALL_CAMERAS: profile["cameras"][ALL_CAMERAS], "rear":
                                   profile["cameras"][ALL_CAMERAS]}}
    window = next(simulate.stream(3, 1, FRAMES_PER_WINDOW))
    assert camera_verdict("rear", both, _windows(window), DriftThresholds()).reference_camera == "rear"
    assert camera_verdict("front", both, _windows(window), DriftThresholds()).reference_camera == ALL_CAMERAS


@pytest.mark.parametrize("drift", simulate.DRIFTS)
def test_injected_drift_is_found_within_the_stated_windows(profile: dict, drift: str) -> None:
    onset = 3
    verdicts = [camera_verdict("front", profile, _windows(w), DriftThresholds())
                for w in simulate.stream(11, onset + 6, FRAMES_PER_WINDOW, drift, onset)]
    first = next(i for i, v in enumerate(verdicts) if i >= onset and v.drifted)
    assert first - onset + 1 <= WINDOWS_TO_DETECT[drift]
    assert all(v.drifted for v in verdicts[first:])  # and it stays found while the drift lasts
    expected = {"night": "brightness", "remount": "frac_sky", "obstruction": "sharpness",
                "class_mix": "frac_vegetation"}[drift]
    assert expected in verdicts[-1].drifted_signals


def test_an_undrifted_week_keeps_false_windows_rare(profile: dict) -> None:
    """168 hourly windows without drift: the share of windows judged drifted (docs/drift.md reports the rate
    the benchmark measures at 2 Hz; this bound is for the test's smaller windows)."""
    verdicts = [camera_verdict("front", profile, _windows(w), DriftThresholds())
                for w in simulate.stream(5, 168, FRAMES_PER_WINDOW)]
    assert all(v.status in (OK, DRIFT) for v in verdicts)
    false_windows = sum(v.drifted for v in verdicts)
    assert false_windows / len(verdicts) <= 0.25, false_windows
    # The alarm needs 3 drifted windows in a row (monitoring.alarm_windows' default). At the anchors' thresholds a
    # window's own scene mix is sometimes "drift" (it is, statistically): a few false alarms a week, docs/drift.md has
    # the rate over many weeks; at 0.2 none, while every injected drift is still found (next test).
    assert alarms([v.drifted for v in verdicts], 3) <= 2
    strict = DriftThresholds(psi=0.2, js=0.2)
    flags = [camera_verdict("front", profile, _windows(w), strict).drifted
             for w in simulate.stream(5, 168, FRAMES_PER_WINDOW)]
    assert alarms(flags, 3) == 0 and sum(flags) < false_windows


@pytest.mark.parametrize("drift", simulate.DRIFTS)
def test_stricter_thresholds_still_find_every_drift(profile: dict, drift: str) -> None:
    strict = DriftThresholds(psi=0.2, js=0.2)
    verdicts = [camera_verdict("front", profile, _windows(w), strict)
                for w in simulate.stream(11, 4, FRAMES_PER_WINDOW, drift, 0)]
    assert all(v.drifted for v in verdicts[WINDOWS_TO_DETECT[drift] - 1:])


def alarms(flags: list[bool], windows: int) -> int:
    """How often an alarm on ``windows`` drifted windows in a row would go into ALARM (OK -> ALARM transitions)."""
    count = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        count += current == windows
    return count


def test_alarm_counting() -> None:
    assert alarms([True, True, True, True, False, True, True, True], 3) == 2
    assert alarms([True, True, False, True], 3) == 0


def test_every_published_signal_is_judged(profile: dict) -> None:
    window = next(simulate.stream(3, 1, FRAMES_PER_WINDOW))
    verdict = camera_verdict("front", profile, _windows(window), DriftThresholds())
    assert [f.signal for f in verdict.findings] == list(PUBLISHED_SIGNALS)
    assert verdict.to_dict()["findings"][0]["signal"] == PUBLISHED_SIGNALS[0]


@pytest.mark.parametrize("signal", ["brightness", "sharpness", "vru_present"])
def test_window_counts_are_segcore_histograms(signal: str) -> None:
    from contracts.signals import SIGNAL_BIN_EDGES
    from segcore.signals import histogram

    rng = np.random.default_rng(4)
    edges = np.asarray(SIGNAL_BIN_EDGES[signal])
    values = np.concatenate([rng.uniform(edges[0] - 1, edges[-1] * 1.2, 2000), edges, [np.nan, np.inf]])
    window = window_from_values(signal, values)
    assert list(window.counts) == histogram(values.tolist(), signal)
    assert window_from_values(signal, [*values.tolist(), None]).counts == window.counts
    assert window.frames == len(values) - 2 and window.mean == pytest.approx(values[np.isfinite(values)].mean())
