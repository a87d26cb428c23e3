"""CVAT "Segmentation mask 1.1": the model's masks as pre-annotations out, the corrected masks back in (issue 22).

The format is Pascal VOC segmentation plus ``labelmap.txt`` (``name:r,g,b:parts:actions``): ``SegmentationClass/*.png``
colour masks, ``SegmentationObject/*.png`` instance masks, ``ImageSets/Segmentation/default.txt`` and optionally
``JPEGImages/``. CVAT itself reads and writes it with datumaro's ``voc_segmentation`` format and a label map built
from the project's labels with ``background`` 0,0,0 first (cvat/apps/dataset_manager/formats/mask.py); this module
writes it the same way, with datumaro, so what CVAT gets is what CVAT would write. A colour missing from
labelmap.txt fails CVAT's import (CVAT issues #6830, #7847), hence every class colour is in it and the ignore value
255 is painted as ``background`` 0,0,0, CVAT's "no label". On import, background (and 0,0,0 when no class has it)
becomes 255 again. The import reads with datumaro's VOC pieces (its importer finds the subset lists, its parser reads
labelmap.txt, its loaders read the PNGs and image headers) but lists items and decodes colours itself: datumaro's
Dataset.import_from decodes every class and instance mask just to list the items (about 2 s per 1920x1080 frame,
against 0.2 s here) and stops at the first undeclared colour without the pixel counts the report needs. The tests
check the two readers agree on every mask.

    write_cvat(frames: Sequence[FrameToLabel], scheme, destination: Path, *, model_version=None,
               include_images=True, images_destination: Path | None = None) -> ExportManifest
        One zip to upload to a CVAT task as "Segmentation mask 1.1" annotations, with roadseg-export.json inside;
        ``images_destination``: a second zip holding only the frames (flat, ``<name>.jpg``) to create the task from
        (a task created from the annotation zip would take its mask PNGs for frames).
    read_cvat(archive: Path (zip or extracted folder), scheme, expected: ExportManifest | None = None, *,
              allow_missing=False, task=None) -> ImportResult
        The corrected masks as class-index masks (uint8, 255 = ignore) with provenance from ``expected`` or from the
        roadseg-export.json inside the archive (CVAT's own export drops it). Every problem (a colour not in
        labelmap.txt, a label the scheme lacks, a missing or extra frame, a size mismatch) is one line of the
        LabelImportError, with the file and the pixel count.
    cvat_label_map(scheme) -> dict[str, tuple[int, int, int]]   (labelmap.txt's entries, background first)
    cvat_project_labels(scheme) -> list[dict]
        The project's labels as CVAT's API, its CLI (``cvat-cli project create --labels @cvat-labels.json``) and the
        label editor's "Raw" tab take them (name, "#rrggbb" colour, type "any": masks stay masks, or become polygons
        if the upload converts them); also written into the export zip as ``cvat-labels.json``. A task's labels must
        carry the scheme's names, or CVAT drops the pre-annotations of the others.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from datumaro.components.annotation import AnnotationType, ExtractedMask, LabelCategories
from datumaro.components.dataset import Dataset
from datumaro.components.dataset_base import DatasetItem
from datumaro.components.errors import DatumaroError
from datumaro.components.media import Image
from datumaro.plugins.data_formats.voc.format import VocPath, parse_label_map
from datumaro.plugins.data_formats.voc.importer import VocSegmentationImporter
from datumaro.util.image import find_images, load_image

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
    parse_export_manifest,
    pre_annotation_digest,
    provenance,
    safe_extract,
    size_problem,
    zip_folder,
)
from segcore.classes import ClassScheme

TOOL = "cvat"
DATUMARO_FORMAT = "voc_segmentation"  # what CVAT's "Segmentation mask 1.1" exporter passes to datumaro
BACKGROUND = "background"
BACKGROUND_COLOR = (0, 0, 0)
PROJECT_LABELS_FILE = "cvat-labels.json"
SUBSET = "default"  # CVAT writes ImageSets/Segmentation/default.txt

# Marks, in a colour lookup, pixels whose colour labelmap.txt names with a label that is not a class of the scheme.
_FOREIGN = 256
_UNKNOWN = 257


def cvat_label_map(scheme: ClassScheme) -> dict[str, tuple[int, int, int]]:
    """labelmap.txt's entries for ``scheme``: background 0,0,0 first, then every class with its colour.

    LabelExportError when CVAT could not tell the classes apart: a class named background or coloured 0,0,0 (CVAT's
    "no label"), or two classes of one colour."""
    entries: dict[str, tuple[int, int, int]] = {BACKGROUND: BACKGROUND_COLOR}
    owner: dict[tuple[int, int, int], str] = {}
    for c in scheme.classes:
        color = tuple(c.color)
        if c.name == BACKGROUND or color == BACKGROUND_COLOR:
            raise LabelExportError(
                f"scheme '{scheme.name}': class '{c.name}' {color} collides with CVAT's '{BACKGROUND}' 0,0,0 (its "
                "'no label'); rename or recolour the class"
            )
        if color in owner:
            raise LabelExportError(
                f"scheme '{scheme.name}': classes '{owner[color]}' and '{c.name}' share colour {color}; CVAT's "
                "colour masks could not tell them apart"
            )
        owner[color] = c.name
        entries[c.name] = color
    return entries


def cvat_project_labels(scheme: ClassScheme) -> list[dict[str, object]]:
    """CVAT's label objects for ``scheme`` (the Label model of CVAT's API: name, color "#rrggbb", type, attributes;
    https://docs.cvat.ai/docs/api_sdk/sdk/reference/models/label/). No background label: CVAT adds its own."""
    cvat_label_map(scheme)  # the same refusals: CVAT could not tell such classes apart in a colour mask
    return [{"name": c.name, "color": "#{:02x}{:02x}{:02x}".format(*c.color), "type": "any", "attributes": []}
            for c in scheme.classes]


