"""What the labelling hand-off and the import share: the export manifest, the typed import results, and the checks
that turn a bad archive into one line per problem (issue 22 sections 3 and 4).

An export to a labelling tool (labelling.cvat, labelling.label_studio) writes ``roadseg-export.json`` (the EXPORT
MANIFEST) next to what the tool reads: frame name -> source frame key, its S3 version id and size, the model
(package) version that pre-annotated, and the scheme's name and classes. CVAT's own export does not keep our file, so
every reader also takes the manifest separately (``expected=``); without any manifest an import still validates
colours, labels and sizes, but cannot tell a missing or extra frame nor restore provenance.

Public API (other modules and ``roadseg label`` use these):

    FrameToLabel(name, image: np.ndarray (H, W, 3) RGB uint8 | Path to a JPEG/PNG, mask: np.ndarray (H, W) uint8
                 class indices with 255 = ignore, source_key=None, source_version_id=None)   - what an export takes
    ExportedFrame(name, width, height, image, source_key, source_version_id, pre_annotation_sha256)
                                                                                             - one manifest entry
    pre_annotation_digest(mask) -> str                    (SHA-256 of a class-index mask's shape and bytes)
    unchanged_labels(result, accept_unchanged) -> UnchangedCheck
                                                          (imported masks equal to their pre-annotation: refused
                                                           unless accepted; see "Unchanged pre-annotations")
    ExportManifest(tool, scheme, classes, frames, model_version, created_at, urls_expire_at)
        .to_json() -> str, .frame(name) -> ExportedFrame, .names -> tuple[str, ...]
    load_export_manifest(path) -> ExportManifest          (LabelImportError with one line when unreadable/invalid)
    parse_export_manifest(text, source) -> ExportManifest
    frame_name_for_key(key) -> str                        (a flat frame name both tools keep, from an S3 key)
    ImportedLabel(frame_name, mask, tool, task, source_key, source_version_id, model_version, annotator, updated_at,
                  unlabelled_pixels)                      - one imported class-index mask (uint8, 255 = ignore)
    ImportResult(tool, labels, manifest, missing)         - what read_cvat / read_label_studio return
    LabelImportError(ValueError)                          - .problems: every problem, one line each; str(): the first
                                                            MAX_PROBLEM_LINES lines plus "... and N more problems"
    LabelExportError(ValueError)                          - bad export input (programmer/caller error), one line
    zip_folder(folder, destination)                       - e.g. a Label Studio export folder as one zip to hand on

Pixel values: class index = the scheme's train id (segcore.classes), ``IGNORE_INDEX`` (255) = unlabelled / ignore.

Unchanged pre-annotations: CVAT turns uploaded pre-annotations into annotations, and Label Studio's annotator can
submit a prediction as it is, so a frame nobody corrected comes back looking labelled (and a later selection would
then leave it out as labelled). The export manifest (schema 1.1) records each frame's ``pre_annotation_sha256``
(``pre_annotation_digest`` of the mask handed to the tool); an imported mask with the same digest is UNCHANGED.
``unchanged_labels`` keeps the changed ones and refuses the unchanged unless ``accept_unchanged`` (an annotator who
checked a frame and found the model right); its counts reconcile: labels read = imported + refused, imported =
changed + unchanged accepted. A schema 1.0 manifest has no digests: its frames cannot be told apart and are counted
``unchecked`` (imported).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from contracts.documents import INT, STR, DocumentError, ListOf, Nullable, _validate
from segcore.classes import IGNORE_INDEX, RGB, ClassScheme

MANIFEST_FILE = "roadseg-export.json"
EXPORT_SCHEMA_VERSION = "1.1"
TOOLS = ("cvat", "label-studio")
MAX_PROBLEM_LINES = 20

# A frame name is a file name stem in both tools (CVAT matches annotation files to task images by it), so it has no
# directory part and nothing a file system or a URL would rewrite.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

EXPORT_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "tool": STR,
        "created_at": STR,
        "model_version": Nullable(STR),
        "urls_expire_at": Nullable(STR),
        "scheme": {"name": STR, "classes": ListOf({"name": STR, "color": ListOf(INT, 3)})},
        "frames": ListOf({"name": STR, "width": INT, "height": INT, "image": STR, "source_key": Nullable(STR),
                          "source_version_id": Nullable(STR)}),
    },
}
# 1.1: each frame's pre-annotation digest, to tell an imported mask nobody changed (see "Unchanged pre-annotations").
EXPORT_SCHEMAS["1.1"] = {
    **EXPORT_SCHEMAS["1.0"],
    "frames": ListOf({"name": STR, "width": INT, "height": INT, "image": STR, "source_key": Nullable(STR),
                      "source_version_id": Nullable(STR), "pre_annotation_sha256": Nullable(STR)}),
}


class LabelImportError(ValueError):
    """Labels that cannot be imported. ``problems`` holds every problem found, one line each (file, what, pixel
    count, how to fix); the message shows the first ``MAX_PROBLEM_LINES`` of them and how many more there are."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(format_problems(self.problems))


