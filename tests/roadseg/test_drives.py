"""roadseg drive upload|status|scenes|fetch against moto: real log files, the drives table and the drive outputs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from contracts import drive_table as table
from contracts.drives import DriveId, DriveOutputs
from contracts.naming import drives_table_name
from roadseg.drives import drive_progress, elapsed_since, plan_upload
from roadseg.session import UserError

BUCKET = "roadseg-dev-inference-test"
TABLE = drives_table_name("roadseg-dev")


@pytest.fixture
def aws(offline_aws_env):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            **table.key_schema())
        yield s3, dynamodb


def _mcap(path: Path) -> Path:
    """A real (small) MCAP log with one JSON channel: the upload sends it as it is, the extraction job reads it."""
    from mcap.writer import Writer

    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start()
        schema = writer.register_schema(name="tick", encoding="jsonschema", data=b'{"type": "object"}')
        channel = writer.register_channel(topic="/tick", message_encoding="json", schema_id=schema)
        for i in range(10):
            writer.add_message(channel, log_time=i * 10**8, data=json.dumps({"i": i}).encode(), publish_time=i * 10**8)
        writer.finish()
    return path


def test_plan_a_file_and_a_ros2_directory_with_metadata_last(tmp_path):
    log = _mcap(tmp_path / "2026-12-03-0912.mcap")
    plan = plan_upload(log, "car-7")
    assert plan.drive == DriveId("car-7", "2026-12-03-0912")
    assert plan.files == ((log, "drives/car-7/2026-12-03-0912.mcap"),)
    bag = tmp_path / "rosbag2_2026_12_03"
    bag.mkdir()
    for name in ("metadata.yaml", "rosbag2_2026_12_03_0.db3", "rosbag2_2026_12_03_1.db3", ".DS_Store"):
        (bag / name).write_text(name)
    plan = plan_upload(bag, "car-7", "d1")
    assert [key for _, key in plan.files] == ["drives/car-7/d1/rosbag2_2026_12_03_0.db3",
                                              "drives/car-7/d1/rosbag2_2026_12_03_1.db3",
                                              "drives/car-7/d1/metadata.yaml"]
    assert plan.trigger_key.endswith("metadata.yaml") and str(plan.drive) == "car-7/d1"


@pytest.mark.parametrize(("make", "vehicle", "message"), [
    (lambda d: d / "missing.mcap", "car-7", "does not exist"),
    (lambda d: (d / "frame.jpg").write_bytes(b"x") and d / "frame.jpg", "car-7", "a drive log is an .mcap file"),
    (lambda d: (d / "dir").mkdir() or d / "dir", "car-7", "holds metadata.yaml (not found)"),
    (lambda d: _mcap(d / "log.mcap"), "car 7", "letters, digits"),
])
def test_what_is_not_a_drive_log_is_refused_with_the_fix(tmp_path, make, vehicle, message):
    with pytest.raises(UserError, match=re.escape(message)):
        plan_upload(make(tmp_path), vehicle)


def test_upload_puts_the_log_under_drives_and_says_how_to_follow_it(aws, run, tmp_path):
    s3, _ = aws
    log = _mcap(tmp_path / "2026-12-03-0912.mcap")
    rc, out, _ = run("drive", "upload", log, "--vehicle", "car-7", "--bucket", BUCKET)
    assert rc == 0
    assert s3.get_object(Bucket=BUCKET, Key="drives/car-7/2026-12-03-0912.mcap")["Body"].read() == log.read_bytes()
    assert "roadseg drive status car-7/2026-12-03-0912" in out


def _drive_item(dynamodb, **values) -> None:
    item = {table.PARTITION_KEY: {"S": "car-7/d1"}, table.SORT_KEY: {"S": table.DRIVE_ITEM}}
    for key, value in values.items():
        item[key] = {"N": str(value)} if isinstance(value, int) else {"S": value}
    dynamodb.put_item(TableName=TABLE, Item=item)


def test_status_counts_what_remains_and_estimates_the_time_left(aws, run):
    _, dynamodb = aws
    started = (datetime.now(UTC) - timedelta(seconds=84)).isoformat().replace("+00:00", "Z")
    _drive_item(dynamodb, status=table.EXTRACTION_ENDED, extracted=120, processed=80, quarantined=3, failed=1,
                created_at=started)
    rc, out, _ = run("drive", "status", "car-7/d1")
    assert rc == 0
    assert "extracted" in out and "120" in out and "36" in out  # 120 - 84 remain
    rc, out, _ = run("drive", "status", "car-7/d1", "--json")
    document = json.loads(out)
    assert (document["done"], document["complete"], document["status"]) == (84, False, "extracted")
    assert document["eta_seconds"] == pytest.approx(36.0, abs=2.0)  # 84 frames in 84 s: 36 more take 36 s


def test_elapsed_since_reads_the_launchers_timestamps():
    now = datetime(2026, 12, 3, 10, 0, 30, tzinfo=UTC)
    assert elapsed_since("2026-12-03T10:00:00.000Z", now) == 30.0
    assert elapsed_since("2026-12-03T10:00:00+00:00", now) == 30.0
    assert elapsed_since(None, now) is None and elapsed_since("yesterday", now) is None


def test_status_of_an_unknown_drive_says_how_to_start_one(aws, run):
    rc, _, err = run("drive", "status", "car-7/never-uploaded")
    assert rc == 2 and "no drive car-7/never-uploaded: upload its log with `roadseg drive upload`" in err


def test_progress_while_extracting_and_when_complete():
    running = drive_progress("car-7/d1", {table.STATUS: table.EXTRACTING, table.PROCESSED: 5})
    assert running.extracted is None and not running.complete and running.eta_seconds(60.0) is None
    done = drive_progress("car-7/d1", {table.STATUS: table.BUILDING, table.EXTRACTED: 10, table.PROCESSED: 9,
                                       table.FAILED: 1, table.BUILD_JOB: "roadseg-dev-drive-build-x"})
    assert done.complete and done.eta_seconds(30.0) == 0
    half = drive_progress("car-7/d1", {table.STATUS: table.EXTRACTION_ENDED, table.EXTRACTED: 100,
                                       table.PROCESSED: 50})
    assert half.eta_seconds(20.0) == pytest.approx(20.0)  # 50 more at 2.5 frames/s


def _scene(kind: str, camera: str, start_s: int) -> dict:
    start = 1_764_756_900_000_000_000 + start_s * 1_000_000_000
    return {"kind": kind, "camera": camera, "start": f"2026-12-03T10:15:{start_s:02d}.000000000Z",
            "end": f"2026-12-03T10:15:{start_s + 2:02d}.000000000Z", "start_ns": start, "end_ns": start + 2 * 10**9,
            "duration_s": 2.0, "frames": 5, "gap_frames": 0, "first_frame_key": "incoming/car-7/front/a.jpg",
            "last_frame_key": "incoming/car-7/front/b.jpg", "peak_frame_key": "incoming/car-7/front/p.jpg",
            "classes": ["bicycle"] if kind == "vru_in_drivable_ahead" else [],
            "peak_vru_ahead_pixels": 40 if kind == "vru_in_drivable_ahead" else None,
            "min_drivable_ahead_fraction": None if kind == "vru_in_drivable_ahead" else 0.1}


def _put_outputs(s3) -> DriveOutputs:
    outputs = DriveOutputs(DriveId("car-7", "d1"))
    scenes = {"schema_version": "1.0", "drive_id": "car-7/d1",
              "parameters": {"corridor": {"top": 0.55, "bottom": 1.0, "top_left": 0.4, "top_right": 0.6,
                                          "bottom_left": 0.15, "bottom_right": 0.85, "touch_px": 1},
                             "collapse_below": 0.2, "max_gap_frames": 2, "min_duration_s": 0.0, "min_frames": 1},
              "scenes": [_scene("vru_in_drivable_ahead", "front", 0), _scene("drivable_ahead_collapse", "front", 10)]}
    s3.put_object(Bucket=BUCKET, Key=outputs.scenes, Body=json.dumps(scenes).encode())
    s3.put_object(Bucket=BUCKET, Key=outputs.summary, Body=b'{"schema_version": "1.0"}')
    s3.put_object(Bucket=BUCKET, Key=outputs.timeline, Body=b"PAR1 timeline PAR1")
    s3.put_object(Bucket=BUCKET, Key=outputs.video("front"), Body=b"\x00\x00\x00\x18ftypmp42")
    return outputs


def test_scenes_lists_the_windows_and_filters_by_kind(aws, run):
    s3, _ = aws
    _put_outputs(s3)
    rc, out, _ = run("drive", "scenes", "car-7/d1", "--bucket", BUCKET)
    assert rc == 0 and "vru_in_drivable_ahead" in out and "drivable_ahead_collapse" in out and "bicycle" in out
    rc, out, _ = run("drive", "scenes", "car-7/d1", "--bucket", BUCKET, "--kind", "drivable_ahead_collapse", "--json")
    assert [s["kind"] for s in json.loads(out)["scenes"]] == ["drivable_ahead_collapse"]


def test_scenes_before_the_build_and_a_broken_document_are_clear_errors(aws, run):
    s3, _ = aws
    rc, _, err = run("drive", "scenes", "car-7/d1", "--bucket", BUCKET)
    assert rc == 2 and "the scenes of car-7/d1 are not built yet" in err
    s3.put_object(Bucket=BUCKET, Key=DriveOutputs(DriveId("car-7", "d1")).scenes, Body=b'{"schema_version": "1.0"}')
    rc, _, err = run("drive", "scenes", "car-7/d1", "--bucket", BUCKET)
    assert rc == 2 and "drive scenes document" in err


def test_fetch_downloads_summary_scenes_timeline_and_videos(aws, run, tmp_path):
    s3, _ = aws
    _put_outputs(s3)
    rc, out, _ = run("drive", "fetch", "car-7/d1", "--bucket", BUCKET, "--out-dir", tmp_path / "d1")
    assert rc == 0
    assert sorted(p.relative_to(tmp_path / "d1").as_posix() for p in (tmp_path / "d1").rglob("*") if p.is_file()) == [
        "scenes.json", "summary.json", "timeline.parquet", "videos/front.mp4"]
    rc, _, _ = run("drive", "fetch", "car-7/d1", "--bucket", BUCKET, "--out-dir", tmp_path / "nv", "--no-videos")
    assert rc == 0 and not (tmp_path / "nv" / "videos").exists()


def test_fetch_downloads_the_sidecar_mcap_and_names_it_when_the_drive_has_none(aws, run, tmp_path):
    from mcap.reader import make_reader

    s3, _ = aws
    outputs = _put_outputs(s3)
    rc, out, _ = run("drive", "fetch", "car-7/d1", "--bucket", BUCKET, "--out-dir", tmp_path / "old", "--no-videos")
    assert rc == 0 and f"s3://{BUCKET}/{outputs.sidecar} does not exist" in out
    assert not (tmp_path / "old" / "sidecar.mcap").exists()
    sidecar = _mcap(tmp_path / "built-sidecar.mcap")
    s3.put_object(Bucket=BUCKET, Key=outputs.sidecar, Body=sidecar.read_bytes())
    assert outputs.sidecar == "drive-outputs/car-7/d1/sidecar.mcap"
    rc, out, _ = run("drive", "fetch", "car-7/d1", "--bucket", BUCKET, "--out-dir", tmp_path / "d1")
    assert rc == 0 and "fetched 5 file(s)" in out
    fetched = tmp_path / "d1" / "sidecar.mcap"
    assert fetched.read_bytes() == sidecar.read_bytes()
    with fetched.open("rb") as stream:
        messages = list(make_reader(stream).iter_messages())
    assert [json.loads(m.data)["i"] for _, _, m in messages] == list(range(10))


def test_fetch_before_the_build_names_the_missing_object(aws, run, tmp_path):
    rc, _, err = run("drive", "fetch", "car-7/d1", "--bucket", BUCKET, "--out-dir", tmp_path)
    assert rc == 2 and "summary.json does not exist: the drive is not built yet" in err
