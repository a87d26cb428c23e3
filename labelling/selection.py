"""Choose the frames worth labelling from drive timelines (issue 22 section 2): ``roadseg label select`` runs this.

Input: the drive timeline's Parquet files (contracts.drive_timeline: the table's Hive-partitioned copy
``.../vehicle=<v>/camera=<c>/date=<d>/part-<drive>.parquet`` or the per-drive ``timeline.parquet``; a local folder is
searched recursively), read with DuckDB. Optional filters: drive ids (``<vehicle>/<drive>``) and a time range
(UTC; the ``date`` partition prunes files when present).

Public API (the CLI is a thin layer over it):

    version = version_exclusions(json.loads(manifest_text))          # optional: the current dataset version
    selection = select_frames(paths, budget=Budget(hours=40), quotas=Quotas(per_camera=50), seed=7,
                              labelled_keys=version.labelled_keys, validation_keys=version.validation_keys,
                              validation_drives=version.validation_drives,
                              training_frequency=version.class_frequency or None, model_scores=[scores], ...)
    write_selection(selection, out / SELECTION_MANIFEST_FILE)       # contracts.labelling manifest, validated
    write_pool(selection, out / POOL_FILE)                          # frame keys, for labelling.scoring
    write_contact_sheet(selection, out / CONTACT_SHEET_FILE, images=local_images(selection, bucket_copy))

How a frame is chosen:

1. ELIGIBLE: processed, has class fractions, not in ``validation_keys``, not of one of ``validation_drives``
   (splits are by drive: a new label there would grow the validation set), not in ``labelled_keys``; every other
   frame is counted under its reason (quarantined and failed with the timeline's reason codes). A frame present in
   two files (the per-drive copy and the table's copy) counts once. ``version_exclusions(manifest)`` reads all three
   and the class frequency from a dataset version's manifest (labelling.versions).
2. SCORE = sum over ``contracts.labelling.SCORE_SIGNALS`` of weight x signal scaled min-max to 0..1 over the eligible
   frames (a frame without a signal, e.g. flicker of a camera's first frame or a model signal outside the scored
   pool, contributes 0 for it): label flicker (timeline column ``flicker``), rarity of the frame's class mix for the
   training set and its Jensen-Shannon distance from the training distribution (segcore.signals.rarity and
   distribution_distance, computed here vectorised over all frames at once and tested equal to them), vulnerable
   road users present, and the model signals mean_entropy, 1 - mean_margin and region_score where a scores file of
   ``labelling.scoring`` (or the timeline) has them. The training distribution is a JSON object {class: pixel share}
   (a dataset version's class frequencies); without one, the eligible frames' own mean class mix.
3. GREEDY in score order; ties broken by a seeded hash of the frame key (md5 of ``<frame_key>:<seed>``), never by
   file order, so a seed gives the same picks whatever the files' order. A frame is SUPPRESSED when it is a
   near-duplicate of an earlier pick of its drive: same camera closer than ``min_gap_s``, or (any camera) a dHash
   within ``max_hamming`` bits. It is NOT CHOSEN when its camera's or vehicle's quota is full, and every frame ranked
   after the budget filled is not chosen for the budget. The counts reconcile (contracts.labelling).

DuckDB does the reading, filtering, exclusions and joins; numpy the scores and order; Python only walks the ranked
frames until the budget is full. bench/selection.py measures it against a plain pyarrow scan and aggregate of the
same files: 1.7-2.3x the scan's time over 1,000,000 frames on the 2-core build machine, peak RSS ~1.5 GB (~1.5 KB per
frame in the filters: the frames' rows are held in memory once by DuckDB and once as Arrow/numpy columns), so a
year of drives is selected a time range or a set of drives at a time.

Bad input raises ``SelectionError`` with one line naming what and where (the CLI's exit code 2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from contracts.drive_timeline import FRAME_STATUSES
from contracts.labelling import (
    DEFAULT_MINUTES_PER_FRAME,
    DEFAULT_WEIGHTS,
    EXCLUSION_REASONS,
    NOT_CHOSEN_REASONS,
    SCORE_SIGNALS,
    SELECTION_SCHEMA_VERSION,
    SUPPRESSION_REASONS,
    validate_selection,
)
from contracts.signals import MODEL_SIGNALS
from labelling.splits import NO_DRIVE_PREFIX

MIN_FREQUENCY = 1e-4  # segcore.signals.MIN_FREQUENCY: a class the training set lacks counts as this rare
REQUIRED_COLUMNS = ("frame_key", "drive_id", "camera", "frame_time_ns", "status", "class_fractions")
NS_PER_S = 1_000_000_000


class SelectionError(ValueError):
    """Bad input to a selection: one line naming what is wrong, where, and how to fix it."""


@dataclass(frozen=True)
class Budget:
    """Frames to label: ``frames``, or ``hours`` of labelling at ``minutes_per_frame`` (exactly one of the two)."""

    frames: int | None = None
    hours: float | None = None
    minutes_per_frame: float = DEFAULT_MINUTES_PER_FRAME

    def __post_init__(self) -> None:
        if (self.frames is None) == (self.hours is None):
            raise SelectionError("budget: give frames or labelling hours (one of the two)")
        if self.frames is not None and (isinstance(self.frames, bool) or self.frames < 1):
            raise SelectionError(f"budget: frames must be a positive whole number, got {self.frames!r}")
        if self.hours is not None and not (math.isfinite(self.hours) and self.hours > 0):
            raise SelectionError(f"budget: hours must be a positive number, got {self.hours!r}")
        if not (math.isfinite(self.minutes_per_frame) and self.minutes_per_frame > 0):
            raise SelectionError(f"budget: minutes per frame must be a positive number, got {self.minutes_per_frame!r}")

    @property
    def frame_count(self) -> int:
        if self.frames is not None:
            return self.frames
        count = math.floor(self.hours * 60 / self.minutes_per_frame + 1e-9)
        if count < 1:
            raise SelectionError(f"budget: {self.hours:g} h at {self.minutes_per_frame:g} min per frame is less than "
                                 "one frame: raise the hours or lower the minutes per frame")
        return count


@dataclass(frozen=True)
class Quotas:
    """Most picks per camera name and per vehicle: ``per_camera``/``per_vehicle`` for all, ``cameras``/``vehicles``
    for named ones (they win over the general cap). None: no cap."""

    per_camera: int | None = None
    per_vehicle: int | None = None
    cameras: Mapping[str, int] = field(default_factory=dict)
    vehicles: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in (("per camera", self.per_camera), ("per vehicle", self.per_vehicle),
                            *((f"camera {k}", v) for k, v in self.cameras.items()),
                            *((f"vehicle {k}", v) for k, v in self.vehicles.items())):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise SelectionError(f"quota {name}: must be a whole number >= 0, got {value!r}")

    def camera_cap(self, camera: str) -> float:
        cap = self.cameras.get(camera, self.per_camera)
        return math.inf if cap is None else cap

    def vehicle_cap(self, vehicle: str) -> float:
        cap = self.vehicles.get(vehicle, self.per_vehicle)
        return math.inf if cap is None else cap


@dataclass(frozen=True)
class NearDuplicates:
    """A frame is a near-duplicate of a pick of its drive: same camera less than ``min_gap_s`` apart, or a dHash at
    most ``max_hamming`` bits away (None: dHash not used). Defaults: 2 s (a few metres at urban speed) and 6 of 64
    bits (a near-identical thumbnail)."""

    min_gap_s: float = 2.0
    max_hamming: int | None = 6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_gap_s) and self.min_gap_s >= 0):
            raise SelectionError(f"near-duplicates: the minimum gap must be >= 0 seconds, got {self.min_gap_s!r}")
        if self.max_hamming is not None and not 0 <= self.max_hamming <= 64:
            raise SelectionError(f"near-duplicates: the dHash threshold must be 0..64 bits, got {self.max_hamming!r}")


@dataclass(frozen=True)
class Pick:
    rank: int
    frame_key: str
    drive_id: str
    vehicle: str
    camera: str
    frame_time_ns: int
    score: float
    top_signals: tuple[tuple[str, float | None, float], ...]  # (name, value, contribution), largest first
    class_fractions: Mapping[str, float]
    overlay_uri: str | None
    mask_uri: str | None

    def document(self) -> dict[str, Any]:
        return {"rank": self.rank, "frame_key": self.frame_key, "drive_id": self.drive_id, "vehicle": self.vehicle,
                "camera": self.camera, "frame_time": iso_time(self.frame_time_ns),
                "frame_time_ns": self.frame_time_ns, "score": self.score,
                "top_signals": [{"name": n, "value": v, "contribution": c} for n, v, c in self.top_signals],
                "class_fractions": dict(self.class_fractions), "overlay_uri": self.overlay_uri,
                "mask_uri": self.mask_uri}


@dataclass(frozen=True)
class Selection:
    picks: tuple[Pick, ...]
    document: dict[str, Any]  # the selection manifest (contracts.labelling), validated

    @property
    def accounting(self) -> dict[str, Any]:
        return self.document["accounting"]


def iso_time(ns: int) -> str:
    seconds, rest = divmod(int(ns), NS_PER_S)
    base = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rest:09d}Z"


def tiebreak(frame_key: str, seed: int) -> int:
    """The seeded tie-break of a frame (smaller first): the first 15 hex digits of md5("<frame_key>:<seed>"), the
    value the DuckDB query computes."""
    return int(hashlib.md5(f"{frame_key}:{seed}".encode()).hexdigest()[:15], 16)


# ----------------------------------------------------------------------------------------------- inputs


def timeline_files(paths: Path | str | Sequence[Path | str]) -> list[Path]:
    """The Parquet files named, and those under folders named (recursively, sorted); SelectionError for none."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.parquet") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise SelectionError(f"timeline {path} does not exist: name the timeline's Parquet files or their folder "
                                 "(e.g. a copy of drive-outputs/timeline/)")
    if not found:
        raise SelectionError(f"no .parquet files in {', '.join(map(str, items))}: name the drive timeline's files")
    return list(dict.fromkeys(found))


