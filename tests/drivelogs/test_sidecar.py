"""The drive's sidecar MCAP (drivelogs/sidecar.py), built by drivelogs.build over real per-frame outputs
(tests/drivelogs/build_fixtures.py) and read back with the mcap reader and mcap-protobuf-support's decoder:
frames, stamps and boxes against the timeline Parquet file, the class images against the masks, scenes as events."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mcap.decoder import DecoderFactory as McapDecoderFactory
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from contracts.drives import DriveId, DriveOutputs
from contracts.layout import INFERENCE
from drivelogs.build import main
from drivelogs.sidecar import SCENES_TOPIC, sidecar_key
from segcore.masks import decode_mask_png
from tests.drivelogs.build_fixtures import HEIGHT, T0, TICK, WIDTH, front_frames, manifest, rear_frames, write_drive

DRIVE = DriveId("car-7", "2026-12-03")


class JsonDecoderFactory(McapDecoderFactory):
    """The statistics channel: JSON messages (mcap's decoder interface)."""

    def decoder_for(self, message_encoding, schema):  # noqa: ANN001, ANN201
        return json.loads if message_encoding == "json" else None


def local(output: Path, key: str) -> Path:
    return output / key[len(INFERENCE.drive_outputs):]


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sidecar")
    folders = write_drive(root / "in", "car-7", front_frames() + rear_frames())
    manifest_path = root / "manifest.json"
    manifest_path.write_text(json.dumps(manifest(str(DRIVE), {"front": 16, "rear": 2}, T0, T0 + 15 * TICK)))
    output = root / "out"
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--failures", str(folders["failures"]),
                 "--quarantine", str(folders["quarantine"]), "--manifest", str(manifest_path), "--output", str(output),
                 "--no-video"]) == 0
    path = local(output, sidecar_key(DRIVE))
    messages = []
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory(), JsonDecoderFactory()])
        summary = reader.get_summary()
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            messages.append((schema, channel, message, decoded))
    timeline = pq.read_table(local(output, DriveOutputs(DRIVE).timeline)).to_pylist()
    return {"path": path, "messages": messages, "summary": summary, "timeline": timeline, "folders": folders,
            "built": json.loads(local(output, DriveOutputs(DRIVE).summary).read_text()),
            "scenes": json.loads(local(output, DriveOutputs(DRIVE).scenes).read_text())["scenes"]}


def on(sidecar: dict, topic: str) -> list:
    return [m for m in sidecar["messages"] if m[1].topic == topic]


def test_the_sidecar_sits_next_to_the_videos_and_uses_foxglove_schemas(sidecar):
    assert sidecar_key(DRIVE) == DriveOutputs(DRIVE).prefix + "sidecar.mcap"
    assert DriveOutputs(DRIVE).video("front").rsplit("/", 2)[0] == sidecar_key(DRIVE).rsplit("/", 1)[0]
    types = {c.topic: (sidecar["summary"].schemas[c.schema_id].name, c.message_encoding)
             for c in sidecar["summary"].channels.values()}
    for camera in ("front", "rear"):
        assert types[f"/roadseg/{camera}/overlay"] == ("foxglove.CompressedImage", "protobuf")
        assert types[f"/roadseg/{camera}/class_ids"] == ("foxglove.RawImage", "protobuf")
        assert types[f"/roadseg/{camera}/vru"] == ("foxglove.ImageAnnotations", "protobuf")
        assert types[f"/roadseg/{camera}/stats"] == ("roadseg.FrameStatistics", "json")
    assert types[SCENES_TOPIC] == ("foxglove.Event", "protobuf")
    assert sidecar["built"]["sidecar"]["key"] == sidecar_key(DRIVE)
    assert sidecar["built"]["sidecar"]["messages"] == len(sidecar["messages"])


