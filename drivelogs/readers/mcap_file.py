"""MCAP files, read record by record so that a damaged file is read around its damage. Messages are decoded by
their channel's encoding (drivelogs/readers/mcap_decoders.py): ROS 2 CDR, ROS 1 (``ros1msg`` schemas, as ``mcap
convert`` writes them), protobuf (Foxglove's schemas among others) and JSON with Foxglove's schemas. ROS 2 messages
compressed one by one (``ros2 bag record --compression-mode message``) are recognised by their zstd magic without the
bag's metadata.yaml and decompressed; one that cannot be decompressed is counted lost (an ``undecompressable``
problem on its topic, so the drive is ``partial``), never passed on as an undecodable frame of a complete drive; one
that decompresses to bytes its schema does not decode is skipped as ``undecodable``, as an uncompressed one is."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from drivelogs.readers.log import (
    DriveLog,
    LogMessage,
    UnsupportedMessageEncoding,
    Wanted,
    normalise_type,
)
from drivelogs.readers.mcap_decoders import McapDecoders, zstd_compressed

LOG = logging.getLogger("roadseg.drives.extract")  # the extraction's one logger, whichever part logs


class McapLog(DriveLog):
    """An MCAP file, read with the mcap library's records and decoded per channel by McapDecoders. With an intact
    summary each chunk is read through its chunk index (a corrupt chunk is skipped, its loss counted from its
    message indexes); without one (a truncated file) the records are read in order until the file stops."""

    format = "mcap"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._factory = McapDecoders()
        self._decoders: dict[int, Callable[[bytes], Any] | None] = {}
        self._unsupported_reported: set[str] = set()
        # per topic: its message-compression problem and the first error
        self._compressed_problems: dict[str, tuple[dict[str, Any], str]] = {}

    @property  # type: ignore[override]
    def library(self) -> str:
        """mcap and the decoding libraries the log's messages needed (mcap-ros2-support before any was needed)."""
        return self._factory.library()

    def _decoder(self, channel: Any, schema: Any) -> Callable[[bytes], Any] | None:
        if channel.id not in self._decoders:
            try:
                decoder = self._factory.decoder_for(channel.message_encoding, schema)
            except Exception as exc:  # a schema its parser rejects
                LOG.debug("%s: no decoder for %s: %s", self.name, channel.topic, exc)
                decoder = None
            self._decoders[channel.id] = decoder
        return self._decoders[channel.id]

    def _compressed_lost(self, topic: str, error: Exception) -> None:
        """A message-compressed payload that does not decompress: lost, one ``undecompressable`` problem per topic."""
        self.lost[topic] += 1
        problem, first = self._compressed_problems.get(topic, (None, f"{type(error).__name__}: {error}"))
        if problem is None:
            self.problem("undecompressable", "", topic=topic, messages_lost=1)
            problem = self.problems[-1]
            self._compressed_problems[topic] = (problem, first)
        else:
            problem["messages_lost"] += 1
        problem["detail"] = (f"{problem['messages_lost']} message-compressed payloads (zstd, as ros2 bag record "
                             f"--compression-mode message writes them) could not be decompressed: counted lost "
                             f"(first: {first})")

    def _message(self, channel: Any, schema: Any, record: Any) -> LogMessage | None:
        """The record as a message to decode, or None for a message-compressed one that is lost (counted)."""
        decoder = self._decoder(channel, schema)
        if decoder is None:
            if channel.topic not in self._unsupported_reported:
                self._unsupported_reported.add(channel.topic)
                schema_text = f"{schema.name} ({schema.encoding})" if schema is not None else "no schema"
                self.problem("unsupported_message_encoding", f"message encoding {channel.message_encoding!r}, "
                             f"{schema_text}: no decoder", topic=channel.topic)

            def decode() -> Any:
                raise UnsupportedMessageEncoding(channel.message_encoding)
        elif channel.message_encoding == "cdr" and zstd_compressed(record.data):
            try:  # decompressed here: a payload that does not decompress is lost, not an undecodable frame
                data = self._factory.decompress(record.data)
            except Exception as exc:
                self._compressed_lost(channel.topic, exc)
                return None

            def decode() -> Any:  # CDR bytes that do not decode are undecodable, as uncompressed ones are
                return decoder(data)
        else:
            data = record.data

            def decode() -> Any:
                return decoder(data)

        return LogMessage(channel.topic, normalise_type(schema.name if schema else None), record.log_time, decode)

    def messages(self, wanted: Wanted) -> Iterator[LogMessage]:
        from mcap.reader import SeekingReader

        with self.path.open("rb") as handle:
            summary = None
            try:
                summary = SeekingReader(handle).get_summary()
            except Exception as exc:  # no footer: a truncated file (the stream read says where it stops)
                LOG.info("%s: no readable summary (%s); reading records in order", self.name, exc)
            if summary is not None and summary.chunk_indexes and self._channels_listed(summary):
                yield from self._indexed(handle, summary, wanted)
            else:
                yield from self._streamed(handle, wanted)

    @staticmethod
    def _channels_listed(summary: Any) -> bool:
        """Whether the summary lists the channels its chunks hold: a writer may index chunks without repeating the
        channels in the summary (mcap's ``repeat_channels=False``); read through the index, such a file would show
        no topics at all, so it is read record by record instead."""
        used = {cid for index in summary.chunk_indexes for cid in index.message_index_offsets}
        return bool(summary.channels) and used <= summary.channels.keys()

    def _indexed(self, handle: Any, summary: Any, wanted: Wanted) -> Iterator[LogMessage]:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Chunk, Message
        from mcap.stream_reader import breakup_chunk

        channels, schemas = summary.channels, summary.schemas
        for channel in channels.values():
            schema = schemas.get(channel.schema_id)
            self.topic_types[channel.topic] = normalise_type(schema.name if schema else None)
        if summary.statistics is not None:
            for channel_id, count in summary.statistics.channel_message_counts.items():
                if channel_id in channels:
                    self.topic_counts[channels[channel_id].topic] += count
        wanted_ids = {cid for cid, ch in channels.items() if wanted(ch.topic, self.topic_types[ch.topic])}
        for index in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            if index.message_index_offsets and not wanted_ids & index.message_index_offsets.keys():
                continue  # nothing of interest in this chunk: not even decompressed
            try:
                handle.seek(index.chunk_start_offset + 1 + 8)  # past the opcode and the record length
                chunk = Chunk.read(ReadDataStream(handle))
                records = breakup_chunk(chunk, validate_crc=True)
            except Exception as exc:
                lost = self._indexed_counts(handle, index, channels)
                for topic, count in (lost or {}).items():
                    self.lost[topic] += count
                wanted_lost = None if lost is None else sum(
                    n for t, n in lost.items() if wanted(t, self.topic_types.get(t)))
                self.problem("lost_chunk", f"chunk at byte {index.chunk_start_offset} ({index.chunk_length} bytes, "
                             f"log times {index.message_start_time}..{index.message_end_time}) is unreadable: "
                             f"{type(exc).__name__}: {exc}; "
                             + ("message count unknown (no message index)" if lost is None
                                else f"{sum(lost.values())} messages lost ({dict(lost)})"),
                             offset=index.chunk_start_offset, messages_lost=wanted_lost)
                continue
            for record in records:
                if isinstance(record, Message) and record.channel_id in wanted_ids:
                    channel = channels[record.channel_id]
                    message = self._message(channel, schemas.get(channel.schema_id), record)
                    if message is not None:
                        self.messages_read += 1
                        yield message
        if summary.statistics is None:  # no counts in the summary: what was read (wanted topics only)
            LOG.info("%s: no statistics record; topic counts cover the camera topics", self.name)

    @staticmethod
    def _indexed_counts(handle: Any, index: Any, channels: Mapping[int, Any]) -> Counter[str] | None:
        """Messages per topic in a chunk, from its message index records (outside the chunk, usually intact)."""
        from mcap.data_stream import ReadDataStream
        from mcap.records import MessageIndex

        if not index.message_index_offsets:
            return None
        counts: Counter[str] = Counter()
        try:
            for channel_id, offset in index.message_index_offsets.items():
                handle.seek(offset + 1 + 8)
                entries = MessageIndex.read(ReadDataStream(handle)).records
                topic = channels[channel_id].topic if channel_id in channels else f"<channel {channel_id}>"
                counts[topic] += len(entries)
        except Exception:
            return None
        return counts

    @staticmethod
    def _channels_ahead(handle: Any) -> list[tuple[Any, Any]]:
        """Every channel (and its schema) of a file without a usable summary, from one pass over its records:
        chunks decompressed and CRC-checked as the reading pass checks them, messages not decoded, a damaged chunk
        passed over and the pass ended where the file stops (the reading pass that follows reports the damage).
        The extractor names cameras at the first camera message from the topics announced so far; announced here
        first, the names cannot depend on the order in which channels first appear (drivelogs/extractor.py)."""
        from mcap.records import Channel, Chunk, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        schemas: dict[int, Any] = {}
        channels: dict[int, Any] = {}

        def note(record: Any) -> None:
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                channels.setdefault(record.id, record)

        handle.seek(0)
        try:
            for record in StreamReader(handle, emit_chunks=True).records:
                if isinstance(record, Chunk):
                    try:
                        inner = breakup_chunk(record, validate_crc=True)
                    except Exception:  # the reading pass reports the chunk
                        continue
                    for item in inner:
                        note(item)
                else:
                    note(record)
        except Exception:  # the file stops: the reading pass reports where
            pass
        return [(channel, schemas.get(channel.schema_id)) for channel in channels.values()]

    def _streamed(self, handle: Any, wanted: Wanted) -> Iterator[LogMessage]:
        from mcap.records import Channel, Chunk, DataEnd, Message, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        size = self.path.stat().st_size
        schemas: dict[int, Any] = {}
        channels: dict[int, Any] = {}
        wanted_ids: set[int] = set()
        data_end_seen = False

        def handle_record(record: Any) -> LogMessage | None:
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                channels[record.id] = record
                schema = schemas.get(record.schema_id)
                self.topic_types[record.topic] = normalise_type(schema.name if schema else None)
                if wanted(record.topic, self.topic_types[record.topic]):
                    wanted_ids.add(record.id)
            elif isinstance(record, Message) and record.channel_id in channels:
                channel = channels[record.channel_id]
                self.topic_counts[channel.topic] += 1
                if record.channel_id in wanted_ids:
                    message = self._message(channel, schemas.get(channel.schema_id), record)
                    self.messages_read += message is not None
                    return message
            return None

        for channel, schema in self._channels_ahead(handle):  # every channel announced before the first message
            wanted(channel.topic, normalise_type(schema.name if schema else None))
        handle.seek(0)
        records = StreamReader(handle, emit_chunks=True).records
        while True:
            offset = handle.tell()
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:
                if data_end_seen:
                    self.problem("truncated", f"the summary section is cut at byte {offset} of {size} "
                                 f"({type(exc).__name__}); every message was read", offset=offset)
                else:
                    self.problem("truncated", f"the log stops at byte {offset} of {size} ({type(exc).__name__}: "
                                 f"{exc}); messages after it are unknown", offset=offset, messages_lost=None)
                return
            if isinstance(record, DataEnd):
                data_end_seen = True
            if isinstance(record, Chunk):
                try:
                    inner = breakup_chunk(record, validate_crc=True)
                except Exception as exc:
                    if handle.tell() >= size:  # the chunk runs past the end of the file
                        self.problem("truncated", f"the log stops inside the chunk at byte {offset} of {size}; its "
                                     "messages and any after it are unknown", offset=offset, messages_lost=None)
                        return
                    self.problem("lost_chunk", f"chunk at byte {offset} is unreadable ({type(exc).__name__}: {exc});"
                                 " message count unknown (no summary)", offset=offset, messages_lost=None)
                    continue
                for item in inner:
                    message = handle_record(item)
                    if message is not None:
                        yield message
            else:
                message = handle_record(record)
                if message is not None:
                    yield message
