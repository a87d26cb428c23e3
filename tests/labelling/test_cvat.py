"""CVAT "Segmentation mask 1.1": our export read by datumaro (the library CVAT imports it with), archives written by
datumaro the way CVAT writes them read by ours, and every bad archive reported in one line with its pixel count."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
from datumaro.components.dataset import Dataset
from datumaro.components.dataset_base import DatasetItem
from datumaro.components.media import Image as DmImage
from datumaro.plugins.data_formats.voc.format import parse_label_map
from PIL import Image

from labelling.archive import (
    MANIFEST_FILE,
    FrameToLabel,
    LabelExportError,
    LabelImportError,
    frame_name_for_key,
    load_export_manifest,
)
from labelling.cvat import cvat_label_map, cvat_project_labels, read_cvat, write_cvat
from labelling.label_studio import write_label_studio
from segcore.classes import CAMVID, CITYSCAPES, IGNORE_INDEX, custom_scheme
from tests.labelling.conftest import HEIGHT, WIDTH, block_mask, only_problem, rgb_image


def _extract(archive: Path, folder: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    return folder


def _zip(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def _cvat_like_archive(
    tmp_path: Path,
    masks: dict[str, np.ndarray],
    labels: list[tuple[str, tuple[int, int, int]]],
    *,
    images: bool = False,
    name: str = "cvat-export",
    apply_colormap: bool = True,
) -> Path:
    """A "Segmentation mask 1.1" zip as CVAT writes it: a datumaro Dataset built here (one binary Mask per label
    present; index = position in ``labels``, 255 = nothing), exported by datumaro as voc_segmentation with CVAT's label
    map (the project's labels and background 0,0,0, cvat/apps/dataset_manager/formats/mask.py); no roadseg file."""
    names = [n for n, _ in labels]
    items = []
    for item_id, mask in masks.items():
        annotations = [Mask(image=mask == v, label=int(v)) for v in np.unique(mask) if v != IGNORE_INDEX]
        media = DmImage.from_numpy(data=np.zeros((*mask.shape, 3), dtype=np.uint8)) if images else None
        items.append(DatasetItem(id=item_id, subset="default", media=media, annotations=annotations))
    dataset = Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(names)},
                                    media_type=DmImage)
    label_map = {"background": [(0, 0, 0), [], []], **{n: [c, [], []] for n, c in labels}}
    folder = tmp_path / name
    dataset.export(str(folder), "voc_segmentation", save_media=images, apply_colormap=apply_colormap,
                   label_map=label_map)
    return _zip(folder, tmp_path / f"{name}.zip")


def _scheme_labels(scheme=CITYSCAPES) -> list[tuple[str, tuple[int, int, int]]]:
    return [(c.name, tuple(c.color)) for c in scheme.classes]


@pytest.fixture
def exported(frames, tmp_path):
    archive = tmp_path / "out" / "cvat.zip"
    manifest = write_cvat(frames, CITYSCAPES, archive, model_version="roadseg-model/7",
                          images_destination=tmp_path / "out" / "frames.zip")
    return archive, manifest


# ------------------------------------------------------------------------------------------------ our export


def test_labelmap_names_every_class_colour_and_background_black(exported, tmp_path):
    archive, _ = exported
    folder = _extract(archive, tmp_path / "x")
    label_map = parse_label_map(str(folder / "labelmap.txt"))  # datumaro's parser, the one CVAT's import uses
    assert {name: tuple(desc[0]) for name, desc in label_map.items()} == {
        "background": (0, 0, 0), **{c.name: tuple(c.color) for c in CITYSCAPES.classes}
    }
    assert list(label_map)[0] == "background"
    assert cvat_label_map(CITYSCAPES) == {"background": (0, 0, 0), **dict(_scheme_labels())}
    labels = json.loads((folder / "cvat-labels.json").read_text())
    assert labels == cvat_project_labels(CITYSCAPES)
    assert labels[0] == {"name": "road", "color": "#804080", "type": "any", "attributes": []}
    assert [lb["name"] for lb in labels] == list(CITYSCAPES.names)


