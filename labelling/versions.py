"""Immutable dataset versions in the datasets bucket: labelled frames merged with their parent, split by drive.

A version is the generic layout that the pipeline's PrepareDataset step reads (``training.prepare --layout
generic``), so ``roadseg pipeline start --dataset-version V`` trains on it as it is::

    versions/<id>/images/<name>.jpg|.png   the frame as it was labelled
    versions/<id>/masks/<name>.png         class indices of the scheme (0..N-1, 255 = ignore), palette PNG
    versions/<id>/split.json               {"train": [names], "validation": [names]}: by drive (labelling.splits)
    versions/<id>/manifest.json            written LAST: a version exists once its manifest does
    versions/<id>/claim.json               written FIRST: reserves the id (see "Immutability")

The manifest (``MANIFEST_SCHEMA_VERSION``, checked by :func:`check_manifest`) records the version id, its parent,
when it was made, the scheme (name, classes with colours, ignore index), the split decision (seed, fraction,
validation drives), every file with its SHA-256 and size, the training frames' class pixel shares
(``class_frequency``, the rare-class weights of the next selection), and per frame its provenance: source frame key
and S3 version id, drive, camera, labelling tool and task, the model package version that pre-annotated it, its
split, the version that added it and its labelled pixels per class.

Merging: a new version holds every frame of its parent plus the imported ones. An imported frame whose name the
parent already holds is refused unless ``replace=True`` (``--replace``): a label correction must be asked for, not
slip in. Frames carried over are read from the parent and checked against the parent's SHA-256 before they are
written into the new version (a damaged parent file stops the import instead of spreading).

Immutability: every object is written with ``PutObject If-None-Match: *`` (S3 conditional writes,
``S3_CONDITIONAL_WRITES_DOC``): S3 answers 412 Precondition Failed when the key exists, and 409 when a concurrent
conditional write to the same key is in flight, so no existing object of a version is ever replaced. The id is
reserved by writing ``claim.json`` first; an import that finds the next id claimed (another import running, or one
that crashed) takes the id after it, so the loser of a race never mixes files into the winner's version. Before
claiming, the manifest's absence is also checked with HeadObject, for S3-compatible stores that ignore the header
(moto 5.2.5 honours it on PutObject, tests/labelling/test_versions.py checks that); with such a store two imports
racing between that check and their writes could still mix files, which :func:`verify_version` then reports.
The deployed datasets bucket enforces it: its policy denies a PutObject under versions/ without If-None-Match,
and any DeleteObject or DeleteObjectVersion there (stacks/bucket_set.py; contract rule
dataset-versions-are-immutable), so nothing here deletes: a crashed import's claim stays and is stepped over.
CopyObject is not used: it is refused (403/501) under a policy that enforces conditional writes; nor are multipart
uploads (UploadPart carries no conditional header).

Public API (pure planning, then the S3 acts):

    plan_version(version_id, parent_manifest | None, new_frames, scheme, *, replace, reshuffle_validation, seed,
                 validation_fraction, created_at) -> VersionPlan
    create_version(s3, bucket, new_frames, scheme, *, parent="latest"|None|id, replace=False, ...) -> dict manifest
    read_manifest(s3, bucket, version) -> dict;  list_versions(s3, bucket) -> list[VersionSummary]
    verify_version(s3, bucket, version) -> VerifyReport;  check_manifest(document) -> list[str] problems
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from contracts.layout import DATASETS
from labelling.splits import DEFAULT_SEED, DEFAULT_VALIDATION_FRACTION, SPLITS, SplitError, assign_splits, group_of
from segcore.classes import ClassScheme

S3_CONDITIONAL_WRITES_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"
MANIFEST_FILE = "manifest.json"
SPLIT_FILE = "split.json"
CLAIM_FILE = "claim.json"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
MANIFEST_SCHEMA_VERSION = 1
VERSION_ID = re.compile(r"^v\d{4,}$")
FRAME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# S3's answers to a conditional write that lost: the key exists (412) or a concurrent write to it is in flight (409).
CONDITIONAL_WRITE_LOST = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
# Files written at once: boto3 clients are thread-safe, and S3 takes at least 3,500 PUTs per second per prefix
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html), far above 16 in flight.
WRITE_WORKERS = 16
# How many claimed ids an import steps over before it gives up (each is a running or crashed import).
MAX_CLAIM_ATTEMPTS = 10
FRAME_FIELDS = ("name", "image", "mask", "split", "drive", "camera", "source_key", "source_version_id", "tool",
                "task", "model_package_version", "added_in", "class_pixels")


class VersionError(ValueError):
    """The version cannot be made or read as asked (one line: what, where, how to fix)."""


class VersionConflict(VersionError):
    """Writing would overwrite an object of an existing version."""


@dataclass(frozen=True)
class FrameProvenance:
    """Where a labelled frame came from; every field but ``tool`` may be unknown (None)."""

    tool: str                                 # cvat | label-studio | <other importer>
    source_key: str | None = None             # the frame's S3 key (incoming/<vehicle>/<drive>/<camera>/<stamp>.jpg)
    source_version_id: str | None = None      # its S3 version id, so the exact bytes can be found again
    drive: str | None = None                  # vehicle/drive
    camera: str | None = None
    task: str | None = None                   # the labelling tool's task / job
    model_package_version: str | None = None  # the model that pre-annotated the frame


@dataclass(frozen=True)
class NewFrame:
    """One frame to add: the encoded image (JPEG or PNG bytes) and its class-index mask (uint8, 255 = ignore)."""

    name: str
    image: bytes
    mask: np.ndarray
    provenance: FrameProvenance
    image_ext: str = ".jpg"


@dataclass(frozen=True)
class PlannedFile:
    """A file of the new version: its bytes, or a file of the parent to carry over (checked against ``sha256``)."""

    path: str
    sha256: str
    size: int
    data: bytes | None = None
    parent_path: str | None = None


@dataclass(frozen=True)
class VersionPlan:
    version: str
    parent: str | None
    manifest: dict[str, Any]
    files: tuple[PlannedFile, ...]  # data files and split.json; the manifest is written after them


@dataclass(frozen=True)
class VersionSummary:
    version: str
    parent: str | None
    created_at: str | None
    frames: int | None
    train: int | None
    validation: int | None
    complete: bool                 # manifest written; False: claimed only (an import running or one that crashed)


@dataclass
class VerifyReport:
    version: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------------------------------- pure parts


def version_prefix(version: str) -> str:
    return f"{DATASETS.versions}{version}/"


def check_version_id(version: str) -> str:
    if not VERSION_ID.match(version or ""):
        raise VersionError(f"'{version}' is not a dataset version id (v0001, v0002, ...): see `roadseg data versions`")
    return version


def next_version_id(existing: Iterable[str]) -> str:
    numbers = [int(v[1:]) for v in existing if VERSION_ID.match(v)]
    return f"v{max(numbers, default=0) + 1:04d}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scheme_document(scheme: ClassScheme) -> dict[str, Any]:
    return {"name": scheme.name, "ignore_index": scheme.ignore_index,
            "classes": [{"train_id": c.train_id, "name": c.name, "color": list(c.color)} for c in scheme.classes]}


def encode_mask(mask: np.ndarray, scheme: ClassScheme) -> bytes:
    """Palette PNG of class indices (viewers show the scheme's colours; the values stay class indices)."""
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # L; putpalette makes it P, values kept
    image.putpalette(scheme.palette())
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def class_pixels(mask: np.ndarray, scheme: ClassScheme) -> dict[str, int]:
    """Labelled pixels per class name (classes with none left out; ignored pixels not counted)."""
    counts = np.bincount(np.asarray(mask).ravel(), minlength=256)
    return {c.name: int(counts[c.train_id]) for c in scheme.classes if counts[c.train_id]}


def class_frequency(per_frame: Iterable[Mapping[str, int]]) -> dict[str, float]:
    """Pixel share of each class over frames (what ``roadseg label select`` weighs rare classes by)."""
    totals: dict[str, int] = {}
    for counts in per_frame:
        for name, pixels in counts.items():
            totals[name] = totals.get(name, 0) + pixels
    labelled = sum(totals.values())
    return {name: pixels / labelled for name, pixels in sorted(totals.items())} if labelled else {}


def _image_size(frame: NewFrame) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(frame.image)) as image:
            if image.format not in ("JPEG", "MPO", "PNG"):
                raise VersionError(f"frame {frame.name}: the image is {image.format}, not JPEG or PNG")
            return image.size
    except VersionError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt image may raise anything; it must be one line
        raise VersionError(f"frame {frame.name}: the image cannot be decoded ({type(exc).__name__}: {exc})") from None


