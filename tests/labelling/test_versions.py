"""Dataset versions (labelling/versions.py, labelling/splits.py): splits by drive, merges, immutability against moto's
S3 (its PutObject honours If-None-Match), SHA-256 verification, and a version the Prepare step trains from."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from labelling.archive import frame_name_for_key
from labelling.splits import SplitError, assign_splits, group_of
from labelling.versions import (
    CLAIM_FILE,
    MANIFEST_FILE,
    SPLIT_FILE,
    FrameProvenance,
    NewFrame,
    VersionConflict,
    VersionError,
    check_manifest,
    create_version,
    list_versions,
    plan_version,
    put_new,
    read_manifest,
    verify_version,
    version_prefix,
)
from segcore.classes import CAMVID, CITYSCAPES
from training.prepare import prepare_dataset

BUCKET = "roadseg-dev-datasets-test"


def _jpeg(width: int = 32, height: int = 16, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _frame(drive: str | None, index: int, *, label: int = 0, camera: str = "front", width: int = 32,
           height: int = 16) -> NewFrame:
    key = f"incoming/{drive or 'loose'}/{camera}/20261203T1015{index:02d}.000000000Z.jpg"
    mask = np.full((height, width), label, dtype=np.uint8)
    mask[0, 0] = 255  # an ignored pixel survives the round trip
    return NewFrame(frame_name_for_key(key), _jpeg(width, height, index), mask,
                    FrameProvenance(tool="cvat", source_key=key, source_version_id=f"ver-{index}", drive=drive,
                                    camera=camera, task="task-7", model_package_version="3"))


def _drives(*counts: int, start: int = 0) -> list[NewFrame]:
    frames, index = [], start
    for number, count in enumerate(counts):
        for _ in range(count):
            frames.append(_frame(f"car-{number}/d{number}", index))
            index += 1
    return frames


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # tests/conftest.py set fake credentials and the region
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


# ------------------------------------------------------------------------------------------------------ splits


def test_a_drive_never_straddles_and_the_draw_is_seeded():
    frames = {f"f{d}-{i}": f"car/d{d}" for d in range(10) for i in range(d + 3)}
    first = assign_splits(frames, validation_fraction=0.25, seed=7)
    by_drive: dict[str, set[str]] = {}
    for name, split in first.splits.items():
        by_drive.setdefault(frames[name], set()).add(split)
    assert all(len(splits) == 1 for splits in by_drive.values())
    assert first.validation_groups and set(first.validation_groups) < set(frames.values())
    counts = first.counts()
    assert 0.1 < counts["validation"] / len(frames) < 0.4
    again = assign_splits(dict(reversed(list(frames.items()))), validation_fraction=0.25, seed=7)
    assert again.splits == first.splits  # the order frames come in changes nothing
    other = [assign_splits(frames, validation_fraction=0.25, seed=s).validation_groups for s in range(8)]
    assert len(set(other)) > 1  # the seed matters


def test_kept_validation_drives_stay_validation_and_grow():
    frames = {"a1": "car/a", "a2": "car/a", "b1": "car/b", "c1": "car/c"}
    decision = assign_splits(frames, parent_validation_groups=["car/a"], parent_frames=["a1"], seed=3)
    assert decision.splits == {"a1": "validation", "a2": "validation", "b1": "train", "c1": "train"}
    assert decision.grown_validation_frames == 1 and not decision.reshuffled


def test_splits_that_cannot_be_by_drive_say_how_to_fix():
    with pytest.raises(SplitError, match=r"all 2 frames come from one drive \(car/a\).*at least two drives"):
        assign_splits({"a1": "car/a", "a2": "car/a"})
    with pytest.raises(SplitError, match="no validation frames: pass --reshuffle-validation"):
        assign_splits({"b1": "car/b", "c1": "car/c"}, parent_validation_groups=["car/a"])
    with pytest.raises(SplitError, match="no training frames"):
        assign_splits({"a1": "car/a"}, parent_validation_groups=["car/a"])
    assert group_of(None, "x") == "frame:x" and group_of("car/a", "x") == "car/a"


# ------------------------------------------------------------------------------------------------ pure planning


def test_a_first_version_plans_files_with_hashes_and_provenance():
    frames = _drives(3, 2)
    plan = plan_version("v0001", None, frames, CAMVID, seed=1, created_at="2026-12-08T03:00:00Z")
    manifest = plan.manifest
    assert check_manifest(manifest) == []
    assert manifest["counts"] == {"frames": 5, "train": manifest["counts"]["train"],
                                  "validation": manifest["counts"]["validation"], "added": 5, "replaced": 0,
                                  "kept": 0}
    assert manifest["counts"]["train"] and manifest["counts"]["validation"]
    entry = next(f for f in manifest["frames"] if f["name"] == frames[0].name)
    assert entry["source_key"] == frames[0].provenance.source_key and entry["source_version_id"] == "ver-0"
    assert (entry["drive"], entry["camera"], entry["tool"], entry["task"], entry["model_package_version"],
            entry["added_in"]) == ("car-0/d0", "front", "cvat", "task-7", "3", "v0001")
    assert {f["path"] for f in manifest["files"]} == {SPLIT_FILE, *(f"images/{f.name}.jpg" for f in frames),
                                                      *(f"masks/{f.name}.png" for f in frames)}
    split = json.loads(next(f.data for f in plan.files if f.path == SPLIT_FILE))
    assert sorted(split["train"] + split["validation"]) == sorted(f.name for f in frames)
    assert manifest["scheme"]["name"] == "camvid" and len(manifest["scheme"]["classes"]) == CAMVID.num_classes
    first_class = CAMVID.classes[0].name
    assert entry["class_pixels"] == {first_class: 32 * 16 - 1}  # the ignored pixel is no class's
    assert manifest["class_frequency"] == {first_class: 1.0}


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: NewFrame("bad name", f.image, f.mask, f.provenance), "frame name 'bad name' must be"),
    (lambda f: NewFrame(f.name, f.image, f.mask[:, :-1], f.provenance), "size mismatch, the image is 32x16 and the "
                                                                        "mask 31x16"),
    (lambda f: NewFrame(f.name, f.image, np.full_like(f.mask, 40), f.provenance),
     "512 mask pixels hold values [40] that are not classes of scheme 'camvid'"),
    (lambda f: NewFrame(f.name, b"not an image", f.mask, f.provenance), "the image cannot be decoded"),
    (lambda f: NewFrame(f.name, f.image, f.mask.astype(np.int32), f.provenance), "2-D uint8 array"),
])
def test_bad_frames_are_refused_in_one_line(change, message):
    frames = _drives(2, 1)
    frames[0] = change(frames[0])
    with pytest.raises(VersionError) as caught:
        plan_version("v0001", None, frames, CAMVID)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_manifest_that_does_not_add_up_is_named():
    manifest = plan_version("v0001", None, _drives(2, 2), CAMVID).manifest
    broken = {**manifest, "counts": {**manifest["counts"], "frames": 9}}
    assert check_manifest(broken) == ["counts.frames 9 is not the 4 frames listed"]
    assert check_manifest({"schema_version": 1}) and check_manifest([]) == ["the manifest is not a JSON object"]


# ------------------------------------------------------------------------------------------------------ in S3


def test_moto_honours_if_none_match_so_nothing_is_overwritten(s3):
    put_new(s3, BUCKET, "versions/v0001/x", b"1", "text/plain")
    with pytest.raises(VersionConflict, match="already exists .* never overwritten"):
        put_new(s3, BUCKET, "versions/v0001/x", b"2", "text/plain")
    assert s3.get_object(Bucket=BUCKET, Key="versions/v0001/x")["Body"].read() == b"1"


def test_versions_merge_keep_validation_and_verify(s3):
    first = create_version(s3, BUCKET, _drives(4, 3, 3), CAMVID, parent=None, seed=2)
    assert first["version"] == "v0001" and first["parent"] is None
    validation_drives = first["split"]["validation_groups"]
    # v0002: two new drives and more frames of a validation drive; validation stays, the new validation frame joins.
    kept_drive = validation_drives[0]
    extra = [_frame(kept_drive, 50), _frame("car-8/d8", 51), _frame("car-9/d9", 52)]
    second = create_version(s3, BUCKET, extra, CAMVID, seed=99)
    assert (second["version"], second["parent"]) == ("v0002", "v0001")
    assert second["split"]["validation_groups"] == validation_drives and not second["split"]["reshuffled"]
    assert second["split"]["grown_validation_frames"] == 1
    old_validation = {f["name"] for f in first["frames"] if f["split"] == "validation"}
    new_validation = {f["name"] for f in second["frames"] if f["split"] == "validation"}
    assert new_validation == old_validation | {extra[0].name}
    assert second["counts"] == {"frames": 13, "train": 13 - len(new_validation), "validation": len(new_validation),
                                "added": 3, "replaced": 0, "kept": 10}
    assert {f["added_in"] for f in second["frames"]} == {"v0001", "v0002"}
    assert verify_version(s3, BUCKET, "v0002").ok and verify_version(s3, BUCKET, "v0002").checked == 27
    listed = list_versions(s3, BUCKET)
    assert [(v.version, v.parent, v.frames, v.complete) for v in listed] == [("v0001", None, 10, True),
                                                                             ("v0002", "v0001", 13, True)]
    # v0001 is untouched by v0002.
    assert read_manifest(s3, BUCKET, "v0001") == first


def test_an_imported_frame_that_exists_replaces_it_only_when_asked(s3):
    frames = _drives(2, 2)
    create_version(s3, BUCKET, frames, CAMVID, parent=None)
    relabelled = np.where(frames[0].mask == 255, 255, 3).astype(np.uint8)
    corrected = NewFrame(frames[0].name, frames[0].image, relabelled, frames[0].provenance)
    with pytest.raises(VersionError, match=r"1 imported frame\(s\) are already in v0001 .* pass --replace"):
        create_version(s3, BUCKET, [corrected], CAMVID)
    assert [v.version for v in list_versions(s3, BUCKET)] == ["v0001"]  # refused before anything was claimed
    second = create_version(s3, BUCKET, [corrected], CAMVID, replace=True)
    assert second["replaced"] == [frames[0].name] and second["counts"]["replaced"] == 1
    mask_key = version_prefix("v0002") + f"masks/{frames[0].name}.png"
    mask = np.asarray(Image.open(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=mask_key)["Body"].read())))
    assert (mask[1:, :] == 3).all() and mask[0, 0] == 255


def test_reshuffle_draws_validation_afresh(s3):
    create_version(s3, BUCKET, _drives(3, 3, 3, 3, 3), CAMVID, parent=None, seed=1)
    again = create_version(s3, BUCKET, [_frame("car-7/d7", 90)], CAMVID, reshuffle_validation=True, seed=1234)
    assert again["split"]["reshuffled"] and again["split"]["seed"] == 1234


def test_a_claimed_id_is_stepped_over_and_a_crashed_import_shows_as_incomplete(s3):
    s3.put_object(Bucket=BUCKET, Key="versions/v0001/" + CLAIM_FILE, Body=b"{}")  # an import that crashed
    manifest = create_version(s3, BUCKET, _drives(2, 2), CAMVID, parent=None)
    assert manifest["version"] == "v0002"
    assert [(v.version, v.complete) for v in list_versions(s3, BUCKET)] == [("v0001", False), ("v0002", True)]
    with pytest.raises(VersionError, match="dataset version v0001 does not exist"):
        read_manifest(s3, BUCKET, "v0001")


def test_an_existing_version_is_never_overwritten(s3):
    create_version(s3, BUCKET, _drives(2, 2), CAMVID, parent=None)
    plan = plan_version("v0001", None, _drives(3, 3), CAMVID)
    from labelling.versions import write_plan

    with pytest.raises(VersionConflict, match="already exists"):
        write_plan(s3, BUCKET, plan)
    assert read_manifest(s3, BUCKET, "v0001")["counts"]["frames"] == 4


def test_verify_finds_changed_missing_and_extra_files(s3):
    manifest = create_version(s3, BUCKET, _drives(2, 2), CAMVID, parent=None)
    prefix = version_prefix("v0001")
    mask = manifest["frames"][0]["mask"]
    image = manifest["frames"][1]["image"]
    s3.put_object(Bucket=BUCKET, Key=prefix + mask, Body=b"tampered")
    s3.delete_object(Bucket=BUCKET, Key=prefix + image)
    s3.put_object(Bucket=BUCKET, Key=prefix + "images/stray.jpg", Body=b"x")
    report = verify_version(s3, BUCKET, "v0001")
    assert not report.ok
    assert any(p.startswith(f"{mask}: 8 bytes") for p in report.problems)
    assert f"{image}: missing" in report.problems
    assert "images/stray.jpg: not in the manifest (written by another import or by hand)" in report.problems
    # A new version from a damaged parent stops instead of carrying the damage.
    # (Files are written 16 at a time: whichever damage is met first stops it, the changed or the missing file.)
    with pytest.raises(VersionError, match="(does not match its SHA-256 in v0001.s manifest|is missing from v0001: "
                                           "the parent is damaged).*stays incomplete"):
        create_version(s3, BUCKET, [_frame("car-5/d5", 70)], CAMVID)


def test_a_parent_file_gone_is_one_line_not_a_traceback(s3):
    manifest = create_version(s3, BUCKET, _drives(2, 2), CAMVID, parent=None)
    image = manifest["frames"][1]["image"]
    s3.delete_object(Bucket=BUCKET, Key=version_prefix("v0001") + image)
    with pytest.raises(VersionError, match=f"versions/v0001/{image} is missing from v0001: the parent is damaged "
                                           r"\(`roadseg data verify v0001`\); v0002 stays incomplete"):
        create_version(s3, BUCKET, [_frame("car-5/d5", 70)], CAMVID)


def test_a_parent_with_another_scheme_is_refused(s3):
    create_version(s3, BUCKET, _drives(2, 2), CAMVID, parent=None)
    with pytest.raises(VersionError, match="parent v0001 uses scheme 'camvid' with other classes"):
        create_version(s3, BUCKET, [_frame("car-5/d5", 70)], CITYSCAPES)


def test_the_prepare_step_trains_from_a_downloaded_version(s3, tmp_path: Path):
    manifest = create_version(s3, BUCKET, _drives(3, 2, 2), CAMVID, parent=None, seed=4)
    root = tmp_path / "v0001"
    prefix = version_prefix("v0001")
    for entry in [*manifest["files"], {"path": MANIFEST_FILE}]:
        target = root / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=BUCKET, Key=prefix + entry["path"])["Body"].read())
    report = prepare_dataset(root, tmp_path / "prepared", "generic", CAMVID, workers=1)
    assert not report["dropped"]
    assert report["splits"]["train"]["images"] == manifest["counts"]["train"]
    assert report["splits"]["validation"]["images"] == manifest["counts"]["validation"]
