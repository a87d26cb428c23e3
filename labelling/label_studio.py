"""Label Studio: tasks with the model's masks as brush predictions out, the annotators' brushes back in (issue 22).

Label Studio's brush labels carry their own run-length encoding of an RGBA bitmap (label_studio_converter/brush.py,
not COCO RLE). Predictions are encoded with that library's ``mask2rle`` (one brush result per class present, 255 in
every channel where the class is), the import decodes with its ``decode_rle`` and takes the alpha channel, as the
library's ``decode_from_annotation`` does; a pixel counts as painted from half opacity up (``PAINTED_ALPHA``), since
the brush's canvas may soften its edges.

    labelling_config(scheme) -> str
        <View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image"><Label value="road"
        background="#804080"/>...</BrushLabels></View>: one Label per class, names and colours from the scheme.
    write_label_studio(frames: Sequence[FrameToLabel], scheme, destination: Path (a folder), *,
                       image_urls: Mapping[str, str] | None = None, urls_expire_at: str | None = None,
                       model_version: str | None = None, image_prefix: str = "") -> ExportManifest
        Writes tasks.json (import it into a project), labelling-config.xml (the project's labelling interface) and
        roadseg-export.json. Frames are referenced by ``image_urls`` (frame name -> presigned URL the caller made;
        ``urls_expire_at`` (ISO 8601 UTC) is then required and recorded, so nobody wonders why images stop loading),
        or else written to images/<name>.jpg and referenced as ``image_prefix + "images/<name>.jpg"`` (e.g.
        "/data/local-files/?d=export/" for Label Studio's local file storage).
    read_label_studio(export: Path (Label Studio's JSON export, or a zip holding it), scheme,
                      expected: ExportManifest | None = None, *, allow_missing=False) -> ImportResult
        Per task the newest annotation that was not cancelled; its brush results painted in order (a later result
        overwrites an earlier one where both paint); pixels no brush covers become 255 (ignore). Every problem (a
        label the scheme lacks, a missing or extra frame, a size mismatch, an undecodable brush) is one line of the
        LabelImportError with the task and the pixel count. ``expected`` defaults to a roadseg-export.json next to
        the export file. A task is matched to its frame by the "frame" field our export puts in its data, else by
        the file name of its image (a task made by hand, e.g. from presigned URLs).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
from label_studio_converter.brush import decode_rle, mask2rle
from PIL import Image

from labelling.archive import (
    MANIFEST_FILE,
    ExportedFrame,
    ExportManifest,
    FrameToLabel,
    ImportedLabel,
    ImportResult,
    LabelExportError,
    LabelImportError,
    Problems,
    build_manifest,
    check_export_frames,
    check_frame_set,
    load_export_manifest,
    load_rgb,
    pre_annotation_digest,
    provenance,
    safe_extract,
    size_problem,
)
from segcore.classes import ClassScheme

TOOL = "label-studio"
FROM_NAME = "tag"  # the BrushLabels control
TO_NAME = "image"  # the Image object
DATA_KEY = "image"  # $image in the labelling config: the task's data field holding the frame's URL or path
FRAME_KEY = "frame"  # our frame name in the task's data, kept by Label Studio through its export
TASKS_FILE = "tasks.json"
CONFIG_FILE = "labelling-config.xml"
IMAGES_DIR = "images"
PAINTED_ALPHA = 128
JPEG_QUALITY = 95


def labelling_config(scheme: ClassScheme) -> str:
    """The labelling interface for ``scheme`` (see the module docstring); XML-escaped names."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", {"name": TO_NAME, "value": f"${DATA_KEY}", "zoom": "true"})
    brushes = ET.SubElement(view, "BrushLabels", {"name": FROM_NAME, "toName": TO_NAME})
    for c in scheme.classes:
        ET.SubElement(brushes, "Label", {"value": c.name, "background": "#{:02x}{:02x}{:02x}".format(*c.color)})
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def brush_results(mask: np.ndarray, scheme: ClassScheme) -> list[dict[str, Any]]:
    """One brushlabels result per class present in ``mask`` (255 = ignore gets none), Label Studio's RLE."""
    height, width = mask.shape
    results = []
    for value in np.unique(mask):
        if value == scheme.ignore_index:
            continue
        name = scheme.classes[int(value)].name
        results.append({
            "id": f"class-{int(value)}",
            "type": "brushlabels",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(np.where(mask == value, 255, 0).astype(np.uint8)),
                      "brushlabels": [name]},
        })
    return results