def test_datumaro_imports_our_export_and_reproduces_every_mask(exported, frames, tmp_path):
    # CVAT's importer reads the zip with its datumaro fork's "voc" format, which includes the segmentation lists;
    # datumaro 1.13's "voc" reads ImageSets/Main only, so its "voc_segmentation" reader stands in here.
    archive, _ = exported
    dataset = Dataset.import_from(str(_extract(archive, tmp_path / "x")), "voc_segmentation")
    label_names = [c.name for c in dataset.categories()[AnnotationType.label].items]
    items = {item.id: item for item in dataset}
    assert sorted(items) == sorted(f.name for f in frames)
    for frame in frames:
        item = items[frame.name]
        assert item.subset == "default"
        mask = np.full((HEIGHT, WIDTH), IGNORE_INDEX, dtype=np.uint8)
        for ann in item.annotations:
            if ann.type is AnnotationType.mask and label_names[ann.label] != "background":
                mask[ann.image] = CITYSCAPES.index(label_names[ann.label])
        np.testing.assert_array_equal(mask, frame.mask)
        assert item.media.size == (HEIGHT, WIDTH)


def test_our_export_holds_frames_and_manifest(exported, frames, tmp_path):
    archive, manifest = exported
    names = zipfile.ZipFile(archive).namelist()
    assert "ImageSets/Segmentation/default.txt" in names and MANIFEST_FILE in names
    assert {f"SegmentationClass/{f.name}.png" for f in frames} <= set(names)
    assert {f"JPEGImages/{f.name}.jpg" for f in frames} <= set(names)
    # A JPEG handed over as a file goes into the archive byte for byte (no second lossy encoding).
    assert zipfile.ZipFile(archive).read(f"JPEGImages/{frames[0].name}.jpg") == frames[0].image.read_bytes()
    frames_zip = zipfile.ZipFile(tmp_path / "out" / "frames.zip")
    assert sorted(frames_zip.namelist()) == sorted(f"{f.name}.jpg" for f in frames)
    written = load_export_manifest(_extract(archive, tmp_path / "x") / MANIFEST_FILE)
    assert written == manifest
    assert manifest.tool == "cvat" and manifest.scheme == "cityscapes" and manifest.model_version == "roadseg-model/7"
    assert [(f.name, f.source_key, f.source_version_id, f.width, f.height) for f in manifest.frames] == [
        (f.name, f.source_key, f.source_version_id, WIDTH, HEIGHT) for f in frames
    ]


def test_our_export_round_trips_with_provenance(exported, frames):
    archive, _ = exported
    result = read_cvat(archive, CITYSCAPES, task="cvat-task-12")
    assert [label.frame_name for label in result.labels] == sorted(f.name for f in frames)
    by_name = {label.frame_name: label for label in result.labels}
    for frame in frames:
        label = by_name[frame.name]
        np.testing.assert_array_equal(label.mask, frame.mask)
        assert label.mask.dtype == np.uint8
        assert (label.tool, label.task, label.source_key, label.source_version_id, label.model_version) == (
            "cvat", "cvat-task-12", frame.source_key, frame.source_version_id, "roadseg-model/7")
        assert label.unlabelled_pixels == int((frame.mask == IGNORE_INDEX).sum()) > 0
    assert result.counts() == {"expected": 4, "imported": 4, "missing": 0}


# ------------------------------------------------------------------------------------- archives CVAT would write


def test_cvat_export_without_our_file_imports_with_the_manifest_given(exported, frames, tmp_path):
    _, manifest = exported
    # CVAT writes the project's labels sorted by name, background first; a project may recolour a class (labels
    # are matched by name) and carry labels nobody painted.
    labels = _scheme_labels()
    labels[13] = ("car", (10, 20, 30))
    labels.append(("unused label", (1, 1, 1)))
    masks = {f.name: f.mask for f in frames}
    archive = _cvat_like_archive(tmp_path, masks, labels)
    assert MANIFEST_FILE not in zipfile.ZipFile(archive).namelist()
    assert "car:10,20,30::" in zipfile.ZipFile(archive).read("labelmap.txt").decode()

    result = read_cvat(archive, CITYSCAPES, expected=manifest)
    for label, frame in zip(result.labels, sorted(frames, key=lambda f: f.name), strict=True):
        np.testing.assert_array_equal(label.mask, frame.mask)
        assert (label.source_key, label.source_version_id, label.model_version) == (
            frame.source_key, frame.source_version_id, "roadseg-model/7")
    assert result.manifest is manifest


def test_cvat_export_without_any_manifest_still_imports(frames, tmp_path):
    archive = _cvat_like_archive(tmp_path, {f.name: f.mask for f in frames}, _scheme_labels(), images=True)
    result = read_cvat(archive, CITYSCAPES)
    assert result.manifest is None
    assert [label.source_key for label in result.labels] == [None] * 4
    np.testing.assert_array_equal(result.labels[0].mask, sorted(frames, key=lambda f: f.name)[0].mask)


