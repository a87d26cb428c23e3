"""What every log reader gives the extractor: a ``DriveLog`` yields ``LogMessage``s of the wanted topics in file
order and, once read, the counts, losses and problems of its file. Readers never raise once the log opened: a
damaged log is read up to where it stops and its ``problems`` say what was lost and where."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnreadableLog(Exception):
    """The file is not a log this extractor reads (or cannot be opened at all); nothing was extracted from it."""


class UnsupportedMessageEncoding(Exception):
    """The topic's serialisation or schema language has no decoder (e.g. JSON, ros2idl)."""


@dataclass(frozen=True)
class LogMessage:
    topic: str
    msgtype: str | None  # normalised ROS 2 name, "sensor_msgs/msg/Image"
    log_time: int
    decode: Callable[[], Any]  # raises UnsupportedMessageEncoding, or the library's error for bad bytes


Wanted = Callable[[str, "str | None"], bool]


def normalise_type(name: str | None) -> str | None:
    if not name:
        return None
    return name if "/msg/" in name or name.count("/") != 1 else name.replace("/", "/msg/")


class DriveLog:
    """One log file (or ROS 2 bag directory). ``messages`` yields the messages of wanted topics in file order;
    afterwards ``topic_counts`` holds every topic's count (from the index where there is one), ``lost`` the
    messages known to be lost per topic, and ``problems`` what went wrong."""

    format = "unknown"
    library = "unknown"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.problems: list[dict[str, Any]] = []
        self.topic_types: dict[str, str | None] = {}
        self.topic_counts: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.messages_read = 0
        self.complete = True

    @property
    def size_bytes(self) -> int:
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return self.path.stat().st_size

    def problem(self, kind: str, detail: str, *, topic: str | None = None, offset: int | None = None,
                messages_lost: int | None = 0) -> None:
        if messages_lost is None or messages_lost:
            self.complete = False
        self.problems.append({"kind": kind, "log": self.name, "topic": topic, "offset": offset,
                              "messages_lost": messages_lost, "detail": detail})

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:  # pragma: no cover - abstract
        raise NotImplementedError


def library_version(distribution: str) -> str:
    """The installed version of a reading library, for the manifest's ``library``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:  # pragma: no cover - vendored copies
        return "unknown"

