"""The drive builder over real per-frame outputs (tests/drivelogs/build_fixtures.py): timeline Parquet files and
their Hive partitions, scene windows, review videos decoded with PyAV, the summary, and the example Athena query run
with DuckDB over the same files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.documents import DocumentError
from contracts.drive_timeline import (
    CYCLIST_AHEAD_QUERY,
    TIMELINE_COLUMNS,
    TIMELINE_PARTITION_KEYS,
    TIMELINE_TABLE_NAME,
    TIMELINE_TABLE_PREFIX,
    validate_drive_scenes,
    validate_drive_summary,
)
from contracts.drives import DriveId, DriveOutputs
from contracts.layout import INFERENCE
from drivelogs.build import main
from drivelogs.scenes import (
    COLLAPSE,
    VRU_AHEAD,
    EgoCorridor,
    FrameState,
    SceneParameters,
    ahead_of_vehicle,
    find_scenes,
)
from drivelogs.timeline import arrow_schema, arrow_type, glue_type, parse_frame_time
from tests.drivelogs.build_fixtures import (
    CAR,
    HEIGHT,
    RIDER,
    ROAD,
    T0,
    TICK,
    WIDTH,
    Frame,
    epoch_ns,
    front_frames,
    manifest,
    rear_frames,
    scene_mask,
    stamp,
    write_drive,
)

DRIVE = DriveId("car-7", "2026-12-03")
OLD_DRIVE = DriveId("car-7", "2026-11-20")


def local(output: Path, key: str) -> Path:
    return output / key[len(INFERENCE.drive_outputs):]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The main drive built with a manifest, and an older drive of the same vehicle into the same output."""
    root = tmp_path_factory.mktemp("drive")
    folders = write_drive(root / "in", "car-7", front_frames() + rear_frames())
    manifest_path = root / "manifest.json"
    manifest_path.write_text(json.dumps(manifest(str(DRIVE), {"front": 16, "rear": 2}, T0, T0 + 15 * TICK)))
    output = root / "out"
    args = ["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--failures", str(folders["failures"]),
            "--quarantine", str(folders["quarantine"]), "--masks", str(folders["results"]),
            "--overlays", str(folders["results"]), "--manifest", str(manifest_path), "--output", str(output)]
    assert main(args) == 0
    old = root / "old"
    old_start = datetime(2026, 11, 20, 8, tzinfo=UTC)
    old_folders = write_drive(old, "car-7", [Frame("front", old_start + i * TICK, rider="ahead") for i in range(2)])
    assert main(["--drive-id", str(OLD_DRIVE), "--results", str(old_folders["results"]), "--output", str(output),
                 "--no-video"]) == 0
    summary = json.loads(local(output, DriveOutputs(DRIVE).summary).read_text())
    scenes = json.loads(local(output, DriveOutputs(DRIVE).scenes).read_text())
    return {"output": output, "summary": summary, "scenes": scenes}


# ------------------------------------------------------------------------------------------------ timeline


def test_the_arrow_schema_is_derived_from_the_contract_columns():
    schema = arrow_schema(TIMELINE_COLUMNS)
    assert schema.names == [c.name for c in TIMELINE_COLUMNS]
    for column in (*TIMELINE_COLUMNS, *TIMELINE_PARTITION_KEYS):
        assert glue_type(arrow_type(column.glue_type)) == column.glue_type
    assert schema.field("class_fractions").type == pa.map_(pa.string(), pa.float64())
    assert schema.field("vru_boxes").type.value_type.names == ["class", "x0", "y0", "x1", "y1"]


def test_frame_times_come_from_extractor_stamps_and_iso_8601():
    assert parse_frame_time("20261203T235959.123456789Z") == epoch_ns(T0) + 123_456_789
    assert parse_frame_time("2026-12-03T23:59:59.5Z") == epoch_ns(T0) + 500_000_000
    assert parse_frame_time("2026-12-04T00:59:59+01:00") == epoch_ns(T0)
    assert parse_frame_time("not a time") is None