def test_single_channel_masks_hold_labelmap_positions(frames, tmp_path):
    # CVAT's format page allows 1-channel masks: datumaro writes them without the colour map, each pixel the label's
    # position in labelmap.txt (background first).
    archive = _cvat_like_archive(tmp_path, {f.name: f.mask for f in frames}, _scheme_labels(), apply_colormap=False)
    png = zipfile.ZipFile(archive).open(f"SegmentationClass/{frames[0].name}.png")
    assert np.asarray(Image.open(png)).ndim == 2
    result = read_cvat(archive, CITYSCAPES)
    for label, frame in zip(result.labels, sorted(frames, key=lambda f: f.name), strict=True):
        np.testing.assert_array_equal(label.mask, frame.mask)


def test_items_in_a_task_folder_are_matched_by_file_name(exported, frames, tmp_path):
    # A task created from a zip with a folder names its items "<folder>/<file>"; frame names are flat.
    _, manifest = exported
    archive = _cvat_like_archive(tmp_path, {f"upload/{f.name}": f.mask for f in frames}, _scheme_labels())
    result = read_cvat(archive, CITYSCAPES, expected=manifest)
    assert [label.frame_name for label in result.labels] == sorted(f.name for f in frames)


def test_unlabelled_black_pixels_become_ignore_and_an_extracted_folder_reads(tmp_path):
    mask = np.full((HEIGHT, WIDTH), IGNORE_INDEX, dtype=np.uint8)
    mask[10:20, 5:9] = CAMVID.index("pedestrian")
    archive = _cvat_like_archive(tmp_path, {"f": mask}, _scheme_labels(CAMVID))
    folder = _extract(archive, tmp_path / "unzipped")
    label = read_cvat(folder, CAMVID).labels[0]
    assert label.unlabelled_pixels == HEIGHT * WIDTH - 40
    np.testing.assert_array_equal(label.mask, mask)


def test_allow_missing_lists_frames_without_labels(exported, frames, tmp_path):
    _, manifest = exported
    archive = _cvat_like_archive(tmp_path, {f.name: f.mask for f in frames[:3]}, _scheme_labels())
    result = read_cvat(archive, CITYSCAPES, expected=manifest, allow_missing=True)
    assert result.missing == (frames[3].name,)
    assert result.counts() == {"expected": 4, "imported": 3, "missing": 1}


# ------------------------------------------------------------------------------------------------ bad archives


def test_unknown_colour_names_the_file_and_the_pixel_count(exported, frames, tmp_path):
    archive, _ = exported
    folder = _extract(archive, tmp_path / "x")
    png = folder / "SegmentationClass" / f"{frames[1].name}.png"
    painted = np.array(Image.open(png).convert("RGB"))
    painted[40:42, 10:13] = (1, 2, 3)
    painted[44, 0] = (9, 9, 9)
    Image.fromarray(painted).save(png)
    bad = _zip(folder, tmp_path / "repainted.zip")
    assert only_problem(read_cvat, bad, CITYSCAPES) == (
        f"{bad}:SegmentationClass/{frames[1].name}.png: 7 pixels in 2 colour(s) not in labelmap.txt "
        "(1,2,3: 6; 9,9,9: 1); add them to labelmap.txt with their class or repaint them"
    )


def test_label_the_scheme_lacks(frames, tmp_path):
    mask = block_mask(0)
    mask[20:22, 0:5] = CITYSCAPES.num_classes  # the 20th label
    archive = _cvat_like_archive(tmp_path, {"f": mask}, [*_scheme_labels(), ("lamp post", (5, 5, 5))])
    assert only_problem(read_cvat, archive, CITYSCAPES).startswith(
        f"{archive}:SegmentationClass/f.png: 10 pixels of label 'lamp post' (5,5,5), not a class of the "
        "'cityscapes' scheme (classes: road, sidewalk,"
    )


def test_missing_frame(exported, frames, tmp_path):
    _, manifest = exported
    archive = _cvat_like_archive(tmp_path, {f.name: f.mask for f in frames[:3]}, _scheme_labels())
    assert only_problem(read_cvat, archive, CITYSCAPES, expected=manifest) == (
        f"{archive}: frame '{frames[3].name}' of the export is missing ({WIDTH * HEIGHT} pixels unlabelled); "
        "label it and export again, or import with missing frames allowed"
    )


def test_listed_frame_without_a_mask_is_missing_without_a_manifest(tmp_path):
    archive = _cvat_like_archive(tmp_path, {"a": block_mask(0), "b": np.full((HEIGHT, WIDTH), 255, np.uint8)},
                                 _scheme_labels())
    assert "b" in zipfile.ZipFile(archive).read("ImageSets/Segmentation/default.txt").decode().split()
    message = only_problem(read_cvat, archive, CITYSCAPES)
    assert "frame 'b' has no SegmentationClass mask (nothing labelled)" in message
    assert read_cvat(archive, CITYSCAPES, allow_missing=True).missing == ("b",)