def read_frame_keys(path: Path | str) -> list[str]:
    """Frame keys from a file: a JSON list, a JSON object with ``frame_keys`` or ``frames`` (a list of keys or of
    objects with ``frame_key`` or ``source_key``: a dataset version manifest), or plain text with one key a line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SelectionError(f"frame keys {path}: cannot read it: {exc}") from None
    if path.suffix.lower() != ".json":
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SelectionError(f"frame keys {path}: not valid JSON ({exc})") from None
    items = doc
    if isinstance(doc, dict):
        items = doc.get("frame_keys", doc.get("frames"))
    if not isinstance(items, list):
        raise SelectionError(f"frame keys {path}: expected a list of frame keys, or an object with frame_keys or "
                             "frames")
    keys = []
    for position, item in enumerate(items):
        key = item.get("frame_key", item.get("source_key")) if isinstance(item, dict) else item
        if not isinstance(key, str) or not key:
            raise SelectionError(f"frame keys {path}: entry {position} is not a frame key (a string, or an object "
                                 "with frame_key)")
        keys.append(key)
    return keys


@dataclass(frozen=True)
class VersionExclusions:
    """What a dataset version (labelling.versions manifest) says about the next selection."""

    labelled_keys: tuple[str, ...]  # every frame of the version (its source frame key)
    validation_keys: tuple[str, ...]  # those in its validation split
    validation_drives: tuple[str, ...]  # the drives of its validation split (splits are by drive)
    class_frequency: dict[str, float]  # the training frames' class pixel shares: the rare-class weights
    frames_without_source_key: int  # labelled frames that cannot be matched to a timeline frame (say so)


def version_exclusions(manifest: Mapping[str, Any], where: str = "dataset version manifest") -> VersionExclusions:
    """The labelled and validation frames, the validation drives and the class frequency of a dataset version's
    manifest (``versions/<id>/manifest.json``)."""
    frames = manifest.get("frames") if isinstance(manifest, Mapping) else None
    if not isinstance(frames, list):
        raise SelectionError(f"{where}: no frames list: is it a dataset version's manifest.json?")
    labelled, validation, unkeyed = [], [], 0
    for frame in frames:
        key = frame.get("source_key") if isinstance(frame, Mapping) else None
        if not isinstance(key, str) or not key:  # imported without provenance: no timeline frame to match
            unkeyed += 1
            continue
        labelled.append(key)
        if frame.get("split") == "validation":
            validation.append(key)
    groups = (manifest.get("split") or {}).get("validation_groups") or []
    drives = tuple(g for g in groups if isinstance(g, str) and not g.startswith(NO_DRIVE_PREFIX))
    frequency = manifest.get("class_frequency") or {}
    return VersionExclusions(labelled_keys=tuple(labelled), validation_keys=tuple(validation),
                             validation_drives=drives, frames_without_source_key=unkeyed,
                             class_frequency=check_frequency(frequency, where) if frequency else {})


def read_training_frequency(path: Path | str) -> dict[str, float]:
    """{class: pixel share} from a JSON object (or one under ``class_frequency``/``class_fractions``)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SelectionError(f"training frequency {path}: cannot read it as JSON: {exc}") from None
    if isinstance(doc, dict):
        doc = doc.get("class_frequency", doc.get("class_fractions", doc))
    return check_frequency(doc, str(path))