def write_cvat(
    frames: Sequence[FrameToLabel],
    scheme: ClassScheme,
    destination: Path,
    *,
    model_version: str | None = None,
    include_images: bool = True,
    images_destination: Path | None = None,
) -> ExportManifest:
    """Write the CVAT "Segmentation mask 1.1" zip of ``frames`` (see the module docstring); returns its manifest."""
    label_map = cvat_label_map(scheme)
    sizes = check_export_frames(frames, scheme)
    if images_destination is not None and not include_images:
        raise LabelExportError("images_destination needs include_images (the frames are taken from the export)")
    items = []
    for frame in frames:
        if isinstance(frame.image, np.ndarray):
            media = Image.from_numpy(data=np.ascontiguousarray(frame.image[:, :, ::-1]))  # datumaro holds BGR
        else:
            media = Image.from_file(path=str(frame.image))
        present = [int(v) for v in np.unique(frame.mask) if v != scheme.ignore_index]
        # One mask per class present, sharing the index mask (no per-class copies); the ignore value gets none, so
        # datumaro paints it as background. A frame with nothing but ignore gets no class PNG (CVAT's own way).
        annotations = [ExtractedMask(index_mask=frame.mask, index=v, label=v, id=i + 1, group=i + 1)
                       for i, v in enumerate(present)]
        items.append(DatasetItem(id=frame.name, subset=SUBSET, media=media, annotations=annotations))
    dataset = Dataset.from_iterable(
        items, categories={AnnotationType.label: LabelCategories.from_iterable(scheme.names)}, media_type=Image
    )
    with tempfile.TemporaryDirectory(prefix="roadseg-cvat-") as tmp:
        root = Path(tmp) / "export"
        dataset.export(
            str(root),
            DATUMARO_FORMAT,
            save_media=include_images,
            apply_colormap=True,
            label_map={name: [color, [], []] for name, color in label_map.items()},
        )
        images = {p.stem: p for p in (root / VocPath.IMAGES_DIR).glob("*") if p.is_file()}
        exported = [
            ExportedFrame(
                name=frame.name,
                width=width,
                height=height,
                image=f"{VocPath.IMAGES_DIR}/{images[frame.name].name}" if frame.name in images else frame.name,
                source_key=frame.source_key,
                source_version_id=frame.source_version_id,
                pre_annotation_sha256=pre_annotation_digest(frame.mask),
            )
            for frame, (width, height) in zip(frames, sizes, strict=True)
        ]
        manifest = build_manifest(TOOL, scheme, exported, model_version=model_version)
        (root / MANIFEST_FILE).write_text(manifest.to_json())
        (root / PROJECT_LABELS_FILE).write_text(json.dumps(cvat_project_labels(scheme), indent=2) + "\n")
        zip_folder(root, destination)
        if images_destination is not None:
            images_destination.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(images_destination, "w", zipfile.ZIP_STORED) as zf:  # JPEGs do not compress
                for name in sorted(images):
                    zf.write(images[name], images[name].name)
    return manifest


