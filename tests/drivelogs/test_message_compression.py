"""A ROS 2 MCAP recorded with ``ros2 bag record --compression-mode message`` read alone, without its metadata.yaml
(as the split-bag job reads each shard): every message's CDR bytes are one zstd frame (zstandard, as rosbag2's
zstd compressor writes them), inside chunks written by the mcap library. The frames come out as the uncompressed
log gives them; a payload that does not decompress is counted lost (an ``undecompressable`` problem per topic) and the
drive is ``partial``, never ``complete``; one that decompresses to CDR bytes that do not decode is ``undecodable``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zstandard

from contracts.drives import validate_drive_manifest
from drivelogs.extract import extract_drive
from drivelogs.msgdefs import MSGDEFS
from drivelogs.sinks import LocalDirectorySink

DRIVE = "car-7/2026-12-03"
FRONT = "/cam/front/image_raw/compressed"
RAW = "/cam/left/image_raw"


def write_message_compressed(path: Path, messages: list, drive_logs, *, chunked: bool = True,
                             damage: set[int] = frozenset(), cut_cdr: set[int] = frozenset()) -> Path:
    """An MCAP (mcap's writer, CDR from mcap-ros2-support) whose payloads are zstd-compressed one by one; the
    messages at the indexes in ``damage`` have their compressed frame cut in half, those in ``cut_cdr`` are a whole
    zstd frame of their CDR bytes cut to 12 (it decompresses, the CDR does not decode)."""
    from mcap.writer import Writer
    from mcap_ros2._dynamic import serialize_dynamic

    compressor = zstandard.ZstdCompressor()  # rosbag2's zstd: one frame per message, content size in its header
    with path.open("wb") as handle:
        writer = Writer(handle, use_chunking=chunked)
        writer.start(profile="ros2", library="rosbag2 (message compression)")
        channels: dict[str, tuple[int, object]] = {}
        for index, msg in enumerate(messages):
            if msg.topic not in channels:
                schema = writer.register_schema(msg.msgtype, "ros2msg", MSGDEFS[msg.msgtype].encode())
                encode = serialize_dynamic(msg.msgtype, MSGDEFS[msg.msgtype])[msg.msgtype]
                channels[msg.topic] = (writer.register_channel(msg.topic, "cdr", schema), encode)
            channel_id, encode = channels[msg.topic]
            sec, nanosec = divmod(msg.stamp, 1_000_000_000)
            cdr = encode({"header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": "camera"}, **msg.fields})
            payload = compressor.compress(cdr[:12] if index in cut_cdr else cdr)
            assert payload[:4] == b"\x28\xb5\x2f\xfd" and cdr[:1] == b"\x00"
            if index in damage:
                payload = payload[: len(payload) // 2]
            writer.add_message(channel_id, log_time=msg.time, data=payload, publish_time=msg.time)
        writer.finish()
    return path


def messages_of(drive_logs) -> list:
    pixels = np.arange(drive_logs.HEIGHT * drive_logs.WIDTH, dtype=np.uint8).reshape(drive_logs.HEIGHT,
                                                                                     drive_logs.WIDTH)
    messages = []
    for index in range(6):
        stamp = drive_logs.T0 + index * 100_000_000
        messages.append(drive_logs.compressed(FRONT, stamp, drive_logs.jpeg_bytes(seed=index)))
        messages.append(drive_logs.image(RAW, stamp + 1, "mono8", drive_logs.WIDTH, drive_logs.HEIGHT,
                                         pixels.tobytes(), drive_logs.WIDTH))
    return messages


def extract(tmp_path: Path, log: Path) -> tuple[dict, dict[str, dict[str, bytes]]]:
    out = tmp_path / "out"
    manifest = validate_drive_manifest(extract_drive(DRIVE, [log], LocalDirectorySink(out)))
    for camera in manifest["cameras"].values():
        assert camera["messages"] == camera["extracted"] + sum(camera["skipped"].values()) + camera["messages_lost"]
    written: dict[str, dict[str, bytes]] = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            written.setdefault(path.parent.name, {})[path.name] = path.read_bytes()
    return manifest, written


@pytest.mark.parametrize("chunked", [True, False], ids=["indexed", "streamed"])
def test_message_compressed_mcap_read_alone_gives_every_frame(tmp_path, drive_logs, chunked):
    messages = messages_of(drive_logs)
    plain_manifest, plain = extract(tmp_path / "plain", drive_logs.write_mcap(tmp_path / "plain.mcap", messages))
    log = write_message_compressed(tmp_path / "bag_0.mcap", messages, drive_logs, chunked=chunked)
    assert not (tmp_path / "metadata.yaml").exists()

    manifest, written = extract(tmp_path / "compressed", log)

    assert manifest["status"] == "complete", manifest["problems"]
    assert manifest["problems"] == []
    assert manifest["totals"]["extracted"] == 12 and manifest["totals"]["skipped"] == {}
    for camera in manifest["cameras"].values():
        assert (camera["messages"], camera["extracted"], camera["messages_lost"]) == (6, 6, 0)
    assert {t["name"]: t["messages"] for t in manifest["topics"]} == {FRONT: 6, RAW: 6}
    assert "zstandard" in manifest["logs"][0]["library"]
    # the same frames, byte for byte, as the log written without message compression
    assert written == plain and len(written) == 2 and all(len(frames) == 6 for frames in written.values())
    assert plain_manifest["totals"]["extracted"] == 12


@pytest.mark.parametrize("chunked", [True, False], ids=["indexed", "streamed"])
def test_payload_that_does_not_decompress_is_lost_and_the_drive_partial(tmp_path, drive_logs, chunked):
    messages = messages_of(drive_logs)
    damaged = {0, 4, 7}  # two front frames, one raw frame
    log = write_message_compressed(tmp_path / "bag_1.mcap", messages, drive_logs, chunked=chunked, damage=damaged)

    manifest, written = extract(tmp_path, log)

    assert manifest["status"] == "partial"
    problems = {p["topic"]: p for p in manifest["problems"]}
    assert set(problems) == {FRONT, RAW}
    assert problems[FRONT]["kind"] == problems[RAW]["kind"] == "undecompressable"
    assert problems[FRONT]["messages_lost"] == 2 and problems[RAW]["messages_lost"] == 1
    assert "2 message-compressed payloads" in problems[FRONT]["detail"] and "zstd" in problems[FRONT]["detail"]
    by_topic = {c["topic"]: c for c in manifest["cameras"].values()}
    assert (by_topic[FRONT]["messages"], by_topic[FRONT]["extracted"], by_topic[FRONT]["messages_lost"]) == (6, 4, 2)
    assert (by_topic[RAW]["messages"], by_topic[RAW]["extracted"], by_topic[RAW]["messages_lost"]) == (6, 5, 1)
    assert manifest["totals"]["skipped"] == {} and manifest["totals"]["messages_lost"] == 3
    assert sorted(len(frames) for frames in written.values()) == [4, 5]


@pytest.mark.parametrize("chunked", [True, False], ids=["indexed", "streamed"])
def test_payload_that_decompresses_but_does_not_decode_is_undecodable_not_lost(tmp_path, drive_logs, chunked):
    messages = messages_of(drive_logs)
    log = write_message_compressed(tmp_path / "bag_2.mcap", messages, drive_logs, chunked=chunked, cut_cdr={2, 5})

    manifest, written = extract(tmp_path, log)

    assert manifest["status"] == "complete", manifest["problems"]  # every message read and accounted for
    assert manifest["problems"] == []
    by_topic = {c["topic"]: c for c in manifest["cameras"].values()}
    assert (by_topic[FRONT]["extracted"], by_topic[FRONT]["skipped"], by_topic[FRONT]["messages_lost"]) == (
        5, {"undecodable": 1}, 0)
    assert (by_topic[RAW]["extracted"], by_topic[RAW]["skipped"], by_topic[RAW]["messages_lost"]) == (
        5, {"undecodable": 1}, 0)
    assert sorted(len(frames) for frames in written.values()) == [5, 5]
