"""The local rehearsal (make demo), run once small: counts, documents, rollout, and nothing left running."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.signals import REFERENCE_PROFILE_FILE, validate_reference_profile
from demo.__main__ import main as demo_main
from demo.frames import BROKEN_VEHICLE
from demo.options import Names, Options
from demo.pipelines import _fn_sub
from demo.rehearsal import run
from demo.render import README_PICTURE_LIMIT, readme_picture
from demo.report import Report
from demo.standin import degrade
from envconfig.config import load_config

ROOT = Path(__file__).resolve().parents[2]
FRAMES, WIDTH, HEIGHT = 4, 640, 320
DRIVE_SECONDS, DRIVE_HZ = 2.0, 3.0  # 2 cameras x 6 frames
# What ingest must say about each file segcore/scenes.py's write_broken_frames() writes.
BROKEN_CODES = {"empty.jpg": "empty", "truncated.jpg": "truncated", "truncated.png": "truncated",
                "notes.jpg": "unsupported_format", "animated.gif": "unsupported_format"}
# roadseg pipeline start adds the incumbent: none yet (the rehearsal approves its first package after the pipelines).
FIRST_MODEL = {"IncumbentModelS3Uri": "", "IncumbentModelPackageArn": ""}
TRAINING_PARAMETERS = {"DatasetLayout": "cityscapes", "Epochs": "2", **FIRST_MODEL}
TUNING_PARAMETERS = {"DatasetLayout": "cityscapes", "Epochs": "3", **FIRST_MODEL}


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_server_entry" in t.name]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[Report, dict[str, str | None]]:
    out = tmp_path_factory.mktemp("demo-out")
    before = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_CONFIG_FILE")}
    report = run(Options(env="dev", frames=FRAMES, width=WIDTH, height=HEIGHT, out=out, drive_seconds=DRIVE_SECONDS,
                         drive_hz=DRIVE_HZ), echo=lambda _: None)
    return report, before


def test_rehearsal_passes(rehearsal):
    report, _ = rehearsal
    assert report.problems == []
    assert (report.count("good"), report.count("broken")) == (FRAMES, len(BROKEN_CODES))
    assert report.count(status="processed") == FRAMES and report.count(status="quarantined") == len(BROKEN_CODES)
    summary = json.loads((report.options.out / "summary.json").read_text())
    assert summary["stand_in"] is True and "not a model" in summary["note"]
    assert summary["drive"]["stand_in"] is True and summary["drive"]["problems"] == []
    assert summary["counts"] == {"in": FRAMES + len(BROKEN_CODES), "processed": FRAMES,
                                 "quarantined": len(BROKEN_CODES), "failed": 0}
    text = (report.options.out / "summary.txt").read_text()
    assert "STAND-IN SEGMENTER" in text and "Rehearsal PASSED" in text


def test_every_good_frame_has_a_plausible_result_and_overlay(rehearsal):
    report, _ = rehearsal
    good = [f for f in report.frames if f.kind == "good"]
    assert {Path(f.key).suffix for f in good} == {".jpg", ".png"}
    for frame in good:
        result = json.loads(frame.result_path.read_text())
        assert result["frame_key"] == frame.key and result["mode"] == "async"
        assert result["vehicle"].startswith("veh-") and result["camera"] in ("front", "left", "right", "rear")
        assert result["original_size"] == {"width": WIDTH, "height": HEIGHT}
        assert result["inference_size"] == {"width": WIDTH, "height": HEIGHT}  # dev: 1024x512, never upscaled
        assert result["model_package_version"] == "1"  # the package the rollout deployed
        fractions = result["class_fractions"]
        assert fractions["road"] > 0.05 and fractions["sky"] > 0.05
        assert result["drivable_area_fraction"] == fractions["road"]
        assert abs(sum(fractions.values()) - 1) < 1e-3
        assert result["vulnerable_road_users"]["present"]  # every generated scene has at least one person
        assert result["overlay_uri"].endswith(".overlay.jpg")
        overlay = Image.open(frame.overlay_path)
        assert overlay.format == "JPEG" and overlay.size == (WIDTH, HEIGHT)
        picture = Image.open(frame.side_by_side_path)
        assert picture.format == "PNG" and picture.width > 2 * min(WIDTH, 640) - 1
        assert "stand-in" in picture.info["Description"]


def test_every_broken_file_is_quarantined_with_a_reason(rehearsal):
    report, _ = rehearsal
    broken = {Path(f.key).name: f for f in report.frames if f.kind == "broken"}
    assert set(broken) == set(BROKEN_CODES)
    for name, frame in broken.items():
        assert frame.key.startswith(f"incoming/{BROKEN_VEHICLE}/")
        reason = json.loads(frame.reason_path.read_text())
        assert frame.reason_path.name == f"{name}.reason.json"
        assert reason["code"] == BROKEN_CODES[name] and reason["reason"] and reason["source_key"] == frame.key
        assert (frame.reason_path.parent / name).exists()  # the copy of the refused file


def test_both_pipeline_executions_carry_the_given_parameters(rehearsal):
    report, _ = rehearsal
    runs = {run.name: run for run in report.pipelines}
    assert set(runs) == {"roadseg-dev-training", "roadseg-dev-tuning"}
    for name, expected in (("roadseg-dev-training", TRAINING_PARAMETERS), ("roadseg-dev-tuning", TUNING_PARAMETERS)):
        run_ = runs[name]
        assert run_.status == "Succeeded" and f":pipeline/{name}/execution/" in run_.execution_arn
        assert run_.parameters == {"InputDataS3Uri": "s3://roadseg-dev-datasets/raw/rehearsal-cityscapes/",
                                   **expected}
        assert set(run_.parameters) <= set(run_.declared_parameters)
        definition = json.loads(run_.definition_path.read_text())
        body = json.dumps(definition)
        assert "${" not in body  # every placeholder substituted
        assert "arn:aws:iam::123456789012:role/roadseg-dev-sagemaker-execution" in body


def test_approval_rolls_out_once_and_the_redelivered_event_is_skipped(rehearsal):
    report, _ = rehearsal
    arn = report.model_package_arn
    assert arn.endswith(":model-package/roadseg-dev-segmentation/1")
    assert [r["action"] for r in report.rollout] == ["updated", "skipped"]
    assert report.rollout[1]["reason"] == "already deployed"
    assert len(report.update_stack_calls) == 1
    call = report.update_stack_calls[0]
    assert call["StackName"] == "RoadsegDevInference" and call["UsePreviousTemplate"] is True
    # The rollout writes the ARN into the serving SSM parameter, then keeps every parameter: the SSM-typed one
    # re-resolves (CloudFormation's resolution stood in by demo.resources.resolve_ssm_parameters_like_cloudformation).
    assert call["Parameters"] == [{"ParameterKey": "ModelPackageArn", "UsePreviousValue": True}]
    assert (report.stack_parameter_before, report.stack_parameter_after) == ("none", arn)
    event = json.loads((report.options.out / "rollout" / "event.json").read_text())
    assert event["source"] == "aws.sagemaker" and event["detail-type"] == "SageMaker Model Package State Change"
    assert event["detail"]["ModelApprovalStatus"] == "Approved" and event["resources"] == [arn]
    evaluation = json.loads((report.options.out / "registry" / "evaluation.json").read_text())
    assert evaluation["stand_in"] is True and 0.5 < evaluation["metrics"]["mIoU"] <= 1
    # As the gate registers it: the reference profile of the gated frames, where DescribeModelPackage says it is.
    assert evaluation["incumbent"] is None and evaluation["reference_profile"] == REFERENCE_PROFILE_FILE
    profile = validate_reference_profile(json.loads((report.options.out / "registry" / REFERENCE_PROFILE_FILE)
                                                    .read_text()))
    assert profile["frames"] == evaluation["num_images"] == 4
    log = (report.options.out / "logs" / "rehearsal.log").read_text()
    assert "its reference profile: s3://roadseg-dev-artifacts/pipelines/roadseg-dev-training/" in log
    assert f"/evaluation/{REFERENCE_PROFILE_FILE}" in log


def test_stand_in_output_is_labelled(rehearsal):
    report, _ = rehearsal
    labels = report.stand_in_labels
    assert labels["key"].startswith("async-output/") and labels["key"].endswith(".out")
    assert labels["metadata"]["stand-in"] == "true"
    assert labels["tags"] == {"roadseg-demo": "stand-in-segmenter"}
    assert "STAND-IN SEGMENTER" in (report.options.out / "logs" / "rehearsal.log").read_text()
    response = json.loads((report.options.out / "realtime" / "frame-0.response.json").read_text())
    assert report.realtime["status_code"] == 200 and response["stand_in"] is True
    assert response["summary"]["mode"] == "realtime" and response["summary"]["class_fractions"]["road"] > 0
    mask = np.asarray(Image.open(report.realtime["mask_path"]))
    assert mask.shape == (HEIGHT, WIDTH) and mask.max() < 19


def test_the_server_is_stopped_and_the_environment_restored(rehearsal):
    report, before = rehearsal
    assert report.server_running_after is False
    assert _server_threads() == []
    port = int(report.endpoint_url.rsplit(":", 1)[1])
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(1)
        probe.connect(("127.0.0.1", port))
    assert {name: os.environ.get(name) for name in before} == before


def test_names_come_from_the_typed_config():
    for env in ("dev", "prod"):
        config = load_config(env)
        names = Names.from_config(config)
        assert names.region == (config.region or "us-east-1")
        assert names.inference_bucket == f"{config.prefix}-inference"
        assert names.model_package_group == f"{config.prefix}-segmentation"
        assert (names.realtime_endpoint, names.async_endpoint) == (f"{config.prefix}-realtime",
                                                                   f"{config.prefix}-async")
    assert Names.from_config(load_config("prod")).inference_stack == "RoadsegProdInference"


def test_fn_sub_substitutes_placeholders_and_unescapes_literals():
    assert _fn_sub("a ${Role} b ${!Literal}", {"Role": "r"}) == "a r b ${Literal}"
    with pytest.raises(RuntimeError, match="Missing"):
        _fn_sub("${Missing}", {})


def test_degrade_moves_tiles_without_inventing_classes():
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 128), np.uint8)
    mask[:, 64:] = 1
    noisy = degrade(mask, 0.25, rng)
    assert set(np.unique(noisy)) <= {0, 1}
    changed = np.mean(noisy != mask)
    assert 0 < changed < 0.25
    assert np.array_equal(degrade(mask, 0.0, rng), mask)
    with pytest.raises(ValueError):
        degrade(mask, 1.5, rng)


def test_readme_picture_is_commit_sized(rehearsal, tmp_path):
    report, _ = rehearsal
    first = next(f for f in report.frames if f.side_by_side_path)
    target = readme_picture(first.side_by_side_path, tmp_path / "picture.png")
    assert target.stat().st_size <= README_PICTURE_LIMIT
    committed = ROOT / "docs" / "demo-overlay.png"
    assert committed.stat().st_size <= README_PICTURE_LIMIT
    image = Image.open(io.BytesIO(committed.read_bytes()))
    assert "stand-in" in image.info.get("Description", "")


def test_invalid_arguments_exit_2(capsys):
    assert demo_main(["--noise", "2"]) == 2
    assert demo_main(["--frames", "0", "--out", "/nonexistent-demo-out"]) == 2
    assert demo_main(["--drive-hz", "0", "--out", "/nonexistent-demo-out"]) == 2
    assert "error" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the drive stage


def test_the_drive_log_is_a_real_mcap(rehearsal):
    from mcap.reader import make_reader

    report, _ = rehearsal
    drive = report.drive
    assert drive is not None and drive.problems == []
    with drive.mcap_path.open("rb") as handle:
        reader = make_reader(handle)
        summary = reader.get_summary()
        topics = {channel.topic for channel in summary.channels.values()}
        schemas = {schema.name for schema in summary.schemas.values()}
        messages = list(reader.iter_messages())
    assert topics == {"/cam/front/image_raw/compressed", "/cam/rear/image_raw/compressed"}
    assert schemas == {"sensor_msgs/msg/CompressedImage"}
    per_camera = round(DRIVE_SECONDS * DRIVE_HZ)
    assert len(messages) == 2 * per_camera == len(drive.planned)
    assert drive.mcap_key == "drives/veh-100/rehearsal-drive.mcap"


def test_drive_frames_arrive_under_incoming_with_the_drive_id(rehearsal):
    report, _ = rehearsal
    drive = report.drive
    assert len(drive.frame_keys) == len(drive.planned)
    for key in drive.frame_keys:
        assert key.startswith(("incoming/veh-100/rehearsal-drive/front/", "incoming/veh-100/rehearsal-drive/rear/"))
        assert key.endswith("Z.jpg")
    manifest = json.loads((report.options.out / "drive" / "manifest.json").read_text())
    assert manifest["drive_id"] == "veh-100/rehearsal-drive" and manifest["status"] == "complete"
    assert manifest["destination"] == "s3://roadseg-dev-inference/"
    assert {name: camera["extracted"] for name, camera in manifest["cameras"].items()} == {
        "front": len(drive.planned) // 2, "rear": len(drive.planned) // 2}
    # read back from moto with HeadObject while it ran, for every frame
    assert drive.frame_metadata == {"drive-id": "veh-100/rehearsal-drive"}


def test_drive_counts_reconcile_in_the_drives_table(rehearsal):
    report, _ = rehearsal
    drive = report.drive
    c = drive.counters
    assert c["extracted"] == len(drive.planned) == c["processed"] + c["quarantined"] + c["failed"]
    assert c["processed"] == len(drive.planned) and drive.frame_items == len(drive.planned)
    assert drive.reconciled and drive.status == "extracted"
    assert drive.completion["action"] == "claim"
    assert drive.path_counts["postprocess_outcomes"] == {"completed": len(drive.planned)}
    # the main frames were not counted for any drive, and their numbers are the frames' alone
    assert report.async_invocations == FRAMES


def test_drive_builder_summary_scene_video_and_frame(rehearsal):
    import av

    from contracts.drive_timeline import validate_drive_scenes, validate_drive_summary

    report, _ = rehearsal
    drive, folder = report.drive, report.options.out / "drive"
    summary = validate_drive_summary(json.loads((folder / "summary.json").read_text()))
    assert summary["drive_id"] == "veh-100/rehearsal-drive" and summary["cameras"] == ["front", "rear"]
    assert summary["totals"]["total"] == len(drive.planned) == summary["totals"]["processed"]
    scenes = validate_drive_scenes(json.loads((folder / "scenes.json").read_text()))["scenes"]
    ahead = [s for s in scenes if s["kind"] == "vru_in_drivable_ahead"]
    assert ahead and ahead[0]["camera"] == "front" and {"person", "rider"} & set(ahead[0]["classes"])
    assert "drive-outputs/veh-100/rehearsal-drive/summary.json" in drive.uploaded
    assert "drive-outputs/veh-100/rehearsal-drive/videos/front.mp4" in drive.uploaded
    for camera in ("front", "rear"):
        with av.open(str(folder / "videos" / f"{camera}.mp4")) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == len(drive.planned) // 2
    picture = Image.open(folder / "scene-frame.png")
    assert picture.format == "PNG" and "stand-in" in picture.info["Description"]
    text = (report.options.out / "summary.txt").read_text()
    assert "Drive veh-100/rehearsal-drive" in text and "reconciled" in text and "scene-frame.png" in text


def test_the_rehearsal_drive_has_a_sidecar_mcap_with_one_overlay_per_processed_frame(rehearsal):
    from mcap.reader import make_reader

    report, _ = rehearsal
    drive, folder = report.drive, report.options.out / "drive"
    assert "drive-outputs/veh-100/rehearsal-drive/sidecar.mcap" in drive.uploaded
    assert drive.files["sidecar"] == folder / "sidecar.mcap"
    with (folder / "sidecar.mcap").open("rb") as stream:
        reader = make_reader(stream)
        schemas = {c.topic: reader.get_summary().schemas[c.schema_id].name
                   for c in reader.get_summary().channels.values()}
        counts: dict[str, int] = {}
        times: dict[str, list[int]] = {}
        for _, channel, message in reader.iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            times.setdefault(channel.topic, []).append(message.log_time)
    processed = drive.summary["frames"]
    assert processed["front"]["processed"] == processed["rear"]["processed"] == len(drive.planned) // 2
    for camera in ("front", "rear"):
        assert schemas[f"/roadseg/{camera}/overlay"] == "foxglove.CompressedImage"
        assert counts[f"/roadseg/{camera}/overlay"] == processed[camera]["processed"]
        assert counts[f"/roadseg/{camera}/stats"] == len(drive.planned) // 2
        # on the log's clock: the overlays carry the planned frames' stamps
        assert sorted(times[f"/roadseg/{camera}/overlay"]) == sorted(
            p.stamp_ns for p in drive.planned if p.camera == camera)
    assert counts.get("/roadseg/scenes", 0) == len(drive.scenes["scenes"]) >= 1
    side = drive.summary["sidecar"]
    assert side["overlays"] == {"front": counts["/roadseg/front/overlay"], "rear": counts["/roadseg/rear/overlay"]}
    assert side["messages"] == sum(counts.values())


def test_every_document_carries_the_uploads_version_id(rehearsal):
    """The inference bucket is versioned as deployed (stacks/bucket_set.py): every upload got a VersionId, S3's event
    carries it, and ingest writes it into the quarantine document and derives the result's inference_id from it."""
    from segcore.keys import derive_inference_id

    report, _ = rehearsal
    for frame in report.frames:
        assert frame.version_id and frame.version_id != "null", frame.key
        if frame.kind == "broken":
            assert frame.reason["source_version_id"] == frame.version_id
        else:
            assert frame.result["inference_id"] == derive_inference_id(frame.result["source_bucket"], frame.key,
                                                                       frame.version_id)
            # Not the id an unversioned bucket gives (derived from the ETag instead).
            assert frame.result["inference_id"] != derive_inference_id(frame.result["source_bucket"], frame.key)
    text = (report.options.out / "summary.txt").read_text()
    finished = FRAMES + len(BROKEN_CODES)
    assert f"versioned    {finished:3d}  of {finished} documents carry the upload's VersionId" in text


def test_the_labelling_stage_closes_the_loop_on_the_rehearsal_drive(rehearsal):
    """Stage 11 (demo/labelling.py): its own summary, read explicitly: the drive's picks exported to CVAT, every one
    imported (none refused as unchanged: the ground truth differs from the stand-in's pre-annotation), the new
    version keeps its parent's validation drives and the training start points at it."""
    report, _ = rehearsal
    summary = json.loads((report.options.out / "labelling" / "summary.json").read_text())
    assert summary["problems"] == [] and summary["drive"] == "veh-100/rehearsal-drive"
    assert summary["picked"] >= 1 and summary["exported"] == summary["picked"]
    assert (summary["seed_version"], summary["version"], summary["parent"]) == ("v0001", "v0002", "v0001")
    labels = summary["labels"]
    assert labels["imported"] == labels["changed"] == summary["exported"] and summary["refused_unchanged"] == []
    assert labels["refused"] == {"unchanged": 0} and labels["missing"] == 0
    assert summary["counts"]["added"] == summary["exported"]
    assert summary["parameters"]["InputDataS3Uri"].endswith("/versions/v0002/")
    assert summary["parameters"]["DatasetLayout"] == "generic"
