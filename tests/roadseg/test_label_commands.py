"""The data engine's commands against moto: roadseg label select|export|import, roadseg data versions|verify and
roadseg pipeline start --dataset-version, from frames and results in the inference bucket to a training start."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from labelling.archive import FrameToLabel, frame_name_for_key
from labelling.cvat import write_cvat
from labelling.label_studio import brush_results
from segcore.classes import CITYSCAPES
from segcore.keys import frame_identity
from tests.labelling.timeline_fixtures import frame as timeline_frame
from tests.labelling.timeline_fixtures import write_table

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/roadseg-test"
DATASETS, INFERENCE = "dev-datasets", "dev-inference"
OUTPUTS = {
    "RoadsegDevData": {"DatasetsBucketName": DATASETS, "ArtifactsBucketName": "dev-artifacts",
                       "InferenceBucketName": INFERENCE},
    "RoadsegDevTraining": {"TrainingPipelineName": "roadseg-dev-training", "TuningPipelineName": "roadseg-dev-tuning",
                           "ModelPackageGroupName": "roadseg-dev-segmentation"},
}
DRIVES = (("car-1", "d1"), ("car-2", "d2"), ("car-3", "d3"))
WIDTH, HEIGHT = 64, 32
ROAD, SKY, PERSON = CITYSCAPES.index("road"), CITYSCAPES.index("sky"), CITYSCAPES.index("person")


@pytest.fixture
def deployed(offline_aws_env):
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        for name, outputs in OUTPUTS.items():
            template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                        "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
            cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (DATASETS, INFERENCE):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        sm = boto3.client("sagemaker", region_name=REGION)
        definition = json.dumps({"Version": "2020-12-01", "Steps": [],
                                 "Parameters": [{"Name": "InputDataS3Uri", "Type": "String"},
                                                {"Name": "DatasetLayout", "Type": "String"}]})
        sm.create_pipeline(PipelineName="roadseg-dev-training", PipelineDefinition=definition, RoleArn=ROLE,
                           ClientRequestToken="roadseg-dev-training".ljust(32, "x"))
        yield s3


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    return buffer.getvalue()


def _model_mask(index: int) -> np.ndarray:
    """What the model said: sky over road."""
    mask = np.full((HEIGHT, WIDTH), ROAD, dtype=np.uint8)
    mask[: HEIGHT // 2] = SKY
    mask[0, index] = 255
    return mask


def _corrected(index: int) -> np.ndarray:
    """What the annotator drew: the model's mask plus a person, and one pixel left unlabelled."""
    mask = _model_mask(index)
    mask[HEIGHT // 2:, 10 + index: 20 + index] = PERSON
    mask[0, index] = 255
    return mask


def _drive_frames(s3, timeline_dir: Path) -> list[dict]:
    """Two frames per drive in the inference bucket, each with its result document and model mask (at half size
    with the geometry, as the endpoint writes it without restore_original_size), and the drives' timeline."""
    rows = []
    index = 0
    for vehicle, drive in DRIVES:
        for second in (0.0, 10.0):
            row = timeline_frame(vehicle, drive, "front", second + 100 * index)
            key = row["frame_key"]
            pixels = np.random.default_rng(index).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
            s3.put_object(Bucket=INFERENCE, Key=key, Body=buffer.getvalue())
            identity = frame_identity(key)
            half = _model_mask(index)[::2, ::2]  # the model's resolution: half the frame, whole frame in view
            s3.put_object(Bucket=INFERENCE, Key=f"async-output/{identity}.png", Body=_png(half))
            document = {"frame_key": key, "model_package_version": "3", "original_size": {"width": WIDTH,
                                                                                          "height": HEIGHT},
                        "crop_box": [0, 0, WIDTH, HEIGHT], "mask_uri": f"s3://{INFERENCE}/async-output/{identity}.png"}
            s3.put_object(Bucket=INFERENCE, Key=f"results/{identity}.json", Body=json.dumps(document).encode())
            row["mask_uri"] = document["mask_uri"]
            rows.append(row)
            index += 1
    write_table(timeline_dir, rows)
    return rows


def _select_and_export(run, s3, tmp_path: Path, tool: str, *extra: str) -> tuple[dict, Path, list[dict]]:
    rows = _drive_frames(s3, tmp_path / "timeline")
    rc, out, err = run("label", "select", tmp_path / "timeline", "--budget-frames", 6, "--output", tmp_path / "sel",
                       "--json")
    assert rc == 0, err
    selected = json.loads(out)
    assert selected["accounting"]["picked"] == 6 and selected["excluded_version"] == "none (no dataset version yet)"
    assert (tmp_path / "sel" / "contact-sheet.png").stat().st_size > 0
    rc, out, err = run("label", "export", tmp_path / "sel" / "selection.json", "--format", tool,
                       "--output", tmp_path / "export", *extra, "--json")
    assert rc == 0, err
    return json.loads(out), tmp_path / "export", rows


def test_a_drive_goes_through_cvat_to_a_dataset_version_and_a_training_start(deployed, run, tmp_path):
    s3 = deployed
    exported, folder, rows = _select_and_export(run, s3, tmp_path, "cvat")
    assert exported["frames"] == 6 and exported["model_version"] == "3" and not exported["without_pre_annotation"]
    assert {Path(p).name for p in exported["files"]} == {"cvat-annotations.zip", "cvat-images.zip",
                                                         "roadseg-export.json"}
    manifest = json.loads((folder / "roadseg-export.json").read_text())
    versions = {f["source_key"]: f["source_version_id"] for f in manifest["frames"]}
    assert all(versions.values()) and set(versions) == {r["frame_key"] for r in rows}
    # The pre-annotation is the model's mask at the frame's size (restored from the model's resolution).
    with zipfile.ZipFile(folder / "cvat-annotations.zip") as zf:
        assert any(n.startswith("SegmentationClass/") for n in zf.namelist())

    # The annotators' corrections, in CVAT's Segmentation mask 1.1 (written with datumaro like CVAT does).
    frames = [FrameToLabel(frame_name_for_key(r["frame_key"]), np.zeros((HEIGHT, WIDTH, 3), np.uint8),
                           _corrected(i)) for i, r in enumerate(rows)]
    write_cvat(frames, CITYSCAPES, tmp_path / "task_7.zip")
    rc, out, err = run("label", "import", tmp_path / "task_7.zip", "--format", "cvat", "--export-manifest",
                       folder / "roadseg-export.json", "--task", "7", "--seed", 3, "--json")
    assert rc == 0, err
    imported = json.loads(out)
    assert imported["version"] == "v0001" and imported["parent"] is None
    assert imported["counts"]["frames"] == 6 and imported["counts"]["added"] == 6
    assert imported["uri"] == f"s3://{DATASETS}/versions/v0001/"

    version = json.loads(s3.get_object(Bucket=DATASETS, Key="versions/v0001/manifest.json")["Body"].read())
    for i, row in enumerate(rows):
        entry = next(f for f in version["frames"] if f["source_key"] == row["frame_key"])
        assert (entry["drive"], entry["camera"], entry["tool"], entry["task"], entry["model_package_version"]) == \
            (f"{row['vehicle']}/{row['drive']}", "front", "cvat", "7", "3")
        assert entry["source_version_id"] == versions[row["frame_key"]]
        image = s3.get_object(Bucket=DATASETS, Key="versions/v0001/" + entry["image"])["Body"].read()
        assert image == s3.get_object(Bucket=INFERENCE, Key=row["frame_key"])["Body"].read()  # the exact bytes
        mask = s3.get_object(Bucket=DATASETS, Key="versions/v0001/" + entry["mask"])["Body"].read()
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(mask))), _corrected(i))
    drives_by_split: dict[str, set[str]] = {}
    for f in version["frames"]:
        drives_by_split.setdefault(f["split"], set()).add(f["drive"])
    assert not drives_by_split["train"] & drives_by_split["validation"]

    rc, out, _ = run("data", "versions", "--json")
    assert rc == 0 and [(v["version"], v["frames"], v["complete"]) for v in json.loads(out)] == [("v0001", 6, True)]
    rc, out, _ = run("data", "versions")
    assert rc == 0 and "v0001" in out and "complete" in out
    rc, out, _ = run("data", "verify", "v0001", "--json")
    assert rc == 0 and json.loads(out)["ok"] and json.loads(out)["checked"] == 13

    rc, out, err = run("pipeline", "start", "--dataset-version", "v0001", "--json")
    assert rc == 0, err
    arn = json.loads(out)["execution_arn"]
    listed = boto3.client("sagemaker", region_name=REGION).list_pipeline_parameters_for_execution(
        PipelineExecutionArn=arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in listed} == {"InputDataS3Uri": f"s3://{DATASETS}/versions/v0001/",
                                                       "DatasetLayout": "generic"}