def test_extra_frame(exported, frames, tmp_path):
    _, manifest = exported
    masks = {f.name: f.mask for f in frames} | {"stray": block_mask(9)}
    archive = _cvat_like_archive(tmp_path, masks, _scheme_labels())
    assert only_problem(read_cvat, archive, CITYSCAPES, expected=manifest) == (
        f"{archive}:SegmentationClass/stray.png: frame 'stray' ({WIDTH * HEIGHT} pixels) is not in the export "
        "manifest; remove it or pass the manifest of the export it came from"
    )


def test_size_mismatch(exported, frames, tmp_path):
    _, manifest = exported
    masks = {f.name: f.mask for f in frames}
    masks[frames[2].name] = block_mask(2, width=32, height=24)
    archive = _cvat_like_archive(tmp_path, masks, _scheme_labels())
    assert only_problem(read_cvat, archive, CITYSCAPES, expected=manifest) == (
        f"{archive}:SegmentationClass/{frames[2].name}.png: mask is 32x24 (768 pixels) but frame "
        f"'{frames[2].name}' is {WIDTH}x{HEIGHT} ({WIDTH * HEIGHT} pixels); label the frame at its exported size"
    )


def test_mask_and_its_image_differ_in_size(tmp_path):
    archive = _cvat_like_archive(tmp_path, {"a": block_mask(0)}, _scheme_labels(), images=True)
    folder = _extract(archive, tmp_path / "x")
    Image.fromarray(rgb_image(0, 32, 24)).save(folder / "JPEGImages" / "a.jpg")
    message = only_problem(read_cvat, _zip(folder, tmp_path / "resized.zip"), CITYSCAPES)
    assert "SegmentationClass/a.png: mask is 64x48 (3072 pixels) but its image" in message
    assert "is 32x24" in message


def test_all_problems_are_reported_together(exported, frames, tmp_path):
    _, manifest = exported
    masks = {f.name: f.mask for f in frames[1:]} | {f"stray{i:02d}": block_mask(i) for i in range(24)}
    archive = _cvat_like_archive(tmp_path, masks, _scheme_labels())
    with pytest.raises(LabelImportError) as excinfo:
        read_cvat(archive, CITYSCAPES, expected=manifest)
    assert len(excinfo.value.problems) == 25  # one missing frame, 24 extra
    lines = str(excinfo.value).splitlines()
    assert len(lines) == 21 and lines[-1] == "... and 5 more problems (25 in all)"
    assert f"frame '{frames[0].name}' of the export is missing" in lines[0]


def test_archive_problems_before_any_mask(exported, tmp_path):
    archive, _ = exported
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    with pytest.raises(LabelImportError, match=r"notes\.zip: not a zip archive"):
        read_cvat(not_zip, CITYSCAPES)
    with pytest.raises(LabelImportError, match=r"absent\.zip: no such file"):
        read_cvat(tmp_path / "absent.zip", CITYSCAPES)
    folder = _extract(archive, tmp_path / "x")
    (folder / "labelmap.txt").unlink()
    with pytest.raises(LabelImportError, match=r"no labelmap\.txt; CVAT writes it"):
        read_cvat(_zip(folder, tmp_path / "nolabelmap.zip"), CITYSCAPES)
    images_only = tmp_path / "images.zip"
    with zipfile.ZipFile(images_only, "w") as zf:
        zf.writestr("a.jpg", b"x")
    with pytest.raises(LabelImportError, match=r"not a CVAT 'Segmentation mask 1\.1' export"):
        read_cvat(images_only, CITYSCAPES)
    escaping = tmp_path / "escaping.zip"
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(LabelImportError, match=r"path leaves the archive"):
        read_cvat(escaping, CITYSCAPES)
    assert not (tmp_path / "evil.txt").exists()


def test_labels_exported_with_another_scheme(exported):
    archive, _ = exported
    assert only_problem(read_cvat, archive, CAMVID) == (
        f"{archive}:roadseg-export.json: exported with scheme 'cityscapes' (19 classes) but imported with 'camvid' "
        "(11 classes); import with the scheme of the export"
    )


def test_manifest_of_another_tool(exported, frames, tmp_path):
    archive, _ = exported
    other = write_label_studio(frames, CITYSCAPES, tmp_path / "ls")
    assert only_problem(read_cvat, archive, CITYSCAPES, expected=other) == (
        "manifest: is the manifest of a label-studio export, not of a cvat one; pass the cvat export's"
    )


