"""labelling.selection over real Parquet timeline files (DuckDB reads them): budget, quotas, near-duplicates,
exclusions, seeded reproducibility, the manifest's accounting, the contact sheet, and bad input."""

from __future__ import annotations

import datetime as dt
import io
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from contracts.documents import DocumentError
from contracts.labelling import validate_selection
from labelling.selection import (
    Budget,
    ClassMix,
    NearDuplicates,
    Quotas,
    SelectionError,
    local_images,
    read_frame_keys,
    select_frames,
    tiebreak,
    version_exclusions,
    write_contact_sheet,
    write_pool,
    write_selection,
)
from segcore.signals import distribution_distance, rarity
from tests.labelling.timeline_fixtures import BASE_NS, frame, write_drive_file, write_table

NO_DUPLICATES = NearDuplicates(min_gap_s=0, max_hamming=None)


def spaced(vehicle="veh-1", drive="d1", camera="front", count=10, step=10.0, **kw):
    """Frames ``step`` seconds apart with distinct dHashes and rising flicker (the later, the higher the score)."""
    return [frame(vehicle, drive, camera, i * step, flicker=(i + 1) / (count + 1),
                  dhash=f"{(0xF0F0F0F0F0F0F0F0 * (i + 1)) & 0xFFFFFFFFFFFFFFFF:016x}", **kw) for i in range(count)]


def reconciles(selection) -> None:
    acc = selection.accounting
    total = acc["picked"] + sum(acc["excluded"].values()) + sum(acc["suppressed"].values()) \
        + sum(acc["not_chosen"].values())
    assert total == acc["candidates"]


def test_the_budget_in_frames_takes_the_highest_scores(tmp_path):
    write_table(tmp_path, spaced(count=10))
    selection = select_frames(tmp_path, budget=Budget(frames=3), seed=1, near_duplicates=NO_DUPLICATES)
    assert [p.frame_time_ns for p in selection.picks] == [BASE_NS + s * 10**9 for s in (90, 80, 70)]
    assert selection.accounting["not_chosen"]["budget"] == 7
    assert selection.picks[0].top_signals[0][0] == "flicker" and selection.picks[0].top_signals[0][1] == 0.909091
    assert [p.rank for p in selection.picks] == [1, 2, 3]
    reconciles(selection)


def test_a_budget_in_hours_is_frames_at_the_minutes_per_frame(tmp_path):
    write_table(tmp_path, spaced(count=10))
    assert Budget(hours=4).frame_count == 2  # 240 min at the default 90 min per frame
    selection = select_frames(tmp_path, budget=Budget(hours=1, minutes_per_frame=12), seed=1,
                              near_duplicates=NO_DUPLICATES)
    assert selection.accounting["picked"] == 5
    assert selection.document["budget"] == {"frames": 5, "hours": 1, "minutes_per_frame": 12, "picked_hours": 1.0}
    with pytest.raises(SelectionError, match="less than one frame"):
        Budget(hours=1).frame_count  # noqa: B018
    with pytest.raises(SelectionError, match="one of the two"):
        Budget(frames=3, hours=2)


def test_quotas_cap_cameras_and_vehicles(tmp_path):
    frames = spaced("veh-1", "d1", "front", 6) + spaced("veh-1", "d1", "rear", 6) + spaced("veh-2", "d2", "front", 6)
    write_table(tmp_path, frames)
    selection = select_frames(tmp_path, budget=Budget(frames=10), seed=3, near_duplicates=NO_DUPLICATES,
                              quotas=Quotas(per_camera=5, vehicles={"veh-2": 1}))
    cameras = [p.camera for p in selection.picks]
    vehicles = [p.vehicle for p in selection.picks]
    assert cameras.count("front") == 5 and cameras.count("rear") == 5 and vehicles.count("veh-2") == 1
    acc = selection.accounting
    assert acc["picked"] == 10 and acc["not_chosen"]["vehicle_quota"] >= 1
    assert acc["not_chosen"]["camera_quota"] + acc["not_chosen"]["vehicle_quota"] + acc["not_chosen"]["budget"] == 8
    reconciles(selection)


