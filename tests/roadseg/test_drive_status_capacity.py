"""`roadseg drive status` shows a drive whose job waits for SageMaker Processing capacity (lambda/drives.py
CapacityWait), and one whose wait ended in the capacity-wait dead-letter queue (moto's drives table)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from contracts import drive_table as table
from contracts.naming import drives_table_name
from roadseg.drives import drive_progress

TABLE = drives_table_name("roadseg-dev")
WAIT = {"job": "extract", "since": "2026-12-03T08:00:00.000Z", "attempts": 3, "deadline": "2026-12-03T20:00:00.000Z"}


@pytest.fixture
def dynamodb(offline_aws_env):
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", **table.key_schema())
        yield client


def _put(client, wait: dict) -> None:
    record = {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in wait.items()}
    client.put_item(TableName=TABLE, Item={table.PARTITION_KEY: {"S": "car-7/d1"}, table.SORT_KEY: {"S": "DRIVE"},
                                           table.STATUS: {"S": table.EXTRACTING},
                                           table.WAITING_FOR_CAPACITY: {"M": record}})


def test_progress_carries_the_wait_and_says_it_in_one_line() -> None:
    assert drive_progress("car-7/d1", {table.STATUS: table.EXTRACTING}).capacity_note is None
    waiting = drive_progress("car-7/d1", {table.STATUS: table.EXTRACTING, table.WAITING_FOR_CAPACITY: WAIT})
    assert waiting.capacity_note == ("the extraction is waiting for SageMaker Processing capacity since "
                                     "2026-12-03T08:00:00.000Z (3 refused start(s)); retried until "
                                     "2026-12-03T20:00:00.000Z")


def test_status_shows_a_waiting_drive_and_one_in_the_dead_letter_queue(dynamodb, run) -> None:
    _put(dynamodb, WAIT)
    rc, out, _ = run("drive", "status", "car-7/d1")
    assert rc == 0 and "waiting for SageMaker Processing capacity since 2026-12-03T08:00:00.000Z" in out
    rc, out, _ = run("drive", "status", "car-7/d1", "--json")
    assert rc == 0 and json.loads(out)["waiting_for_capacity"]["attempts"] == 3
    _put(dynamodb, {**WAIT, "job": "build", "expired_at": "2026-12-03T20:01:00.000Z"})
    rc, out, _ = run("drive", "status", "car-7/d1")
    assert rc == 0 and "the drive builder found no SageMaker Processing capacity" in out
    assert "capacity-wait dead-letter queue" in out
