"""The log readers, one per format, and ``open_log``, which picks one by the file's content.

Read with the pinned pure-Python libraries (rosbags, mcap + mcap-ros2-support), no ROS install. Messages are
streamed: at most one chunk of the log and one message are in memory at a time, whatever the log's size. Damaged
logs never raise once the log opened: a truncated MCAP or ROS 1 bag is read up to where it stops, a corrupt MCAP chunk
is skipped and its messages counted from the chunk's message index, and the log's problems say what was lost and
where. A file that is not a log at all raises ``UnreadableLog`` before anything is read.
"""

from __future__ import annotations

from pathlib import Path

from drivelogs.readers.log import DriveLog, UnreadableLog
from drivelogs.readers.mcap_file import McapLog
from drivelogs.readers.ros1_bag import Ros1BagLog
from drivelogs.readers.ros2_bag import SQLITE_MAGIC, Ros2BagLog

MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_MAGIC = b"#ROSBAG V2.0\n"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_log(path: Path | str) -> DriveLog:
    """The reader for ``path`` by its content: an MCAP file, a ROS 1 bag, or a ROS 2 bag directory (or its
    metadata.yaml, or one of its sqlite3 or zstd-compressed storage files). UnreadableLog for anything else."""
    path = Path(path)
    if path.name == "metadata.yaml":
        path = path.parent
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            raise UnreadableLog(f"{path}: a directory without metadata.yaml is not a ROS 2 bag")
        return Ros2BagLog(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise UnreadableLog(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(MCAP_MAGIC):
        return McapLog(path)
    if head.startswith(ROS1_MAGIC):
        return Ros1BagLog(path)
    if head.startswith((ZSTD_MAGIC, SQLITE_MAGIC)) and (path.parent / "metadata.yaml").is_file():
        return Ros2BagLog(path.parent)  # a storage file of a ROS 2 bag (sqlite3, or file-compressed *.mcap.zstd)
    if not head:
        raise UnreadableLog(f"{path}: the file is empty")
    raise UnreadableLog(f"{path}: not an MCAP file or ROS 1 bag (starts with {head[:8]!r})")
