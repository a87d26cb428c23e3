"""Label Studio: label_studio_converter decodes our brush predictions back to the model's masks, exports whose brushes
that library encoded import through our reader, and every bad export is one line with its task and pixel count."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from label_studio_converter import Converter
from label_studio_converter.brush import decode_from_annotation, image2annotation, mask2rle
from PIL import Image

from labelling.archive import MANIFEST_FILE, LabelExportError, LabelImportError, load_export_manifest, zip_folder
from labelling.label_studio import (
    CONFIG_FILE,
    FROM_NAME,
    TASKS_FILE,
    TO_NAME,
    labelling_config,
    read_label_studio,
    write_label_studio,
)
from segcore.classes import CAMVID, CITYSCAPES, IGNORE_INDEX
from tests.labelling.conftest import HEIGHT, WIDTH, block_mask, only_problem


@pytest.fixture
def exported(frames, tmp_path):
    folder = tmp_path / "ls"
    manifest = write_label_studio(frames, CITYSCAPES, folder, model_version="roadseg-model/7")
    return folder, manifest


def _as_label_studio_export(folder: Path, name: str = "export.json", **annotation) -> Path:
    """What Label Studio's JSON export holds once an annotator submitted each task's prediction unchanged: task ids,
    the data as imported, one annotation with the prediction's result."""
    tasks = json.loads((folder / TASKS_FILE).read_text())
    for task_id, task in enumerate(tasks, start=101):
        task["id"] = task_id
        task["annotations"] = [{
            "id": 1000 + task_id, "completed_by": {"email": "ann@example.com", "id": 3}, "was_cancelled": False,
            "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:05:00Z",
            "result": task["predictions"][0]["result"], **annotation,
        }]
    path = folder / name
    path.write_text(json.dumps(tasks))
    return path