def test_near_duplicates_by_time_gap_are_per_camera_and_drive(tmp_path):
    # front: frames 1 s apart; rear: at the same times; another drive at the same times
    frames = (spaced("veh-1", "d1", "front", 6, step=1.0) + spaced("veh-1", "d1", "rear", 6, step=1.0)
              + spaced("veh-1", "d2", "front", 6, step=1.0))
    write_table(tmp_path, frames)
    selection = select_frames(tmp_path, budget=Budget(frames=100), seed=1,
                              near_duplicates=NearDuplicates(min_gap_s=2.5, max_hamming=None))
    for key in {(p.drive_id, p.camera) for p in selection.picks}:
        times = sorted(p.frame_time_ns for p in selection.picks if (p.drive_id, p.camera) == key)
        assert all(b - a >= 2.5e9 for a, b in zip(times, times[1:]))
    assert {(p.drive_id, p.camera) for p in selection.picks} == {("veh-1/d1", "front"), ("veh-1/d1", "rear"),
                                                                   ("veh-1/d2", "front")}
    assert selection.accounting["picked"] == 6  # seconds 5 and 2 of each (ranked by flicker: 5, 4x, 3x, 2, 1x, 0x)
    assert selection.accounting["suppressed"]["time_gap"] == 12
    reconciles(selection)


def test_near_duplicates_by_dhash_within_a_drive(tmp_path):
    same = "00000000000000ff"
    close = "00000000000000fe"  # 1 bit away
    frames = [frame("veh-1", "d1", "front", 0, flicker=0.9, dhash=same),
              frame("veh-1", "d1", "rear", 100, flicker=0.8, dhash=close),  # other camera, same drive: duplicate
              frame("veh-1", "d2", "front", 0, flicker=0.7, dhash=same),  # other drive: not compared
              frame("veh-1", "d1", "front", 200, flicker=0.6, dhash="ffffffffffffff00")]
    write_table(tmp_path, frames)
    selection = select_frames(tmp_path, budget=Budget(frames=10), seed=1,
                              near_duplicates=NearDuplicates(min_gap_s=1, max_hamming=4))
    assert [(p.drive_id, p.camera) for p in selection.picks] == [("veh-1/d1", "front"), ("veh-1/d2", "front"),
                                                                  ("veh-1/d1", "front")]
    assert selection.accounting["suppressed"] == {"time_gap": 0, "dhash": 1}


def test_exclusions_are_counted_with_their_reasons(tmp_path):
    frames = spaced(count=6)
    frames += [frame("veh-1", "d1", "front", 100, status="quarantined", reason_code="too_dark"),
               frame("veh-1", "d1", "front", 101, status="quarantined", reason_code="too_dark"),
               frame("veh-1", "d1", "front", 102, status="failed", reason_code="endpoint_error")]
    no_mask = frame("veh-1", "d1", "front", 103, flicker=1.0)
    no_mask["class_fractions"] = None
    write_table(tmp_path, [*frames, no_mask])
    validation, labelled = frames[5]["frame_key"], frames[4]["frame_key"]
    selection = select_frames(tmp_path, budget=Budget(frames=10), seed=1, near_duplicates=NO_DUPLICATES,
                              validation_keys=[validation], labelled_keys=[labelled, validation])
    acc = selection.accounting
    assert acc["excluded"] == {"quarantined": 2, "failed": 1, "no_class_fractions": 1, "validation": 1,
                               "validation_drive": 0, "labelled": 1}
    assert acc["excluded_reason_codes"] == {"quarantined": {"too_dark": 2}, "failed": {"endpoint_error": 1}}
    picked = {p.frame_key for p in selection.picks}
    assert validation not in picked and labelled not in picked and len(picked) == 4
    assert acc["candidates"] == 10
    reconciles(selection)


