"""The pipeline role reads every datasets prefix `roadseg pipeline start` may point InputDataS3Uri at
(contracts.layout.PIPELINE_INPUT_PREFIXES: raw trees and dataset versions); the rule notices a role that cannot."""

from __future__ import annotations

import copy
import json

from contracts.layout import DATASETS, PIPELINE_INPUT_PREFIXES
from stacks.checks.service_contracts import RULES, Assembly, Context

RULE = "pipeline-role-reads-dataset-inputs"


def _templates(env) -> dict[str, dict]:
    return {stack.stack_name: json.loads((env.outdir / stack.template_file).read_text()) for stack in env.stacks.all}


def _violations(templates: dict[str, dict]) -> list:
    return list(RULES[RULE](Assembly(templates), Context()))


def _without_versions(templates: dict[str, dict]) -> int:
    """Drop every policy resource naming versions/* of a bucket; returns how many were dropped."""
    dropped = 0
    for template in templates.values():
        for body in template["Resources"].values():
            if body["Type"] != "AWS::IAM::Policy":
                continue
            for statement in body["Properties"]["PolicyDocument"]["Statement"]:
                resources = statement.get("Resource")
                if not isinstance(resources, list):
                    continue
                kept = [r for r in resources if f"/{DATASETS.versions}*" not in json.dumps(r)]
                dropped += len(resources) - len(kept)
                statement["Resource"] = kept
    return dropped


def test_the_pipeline_role_reads_raw_trees_and_dataset_versions(synth):
    assert DATASETS.versions in PIPELINE_INPUT_PREFIXES and DATASETS.raw in PIPELINE_INPUT_PREFIXES
    templates = _templates(synth("dev"))
    assert _violations(templates) == []
    broken = copy.deepcopy(templates)
    assert _without_versions(broken) >= 1
    violations = _violations(broken)
    assert len(violations) == 2  # the training and the tuning pipeline
    assert any("Training" in v.resource for v in violations) and any("Tuning" in v.resource for v in violations)
    assert all("under versions/ of the datasets bucket" in v.message for v in violations)
    assert all(v.doc.startswith("https://docs.aws.amazon.com/") for v in violations)


def test_the_datasets_bucket_refuses_unconditional_writes_under_versions(synth):
    """S3 enforces labelling.versions' If-None-Match: a PutObject under versions/ without it is denied to anyone."""
    env = synth("dev")
    templates = _templates(env)
    found = []
    for template in templates.values():
        for body in template["Resources"].values():
            if body["Type"] != "AWS::S3::BucketPolicy":
                continue
            for statement in body["Properties"]["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "DatasetVersionsAreWrittenOnce":
                    found.append(statement)
    assert len(found) == 1
    statement = found[0]
    assert statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"}
    assert statement["Action"] == "s3:PutObject"
    assert statement["Condition"] == {"Null": {"s3:if-none-match": "true"}}
    assert json.dumps(statement["Resource"]).endswith(f'"/{DATASETS.versions}*"]]}}')


IMMUTABLE = "dataset-versions-are-immutable"


def _immutable_violations(templates: dict[str, dict]) -> list:
    return list(RULES[IMMUTABLE](Assembly(templates), Context()))


def _datasets_statements(templates: dict[str, dict]) -> list[dict]:
    return [statement for template in templates.values() for body in template["Resources"].values()
            if body["Type"] == "AWS::S3::BucketPolicy"
            for statement in body["Properties"]["PolicyDocument"]["Statement"]
            if str(statement.get("Sid", "")).startswith("DatasetVersions")]


def test_dataset_versions_are_never_deleted_and_the_rule_notices_each_gap(synth):
    """The policy denies DeleteObject and DeleteObjectVersion under versions/ to everyone, unconditionally (no
    bucket has auto-delete, so no role needs an exemption); the contract rule fails for each piece taken away."""
    templates = _templates(synth("dev"))
    deny_delete = [s for s in _datasets_statements(templates) if s["Sid"] == "DatasetVersionsAreNeverDeleted"]
    assert len(deny_delete) == 1
    statement = deny_delete[0]
    assert statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"} and "Condition" not in statement
    assert sorted(statement["Action"]) == ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    assert json.dumps(statement["Resource"]).endswith(f'"/{DATASETS.versions}*"]]}}')
    assert not any(body["Type"] == "Custom::S3AutoDeleteObjects"
                   for template in templates.values() for body in template["Resources"].values())
    assert _immutable_violations(templates) == []

    for sid, expected in (("DatasetVersionsAreNeverDeleted", ("deny s3:DeleteObject ", "deny s3:DeleteObjectVersion")),
                          ("DatasetVersionsAreWrittenOnce", ("without If-None-Match",))):
        broken = copy.deepcopy(templates)
        for s in _datasets_statements(broken):
            if s["Sid"] == sid:
                s["Effect"] = "Allow"
        messages = [v.message for v in _immutable_violations(broken)]
        assert len(messages) == len(expected) and all(any(e in m for m in messages) for e in expected), messages

    # An expiry of current objects over the whole bucket would reach versions/ (lifecycle ignores the policy).
    broken = copy.deepcopy(templates)
    datasets = [body for template in broken.values() for body in template["Resources"].values()
                if body["Type"] == "AWS::S3::Bucket" and any(
                    r.get("Id") == "expire-noncurrent-versions"
                    for r in (body["Properties"].get("LifecycleConfiguration") or {}).get("Rules", []))]
    for body in datasets:
        body["Properties"]["LifecycleConfiguration"]["Rules"].append(
            {"Id": "expire-everything", "Status": "Enabled", "ExpirationInDays": 30})
    violations = _immutable_violations(broken)
    assert len(violations) == 1 and "expire-everything" in violations[0].message
    assert all(v.doc.startswith("https://docs.aws.amazon.com/") for v in violations)