def check_frequency(doc: Any, where: str) -> dict[str, float]:
    if not isinstance(doc, dict) or not doc:
        raise SelectionError(f"training frequency {where}: expected a JSON object {{class: pixel share}}")
    bad = [k for k, v in doc.items() if isinstance(v, bool) or not isinstance(v, (int, float))
           or not math.isfinite(v) or v < 0]
    if bad:
        raise SelectionError(f"training frequency {where}: {bad[0]!r} must be a share >= 0, got {doc[bad[0]]!r}")
    if sum(doc.values()) <= 0:
        raise SelectionError(f"training frequency {where}: the shares add up to 0")
    return {str(k): float(v) for k, v in doc.items()}


# ------------------------------------------------------------------------------------- vectorised signals


@dataclass(frozen=True)
class ClassMix:
    """The class fractions of n frames, flattened: entry i is class ``classes[index[i]]`` of frame ``row[i]``."""

    n: int
    classes: tuple[str, ...]
    row: np.ndarray
    index: np.ndarray
    value: np.ndarray

    @classmethod
    def from_arrow(cls, column: Any) -> ClassMix:
        """From a map<string, double> column (the timeline's class_fractions)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        entry = pa.struct([("key", array.type.key_type), ("value", array.type.item_type)])
        as_list = array.cast(pa.list_(entry))
        entries = pc.list_flatten(as_list)
        keys = entries.field("key")
        classes = tuple(sorted(str(c) for c in pc.unique(keys).to_pylist()))
        index = pc.index_in(keys, value_set=pa.array(classes, type=keys.type))
        return cls._build(len(array), classes, pc.list_parent_indices(as_list), index, entries.field("value"))

    @classmethod
    def from_lists(cls, index_column: Any, value_column: Any, classes: Sequence[str]) -> ClassMix:
        """From two list columns of equal shapes: class indices into ``classes`` and their fractions (what the
        selection query returns, so no string leaves DuckDB per entry)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        indices = index_column.combine_chunks() if isinstance(index_column, pa.ChunkedArray) else index_column
        values = value_column.combine_chunks() if isinstance(value_column, pa.ChunkedArray) else value_column
        return cls._build(len(indices), tuple(classes), pc.list_parent_indices(indices), pc.list_flatten(indices),
                          pc.list_flatten(values))

    @classmethod
    def _build(cls, n: int, classes: tuple[str, ...], row: Any, index: Any, value: Any) -> ClassMix:
        values = value.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        values = np.where(np.isfinite(values), values, 0.0)
        return cls(n=n, classes=classes, row=row.to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
                   index=index.to_numpy(zero_copy_only=False).astype(np.int64, copy=False),
                   value=np.maximum(values, 0.0))

    @cached_property
    def totals(self) -> np.ndarray:
        """Each frame's sum of fractions."""
        return np.bincount(self.row, weights=self.value, minlength=self.n)

    @cached_property
    def renormalised(self) -> np.ndarray:
        """Each entry divided by its frame's total (0 for a frame whose fractions add up to 0)."""
        totals = self.totals[self.row]
        return np.divide(self.value, totals, out=np.zeros_like(self.value), where=totals > 0)

    def mean(self) -> dict[str, float]:
        """Mean fraction per class over the frames (an absent class counts 0)."""
        sums = np.bincount(self.index, weights=self.value, minlength=len(self.classes))
        return {c: float(s) / self.n for c, s in zip(self.classes, sums, strict=True) if self.n and s > 0}

    def rarity(self, training_frequency: Mapping[str, float]) -> np.ndarray:
        """segcore.signals.rarity of every frame."""
        frequency = np.array([training_frequency.get(c, 0.0) for c in self.classes], dtype=np.float64)
        surprise = -np.log(np.maximum(frequency, MIN_FREQUENCY))
        per_frame = np.bincount(self.row, weights=self.renormalised * surprise[self.index], minlength=self.n)
        return np.round(np.minimum(1.0, per_frame / -math.log(MIN_FREQUENCY)), 6)

    def distance(self, reference: Mapping[str, float]) -> np.ndarray:
        """segcore.signals.distribution_distance of every frame from ``reference`` (Jensen-Shannon, base 2)."""
        positive = {c: max(0.0, float(v)) for c, v in reference.items()}
        total_q = sum(positive.values())
        p = self.renormalised
        has_p = self.totals > 0
        if total_q <= 0:
            return np.where(has_p, 1.0, 0.0)
        q_of = np.array([positive.get(c, 0.0) / total_q for c in self.classes], dtype=np.float64)
        q = q_of[self.index]
        m = (p + q) / 2
        term_p = p * np.log2(np.divide(p, m, out=np.ones_like(p), where=p > 0))  # 0 where p = 0
        term_q = q * np.log2(np.divide(q, m, out=np.ones_like(q), where=q > 0))
        # A reference class the frame lacks adds q x log2(q / (q/2)) = q to KL(q||m): 1 - (q mass on the frame's
        # classes), counting each class once.
        q_present = np.bincount(self.row, weights=q, minlength=self.n)
        kl_sum = np.bincount(self.row, weights=term_p + term_q, minlength=self.n) + (1.0 - q_present)
        divergence = np.clip(kl_sum / 2, 0.0, 1.0)
        return np.where(has_p, np.round(np.sqrt(divergence), 6), 1.0)


