"""Bags read through rosbags' AnyReader: types from the bag's own definitions, the latest ROS 2 store for bags
without them. What happens when AnyReader cannot open a bag is the format's own (ros1_bag.py, ros2_bag.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from drivelogs.readers.log import DriveLog, LogMessage, Wanted, library_version, normalise_type


class RosbagLog(DriveLog):
    """A ROS 1 bag or a ROS 2 bag directory through rosbags' AnyReader; ``unopened`` reads (or refuses) a bag that
    AnyReader cannot open."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.library = f"rosbags {library_version('rosbags')}"

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        reader = AnyReader([self.path], default_typestore=get_typestore(Stores.LATEST))
        try:
            reader.open()
        except Exception as exc:
            yield from self.unopened(exc, wanted)
            return
        try:
            yield from self._indexed(reader, wanted)
        finally:
            reader.close()

    def unopened(self, error: Exception, wanted: Wanted) -> Iterator[LogMessage]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _indexed(self, reader: Any, wanted: Wanted) -> Iterator[LogMessage]:
        for name, info in reader.topics.items():
            self.topic_types[name] = normalise_type(info.msgtype)
            self.topic_counts[name] += info.msgcount
        connections = [c for c in reader.connections if wanted(c.topic, normalise_type(c.msgtype))]
        if not connections:
            return
        read: Counter[str] = Counter()
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                read[connection.topic] += 1
                self.messages_read += 1
                yield LogMessage(connection.topic, normalise_type(connection.msgtype), timestamp,
                                 deserializer(reader.deserialize, raw, connection.msgtype))
        except Exception as exc:
            lost = {t: self.topic_counts[t] - read[t] for t in {c.topic for c in connections}}
            for topic, count in lost.items():
                self.lost[topic] += count
            self.problem("read_error", f"rosbags stopped reading: {type(exc).__name__}: {exc}; "
                         f"{sum(lost.values())} camera messages not read", messages_lost=sum(lost.values()))


def deserializer(deserialize: Callable[[bytes, str], Any], raw: bytes, msgtype: str) -> Callable[[], Any]:
    """``LogMessage.decode`` for one raw message: deserialised only when the extractor wants its content."""
    return lambda: deserialize(raw, msgtype)