def check_new_frame(frame: NewFrame, scheme: ClassScheme) -> None:
    """What the Prepare step would drop, refused here instead: bad name, mask values or sizes."""
    if not FRAME_NAME.match(frame.name):
        raise VersionError(f"frame name '{frame.name}' must be 1-200 characters of A-Z a-z 0-9 . _ - "
                           "(labelling.archive.frame_name_for_key(source key) makes one)")
    if frame.image_ext.lower() not in IMAGE_EXTENSIONS:
        raise VersionError(f"frame {frame.name}: image extension '{frame.image_ext}' is not .jpg, .jpeg or .png")
    mask = np.asarray(frame.mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise VersionError(f"frame {frame.name}: the mask must be a 2-D uint8 array of class indices, "
                           f"got {mask.dtype} with shape {mask.shape}")
    width, height = _image_size(frame)
    if (mask.shape[1], mask.shape[0]) != (width, height):
        raise VersionError(f"frame {frame.name}: size mismatch, the image is {width}x{height} and the mask "
                           f"{mask.shape[1]}x{mask.shape[0]}")
    counts = np.bincount(mask.ravel(), minlength=256)
    bad = [v for v in np.flatnonzero(counts).tolist() if v not in scheme.valid_values()]
    if bad:
        pixels = int(sum(counts[v] for v in bad))
        raise VersionError(f"frame {frame.name}: {pixels} mask pixels hold values {bad[:10]} that are not classes "
                           f"of scheme '{scheme.name}' (0..{scheme.num_classes - 1}, {scheme.ignore_index} = ignore)")


def plan_version(version: str, parent_manifest: Mapping[str, Any] | None, new_frames: Sequence[NewFrame],
                 scheme: ClassScheme, *, replace: bool = False, reshuffle_validation: bool = False,
                 seed: int = DEFAULT_SEED, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                 created_at: str | None = None) -> VersionPlan:
    """The new version's files and manifest (pure): the parent's frames merged with ``new_frames``."""
    check_version_id(version)
    if not new_frames:
        raise VersionError("no labelled frames to add: the import holds none")
    seen: set[str] = set()
    for frame in new_frames:
        if frame.name in seen:
            raise VersionError(f"frame {frame.name} is imported twice: keep one")
        seen.add(frame.name)
        check_new_frame(frame, scheme)
    parent_frames: dict[str, dict[str, Any]] = {}
    parent_files: dict[str, dict[str, Any]] = {}
    parent_id = None
    if parent_manifest is not None:
        parent_id = parent_manifest["version"]
        if parent_manifest["scheme"] != scheme_document(scheme):
            raise VersionError(
                f"parent {parent_id} uses scheme '{parent_manifest['scheme']['name']}' with other classes than "
                f"scheme '{scheme.name}': import with the parent's scheme, or start a new line with --parent none")
        parent_frames = {f["name"]: f for f in parent_manifest["frames"]}
        parent_files = {f["path"]: f for f in parent_manifest["files"]}
        clashes = sorted(seen & parent_frames.keys())
        if clashes and not replace:
            shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
            raise VersionError(f"{len(clashes)} imported frame(s) are already in {parent_id} ({shown}): pass "
                               "--replace to replace their labels, or leave them out of the import")
    new_by_name = {f.name: f for f in new_frames}
    kept = {name: entry for name, entry in parent_frames.items() if name not in new_by_name}
    groups = {name: group_of(entry.get("drive"), name) for name, entry in kept.items()}
    groups.update({f.name: group_of(f.provenance.drive, f.name) for f in new_frames})
    parent_validation = None if parent_manifest is None else parent_manifest["split"]["validation_groups"]
    try:
        decision = assign_splits(groups, parent_validation_groups=parent_validation,
                                 validation_fraction=validation_fraction, seed=seed,
                                 reshuffle=reshuffle_validation, parent_frames=parent_frames)
    except SplitError as exc:
        raise VersionError(str(exc)) from None

    files: list[PlannedFile] = []
    frames: list[dict[str, Any]] = []
    for name in sorted(groups):
        if name in new_by_name:
            frame = new_by_name[name]
            ext = ".jpg" if frame.image_ext.lower() == ".jpeg" else frame.image_ext.lower()
            image_path, mask_path = f"{IMAGES_DIR}/{name}{ext}", f"{MASKS_DIR}/{name}.png"
            mask_png = encode_mask(frame.mask, scheme)
            files += [PlannedFile(image_path, sha256(frame.image), len(frame.image), data=frame.image),
                      PlannedFile(mask_path, sha256(mask_png), len(mask_png), data=mask_png)]
            frames.append({"name": name, "image": image_path, "mask": mask_path, "split": decision.splits[name],
                           **asdict(frame.provenance), "added_in": version,
                           "class_pixels": class_pixels(frame.mask, scheme)})
        else:
            entry = kept[name]
            for path in (entry["image"], entry["mask"]):
                described = parent_files[path]
                files.append(PlannedFile(path, described["sha256"], described["bytes"], parent_path=path))
            frames.append({**entry, "split": decision.splits[name]})
    split_names = {split: sorted(f["name"] for f in frames if f["split"] == split) for split in SPLITS}
    split_json = (json.dumps(split_names, indent=1) + "\n").encode()
    files.append(PlannedFile(SPLIT_FILE, sha256(split_json), len(split_json), data=split_json))
    counts = decision.counts()
    replaced = sorted(seen & parent_frames.keys())
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "version": version,
        "parent": parent_id,
        "created_at": created_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "layout": "generic",
        "scheme": scheme_document(scheme),
        "split": {"seed": decision.seed, "validation_fraction": decision.validation_fraction,
                  "validation_groups": list(decision.validation_groups), "reshuffled": decision.reshuffled,
                  "grown_validation_frames": decision.grown_validation_frames},
        "counts": {"frames": len(frames), "train": counts["train"], "validation": counts["validation"],
                   "added": len(new_frames) - len(replaced), "replaced": len(replaced), "kept": len(kept)},
        "replaced": replaced,
        "class_frequency": class_frequency(f["class_pixels"] for f in frames if f["split"] == "train"),
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.size} for f in files],
        "frames": frames,
    }
    problems = check_manifest(manifest)
    if problems:  # a bug here, not bad input: never write a manifest the readers would refuse
        raise AssertionError("; ".join(problems))
    return VersionPlan(version=version, parent=parent_id, manifest=manifest, files=tuple(files))


