"""The extractor: which topics are cameras, which of their frames are kept, under which key, and the drive manifest.

Every image topic is a camera unless a topic -> camera mapping is given; names come from drivelogs/naming.py and depend
on the topics alone, never on the order the log lists its channels (the shards of a split drive name their cameras
alike): derived names are given when the first camera message arrives, to every camera topic the log has announced by
then (the readers announce all of a log's channels first: from the index, or for an MCAP file without a usable
summary from a first pass over its records), in topic order. When two topics
derive the same name neither keeps it: each is named after its whole topic (``cam-front-image_raw``,
``cam-front-image_raw-compressed``) and a problem says so; a name taken in an earlier log stays with its topic. The
key's stamp is header.stamp (the log time when the stamp is zero); the drive id goes in the object's
metadata (contracts.drives.DRIVE_ID_METADATA).

Per camera: a frame is kept when its stamp is at least 1/rate_hz after the last kept one (``rate_limited``
otherwise; an out-of-order stamp is behind it, so it is rate limited too); a stamp equal to one of the last
``RECENT_STAMPS`` kept ones is ``duplicate_stamp``; a key the destination already holds is never overwritten
(``key_exists``: an earlier run, or a duplicate further back); stamps earlier than one already seen are extracted
and counted as ``out_of_order``.

The logs' problems (drivelogs/readers/) go into the manifest. For every camera, messages = extracted + skipped +
lost (contracts.drives.validate_drive_manifest).

Counts reconcile with the log: a camera topic whose log counts (index, statistics, metadata.yaml) more messages than
were read or counted lost (messages outside chunks, an over-counting metadata.yaml) has the difference counted lost
with an ``unaccounted_messages`` problem; one that counts fewer than were read gets a ``count_mismatch`` problem.
Either makes the drive ``partial``: ``complete`` means every image message of the logs was extracted or skipped with a
reason. A log that turns out unreadable only once reading starts (UnreadableLog) is a ``read_error`` problem of
unknown loss; the drive is ``partial`` and the manifest records what the other logs gave. ``no_image_topics`` is the
status of logs read whole without an image topic; logs that lost messages before any camera was seen (a ROS 1 bag
cut in its first kilobytes) are ``partial``, with the ``no_image_topics`` problem.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.drives import (
    DRIVE_ID_METADATA,
    DRIVE_MANIFEST_SCHEMA_VERSION,
    PARTIAL_PROBLEMS,
    DriveId,
    validate_drive_manifest,
)
from drivelogs.decode import (
    IMAGE_TYPES,
    FrameLimits,
    SkipFrame,
    decode_frame,
    message_stamp_ns,
)
from drivelogs.naming import camera_name_for_topic, frame_key, safe_camera_name, stamp_text
from drivelogs.readers.log import DriveLog, LogMessage, UnreadableLog, UnsupportedMessageEncoding
from drivelogs.sinks import FrameSink

LOG = logging.getLogger("roadseg.drives.extract")  # the extraction's one logger, whichever part logs

RECENT_STAMPS = 1024  # kept stamps remembered per camera for duplicate detection (bounded memory)


@dataclass(frozen=True)
class CameraConfig:
    name: str
    rate_hz: float | None = None


@dataclass(frozen=True)
class ExtractOptions:
    """``cameras``: topic -> camera (None: every image topic, names derived from the topics)."""

    cameras: Mapping[str, CameraConfig] | None = None
    rate_hz: float | None = None  # for cameras without their own
    limits: FrameLimits = field(default_factory=FrameLimits)
    progress_seconds: float = 10.0


@dataclass
class _Camera:
    name: str
    topic: str
    rate_hz: float | None
    msgtype: str | None = None
    messages_read: int = 0
    messages_lost: int = 0
    extracted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    stamps_from_log_time: int = 0
    bytes_written: int = 0
    first: int | None = None
    last: int | None = None
    max_seen: int | None = None
    last_kept: int | None = None
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_STAMPS))
    recent_set: set[int] = field(default_factory=set)

    def remember(self, stamp: int) -> None:
        if len(self.recent) == self.recent.maxlen:
            self.recent_set.discard(self.recent[0])
        self.recent.append(stamp)
        self.recent_set.add(stamp)

    def document(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "type": self.msgtype, "rate_hz": self.rate_hz,
            "messages": self.messages_read + self.messages_lost, "messages_read": self.messages_read,
            "messages_lost": self.messages_lost, "extracted": self.extracted,
            "skipped": dict(sorted(self.skipped.items())),
            "out_of_order": self.out_of_order, "stamps_from_log_time": self.stamps_from_log_time,
            "first_stamp": None if self.first is None else stamp_text(self.first),
            "last_stamp": None if self.last is None else stamp_text(self.last),
            "bytes_written": self.bytes_written,
        }


class DriveExtractor:
    """Extracts the frames of one drive's logs into a sink and builds its manifest."""

    def __init__(self, drive: DriveId, sink: FrameSink, options: ExtractOptions | None = None) -> None:
        self.drive, self.sink = drive, sink
        self.options = options or ExtractOptions()
        self.cameras: dict[str, _Camera] = {}  # by topic
        self.names: set[str] = set()
        self._unnamed: list[str] = []  # derived camera topics announced, named at the first camera message
        self.problems: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.topics: dict[str, dict[str, Any]] = {}
        self.metadata = {DRIVE_ID_METADATA: str(drive)}
        self._started = time.monotonic()
        self._next_progress = self._started + self.options.progress_seconds

    # which topics are cameras
    def _wanted(self, topic: str, msgtype: str | None) -> bool:
        if topic in self.cameras:
            return True
        configured = self.options.cameras
        if configured is not None:
            config = configured.get(topic)
            if config is None:
                return False
            name = config.name
        elif msgtype in IMAGE_TYPES:
            config, name = None, ""
            self._unnamed.append(topic)
        else:
            return False
        rate = config.rate_hz if config is not None and config.rate_hz is not None else self.options.rate_hz
        self.cameras[topic] = _Camera(name, topic, rate, msgtype)
        if name:
            self.names.add(name)
        return True

    def _name_cameras(self) -> None:
        """Derived names for the topics announced so far, in topic order (see the module docstring)."""
        topics, self._unnamed = sorted(self._unnamed), []
        short = {topic: camera_name_for_topic(topic) for topic in topics}
        for topic in topics:
            rivals = sorted(t for t in topics if t != topic and short[t] == short[topic])
            if not rivals and short[topic] not in self.names:
                name = short[topic]
            else:
                name = safe_camera_name("-".join(p for p in topic.split("/") if p))
                while name in self.names:
                    name += "_"
                other = ", ".join(rivals) if rivals else "a topic of an earlier log"
                self.problems.append({"kind": "camera_name_collision", "log": None, "topic": topic, "offset": None,
                                      "messages_lost": 0, "detail": f"{topic} and {other} derive the camera name "
                                      f"{short[topic]!r}; its frames go to {name!r}"})
            self.cameras[topic].name = name
            self.names.add(name)

    def extract(self, logs: Sequence[DriveLog]) -> dict[str, Any]:
        """Reads each log in turn (a split drive's files in order) and returns the validated manifest."""
        if self.options.cameras is not None:
            for topic in self.options.cameras:
                self._wanted(topic, None)
        for log in logs:
            LOG.info("drive %s: reading %s (%s, %d bytes)", self.drive, log.name, log.format, log.size_bytes)
            try:
                for message in log.messages(self._wanted):
                    self._handle(self.cameras[message.topic], message)
                    self._progress(log)
            except UnreadableLog as exc:  # found unreadable only once reading began: the other logs still count
                log.problem("read_error", f"{exc}; its messages are unknown", messages_lost=None)
            for topic, count in log.lost.items():
                if topic in self.cameras:
                    self.cameras[topic].messages_lost += count
            for topic in sorted(set(log.topic_types) | set(log.topic_counts)):
                entry = self.topics.setdefault(topic, {"name": topic, "type": None, "messages": 0, "camera": None})
                entry["type"] = entry["type"] or log.topic_types.get(topic)
                entry["messages"] += log.topic_counts.get(topic, 0)  # the index's count, else what was read
            self.problems.extend(log.problems)
            self.logs.append({"name": log.name, "size_bytes": log.size_bytes, "format": log.format,
                              "library": log.library, "messages_read": log.messages_read,
                              "complete": log.complete})
        self._reconcile()
        return self.manifest()

    def _reconcile(self) -> None:
        """Each camera's messages against its topic's count in the logs (see the module docstring)."""
        for topic, camera in self.cameras.items():
            entry = self.topics.get(topic)
            if entry is None:
                continue
            counted, known = entry["messages"], camera.messages_read + camera.messages_lost
            if counted > known:
                camera.messages_lost += counted - known
                self.problems.append({"kind": "unaccounted_messages", "log": None, "topic": topic, "offset": None,
                                      "messages_lost": counted - known, "detail": f"the logs count {counted} "
                                      f"messages on {topic} but {known} were read or counted lost (messages outside "
                                      f"chunks or an over-counting index): {counted - known} counted lost"})
            elif counted < known:
                entry["messages"] = known
                self.problems.append({"kind": "count_mismatch", "log": None, "topic": topic, "offset": None,
                                      "messages_lost": 0, "detail": f"the logs count {counted} messages on {topic} "
                                      f"but {known} were read or counted lost: the topic's count is what was read"})

    def _skip(self, camera: _Camera, reason: str) -> None:
        camera.skipped[reason] += 1

    def _handle(self, camera: _Camera, message: LogMessage) -> None:
        if self._unnamed:
            self._name_cameras()
        camera.messages_read += 1
        camera.msgtype = camera.msgtype or message.msgtype
        if message.msgtype not in IMAGE_TYPES:
            return self._skip(camera, "not_an_image")
        try:
            decoded = message.decode()
        except UnsupportedMessageEncoding:
            return self._skip(camera, "unsupported_message_encoding")
        except Exception as exc:
            LOG.debug("%s: undecodable message: %s", message.topic, exc)
            return self._skip(camera, "undecodable")
        try:
            stamp = message_stamp_ns(decoded)
        except Exception:
            return self._skip(camera, "undecodable")
        if stamp <= 0:
            stamp = message.log_time
            camera.stamps_from_log_time += 1
        if camera.max_seen is not None and stamp < camera.max_seen:
            camera.out_of_order += 1
        camera.max_seen = stamp if camera.max_seen is None else max(camera.max_seen, stamp)
        camera.first = stamp if camera.first is None else min(camera.first, stamp)
        camera.last = stamp if camera.last is None else max(camera.last, stamp)
        if stamp in camera.recent_set:
            return self._skip(camera, "duplicate_stamp")
        if camera.rate_hz and camera.last_kept is not None and stamp - camera.last_kept < 1e9 / camera.rate_hz:
            return self._skip(camera, "rate_limited")
        try:
            frame = decode_frame(message.msgtype, decoded, self.options.limits)
        except SkipFrame as skip:
            LOG.debug("%s @ %s: %s", message.topic, stamp, skip)
            return self._skip(camera, skip.reason)
        key = frame_key(self.drive, camera.name, stamp, frame.ext)
        if not self.sink.put_frame(key, frame.body, frame.content_type, self.metadata):
            return self._skip(camera, "key_exists")
        camera.extracted += 1
        camera.bytes_written += len(frame.body)
        camera.last_kept = stamp
        camera.remember(stamp)
        return None

    def _progress(self, log: DriveLog) -> None:
        now = time.monotonic()
        if now < self._next_progress:
            return
        self._next_progress = now + self.options.progress_seconds
        extracted = sum(c.extracted for c in self.cameras.values())
        read = sum(c.messages_read for c in self.cameras.values())
        LOG.info("drive %s: %s: %d camera messages read, %d frames extracted (%.1f frames/s)", self.drive,
                 log.name, read, extracted, extracted / max(now - self._started, 1e-9))

    def manifest(self) -> dict[str, Any]:
        if self._unnamed:
            self._name_cameras()
        cameras = {c.name: c.document() for c in self.cameras.values()}
        for topic, camera in self.cameras.items():
            if topic in self.topics:
                self.topics[topic]["camera"] = camera.name
            elif self.options.cameras is not None:
                self.problems.append({"kind": "camera_topic_missing", "log": None, "topic": topic, "offset": None,
                                      "messages_lost": 0, "detail": f"configured camera topic {topic} is in no log"})
        if not self.cameras:
            found = ", ".join(f"{t['name']} ({t['type']})" for t in self.topics.values()) or "none"
            self.problems.append({"kind": "no_image_topics", "log": None, "topic": None, "offset": None,
                                  "messages_lost": 0, "detail": f"no sensor_msgs Image or CompressedImage topic; "
                                  f"topics found: {found}"})
        stamps = [(c.first, c.last) for c in self.cameras.values() if c.first is not None]
        time_range = None
        if stamps:
            start, end = min(s for s, _ in stamps), max(e for _, e in stamps)
            time_range = {"start": stamp_text(start), "end": stamp_text(end), "start_ns": start, "end_ns": end}
        skipped: Counter[str] = Counter()
        for camera in self.cameras.values():
            skipped.update(camera.skipped)
        partial = any(p["messages_lost"] is None or p["messages_lost"] > 0 or p["kind"] in PARTIAL_PROBLEMS
                      for p in self.problems)
        # a log damaged before any camera showed up is partial, not empty: its image topics are unknown, not absent
        status = "partial" if partial else "no_image_topics" if not self.cameras else "complete"
        options = self.options
        configured = None if options.cameras is None else {t: c.name for t, c in options.cameras.items()}
        doc = {
            "schema_version": DRIVE_MANIFEST_SCHEMA_VERSION,
            "drive_id": str(self.drive),
            "status": status,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "destination": self.sink.describe(),
            "options": {"rate_hz": options.rate_hz, "max_bytes": options.limits.max_bytes,
                        "max_pixels": options.limits.max_pixels,
                        "cameras": configured},
            "logs": self.logs,
            "topics": sorted(self.topics.values(), key=lambda t: t["name"]),
            "time_range": time_range,
            "cameras": cameras,
            "problems": self.problems,
            "totals": {
                key: sum(c[key] for c in cameras.values())
                for key in ("messages", "messages_read", "messages_lost", "extracted", "out_of_order", "bytes_written")
            } | {"skipped": dict(sorted(skipped.items()))},
        }
        return validate_drive_manifest(doc)