# --------------------------------------------------------------------------------------------- selection


def _connect() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false").fetchall()
    return con


def _source_sql(files: Sequence[Path]) -> str:
    """One relation over the files: those in Hive folders (``key=value``) with their partition columns, the others
    (a per-drive ``timeline.parquet`` holds the partition columns itself) as they are, united by column name."""
    def listed(group: Sequence[Path]) -> str:
        return ", ".join("'" + str(p).replace("'", "''") + "'" for p in group)

    hive = [p for p in files if any("=" in part for part in p.parent.parts)]
    plain = [p for p in files if p not in hive]
    parts = [f"SELECT * FROM read_parquet([{listed(group)}], hive_partitioning = {flag}, union_by_name = true)"
             for group, flag in ((hive, "true"), (plain, "false")) if group]
    return "(" + " UNION ALL BY NAME ".join(parts) + ")"


def _columns(con: Any, source: str, files: Sequence[Path]) -> set[str]:
    import duckdb

    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        raise SelectionError(f"timeline files ({len(files)}, first {files[0]}): DuckDB cannot read them as Parquet: "
                             f"{str(exc).splitlines()[0]}") from None
    columns = {row[0] for row in described}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SelectionError(f"timeline files (first {files[0]}): no column {', '.join(missing)}: are these drive "
                             "timeline files (contracts.drive_timeline)?")
    return columns


