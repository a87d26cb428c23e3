"""The whole-drive Processing jobs' own steps around extract.py and build.py (which stay job-agnostic).

``extract``: runs drivelogs.extract on this instance's share of the logs, uploads its share of the manifest to
``manifests/<host>.json`` next to ``DriveOutputs(drive).manifest``; the last instance to finish merges the shares into
the drive's manifest (``merge_manifests``) and records the end
of this share on the DRIVE item of the drives table in ONE conditional update: ``ADD extracted :n,
extracted_hosts :{host}`` only if this host is not yet in ``extracted_hosts`` (a rerun of the step counts nothing
twice); the instance whose update completes the set of hosts sets ``status`` = ``extracted`` (conditional on
``extracting``). The completion function then sees a DRIVE image with ``extracted`` set.

``build``: creates the input folders a drive may lack (no failures, no quarantine) and runs drivelogs.build.

    python -m drivelogs.job extract --drive-id V/D --log-dir DIR --bucket B --manifest M.json --table T \\
        --manifest-key drive-outputs/V/D/manifest.json --instances N [extract options]
    python -m drivelogs.job build --drive-id V/D --results DIR ... (drivelogs.build's options)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts import drive_table as T
from contracts.drives import validate_drive_manifest

RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")
EXTRACTED_HOSTS = "extracted_hosts"


def current_host(config: Path = RESOURCE_CONFIG) -> str:
    try:
        return str(json.loads(config.read_text())["current_host"])
    except (OSError, ValueError, KeyError):
        return "algo-1"


def share_update(table: str, drive_id: str, host: str, extracted: int) -> dict[str, Any]:
    """UpdateItem of one instance's share (pure): counted once per host."""
    return {"TableName": table, "Key": {T.PARTITION_KEY: {"S": drive_id}, T.SORT_KEY: {"S": T.DRIVE_ITEM}},
            "UpdateExpression": "ADD #extracted :n, #hosts :host",
            "ConditionExpression": "attribute_not_exists(#hosts) OR NOT contains(#hosts, :name)",
            "ExpressionAttributeNames": {"#extracted": T.EXTRACTED, "#hosts": EXTRACTED_HOSTS},
            "ExpressionAttributeValues": {":n": {"N": str(extracted)}, ":host": {"SS": [host]}, ":name": {"S": host}},
            "ReturnValues": "ALL_NEW"}


def end_update(table: str, drive_id: str) -> dict[str, Any]:
    """UpdateItem that ends the extraction (pure): extracting -> extracted."""
    return {"TableName": table, "Key": {T.PARTITION_KEY: {"S": drive_id}, T.SORT_KEY: {"S": T.DRIVE_ITEM}},
            "UpdateExpression": "SET #status = :extracted", "ConditionExpression": "#status = :extracting",
            "ExpressionAttributeNames": {"#status": T.STATUS},
            "ExpressionAttributeValues": {":extracted": {"S": T.EXTRACTION_ENDED}, ":extracting": {"S": T.EXTRACTING}}}


