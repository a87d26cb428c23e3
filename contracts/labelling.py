"""Selection for labelling (issue 22 section 2): the selection manifest and the per-frame model scores file.
Standard library only.

``labelling.selection`` reads drive timelines (contracts.drive_timeline) and writes a SELECTION MANIFEST: which frames
to label, why each one (its top signals), and the accounting that reconciles every frame it read:

    candidates = picked + sum(excluded) + sum(suppressed) + sum(not_chosen)

- candidates: distinct frames (by frame_key) of the timeline files inside the drive and time filters;
- excluded: frames that may never be picked, by reason (``EXCLUSION_REASONS``): not processed (quarantined or failed,
  with the timeline's reason codes in ``excluded_reason_codes``), no class fractions, in the validation set, of a
  validation drive (splits are by drive: a new label there would grow the validation set the gate compares on),
  already labelled;
- suppressed: near-duplicates of an earlier pick along the drive (``SUPPRESSION_REASONS``: same camera closer in
  time than the minimum gap, or an image whose dHash lies within the Hamming threshold of a pick's);
- not_chosen: eligible frames left out because a camera's or a vehicle's quota was full, or the budget was
  (``NOT_CHOSEN_REASONS``). Frames ranked below the point where the budget filled are all ``budget``: they are not
  examined for duplicates.

The budget is frames, or labelling hours at ``minutes_per_frame`` (default ``DEFAULT_MINUTES_PER_FRAME``: fine
pixel-level annotation of one Cityscapes frame "required more than 1.5 h on average" - Cordts et al., The
Cityscapes Dataset for Semantic Urban Scene Understanding, CVPR 2016, section 2; correcting a pre-annotated mask is
faster, so a team that measures its own rate should pass it).

``labelling.scoring`` writes the MODEL SCORES of a candidate pool: Parquet, one row per frame, columns
``SCORE_COLUMNS`` (frame_key plus the model signals of contracts.signals), which selection joins by frame_key.

Documents are versioned like those in contracts/documents.py: extra keys are allowed; removing or retyping a key is
a new version.
"""

from __future__ import annotations

from typing import Any

from contracts.documents import INT, NUMBER, STR, DocumentError, ListOf, MapOf, Nullable, _validate

SELECTION_SCHEMA_VERSION = "1.0"
SELECTION_MANIFEST_FILE = "selection.json"
CONTACT_SHEET_FILE = "contact-sheet.png"
POOL_FILE = "pool.txt"  # frame keys of a candidate pool, one a line (what labelling.scoring reads)

DEFAULT_MINUTES_PER_FRAME = 90.0

EXCLUSION_REASONS = ("quarantined", "failed", "no_class_fractions", "validation", "validation_drive", "labelled")
SUPPRESSION_REASONS = ("time_gap", "dhash")
NOT_CHOSEN_REASONS = ("camera_quota", "vehicle_quota", "budget")

# The signals a score is made of: the free ones from the timeline and those of a model scores file. Each is scaled
# to 0..1 over the candidates (min-max) before weighting; a frame without the signal contributes 0 for it.
SCORE_SIGNALS = ("flicker", "rarity", "distribution_distance", "vru_present", "mean_entropy", "mean_margin_inverse",
                 "region_score")
DEFAULT_WEIGHTS = {"flicker": 1.0, "rarity": 1.0, "distribution_distance": 1.0, "vru_present": 0.5,
                   "mean_entropy": 1.0, "mean_margin_inverse": 0.5, "region_score": 1.5}

# The model scores file (Parquet): frame_key and the model signals (names of contracts.signals.MODEL_SIGNALS).
SCORE_COLUMNS = (("frame_key", "string"), ("mean_entropy", "double"), ("mean_margin", "double"),
                 ("region_score", "double"), ("model", "string"))