def write_label_studio(
    frames: Sequence[FrameToLabel],
    scheme: ClassScheme,
    destination: Path,
    *,
    image_urls: Mapping[str, str] | None = None,
    urls_expire_at: str | None = None,
    model_version: str | None = None,
    image_prefix: str = "",
) -> ExportManifest:
    """Write tasks.json, labelling-config.xml and roadseg-export.json (and images/ without URLs) into
    ``destination``; returns the manifest."""
    sizes = check_export_frames(frames, scheme)
    if image_urls is not None:
        lacking = [f.name for f in frames if not image_urls.get(f.name)]
        if lacking:
            raise LabelExportError(f"frames {', '.join(lacking[:5])} have no URL; give every frame one")
        if not urls_expire_at:
            raise LabelExportError("presigned URLs need their expiry (urls_expire_at, ISO 8601 UTC) in the export")
    elif urls_expire_at:
        raise LabelExportError("urls_expire_at is for presigned URLs; without image_urls the frames are files")
    destination.mkdir(parents=True, exist_ok=True)
    tasks, exported = [], []
    for frame, (width, height) in zip(frames, sizes, strict=True):
        if image_urls is not None:
            ref = image_urls[frame.name]
        else:
            ref = image_prefix + _write_image(frame, destination)
        tasks.append({
            "data": {DATA_KEY: ref, FRAME_KEY: frame.name, "source_key": frame.source_key},
            "predictions": [{"model_version": model_version or "roadseg", "result": brush_results(frame.mask, scheme)}],
        })
        exported.append(ExportedFrame(frame.name, width, height, ref, frame.source_key, frame.source_version_id,
                                      pre_annotation_digest(frame.mask)))
    manifest = build_manifest(TOOL, scheme, exported, model_version=model_version, urls_expire_at=urls_expire_at)
    (destination / TASKS_FILE).write_text(json.dumps(tasks) + "\n")
    (destination / CONFIG_FILE).write_text(labelling_config(scheme))
    (destination / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def _write_image(frame: FrameToLabel, destination: Path) -> str:
    """The frame as images/<name>.jpg (a JPEG file is copied as it is); its path relative to ``destination``."""
    folder = destination / IMAGES_DIR
    folder.mkdir(exist_ok=True)
    if isinstance(frame.image, Path) and frame.image.suffix.lower() in (".jpg", ".jpeg", ".png"):
        target = folder / f"{frame.name}{frame.image.suffix.lower()}"
        shutil.copyfile(frame.image, target)
    else:
        target = folder / f"{frame.name}.jpg"
        Image.fromarray(load_rgb(frame.image)).save(target, quality=JPEG_QUALITY)
    return f"{IMAGES_DIR}/{target.name}"


# ------------------------------------------------------------------------------------------------------ import


def read_label_studio(
    export: Path,
    scheme: ClassScheme,
    expected: ExportManifest | None = None,
    *,
    allow_missing: bool = False,
) -> ImportResult:
    """The class-index masks of a Label Studio JSON export, or of a zip holding one (see the module docstring)."""
    export = Path(export)
    if export.is_file() and zipfile.is_zipfile(export):
        with tempfile.TemporaryDirectory(prefix="roadseg-ls-import-") as tmp:
            safe_extract(export, Path(tmp))
            inner = sorted(p for p in Path(tmp).rglob("*.json") if p.name != MANIFEST_FILE)
            if len(inner) != 1:
                raise LabelImportError([f"{export}: holds {len(inner)} JSON files besides {MANIFEST_FILE}; expected "
                                        "the one JSON export of the project"])
            source = f"{export}:{inner[0].relative_to(tmp).as_posix()}"
            return _read_export(inner[0], source, scheme, expected, allow_missing)
    return _read_export(export, str(export), scheme, expected, allow_missing)


def _read_export(
    export: Path, source: str, scheme: ClassScheme, expected: ExportManifest | None, allow_missing: bool
) -> ImportResult:
    try:
        tasks = json.loads(export.read_bytes())
    except OSError as exc:
        raise LabelImportError([f"{source}: cannot read ({exc.strerror or exc})"]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelImportError([f"{source}: not JSON ({exc}); export the project as 'JSON'"]) from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise LabelImportError([f"{source}: expected a list of tasks with 'data'; export the project as 'JSON' "
                                "(not 'JSON-MIN' or CSV)"])
    manifest = expected
    if manifest is None and (export.parent / MANIFEST_FILE).is_file():
        manifest = load_export_manifest(export.parent / MANIFEST_FILE)
    if manifest is not None:
        mismatch = manifest.tool_problem(TOOL, "manifest") or manifest.scheme_problem(scheme, "manifest")
        if mismatch:
            raise LabelImportError([mismatch])

    problems = Problems()
    found: dict[str, tuple[str, int]] = {}
    labels: dict[str, ImportedLabel] = {}
    unannotated: list[str] = []
    for position, task in enumerate(tasks):
        task_id = str(task.get("id", position))
        where = f"{source}: task {task_id}"
        name = _frame_name(task["data"])
        if name is None:
            problems.add(f"{where}: no '{FRAME_KEY}' or '{DATA_KEY}' in its data; cannot tell which frame it is")
            continue
        if name in found or name in unannotated:
            problems.add(f"{where}: frame '{name}' appears in another task too; delete the duplicate task")
            continue
        annotation = _latest_annotation(task.get("annotations"))
        if annotation is None:
            unannotated.append(name)
            continue
        frame = manifest.frame(name) if manifest is not None and name in manifest.names else None
        mask, pixels = _paint(annotation.get("result") or [], where, name, frame, scheme, problems)
        found[name] = (f"task {task_id}", pixels)  # found even when unusable: its problems are reported already
        if mask is None:
            continue
        labels[name] = ImportedLabel(
            frame_name=name, mask=mask, tool=TOOL, task=task_id, annotator=_annotator(annotation),
            updated_at=annotation.get("updated_at") or annotation.get("created_at"), **provenance(name, manifest),
        )
    for name in unannotated:
        if manifest is None or name in manifest.names:
            if not allow_missing:
                frame_pixels = manifest.frame(name).pixels if manifest is not None else None
                pixels = f"{frame_pixels} pixels unlabelled" if frame_pixels is not None else "nothing labelled"
                problems.add(f"{source}: frame '{name}' has no submitted annotation ({pixels}); label it, or "
                             "import with missing frames allowed")
        else:
            problems.add(f"{source}: frame '{name}' is not in the export manifest and has no annotation; delete "
                         "its task or pass the manifest of its export")
    # A task without a submitted annotation was reported above; only tasks that are gone are missing here.
    present = {**found, **{n: ("", 0) for n in unannotated if manifest is not None and n in manifest.names}}
    missing = check_frame_set(present, manifest, source, problems, allow_missing=allow_missing)
    problems.raise_if_any()
    if manifest is not None:
        missing = tuple(sorted({*missing, *(n for n in unannotated if n in manifest.names)}))
    else:
        missing = tuple(sorted(unannotated)) if allow_missing else ()
    return ImportResult(tool=TOOL, labels=tuple(labels[n] for n in sorted(labels)), manifest=manifest,
                        missing=missing)


def _frame_name(data: Mapping[str, Any]) -> str | None:
    """Our frame name, or the stem of the image's file name (a presigned URL's path, or local storage's ?d=)."""
    if isinstance(data.get(FRAME_KEY), str) and data[FRAME_KEY]:
        return data[FRAME_KEY]
    ref = data.get(DATA_KEY)
    if not isinstance(ref, str) or not ref:
        return None
    parsed = urlparse(ref)
    path = parse_qs(parsed.query).get("d", [parsed.path])[0]
    stem = PurePosixPath(unquote(path)).stem  # a file uploaded through Label Studio's page gets a prefix: not ours
    return stem or None


def _latest_annotation(annotations: Any) -> dict[str, Any] | None:
    """The newest annotation that was not cancelled (skipped); Label Studio keeps every annotator's."""
    kept = [a for a in annotations or [] if isinstance(a, dict) and not (a.get("was_cancelled") or a.get("skipped"))]
    if not kept:
        return None
    return max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), str(a.get("id", ""))))