def test_timeline_partitions_rows_and_types(built):
    output = built["output"]
    table_root = local(output, TIMELINE_TABLE_PREFIX)
    parts = sorted(str(p.relative_to(table_root)) for p in table_root.rglob("*.parquet"))
    assert parts == [
        "vehicle=car-7/camera=front/date=2026-11-20/part-2026-11-20.parquet",
        "vehicle=car-7/camera=front/date=2026-12-03/part-2026-12-03.parquet",
        "vehicle=car-7/camera=front/date=2026-12-04/part-2026-12-03.parquet",
        "vehicle=car-7/camera=rear/date=2026-12-03/part-2026-12-03.parquet",
    ]
    assert built["summary"]["outputs"]["timeline_table"] == [
        f"{TIMELINE_TABLE_PREFIX}{p}" for p in parts if "2026-11-20" not in p]
    # the table's files hold no partition columns; their schema is the contract's
    part = pq.read_table(table_root / parts[1])
    assert part.schema.remove_metadata() == arrow_schema(TIMELINE_COLUMNS).remove_metadata()
    assert part.num_rows == 9  # slots 0-8 on 2026-12-03 (slot 9 missing, 10-15 after midnight)
    # the per-drive file: every frame with every column
    drive = pq.read_table(local(output, DriveOutputs(DRIVE).timeline)).to_pylist()
    assert [c for c in pq.read_schema(local(output, DriveOutputs(DRIVE).timeline)).names] == [
        c.name for c in (*TIMELINE_PARTITION_KEYS, *TIMELINE_COLUMNS)]
    front = [r for r in drive if r["camera"] == "front"]
    assert len(front) == 15 and len(drive) == 17
    assert [r["frame_time_ns"] for r in front] == sorted(r["frame_time_ns"] for r in front)
    by_slot = {round((r["frame_time_ns"] - epoch_ns(T0)) / 1e8): r for r in front}
    assert {r["status"] for r in front} == {"processed", "quarantined", "failed"}
    assert (by_slot[7]["status"], by_slot[7]["reason_code"]) == ("quarantined", "truncated")
    assert (by_slot[14]["status"], by_slot[14]["reason_code"]) == ("failed", "inference_failed")
    assert by_slot[7]["vru_classes_ahead"] is None and by_slot[7]["class_fractions"] is None
    assert by_slot[10]["date"].isoformat() == "2026-12-04" and by_slot[0]["date"].isoformat() == "2026-12-03"
    assert by_slot[0]["frame_time"] == T0.replace(tzinfo=None)
    assert by_slot[0]["frame_key"] == f"incoming/car-7/front/{stamp(T0)}.jpg"
    assert by_slot[0]["drive_id"] == "car-7/2026-12-03" and by_slot[0]["vehicle"] == "car-7"
    # the rider: present everywhere it is drawn, ahead only on the corridor's road
    assert by_slot[0]["vru_classes"] == ["rider"] and by_slot[0]["vru_classes_ahead"] == []
    assert by_slot[3]["vru_classes_ahead"] == ["rider"] and by_slot[3]["vru_ahead_pixels"] == 24
    assert by_slot[3]["vru_boxes"] == [{"class": "rider", "x0": 30, "y0": 20, "x1": 34, "y1": 26}]
    assert by_slot[15]["vru_classes"] == [] and by_slot[15]["drivable_ahead_fraction"] == 1.0
    assert by_slot[12]["drivable_ahead_fraction"] == 0.0
    assert dict(by_slot[15]["class_fractions"]) == {"road": 0.375, "sidewalk": 0.125, "sky": 0.5}
    assert by_slot[15]["drivable_area_fraction"] == 0.375
    assert by_slot[0]["mask_uri"] == f"s3://roadseg-dev-inference/results/car-7/front/{stamp(T0)}.mask.png"
    assert by_slot[0]["result_uri"] == f"s3://roadseg-dev-inference/results/car-7/front/{stamp(T0)}.json"
    assert by_slot[7]["result_uri"].endswith(f"quarantine/incoming/car-7/front/{stamp(T0 + 7 * TICK)}.jpg.reason.json")
    assert by_slot[0]["latency_ms"] == 400 and by_slot[0]["frame_width"] == WIDTH


def test_the_example_athena_query_runs_on_duckdb_over_the_partitions(built):
    table_root = local(built["output"], TIMELINE_TABLE_PREFIX)
    db = duckdb.connect()
    db.execute(f"CREATE VIEW {TIMELINE_TABLE_NAME} AS SELECT * FROM "
               f"read_parquet('{table_root}/**/*.parquet', hive_partitioning = true)")
    rows = db.execute(CYCLIST_AHEAD_QUERY, ["2026-11-30", "2026-12-06"]).fetchall()
    slots = [round((epoch_ns(r[2].replace(tzinfo=UTC)) - epoch_ns(T0)) / 1e8) for r in rows]
    assert slots == [3, 4, 5, 6, 8, 10]  # front only (the rear camera's rider is left out), last week only
    assert {r[0] for r in rows} == {"car-7/2026-12-03"} and all(r[4] == ["rider"] for r in rows)
    older = db.execute(CYCLIST_AHEAD_QUERY, ["2026-11-16", "2026-11-22"]).fetchall()
    assert [r[0] for r in older] == ["car-7/2026-11-20"] * 2