def record_share(client: Any, table: str, drive_id: str, host: str, extracted: int, instances: int,
                 before_end: Callable[[list[str]], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    """Count this host's frames; end the extraction when every host has (after ``before_end(hosts)``, which writes
    the drive's merged manifest: the builder must find it once the drive can complete). True when this call ended
    it."""
    # Both updates retry conflicts (T.retry_conflicts): a DRIVE item held by a transaction fails them with
    # TransactionConflictException, which botocore does not retry; a job that gave up would leave the drive
    # "extracting" for ever. A failed condition is an answer, never retried.
    try:
        item = T.retry_conflicts(lambda _: client.update_item(**share_update(table, drive_id, host, extracted)),
                                 sleep=sleep)["Attributes"]
    except client.exceptions.ConditionalCheckFailedException:
        item = client.get_item(TableName=table, Key=share_update(table, drive_id, host, 0)["Key"],
                               ConsistentRead=True)["Item"]
    hosts = sorted(item.get(EXTRACTED_HOSTS, {}).get("SS", []))
    if len(hosts) < instances:
        return False
    if before_end is not None:
        before_end(hosts)
    try:
        T.retry_conflicts(lambda _: client.update_item(**end_update(table, drive_id)), sleep=sleep)
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def run_extract(argv: Sequence[str]) -> int:
    import boto3

    from drivelogs import extract

    # No abbreviations: extract's own --manifest must not be taken for --manifest-key.
    parser = argparse.ArgumentParser(prog="python -m drivelogs.job extract", allow_abbrev=False)
    parser.add_argument("--table", required=True)
    parser.add_argument("--manifest-key", required=True)
    parser.add_argument("--instances", type=int, default=1)
    ours, rest = parser.parse_known_args(argv)
    code = extract.main(rest)
    if code != 0:
        return code
    known, _ = extract._parser().parse_known_args(rest)
    manifest = json.loads(Path(known.manifest).read_text())
    host = current_host()
    s3 = boto3.client("s3")
    key = share_key(ours.manifest_key, host)
    try:  # first write wins: a retried step (its frames all key_exists) keeps the share that extracted them
        s3.put_object(Bucket=known.bucket, Key=key, Body=json.dumps(manifest).encode(), ContentType="application/json",
                      IfNoneMatch="*")
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
        print(f"manifest share s3://{known.bucket}/{key} exists from an earlier run of this step: kept")

    def write_drive_manifest(hosts: list[str]) -> None:
        shares = [json.loads(s3.get_object(Bucket=known.bucket, Key=share_key(ours.manifest_key, h))["Body"].read())
                  for h in hosts]
        s3.put_object(Bucket=known.bucket, Key=ours.manifest_key, Body=json.dumps(merge_manifests(shares)).encode(),
                      ContentType="application/json")

    ended = record_share(boto3.client("dynamodb"), ours.table, manifest["drive_id"], host,
                         int(manifest["totals"]["extracted"]), ours.instances, before_end=write_drive_manifest)
    print(f"drive {manifest['drive_id']}: {manifest['totals']['extracted']} frames on {host}; "
          f"manifest s3://{known.bucket}/{key}; extraction {'ended' if ended else 'share recorded'}")
    return 0


def share_key(manifest_key: str, host: str) -> str:
    """Where one instance's share of the manifest goes: ``manifests/<host>.json`` next to the drive's manifest."""
    return f"{manifest_key.rsplit('/', 1)[0]}/manifests/{host}.json"


_CAMERA_SUMS = ("messages", "messages_read", "messages_lost", "extracted", "out_of_order", "stamps_from_log_time",
                "bytes_written")


def merge_manifests(shares: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One drive manifest from the shares of a split drive's instances (pure): logs, topics, problems and per-camera
    counts added up (cameras matched by topic, never by name), stamps and time range widened; a topic the shards named
    differently, or a name two topics share, is a ``camera_name_collision`` problem; validated, so the counts still
    reconcile."""
    if not shares:
        raise ValueError("no manifest shares to merge")
    drives = {share["drive_id"] for share in shares}
    if len(drives) != 1:
        raise ValueError(f"manifest shares of different drives: {sorted(drives)}")
    first = shares[0]
    statuses = {share["status"] for share in shares}
    merged: dict[str, Any] = {
        "schema_version": first["schema_version"], "drive_id": first["drive_id"],
        "status": statuses.pop() if len(statuses) == 1 else ("complete" if statuses <= {"complete",
                                                             "no_image_topics"} else "partial"),
        "created_at": max(share["created_at"] for share in shares), "destination": first["destination"],
        "options": first["options"], "logs": [log for share in shares for log in share["logs"]],
        "problems": [problem for share in shares for problem in share["problems"]],
    }
    topics: dict[str, dict[str, Any]] = {}
    for share in shares:
        for topic in share["topics"]:
            into = topics.setdefault(topic["name"], {**topic, "messages": 0})
            into["messages"] += topic["messages"]
    merged["topics"] = [topics[name] for name in sorted(topics)]
    ranges = [share["time_range"] for share in shares if share["time_range"]]
    merged["time_range"] = None if not ranges else {
        **{k: v for k, v in min(ranges, key=lambda r: r["start_ns"]).items() if k.startswith("start")},
        **{k: v for k, v in max(ranges, key=lambda r: r["end_ns"]).items() if k.startswith("end")}}
    by_topic: dict[str, dict[str, Any]] = {}  # cameras are keyed by topic: shards may name them differently
    names_of: dict[str, list[str]] = {}
    for share in shares:
        for name, camera in share["cameras"].items():
            topic = camera["topic"]
            if name not in names_of.setdefault(topic, []):
                names_of[topic].append(name)
            if topic not in by_topic:
                by_topic[topic] = {**camera, "skipped": dict(camera["skipped"])}
                continue
            into = by_topic[topic]
            for key in _CAMERA_SUMS:
                into[key] += camera[key]
            for reason, count in camera["skipped"].items():
                into["skipped"][reason] = into["skipped"].get(reason, 0) + count
            into["type"] = into["type"] or camera["type"]
            stamps = [s for s in (into["first_stamp"], camera["first_stamp"]) if s]
            into["first_stamp"] = min(stamps) if stamps else None  # fixed-width UTC strings sort in time order
            stamps = [s for s in (into["last_stamp"], camera["last_stamp"]) if s]
            into["last_stamp"] = max(stamps) if stamps else None
    cameras: dict[str, dict[str, Any]] = {}
    for topic in sorted(by_topic):
        names = sorted(names_of[topic])
        name = names[0]
        if len(names) > 1:
            merged["problems"].append({"kind": "camera_name_collision", "log": None, "topic": topic, "offset": None,
                                       "messages_lost": 0, "detail": f"the shards named {topic} differently: its "
                                       f"frames are under the cameras {', '.join(names)}"})
        if name in cameras:
            other = cameras[name]["topic"]
            unique = name
            while unique in cameras:
                unique += "_"
            merged["problems"].append({"kind": "camera_name_collision", "log": None, "topic": topic, "offset": None,
                                       "messages_lost": 0, "detail": f"the shards named {topic} and {other} both "
                                       f"{name!r}: their frames share that folder; {topic} is listed as {unique!r}"})
            name = unique
        cameras[name] = by_topic[topic]
        if topic in topics:
            topics[topic]["camera"] = name
    merged["cameras"] = cameras
    skipped: dict[str, int] = {}
    for camera in cameras.values():
        for reason, count in camera["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
    merged["totals"] = {**{key: sum(c[key] for c in cameras.values()) for key in
                           ("messages", "messages_read", "messages_lost", "extracted", "out_of_order",
                            "bytes_written")}, "skipped": skipped}
    return validate_drive_manifest(merged)


def run_build(argv: Sequence[str]) -> int:
    from drivelogs import build

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("--results", "--failures", "--quarantine", "--masks", "--overlays", "--output"):
        parser.add_argument(name, type=Path)
    known, _ = parser.parse_known_args(argv)
    for folder in (known.results, known.failures, known.quarantine, known.masks, known.overlays, known.output):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    return build.main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("extract", "build"):
        print("usage: python -m drivelogs.job <extract|build> [options]", file=sys.stderr)
        return 2
    return run_extract(args[1:]) if args[0] == "extract" else run_build(args[1:])


if __name__ == "__main__":
    sys.exit(main())