def _brush(mask: np.ndarray, label: str, width: int = WIDTH, height: int = HEIGHT) -> dict:
    return {"type": "brushlabels", "from_name": FROM_NAME, "to_name": TO_NAME, "original_width": width,
            "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}}


def _task(task_id: int, name: str, results: list, **extra) -> dict:
    return {"id": task_id, "data": {"image": f"images/{name}.jpg", "frame": name},
            "annotations": [{"id": task_id, "result": results, "completed_by": 1, **extra}]}


def _write(tmp_path: Path, tasks: list, name: str = "export.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(tasks))
    return path


# ------------------------------------------------------------------------------------------------ our export


def test_labelling_config_has_every_class_with_its_colour_and_the_converter_reads_it():
    xml = labelling_config(CITYSCAPES)
    view = ET.fromstring(xml)
    image = view.find("Image")
    brushes = view.find("BrushLabels")
    assert (image.get("name"), image.get("value")) == (TO_NAME, "$image")
    assert (brushes.get("name"), brushes.get("toName")) == (FROM_NAME, TO_NAME)
    assert [(label.get("value"), label.get("background")) for label in brushes.findall("Label")] == [
        (c.name, "#{:02x}{:02x}{:02x}".format(*c.color)) for c in CITYSCAPES.classes
    ]
    assert ("traffic light", "#faaa1e") in [(lb.get("value"), lb.get("background")) for lb in brushes]
    schema = Converter(config=xml, project_dir=None)._schema  # label_studio_converter's own config parser
    assert schema[FROM_NAME]["type"] == "BrushLabels" and schema[FROM_NAME]["to_name"] == [TO_NAME]
    assert schema[FROM_NAME]["labels"] == list(CITYSCAPES.names)


def test_label_studio_converter_decodes_our_tasks_to_the_same_masks(exported, frames, tmp_path):
    folder, _ = exported
    export = _as_label_studio_export(folder)
    converter = Converter(config=str(folder / CONFIG_FILE), project_dir=str(folder))
    items = list(converter.iter_from_json_file(str(export)))
    assert len(items) == len(frames)
    for item, frame in zip(items, frames, strict=True):
        assert item["input"]["frame"] == frame.name
        layers = decode_from_annotation(FROM_NAME, item["output"][FROM_NAME])  # {"tag-<label>-0": alpha (H, W)}
        mask = np.full((HEIGHT, WIDTH), IGNORE_INDEX, dtype=np.uint8)
        for key, layer in layers.items():
            label = key[len(FROM_NAME) + 1: key.rindex("-")]
            assert not (mask[layer > 0] != IGNORE_INDEX).any(), "the model's classes do not overlap"
            mask[layer > 0] = CITYSCAPES.index(label)
        np.testing.assert_array_equal(mask, frame.mask)


def test_our_tasks_reference_written_frames_and_keep_the_frame_name(exported, frames):
    folder, manifest = exported
    tasks = json.loads((folder / TASKS_FILE).read_text())
    assert [t["data"]["frame"] for t in tasks] == [f.name for f in frames]
    assert [t["data"]["source_key"] for t in tasks] == [f.source_key for f in frames]
    for task, frame in zip(tasks, frames, strict=True):
        assert (folder / task["data"]["image"]).is_file()
        assert Image.open(folder / task["data"]["image"]).size == (WIDTH, HEIGHT)
        prediction = task["predictions"][0]
        assert prediction["model_version"] == "roadseg-model/7"
        assert {r["from_name"] for r in prediction["result"]} == {FROM_NAME}
        assert {r["to_name"] for r in prediction["result"]} == {TO_NAME}
        assert sorted(r["value"]["brushlabels"][0] for r in prediction["result"]) == sorted(
            CITYSCAPES.names[v] for v in np.unique(frame.mask) if v != IGNORE_INDEX)
    assert (folder / tasks[0]["data"]["image"]).read_bytes() == frames[0].image.read_bytes()  # a JPEG is copied
    assert load_export_manifest(folder / MANIFEST_FILE) == manifest
    assert manifest.tool == "label-studio" and manifest.urls_expire_at is None


def test_presigned_urls_are_referenced_with_their_expiry(frames, tmp_path):
    urls = {f.name: f"https://frames.s3.eu-west-1.amazonaws.com/{f.source_key}?X-Amz-Expires=3600" for f in frames}
    manifest = write_label_studio(frames, CITYSCAPES, tmp_path / "ls", image_urls=urls,
                                  urls_expire_at="2026-12-08T05:00:00Z")
    tasks = json.loads((tmp_path / "ls" / TASKS_FILE).read_text())
    assert [t["data"]["image"] for t in tasks] == [urls[f.name] for f in frames]
    assert not (tmp_path / "ls" / "images").exists()
    assert manifest.urls_expire_at == "2026-12-08T05:00:00Z"
    with pytest.raises(LabelExportError, match="urls_expire_at 'in an hour' must be an ISO 8601 UTC time"):
        write_label_studio(frames, CITYSCAPES, tmp_path / "b", image_urls=urls, urls_expire_at="in an hour")
    with pytest.raises(LabelExportError, match="must be an ISO 8601 UTC time"):
        write_label_studio(frames, CITYSCAPES, tmp_path / "b", image_urls=urls, urls_expire_at="2026-12-08T05:00+02:00")
    with pytest.raises(LabelExportError, match="presigned URLs need their expiry"):
        write_label_studio(frames, CITYSCAPES, tmp_path / "b", image_urls=urls)
    with pytest.raises(LabelExportError, match=f"frames {frames[0].name}, {frames[1].name}, "):
        write_label_studio(frames, CITYSCAPES, tmp_path / "b", image_urls={}, urls_expire_at="2026-12-08T05:00:00Z")


def test_local_storage_prefix(frames, tmp_path):
    write_label_studio(frames[1:2], CITYSCAPES, tmp_path / "ls", image_prefix="/data/local-files/?d=batch1/")
    task = json.loads((tmp_path / "ls" / TASKS_FILE).read_text())[0]
    assert task["data"]["image"] == f"/data/local-files/?d=batch1/images/{frames[1].name}.jpg"


def test_our_tasks_round_trip_with_provenance(exported, frames):
    folder, _ = exported
    result = read_label_studio(_as_label_studio_export(folder), CITYSCAPES)  # the manifest next to the export
    assert [label.frame_name for label in result.labels] == sorted(f.name for f in frames)
    by_name = {label.frame_name: label for label in result.labels}
    for task_id, frame in enumerate(frames, start=101):
        label = by_name[frame.name]
        np.testing.assert_array_equal(label.mask, frame.mask)
        assert (label.tool, label.task, label.annotator, label.updated_at) == (
            "label-studio", str(task_id), "ann@example.com", "2026-12-01T10:05:00Z")
        assert (label.source_key, label.source_version_id, label.model_version) == (
            frame.source_key, frame.source_version_id, "roadseg-model/7")
    assert result.counts() == {"expected": 4, "imported": 4, "missing": 0}


def test_a_zip_of_the_export_and_its_manifest_reads(exported, frames, tmp_path):
    folder, _ = exported
    export = _as_label_studio_export(folder)
    archive = tmp_path / "labelled.zip"
    zip_folder(folder, archive)  # tasks.json is our own file, not an export: two JSON files
    assert only_problem(read_label_studio, archive, CITYSCAPES) == (
        f"{archive}: holds 2 JSON files besides roadseg-export.json; expected the one JSON export of the project")
    (folder / TASKS_FILE).unlink()
    zip_folder(folder, archive)
    result = read_label_studio(archive, CITYSCAPES)
    assert result.manifest is not None and [lb.source_key for lb in result.labels] == [f.source_key for f in frames]
    assert export.name == "export.json"


# --------------------------------------------------------------------------- exports the library's encoder built


def test_brushes_encoded_by_label_studio_converter_import(tmp_path):
    # Two brushes drawn as PNGs and encoded by the library (image2annotation thresholds at 128), overlapping: the
    # later one wins where both paint; pixels no brush covers are ignore.
    road = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    road[20:, :] = 255
    person = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    person[10:30, 30:40] = 255
    results = []
    for label, layer in (("road", road), ("person", person)):
        png = tmp_path / f"{label}.png"
        Image.fromarray(layer).save(png)
        results += image2annotation(str(png), label, FROM_NAME, TO_NAME)["result"]
    url = "https://frames.s3.amazonaws.com/incoming/v1/d1/front/f7.jpg?X-Amz-Signature=abc"
    export = _write(tmp_path, [{"id": 7, "data": {"image": url}, "annotations": [{"id": 1, "result": results}]}])
    label = read_label_studio(export, CITYSCAPES).labels[0]
    assert label.frame_name == "f7"  # from the URL's file name when the task has no frame field
    expected = np.full((HEIGHT, WIDTH), IGNORE_INDEX, dtype=np.uint8)
    expected[20:, :] = CITYSCAPES.index("road")
    expected[10:30, 30:40] = CITYSCAPES.index("person")
    np.testing.assert_array_equal(label.mask, expected)
    assert label.unlabelled_pixels == 20 * WIDTH - 10 * 10


def test_newest_submitted_annotation_counts(tmp_path):
    top = np.zeros((HEIGHT, WIDTH), dtype=bool)
    top[:10] = True
    task = _task(1, "f", [_brush(top, "sky")], updated_at="2026-12-01T10:00:00Z")
    task["annotations"] += [
        {"id": 2, "result": [_brush(top, "road")], "updated_at": "2026-12-02T10:00:00Z", "completed_by": 4},
        {"id": 3, "result": [_brush(top, "car")], "updated_at": "2026-12-03T10:00:00Z", "was_cancelled": True},
    ]
    label = read_label_studio(_write(tmp_path, [task]), CITYSCAPES).labels[0]
    assert label.mask[0, 0] == CITYSCAPES.index("road") and label.annotator == "4"


# ------------------------------------------------------------------------------------------------ bad exports


def test_unknown_label_names_the_task_and_the_pixel_count(tmp_path):
    blob = np.zeros((HEIGHT, WIDTH), dtype=bool)
    blob[5:9, 5:10] = True
    export = _write(tmp_path, [_task(3, "f", [_brush(blob, "road"), _brush(blob, "lamp post")])])
    assert only_problem(read_label_studio, export, CITYSCAPES).startswith(
        f"{export}: task 3 result 1: 20 pixels of label ['lamp post'], not one class of the 'cityscapes' scheme "
        "(classes: road, sidewalk,"
    )


def test_missing_frame(exported, frames):
    folder, manifest = exported
    export = _as_label_studio_export(folder)
    tasks = json.loads(export.read_text())
    tasks[2]["annotations"] = [{**tasks[2]["annotations"][0], "was_cancelled": True}]  # the annotator skipped it
    del tasks[3]
    export.write_text(json.dumps(tasks))
    with pytest.raises(LabelImportError) as excinfo:
        read_label_studio(export, CITYSCAPES, expected=manifest)
    assert str(excinfo.value).splitlines() == [
        f"{export}: frame '{frames[2].name}' has no submitted annotation ({WIDTH * HEIGHT} pixels unlabelled); "
        "label it, or import with missing frames allowed",
        f"{export}: frame '{frames[3].name}' of the export is missing ({WIDTH * HEIGHT} pixels unlabelled); label it "
        "and export again, or import with missing frames allowed",
    ]
    result = read_label_studio(export, CITYSCAPES, expected=manifest, allow_missing=True)
    assert result.missing == (frames[2].name, frames[3].name)
    assert result.counts() == {"expected": 4, "imported": 2, "missing": 2}


def test_extra_frame(exported, frames, tmp_path):
    folder, manifest = exported
    tasks = json.loads(_as_label_studio_export(folder).read_text())
    tasks.append(_task(999, "stray", [_brush(np.ones((HEIGHT, WIDTH), dtype=bool), "road")]))
    export = _write(tmp_path, tasks)
    assert only_problem(read_label_studio, export, CITYSCAPES, expected=manifest) == (
        f"{export}:task 999: frame 'stray' ({WIDTH * HEIGHT} pixels) is not in the export manifest; remove it or "
        "pass the manifest of the export it came from"
    )


def test_size_mismatch(exported, frames, tmp_path):
    folder, manifest = exported
    tasks = json.loads(_as_label_studio_export(folder).read_text())
    tasks[1]["annotations"][0]["result"] = [_brush(np.ones((24, 32), dtype=bool), "road", width=32, height=24)]
    export = _write(tmp_path, tasks)
    assert only_problem(read_label_studio, export, CITYSCAPES, expected=manifest) == (
        f"{export}: task 102:result 0: mask is 32x24 (768 pixels) but frame '{frames[1].name}' is {WIDTH}x{HEIGHT} "
        f"({WIDTH * HEIGHT} pixels); label the frame at its exported size"
    )


def test_brushes_of_one_frame_disagree_on_its_size(tmp_path):
    export = _write(tmp_path, [_task(1, "f", [_brush(np.ones((HEIGHT, WIDTH), dtype=bool), "road"),
                                              _brush(np.ones((24, 32), dtype=bool), "car", 32, 24)])])
    assert only_problem(read_label_studio, export, CITYSCAPES) == (
        f"{export}: task 1 result 1: brush is 32x24 (768 pixels) but an earlier one is {WIDTH}x{HEIGHT}; the "
        "frame's brushes must share its size"
    )


def test_rle_that_does_not_fit_its_size_and_other_tools(tmp_path):
    brush = _brush(np.ones((HEIGHT, WIDTH), dtype=bool), "road")
    brush["original_width"] = WIDTH * 2
    polygon = {"type": "polygonlabels", "value": {"points": [[0, 0], [1, 1], [0, 1]], "polygonlabels": ["car"]}}
    huge = _brush(np.ones((HEIGHT, WIDTH), dtype=bool), "road")
    huge["value"]["rle"] = [255, 255, 255, 252, *huge["value"]["rle"][4:]]  # a header claiming 2**30 pixels
    cut = _brush(np.ones((HEIGHT, WIDTH), dtype=bool), "road")
    cut["value"]["rle"] = cut["value"]["rle"][:6]
    export = _write(tmp_path, [_task(1, "f", [brush]), _task(2, "g", [polygon]), _task(3, "h", [huge]),
                               _task(4, "i", [cut])])
    with pytest.raises(LabelImportError) as excinfo:
        read_label_studio(export, CITYSCAPES)
    assert excinfo.value.problems == (
        f"{export}: task 1 result 0: brush RLE holds {WIDTH * HEIGHT} pixels but the image is {WIDTH * 2}x{HEIGHT} "
        f"({WIDTH * 2 * HEIGHT} pixels); draw it again",
        f"{export}: task 2 result 0: type 'polygonlabels' is not brushlabels; label frames with the brush only",
        f"{export}: task 3 result 0: brush RLE holds {2**30 - 1} pixels but the image is {WIDTH}x{HEIGHT} "
        f"({WIDTH * HEIGHT} pixels); draw it again",
        f"{export}: task 4 result 0: cannot decode its brush RLE (ValueError: invalid literal for int() with base 2: "
        "''); draw it again",
    )


def test_all_problems_are_reported_together(tmp_path):
    blob = np.ones((HEIGHT, WIDTH), dtype=bool)
    export = _write(tmp_path, [_task(i, f"f{i}", [_brush(blob, "unicorn")]) for i in range(30)])
    with pytest.raises(LabelImportError) as excinfo:
        read_label_studio(export, CITYSCAPES)
    assert len(excinfo.value.problems) == 30
    lines = str(excinfo.value).splitlines()
    assert len(lines) == 21 and lines[-1] == "... and 10 more problems (30 in all)"


def test_export_files_that_are_no_label_studio_json(exported, tmp_path):
    folder, _ = exported
    not_json = _write(tmp_path, [])
    not_json.write_text("{oops")
    with pytest.raises(LabelImportError, match=r"export\.json: not JSON"):
        read_label_studio(not_json, CITYSCAPES)
    minimal = _write(tmp_path, [{"image": "a.jpg", "tag": []}], "min.json")
    with pytest.raises(LabelImportError, match=r"min\.json: expected a list of tasks with 'data'; export the project "
                                               r"as 'JSON' \(not 'JSON-MIN' or CSV\)"):
        read_label_studio(minimal, CITYSCAPES)
    with pytest.raises(LabelImportError, match=r"absent\.json: cannot read"):
        read_label_studio(tmp_path / "absent.json", CITYSCAPES)
    assert only_problem(read_label_studio, _as_label_studio_export(folder), CAMVID) == (
        "manifest: exported with scheme 'cityscapes' (19 classes) but imported with 'camvid' (11 classes); import "
        "with the scheme of the export")


def test_one_frame_in_two_tasks(tmp_path):
    blob = np.ones((HEIGHT, WIDTH), dtype=bool)
    export = _write(tmp_path, [_task(1, "f", [_brush(blob, "road")]), _task(2, "f", [_brush(blob, "car")])])
    assert only_problem(read_label_studio, export, CITYSCAPES) == (
        f"{export}: task 2: frame 'f' appears in another task too; delete the duplicate task")


def test_submitted_without_brushes_is_all_ignore_when_the_size_is_known(exported, frames):
    folder, manifest = exported
    export = _as_label_studio_export(folder)
    tasks = json.loads(export.read_text())
    tasks[0]["annotations"][0]["result"] = []
    export.write_text(json.dumps(tasks))
    labels = {lb.frame_name: lb for lb in read_label_studio(export, CITYSCAPES, expected=manifest).labels}
    label = labels[frames[0].name]
    assert label.unlabelled_pixels == WIDTH * HEIGHT
    assert block_mask(0).shape == label.mask.shape
