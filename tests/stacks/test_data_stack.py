"""The data stack's buckets and key, checked property by property on the synthesized template."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from contracts.layout import INFERENCE


@pytest.fixture(scope="module", params=["dev", "prod"])
def env(request, synth):
    return synth(request.param)


@pytest.fixture(scope="module")
def template(env):
    return env.template(env.stacks.data)


def buckets(template) -> dict:
    return template.find_resources("AWS::S3::Bucket")


def logical_id(env, bucket) -> str:
    return env.stacks.data.get_logical_id(bucket.node.default_child)


def test_four_buckets_without_hard_coded_names(template):
    found = buckets(template)
    assert len(found) == 4
    assert all("BucketName" not in b["Properties"] for b in found.values())


def test_every_bucket_blocks_public_access(template):
    for bucket in buckets(template).values():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }


def test_every_bucket_policy_denies_plain_http(template):
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 4
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        deny_http = [s for s in statements if s["Effect"] == "Deny"
                     and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert deny_http, statements


def test_data_buckets_use_the_customer_managed_key(env, template):
    key_id = env.stacks.data.get_logical_id(env.stacks.data.buckets.key.node.default_child)
    for bucket in env.stacks.data.buckets.data_buckets:
        props = buckets(template)[logical_id(env, bucket)]["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
    log_props = buckets(template)[logical_id(env, env.stacks.data.buckets.access_logs)]["Properties"]
    algo = log_props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert algo == {"SSEAlgorithm": "AES256"}  # access-log delivery requires SSE-S3


def test_key_rotates_and_follows_the_removal_policy(env, template):
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    expected = "Retain" if env.config.retain else "Delete"
    for resource in [*template.find_resources("AWS::KMS::Key").values(), *buckets(template).values()]:
        assert resource["DeletionPolicy"] == expected
        assert resource["UpdateReplacePolicy"] == expected


def test_datasets_and_artifacts_are_versioned(env, template):
    for bucket in (env.stacks.data.buckets.datasets, env.stacks.data.buckets.artifacts):
        props = buckets(template)[logical_id(env, bucket)]["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}


def test_data_buckets_log_to_the_access_log_bucket(env, template):
    log_id = logical_id(env, env.stacks.data.buckets.access_logs)
    for bucket in env.stacks.data.buckets.data_buckets:
        props = buckets(template)[logical_id(env, bucket)]["Properties"]
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_id}
        assert props["LoggingConfiguration"]["LogFilePrefix"]


def rules_of(env, template, bucket) -> dict[str, dict]:
    props = buckets(template)[logical_id(env, bucket)]["Properties"]
    return {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}


def test_lifecycle_rules(env, template):
    retention = env.config.retention
    for bucket in [*env.stacks.data.buckets.data_buckets, env.stacks.data.buckets.access_logs]:
        rules = rules_of(env, template, bucket)
        abort = rules["abort-incomplete-multipart-uploads"]
        days = retention.abort_incomplete_upload_days
        assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": days}
    for bucket in env.stacks.data.buckets.data_buckets:
        noncurrent = rules_of(env, template, bucket)["expire-noncurrent-versions"]
        assert noncurrent["NoncurrentVersionExpiration"] == {"NoncurrentDays": retention.noncurrent_version_days}
    inference = rules_of(env, template, env.stacks.data.buckets.inference)
    for prefix in INFERENCE.expiring_outputs:
        rule = inference[f"expire-{prefix.strip('/')}"]
        assert rule["Prefix"] == prefix and rule["ExpirationInDays"] == retention.inference_output_days
    assert inference["expire-quarantine"]["Prefix"] == INFERENCE.quarantine
    assert inference["expire-quarantine"]["ExpirationInDays"] == retention.quarantine_days
    assert INFERENCE.incoming not in {r.get("Prefix") for r in inference.values()}  # frames awaiting work never expire


def test_outputs_expose_bucket_names(env, template):
    outputs = template.find_outputs("*")
    assert {"DatasetsBucketName", "ArtifactsBucketName", "InferenceBucketName"} <= set(outputs)
    template.has_output("InferenceBucketName", {"Value": Match.object_like({"Ref": Match.any_value()})})
    # Stable export names: other stacks import the buckets and key through these.
    exports = {o["Export"]["Name"] for o in outputs.values() if "Export" in o}
    prefix = env.config.prefix
    assert {f"{prefix}:{n}" for n in ("DatasetsBucketArn", "ArtifactsBucketArn", "InferenceBucketArn",
                                      "DataKeyArn")} <= exports
