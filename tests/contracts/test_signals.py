"""contracts.signals: the one list of per-frame signals, its class groups, fixed bins and the documents' validators."""

from __future__ import annotations

import copy

import pytest

from contracts.documents import DocumentError
from contracts.signals import (
    CLASS_GROUP_NAMES,
    CLASS_GROUPS,
    FRAME_SIGNALS,
    GROUP_SIGNALS,
    INPUT_SIGNALS,
    MODEL_SIGNALS,
    MONITORED_SIGNALS,
    OUTPUT_SIGNALS,
    SEQUENCE_SIGNALS,
    SIGNAL_BIN_EDGES,
    SIGNAL_KINDS,
    SIGNALS_VERSION,
    normalise_class_name,
    validate_reference_profile,
    validate_result_signals,
)
from segcore.classes import CAMVID, CITYSCAPES
from segcore.masks import VRU_CLASS_NAMES
from segcore.masks import normalise_class_name as squash


def test_the_signal_list_is_what_the_api_names():
    names = [s.name for s in FRAME_SIGNALS]
    assert len(names) == len(set(names))
    assert INPUT_SIGNALS == ("brightness", "contrast", "sharpness", "saturation", "dhash")
    assert OUTPUT_SIGNALS == ("frac_road", "frac_sidewalk", "frac_vegetation", "frac_sky", "frac_vehicles",
                              "frac_vru", "drivable_fraction", "vru_present")
    assert SEQUENCE_SIGNALS == ("flicker",)
    assert MODEL_SIGNALS == ("mean_entropy", "mean_margin", "region_score")
    assert set(INPUT_SIGNALS + OUTPUT_SIGNALS + SEQUENCE_SIGNALS + MODEL_SIGNALS) == set(names)
    assert set(MONITORED_SIGNALS) == set(names) - {"dhash"}
    assert all(s.kind in SIGNAL_KINDS and s.glue_type in ("double", "int", "string") and s.comment and s.unit
               for s in FRAME_SIGNALS)
    assert set(GROUP_SIGNALS.values()) <= set(OUTPUT_SIGNALS)


def test_bins_are_fixed_sorted_and_cover_every_numeric_signal():
    assert set(SIGNAL_BIN_EDGES) == set(MONITORED_SIGNALS)
    for name, edges in SIGNAL_BIN_EDGES.items():
        assert list(edges) == sorted(set(edges)), name
        assert edges[0] == 0.0
    assert len(SIGNAL_BIN_EDGES["brightness"]) == 21 and SIGNAL_BIN_EDGES["brightness"][-1] == 1.0
    assert SIGNAL_BIN_EDGES["brightness"][1] == 0.05
    assert SIGNAL_BIN_EDGES["vru_present"] == (0.0, 0.5, 1.0)
    sharp = SIGNAL_BIN_EDGES["sharpness"]
    ratios = [b / a for a, b in zip(sharp[1:], sharp[2:], strict=False)]
    assert all(r == pytest.approx(10 ** 0.25, rel=1e-4) for r in ratios)  # log-spaced after 0


def test_class_groups_are_disjoint_and_cover_the_built_in_schemes():
    seen: dict[str, str] = {}
    for group, members in CLASS_GROUPS.items():
        assert group in CLASS_GROUP_NAMES
        for name in members:
            assert name == normalise_class_name(name)
            assert name not in seen, f"{name} is in {seen.get(name)} and {group}"
            seen[name] = group
    # the vehicles group never holds what segcore.masks treats as a vulnerable road user
    assert not {squash(n) for n in CLASS_GROUPS["vehicles"]} & VRU_CLASS_NAMES
    assert {squash(n) for n in CLASS_GROUPS["vru"]} == VRU_CLASS_NAMES
    for scheme in (CITYSCAPES, CAMVID):
        normalised = {normalise_class_name(n) for n in scheme.names}
        for group in ("road", "sidewalk", "vegetation", "sky", "vehicles"):
            assert normalised & set(CLASS_GROUPS[group]), (scheme.name, group)
        assert {normalise_class_name(n) for n in scheme.vulnerable_road_users} <= set(CLASS_GROUPS["vru"])
    assert normalise_class_name(" Traffic  Light!") == "traffic_light"


def _profile() -> dict:
    unit = list(SIGNAL_BIN_EDGES["brightness"])
    return {"schema_version": "1.0", "signals_version": SIGNALS_VERSION, "model_package_version": "4", "frames": 3,
            "cameras": {"*": {"brightness": {"edges": unit, "counts": [0] * 19 + [3], "mean": 0.99, "std": 0.0,
                                             "chunk_means": [0.99]}}}}


def test_reference_profile_validator():
    assert validate_reference_profile(_profile())["frames"] == 3
    cases = [
        (lambda d: d.pop("frames"), "frames: required key is missing"),
        (lambda d: d.update(signals_version="0"), "signals_version: is '0'"),
        (lambda d: d["cameras"]["*"].update(dhash=d["cameras"]["*"]["brightness"]), "cameras.*.dhash: is not a moni"),
        (lambda d: d["cameras"]["*"]["brightness"].update(edges=[0, 0.5, 1]), "edges: are not the fixed bin edges"),
        (lambda d: d["cameras"]["*"]["brightness"].update(counts=[1, 2]), "has 2 counts for 20 bins"),
        (lambda d: d["cameras"]["*"]["brightness"]["counts"].__setitem__(0, -1), "must not be negative"),
        (lambda d: d["cameras"]["*"]["brightness"].update(mean="high"), "mean: must be a number, got str"),
    ]
    for change, message in cases:
        doc = copy.deepcopy(_profile())
        change(doc)
        with pytest.raises(DocumentError, match=message.replace("*", r"\*")):
            validate_reference_profile(doc)


def test_result_signals_validator():
    assert validate_result_signals({"brightness": 0.3, "dhash": "00ff00ff00ff00ff", "flicker": None,
                                    "vru_present": 1}) is not None
    for value, message in [
        ([], "must be an object"),
        ({"loudness": 1}, "signals.loudness: is not a frame signal"),
        ({"brightness": "dark"}, "signals.brightness: must be a finite number or null"),
        ({"brightness": True}, "must be a finite number"),
        ({"brightness": float("nan")}, "must be a finite number"),
        ({"dhash": 12}, "signals.dhash: must be a string or null"),
    ]:
        with pytest.raises(DocumentError, match=message):
            validate_result_signals(value)