def test_item_list_naming_a_file_outside_the_archive(tmp_path):
    archive = _cvat_like_archive(tmp_path, {"a": block_mask(0)}, _scheme_labels())
    folder = _extract(archive, tmp_path / "x")
    with (folder / "ImageSets" / "Segmentation" / "default.txt").open("a") as f:
        f.write("../../../outside\n")
    assert only_problem(read_cvat, folder, CITYSCAPES) == (
        f"{folder}:ImageSets/Segmentation/default.txt: item '../../../outside' leaves the archive"
    )


def test_labelmap_giving_one_colour_to_two_labels(tmp_path):
    archive = _cvat_like_archive(tmp_path, {"a": block_mask(0)}, _scheme_labels())
    folder = _extract(archive, tmp_path / "x")
    with (folder / "labelmap.txt").open("a") as f:
        f.write("lamp post:128,64,128::\n")  # road's colour
    message = only_problem(read_cvat, _zip(folder, tmp_path / "dup.zip"), CITYSCAPES)
    assert "labels 'road' and 'lamp post' share colour 128,64,128" in message


# ------------------------------------------------------------------------------------------------ bad export input


def test_export_refuses_what_cvat_could_not_tell_apart(frames, tmp_path):
    black = custom_scheme("mine", [("asphalt", (0, 0, 0)), ("car", (0, 0, 142))])
    with pytest.raises(LabelExportError, match="class 'asphalt' \\(0, 0, 0\\) collides with CVAT's 'background'"):
        write_cvat(frames, black, tmp_path / "a.zip")
    twins = custom_scheme("mine", [("road", (1, 2, 3)), ("lane", (1, 2, 3))])
    with pytest.raises(LabelExportError, match="classes 'road' and 'lane' share colour"):
        write_cvat(frames, twins, tmp_path / "a.zip")


def test_export_refuses_inconsistent_frames(frames, tmp_path):
    small = FrameToLabel("small", rgb_image(0), block_mask(0, width=32, height=24))
    with pytest.raises(LabelExportError, match="frame 'small': mask is 32x24 but the image is 64x48"):
        write_cvat([small], CITYSCAPES, tmp_path / "a.zip")
    wrong = block_mask(0)
    wrong[5, :4] = 40
    with pytest.raises(LabelExportError, match=r"frame 'w': 4 mask pixels hold \[40\], not classes"):
        write_cvat([FrameToLabel("w", rgb_image(0), wrong)], CITYSCAPES, tmp_path / "a.zip")
    with pytest.raises(LabelExportError, match="appears twice"):
        write_cvat([frames[0], frames[0]], CITYSCAPES, tmp_path / "a.zip")
    with pytest.raises(LabelExportError, match="frame name 'a/b' must be"):
        write_cvat([FrameToLabel("a/b", rgb_image(0), block_mask(0))], CITYSCAPES, tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_frame_name_for_key_is_flat_and_keeps_the_path_apart():
    assert frame_name_for_key("incoming/v1/d1/front/1700.jpg") == "incoming__v1__d1__front__1700"
    assert frame_name_for_key("/a b/c.png") == "a-b__c"
    assert frame_name_for_key("incoming/v1/d1/front/1700.jpg") != frame_name_for_key("incoming/v1/d2/front/1700.jpg")


def test_an_archive_that_unpacks_to_far_more_than_it_holds_is_refused_before_writing(tmp_path, monkeypatch):
    """A zip bomb: refused from the members' declared sizes (which bound what zipfile writes), nothing extracted."""
    import labelling.archive as archive_module

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("SegmentationClass/a.png", bytes(8 * 2**20))  # 8 MiB of zeros deflate ~1000:1
    ratio = zipfile.ZipFile(bomb).infolist()[0]
    assert ratio.file_size > archive_module.MAX_MEMBER_RATIO * ratio.compress_size
    with pytest.raises(LabelImportError, match=r"SegmentationClass/a\.png: unpacks to 8,388,608 bytes from .*"
                                               r"more than 500:1\); refusing a likely zip bomb"):
        read_cvat(bomb, CITYSCAPES)

    large = tmp_path / "large.zip"
    with zipfile.ZipFile(large, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("labelmap.txt", b"x" * 4096)
        zf.writestr("a.jpg", b"y" * 4096)
    monkeypatch.setattr(archive_module, "MAX_ARCHIVE_BYTES", 6000)
    with pytest.raises(LabelImportError, match=r"unpacks to 8,192 bytes, more than 6,000; import it in parts"):
        read_cvat(large, CITYSCAPES)