def check_manifest(document: Any) -> list[str]:
    """Problems of a version manifest (empty when it is one this module writes and reads)."""
    if not isinstance(document, dict):
        return ["the manifest is not a JSON object"]
    problems = []
    if document.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        problems.append(f"schema_version {document.get('schema_version')!r} is not {MANIFEST_SCHEMA_VERSION}")
    if not isinstance(document.get("version"), str) or not VERSION_ID.match(document["version"]):
        problems.append(f"version {document.get('version')!r} is not an id like v0001")
    parent = document.get("parent")
    if parent is not None and (not isinstance(parent, str) or not VERSION_ID.match(parent)):
        problems.append(f"parent {parent!r} is neither null nor a version id")
    for key, kind in (("scheme", dict), ("split", dict), ("counts", dict), ("files", list), ("frames", list)):
        if not isinstance(document.get(key), kind):
            problems.append(f"'{key}' is missing or not a {kind.__name__}")
    if problems:
        return problems
    files = {f.get("path"): f for f in document["files"] if isinstance(f, dict)}
    if len(files) != len(document["files"]):
        problems.append("files: an entry is not an object or a path repeats")
    for path, entry in files.items():
        if (not isinstance(path, str) or not isinstance(entry.get("sha256"), str)
                or not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) or not isinstance(entry.get("bytes"), int)):
            problems.append(f"files: {path!r} needs path, sha256 (64 hex digits) and bytes")
    if SPLIT_FILE not in files:
        problems.append(f"files: {SPLIT_FILE} is not listed")
    names = set()
    for frame in document["frames"]:
        if not isinstance(frame, dict) or set(FRAME_FIELDS) - frame.keys():
            problems.append(f"frames: {frame.get('name') if isinstance(frame, dict) else frame!r} lacks "
                            f"{sorted(set(FRAME_FIELDS) - (frame.keys() if isinstance(frame, dict) else set()))}")
            continue
        names.add(frame["name"])
        if frame["split"] not in SPLITS:
            problems.append(f"frames: {frame['name']} has split {frame['split']!r}")
        for path in (frame["image"], frame["mask"]):
            if path not in files:
                problems.append(f"frames: {frame['name']}'s file {path} is not listed in files")
    if len(names) != len(document["frames"]):
        problems.append("frames: a frame name repeats")
    counts = document["counts"]
    if counts.get("frames") != len(document["frames"]):
        problems.append(f"counts.frames {counts.get('frames')} is not the {len(document['frames'])} frames listed")
    elif counts.get("train", 0) + counts.get("validation", 0) != counts["frames"]:
        problems.append("counts: train + validation is not frames")
    return problems