def test_seeded_and_independent_of_file_order(tmp_path):
    """All frames score alike: the order is the seeded hash of the frame key, whatever the files' order."""
    frames = [frame(f"veh-{v}", "d1", "front", i * 10) for v in range(3) for i in range(8)]
    files = write_table(tmp_path / "a", frames)
    first = select_frames(files, budget=Budget(frames=5), seed=42, near_duplicates=NO_DUPLICATES)
    again = select_frames(list(reversed(files)), budget=Budget(frames=5), seed=42, near_duplicates=NO_DUPLICATES)
    other = select_frames(files, budget=Budget(frames=5), seed=43, near_duplicates=NO_DUPLICATES)
    keys = [p.frame_key for p in first.picks]
    assert keys == [p.frame_key for p in again.picks]
    assert keys == sorted((f["frame_key"] for f in frames), key=lambda k: tiebreak(k, 42))[:5]
    assert keys != [p.frame_key for p in other.picks]
    write_selection(first, tmp_path / "one.json")
    write_selection(again, tmp_path / "two.json")
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def test_drive_and_time_filters_and_a_frame_in_two_copies(tmp_path):
    frames = spaced("veh-1", "d1", "front", 10) + spaced("veh-2", "d2", "front", 10)
    write_table(tmp_path / "table", frames)
    copy = write_drive_file(tmp_path / "veh-1" / "d1" / "timeline.parquet", frames[:10])  # same frames again
    start = dt.datetime.fromtimestamp(BASE_NS / 1e9 + 20, tz=dt.UTC)
    end = dt.datetime.fromtimestamp(BASE_NS / 1e9 + 60, tz=dt.UTC)
    selection = select_frames([tmp_path / "table", copy], budget=Budget(frames=50), seed=1,
                              near_duplicates=NO_DUPLICATES, drives=["veh-1/d1"], start=start, end=end)
    times = sorted((p.frame_time_ns - BASE_NS) // 10**9 for p in selection.picks)
    assert times == [20, 30, 40, 50] and {p.drive_id for p in selection.picks} == {"veh-1/d1"}
    assert selection.accounting["rows"] == 8 and selection.accounting["candidates"] == 4
    with pytest.raises(SelectionError, match="no time zone"):
        select_frames(tmp_path / "table", budget=Budget(frames=1), seed=1, start=dt.datetime(2025, 1, 1))


def test_model_scores_join_by_frame_key(tmp_path):
    frames = spaced(count=6)
    write_table(tmp_path / "t", frames)
    uncertain = frames[0]["frame_key"]  # the lowest flicker
    scores = pa.table({"frame_key": [f["frame_key"] for f in frames],
                       "mean_entropy": [0.95 if f["frame_key"] == uncertain else 0.05 for f in frames],
                       "mean_margin": [0.05 if f["frame_key"] == uncertain else 0.9 for f in frames],
                       "region_score": [0.9 if f["frame_key"] == uncertain else 0.1 for f in frames]})
    pq.write_table(scores, tmp_path / "scores.parquet")
    selection = select_frames(tmp_path / "t", budget=Budget(frames=1), seed=1, near_duplicates=NO_DUPLICATES,
                              model_scores=[tmp_path / "scores.parquet"])
    assert selection.picks[0].frame_key == uncertain
    assert {s[0] for s in selection.picks[0].top_signals} == {"region_score", "mean_entropy", "mean_margin_inverse"}
    assert selection.document["model_scores"]["frames"] == 6
    pq.write_table(pa.concat_tables([scores, scores]), tmp_path / "twice.parquet")
    with pytest.raises(SelectionError, match="6 frame keys appear more than once"):
        select_frames(tmp_path / "t", budget=Budget(frames=1), seed=1, model_scores=[tmp_path / "twice.parquet"])


def test_rare_classes_weigh_by_the_training_frequency(tmp_path):
    frames = [frame("veh-1", "d1", "front", 0, fractions={"road": 0.7, "sky": 0.3}),
              frame("veh-1", "d1", "front", 10, fractions={"road": 0.6, "rider": 0.4}),
              frame("veh-1", "d1", "front", 20, fractions={"road": 0.8, "sky": 0.2})]
    write_table(tmp_path, frames)
    selection = select_frames(tmp_path, budget=Budget(frames=1), seed=1, near_duplicates=NO_DUPLICATES,
                              weights={"rarity": 1.0}, training_frequency={"road": 0.5, "sky": 0.49, "rider": 0.01})
    assert selection.picks[0].frame_key == frames[1]["frame_key"]
    assert selection.picks[0].top_signals[0][:2] == ("rarity", rarity(frames[1]["class_fractions"],
                                                                      {"road": 0.5, "sky": 0.49, "rider": 0.01}))
    assert selection.document["training_frequency"]["source"] == "given"


def test_vectorised_rarity_and_distance_equal_segcore_signals():
    rng = random.Random(5)
    names = ["road", "sky", "car", "person", "rider", "bicycle", "unseen"]
    mixes = [{n: rng.random() for n in rng.sample(names, rng.randint(1, 6))} for _ in range(300)]
    mixes += [{"road": 0.0}, {"road": 1.0}]
    reference = {"road": 0.4, "sky": 0.3, "car": 0.2, "person": 0.05, "rider": 0.05, "ghost": 0.01}
    column = pa.array([list(m.items()) for m in mixes], type=pa.map_(pa.string(), pa.float64()))
    mix = ClassMix.from_arrow(column)
    assert mix.rarity(reference).tolist() == [rarity(m, reference) for m in mixes]
    assert np.allclose(mix.distance(reference), [distribution_distance(m, reference) for m in mixes], atol=2e-6)


def test_the_manifest_validator_refuses_counts_that_do_not_reconcile(tmp_path):
    write_table(tmp_path, spaced(count=4))
    document = select_frames(tmp_path, budget=Budget(frames=2), seed=1).document
    validate_selection(document)
    broken = json.loads(json.dumps(document))
    broken["accounting"]["not_chosen"]["budget"] -= 1
    with pytest.raises(DocumentError, match="frames unaccounted for"):
        validate_selection(broken)
    broken = json.loads(json.dumps(document))
    broken["picks"] = broken["picks"][:1]
    with pytest.raises(DocumentError, match="picks lists 1"):
        validate_selection(broken)


def test_contact_sheet_shows_overlays_or_class_bars(tmp_path):
    frames = spaced(count=3)
    write_table(tmp_path / "t", frames)
    selection = select_frames(tmp_path / "t", budget=Budget(frames=2), seed=1, near_duplicates=NO_DUPLICATES)
    overlay = selection.picks[0].overlay_uri[len("s3://"):]
    (tmp_path / "bucket" / overlay).parent.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (0, 200, 0)).save(buffer, format="JPEG")
    (tmp_path / "bucket" / overlay).write_bytes(buffer.getvalue())
    images = local_images(selection, tmp_path / "bucket")
    assert list(images) == [selection.picks[0].frame_key]
    sheet = write_contact_sheet(selection, tmp_path / "sheet.png", images, palette={"road": (128, 64, 128)})
    picture = Image.open(sheet).convert("RGB")
    assert picture.size == (640, 204)
    r, g, b = picture.getpixel((160, 80))  # the first cell: the green overlay
    assert g > 150 and r < 60 and b < 60
    assert picture.getpixel((450, 60)) == (128, 64, 128)  # the second cell: the road bar in the scheme's colour
    pool = write_pool(selection, tmp_path / "pool.txt").read_text().split()
    assert pool == [p.frame_key for p in selection.picks]