def _annotator(annotation: Mapping[str, Any]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who is None else str(who)


def _paint(
    results: Sequence[Any],
    where: str,
    name: str,
    frame: ExportedFrame | None,
    scheme: ClassScheme,
    problems: Problems,
) -> tuple[np.ndarray | None, int]:
    """The class-index mask the brush results paint, in order, and its pixel count; no mask (with problem lines)
    when a result is unusable."""
    mask: np.ndarray | None = None
    size: tuple[int, int] | None = None
    pixels = frame.pixels if frame is not None else 0
    ok = True
    for index, result in enumerate(results):
        what = f"{where} result {index}"
        if not isinstance(result, dict) or str(result.get("type", "")).lower() != "brushlabels":
            kind = result.get("type") if isinstance(result, dict) else type(result).__name__
            problems.add(f"{what}: type '{kind}' is not brushlabels; label frames with the brush only")
            ok = False
            continue
        value = result.get("value") or {}
        width, height = result.get("original_width"), result.get("original_height")
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            problems.add(f"{what}: no original_width/original_height; export the project as 'JSON' again")
            ok = False
            continue
        if frame is None and not pixels:
            pixels = width * height
        line = size_problem(where, f"result {index}", width, height, frame)
        if line:
            problems.add(line)
            ok = False
            continue
        if size is not None and (width, height) != size:
            problems.add(f"{what}: brush is {width}x{height} ({width * height} pixels) but an earlier one is "
                         f"{size[0]}x{size[1]}; the frame's brushes must share its size")
            ok = False
            continue
        size = (width, height)
        rle = value.get("rle") if isinstance(value, dict) else None
        # The RLE's first 32 bits are its value count (RGBA: 4 per pixel); checked before decoding, which would
        # allocate whatever a damaged header claims.
        if not isinstance(rle, list) or len(rle) < 4 or not all(isinstance(b, int) and 0 <= b <= 255 for b in rle):
            problems.add(f"{what}: no brush RLE (value.rle, a list of bytes); draw it again")
            ok = False
            continue
        count = int.from_bytes(bytes(rle[:4]), "big")
        if count != width * height * 4:
            problems.add(f"{what}: brush RLE holds {count // 4} pixels but the image is {width}x{height} "
                         f"({width * height} pixels); draw it again")
            ok = False
            continue
        try:
            layer = decode_rle(rle)
        except (IndexError, TypeError, ValueError) as exc:
            problems.add(f"{what}: cannot decode its brush RLE ({type(exc).__name__}: {exc}); draw it again")
            ok = False
            continue
        painted = layer.reshape(height, width, 4)[:, :, 3] >= PAINTED_ALPHA
        names = value.get("brushlabels") or []
        names = names if isinstance(names, list) else [names]
        if len(names) != 1 or names[0] not in scheme.names:
            problems.add(f"{what}: {int(painted.sum())} pixels of label {names!r}, not one class of the "
                         f"'{scheme.name}' scheme (classes: {', '.join(scheme.names)}); relabel them")
            ok = False
            continue
        if mask is None:
            mask = np.full((height, width), scheme.ignore_index, dtype=np.uint8)
        mask[painted] = scheme.index(names[0])
    if not ok:
        return None, pixels
    if mask is None:  # submitted with no brush at all: every pixel unlabelled
        if frame is None:
            problems.add(f"{where}: frame '{name}' has an annotation without brushes and no known size; pass the "
                         "export manifest")
            return None, pixels
        mask = np.full((frame.height, frame.width), scheme.ignore_index, dtype=np.uint8)
    return mask, mask.size
