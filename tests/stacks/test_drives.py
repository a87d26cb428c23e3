"""Whole drives in the inference stack: the drives table (keys, encryption, PITR, stream) and the ingest and
postprocess functions' environment and least-privilege grants on it."""

from __future__ import annotations

import json

import pytest

from contracts import drive_table, naming

COUNT_ACTIONS = ["dynamodb:PutItem", "dynamodb:UpdateItem"]


@pytest.fixture(scope="module")
def env(synth):
    return synth("dev")


@pytest.fixture(scope="module")
def template(env):
    return env.template(env.stacks.inference).to_json()


def of_type(template: dict, kind: str) -> dict:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def table(template: dict) -> tuple[str, dict]:
    (found,) = of_type(template, "AWS::DynamoDB::Table").items()
    return found


def test_drives_table_keys_billing_encryption_pitr_and_stream(env, template) -> None:
    _, resource = table(template)
    props = resource["Properties"]
    assert props["TableName"] == naming.drives_table_name(env.config.prefix)
    assert props["KeySchema"] == [{"AttributeName": drive_table.PARTITION_KEY, "KeyType": "HASH"},
                                  {"AttributeName": drive_table.SORT_KEY, "KeyType": "RANGE"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # The data key (customer-managed), not an AWS-owned key.
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                         "KMSMasterKeyId": {"Fn::ImportValue": f"{env.config.prefix}:DataKeyArn"}}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def _function(template: dict, marker: str) -> dict:
    return next(r for k, r in of_type(template, "AWS::Lambda::Function").items() if marker in k)


def _statements(template: dict, marker: str) -> list[dict]:
    return [s for k, r in of_type(template, "AWS::IAM::Policy").items() if marker in k
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("marker", ["PreprocessorsIngest", "PreprocessorsPostprocess"])
def test_counting_functions_get_the_table_and_exactly_put_and_update(template, marker) -> None:
    logical_id, _ = table(template)
    variables = _function(template, marker)["Properties"]["Environment"]["Variables"]
    assert variables["DRIVES_TABLE"] == {"Ref": logical_id}
    on_table = [s for s in _statements(template, marker) if logical_id in json.dumps(s["Resource"])]
    assert on_table == [{"Action": COUNT_ACTIONS, "Effect": "Allow",
                         "Resource": {"Fn::GetAtt": [logical_id, "Arn"]}}]


def test_realtime_front_neither_knows_nor_touches_the_table(template) -> None:
    logical_id, _ = table(template)
    variables = _function(template, "PreprocessorsRealtimeFront")["Properties"]["Environment"]["Variables"]
    assert "DRIVES_TABLE" not in variables
    assert not [s for s in _statements(template, "RealtimeFront") if logical_id in json.dumps(s)]


def test_no_other_principal_may_write_counters(template) -> None:
    logical_id, _ = table(template)
    writers = {k for k, r in of_type(template, "AWS::IAM::Policy").items()
               if logical_id in json.dumps(r["Properties"]["PolicyDocument"])}
    assert all("Ingest" in k or "Postprocess" in k for k in writers), writers
