"""ROS 1 bags. A bag whose index is missing or cut (a recording that stopped) is read chunk by chunk with rosbags'
record readers instead of AnyReader, up to where it stops."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator

from drivelogs.readers.log import LogMessage, Wanted
from drivelogs.readers.rosbag import RosbagLog, deserializer

LOG = logging.getLogger("roadseg.drives.extract")  # the extraction's one logger, whichever part logs


class Ros1BagLog(RosbagLog):
    format = "rosbag1"

    def unopened(self, error: Exception, wanted: Wanted) -> Iterator[LogMessage]:
        LOG.info("%s: the bag index is unreadable (%s); reading chunks in order", self.name, error)
        yield from self._scan(wanted, str(error))

    def _scan(self, wanted: Wanted, why: str) -> Iterator[LogMessage]:
        from rosbags.rosbag1.reader import Header, RecordType, decompressors, read_bytes, read_uint32
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
        from rosbags.typesys.msg import normalize_msgtype

        typestore = get_typestore(Stores.EMPTY)
        connections: dict[int, tuple[str, str]] = {}  # conn id -> (topic, msgtype)
        size = self.path.stat().st_size
        with self.path.open("rb") as bio:
            bio.readline()  # the magic line, checked by open_log
            Header.read(bio, RecordType.BAGHEADER)
            bio.seek(read_uint32(bio), os.SEEK_CUR)  # the bag header's padding
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
                        read_bytes(bio, read_uint32(bio))
                        continue
                except Exception as exc:
                    self.problem("truncated", f"the bag index is unusable ({why}); chunks read in order until byte "
                                 f"{offset} of {size}, where the bag stops ({type(exc).__name__}: {exc}); messages "
                                 "after it are unknown", offset=offset, messages_lost=None)
                    return
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
        self.problem("truncated", f"the bag index is unusable ({why}); every chunk was read in order",
                     offset=size, messages_lost=0)
