"""ROS 2 bag directories (metadata.yaml and its sqlite3 or MCAP storage files).

A bag that rosbags cannot open (a storage file truncated or corrupt: a recording that stopped) is read like lone
files: each storage file in metadata.yaml's order, an MCAP with the MCAP reader (around its damage), a sqlite3 file
with the standard library's sqlite3 up to its first unreadable page, a file-compressed one (``*.zstd``) decompressed
first as far as its stream goes. What was not read is counted against metadata.yaml's per-topic counts."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drivelogs.readers.log import DriveLog, LogMessage, UnreadableLog, Wanted, library_version, normalise_type
from drivelogs.readers.rosbag import RosbagLog, deserializer

LOG = logging.getLogger("roadseg.drives.extract")  # the extraction's one logger, whichever part logs
MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"


def bag_metadata(path: Path) -> dict[str, Any]:
    """metadata.yaml's ``rosbag2_bagfile_information``; UnreadableLog when it cannot be read."""
    from ruamel.yaml import YAML

    try:
        info = YAML(typ="safe").load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except Exception as exc:
        raise UnreadableLog(f"{path}: unreadable metadata.yaml: {type(exc).__name__}: {exc}") from None
    if not isinstance(info, dict):
        raise UnreadableLog(f"{path}: metadata.yaml has no rosbag2_bagfile_information")
    return info


class Ros2BagLog(RosbagLog):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            storage = str(bag_metadata(path).get("storage_identifier") or "")
        except UnreadableLog:
            storage = ""
        if storage not in ("mcap", "sqlite3"):  # told by the files (a file-compressed bag's are *.mcap.zstd)
            storage = "mcap" if any(path.glob("*.mcap*")) else "sqlite3"
        self.format = f"rosbag2-{storage}"

    def unopened(self, error: Exception, wanted: Wanted) -> Iterator[LogMessage]:
        info = bag_metadata(self.path)
        files = [self.path / str(name) for name in info.get("relative_file_paths") or []]
        if not files:
            raise UnreadableLog(f"{self.path}: rosbags cannot open this ROS 2 bag: {error}") from None
        LOG.info("%s: rosbags cannot open the bag (%s); reading its %d storage files one by one",
                 self.name, error, len(files))
        expected: Counter[str] = Counter()
        for entry in info.get("topics_with_message_count") or []:
            topic = entry["topic_metadata"]["name"]
            expected[topic] += int(entry.get("message_count") or 0)
            self.topic_types[topic] = normalise_type(entry["topic_metadata"].get("type"))
        read: Counter[str] = Counter()
        counted: Counter[str] = Counter()  # what the files themselves count (their index, or what was read)
        file_lost: Counter[str] = Counter()
        for file in files:
            for message in self._storage_file(file, wanted, counted, file_lost, bool(expected)):
                read[message.topic] += 1
                yield message
        lost_total = 0
        for topic in sorted(set(expected) | set(counted)):
            msgtype = self.topic_types.get(topic)
            if topic in expected:
                self.topic_counts[topic] = max(expected[topic], read[topic])
                lost = self.topic_counts[topic] - read[topic]
            else:
                self.topic_counts[topic] = counted[topic]
                lost = file_lost[topic]
            if lost and wanted(topic, msgtype):
                self.lost[topic] += lost
                lost_total += lost
        self.problem("read_error", f"rosbags cannot open the bag ({error}); its {len(files)} storage files were "
                     f"read one by one: {lost_total} camera messages " + ("of metadata.yaml's counts " if expected
                                                                           else "") + "not read",
                     messages_lost=lost_total)

    def _storage_file(self, file: Path, wanted: Wanted, counted: Counter[str], file_lost: Counter[str],
                      counts_known: bool) -> Iterator[LogMessage]:
        label = f"{self.name}/{file.name}"
        if not file.is_file():
            self.problem("truncated", f"{label}: storage file missing", messages_lost=0)
            return
        with tempfile.TemporaryDirectory(prefix="ros2bag-") as scratch:
            if file.suffix == ".zstd":
                file = _decompressed(file, Path(scratch) / file.stem, self, label)
            with file.open("rb") as handle:
                head = handle.read(16)
            if head.startswith(MCAP_MAGIC):
                from drivelogs.readers.mcap_file import McapLog

                lone: DriveLog = McapLog(file)
            elif head.startswith(SQLITE_MAGIC):
                lone = Sqlite3File(file, Path(scratch))
            else:
                self.problem("truncated", f"{label}: neither an MCAP nor a sqlite3 file (starts with {head[:8]!r})",
                             messages_lost=0)
                return
            lone.name = label
            yield from lone.messages(wanted)
            self.messages_read += lone.messages_read
            for topic, msgtype in lone.topic_types.items():
                self.topic_types.setdefault(topic, msgtype)
            counted.update(lone.topic_counts)
            file_lost.update(lone.lost)
            for problem in lone.problems:  # with metadata.yaml's counts, the loss is counted once, by unopened
                if counts_known:
                    problem = {**problem, "messages_lost": 0}
                elif problem["messages_lost"] is None or problem["messages_lost"]:
                    self.complete = False
                self.problems.append(problem)


