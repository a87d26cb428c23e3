"""ROS 2 bag directories (metadata.yaml and its sqlite3 or MCAP storage files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from drivelogs.readers.log import LogMessage, UnreadableLog, Wanted
from drivelogs.readers.rosbag import RosbagLog


class Ros2BagLog(RosbagLog):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        storage = "mcap" if any(path.glob("*.mcap")) else "sqlite3"
        self.format = f"rosbag2-{storage}"

    def unopened(self, error: Exception, wanted: Wanted) -> Iterator[LogMessage]:
        raise UnreadableLog(f"{self.path}: rosbags cannot open this ROS 2 bag: {error}") from None