# -------------------------------------------------------------------------------------------------- scenes


def test_scenes_of_the_drive(built):
    scenes = validate_drive_scenes(built["scenes"])["scenes"]
    front_vru = [s for s in scenes if s["camera"] == "front" and s["kind"] == VRU_AHEAD]
    assert len(front_vru) == 1
    window = front_vru[0]
    assert (window["start"], window["end"]) == (
        "2026-12-03T23:59:59.300000000Z", "2026-12-04T00:00:00.000000000Z")
    assert window["duration_s"] == 0.7 and window["frames"] == 6
    assert window["gap_frames"] == 2  # slot 7 quarantined, slot 9 missing
    assert window["classes"] == ["rider"] and window["peak_vru_ahead_pixels"] == 24
    collapse = [s for s in scenes if s["kind"] == COLLAPSE]
    assert [(s["camera"], s["frames"], s["duration_s"], s["min_drivable_ahead_fraction"]) for s in collapse] == [
        ("front", 2, 0.1, 0.0)]
    assert collapse[0]["start_ns"] == epoch_ns(T0 + 12 * TICK)
    rear = [s for s in scenes if s["camera"] == "rear"]
    assert [(s["kind"], s["frames"], s["duration_s"]) for s in rear] == [(VRU_AHEAD, 1, 0.0)]


def _state(slot: int, ahead: bool | None, fraction: float | None = 0.9, camera: str = "front") -> FrameState:
    classes = None if ahead is None else (("person",) if ahead else ())
    return FrameState(camera, slot * 100_000_000, f"k{slot}", "processed" if ahead is not None else "failed",
                      classes, None if ahead is None else 30 * bool(ahead), fraction)


