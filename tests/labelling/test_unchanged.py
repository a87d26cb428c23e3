"""Unchanged pre-annotations (labelling.archive): the export records each pre-annotation's digest, and an imported
mask equal to it is refused unless accepted; the counts reconcile; an older manifest without digests is unchecked."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from labelling.archive import ImportResult, parse_export_manifest, pre_annotation_digest, unchanged_labels
from labelling.cvat import read_cvat, write_cvat
from segcore.classes import CITYSCAPES


def test_the_digest_tells_shape_and_every_pixel():
    mask = np.zeros((4, 6), dtype=np.uint8)
    assert pre_annotation_digest(mask) == pre_annotation_digest(mask.copy())
    assert pre_annotation_digest(mask) != pre_annotation_digest(mask.reshape(6, 4))  # same bytes, other shape
    changed = mask.copy()
    changed[3, 5] = 1
    assert pre_annotation_digest(mask) != pre_annotation_digest(changed)
    assert pre_annotation_digest(mask[:, ::2]) == pre_annotation_digest(np.ascontiguousarray(mask[:, ::2]))


def test_an_untouched_cvat_task_is_refused_and_a_corrected_frame_imported(frames, tmp_path):
    manifest = write_cvat(frames, CITYSCAPES, tmp_path / "export.zip")
    assert all(f.pre_annotation_sha256 == pre_annotation_digest(frame.mask)
               for f, frame in zip(manifest.frames, frames, strict=True))
    corrected = frames[0].mask.copy()
    corrected[10:20, 10:20] = CITYSCAPES.index("person")
    returned = [replace(frames[0], mask=corrected), *frames[1:]]  # the annotator changed one frame of four
    write_cvat(returned, CITYSCAPES, tmp_path / "task.zip")
    result = read_cvat(tmp_path / "task.zip", CITYSCAPES, manifest)

    check = unchanged_labels(result)
    assert [label.frame_name for label in check.imported] == [frames[0].name]
    assert sorted(label.frame_name for label in check.refused) == sorted(f.name for f in frames[1:])
    assert check.counts() == {"read": 4, "imported": 1, "changed": 1, "unchanged_accepted": 0, "unchecked": 0,
                              "refused": {"unchanged": 3}}
    line = check.refusal_line()
    assert line.startswith("3 frame(s) came back exactly as the model pre-annotated them") and "\n" not in line
    assert "--accept-unchanged" in line and frames[1].name in line

    accepted = unchanged_labels(result, accept_unchanged=True)
    assert len(accepted.imported) == 4 and accepted.unchanged_accepted == 3 and accepted.refusal_line() is None


def test_a_manifest_without_digests_leaves_frames_unchecked(frames, tmp_path):
    manifest = write_cvat(frames, CITYSCAPES, tmp_path / "export.zip")
    old = manifest.to_dict()
    old["schema_version"] = "1.0"
    for frame in old["frames"]:
        del frame["pre_annotation_sha256"]
    older = parse_export_manifest(json.dumps(old), "roadseg-export.json")
    assert all(f.pre_annotation_sha256 is None for f in older.frames)
    result = read_cvat(tmp_path / "export.zip", CITYSCAPES, older)
    check = unchanged_labels(result)
    assert len(check.imported) == 4 and check.unchecked == 4 and not check.refused
    assert unchanged_labels(ImportResult(tool="cvat", labels=result.labels)).unchecked == 4  # no manifest at all