# ------------------------------------------------------------------------------------------------------ S3 acts


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code if code in CONDITIONAL_WRITE_LOST else (status if status in CONDITIONAL_WRITE_LOST else code)


def _not_found(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


def put_new(s3: Any, bucket: str, key: str, data: bytes, content_type: str) -> None:
    """PutObject that never replaces: VersionConflict when the key exists (or is being written)."""
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
    except Exception as exc:
        if _error_code(exc) in CONDITIONAL_WRITE_LOST:
            raise VersionConflict(f"s3://{bucket}/{key} already exists (or another import is writing it): "
                                  "dataset versions are never overwritten") from None
        raise


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception as exc:
        if _not_found(exc):
            return False
        raise


def version_ids(s3: Any, bucket: str) -> list[str]:
    """Ids with anything under versions/<id>/ (claimed or complete), sorted."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DATASETS.versions, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(DATASETS.versions):].rstrip("/")
            if VERSION_ID.match(name):
                found.append(name)
    return sorted(found, key=lambda v: int(v[1:]))


def read_manifest(s3: Any, bucket: str, version: str) -> dict[str, Any]:
    key = version_prefix(check_version_id(version)) + MANIFEST_FILE
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _not_found(exc):
            raise VersionError(f"dataset version {version} does not exist in s3://{bucket} (no {key}; an import "
                               "that did not finish leaves none): see `roadseg data versions`") from None
        raise
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise VersionError(f"s3://{bucket}/{key} is not JSON ({exc})") from None
    problems = check_manifest(document)
    if problems:
        raise VersionError(f"s3://{bucket}/{key} is not a version manifest: {problems[0]}"
                           + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return document


def list_versions(s3: Any, bucket: str) -> list[VersionSummary]:
    summaries = []
    for version in version_ids(s3, bucket):
        try:
            manifest = read_manifest(s3, bucket, version)
        except VersionError:
            summaries.append(VersionSummary(version, None, None, None, None, None, complete=False))
            continue
        counts = manifest["counts"]
        summaries.append(VersionSummary(version, manifest["parent"], manifest["created_at"], counts["frames"],
                                        counts["train"], counts["validation"], complete=True))
    return summaries


def latest_version(s3: Any, bucket: str) -> str | None:
    complete = [s.version for s in list_versions(s3, bucket) if s.complete]
    return complete[-1] if complete else None


def _claim(s3: Any, bucket: str, created_at: str) -> str:
    """Reserve the next free version id by writing its claim.json (conditional write)."""
    candidate = next_version_id(version_ids(s3, bucket))
    for _ in range(MAX_CLAIM_ATTEMPTS):
        prefix = version_prefix(candidate)
        if not _exists(s3, bucket, prefix + MANIFEST_FILE):
            try:
                put_new(s3, bucket, prefix + CLAIM_FILE,
                        json.dumps({"version": candidate, "claimed_at": created_at}).encode(), "application/json")
                return candidate
            except VersionConflict:
                pass
        candidate = next_version_id([candidate])
    raise VersionError(f"{MAX_CLAIM_ATTEMPTS} version ids after the latest are claimed by imports that did not "
                       f"finish: check s3://{bucket}/{DATASETS.versions} with `roadseg data versions`")


def _write_planned(s3: Any, bucket: str, plan: VersionPlan, planned: PlannedFile) -> None:
    data = planned.data
    if data is None:
        assert plan.parent is not None
        source = version_prefix(plan.parent) + (planned.parent_path or planned.path)
        try:
            data = s3.get_object(Bucket=bucket, Key=source)["Body"].read()
        except Exception as exc:
            if str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) not in ("NoSuchKey", "404"):
                raise
            raise VersionError(f"s3://{bucket}/{source} is missing from {plan.parent}: the parent is damaged "
                               f"(`roadseg data verify {plan.parent}`); {plan.version} stays incomplete (no "
                               "manifest)") from None
        if sha256(data) != planned.sha256:
            raise VersionError(f"s3://{bucket}/{source} does not match its SHA-256 in {plan.parent}'s manifest: the "
                               f"parent is damaged (`roadseg data verify {plan.parent}`); {plan.version} stays "
                               "incomplete (no manifest)")
    content_type = {".png": "image/png", ".json": "application/json"}.get(PurePosixPath(planned.path).suffix,
                                                                         "image/jpeg")
    put_new(s3, bucket, version_prefix(plan.version) + planned.path, data, content_type)


def write_plan(s3: Any, bucket: str, plan: VersionPlan, *, progress: Callable[[int], None] | None = None,
               workers: int = WRITE_WORKERS) -> None:
    """Write a planned version: data files and split.json (``workers`` at a time), then the manifest, each a
    conditional write. The first failure stops the rest; the version then has no manifest (incomplete)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_write_planned, s3, bucket, plan, planned) for planned in plan.files]
        try:
            for number, future in enumerate(as_completed(futures), start=1):
                future.result()
                if progress:
                    progress(number)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    manifest = (json.dumps(plan.manifest, indent=1, sort_keys=False) + "\n").encode()
    put_new(s3, bucket, version_prefix(plan.version) + MANIFEST_FILE, manifest, "application/json")