def _filters(drives: Sequence[str] | None, start: dt.datetime | None, end: dt.datetime | None,
             columns: set[str]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if drives is not None:
        if not drives:
            raise SelectionError("drives: an empty list selects nothing; leave it out for every drive")
        clauses.append("drive_id IN (SELECT unnest(?))")
        params.append(list(drives))
    for bound, op, value in (("start", ">=", start), ("end", "<", end)):
        if value is None:
            continue
        if value.tzinfo is None:
            raise SelectionError(f"time range: the {bound} {value.isoformat()} has no time zone: give it in UTC")
        ns = int(value.timestamp()) * NS_PER_S + value.microsecond * 1000
        clauses.append(f"frame_time_ns {op} ?")
        params.append(ns)
        if "date" in columns:  # partition pruning (Hive folders) as well as a filter
            day = value.astimezone(dt.UTC).date()
            clauses.append(f'"date" {op if op == ">=" else "<="} ?')
            params.append(day)
    if start is not None and end is not None and end <= start:
        raise SelectionError(f"time range: the end {end.isoformat()} is not after the start {start.isoformat()}")
    return (" AND ".join(clauses) or "TRUE"), params


def _register_keys(con: Any, name: str, keys: Iterable[str] | None) -> None:
    """A temporary table ``name`` (frame_key) of the keys (bound as one list parameter: no pandas round trip)."""
    con.execute(f"CREATE TEMP TABLE {name} AS SELECT DISTINCT unnest(?::VARCHAR[]) AS frame_key",
                [list(keys or ())]).fetchall()


def _register_scores(con: Any, paths: Sequence[Path]) -> int:
    """A view ``model_scores`` (frame_key and every model signal, NULL where the files lack it); its rows."""
    import duckdb

    source = _source_sql(paths)
    try:
        columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    except duckdb.Error as exc:
        raise SelectionError(f"model scores {paths[0]}: DuckDB cannot read it as Parquet: "
                             f"{str(exc).splitlines()[0]}") from None
    if "frame_key" not in columns:
        raise SelectionError(f"model scores {paths[0]}: no frame_key column: is it labelling.scoring's output?")
    selected = ", ".join(f"{s}::DOUBLE AS {s}" if s in columns else f"NULL::DOUBLE AS {s}" for s in MODEL_SIGNALS)
    con.execute(f"CREATE TEMP VIEW model_scores AS SELECT frame_key, {selected} FROM {source}").fetchall()
    rows, distinct = con.execute("SELECT count(*), count(DISTINCT frame_key) FROM model_scores").fetchall()[0]
    if rows != distinct:
        raise SelectionError(f"model scores ({', '.join(map(str, paths))}): {rows - distinct} frame keys appear more "
                             "than once: score each frame once, or pass one scores file per pool")
    return rows


def select_frames(timeline: Path | str | Sequence[Path | str], *, budget: Budget, quotas: Quotas = Quotas(),
                  seed: int, drives: Sequence[str] | None = None, start: dt.datetime | None = None,
                  end: dt.datetime | None = None, near_duplicates: NearDuplicates = NearDuplicates(),
                  labelled_keys: Iterable[str] | None = None, validation_keys: Iterable[str] | None = None,
                  validation_drives: Iterable[str] | None = None,
                  training_frequency: Mapping[str, float] | None = None,
                  model_scores: Sequence[Path | str] | None = None,
                  weights: Mapping[str, float] | None = None,
                  source_names: Mapping[str, str] | None = None) -> Selection:
    """The selection manifest's picks and accounting (see the module docstring); SelectionError on bad input.
    ``source_names``: what the manifest's ``sources`` records for a given path instead of the path (e.g. the S3 URI
    a timeline was downloaded from to a temporary file)."""
    import duckdb

    files = timeline_files(timeline)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(weights) - set(SCORE_SIGNALS))
    if unknown:
        raise SelectionError(f"weights: unknown signal(s) {', '.join(unknown)} (known: {', '.join(SCORE_SIGNALS)})")
    bad = [k for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)]
    if bad:
        raise SelectionError(f"weights: {bad[0]} must be a number >= 0, got {weights[bad[0]]!r}")
    if training_frequency is not None:
        training_frequency = check_frequency(dict(training_frequency), "(given)")
    frame_budget = budget.frame_count

    con = _connect()
    source = _source_sql(files)
    columns = _columns(con, source, files)
    where, params = _filters(drives, start, end, columns)
    optional = {
        "flicker": "flicker::DOUBLE" if "flicker" in columns else "NULL::DOUBLE",
        "dhash": "dhash" if "dhash" in columns else "NULL::VARCHAR",
        "vru": ("vru_present::DOUBLE" if "vru_present" in columns else
                "CASE WHEN len(coalesce(vru_classes, [])) > 0 THEN 1.0 ELSE 0.0 END" if "vru_classes" in columns
                else "NULL::DOUBLE"),
        **{s: (f"{s}::DOUBLE" if s in columns else "NULL::DOUBLE") for s in MODEL_SIGNALS},
        "overlay_uri": "overlay_uri" if "overlay_uri" in columns else "NULL::VARCHAR",
        "mask_uri": "mask_uri" if "mask_uri" in columns else "NULL::VARCHAR",
        "reason_code": "reason_code" if "reason_code" in columns else "NULL::VARCHAR",
    }
    _register_keys(con, "validation_keys", validation_keys)
    _register_keys(con, "labelled_keys", labelled_keys)
    con.execute("CREATE TEMP TABLE validation_drives AS SELECT DISTINCT unnest(?::VARCHAR[]) AS validation_drive",
                [list(validation_drives or ())]).fetchall()
    # One pass over the files: the columns selection needs and each frame's exclusion (NULL: eligible).
    sql_rows = f"""CREATE TEMP TABLE rows AS
        SELECT t.frame_key, drive_id, split_part(drive_id, '/', 1) AS vehicle, camera::VARCHAR AS camera,
               frame_time_ns, status, {optional['reason_code']} AS reason_code, class_fractions,
               {optional['flicker']} AS flicker, {optional['dhash']} AS dhash, {optional['vru']} AS vru_present,
               {', '.join(f'{optional[s]} AS {s}' for s in MODEL_SIGNALS)},
               {optional['overlay_uri']} AS overlay_uri, {optional['mask_uri']} AS mask_uri,
               CASE WHEN status IS DISTINCT FROM 'processed' THEN coalesce(status, 'unknown')
                    WHEN class_fractions IS NULL THEN 'no_class_fractions'
                    WHEN v.frame_key IS NOT NULL THEN 'validation'
                    WHEN vd.validation_drive IS NOT NULL THEN 'validation_drive'
                    WHEN l.frame_key IS NOT NULL THEN 'labelled' END AS exclusion
        FROM {source} t LEFT JOIN validation_keys v ON v.frame_key = t.frame_key
             LEFT JOIN labelled_keys l ON l.frame_key = t.frame_key
             LEFT JOIN validation_drives vd ON vd.validation_drive = t.drive_id
        WHERE {where}"""
    try:
        con.execute(sql_rows, params).fetchall()
        classes = [row[0] for row in con.execute("SELECT DISTINCT unnest(map_keys(class_fractions)) AS c FROM rows "
                                                 "WHERE exclusion IS NULL ORDER BY c").fetchall()]
    except duckdb.Error as exc:
        raise SelectionError(f"timeline files (first {files[0]}): DuckDB cannot select from them: "
                             f"{str(exc).splitlines()[0]}: are these drive timeline files?") from None
    rows, distinct = con.execute("SELECT count(*), count(DISTINCT frame_key) FROM rows").fetchall()[0]
    frames = "rows"
    if rows != distinct:  # the same frame in the per-drive file and the table's copy: keep one, processed first
        con.execute("""CREATE TEMP TABLE frames AS SELECT * FROM rows QUALIFY row_number() OVER (
            PARTITION BY frame_key ORDER BY status <> 'processed', drive_id, frame_time_ns, overlay_uri) = 1"""
                    ).fetchall()
        frames = "frames"
    excluded = {reason: 0 for reason in EXCLUSION_REASONS}
    reason_codes: dict[str, dict[str, int]] = {}
    for reason, code, count in con.execute(f"SELECT exclusion, reason_code, count(*) FROM {frames} WHERE exclusion "
                                           "IS NOT NULL GROUP BY ALL ORDER BY ALL").fetchall():
        if reason not in EXCLUSION_REASONS:
            raise SelectionError(f"timeline files: status {reason!r} is not one of {', '.join(FRAME_STATUSES)} "
                                 f"({count} frames): are these drive timeline files?")
        excluded[reason] += count
        if reason in FRAME_STATUSES:
            codes = reason_codes.setdefault(reason, {})
            codes[code or "unknown"] = codes.get(code or "unknown", 0) + count

    score_sql, score_frames = "", None
    scores_used = [Path(p) for p in model_scores or ()]
    if scores_used:
        for path in scores_used:
            if not path.is_file():
                raise SelectionError(f"model scores {path} does not exist: run labelling.scoring on the pool first")
        score_frames = _register_scores(con, scores_used)
        score_sql = "LEFT JOIN model_scores s USING (frame_key)"
    model_cols = ", ".join(f"coalesce({'s.' + m + ', ' if scores_used else ''}f.{m}) AS {m}" for m in MODEL_SIGNALS)
    try:
        # Per frame the class mix as class indices and fractions (no class name per entry leaves DuckDB).
        eligible = con.sql(f"""
            SELECT f.frame_key, f.drive_id, f.vehicle, f.camera, f.frame_time_ns, f.flicker, f.vru_present,
                   {model_cols},
                   list_transform(map_keys(f.class_fractions), lambda k: list_position(?::VARCHAR[], k)::INTEGER - 1)
                       AS class_index,
                   map_values(f.class_fractions)::DOUBLE[] AS class_value,
                   CASE WHEN f.dhash IS NULL THEN NULL ELSE ('0x' || f.dhash)::UBIGINT END AS dhash,
                   ('0x' || left(md5(f.frame_key || ':' || ?::VARCHAR), 15))::BIGINT AS tiebreak
            FROM {frames} f {score_sql} WHERE f.exclusion IS NULL""", params=[classes, seed]).to_arrow_table()
    except duckdb.ConversionException as exc:  # names the bad dhash value
        raise SelectionError(f"timeline files: a dhash value is not 16 hex digits ({str(exc).splitlines()[0]}): "
                             "rebuild the timeline with the drive builder") from None

    n = eligible.num_rows
    mix = ClassMix.from_lists(eligible.column("class_index"), eligible.column("class_value"), classes)
    frequency_source = "given" if training_frequency is not None else "timeline mean"
    reference = training_frequency if training_frequency is not None else mix.mean()
    raw: dict[str, np.ndarray] = {
        "flicker": _floats(eligible, "flicker"),
        "rarity": mix.rarity(reference) if n else np.zeros(0),
        "distribution_distance": mix.distance(reference) if n else np.zeros(0),
        "vru_present": _floats(eligible, "vru_present"),
        "mean_entropy": _floats(eligible, "mean_entropy"),
        "mean_margin_inverse": 1.0 - _floats(eligible, "mean_margin"),
        "region_score": _floats(eligible, "region_score"),
    }
    contributions = {name: weights.get(name, 0.0) * _min_max(values) for name, values in raw.items()}
    score = np.round(sum(contributions.values(), np.zeros(n)), 9)
    order = np.lexsort((eligible.column("tiebreak").to_numpy(), -score))

    picked, suppressed, not_chosen = _greedy(eligible, order, frame_budget, quotas, near_duplicates)
    picks = []
    details = eligible.select(["frame_key", "drive_id", "vehicle", "camera", "frame_time_ns"]).take(
        picked).to_pylist() if picked else []
    extra = {key: (dict(fractions or {}), overlay, mask) for key, fractions, overlay, mask in con.execute(
        f"SELECT frame_key, class_fractions, overlay_uri, mask_uri FROM {frames} WHERE exclusion IS NULL AND "
        "frame_key IN (SELECT unnest(?::VARCHAR[]))", [[row["frame_key"] for row in details]]).fetchall()}
    con.close()
    for rank, (i, row) in enumerate(zip(picked, details, strict=True), start=1):
        top = sorted(((c[i], name) for name, c in contributions.items() if c[i] > 0), key=lambda t: (-t[0], t[1]))[:3]
        picks.append(Pick(rank=rank, frame_key=row["frame_key"], drive_id=row["drive_id"], vehicle=row["vehicle"],
                          camera=row["camera"], frame_time_ns=int(row["frame_time_ns"]), score=float(score[i]),
                          top_signals=tuple((name, _value(raw[name][i]), round(float(c), 6)) for c, name in top),
                          class_fractions={k: float(v) for k, v in extra[row["frame_key"]][0].items()},
                          overlay_uri=extra[row["frame_key"]][1], mask_uri=extra[row["frame_key"]][2]))

    document = {
        "schema_version": SELECTION_SCHEMA_VERSION,
        "seed": seed,
        "sources": sorted({(source_names or {}).get(str(p), str(p))
                           for p in ([timeline] if isinstance(timeline, (str, Path)) else timeline)}),
        "source_files": len(files),
        "filters": {"drives": sorted(drives) if drives is not None else None,
                    "start": start.isoformat() if start else None, "end": end.isoformat() if end else None},
        "budget": {"frames": frame_budget, "hours": budget.hours, "minutes_per_frame": budget.minutes_per_frame,
                   "picked_hours": round(len(picks) * budget.minutes_per_frame / 60, 3)},
        "quotas": {"per_camera": quotas.per_camera, "per_vehicle": quotas.per_vehicle,
                   "cameras": dict(quotas.cameras), "vehicles": dict(quotas.vehicles)},
        "near_duplicates": {"min_gap_s": near_duplicates.min_gap_s, "max_hamming": near_duplicates.max_hamming},
        "weights": weights,
        "training_frequency": {"source": frequency_source, "classes": {k: round(v, 6) for k, v in
                                                                      sorted(reference.items())}},
        "model_scores": ({"sources": [str(p) for p in scores_used], "frames": score_frames} if scores_used
                         else None),
        "accounting": {"rows": rows, "candidates": distinct, "excluded": excluded,
                       "excluded_reason_codes": reason_codes, "suppressed": suppressed, "not_chosen": not_chosen,
                       "picked": len(picks)},
        "picks": [p.document() for p in picks],
    }
    return Selection(picks=tuple(picks), document=validate_selection(document))