def test_label_studio_with_presigned_urls_makes_the_next_version(deployed, run, tmp_path):
    s3 = deployed
    exported, folder, rows = _select_and_export(run, s3, tmp_path, "label-studio", "--urls", "--expires-in", 86400)
    assert exported["urls_expire_in_s"] == 86400
    tasks = json.loads((folder / "label-studio" / "tasks.json").read_text())
    assert len(tasks) == 6
    assert all("X-Amz-Expires=86400" in t["data"]["image"] and "versionId=" in t["data"]["image"] for t in tasks)
    # Label Studio's JSON export: each task with the annotator's brushes (label-studio-converter's RLE).
    by_name = {frame_name_for_key(r["frame_key"]): i for i, r in enumerate(rows)}
    for number, task in enumerate(tasks):
        task["id"] = 100 + number
        task["annotations"] = [{"id": 1, "result": brush_results(_corrected(by_name[task["data"]["frame"]]),
                                                                 CITYSCAPES), "updated_at": "2026-12-08T10:00:00Z"}]
    (tmp_path / "ls-export.json").write_text(json.dumps(tasks))
    rc, out, err = run("label", "import", tmp_path / "ls-export.json", "--format", "label-studio",
                       "--export-manifest", folder / "roadseg-export.json", "--parent", "none", "--json")
    assert rc == 0, err
    first = json.loads(out)
    assert first["version"] == "v0001" and first["tool"] == "label-studio"

    # The same frames again: refused without --replace (nothing written), a new version with it.
    rc, _, err = run("label", "import", tmp_path / "ls-export.json", "--format", "label-studio",
                     "--export-manifest", folder / "roadseg-export.json")
    assert rc == 2 and "6 imported frame(s) are already in v0001" in err and "--replace" in err
    rc, out, err = run("label", "import", tmp_path / "ls-export.json", "--format", "label-studio",
                       "--export-manifest", folder / "roadseg-export.json", "--replace", "--json")
    assert rc == 0, err
    second = json.loads(out)
    assert (second["version"], second["parent"], second["counts"]["replaced"]) == ("v0002", "v0001", 6)
    assert second["split"]["validation_groups"] == first["split"]["validation_groups"]  # validation stays fixed

    # The next selection leaves the labelled frames out.
    rc, out, err = run("label", "select", tmp_path / "timeline", "--budget-frames", 6, "--output",
                       tmp_path / "sel2", "--json")
    assert rc == 0, err
    again = json.loads(out)
    assert again["excluded_version"] == "v0002" and again["accounting"]["picked"] == 0