def create_version(s3: Any, bucket: str, new_frames: Sequence[NewFrame], scheme: ClassScheme, *,
                   parent: str | None = "latest", replace: bool = False, reshuffle_validation: bool = False,
                   seed: int = DEFAULT_SEED, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Make a new immutable version from ``parent`` ("latest", an id, or None for a first version) plus
    ``new_frames``; returns its manifest. Everything is checked before the id is claimed."""
    parent_id = latest_version(s3, bucket) if parent == "latest" else parent
    parent_manifest = read_manifest(s3, bucket, parent_id) if parent_id else None
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    # Plan with a placeholder id first: bad input fails before anything is written or claimed.
    plan_version("v0000", parent_manifest, new_frames, scheme, replace=replace,
                 reshuffle_validation=reshuffle_validation, seed=seed, validation_fraction=validation_fraction,
                 created_at=created_at)
    version = _claim(s3, bucket, created_at)
    plan = plan_version(version, parent_manifest, new_frames, scheme, replace=replace,
                        reshuffle_validation=reshuffle_validation, seed=seed,
                        validation_fraction=validation_fraction, created_at=created_at)
    write_plan(s3, bucket, plan, progress=progress)
    return plan.manifest


def verify_version(s3: Any, bucket: str, version: str) -> VerifyReport:
    """Recompute every file's SHA-256 and size against the manifest; list files the manifest does not name."""
    manifest = read_manifest(s3, bucket, version)
    report = VerifyReport(version)
    prefix = version_prefix(version)
    listed = {f["path"]: f for f in manifest["files"]}
    present: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        present.update(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
    for path, entry in listed.items():
        if path not in present:
            report.problems.append(f"{path}: missing")
            continue
        data = s3.get_object(Bucket=bucket, Key=prefix + path)["Body"].read()
        report.checked += 1
        if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
            report.problems.append(f"{path}: {len(data)} bytes with SHA-256 {sha256(data)[:12]}..., the manifest "
                                   f"says {entry['bytes']} bytes with {entry['sha256'][:12]}...")
    for extra in sorted(present - listed.keys() - {MANIFEST_FILE, CLAIM_FILE}):
        report.problems.append(f"{extra}: not in the manifest (written by another import or by hand)")
    return report
