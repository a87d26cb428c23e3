"""Issue 21, section 2: nothing lost between drives, every count true. Logs written by mcap / mcap_ros2 and rosbags
(tests/drivelogs/conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contracts.documents import DocumentError
from contracts.drives import validate_drive_manifest
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from contracts.layout import INFERENCE
from drivelogs.extract import extract_drive, main
from drivelogs.job import merge_manifests
from drivelogs.naming import stamp_text
from drivelogs.sinks import LocalDirectorySink
from segcore.keys import parse_frame_key
from tests.drivelogs.log_kinds import over_count_metadata

KEY = re.compile(DEFAULT_KEY_PATTERN)
FRONT = "/cam/front/image_raw/compressed"
RAW = "/cam/front/image_raw"
BOOT = 5_000_000_000  # 5 s after boot: a camera that stamps time since boot


def frames(root: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = path.relative_to(root).as_posix()
            assert KEY.match(key[len(INFERENCE.incoming):]), key
            found[key] = path.read_bytes()
    return found


def boot_messages(drive_logs, count: int = 5) -> list:
    return [drive_logs.compressed(FRONT, BOOT + i * 100_000_000, drive_logs.jpeg_bytes(seed=i)) for i in range(count)]


# ------------------------------------------------------------------------------------------ keys carry the drive


def test_two_drives_with_stamps_since_boot_never_collide(tmp_path, drive_logs):
    first = drive_logs.write_mcap(tmp_path / "a.mcap", boot_messages(drive_logs))
    second = drive_logs.write_ros1_bag(tmp_path / "b.bag", boot_messages(drive_logs))
    sink = LocalDirectorySink(tmp_path / "out")
    one = validate_drive_manifest(extract_drive("car-7/boot-1", [first], sink))
    two = validate_drive_manifest(extract_drive("car-7/boot-2", [second], sink))
    for manifest in (one, two):
        assert manifest["status"] == "complete"
        assert manifest["totals"]["extracted"] == 5 and manifest["totals"]["skipped"] == {}
    written = frames(tmp_path / "out")
    assert len(written) == 10
    key = f"incoming/car-7/boot-2/cam-front/{stamp_text(BOOT)}.jpg"
    assert stamp_text(BOOT).startswith("19700101T000005") and key in written
    # The ingest and the builder still read vehicle, camera and time from the key.
    parsed = parse_frame_key(key, KEY)
    assert (parsed.vehicle, parsed.camera, parsed.timestamp) == ("car-7", "cam-front", stamp_text(BOOT))
    # The same drive again: every key is there, nothing overwritten.
    again = validate_drive_manifest(extract_drive("car-7/boot-2", [second], sink))
    assert again["totals"]["skipped"] == {"key_exists": 5} and again["totals"]["extracted"] == 0


# ----------------------------------------------------------------------------- camera names stable across shards


def test_shards_with_channels_in_another_order_name_cameras_alike(tmp_path, drive_logs):
    t0, w, h = drive_logs.T0, drive_logs.WIDTH, drive_logs.HEIGHT

    def compressed(i):
        return drive_logs.compressed(FRONT, t0 + i * 100_000_000, drive_logs.jpeg_bytes(seed=i))

    def raw(i):
        return drive_logs.image(RAW, t0 + i * 100_000_000 + 1, "mono8", w, h, bytes([i]) * (w * h), w)

    shard_a = drive_logs.write_mcap(tmp_path / "d_0.mcap", [m for i in range(3) for m in (compressed(i), raw(i))])
    shard_b = drive_logs.write_mcap(tmp_path / "d_1.mcap", [m for i in range(3, 6) for m in (raw(i), compressed(i))])
    shares = [validate_drive_manifest(extract_drive("car-7/d", [log], LocalDirectorySink(tmp_path / "out")))
              for log in (shard_a, shard_b)]
    assert [{n: c["topic"] for n, c in s["cameras"].items()} for s in shares] == [
        {"cam-front-image_raw-compressed": FRONT, "cam-front-image_raw": RAW}] * 2
    merged = merge_manifests(shares)
    assert {n: (c["topic"], c["extracted"]) for n, c in merged["cameras"].items()} == {
        "cam-front-image_raw-compressed": (FRONT, 6), "cam-front-image_raw": (RAW, 6)}
    assert {t["name"]: t["camera"] for t in merged["topics"]} == {
        FRONT: "cam-front-image_raw-compressed", RAW: "cam-front-image_raw"}
    # One topic per camera folder: JPEGs from the compressed topic, PNGs from the raw one.
    by_folder: dict[str, set[str]] = {}
    for key in frames(tmp_path / "out"):
        by_folder.setdefault(key.split("/")[3], set()).add(key.rsplit(".", 1)[1])
    assert by_folder == {"cam-front-image_raw-compressed": {"jpg"}, "cam-front-image_raw": {"png"}}


REAR = "/cam/rear/image_raw/compressed"


def _unindexed_mcap(path: Path, drive_logs, order: list[str], chunk_size: int | None, indexed: bool = False) -> Path:
    """An MCAP whose summary lists no channels (mcap's Writer: no repeated channels or schemas, no statistics, no
    summary offsets) and, unless ``indexed``, has no chunk or message indexes either; chunked or not. The topics'
    channels are registered in ``order``, each just before its first message, after the earlier topics' first
    messages: a reader meets them one by one."""
    from mcap.writer import CompressionType, IndexType, Writer
    from mcap_ros2._dynamic import serialize_dynamic

    from drivelogs.msgdefs import MSGDEFS

    t0, w, h = drive_logs.T0, drive_logs.WIDTH, drive_logs.HEIGHT
    made = {FRONT: lambda i: drive_logs.compressed(FRONT, t0 + i * 100_000_000, drive_logs.jpeg_bytes(seed=i)),
            REAR: lambda i: drive_logs.compressed(REAR, t0 + i * 100_000_000 + 2, drive_logs.png_bytes(seed=i),
                                                  fmt="png"),
            RAW: lambda i: drive_logs.image(RAW, t0 + i * 100_000_000 + 1, "mono8", w, h, bytes([i]) * (w * h), w)}
    with path.open("wb") as handle:
        writer = Writer(handle, chunk_size=chunk_size or 1024 * 1024, compression=CompressionType.ZSTD,
                        index_types=IndexType.ALL if indexed else IndexType.NONE, repeat_channels=False,
                        repeat_schemas=False, use_chunking=chunk_size is not None, use_statistics=False,
                        use_summary_offsets=False)
        writer.start(profile="ros2", library="test (unindexed)")
        channels: dict[str, tuple[int, object]] = {}
        for i in range(4):
            for topic in order:
                msg = made[topic](i)
                if topic not in channels:
                    schema = writer.register_schema(msg.msgtype, "ros2msg", MSGDEFS[msg.msgtype].encode())
                    encode = serialize_dynamic(msg.msgtype, MSGDEFS[msg.msgtype])[msg.msgtype]
                    channels[topic] = (writer.register_channel(topic, "cdr", schema), encode)
                channel_id, encode = channels[topic]
                sec, nanosec = divmod(msg.stamp, 1_000_000_000)
                data = encode({"header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": "cam"},
                               **msg.fields})
                writer.add_message(channel_id, log_time=msg.time, data=data, publish_time=msg.time)
        writer.finish()
    return path


@pytest.mark.parametrize(("chunk_size", "indexed"), [(None, False), (4096, False), (1024 * 1024, False), (4096, True)],
                         ids=["unchunked", "small-chunks", "one-chunk", "chunk-index-without-channels"])
def test_unindexed_mcap_names_cameras_by_topic_whatever_the_channel_order(tmp_path, drive_logs, chunk_size, indexed):
    from mcap.reader import make_reader

    orders = ([FRONT, RAW, REAR], [REAR, RAW, FRONT], [RAW, FRONT, REAR])
    results = []
    for index, order in enumerate(orders):
        log = _unindexed_mcap(tmp_path / f"d_{index}.mcap", drive_logs, order, chunk_size, indexed)
        with log.open("rb") as handle:  # no channels up front, and chunk indexes only when asked for
            summary = make_reader(handle).get_summary()
            assert summary is None or (not summary.channels and bool(summary.chunk_indexes) == indexed)
        out = tmp_path / f"out_{index}"
        manifest = validate_drive_manifest(extract_drive("car-7/d", [log], LocalDirectorySink(out)))
        by_folder: dict[str, set[str]] = {}
        for key in frames(out):
            by_folder.setdefault(key.split("/")[3], set()).add(key.rsplit(".", 1)[1])
        collisions = sorted((p["topic"], p["detail"]) for p in manifest["problems"])
        results.append(({n: (c["topic"], c["extracted"]) for n, c in manifest["cameras"].items()}, by_folder,
                         collisions, manifest["status"]))
    expected_cameras = {"cam-front-image_raw-compressed": (FRONT, 4), "cam-front-image_raw": (RAW, 4),
                        "cam-rear": (REAR, 4)}
    assert results[0][0] == expected_cameras
    assert results[0][1] == {"cam-front-image_raw-compressed": {"jpg"}, "cam-front-image_raw": {"png"},
                             "cam-rear": {"png"}}
    # both colliding topics are named after their whole topic, each naming the other (never "an earlier log")
    assert [topic for topic, _ in results[0][2]] == [RAW, FRONT]
    assert all("earlier log" not in detail for _, detail in results[0][2])
    assert results[0][3] == "complete"
    assert all(result == results[0] for result in results[1:]), results


@pytest.mark.parametrize("damage", ["header", "cut-before-index"])
def test_ros1_bag_read_chunk_by_chunk_names_cameras_by_topic_whatever_the_order(tmp_path, drive_logs, damage):
    """A ROS 1 bag whose index is unusable is read chunk by chunk; each topic's connection record sits in the chunk
    of its first message (rosbags' writer), so one topic's connection comes chunks after the other's frames."""
    t0, w, h = drive_logs.T0, drive_logs.WIDTH, drive_logs.HEIGHT
    made = {FRONT: lambda i: drive_logs.compressed(FRONT, t0 + i * 100_000_000, drive_logs.jpeg_bytes(seed=i)),
            RAW: lambda i: drive_logs.image(RAW, t0 + i * 100_000_000 + 1, "mono8", w, h, bytes([i]) * (w * h), w)}
    results = []
    for index, order in enumerate(([FRONT, RAW], [RAW, FRONT])):
        bag = drive_logs.write_ros1_bag(tmp_path / f"d_{index}.bag", [made[topic](i) for topic in order
                                                                       for i in range(4)], chunk_threshold=3000)
        data = bytearray(bag.read_bytes())
        if damage == "header":
            data[20:36] = bytes(b ^ 0xFF for b in data[20:36])
        else:
            from rosbags.rosbag1 import Reader

            with Reader(bag) as reader:
                data = data[: max(c.pos for c in reader.chunk_infos) + 20]
        bag.write_bytes(bytes(data))
        manifest = validate_drive_manifest(extract_drive("car-7/d", [bag], LocalDirectorySink(tmp_path / f"o{index}")))
        results.append({n: c["topic"] for n, c in manifest["cameras"].items()})
    assert results[0] == results[1] == {"cam-front-image_raw-compressed": FRONT, "cam-front-image_raw": RAW}


def test_the_merge_matches_cameras_by_topic_and_reports_names_that_differ(tmp_path, drive_logs):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", boot_messages(drive_logs))
    share = validate_drive_manifest(extract_drive("car-7/d", [log], LocalDirectorySink(tmp_path / "out")))
    renamed = json.loads(json.dumps(share))
    renamed["cameras"] = {"front": renamed["cameras"]["cam-front"]}
    renamed["topics"] = [{**t, "camera": "front"} for t in renamed["topics"]]
    merged = merge_manifests([share, renamed])
    assert list(merged["cameras"]) == ["cam-front"] and merged["cameras"]["cam-front"]["messages"] == 10
    assert [p["kind"] for p in merged["problems"]] == ["camera_name_collision"]
    assert "cam-front, front" in merged["problems"][0]["detail"]


# ----------------------------------------------------------------------------------- counts reconcile with the log


def _mcap_with_messages_outside_chunks(path: Path, drive_logs, chunked: int, loose: int) -> Path:
    """Chunked messages, then ``loose`` messages written outside any chunk (the writer's chunking switched off for
    the tail, as some recorders write their last messages); the summary's statistics count them all."""
    from mcap_ros2.writer import Writer

    from drivelogs.msgdefs import MSGDEFS

    with path.open("wb") as handle:
        writer = Writer(handle)
        schema = writer.register_msgdef("sensor_msgs/msg/CompressedImage", MSGDEFS["sensor_msgs/msg/CompressedImage"])
        for index in range(chunked + loose):
            if index == chunked:
                inner = writer._writer  # mcap.writer.Writer: end the open chunk, then write without chunks
                inner._Writer__finalize_chunk()
                inner._Writer__chunk_builder = None
            stamp = drive_logs.T0 + index * 100_000_000
            sec, nanosec = divmod(stamp, 1_000_000_000)
            writer.write_message(FRONT, schema, {"header": {"stamp": {"sec": sec, "nanosec": nanosec},
                                                            "frame_id": "cam"}, "format": "jpeg",
                                                 "data": drive_logs.jpeg_bytes(seed=index)}, log_time=stamp)
        writer.finish()
    return path


def test_messages_outside_chunks_are_counted_lost_not_complete(tmp_path, drive_logs):
    from mcap.reader import make_reader
    from mcap.stream_reader import StreamReader

    log = _mcap_with_messages_outside_chunks(tmp_path / "d.mcap", drive_logs, chunked=4, loose=3)
    with log.open("rb") as handle:  # the file as the library sees it: 7 messages, 4 of them in chunks
        summary = make_reader(handle).get_summary()
        assert summary.statistics.message_count == 7 and summary.chunk_indexes
    with log.open("rb") as handle:
        assert sum(type(r).__name__ == "Message" for r in StreamReader(handle).records) == 7
    manifest = validate_drive_manifest(extract_drive("car-7/d", [log], LocalDirectorySink(tmp_path / "out")))
    camera = manifest["cameras"]["cam-front"]
    assert manifest["status"] == "partial"
    assert camera["extracted"] + sum(camera["skipped"].values()) + camera["messages_lost"] == 7
    assert camera["messages"] == 7 == {t["name"]: t["messages"] for t in manifest["topics"]}[FRONT]
    problems = [p for p in manifest["problems"] if p["kind"] == "unaccounted_messages"]
    assert len(problems) == 1 and problems[0]["messages_lost"] == 7 - camera["messages_read"] > 0


def test_a_metadata_yaml_that_over_counts_makes_the_drive_partial(tmp_path, drive_logs):
    bag = drive_logs.write_ros2_bag(tmp_path / "bag", boot_messages(drive_logs))
    over_count_metadata(bag, extra=2)
    manifest = validate_drive_manifest(extract_drive("car-7/d", [bag], LocalDirectorySink(tmp_path / "out")))
    camera = manifest["cameras"]["cam-front"]
    assert manifest["status"] == "partial" and camera["extracted"] == 5
    assert camera["messages"] == 7 and camera["messages_lost"] == 2
    assert [p["kind"] for p in manifest["problems"]] == ["unaccounted_messages"]


def test_the_contract_refuses_complete_when_counts_disagree(tmp_path, drive_logs):
    log = drive_logs.write_mcap(tmp_path / "d.mcap", boot_messages(drive_logs))
    manifest = validate_drive_manifest(extract_drive("car-7/d", [log], LocalDirectorySink(tmp_path / "out")))
    assert manifest["status"] == "complete"
    over = json.loads(json.dumps(manifest))
    next(t for t in over["topics"] if t["name"] == FRONT)["messages"] += 1
    with pytest.raises(DocumentError, match="status"):
        validate_drive_manifest(over)
    lossy = json.loads(json.dumps(manifest))
    lossy["problems"].append({"kind": "lost_chunk", "log": "d.mcap", "topic": None, "offset": 0,
                              "messages_lost": None, "detail": "x"})
    with pytest.raises(DocumentError, match="status"):
        validate_drive_manifest(lossy)
    lossy["status"] = "partial"
    validate_drive_manifest(lossy)


# ----------------------------------------------------------------------- a bad log among several: the manifest says


def test_a_log_found_unreadable_while_reading_is_in_the_manifest(tmp_path, drive_logs, camera_messages):
    good = drive_logs.write_mcap(tmp_path / "d_0.mcap", camera_messages)
    bad = tmp_path / "d_1"
    bad.mkdir()
    (bad / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping\n")
    manifest_path = tmp_path / "m" / "manifest.json"
    code = main(["--drive-id", "car-7/d", "--log", str(good), "--log", str(bad), "--output-dir",
                 str(tmp_path / "out"), "--manifest", str(manifest_path)])
    assert code == 0
    manifest = validate_drive_manifest(json.loads(manifest_path.read_text()))
    assert manifest["status"] == "partial"
    assert manifest["totals"]["extracted"] == 20 == len(frames(tmp_path / "out"))
    assert [log["name"] for log in manifest["logs"]] == ["d_0.mcap", "d_1"]
    assert [log["complete"] for log in manifest["logs"]] == [True, False]
    problem = next(p for p in manifest["problems"] if p["log"] == "d_1")
    assert problem["kind"] == "read_error" and problem["messages_lost"] is None