def test_bad_input_is_one_line_with_exit_2(deployed, run, tmp_path):
    rc, _, err = run("label", "select", "--budget-frames", 3, "--output", tmp_path / "sel")
    assert rc == 2 and "timeline files or folders, or --drive" in err
    rc, _, err = run("label", "select", "--drive", "car-1/never", "--budget-frames", 3, "--output", tmp_path / "s")
    assert rc == 2 and "drive car-1/never has no timeline" in err
    (tmp_path / "selection.json").write_text("{}")
    rc, _, err = run("label", "export", tmp_path / "selection.json", "--format", "cvat", "--output", tmp_path / "x")
    assert rc == 2 and "not a selection manifest" in err
    rc, _, err = run("label", "export", tmp_path / "selection.json", "--format", "cvat", "--urls", "--output",
                     tmp_path / "x")
    assert rc == 2 and "presigned URLs (--urls) are for Label Studio" in err
    rc, _, err = run("label", "import", tmp_path / "missing.zip", "--format", "cvat")
    assert rc == 2 and "missing.zip" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run("pipeline", "start", "--dataset-version", "v0009")
    assert rc == 2 and "dataset version v0009 does not exist" in err
    rc, _, err = run("pipeline", "start", "--dataset-version", "v0009", "--dataset", "cityscapes")
    assert rc == 2 and "either --dataset or --dataset-version" in err
    rc, _, err = run("data", "verify", "latest")
    assert rc == 2 and "'latest' is not a dataset version id" in err