class LabelExportError(ValueError):
    """The frames handed to an export are inconsistent (a mask that does not fit its frame, a repeated name, ...)."""


def format_problems(problems: Sequence[str], limit: int = MAX_PROBLEM_LINES) -> str:
    """One line for one problem; several: the first ``limit`` lines and a last line counting the rest."""
    shown = list(problems[:limit])
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more problems ({len(problems)} in all)")
    return "\n".join(shown)


class Problems:
    """Collects one-line problems so a reader reports all of them at once instead of failing on the first."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_if_any(self) -> None:
        if self.lines:
            raise LabelImportError(self.lines)


# ------------------------------------------------------------------------------------------------ export side


@dataclass(frozen=True)
class FrameToLabel:
    """A frame to hand to a labelling tool with the model's mask as the pre-annotation."""

    name: str
    image: np.ndarray | Path
    mask: np.ndarray
    source_key: str | None = None
    source_version_id: str | None = None


@dataclass(frozen=True)
class ExportedFrame:
    """One frame of an export manifest: ``image`` is where the tool finds it (a path inside the archive, a relative
    path or a URL)."""

    name: str
    width: int
    height: int
    image: str
    source_key: str | None = None
    source_version_id: str | None = None
    pre_annotation_sha256: str | None = None  # pre_annotation_digest of the mask handed to the tool

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class ExportManifest:
    tool: str
    scheme: str
    classes: tuple[tuple[str, RGB], ...]
    frames: tuple[ExportedFrame, ...]
    model_version: str | None = None
    created_at: str = field(default_factory=lambda: utc_now())
    urls_expire_at: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.frames)

    def frame(self, name: str) -> ExportedFrame:
        for f in self.frames:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": EXPORT_SCHEMA_VERSION,
            "tool": self.tool,
            "created_at": self.created_at,
            "model_version": self.model_version,
            "urls_expire_at": self.urls_expire_at,
            "scheme": {"name": self.scheme, "classes": [{"name": n, "color": list(c)} for n, c in self.classes]},
            "frames": [
                {"name": f.name, "width": f.width, "height": f.height, "image": f.image, "source_key": f.source_key,
                 "source_version_id": f.source_version_id, "pre_annotation_sha256": f.pre_annotation_sha256}
                for f in self.frames
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def tool_problem(self, tool: str, source: str) -> str | None:
        """A line when this manifest belongs to an export for another tool than the one whose labels are read."""
        if self.tool == tool:
            return None
        return f"{source}: is the manifest of a {self.tool} export, not of a {tool} one; pass the {tool} export's"

    def scheme_problem(self, scheme: ClassScheme, source: str) -> str | None:
        """A line when the labels were exported with another scheme than the one importing them, else None."""
        ours = tuple((c.name, tuple(c.color)) for c in scheme.classes)
        if self.scheme == scheme.name and tuple(n for n, _ in self.classes) == tuple(n for n, _ in ours):
            return None
        return (
            f"{source}: exported with scheme '{self.scheme}' ({len(self.classes)} classes) but imported with "
            f"'{scheme.name}' ({scheme.num_classes} classes); import with the scheme of the export"
        )


def pre_annotation_digest(mask: np.ndarray) -> str:
    """SHA-256 of a class-index mask: its shape ("HxW:") then its uint8 bytes in C order, so two masks share a
    digest exactly when they are pixel for pixel the same array."""
    array = np.ascontiguousarray(mask, dtype=np.uint8)
    digest = hashlib.sha256(f"{array.shape[0]}x{array.shape[1]}:".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_manifest(
    tool: str,
    scheme: ClassScheme,
    frames: Iterable[ExportedFrame],
    *,
    model_version: str | None = None,
    urls_expire_at: str | None = None,
) -> ExportManifest:
    if tool not in TOOLS:
        raise LabelExportError(f"unknown labelling tool '{tool}'; choose one of {', '.join(TOOLS)}")
    if urls_expire_at is not None:
        check_utc_time(urls_expire_at, "urls_expire_at")
    return ExportManifest(
        tool=tool,
        scheme=scheme.name,
        classes=tuple((c.name, tuple(c.color)) for c in scheme.classes),
        frames=tuple(frames),
        model_version=model_version,
        urls_expire_at=urls_expire_at,
    )


def check_utc_time(value: str, what: str) -> None:
    """LabelExportError unless ``value`` is an ISO 8601 UTC time like 2026-12-08T05:00:00Z."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        parsed = None
    if parsed is None or parsed.utcoffset() is None or parsed.utcoffset().total_seconds() != 0:
        raise LabelExportError(f"{what} {value!r} must be an ISO 8601 UTC time such as 2026-12-08T05:00:00Z")


def parse_export_manifest(text: str | bytes, source: str) -> ExportManifest:
    """The manifest in ``text``; LabelImportError with one line naming ``source`` and the bad key otherwise."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelImportError([f"{source}: not JSON ({exc}); pass the {MANIFEST_FILE} the export wrote"]) from None
    try:
        _validate("export manifest", doc, EXPORT_SCHEMAS)
    except DocumentError as exc:
        raise LabelImportError([f"{source}: {exc}"]) from None
    if doc["tool"] not in TOOLS:
        raise LabelImportError([f"{source}: tool '{doc['tool']}' is not one of {', '.join(TOOLS)}"])
    frames = tuple(
        ExportedFrame(f["name"], f["width"], f["height"], f["image"], f["source_key"], f["source_version_id"],
                      f.get("pre_annotation_sha256"))
        for f in doc["frames"]
    )
    names = [f.name for f in frames]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LabelImportError([f"{source}: frames {', '.join(repeated)} are listed more than once"])
    return ExportManifest(
        tool=doc["tool"],
        scheme=doc["scheme"]["name"],
        classes=tuple((c["name"], tuple(c["color"])) for c in doc["scheme"]["classes"]),
        frames=frames,
        model_version=doc["model_version"],
        created_at=doc["created_at"],
        urls_expire_at=doc["urls_expire_at"],
    )


def load_export_manifest(path: str | Path) -> ExportManifest:
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise LabelImportError([f"{path}: cannot read the export manifest ({exc.strerror or exc})"]) from None
    return parse_export_manifest(text, str(path))


def frame_name_for_key(key: str) -> str:
    """A flat frame name for an S3 frame key: directories joined by ``__``, extension dropped, anything outside
    ``[A-Za-z0-9._-]`` replaced by ``-`` (``incoming/v1/d1/front/1700.jpg`` -> ``incoming__v1__d1__front__1700``)."""
    path = PurePosixPath(key.strip("/"))
    parts = [*path.parent.parts, path.stem] if path.suffix else list(path.parts)
    name = "__".join(re.sub(r"[^A-Za-z0-9._-]", "-", p) for p in parts if p not in ("", ".", ".."))
    name = name.lstrip("._-")
    if not name:
        raise LabelExportError(f"frame key {key!r} gives no usable frame name")
    return name[-200:].lstrip("._-")


def check_frame_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise LabelExportError(
            f"frame name {name!r} must be 1-200 characters of A-Z a-z 0-9 . _ - starting with a letter or digit "
            "(labelling tools match files by it); use frame_name_for_key(key)"
        )


def image_size(image: np.ndarray | Path, name: str) -> tuple[int, int]:
    """(width, height) of an RGB array or an image file (read from its header)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise LabelExportError(
                f"frame '{name}': image must be an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}"
            )
        return int(image.shape[1]), int(image.shape[0])
    try:
        with Image.open(image) as opened:
            return opened.size
    except (OSError, ValueError) as exc:
        raise LabelExportError(f"frame '{name}': cannot read image {image} ({exc})") from None


def load_rgb(image: np.ndarray | Path) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    with Image.open(image) as opened:
        return np.asarray(opened.convert("RGB"))


def check_export_frames(frames: Sequence[FrameToLabel], scheme: ClassScheme) -> list[tuple[int, int]]:
    """(width, height) of every frame once names are unique and usable and every mask fits its frame and holds only
    the scheme's values; LabelExportError with one line otherwise."""
    if not frames:
        raise LabelExportError("no frames to export")
    seen: set[str] = set()
    valid = np.zeros(256, dtype=bool)
    valid[list(scheme.valid_values())] = True
    sizes = []
    for frame in frames:
        check_frame_name(frame.name)
        if frame.name in seen:
            raise LabelExportError(f"frame name '{frame.name}' appears twice; names must be unique in an export")
        seen.add(frame.name)
        width, height = image_size(frame.image, frame.name)
        mask = frame.mask
        if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.ndim != 2:
            raise LabelExportError(f"frame '{frame.name}': mask must be a uint8 (H, W) array of class indices")
        if mask.shape != (height, width):
            raise LabelExportError(
                f"frame '{frame.name}': mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
                "pre-annotations must have the frame's size"
            )
        bad = ~valid[mask]
        if bad.any():
            values = sorted(int(v) for v in np.unique(mask[bad]))
            raise LabelExportError(
                f"frame '{frame.name}': {int(bad.sum())} mask pixels hold {values}, not classes of the "
                f"'{scheme.name}' scheme (0..{scheme.num_classes - 1}, {scheme.ignore_index} = ignore)"
            )
        sizes.append((width, height))
    return sizes


# ------------------------------------------------------------------------------------------------ import side


@dataclass(frozen=True)
class ImportedLabel:
    """One frame's imported labels: ``mask`` holds the scheme's train ids, ``IGNORE_INDEX`` where nothing is
    labelled. Provenance comes from the export manifest when there is one."""

    frame_name: str
    mask: np.ndarray
    tool: str
    task: str | None = None
    source_key: str | None = None
    source_version_id: str | None = None
    model_version: str | None = None
    annotator: str | None = None
    updated_at: str | None = None

    @property
    def unlabelled_pixels(self) -> int:
        return int(np.count_nonzero(self.mask == IGNORE_INDEX))

    @property
    def size(self) -> tuple[int, int]:
        return int(self.mask.shape[1]), int(self.mask.shape[0])


@dataclass(frozen=True)
class ImportResult:
    """``labels`` in frame-name order; ``missing`` names the expected frames without labels (only when the reader
    was told to allow them)."""

    tool: str
    labels: tuple[ImportedLabel, ...]
    manifest: ExportManifest | None = None
    missing: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Reconciliation: expected = imported + missing when there is a manifest."""
        expected = len(self.manifest.frames) if self.manifest else len(self.labels) + len(self.missing)
        return {"expected": expected, "imported": len(self.labels), "missing": len(self.missing)}


def check_frame_set(
    found: Mapping[str, tuple[str, int]],
    expected: ExportManifest | None,
    source: str,
    problems: Problems,
    *,
    allow_missing: bool = False,
) -> tuple[str, ...]:
    """Missing and extra frames against the manifest, one problem line each. ``found`` maps a frame name to (its file
    in the archive, its pixel count). Returns the missing names when ``allow_missing`` (not problems then)."""
    if expected is None:
        return ()
    wanted = set(expected.names)
    missing = []
    for frame in expected.frames:
        if frame.name not in found:
            if allow_missing:
                missing.append(frame.name)
            else:
                problems.add(
                    f"{source}: frame '{frame.name}' of the export is missing ({frame.pixels} pixels unlabelled); "
                    "label it and export again, or import with missing frames allowed"
                )
    for name in sorted(set(found) - wanted):
        file, pixels = found[name]
        problems.add(
            f"{source}:{file}: frame '{name}' ({pixels} pixels) is not in the export manifest; remove it or pass "
            "the manifest of the export it came from"
        )
    return tuple(missing)


def size_problem(source: str, file: str, width: int, height: int, frame: ExportedFrame | None) -> str | None:
    if frame is None or (width, height) == (frame.width, frame.height):
        return None
    return (
        f"{source}:{file}: mask is {width}x{height} ({width * height} pixels) but frame '{frame.name}' is "
        f"{frame.width}x{frame.height} ({frame.pixels} pixels); label the frame at its exported size"
    )


# A labelling export of thousands of frames is a few GB; images and PNG masks hardly compress, Label Studio's JSON
# perhaps 50:1. A member that claims more than MAX_MEMBER_RATIO times its compressed size, or an archive that would
# unpack to more than MAX_ARCHIVE_BYTES, is refused before anything is written (a zip bomb fills the disk). zipfile
# never writes more than a member's declared size, so the declared sizes are a true bound.
MAX_ARCHIVE_BYTES = 32 * 2**30
MAX_MEMBER_RATIO = 500
_RATIO_FLOOR_BYTES = 1 * 2**20  # small members may compress arbitrarily well (a blank mask, an empty list)


def safe_extract(archive: Path, destination: Path) -> None:
    """Unzip ``archive`` into ``destination``; LabelImportError with one line for a broken zip, a member that
    would land outside the destination, or an archive that unpacks to far more than it holds (see MAX_*)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            root = destination.resolve()
            members = zf.infolist()
            for member in members:
                target = (root / member.filename).resolve()
                if not target.is_relative_to(root):
                    raise LabelImportError([f"{archive}:{member.filename}: path leaves the archive; refusing it"])
                if (member.file_size > _RATIO_FLOOR_BYTES
                        and member.file_size > MAX_MEMBER_RATIO * max(member.compress_size, 1)):
                    raise LabelImportError([
                        f"{archive}:{member.filename}: unpacks to {member.file_size:,} bytes from "
                        f"{member.compress_size:,} (more than {MAX_MEMBER_RATIO}:1); refusing a likely zip bomb - "
                        "export the archive again from the labelling tool"])
            total = sum(member.file_size for member in members)
            if total > MAX_ARCHIVE_BYTES:
                raise LabelImportError([
                    f"{archive}: unpacks to {total:,} bytes, more than {MAX_ARCHIVE_BYTES:,}; import it in parts "
                    "(one archive per task)"])
            zf.extractall(root)
    except zipfile.BadZipFile as exc:
        raise LabelImportError([f"{archive}: not a zip archive ({exc})"]) from None
    except OSError as exc:
        raise LabelImportError([f"{archive}: cannot read ({exc.strerror or exc})"]) from None


def zip_folder(folder: Path, destination: Path) -> None:
    """Zip every file under ``folder`` (paths relative to it, sorted, so the same export gives the same listing)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())


def provenance(name: str, manifest: ExportManifest | None) -> dict[str, Any]:
    """ImportedLabel's provenance fields for ``name`` from the manifest (all None without one)."""
    if manifest is None or name not in manifest.names:
        return {"source_key": None, "source_version_id": None, "model_version": None}
    frame = manifest.frame(name)
    return {
        "source_key": frame.source_key,
        "source_version_id": frame.source_version_id,
        "model_version": manifest.model_version,
    }


# ------------------------------------------------------------------------------------- unchanged pre-annotations

UNCHANGED_NAMES_SHOWN = 5


@dataclass(frozen=True)
class UnchangedCheck:
    """The labels to import and those refused because they equal their pre-annotation (module docstring)."""

    imported: tuple[ImportedLabel, ...]
    refused: tuple[ImportedLabel, ...]  # unchanged and not accepted
    changed: int
    unchanged_accepted: int
    unchecked: int  # the export recorded no digest (schema 1.0 or no manifest): imported, not told apart

    def counts(self) -> dict[str, Any]:
        """labels read = imported + sum(refused); imported = changed + unchanged_accepted + unchecked."""
        return {"read": len(self.imported) + len(self.refused), "imported": len(self.imported),
                "changed": self.changed, "unchanged_accepted": self.unchanged_accepted, "unchecked": self.unchecked,
                "refused": {"unchanged": len(self.refused)}}

    def refusal_line(self) -> str | None:
        """One line naming the refused frames (how many, the first few) and how to import them; None if none."""
        if not self.refused:
            return None
        names = [label.frame_name for label in self.refused]
        shown = ", ".join(names[:UNCHANGED_NAMES_SHOWN]) + (", ..." if len(names) > UNCHANGED_NAMES_SHOWN else "")
        return (f"{len(names)} frame(s) came back exactly as the model pre-annotated them, so nobody may have "
                f"reviewed them ({shown}): left out; correct them in the tool, or pass --accept-unchanged if "
                "annotators checked them and found the model right")


def unchanged_labels(result: ImportResult, accept_unchanged: bool = False) -> UnchangedCheck:
    """Split ``result.labels`` by whether each mask equals the pre-annotation its export recorded."""
    recorded = {f.name: f.pre_annotation_sha256 for f in result.manifest.frames} if result.manifest else {}
    imported, refused = [], []
    changed = accepted = unchecked = 0
    for label in result.labels:
        digest = recorded.get(label.frame_name)
        if digest is None:
            unchecked += 1
            imported.append(label)
        elif pre_annotation_digest(label.mask) != digest:
            changed += 1
            imported.append(label)
        elif accept_unchanged:
            accepted += 1
            imported.append(label)
        else:
            refused.append(label)
    return UnchangedCheck(imported=tuple(imported), refused=tuple(refused), changed=changed,
                          unchanged_accepted=accepted, unchecked=unchecked)