def test_every_timeline_frame_is_in_the_sidecar_on_its_capture_time(sidecar):
    timeline = sidecar["timeline"]
    for camera in ("front", "rear"):
        rows = [r for r in timeline if r["camera"] == camera]
        stats = on(sidecar, f"/roadseg/{camera}/stats")
        assert [(json.loads(m.data)["frame_key"], m.log_time, m.publish_time) for _, _, m, _ in stats] == [
            (r["frame_key"], r["frame_time_ns"], r["frame_time_ns"]) for r in rows]
        assert [json.loads(m.data)["status"] for _, _, m, _ in stats] == [r["status"] for r in rows]
        processed = [r for r in rows if r["status"] == "processed"]
        for kind in ("overlay", "class_ids", "vru"):
            got = on(sidecar, f"/roadseg/{camera}/{kind}")
            assert [(m.log_time, m.publish_time) for _, _, m, _ in got] == [
                (r["frame_time_ns"], r["frame_time_ns"]) for r in processed], kind
            stamps = [d.timestamp.seconds * 1_000_000_000 + d.timestamp.nanos if kind != "vru" else
                      (d.points[0].timestamp.seconds * 1_000_000_000 + d.points[0].timestamp.nanos if d.points
                       else None) for _, _, _, d in got]
            assert [s for s in stamps if s is not None] == [
                r["frame_time_ns"] for r, s in zip(processed, stamps, strict=True) if s is not None]
    front = on(sidecar, "/roadseg/front/stats")
    assert len(front) == 15  # slot 9 has no document; 7 quarantined and 14 failed are there with their status
    assert [json.loads(m.data)["status"] for _, _, m, _ in front].count("processed") == 13
    log_times = [m.log_time for _, _, m, _ in sidecar["messages"]]
    assert log_times == sorted(log_times)  # written in time order


def test_boxes_match_the_timeline(sidecar):
    seen = 0
    for row in (r for r in sidecar["timeline"] if r["status"] == "processed"):
        [(_, _, _, decoded)] = [m for m in on(sidecar, f"/roadseg/{row['camera']}/vru")
                                if m[2].log_time == row["frame_time_ns"]]
        boxes = row["vru_boxes"] or []
        assert len(decoded.points) == len(decoded.texts) == len(boxes)
        for points, text, box in zip(decoded.points, decoded.texts, boxes, strict=True):
            assert [(p.x, p.y) for p in points.points] == [
                (box["x0"], box["y0"]), (box["x1"], box["y0"]), (box["x1"], box["y1"]), (box["x0"], box["y1"])]
            assert points.type == points.Type.LINE_LOOP
            assert text.text == box["class"] == "rider"
        seen += len(boxes)
    assert seen == sum(sidecar["built"]["sidecar"]["boxes"].values()) > 0


def test_images_are_the_overlays_and_the_masks(sidecar):
    results = sidecar["folders"]["results"]
    overlays = sorted(p.read_bytes() for p in results.rglob("*.overlay.jpg"))
    images = sorted(d.data for camera in ("front", "rear") for _, _, _, d in on(sidecar, f"/roadseg/{camera}/overlay"))
    assert images == overlays and all(d.format == "jpeg" for *_, d in on(sidecar, "/roadseg/front/overlay"))
    masks = sorted(decode_mask_png(p.read_bytes()).tobytes() for p in results.rglob("*.mask.png"))
    raws = [d for camera in ("front", "rear") for _, _, _, d in on(sidecar, f"/roadseg/{camera}/class_ids")]
    assert all((d.width, d.height, d.step, d.encoding) == (WIDTH, HEIGHT, WIDTH, "mono8") for d in raws)
    assert sorted(d.data for d in raws) == masks
    assert np.frombuffer(raws[0].data, np.uint8).reshape(HEIGHT, WIDTH).shape == (HEIGHT, WIDTH)


def test_scenes_are_events(sidecar):
    events = on(sidecar, SCENES_TOPIC)
    assert len(events) == len(sidecar["scenes"]) > 0
    got = sorted((d.start_time.ToNanoseconds(), d.end_time.ToNanoseconds(),
                  {kv.key: kv.value for kv in d.metadata}["kind"], m.log_time) for _, _, m, d in events)
    assert got == sorted((s["start_ns"], s["end_ns"], s["kind"], s["start_ns"]) for s in sidecar["scenes"])


def test_no_sidecar_flag(tmp_path):
    folders = write_drive(tmp_path / "in", "car-7", rear_frames())
    output = tmp_path / "out"
    assert main(["--drive-id", str(DRIVE), "--results", str(folders["results"]), "--output", str(output),
                 "--no-video", "--no-sidecar"]) == 0
    assert not local(output, sidecar_key(DRIVE)).exists()
    assert json.loads(local(output, DriveOutputs(DRIVE).summary).read_text())["sidecar"] is None