def test_a_damaged_version_fails_verify_with_exit_1(deployed, run, tmp_path):
    s3 = deployed
    _, folder, rows = _select_and_export(run, s3, tmp_path, "cvat")
    frames = [FrameToLabel(frame_name_for_key(r["frame_key"]), np.zeros((HEIGHT, WIDTH, 3), np.uint8),
                           _corrected(i)) for i, r in enumerate(rows)]
    write_cvat(frames, CITYSCAPES, tmp_path / "task.zip")
    rc, _, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest",
                     folder / "roadseg-export.json")
    assert rc == 0, err
    split = "versions/v0001/split.json"
    s3.put_object(Bucket=DATASETS, Key=split, Body=b'{"train": [], "validation": []}')
    rc, _, err = run("data", "verify", "v0001")
    assert rc == 1 and "split.json: 31 bytes" in err


def test_label_studio_frames_as_files_and_a_zip_hold_the_exact_bytes(deployed, run, tmp_path):
    s3 = deployed
    exported, folder, rows = _select_and_export(run, s3, tmp_path, "label-studio", "--zip")
    assert exported["urls_expire_in_s"] is None
    with zipfile.ZipFile(folder / "label-studio-frames.zip") as zf:
        names = set(zf.namelist())
        assert {"tasks.json", "labelling-config.xml", "roadseg-export.json"} <= names
        for row in rows:
            member = f"images/{frame_name_for_key(row['frame_key'])}.jpg"
            assert zf.read(member) == s3.get_object(Bucket=INFERENCE, Key=row["frame_key"])["Body"].read()
    tasks = json.loads((folder / "label-studio" / "tasks.json").read_text())
    assert all(t["data"]["image"].startswith("images/") for t in tasks)
    # The pre-annotation is the model's mask at the frame's size: sky over road, as _model_mask drew it.
    first = next(t for t in tasks if t["data"]["source_key"] == rows[0]["frame_key"])
    labels = {r["value"]["brushlabels"][0] for r in first["predictions"][0]["result"]}
    assert labels == {"road", "sky"}