def test_frame_key_files(tmp_path):
    (tmp_path / "keys.txt").write_text("# labelled\nincoming/a.jpg\n\nincoming/b.jpg\n")
    (tmp_path / "keys.json").write_text(json.dumps({"frames": [{"frame_key": "incoming/c.jpg"}, "incoming/d.jpg"]}))
    (tmp_path / "bad.json").write_text(json.dumps({"frames": [3]}))
    assert read_frame_keys(tmp_path / "keys.txt") == ["incoming/a.jpg", "incoming/b.jpg"]
    assert read_frame_keys(tmp_path / "keys.json") == ["incoming/c.jpg", "incoming/d.jpg"]
    with pytest.raises(SelectionError, match="entry 0 is not a frame key"):
        read_frame_keys(tmp_path / "bad.json")


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: None, "no .parquet files"),
    (lambda root: (root / "x.parquet").write_text("not parquet"), "DuckDB cannot read them as Parquet"),
    (lambda root: pq.write_table(pa.table({"frame_key": ["a"]}), root / "x.parquet"), "no column drive_id"),
    (lambda root: write_table(root, [frame("v", "d", "front", 0, dhash="not-hex")]), "not 16 hex digits"),
])
def test_bad_timelines_fail_with_one_line(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(SelectionError, match=message) as caught:
        select_frames(tmp_path, budget=Budget(frames=1), seed=1)
    assert "\n" not in str(caught.value)


def test_bad_parameters(tmp_path):
    write_table(tmp_path, spaced(count=2))
    with pytest.raises(SelectionError, match="unknown signal"):
        select_frames(tmp_path, budget=Budget(frames=1), seed=1, weights={"vibes": 1})
    with pytest.raises(SelectionError, match="must be a share >= 0"):
        select_frames(tmp_path, budget=Budget(frames=1), seed=1, training_frequency={"road": -1})
    with pytest.raises(SelectionError, match="does not exist"):
        select_frames(tmp_path / "nowhere", budget=Budget(frames=1), seed=1)
    with pytest.raises(SelectionError, match="quota per camera"):
        Quotas(per_camera=-1)


def test_a_timeline_from_before_the_signal_columns(tmp_path):
    """No flicker, dhash or vru_present columns: VRU presence comes from vru_classes, dHash suppression is off."""
    frames = [frame("veh-1", "d1", "front", i * 10, vru=["person"] if i == 2 else ()) for i in range(4)]
    write_table(tmp_path, frames, signals=False)
    selection = select_frames(tmp_path, budget=Budget(frames=1), seed=1, weights={"vru_present": 1.0})
    assert selection.picks[0].frame_key == frames[2]["frame_key"]
    assert selection.picks[0].top_signals == (("vru_present", 1.0, 1.0),)


def test_class_fractions_of_another_type_fail_with_one_line(tmp_path):
    pq.write_table(pa.table({"frame_key": ["k"], "drive_id": ["v/d"], "camera": ["front"], "frame_time_ns": [1],
                             "status": ["processed"], "class_fractions": ["road=1"]}), tmp_path / "x.parquet")
    with pytest.raises(SelectionError, match="DuckDB cannot select from them") as caught:
        select_frames(tmp_path, budget=Budget(frames=1), seed=1)
    assert "\n" not in str(caught.value)


def test_a_dataset_version_excludes_its_frames_and_validation_drives(tmp_path):
    """The manifest labelling.versions writes: its frames are labelled, its validation frames and drives excluded,
    its class frequency weighs rarity."""
    from labelling.versions import FrameProvenance, NewFrame, plan_version
    from segcore.classes import CAMVID

    timeline = spaced("car-0", "d0", "front", 4) + spaced("car-1", "d1", "front", 4)
    mask = np.zeros((8, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8)).save(buffer, format="PNG")
    new = [NewFrame(name=f"f{i}", image=buffer.getvalue(), mask=mask, image_ext=".png",
                    provenance=FrameProvenance(tool="cvat", source_key=row["frame_key"], drive=row["drive_id"]))
           for i, row in enumerate([timeline[0], timeline[4]])]
    manifest = plan_version("v0001", None, new, CAMVID, seed=1, validation_fraction=0.5).manifest
    version = version_exclusions(manifest)
    assert sorted(version.labelled_keys) == sorted([timeline[0]["frame_key"], timeline[4]["frame_key"]])
    assert len(version.validation_drives) == 1 and version.validation_keys
    assert version.class_frequency == manifest["class_frequency"]
    selection = select_frames(tmp_path_table(tmp_path, timeline), budget=Budget(frames=10), seed=1,
                              near_duplicates=NO_DUPLICATES, labelled_keys=version.labelled_keys,
                              validation_keys=version.validation_keys, validation_drives=version.validation_drives,
                              training_frequency=version.class_frequency)
    excluded = selection.accounting["excluded"]
    assert excluded["validation"] == 1 and excluded["validation_drive"] == 3 and excluded["labelled"] == 1
    assert {p.drive_id for p in selection.picks} == {"car-0/d0", "car-1/d1"} - set(version.validation_drives)
    assert selection.accounting["picked"] == 3
    with pytest.raises(SelectionError, match="no frames list"):
        version_exclusions({"version": "v0001"})


def tmp_path_table(tmp_path, frames):
    write_table(tmp_path / "timeline", frames)
    return tmp_path / "timeline"


def test_the_drive_builders_own_files(tmp_path):
    """Timelines written by drivelogs.timeline.write_timeline (the per-drive file and the table's partitions, both
    under one folder): every frame counted once, the builder's flicker and dHash columns used."""
    from contracts.drives import DriveId
    from drivelogs.timeline import FrameRecord, write_timeline

    drive = DriveId("car-7", "morning")
    records = [FrameRecord(drive_id=str(drive), vehicle="car-7", camera="front", time_ns=BASE_NS + i * 10**9,
                           frame_key=f"incoming/car-7/morning/front/{i}.jpg", status="processed",
                           class_fractions={"road": 0.7, "sky": 0.3}, vru_classes=(),
                           overlay_uri=f"s3://inference/results/{i}.overlay.jpg",
                           signals={"flicker": i / 10,
                                    "dhash": "00000000000000ff" if i >= 4 else f"{0x0F0F << (8 * i + 16):016x}"})
               for i in range(6)]
    records.append(FrameRecord(drive_id=str(drive), vehicle="car-7", camera="front", time_ns=BASE_NS + 9 * 10**9,
                               frame_key="incoming/car-7/morning/front/9.jpg", status="failed",
                               reason_code="endpoint_error", reason="500"))
    write_timeline(records, drive, tmp_path / "car-7" / "morning" / "timeline.parquet", tmp_path / "table")
    selection = select_frames(tmp_path, budget=Budget(frames=3), seed=1,
                              near_duplicates=NearDuplicates(min_gap_s=0.5, max_hamming=2))
    acc = selection.accounting
    assert acc["rows"] == 14 and acc["candidates"] == 7
    assert acc["excluded_reason_codes"] == {"failed": {"endpoint_error": 1}}
    # flicker ranks 5, 4, 3, ...: 4 has 5's dHash (suppressed), then 3 and 2
    assert [p.frame_key.rsplit("/", 1)[1] for p in selection.picks] == ["5.jpg", "3.jpg", "2.jpg"]
    assert acc["suppressed"]["dhash"] == 1
    reconciles(selection)