def _floats(table: Any, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scaled to 0..1 over the frames that have the value; NaN (no value) -> 0; all equal -> 0 (a signal that does
    not vary tells the frames apart no more than a missing one)."""
    present = ~np.isnan(values)
    if not present.any():
        return np.zeros_like(values)
    low, high = float(values[present].min()), float(values[present].max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.where(present, scaled, 0.0)


def _value(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def _greedy(eligible: Any, order: np.ndarray, frame_budget: int, quotas: Quotas, near: NearDuplicates
            ) -> tuple[list[int], dict[str, int], dict[str, int]]:
    """Walk the ranked frames: pick, suppress as a near-duplicate, or leave for a quota, until the budget is full."""
    suppressed = {reason: 0 for reason in SUPPRESSION_REASONS}
    not_chosen = {reason: 0 for reason in NOT_CHOSEN_REASONS}
    drive = eligible.column("drive_id").to_numpy(zero_copy_only=False)
    vehicle = eligible.column("vehicle").to_numpy(zero_copy_only=False)
    camera = eligible.column("camera").to_numpy(zero_copy_only=False)
    time_ns = eligible.column("frame_time_ns").to_numpy(zero_copy_only=False)
    dhash_column = eligible.column("dhash")
    has_dhash = dhash_column.is_valid().to_numpy(zero_copy_only=False)
    dhash = dhash_column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64)
    gap_ns = int(near.min_gap_s * NS_PER_S)
    picked: list[int] = []
    per_camera: dict[str, int] = {}
    per_vehicle: dict[str, int] = {}
    times: dict[tuple[str, str], list[int]] = {}
    hashes: dict[str, list[int]] = {}
    examined = 0
    for i in order.tolist():
        if len(picked) >= frame_budget:
            break
        examined += 1
        d, c, v = drive[i], camera[i], vehicle[i]
        earlier = times.get((d, c))
        if earlier and gap_ns and min(abs(int(time_ns[i]) - t) for t in earlier) < gap_ns:
            suppressed["time_gap"] += 1
            continue
        if near.max_hamming is not None and has_dhash[i] and hashes.get(d):
            distances = np.bitwise_count(np.bitwise_xor(np.array(hashes[d], dtype=np.uint64), dhash[i]))
            if int(distances.min()) <= near.max_hamming:
                suppressed["dhash"] += 1
                continue
        if per_camera.get(c, 0) >= quotas.camera_cap(c):
            not_chosen["camera_quota"] += 1
            continue
        if per_vehicle.get(v, 0) >= quotas.vehicle_cap(v):
            not_chosen["vehicle_quota"] += 1
            continue
        picked.append(i)
        per_camera[c] = per_camera.get(c, 0) + 1
        per_vehicle[v] = per_vehicle.get(v, 0) + 1
        times.setdefault((d, c), []).append(int(time_ns[i]))
        if has_dhash[i]:
            hashes.setdefault(d, []).append(int(dhash[i]))
    not_chosen["budget"] += len(order) - examined
    return picked, suppressed, not_chosen


# ---------------------------------------------------------------------------------------------- outputs


def write_selection(selection: Selection, path: Path | str) -> Path:
    """The selection manifest (JSON, validated, keys in a fixed order: the same seed and inputs give the same
    bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(validate_selection(selection.document), indent=1) + "\n", encoding="utf-8")
    return path


def write_pool(selection: Selection, path: Path | str) -> Path:
    """The picks' frame keys, one a line, in rank order: the candidate pool labelling.scoring reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(p.frame_key + "\n" for p in selection.picks), encoding="utf-8")
    return path


def local_images(selection: Selection, root: Path | str) -> dict[str, Path]:
    """Frame key -> a local copy of its overlay: ``s3://bucket/key`` looked up as ``root/key`` and
    ``root/bucket/key`` (a synced copy of the bucket); frames without one are left out."""
    root = Path(root)
    found = {}
    for pick in selection.picks:
        uri = pick.overlay_uri or ""
        if not uri:
            continue
        bucket, _, key = uri[5:].partition("/") if uri.startswith("s3://") else ("", "", uri)
        for candidate in (root / key, root / bucket / key):
            if key and candidate.is_file():
                found[pick.frame_key] = candidate
                break
    return found


THUMB = (320, 160)
CAPTION = 44


def _colour(name: str, palette: Mapping[str, Sequence[int]] | None) -> tuple[int, int, int]:
    if palette and name in palette:
        r, g, b = (int(x) for x in palette[name][:3])
        return r, g, b
    digest = hashlib.md5(name.encode()).digest()
    return digest[0], digest[1], digest[2]


def write_contact_sheet(selection: Selection, path: Path | str, images: Mapping[str, Path | bytes] | None = None,
                        *, columns: int = 5, palette: Mapping[str, Sequence[int]] | None = None,
                        limit: int = 100) -> Path:
    """A PNG grid of the first ``limit`` picks: the overlay thumbnail where ``images`` has one (a path or the
    bytes), else the pick's class fractions as coloured bars (``palette``: class -> RGB, e.g. the scheme's colours);
    under each, its rank, camera, time, score and top signal."""
    import io

    from PIL import Image, ImageDraw

    path = Path(path)
    picks = selection.picks[:limit]
    images = images or {}
    cols = max(1, min(columns, len(picks) or 1))
    rows = max(1, math.ceil(len(picks) / cols))
    cell_w, cell_h = THUMB[0], THUMB[1] + CAPTION
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    if not picks:
        draw.text((8, 8), "no frames picked", fill=(230, 230, 230))
    for position, pick in enumerate(picks):
        x, y = (position % cols) * cell_w, (position // cols) * cell_h
        thumb = None
        source = images.get(pick.frame_key)
        if source is not None:
            try:
                data = source if isinstance(source, bytes) else Path(source).read_bytes()
                thumb = Image.open(io.BytesIO(data)).convert("RGB")
                thumb.thumbnail(THUMB)
            except (OSError, ValueError):
                thumb = None  # an unreadable picture: the bars below say as much as it would
        if thumb is not None:
            sheet.paste(thumb, (x + (THUMB[0] - thumb.width) // 2, y + (THUMB[1] - thumb.height) // 2))
        else:
            _bars(draw, pick, (x + 4, y + 4, x + THUMB[0] - 4, y + THUMB[1] - 4), palette)
        top = pick.top_signals[0] if pick.top_signals else None
        lines = (f"#{pick.rank} {pick.camera} {iso_time(pick.frame_time_ns)[:19]}",
                 f"{pick.drive_id}  score {pick.score:.3f}",
                 f"{top[0]} {top[1] if top[1] is not None else '-'}" if top else "no signal")
        for line_no, line in enumerate(lines):
            draw.text((x + 4, y + THUMB[1] + 2 + 13 * line_no), line[:52], fill=(230, 230, 230))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def _bars(draw: Any, pick: Pick, box: tuple[int, int, int, int], palette: Mapping[str, Sequence[int]] | None) -> None:
    """The largest class fractions of the pick as horizontal bars with their names."""
    x0, y0, x1, y1 = box
    ranked = sorted(pick.class_fractions.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    row_h = max(1, (y1 - y0) // max(1, len(ranked)))
    for k, (name, share) in enumerate(ranked):
        top = y0 + k * row_h
        draw.rectangle((x0, top + 1, x0 + int((x1 - x0) * min(1.0, share)), top + row_h - 2),
                       fill=_colour(name, palette))
        draw.text((x0 + 2, top + 1), f"{name} {share:.2f}", fill=(255, 255, 255))