def test_the_import_refuses_another_scheme_and_a_bad_parent(deployed, run, tmp_path):
    s3 = deployed
    _, folder, rows = _select_and_export(run, s3, tmp_path, "cvat", "--expires-in", 60)
    frames = [FrameToLabel(frame_name_for_key(r["frame_key"]), np.zeros((HEIGHT, WIDTH, 3), np.uint8),
                           _corrected(i)) for i, r in enumerate(rows)]
    write_cvat(frames, CITYSCAPES, tmp_path / "task.zip")
    manifest = folder / "roadseg-export.json"
    rc, _, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest", manifest,
                     "--scheme", "camvid")
    assert rc == 2 and "exported with scheme 'cityscapes'" in err and "import with the scheme of the export" in err
    rc, _, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest", manifest,
                     "--parent", "v1")
    assert rc == 2 and "--parent: 'v1' is not a dataset version id" in err
    rc, _, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest", manifest,
                     "--parent", "v0004")
    assert rc == 2 and "dataset version v0004 does not exist" in err
    rc, _, err = run("label", "export", folder / ".." / "sel" / "selection.json", "--format", "label-studio",
                     "--urls", "--expires-in", 700000, "--output", tmp_path / "x")
    assert rc == 2 and "presigned URLs last 1 to 604800 seconds" in err
    assert not s3.list_objects_v2(Bucket=DATASETS).get("Contents")  # nothing was written by refused imports


def test_frames_nobody_changed_are_refused_unless_accepted(deployed, run, tmp_path):
    """CVAT turns uploaded pre-annotations into annotations: an untouched frame comes back as the model's mask. The
    export records each pre-annotation's digest, and the import leaves such frames out unless --accept-unchanged."""
    from labelling.archive import pre_annotation_digest
    from labelling.cvat import read_cvat

    s3 = deployed
    _, folder, rows = _select_and_export(run, s3, tmp_path, "cvat")
    manifest = json.loads((folder / "roadseg-export.json").read_text())
    assert manifest["schema_version"] == "1.1"
    pre = {label.frame_name: label.mask for label in read_cvat(folder / "cvat-annotations.zip", CITYSCAPES).labels}
    assert {f["name"]: f["pre_annotation_sha256"] for f in manifest["frames"]} == \
        {name: pre_annotation_digest(mask) for name, mask in pre.items()}

    # The task exported as it was uploaded: every frame unchanged, nothing to import.
    rc, _, err = run("label", "import", folder / "cvat-annotations.zip", "--format", "cvat", "--export-manifest",
                     folder / "roadseg-export.json")
    assert rc == 2 and "nothing to import: 6 frame(s) came back exactly as the model pre-annotated" in err
    assert "--accept-unchanged" in err and len(err.strip().splitlines()) == 1
    assert not s3.list_objects_v2(Bucket=DATASETS).get("Contents")

    # Annotators corrected the first four frames and left two untouched.
    names = [frame_name_for_key(r["frame_key"]) for r in rows]
    frames = [FrameToLabel(name, np.zeros((HEIGHT, WIDTH, 3), np.uint8), _corrected(i) if i < 4 else pre[name])
              for i, name in enumerate(names)]
    write_cvat(frames, CITYSCAPES, tmp_path / "task.zip")
    rc, out, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest",
                       folder / "roadseg-export.json", "--json")
    assert rc == 0, err
    imported = json.loads(out)
    assert imported["counts"]["frames"] == 4 and sorted(imported["refused_unchanged"]) == sorted(names[4:])
    assert imported["labels"] == {"read": 6, "imported": 4, "changed": 4, "unchanged_accepted": 0, "unchecked": 0,
                                  "refused": {"unchanged": 2}, "missing": 0, "exported": 6}
    assert "2 frame(s) came back exactly as the model pre-annotated them" in err

    # Checked and found right: accepted, counted apart from the changed ones.
    rc, out, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest",
                       folder / "roadseg-export.json", "--accept-unchanged", "--replace", "--json")
    assert rc == 0, err
    accepted = json.loads(out)
    assert accepted["labels"]["imported"] == 6 and accepted["labels"]["unchanged_accepted"] == 2
    assert accepted["labels"]["refused"] == {"unchanged": 0} and accepted["counts"]["frames"] == 6