def test_scene_windows_bridge_at_most_max_gap_unknown_frames():
    states = [_state(0, True), _state(1, None), _state(2, None), _state(3, True),  # gap 2: bridged
              _state(4, None), _state(5, None), _state(6, None), _state(7, True),  # gap 3: split
              _state(8, False), _state(9, True)]  # an inactive frame ends a window
    found = find_scenes(states, SceneParameters(max_gap_frames=2))
    windows = [(s["start_ns"] // 100_000_000, s["end_ns"] // 100_000_000, s["frames"], s["gap_frames"])
               for s in found if s["kind"] == VRU_AHEAD]
    assert windows == [(0, 3, 2, 2), (7, 7, 1, 0), (9, 9, 1, 0)]
    longer = find_scenes(states, SceneParameters(max_gap_frames=3, min_duration_s=0.5))
    assert [(s["start_ns"] // 100_000_000, s["end_ns"] // 100_000_000) for s in longer if s["kind"] == VRU_AHEAD] \
        == [(0, 7)]


def test_missing_frames_count_as_gaps_from_the_frame_times():
    # slots 2-4 have no frame at all: 3 missing > max_gap_frames 2
    states = [_state(0, True), _state(1, True), _state(5, True), _state(6, True)]
    found = find_scenes(states, SceneParameters(max_gap_frames=2), {"front": 100_000_000})
    assert [(s["frames"], s["start_ns"] // 100_000_000) for s in found] == [(2, 0), (2, 5)]
    bridged = find_scenes(states, SceneParameters(max_gap_frames=3), {"front": 100_000_000})
    assert [(s["frames"], s["gap_frames"]) for s in bridged] == [(4, 3)]


def test_drivable_area_collapse_below_the_threshold():
    fractions = [0.9, 0.15, 0.05, None, 0.1, 0.5]
    states = [_state(i, False, fraction=f) for i, f in enumerate(fractions)]
    found = find_scenes(states, SceneParameters(collapse_below=0.2))
    assert [(s["kind"], s["frames"], s["gap_frames"], s["min_drivable_ahead_fraction"], s["peak_frame_key"])
            for s in found] == [(COLLAPSE, 3, 1, 0.05, "k2")]


def test_ahead_of_vehicle_is_measured_inside_the_corridor():
    vru = {RIDER: "rider"}
    corridor = EgoCorridor()
    ahead = ahead_of_vehicle(scene_mask("ahead", False), drivable=[ROAD], vru=vru, corridor=corridor)
    assert ahead.vru_classes == ("rider",) and ahead.vru_pixels == 24
    beside = ahead_of_vehicle(scene_mask("sidewalk", False), drivable=[ROAD], vru=vru, corridor=corridor)
    assert beside.vru_classes == () and beside.drivable_fraction == 1.0
    # a rider right next to the corridor's road: touches with touch_px 1, not with touch_px 0
    mask = scene_mask(None, False)
    mask[28:32, 8:10] = RIDER  # on the road just left of the corridor, whose bottom row starts at column 10
    near = ahead_of_vehicle(mask, drivable=[ROAD], vru=vru, corridor=corridor)
    far = ahead_of_vehicle(mask, drivable=[ROAD], vru=vru, corridor=EgoCorridor(touch_px=0))
    assert near.vru_classes == ("rider",) and near.vru_pixels == 0 and far.vru_classes == ()
    # ignored pixels are not part of the corridor's share
    blocked = scene_mask(None, True)
    blocked[16:, :] = np.where(blocked[16:, :] == CAR, 255, blocked[16:, :])
    assert ahead_of_vehicle(blocked, drivable=[ROAD], vru=vru, corridor=corridor).drivable_fraction is None
    assert ahead_of_vehicle(scene_mask("ahead", False), drivable=[ROAD], vru=vru, corridor=corridor,
                            allowed_vru=[]).vru_classes == ()


def test_corridor_shape():
    inside = EgoCorridor().pixels(HEIGHT, WIDTH)
    assert not inside[:17].any() and inside[31, 10:54].all() and not inside[31, :10].any()
    assert inside[18, 25:39].all() and not inside[18, 24] and not inside[18, 39]
    with pytest.raises(ValueError, match="six fractions"):
        EgoCorridor.parse("0.5,1")
    with pytest.raises(ValueError, match="top < bottom"):
        EgoCorridor(top=0.9, bottom=0.5)


# --------------------------------------------------------------------------------------------------- video


def test_review_videos_decode_with_every_slot_at_the_camera_rate(built):
    videos = built["summary"]["videos"]
    assert set(videos) == {"front", "rear"}
    for camera, expected in (("front", 16), ("rear", 2)):  # front: 15 documents + the missing slot 9
        info = videos[camera]
        assert info["key"] == DriveOutputs(DRIVE).video(camera)
        assert info["codec"] in ("libx264", "mpeg4") and info["frames"] == expected and info["fps"] == 10.0
        with av.open(str(local(built["output"], info["key"]))) as container:
            stream = container.streams.video[0]
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            assert stream.average_rate == 10
            assert stream.codec_context.name == ("h264" if info["codec"] == "libx264" else "mpeg4")
        assert len(decoded) == expected
        assert all(frame.shape == (HEIGHT, WIDTH, 3) for frame in decoded)  # the 128x64 overlay was scaled
    with av.open(str(local(built["output"], videos["front"]["key"]))) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    region = [frame[29:, :].astype(float) for frame in frames]  # below the burnt-in text
    grey = [i for i, r in enumerate(region) if r.std() < 12 and abs(r.mean() - 96) < 12]
    assert grey == [7, 9, 14]  # quarantined, missing, failed: grey, in place


# ------------------------------------------------------------------------------------------------- summary


def test_summary(built):
    summary = validate_drive_summary(built["summary"])
    assert summary["drive_id"] == "car-7/2026-12-03" and summary["cameras"] == ["front", "rear"]
    assert summary["frames"]["front"] == {"processed": 13, "quarantined": 1, "failed": 1, "total": 15}
    assert summary["totals"] == {"processed": 15, "quarantined": 1, "failed": 1, "total": 17}
    assert summary["reasons"]["front"] == {"truncated": 1, "inference_failed": 1}
    assert summary["missing_frames"] == {"front": 1, "rear": 0}
    assert summary["frame_rate_hz"] == {"front": 10.0, "rear": 10.0}
    assert summary["time_range"]["start_ns"] == epoch_ns(T0)
    assert summary["time_range"]["duration_s"] == 1.5
    assert summary["latency_ms"]["count"] == 15 and summary["latency_ms"]["p50"] >= 400
    assert summary["vru_frames"]["front"] == {"present": 10, "ahead": 6, "by_class": {"rider": 10},
                                              "ahead_by_class": {"rider": 6}}
    assert summary["scenes"]["counts"] == {VRU_AHEAD: 2, COLLAPSE: 1}
    assert summary["scenes"]["top"][0]["kind"] == VRU_AHEAD and summary["scenes"]["top"][0]["frames"] == 6
    assert summary["manifest"] == {"status": "complete", "extracted": {"front": 16, "rear": 2}}
    assert summary["warnings"] == ["camera front: 16 frames extracted, 15 have a document"]
    assert set(summary["class_fraction_means"]) >= {"road", "sky", "rider", "car"}
    broken = dict(summary, frames={"front": {"processed": "13"}})
    with pytest.raises(DocumentError, match=r"frames\.front\.processed"):
        validate_drive_summary(broken)


# -------------------------------------------------------------------------------------------------- errors


def test_without_a_manifest_the_summary_says_so(tmp_path):
    folders = write_drive(tmp_path / "in", "car-7", rear_frames())
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(tmp_path / "o"),
                 "--no-video"]) == 0
    summary = json.loads(local(tmp_path / "o", DriveOutputs(DRIVE).summary).read_text())
    assert summary["manifest"] is None and summary["videos"] == {}
    assert summary["warnings"][0].startswith("no manifest given")


def test_a_result_that_fails_validation_is_named_with_its_key(tmp_path, capsys):
    folders = write_drive(tmp_path / "in", "car-7", rear_frames())
    bad = next(folders["results"].rglob("*.json"))
    doc = json.loads(bad.read_text())
    del doc["class_fractions"]["road"], doc["original_size"]
    bad.write_text(json.dumps(doc))
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "original_size: required key is missing" in err


def test_no_documents_at_all_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--drive-id", str(DRIVE), "--results", str(tmp_path / "empty"), "--output", str(tmp_path)]) == 2
    assert "no result, failure or quarantine documents" in capsys.readouterr().err


def test_documents_of_other_drives_only(tmp_path, capsys):
    folders = write_drive(tmp_path / "in", "car-9", [Frame("front", T0 + timedelta(seconds=1))])
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(tmp_path)]) == 2
    assert "another vehicle (car-9)" in capsys.readouterr().err


def test_frames_of_another_drive_of_the_same_vehicle_and_time_are_left_out(tmp_path):
    # Cameras stamping time since boot give two drives of one vehicle the same stamps: the key's drive decides.
    folders = write_drive(tmp_path / "in", "car-7", [Frame("front", T0), Frame("front", T0 + TICK)],
                          drive=DRIVE.drive)
    write_drive(tmp_path / "in", "car-7", [Frame("front", T0), Frame("rear", T0 + TICK)], drive="2026-12-04")
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(tmp_path / "o"),
                 "--no-video"]) == 0
    summary = json.loads(local(tmp_path / "o", DriveOutputs(DRIVE).summary).read_text())
    assert summary["frames"] == {"front": {"processed": 2, "quarantined": 0, "failed": 0, "total": 2}}
    assert any("belongs to drive 2026-12-04" in warning for warning in summary["warnings"])


