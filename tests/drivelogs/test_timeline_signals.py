"""The drive timeline carries the per-frame signals (contracts.signals.FRAME_SIGNALS) as columns: output signals from
the result documents (or their class fractions when a document predates them), input signals carried in the
documents, label flicker from consecutive masks of one camera; quarantined and failed frames have none. Queried with
DuckDB over the table's Hive partitions, as Athena would."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from contracts.drive_timeline import TIMELINE_COLUMNS, TIMELINE_SCHEMA_VERSION, TIMELINE_TABLE_PREFIX
from contracts.drives import DriveId, DriveOutputs
from contracts.layout import INFERENCE
from contracts.signals import FRAME_SIGNALS, INPUT_SIGNALS, MODEL_SIGNALS, OUTPUT_SIGNALS, RESULT_SIGNALS_KEY
from drivelogs.build import main
from segcore.signals import input_signals
from tests.drivelogs.build_fixtures import T0, TICK, Frame, epoch_ns, front_frames, rear_frames, write_drive

DRIVE = DriveId("car-7", "2026-12-03")
# what the postprocess function would add to the result of front slot 2 (input signals carried from ingest)
SLOT2_SIGNALS = {**input_signals(np.full((32, 64, 3), 90, np.uint8)), "frac_road": 0.9,
                 "mean_entropy": 0.25}


def local(output: Path, key: str) -> Path:
    return output / key[len(INFERENCE.drive_outputs):]


def stamp_of(slot: int) -> str:
    """The key stamp of the frame in ``slot`` (build_fixtures.stamp)."""
    moment = T0 + slot * TICK
    return f"{moment.strftime('%Y%m%dT%H%M%S')}.{moment.microsecond * 1000:09d}Z"


def _slot2_document(results: Path) -> Path:
    (path,) = [p for p in results.rglob("*.json") if stamp_of(2) in p.name and "front" in str(p)]
    return path


@pytest.fixture(scope="module")
def drive_rows(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("signals")
    folders = write_drive(root / "in", "car-7", front_frames() + rear_frames())
    slot2 = _slot2_document(folders["results"])
    doc = json.loads(slot2.read_text())
    doc[RESULT_SIGNALS_KEY] = {**SLOT2_SIGNALS, "flicker": None, "mean_margin": None}
    slot2.write_text(json.dumps(doc))
    output = root / "out"
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--failures", str(folders["failures"]),
                 "--quarantine", str(folders["quarantine"]), "--output", str(output), "--no-video",
                 "--no-sidecar"]) == 0
    rows = pq.read_table(local(output, DriveOutputs(DRIVE).timeline)).to_pylist()
    by_slot = {(r["camera"], round((r["frame_time_ns"] - epoch_ns(T0)) / 1e8)): r for r in rows}
    return {"output": output, "rows": by_slot}


def test_every_signal_is_a_timeline_column_with_its_type():
    columns = {c.name: c for c in TIMELINE_COLUMNS}
    for signal in FRAME_SIGNALS:
        assert columns[signal.name].glue_type == signal.glue_type
        # Glue's Column.Comment is at most 255 characters (https://docs.aws.amazon.com/glue/latest/webapi/API_Column.html)
        assert len(columns[signal.name].comment) <= 255
    assert TIMELINE_SCHEMA_VERSION == "1.1"


def test_output_signals_from_the_class_fractions_of_documents_without_signals(drive_rows):
    rows = drive_rows["rows"]
    clear = rows[("front", 15)]  # sky above (1024 px), road 16 x 48 = 768, sidewalks 2 x 16 x 8 = 256; no rider
    assert clear["status"] == "processed"
    assert (clear["frac_sky"], clear["frac_road"], clear["frac_sidewalk"]) == (0.5, 0.375, 0.125)
    assert (clear["frac_vru"], clear["frac_vehicles"], clear["vru_present"]) == (0.0, 0.0, 0)
    assert clear["drivable_fraction"] == 0.375
    rider = rows[("front", 0)]  # a 6 x 4 rider on the left sidewalk
    assert rider["frac_vru"] == pytest.approx(24 / 2048, abs=1e-6) and rider["vru_present"] == 1
    assert rider["frac_sidewalk"] == pytest.approx((256 - 24) / 2048, abs=1e-6)
    blocked = rows[("front", 12)]  # a car over the corridor's road
    assert blocked["frac_vehicles"] > 0.3
    for name in (*INPUT_SIGNALS, *MODEL_SIGNALS):
        assert clear[name] is None  # not in the document: not computed


def test_a_documents_own_signals_win(drive_rows):
    slot2 = drive_rows["rows"][("front", 2)]
    assert slot2["frac_road"] == 0.9  # the document's value, not the one from its class fractions
    assert slot2["brightness"] == pytest.approx(SLOT2_SIGNALS["brightness"])
    assert slot2["dhash"] == SLOT2_SIGNALS["dhash"]
    assert slot2["sharpness"] == 0.0 and slot2["mean_entropy"] == 0.25 and slot2["mean_margin"] is None
    assert slot2["frac_sky"] == 0.5  # the output signals the document lacks come from its fractions


def test_flicker_between_consecutive_frames_of_a_camera(drive_rows):
    rows = drive_rows["rows"]
    assert rows[("front", 0)]["flicker"] is None  # the camera's first frame
    assert rows[("front", 1)]["flicker"] == 0.0  # the same scene
    # slot 3: the rider leaves the sidewalk (24 px) and appears on the road (24 px): 48 of 2048 pixels change
    assert rows[("front", 3)]["flicker"] == pytest.approx(48 / 2048, abs=0.004)
    # slot 12: the car covers 15 x 44 px of the road (the rider of 11 was on the sidewalk: 24 px more)
    assert rows[("front", 12)]["flicker"] == pytest.approx((15 * 44 + 24) / 2048, abs=0.01)
    assert rows[("front", 8)]["flicker"] is None  # after the quarantined slot 7
    assert rows[("front", 15)]["flicker"] is None  # after the failed slot 14
    assert rows[("rear", 0)]["flicker"] is None and rows[("rear", 1)]["flicker"] > 0
    for status_slot in (7, 14):
        row = rows[("front", status_slot)]
        assert row["status"] in ("quarantined", "failed")
        assert all(row[s.name] is None for s in FRAME_SIGNALS)


def test_athena_style_query_over_the_partitions(drive_rows):
    table_root = local(drive_rows["output"], TIMELINE_TABLE_PREFIX)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW drive_timeline AS SELECT * FROM read_parquet('{table_root}/**/*.parquet', "
                "hive_partitioning = true)")
    result = con.execute("""
        SELECT camera, count(*) AS frames, count(flicker) AS with_flicker, round(avg(frac_sky), 3) AS sky,
               sum(vru_present) AS vru_frames
        FROM drive_timeline WHERE status = 'processed' GROUP BY camera ORDER BY camera""").fetchall()
    assert result == [("front", 13, 10, 0.5, 10), ("rear", 2, 1, 0.5, 1)]


def test_a_bad_signals_object_is_bad_input(tmp_path, capsys):
    folders = write_drive(tmp_path / "in", "car-7", [Frame("front", T0)])
    (path,) = list(folders["results"].rglob("*.json"))
    doc = json.loads(path.read_text())
    doc[RESULT_SIGNALS_KEY] = {"brightness": "dark"}
    path.write_text(json.dumps(doc))
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(tmp_path / "o"),
                 "--no-video", "--no-sidecar"]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "signals.brightness: must be a finite number or null" in error
    assert error.count("\n") == 1


def test_output_signal_names_do_not_shadow_older_columns():
    older = {c.name for c in TIMELINE_COLUMNS} - {s.name for s in FRAME_SIGNALS}
    assert not older & set(OUTPUT_SIGNALS)


def test_no_flicker_across_a_frame_whose_mask_is_missing(tmp_path):
    frames = [Frame("front", T0 + i * TICK, rider="ahead" if i == 2 else None) for i in range(4)]
    folders = write_drive(tmp_path / "in", "car-7", frames)
    (lost,) = [p for p in folders["results"].rglob("*.mask.png") if stamp_of(1) in p.name]
    lost.unlink()
    output = tmp_path / "out"
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(output),
                 "--no-video", "--no-sidecar"]) == 0
    rows = pq.read_table(local(output, DriveOutputs(DRIVE).timeline)).to_pylist()
    assert [r["flicker"] for r in rows] == [None, None, None, pytest.approx(48 / 2048 / 2, abs=0.003)]
    assert rows[1]["frac_sky"] == 0.5  # its output signals still come from its result document