def test_label_studio_annotations_equal_to_the_prediction_are_refused(deployed, run, tmp_path):
    s3 = deployed
    _, folder, rows = _select_and_export(run, s3, tmp_path, "label-studio", "--zip")
    tasks = json.loads((folder / "label-studio" / "tasks.json").read_text())
    for number, task in enumerate(tasks):
        task["id"] = 200 + number
        # The annotator submitted the prediction as it was on the first task, and corrected the others.
        result = task["predictions"][0]["result"] if number == 0 else brush_results(
            _corrected(number), CITYSCAPES)
        task["annotations"] = [{"id": 1, "result": result, "updated_at": "2026-12-08T10:00:00Z"}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    rc, out, err = run("label", "import", tmp_path / "ls.json", "--format", "label-studio", "--export-manifest",
                       folder / "roadseg-export.json", "--json")
    assert rc == 0, err
    imported = json.loads(out)
    assert imported["refused_unchanged"] == [tasks[0]["data"]["frame"]]
    assert imported["labels"]["changed"] == 5 and imported["labels"]["refused"] == {"unchanged": 1}
    assert imported["counts"]["frames"] == 5


class _FakeCredentials:
    """What botocore hands the presigner: RefreshableCredentials keep their expiry in _expiry_time."""

    def __init__(self, token: str | None, expiry=None) -> None:
        self.access_key, self.secret_key, self.token = "AKIA", "secret", token
        if expiry is not None:
            self._expiry_time = expiry


def test_presigned_urls_expire_with_the_temporary_credentials_that_signed_them():
    import datetime as dt

    from roadseg.commands.label import credentials_expiry, presigned_urls_expire_at
    from roadseg.session import UserError

    now = dt.datetime(2026, 12, 8, 4, 0, tzinfo=dt.UTC)
    soon = now + dt.timedelta(hours=1)
    assert credentials_expiry(None) == (False, None)
    assert credentials_expiry(_FakeCredentials(None)) == (False, None)  # an IAM user's keys
    assert credentials_expiry(_FakeCredentials("token")) == (True, None)  # a session token from the environment
    assert credentials_expiry(_FakeCredentials("token", soon)) == (True, soon)  # an assumed role, SSO
    assert credentials_expiry(_FakeCredentials("t", soon.replace(tzinfo=None))) == (True, soon)  # naive = UTC

    at, note = presigned_urls_expire_at(now, 86400, True, soon)
    assert at == soon and "stop working at 2026-12-08T05:00:00Z" in note and "not at 2026-12-09T04:00:00Z" in note
    assert presigned_urls_expire_at(now, 1800, True, soon) == (now + dt.timedelta(seconds=1800), None)
    assert presigned_urls_expire_at(now, 86400, False, None) == (now + dt.timedelta(days=1), None)
    at, note = presigned_urls_expire_at(now, 86400, True, None)
    assert at == now + dt.timedelta(days=1) and "unknown expiry" in note
    with pytest.raises(UserError, match="credentials expired at 2026-12-08T03:00:00Z"):
        presigned_urls_expire_at(now, 60, True, now - dt.timedelta(hours=1))


def test_the_export_records_when_the_credentials_end_the_urls(deployed, run, tmp_path, monkeypatch):
    import datetime as dt

    from roadseg.commands import label as commands

    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)).replace(microsecond=0)
    monkeypatch.setattr(commands, "_signing_credentials", lambda: _FakeCredentials("token", expiry))
    s3 = deployed
    _drive_frames(s3, tmp_path / "timeline")
    rc, _, err = run("label", "select", tmp_path / "timeline", "--budget-frames", 2, "--output", tmp_path / "sel")
    assert rc == 0, err
    rc, out, err = run("label", "export", tmp_path / "sel" / "selection.json", "--format", "label-studio", "--urls",
                       "--expires-in", 86400, "--output", tmp_path / "export", "--json")
    assert rc == 0, err
    stamp = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(out)["urls_expire_at"] == stamp
    assert json.loads((tmp_path / "export" / "roadseg-export.json").read_text())["urls_expire_at"] == stamp
    assert f"stop working at {stamp}, when the temporary AWS credentials" in err