def test_a_frame_with_several_documents_keeps_the_processed_one(tmp_path):
    moment = T0 + TICK
    folders = write_drive(tmp_path / "in", "car-7", [Frame("rear", T0), Frame("rear", moment, kind="failure")])
    write_drive(tmp_path / "in", "car-7", [Frame("rear", moment, rider="ahead")])  # the retry succeeded
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--failures",
                 str(folders["failures"]), "--output", str(tmp_path / "o"), "--no-video"]) == 0
    summary = json.loads(local(tmp_path / "o", DriveOutputs(DRIVE).summary).read_text())
    assert summary["frames"]["rear"] == {"processed": 2, "quarantined": 0, "failed": 0, "total": 2}
    assert "1 frames had more than one document" in summary["warnings"][1]


def test_a_mask_at_the_inference_size_is_mapped_back_through_the_crop_box(tmp_path):
    from drivelogs.timeline import FrameRecord, load_mask
    from segcore.masks import encode_mask_png

    crop = scene_mask("ahead", False)[16:]  # the model saw the lower half only (ROI), at 64x16
    path = tmp_path / "mask.png"
    path.write_bytes(encode_mask_png(crop))
    record = FrameRecord("car-7/d", "car-7", "front", 0, "incoming/car-7/front/x.jpg", "processed",
                         document={"original_size": {"width": WIDTH, "height": HEIGHT},
                                   "inference_size": {"width": WIDTH, "height": 16}, "crop_box": [0, 16, 64, 32]})
    restored = load_mask(path, record)
    assert restored.shape == (HEIGHT, WIDTH) and (restored[:16] == 255).all()
    assert (restored[16:] == crop).all()
