"""The drives table: what the ingest and postprocess functions, the drive functions (lambda/drives.py), the extraction
job and the stack agree on about it. Standard library only.

One DynamoDB table (``contracts.naming.drives_table_name``), partition key ``drive_id`` (``<vehicle>/<drive>``), sort
key ``item``:

- ``DRIVE`` (``DRIVE_ITEM``): the drive's counters and state. The launcher creates it (``status`` = ``extracting``,
  ``log_keys``); the extraction job ends by setting ``extracted`` = N and ``status`` = ``extracted``; each frame's
  outcome adds 1 to ``processed``, ``quarantined`` or ``failed`` (``OUTCOMES``) in the same transaction that creates
  the frame's item, so a redelivered event counts nothing twice. The drive is complete when
  ``processed + quarantined + failed == extracted`` after the extraction ended; the completion function then moves
  ``status`` ``extracted`` -> ``building`` with a conditional update (one winner) and starts the builder.
- ``FRAME#<frame key>`` (``frame_item``): one per frame, written once: its ``outcome`` and the S3 keys of the
  documents about it (``documents``: result, mask, overlay, failure, quarantine reason), which the builder's input
  manifest lists.
"""

from __future__ import annotations

from contracts.drive_timeline import FRAME_STATUSES

PARTITION_KEY = "drive_id"
SORT_KEY = "item"
DRIVE_ITEM = "DRIVE"
FRAME_ITEM_PREFIX = "FRAME#"

# Outcome counters of the DRIVE item (the timeline's frame statuses: one name for one fact).
PROCESSED, QUARANTINED, FAILED = FRAME_STATUSES
OUTCOMES: tuple[str, ...] = FRAME_STATUSES
EXTRACTED = "extracted"  # the number of frames the extraction job wrote (set once, at its end)

# Attributes of the DRIVE item besides the counters.
STATUS = "status"
LOG_KEYS = "log_keys"
EXTRACTION_JOB = "extraction_job"
BUILD_JOB = "build_job"
CREATED_AT = "created_at"  # ISO 8601 UTC, when the launcher created the item (the operator command's ETA starts there)
# Attributes of a FRAME item.
OUTCOME = "outcome"
DOCUMENTS = "documents"  # role ("result", "mask", "overlay", "failure", "quarantine", "quarantine_reason") -> S3 key
RECORDED_AT = "recorded_at"

# DRIVE status values, in order.
EXTRACTING, EXTRACTION_ENDED, BUILDING = "extracting", "extracted", "building"
EMPTY = "empty"  # the extraction ended with no frame (no image topics, all skipped): nothing to build
STATUSES = (EXTRACTING, EXTRACTION_ENDED, BUILDING, EMPTY)


def frame_item(frame_key: str) -> str:
    """Sort key of a frame's item (the frame key is the object key under incoming/)."""
    if not frame_key:
        raise ValueError("a frame item needs the frame's key")
    return f"{FRAME_ITEM_PREFIX}{frame_key}"


def key_schema() -> dict[str, list[dict[str, str]]]:
    """The table's keys as CreateTable takes them (the stack declares the same with CDK; the rehearsal and the tests
    create the table in moto with this)."""
    return {"KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                          {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                                     {"AttributeName": SORT_KEY, "AttributeType": "S"}]}
