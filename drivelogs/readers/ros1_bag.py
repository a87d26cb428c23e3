"""ROS 1 bags. A bag whose index is missing or cut (a recording that stopped) is read chunk by chunk with rosbags'
record readers instead of AnyReader, up to where it stops."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from typing import Any

from drivelogs.readers.log import LogMessage, Wanted
from drivelogs.readers.rosbag import RosbagLog, deserializer

LOG = logging.getLogger("roadseg.drives.extract")  # the extraction's one logger, whichever part logs
FIRST_RECORD = 13 + 4096  # after the magic line and the bag header record, which writers pad to 4096 bytes


class Ros1BagLog(RosbagLog):
    format = "rosbag1"

    def unopened(self, error: Exception, wanted: Wanted) -> Iterator[LogMessage]:
        LOG.info("%s: the bag index is unreadable (%s); reading chunks in order", self.name, error)
        yield from self._scan(wanted, str(error))

    def _scan(self, wanted: Wanted, why: str) -> Iterator[LogMessage]:
        from rosbags.rosbag1.reader import Header, RecordType, decompressors, read_bytes, read_uint32
        from rosbags.typesys import Stores, get_typestore

        for topic, msgtype in self._connections_ahead():  # every camera announced before the first message
            wanted(topic, msgtype)
        typestore = get_typestore(Stores.EMPTY)
        connections: dict[int, tuple[str, str]] = {}  # conn id -> (topic, msgtype)
        size = self.path.stat().st_size
        index_seen = False  # chunk info records come after every chunk: seen, nothing was cut off
        with self.path.open("rb") as bio:
            bio.readline()  # the magic line, checked by open_log
            try:
                Header.read(bio, RecordType.BAGHEADER)
                bio.seek(read_uint32(bio), os.SEEK_CUR)  # the bag header's padding
            except Exception as exc:  # writers pad the bag header record to 4096 bytes: the first chunk follows
                bio.seek(FIRST_RECORD)
                self.problem("read_error", f"the bag header is unreadable ({type(exc).__name__}: {exc}); reading "
                             f"records from byte {FIRST_RECORD}, where writers put the first chunk", offset=13)
            while True:
                offset = bio.tell()
                if offset >= size:
                    break
                try:
                    header = Header.read(bio)
                    op = header.get_uint8("op")
                    if op == RecordType.CHUNK:
                        compression = header.get_string("compression")
                        data = decompressors[compression](read_bytes(bio, read_uint32(bio)))
                    elif op == RecordType.CONNECTION:
                        Header.read(bio)  # the index section's copy (the chunks had them first)
                        continue
                    else:  # index data, chunk info
                        index_seen = index_seen or op == RecordType.CHUNK_INFO
                        read_bytes(bio, read_uint32(bio))
                        continue
                except Exception as exc:
                    self.problem("truncated", f"the bag index is unusable ({why}); chunks read in order until byte "
                                 f"{offset} of {size}, where the bag stops ({type(exc).__name__}: {exc}); messages "
                                 "after it are unknown", offset=offset, messages_lost=None)
                    return
                try:
                    yield from self._chunk(data, wanted, typestore, connections)
                except Exception as exc:
                    self.problem("lost_chunk", f"chunk at byte {offset} is unreadable after its first messages "
                                 f"({type(exc).__name__}: {exc}); its other messages are unknown", offset=offset,
                                 messages_lost=None)
        if not index_seen:
            self.problem("truncated", f"the bag index is unusable ({why}); chunks read in order until byte {size}, "
                         "where the bag stops before its index section; messages after it are unknown",
                         offset=size, messages_lost=None)
            return
        self.problem("truncated", f"the bag index is unusable ({why}); every chunk was read in order",
                     offset=size, messages_lost=0)

    def _connections_ahead(self) -> list[tuple[str, str]]:
        """(topic, type) of every connection record the bag holds, from one pass over its records (chunks
        decompressed, messages skipped), ended where the bag stops; the reading pass that follows reports damage.
        The extractor names cameras at the first camera message from the topics announced so far: announced here
        first, the names cannot depend on the order in which connections first appear in the chunks."""
        from rosbags.rosbag1.reader import Header, RecordType, decompressors, read_bytes, read_uint32
        from rosbags.typesys.msg import normalize_msgtype

        found: dict[int, tuple[str, str]] = {}

        def connection(header: Any, stream: Any) -> None:
            conn, topic = header.get_uint32("conn"), header.get_string("topic")
            found.setdefault(conn, (topic, normalize_msgtype(Header.read(stream).get_string("type"))))

        size = self.path.stat().st_size
        with self.path.open("rb") as bio:
            bio.readline()
            try:
                Header.read(bio, RecordType.BAGHEADER)
                bio.seek(read_uint32(bio), os.SEEK_CUR)
            except Exception:  # as the reading pass does: the first chunk follows the padded bag header
                bio.seek(FIRST_RECORD)
            while bio.tell() < size:
                try:
                    header = Header.read(bio)
                    op = header.get_uint8("op")
                    if op == RecordType.CONNECTION:
                        connection(header, bio)
                        continue
                    if op != RecordType.CHUNK:
                        read_bytes(bio, read_uint32(bio))
                        continue
                    data = decompressors[header.get_string("compression")](read_bytes(bio, read_uint32(bio)))
                except Exception:  # the bag stops here
                    break
                chunk = io.BytesIO(data)
                try:
                    while chunk.tell() < len(data):
                        record = Header.read(chunk)
                        if record.get_uint8("op") == RecordType.CONNECTION:
                            connection(record, chunk)
                        else:
                            read_bytes(chunk, read_uint32(chunk))
                except Exception:  # a damaged chunk: the reading pass reports it
                    continue
        return list(found.values())

    def _chunk(self, data: bytes, wanted: Wanted, typestore: Any,
               connections: dict[int, tuple[str, str]]) -> Iterator[LogMessage]:
        from rosbags.rosbag1.reader import Header, RecordType, read_bytes, read_uint32
        from rosbags.typesys import get_types_from_msg
        from rosbags.typesys.msg import normalize_msgtype

        chunk = io.BytesIO(data)
        while chunk.tell() < len(data):
            record = Header.read(chunk)
            op = record.get_uint8("op")
            if op == RecordType.CONNECTION:
                conn, topic = record.get_uint32("conn"), record.get_string("topic")
                definition = Header.read(chunk)
                msgtype = normalize_msgtype(definition.get_string("type"))
                if conn not in connections:
                    connections[conn] = (topic, msgtype)
                    self.topic_types[topic] = msgtype
                    if msgtype not in typestore.fielddefs:
                        typestore.register(get_types_from_msg(
                            definition.get_string("message_definition"), msgtype))
            elif op == RecordType.MSGDATA:
                raw = read_bytes(chunk, read_uint32(chunk))
                topic, msgtype = connections[record.get_uint32("conn")]
                self.topic_counts[topic] += 1
                if wanted(topic, msgtype):
                    self.messages_read += 1
                    yield LogMessage(topic, msgtype, record.get_time("time"),
                                     deserializer(typestore.deserialize_ros1, raw, msgtype))
            else:
                read_bytes(chunk, read_uint32(chunk))