def read_cvat(
    archive: Path,
    scheme: ClassScheme,
    expected: ExportManifest | None = None,
    *,
    allow_missing: bool = False,
    task: str | None = None,
) -> ImportResult:
    """The class-index masks of a CVAT "Segmentation mask 1.1" export (see the module docstring)."""
    archive = Path(archive)
    if archive.is_dir():
        return _read_folder(archive, str(archive), scheme, expected, allow_missing, task)
    if not archive.is_file():
        raise LabelImportError([f"{archive}: no such file; pass the zip CVAT exported ('Segmentation mask 1.1')"])
    with tempfile.TemporaryDirectory(prefix="roadseg-cvat-import-") as tmp:
        safe_extract(archive, Path(tmp))
        return _read_folder(Path(tmp), str(archive), scheme, expected, allow_missing, task)


def _subset_lists(folder: Path, source: str) -> tuple[Path, list[Path]]:
    """The folder holding ImageSets/ (CVAT zips have it at the top; a re-zipped folder may nest it) and its
    ImageSets/Segmentation/<subset>.txt lists, as datumaro's VOC importer finds them."""
    lists = sorted(Path(s["url"]) for s in VocSegmentationImporter.find_sources(str(folder)))
    if not lists:
        raise LabelImportError([
            f"{source}: no {VocPath.SUBSETS_DIR}/Segmentation/*.txt; not a CVAT 'Segmentation mask 1.1' export "
            "(export the task with that format)"
        ])
    root = lists[0].parents[2]
    return root, [p for p in lists if p.parents[2] == root]


def _item_ids(lists: list[Path], root: Path, source: str, problems: Problems) -> list[str]:
    """Item ids of the subset lists (one a line, '#' comments, as datumaro's VOC reader takes them). Read here, not
    through datumaro's Dataset.import_from, which decodes every class and instance mask while listing the items
    (about 2 s per 1920x1080 frame); the masks are decoded once, below, with the counts a report needs."""
    ids: set[str] = set()
    for path in lists:
        for line in path.read_text(encoding="utf-8").splitlines():
            item_id = line.strip()
            if not item_id or item_id.startswith("#"):
                continue
            if not (root / item_id).resolve().is_relative_to(root.resolve()):
                problems.add(f"{source}:{path.relative_to(root).as_posix()}: item '{item_id}' leaves the archive")
                continue
            ids.add(item_id)
    return sorted(ids)