def _cvat_version(run, s3, tmp_path: Path) -> tuple[dict, list[dict]]:
    """v0001 from the six frames of _drive_frames, corrected in CVAT."""
    _, folder, rows = _select_and_export(run, s3, tmp_path, "cvat")
    frames = [FrameToLabel(frame_name_for_key(r["frame_key"]), np.zeros((HEIGHT, WIDTH, 3), np.uint8),
                           _corrected(i)) for i, r in enumerate(rows)]
    write_cvat(frames, CITYSCAPES, tmp_path / "task.zip")
    rc, out, err = run("label", "import", tmp_path / "task.zip", "--format", "cvat", "--export-manifest",
                       folder / "roadseg-export.json", "--seed", 3, "--json")
    assert rc == 0, err
    return json.loads(out), rows


def test_the_next_selection_leaves_out_every_frame_of_a_validation_drive(deployed, run, tmp_path):
    s3 = deployed
    version, _ = _cvat_version(run, s3, tmp_path)
    validation = set(version["split"]["validation_groups"])
    assert validation and validation < {f"{v}/{d}" for v, d in DRIVES}
    # New, unlabelled frames of every drive: those of the validation drives may not be picked.
    fresh = [timeline_frame(vehicle, drive, "front", 5000.0 + 50 * i) for i, (vehicle, drive) in enumerate(DRIVES)]
    write_table(tmp_path / "fresh", fresh)
    rc, out, err = run("label", "select", tmp_path / "fresh", "--budget-frames", 6, "--output", tmp_path / "sel2",
                       "--json")
    assert rc == 0, err
    selected = json.loads(out)
    assert selected["excluded_version"] == "v0001"
    assert selected["accounting"]["excluded"]["validation_drive"] == len(validation)
    picks = json.loads((tmp_path / "sel2" / "selection.json").read_text())["picks"]
    assert {p["drive_id"] for p in picks} == {f"{v}/{d}" for v, d in DRIVES} - validation


def test_select_from_a_drive_records_its_s3_timeline_and_draws_overlays_and_scheme_colours(deployed, run, tmp_path):
    from contracts.drives import DriveId, DriveOutputs
    from tests.labelling.timeline_fixtures import write_drive_file

    s3 = deployed
    red = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (255, 0, 0)).save(red, "JPEG", quality=95)
    rows = []
    for second in (0.0, 10.0, 20.0):
        row = timeline_frame("car-1", "d1", "front", second)
        row["overlay_uri"] = f"s3://{INFERENCE}/overlays/{second}.jpg" if second < 20 else None
        if row["overlay_uri"]:
            s3.put_object(Bucket=INFERENCE, Key=f"overlays/{second}.jpg", Body=red.getvalue())
        rows.append(row)
    key = DriveOutputs(DriveId.parse("car-1/d1")).timeline
    write_drive_file(tmp_path / "timeline.parquet", rows)
    s3.upload_file(str(tmp_path / "timeline.parquet"), INFERENCE, key)

    rc, out, err = run("label", "select", "--drive", "car-1/d1", "--budget-frames", 3, "--output", tmp_path / "sel",
                       "--exclude-version", "none", "--json")
    assert rc == 0, err
    selected = json.loads(out)
    document = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert document["sources"] == [f"s3://{INFERENCE}/{key}"]  # not the temporary file it was read from
    assert selected["accounting"]["picked"] == 3 and selected["contact_sheet_overlays"] == 2
    sheet = np.asarray(Image.open(tmp_path / "sel" / "contact-sheet.png").convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(sheet, axis=0)}
    assert any(r > 240 and g < 20 and b < 20 for r, g, b in colours)  # the overlays
    road = tuple(CITYSCAPES.classes[ROAD].color)
    assert road in colours  # the third pick's class bars in the scheme's colour