_SIGNAL = {"name": STR, "value": Nullable(NUMBER), "contribution": NUMBER}
_PICK = {
    "rank": INT,
    "frame_key": STR,
    "drive_id": STR,
    "vehicle": STR,
    "camera": STR,
    "frame_time": STR,  # ISO 8601 UTC
    "frame_time_ns": INT,
    "score": NUMBER,
    "top_signals": ListOf(_SIGNAL),  # at most 3, largest contribution first
    "class_fractions": MapOf(NUMBER),
    "overlay_uri": Nullable(STR),
    "mask_uri": Nullable(STR),
}
SELECTION_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "seed": INT,
        "sources": ListOf(STR),  # the timeline files and folders as given (sorted)
        "source_files": INT,  # the Parquet files read from them
        "filters": {"drives": Nullable(ListOf(STR)), "start": Nullable(STR), "end": Nullable(STR)},
        "budget": {"frames": INT, "hours": Nullable(NUMBER), "minutes_per_frame": NUMBER,
                   "picked_hours": NUMBER},
        "quotas": {"per_camera": Nullable(INT), "per_vehicle": Nullable(INT), "cameras": MapOf(INT),
                   "vehicles": MapOf(INT)},
        "near_duplicates": {"min_gap_s": NUMBER, "max_hamming": Nullable(INT)},
        "weights": MapOf(NUMBER),
        "training_frequency": {"source": STR, "classes": MapOf(NUMBER)},
        "model_scores": Nullable({"sources": ListOf(STR), "frames": INT}),
        "accounting": {
            "rows": INT,  # rows read inside the filters (a frame in two files counts twice here, once below)
            "candidates": INT,
            "excluded": MapOf(INT),
            "excluded_reason_codes": MapOf(MapOf(INT)),  # status -> reason code -> frames
            "suppressed": MapOf(INT),
            "not_chosen": MapOf(INT),
            "picked": INT,
        },
        "picks": ListOf(_PICK),
    },
}


def validate_selection(doc: Any) -> dict[str, Any]:
    """The document itself if it is a valid selection manifest whose counts reconcile, else DocumentError naming the
    key."""
    _validate("selection", doc, SELECTION_SCHEMAS)
    acc = doc["accounting"]
    for key, allowed in (("excluded", EXCLUSION_REASONS), ("suppressed", SUPPRESSION_REASONS),
                         ("not_chosen", NOT_CHOSEN_REASONS)):
        unknown = sorted(set(acc[key]) - set(allowed))
        if unknown:
            raise DocumentError("selection", f"accounting.{key}", f"unknown reason(s) {', '.join(unknown)} "
                                                                  f"(known: {', '.join(allowed)})")
    accounted = acc["picked"] + sum(acc["excluded"].values()) + sum(acc["suppressed"].values()) \
        + sum(acc["not_chosen"].values())
    if accounted != acc["candidates"]:
        raise DocumentError("selection", "accounting", f"picked + excluded + suppressed + not_chosen = {accounted}, "
                                                       f"but candidates = {acc['candidates']}: frames unaccounted for")
    if acc["picked"] != len(doc["picks"]):
        raise DocumentError("selection", "accounting.picked", f"is {acc['picked']} but picks lists "
                                                              f"{len(doc['picks'])}")
    if acc["picked"] > doc["budget"]["frames"]:
        raise DocumentError("selection", "accounting.picked", f"{acc['picked']} exceeds the budget of "
                                                              f"{doc['budget']['frames']} frames")
    if acc["rows"] < acc["candidates"]:
        raise DocumentError("selection", "accounting.rows", f"{acc['rows']} rows cannot hold {acc['candidates']} "
                                                            "distinct frames")
    keys = [p["frame_key"] for p in doc["picks"]]
    if len(set(keys)) != len(keys):
        raise DocumentError("selection", "picks", "a frame is picked twice")
    if [p["rank"] for p in doc["picks"]] != list(range(1, len(keys) + 1)):
        raise DocumentError("selection", "picks", "ranks must be 1, 2, ... in order")
    return doc