def _read_folder(
    folder: Path,
    source: str,
    scheme: ClassScheme,
    expected: ExportManifest | None,
    allow_missing: bool,
    task: str | None,
) -> ImportResult:
    problems = Problems()
    root, lists = _subset_lists(folder, source)
    manifest = expected
    if manifest is None and (root / MANIFEST_FILE).is_file():
        manifest = parse_export_manifest((root / MANIFEST_FILE).read_bytes(), f"{source}:{MANIFEST_FILE}")
    if manifest is not None:
        where = f"{source}:{MANIFEST_FILE}" if expected is None else "manifest"
        mismatch = manifest.tool_problem(TOOL, where) or manifest.scheme_problem(scheme, where)
        if mismatch:
            raise LabelImportError([mismatch])

    lookup = _label_lookup(root, source, scheme, problems)
    item_ids = _item_ids(lists, root, source, problems)
    images_dir = root / VocPath.IMAGES_DIR
    images = {
        Path(p).relative_to(images_dir).with_suffix("").as_posix(): p
        for p in (find_images(str(images_dir), recursive=True) if images_dir.is_dir() else ())
    }

    found: dict[str, tuple[str, int]] = {}
    masks: dict[str, np.ndarray] = {}
    no_mask: list[str] = []
    by_name: dict[str, str] = {}
    for item_id in item_ids:
        # CVAT names an item after its task file's path; frame names are flat, so the last part is the frame.
        name = PurePosixPath(item_id).name
        if name in by_name:
            problems.add(f"{source}: items '{by_name[name]}' and '{item_id}' are both frame '{name}'; keep one")
            continue
        by_name[name] = item_id
        file = f"{VocPath.SEGMENTATION_DIR}/{item_id}{VocPath.SEGM_EXT}"
        path = root / file
        if not path.is_file():
            no_mask.append(name)  # listed, nothing labelled: CVAT writes no class PNG for a frame without masks
            continue
        shape, mask = _decode(path, file, source, lookup, scheme, problems)
        if shape is None:
            continue
        height, width = shape
        found[name] = (file, width * height)
        if mask is not None:
            masks[name] = mask
        frame = manifest.frame(name) if manifest is not None and name in manifest.names else None
        line = size_problem(source, file, width, height, frame)
        if line:
            problems.add(line)
        image_size = Image.from_file(path=images[item_id]).size if item_id in images else None  # header only
        if image_size is not None and image_size != (height, width):
            image_height, image_width = image_size
            image_file = Path(images[item_id]).relative_to(root).as_posix()
            problems.add(
                f"{source}:{file}: mask is {width}x{height} ({width * height} pixels) but its image "
                f"{image_file} is {image_width}x{image_height}; label the frame at its size"
            )
    if manifest is None and no_mask and not allow_missing:
        for name in no_mask:
            problems.add(f"{source}: frame '{name}' has no {VocPath.SEGMENTATION_DIR} mask (nothing labelled); "
                         "label it or import with missing frames allowed")
    missing = check_frame_set(found, manifest, source, problems, allow_missing=allow_missing)
    problems.raise_if_any()
    if manifest is None:
        missing = tuple(no_mask)
    labels = tuple(
        ImportedLabel(frame_name=name, mask=masks[name], tool=TOOL, task=task, **provenance(name, manifest))
        for name in sorted(masks)
    )
    return ImportResult(tool=TOOL, labels=labels, manifest=manifest, missing=missing)


@dataclass(frozen=True)
class _Lookup:
    """What a mask pixel means. Colour PNGs: packed colour (r << 16 | g << 8 | b) -> train id, the ignore index
    (background) or _FOREIGN (a label the scheme lacks). Single-channel PNGs (CVAT's documentation allows them):
    the pixel is the label's position in labelmap.txt, as datumaro's VOC reader takes it."""

    colors: dict[int, int]
    color_names: dict[int, str]
    indices: dict[int, int]
    index_names: dict[int, str]


def _label_lookup(root: Path, source: str, scheme: ClassScheme, problems: Problems) -> _Lookup:
    """The lookup from labelmap.txt, read with datumaro's parser."""
    path = root / VocPath.LABELMAP_FILE
    if not path.is_file():
        raise LabelImportError([
            f"{source}: no {VocPath.LABELMAP_FILE}; CVAT writes it with every export and without it the colours "
            "cannot be named (export the task again as 'Segmentation mask 1.1')"
        ])
    try:
        label_map = parse_label_map(str(path))
    except (DatumaroError, ValueError) as exc:
        raise LabelImportError([f"{source}:{VocPath.LABELMAP_FILE}: {exc}"]) from None
    names = set(scheme.names)
    class_colors = {tuple(c.color) for c in scheme.classes}
    lookup = _Lookup({}, {}, {}, {})
    for position, (name, (color, _parts, _actions)) in enumerate(label_map.items()):
        if name in names:
            value = scheme.index(name)
        elif name == BACKGROUND or (color is not None and tuple(color) == BACKGROUND_COLOR
                                    and BACKGROUND_COLOR not in class_colors):
            value = scheme.ignore_index
        else:
            value = _FOREIGN
        lookup.indices[position] = value
        lookup.index_names[position] = name
        if color is None:
            continue  # a label without a colour paints nothing in a colour PNG
        packed = (color[0] << 16) | (color[1] << 8) | color[2]
        if packed in lookup.colors and lookup.colors[packed] != value:
            problems.add(
                f"{source}:{VocPath.LABELMAP_FILE}: labels '{lookup.color_names[packed]}' and '{name}' share colour "
                f"{_rgb(packed)}; give each label its own colour in CVAT and export again"
            )
            continue
        lookup.colors[packed] = value
        lookup.color_names[packed] = name
    return lookup