def _decompressed(file: Path, target: Path, log: DriveLog, label: str) -> Path:
    """A file-compressed storage file decompressed into ``target``, as far as its zstd stream goes."""
    import zstandard

    with file.open("rb") as source, target.open("wb") as sink:
        reader = zstandard.ZstdDecompressor().stream_reader(source)
        try:
            shutil.copyfileobj(reader, sink, 1 << 20)
        except zstandard.ZstdError as exc:
            log.problem("truncated", f"{label}: the zstd stream stops after {sink.tell()} bytes: {exc}",
                        messages_lost=0)
    return target


class Sqlite3File(DriveLog):
    """One sqlite3 storage file of a ROS 2 bag, read with the standard library's sqlite3 in rowid (recording)
    order up to its first unreadable page. A file cut short is read from a copy cut to whole pages whose header
    says so, which sqlite reads up to the cut."""

    format = "rosbag2-sqlite3"

    def __init__(self, path: Path, scratch: Path) -> None:
        super().__init__(path)
        self.library = f"sqlite3 {sqlite3.sqlite_version} + rosbags {library_version('rosbags')}"
        self._scratch = scratch

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            connection.execute("SELECT name FROM sqlite_master").fetchall()
            return connection
        except sqlite3.DatabaseError:
            connection.close()
        size = self.path.stat().st_size
        target = self._scratch / f"cut-{self.path.name}"
        with self.path.open("rb") as source, target.open("w+b") as copy:
            header = source.read(100)
            page = int.from_bytes(header[16:18], "big")
            page = 65536 if page == 1 else page or 4096
            pages = size // page
            source.seek(0)
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.truncate(pages * page)
            copy.seek(28)
            copy.write(pages.to_bytes(4, "big"))  # the in-header database size, which sqlite trusts over the file's
        self.problem("truncated", f"{self.name}: {size} bytes, {pages} whole pages of {page} bytes; the file is cut "
                     "short or damaged", offset=pages * page, messages_lost=None)
        return sqlite3.connect(f"file:{target}?mode=ro", uri=True)

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:
        from rosbags.typesys import Stores, get_typestore

        typestore = get_typestore(Stores.LATEST)
        try:
            connection = self._connect()
            topics = {row[0]: (row[1], normalise_type(row[2]))
                      for row in connection.execute("SELECT id, name, type FROM topics")}
        except sqlite3.DatabaseError as exc:
            self.problem("truncated", f"{self.name}: no readable topics table ({exc})", messages_lost=None)
            return
        for topic, msgtype in topics.values():
            self.topic_types[topic] = msgtype
        ids = [tid for tid, (topic, msgtype) in topics.items() if wanted(topic, msgtype)]
        try:
            rows = connection.execute(
                f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({','.join('?' * len(ids))}) "
                "ORDER BY id", ids)
            for topic_id, timestamp, data in rows:
                topic, msgtype = topics[topic_id]
                self.topic_counts[topic] += 1
                self.messages_read += 1
                yield LogMessage(topic, msgtype, int(timestamp),
                                 deserializer(typestore.deserialize_cdr, bytes(data), msgtype))
        except sqlite3.DatabaseError as exc:
            self.problem("truncated", f"{self.name}: sqlite stops reading after {self.messages_read} camera messages "
                         f"({exc}); later messages are unknown", messages_lost=None)
        finally:
            connection.close()
