"""The whole-drive Processing jobs' own steps around extract.py and build.py (which stay job-agnostic).

``extract``: runs training.drives.extract on this instance's share of the logs, uploads the manifest to
``DriveOutputs(drive).manifest`` (instance 1; the others to ``manifests/<host>.json`` next to it) and records the end
of this share on the DRIVE item of the drives table in ONE conditional update: ``ADD extracted :n,
extracted_hosts :{host}`` only if this host is not yet in ``extracted_hosts`` (a rerun of the step counts nothing
twice); the instance whose update completes the set of hosts sets ``status`` = ``extracted`` (conditional on
``extracting``). The completion function then sees a DRIVE image with ``extracted`` set.

``build``: creates the input folders a drive may lack (no failures, no quarantine) and runs training.drives.build.

    python -m training.drives.job extract --drive-id V/D --log-dir DIR --bucket B --manifest M.json --table T \\
        --manifest-key drive-outputs/V/D/manifest.json --instances N [extract options]
    python -m training.drives.job build --drive-id V/D --results DIR ... (training.drives.build's options)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts import drive_table as T

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


def record_share(client: Any, table: str, drive_id: str, host: str, extracted: int, instances: int) -> bool:
    """Count this host's frames; end the extraction when every host has. True when this call ended it."""
    try:
        item = client.update_item(**share_update(table, drive_id, host, extracted))["Attributes"]
    except client.exceptions.ConditionalCheckFailedException:
        item = client.get_item(TableName=table, Key=share_update(table, drive_id, host, 0)["Key"])["Item"]
    if len(item.get(EXTRACTED_HOSTS, {}).get("SS", [])) < instances:
        return False
    try:
        client.update_item(**end_update(table, drive_id))
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def run_extract(argv: Sequence[str]) -> int:
    import boto3

    from training.drives import extract

    parser = argparse.ArgumentParser(prog="python -m training.drives.job extract")
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
    key = ours.manifest_key
    if host != "algo-1":
        key = f"{key.rsplit('/', 1)[0]}/manifests/{host}.json"
    boto3.client("s3").put_object(Bucket=known.bucket, Key=key, Body=json.dumps(manifest).encode(),
                                  ContentType="application/json")
    ended = record_share(boto3.client("dynamodb"), ours.table, manifest["drive_id"], host,
                         int(manifest["totals"]["extracted"]), ours.instances)
    print(f"drive {manifest['drive_id']}: {manifest['totals']['extracted']} frames on {host}; "
          f"manifest s3://{known.bucket}/{key}; extraction {'ended' if ended else 'share recorded'}")
    return 0


def run_build(argv: Sequence[str]) -> int:
    from training.drives import build

    parser = argparse.ArgumentParser(add_help=False)
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
        print("usage: python -m training.drives.job <extract|build> [options]", file=sys.stderr)
        return 2
    return run_extract(args[1:]) if args[0] == "extract" else run_build(args[1:])


if __name__ == "__main__":
    sys.exit(main())