def _decode(
    path: Path, file: str, source: str, lookup: _Lookup, scheme: ClassScheme, problems: Problems
) -> tuple[tuple[int, int] | None, np.ndarray | None]:
    """(height, width) and the class-index mask of one mask PNG; no mask (and problem lines with pixel counts) when
    it has colours labelmap.txt lacks or labels the scheme lacks, no size either when it is unreadable. Decoded here
    rather than by datumaro's unpaint_mask, which stops at the first undeclared colour without the pixel counts the
    report needs."""
    try:
        painted = load_image(str(path))  # datumaro's loader: HW (single channel) or HWC BGR(A)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's problem, reported as one line
        problems.add(f"{source}:{file}: cannot read the PNG ({exc}); export the task again")
        return None, None
    if painted.ndim == 3 and painted.shape[2] == 1:
        painted = painted[:, :, 0]
    if painted.ndim == 2:
        keys = painted.astype(np.uint32)
        table, names, what, show = lookup.indices, lookup.index_names, "label index(es)", str
    elif painted.ndim == 3 and painted.shape[2] >= 3:
        keys = painted[:, :, 2].astype(np.uint32) << 16
        keys |= painted[:, :, 1].astype(np.uint32) << 8
        keys |= painted[:, :, 0]
        table, names, what, show = lookup.colors, lookup.color_names, "colour(s)", _rgb
    else:
        problems.add(f"{source}:{file}: a {painted.shape} image is no mask; CVAT writes RGB colour PNGs")
        return None, None
    # A lookup of every pixel in the few known keys (searchsorted, not np.unique over the frame: about 20x faster).
    table_keys = np.array(sorted(table), dtype=np.uint32)
    table_values = np.array([table[int(k)] for k in table_keys], dtype=np.uint16)
    flat = keys.ravel()
    if table_keys.size:
        position = np.searchsorted(table_keys, flat)
        np.minimum(position, table_keys.size - 1, out=position)
        known = table_keys[position] == flat
    else:
        position, known = np.zeros(flat.shape, dtype=np.intp), np.zeros(flat.shape, dtype=bool)
    values = table_values[position]
    unknown_keys, unknown_counts = np.unique(flat[~known], return_counts=True)
    unknown = [(int(u), int(n)) for u, n in zip(unknown_keys, unknown_counts, strict=True)]
    hits = np.bincount(position[known], minlength=table_keys.size)
    foreign = [(int(k), int(n)) for k, v, n in zip(table_keys, table_values, hits, strict=True)
               if v == _FOREIGN and n]
    if unknown:
        listed = "; ".join(f"{show(u)}: {n}" for u, n in unknown[:5]) + ("; ..." if len(unknown) > 5 else "")
        problems.add(
            f"{source}:{file}: {sum(n for _, n in unknown)} pixels in {len(unknown)} {what} not in "
            f"{VocPath.LABELMAP_FILE} ({listed}); add them to labelmap.txt with their class or repaint them"
        )
    for key, count in foreign:
        problems.add(
            f"{source}:{file}: {count} pixels of label '{names[key]}' ({show(key)}), not a class of the "
            f"'{scheme.name}' scheme (classes: {', '.join(scheme.names)}); relabel them"
        )
    if unknown or foreign:
        return keys.shape, None
    return keys.shape, values.astype(np.uint8).reshape(keys.shape)  # every pixel known here


def _rgb(packed: int) -> str:
    return f"{(packed >> 16) & 255},{(packed >> 8) & 255},{packed & 255}"
