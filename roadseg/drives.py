"""``roadseg drive``: upload a drive log and follow it through extraction, inference and the drive builder.

Where things are is written once in contracts/drives.py (log keys, the drive id, the outputs under
``drive-outputs/<vehicle>/<drive>/``); this module only moves files and reads state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from contracts import naming
from contracts.drives import LOG_SUFFIXES, ROS2_METADATA, DriveId, DriveKeyError, DriveOutputs, drive_of_log_key
from contracts.layout import INFERENCE
from roadseg.output import Printer
from roadseg.session import Session, UserError


@dataclass(frozen=True)
class DriveUpload:
    """The files of one drive log and the keys they go to, in upload order."""

    drive: DriveId
    files: tuple[tuple[Path, str], ...]  # (local file, key); a ROS 2 bag's metadata.yaml comes last

    @property
    def trigger_key(self) -> str:
        """The key whose arrival starts the extraction (the last one uploaded)."""
        return self.files[-1][1]


def plan_upload(path: Path, vehicle: str, drive: str | None = None) -> DriveUpload:
    """What uploading ``path`` (an .mcap or .bag file, or a ROS 2 bag directory) means; UserError for anything
    else. The drive name defaults to the file's stem or the directory's name."""
    path = Path(path)
    if path.is_file():
        if path.suffix not in LOG_SUFFIXES:
            raise UserError(f"{path}: a drive log is an .mcap file, a ROS 1 .bag or a ROS 2 bag directory "
                            f"(with {ROS2_METADATA}); got a {path.suffix or 'suffix-less'} file")
        name = drive or path.stem
        key = f"{INFERENCE.drives}{vehicle}/{name}{path.suffix}"
        files = ((path, key),)
    elif path.is_dir():
        metadata = path / ROS2_METADATA
        if not metadata.is_file():
            raise UserError(f"{path}: a ROS 2 bag directory holds {ROS2_METADATA} (not found); upload .mcap or "
                            ".bag files directly")
        name = drive or path.name
        prefix = f"{INFERENCE.drives}{vehicle}/{name}/"
        storage = sorted(p for p in path.iterdir() if p.is_file() and p.name != ROS2_METADATA
                         and not p.name.startswith("."))
        if not storage:
            raise UserError(f"{path}: the bag directory holds no storage files next to {ROS2_METADATA}")
        # metadata.yaml last: its arrival starts the extraction, which then finds every storage file in place.
        files = (*((p, prefix + p.name) for p in storage), (metadata, prefix + ROS2_METADATA))
    else:
        raise UserError(f"{path} does not exist")
    try:
        parsed = drive_of_log_key(files[-1][1])
    except DriveKeyError as exc:
        raise UserError(f"{exc} (choose --vehicle / --drive names of letters, digits, '.', '_' or '-')") from None
    return DriveUpload(drive=parsed, files=tuple(files))


def drive_upload(session: Session, out: Printer, *, path: Path, vehicle: str, drive: str | None,
                 bucket: str | None) -> DriveUpload:
    from boto3.s3.transfer import TransferConfig

    plan = plan_upload(path, vehicle, drive)
    bucket = session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--bucket")
    s3 = session.client("s3")
    total = sum(p.stat().st_size for p, _ in plan.files)
    config = TransferConfig(multipart_threshold=64 * 1024**2, max_concurrency=8)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {plan.drive}",
              disable=True if out.quiet else None) as bar:
        for local, key in plan.files:
            s3.upload_file(str(local), bucket, key, Callback=bar.update, Config=config)
    out.line(f"uploaded drive {plan.drive} ({len(plan.files)} file(s)) to s3://{bucket}/{plan.trigger_key}: "
             f"the extraction starts now; follow it with `roadseg drive status {plan.drive}`")
    return plan


def parse_drive(text: str) -> DriveId:
    try:
        return DriveId.parse(text)
    except DriveKeyError as exc:
        raise UserError(str(exc)) from None


# -- state -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriveProgress:
    """Where a drive stands, from its DRIVE item (contracts/drive_table.py)."""

    drive: str
    status: str
    extracted: int | None  # None while the extraction runs
    processed: int
    quarantined: int
    failed: int
    build_job: str | None
    created_at: str | None = None  # ISO 8601 UTC
    # Set while a drive job waits for SageMaker Processing capacity (contracts.drive_table.WAITING_FOR_CAPACITY):
    # {"job", "since", "attempts", "deadline"} and, once the wait went to the dead-letter queue, "expired_at".
    waiting_for_capacity: dict[str, Any] | None = None

    @property
    def capacity_note(self) -> str | None:
        """One line about a capacity wait, or None."""
        wait = self.waiting_for_capacity
        if not wait:
            return None
        job = "extraction" if wait.get("job") == "extract" else "drive builder"
        if wait.get("expired_at"):
            return (f"the {job} found no SageMaker Processing capacity from {wait.get('since')} to "
                    f"{wait.get('expired_at')}: its start request is in the capacity-wait dead-letter queue; raise "
                    "the Processing quota or wait, then redrive it to the CapacityWait queue (docs/drives.md)")
        return (f"the {job} is waiting for SageMaker Processing capacity since {wait.get('since')} "
                f"({int(wait.get('attempts') or 0)} refused start(s)); retried until {wait.get('deadline')}")

    @property
    def done(self) -> int:
        return self.processed + self.quarantined + self.failed

    @property
    def complete(self) -> bool:
        """Every extracted frame has an outcome (a split drive's ``extracted`` grows until its status says the
        extraction ended)."""
        from contracts import drive_table as table

        return (self.status in (table.EXTRACTION_ENDED, table.BUILDING, table.EMPTY) and self.extracted is not None
                and self.done >= self.extracted)

    def eta_seconds(self, elapsed_seconds: float | None) -> float | None:
        """Seconds left at the rate seen so far (frames done over ``elapsed_seconds`` since the drive started); None
        while the number of frames is unknown or nothing is done yet."""
        if self.extracted is None or not elapsed_seconds or elapsed_seconds <= 0 or self.done == 0:
            return None
        return max(self.extracted - self.done, 0) * elapsed_seconds / self.done


def drive_progress(drive: str, item: dict[str, Any] | None,
                   counters: dict[str, int] | None = None) -> DriveProgress:
    """The progress of ``drive`` from its DRIVE item as DynamoDB's resource layer returns it and its outcome counters
    (summed over the counter items, contracts.drive_table.drive_state; default: the DRIVE item's own); UserError when
    there is no DRIVE item (the log was never uploaded, or under another name)."""
    from contracts import drive_table as table

    if not item:
        raise UserError(f"no drive {drive}: upload its log with `roadseg drive upload` (the drive id is "
                        "<vehicle>/<drive>, as printed by the upload)")
    counts = item if counters is None else counters
    extracted = item.get(table.EXTRACTED)
    return DriveProgress(
        drive=drive,
        status=str(item.get(table.STATUS, "unknown")),
        extracted=None if extracted is None else int(extracted),
        processed=int(counts.get(table.PROCESSED, 0)),
        quarantined=int(counts.get(table.QUARANTINED, 0)),
        failed=int(counts.get(table.FAILED, 0)),
        build_job=item.get(table.BUILD_JOB),
        created_at=item.get(table.CREATED_AT),
        waiting_for_capacity=_numbers_as_int(item.get(table.WAITING_FOR_CAPACITY)),
    )


def _numbers_as_int(wait: Any) -> dict[str, Any] | None:
    """The capacity wait with DynamoDB's Decimals as ints (the --json document is plain JSON)."""
    if not isinstance(wait, dict):
        return None
    return {k: int(v) if k == "attempts" and v is not None else v for k, v in wait.items()}


def elapsed_since(iso: str | None, now: datetime) -> float | None:
    """Seconds from ``iso`` (ISO 8601, Z or offset) to ``now``; None when absent or unreadable."""
    if not iso:
        return None
    try:
        start = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return (now - start).total_seconds()


def missing_drive_message(drive_id: DriveId, bucket: str, keys: list[str]) -> str:
    """Why a drive has no DRIVE item, from the keys under ``drives/<vehicle>/<drive>`` of the inference bucket
    (pure): the log is there and the launcher has not created the item yet, a ROS 2 bag lacks the metadata.yaml that
    starts it, or nothing was uploaded."""
    logs = [key for key in keys if _log_of(key) == drive_id]
    where = f"s3://{bucket}/{INFERENCE.drives}{drive_id.vehicle}/{drive_id.drive}"
    if logs:
        return (f"drive {drive_id}: its log is uploaded ({', '.join(f's3://{bucket}/{k}' for k in logs)}) but the "
                "launcher has not started its extraction yet (no drive item yet): it runs on the log's S3 event, "
                f"usually within a minute; if it stays so, check the drive's objects under {where}/ (or "
                f"{where}.mcap/.bag) and the launcher's alarms (docs/drives.md)")
    parts = [key for key in keys if key.startswith(f"{INFERENCE.drives}{drive_id.vehicle}/{drive_id.drive}/")]
    if parts:
        return (f"drive {drive_id}: {len(parts)} object(s) under {where}/ but no {ROS2_METADATA}, whose arrival "
                f"starts the extraction: upload the bag directory again with `roadseg drive upload` (it sends "
                f"{ROS2_METADATA} last)")
    return (f"no drive {drive_id}: upload its log with `roadseg drive upload` (the drive id is <vehicle>/<drive>, as "
            f"printed by the upload); nothing is under {where}")


def _log_of(key: str) -> DriveId | None:
    try:
        return drive_of_log_key(key)
    except DriveKeyError:
        return None


def _missing_drive(session: Session, drive_id: DriveId, bucket: str | None) -> UserError:
    """The UserError for a drive without a DRIVE item, after a look at what was uploaded for it."""
    from botocore.exceptions import ClientError

    try:
        bucket = session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--bucket")
        pages = session.client("s3").get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{INFERENCE.drives}{drive_id.vehicle}/{drive_id.drive}")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    except (UserError, ClientError) as exc:
        why = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else str(exc)
        return UserError(f"no drive {drive_id}: upload its log with `roadseg drive upload` (the drive id is "
                         "<vehicle>/<drive>, as printed by the upload); if you uploaded it moments ago, the launcher "
                         f"has not started it yet: check the drive's objects under {INFERENCE.drives}"
                         f"{drive_id.vehicle}/{drive_id.drive} in the inference bucket (not listed here: {why})")
    return UserError(missing_drive_message(drive_id, bucket, keys))


def drive_status(session: Session, out: Printer, *, drive: str, table_name: str | None,
                 bucket: str | None = None) -> DriveProgress:
    from botocore.exceptions import ClientError

    from contracts import drive_table as table
    from contracts.naming import drives_table_name, inference_stack_name

    drive_id = parse_drive(drive)
    name = table_name or drives_table_name(session.config.prefix)
    # The DRIVE item and its counter items (COUNTS#nn) in one consistent Query; the counters are summed.
    pages = session.client("dynamodb").get_paginator("query").paginate(**table.state_query(name, str(drive_id)))
    try:
        items = [_plain(found) or {} for page in pages for found in page.get("Items", [])]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        raise UserError(f"the drives table {name} does not exist in {session.region}: deploy the environment's "
                        f"stacks, whose inference stack {inference_stack_name(session.config.prefix)} holds it "
                        f"(make deploy ENV={session.env})" + ("" if table_name else "; or pass --table")) from None
    item, counters = table.drive_state(items)
    if item is None:
        raise _missing_drive(session, drive_id, bucket)
    progress = drive_progress(str(drive_id), item, counters)
    eta = progress.eta_seconds(elapsed_since(progress.created_at, datetime.now(UTC)))
    extracted = "extraction running" if progress.extracted is None else str(progress.extracted)
    out.table(["drive", "status", "extracted", "processed", "quarantined", "failed", "remaining", "ETA"],
              [[progress.drive, progress.status, extracted, progress.processed, progress.quarantined, progress.failed,
                "-" if progress.extracted is None else max(progress.extracted - progress.done, 0),
                "-" if eta is None else _duration(eta)]])
    out.document({**dataclasses.asdict(progress), "done": progress.done, "complete": progress.complete,
                  "eta_seconds": None if eta is None else round(eta, 1)})
    if progress.capacity_note:
        out.line(progress.capacity_note)
    if progress.build_job:
        out.line(f"drive builder: processing job {progress.build_job}")
    if progress.complete:
        outputs = DriveOutputs(drive_id)
        out.line(f"every frame is accounted for; outputs under s3://<inference bucket>/{outputs.prefix} "
                 f"(`roadseg drive fetch {drive_id}`)")
    return progress


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _plain(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """A low-level DynamoDB item as plain Python values."""
    if item is None:
        return None
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}


# -- outputs -----------------------------------------------------------------------------------------------------

def drive_scenes(session: Session, out: Printer, *, drive: str, bucket: str | None,
                 kind: str | None) -> list[dict[str, Any]]:
    import json

    from contracts.documents import DocumentError
    from contracts.drive_timeline import validate_drive_scenes

    drive_id = parse_drive(drive)
    bucket = session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--bucket")
    key = DriveOutputs(drive_id).scenes
    body = _get(session, bucket, key, f"the scenes of {drive_id} are not built yet (`roadseg drive status {drive_id}`)")
    try:
        document = validate_drive_scenes(json.loads(body))
    except (ValueError, DocumentError) as exc:
        raise UserError(f"s3://{bucket}/{key}: {exc}") from None
    scenes = [s for s in document["scenes"] if kind is None or s["kind"] == kind]
    out.table(["camera", "kind", "start", "duration s", "frames", "classes", "peak frame"],
              [[s["camera"], s["kind"], s["start"], f"{s['duration_s']:.1f}", s["frames"], ", ".join(s["classes"]),
                s["peak_frame_key"]] for s in scenes],
              title=f"{len(scenes)} scene(s) of {drive_id}")
    out.document({"drive_id": str(drive_id), "scenes": scenes})
    return scenes


def drive_fetch(session: Session, out: Printer, *, drive: str, bucket: str | None, out_dir: Path,
                videos: bool) -> list[Path]:
    drive_id = parse_drive(drive)
    bucket = session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--bucket")
    outputs = DriveOutputs(drive_id)
    s3 = session.client("s3")
    keys = [outputs.summary, outputs.scenes, outputs.timeline]
    optional = {outputs.sidecar}  # the sidecar MCAP (drivelogs/sidecar.py): drives built before it have none
    keys += sorted(optional)
    if videos:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=outputs.prefix + "videos/")
        keys += [o["Key"] for page in pages for o in page.get("Contents", [])]
    sizes = {}
    for key in list(keys):
        try:
            sizes[key] = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except s3.exceptions.ClientError as exc:
            if key in optional and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                keys.remove(key)
                out.line(f"s3://{bucket}/{key} does not exist (drive built without a sidecar): not fetched")
                continue
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise UserError(f"s3://{bucket}/{key} does not exist: the drive is not built yet "
                                f"(`roadseg drive status {drive_id}`)") from None
            raise
    written = []
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, unit_divisor=1024, desc=f"fetch {drive_id}",
              disable=True if out.quiet else None) as bar:
        for key in keys:
            target = Path(out_dir) / key[len(outputs.prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target), Callback=bar.update)
            written.append(target)
    out.line(f"fetched {len(written)} file(s) of {drive_id} into {out_dir}")
    return written


def _get(session: Session, bucket: str, key: str, missing: str) -> bytes:
    s3 = session.client("s3")
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise UserError(f"s3://{bucket}/{key} does not exist: {missing}") from None
