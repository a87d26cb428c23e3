"""Whole drives in the inference stack: the drives table (keys, encryption, PITR, stream) and the ingest and
postprocess functions' environment and least-privilege grants on it."""

from __future__ import annotations

import json

import pytest

from contracts import drive_table, naming
from contracts.drive_timeline import TIMELINE_TABLE_NAME

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
    """The frame outcome counters (TransactWriteItems: PutItem + UpdateItem) only from ingest and postprocess; the
    drive path's principals have exactly their own actions on the table (tested below)."""
    logical_id, _ = table(template)
    writers = {k for k, r in of_type(template, "AWS::IAM::Policy").items()
               if logical_id in json.dumps(r["Properties"]["PolicyDocument"])}
    drive_path = ("DriveProcessingLauncher", "DriveProcessingCompletion", "DriveProcessingExtractionRole")
    assert all("Ingest" in k or "Postprocess" in k or k.startswith(drive_path) for k in writers), writers
    assert not [k for k in writers if "BuilderRole" in k]


# -- the drive path: functions, event wiring, job roles, the Glue timeline table ------------------------------------


def _resource(template: dict, kind: str, marker: str) -> tuple[str, dict]:
    (found,) = [(k, r) for k, r in of_type(template, kind).items() if k.startswith(marker)]
    return found


def _role_statements(template: dict, marker: str) -> list[dict]:
    """The statements of the default policy of the role whose logical id starts with ``marker``."""
    (policy,) = [r for k, r in of_type(template, "AWS::IAM::Policy").items() if k.startswith(marker)]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def _resources(statement: dict) -> list:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def _bucket_paths(statements: list[dict], action: str) -> set[str]:
    """The inference-bucket object paths (``drives/*``) on which ``action`` is allowed."""
    found = set()
    for statement in statements:
        if action not in _actions(statement):
            continue
        for resource in _resources(statement):
            join = resource.get("Fn::Join") if isinstance(resource, dict) else None
            if join and join[1][0] == {"Fn::ImportValue": f"{PREFIX}:InferenceBucketArn"}:
                found.add(join[1][1].lstrip("/"))
    return found


PREFIX = "roadseg-dev"


@pytest.fixture(scope="module")
def drive_env(template) -> dict:
    return {name: _resource(template, "AWS::Lambda::Function", f"DriveProcessing{name}")[1]["Properties"]
            for name in ("Launcher", "Completion")}


def test_drive_functions_have_their_handlers_and_the_drives_environment(env, template, drive_env) -> None:
    from contracts.lambda_env import DrivesEnvironment

    assert drive_env["Launcher"]["Handler"] == "drives.launch_handler"
    assert drive_env["Completion"]["Handler"] == "drives.completion_handler"
    table_id, _ = table(template)
    extraction_id, _ = _resource(template, "AWS::IAM::Role", "DriveProcessingExtractionRole")
    builder_id, _ = _resource(template, "AWS::IAM::Role", "DriveProcessingBuilderRole")
    for props in drive_env.values():
        variables = props["Environment"]["Variables"]
        # Every variable the codec reads is set (tokens stand in for deploy-time values).
        parsed = DrivesEnvironment.from_env({k: v if isinstance(v, str) else "x" * 3
                                             for k, v in variables.items()})
        assert parsed.job_prefix == env.config.prefix
        assert variables["DRIVES_TABLE"] == {"Ref": table_id}
        assert variables["EXTRACTION_ROLE_ARN"] == {"Fn::GetAtt": [extraction_id, "Arn"]}
        assert variables["BUILDER_ROLE_ARN"] == {"Fn::GetAtt": [builder_id, "Arn"]}
        assert variables["PROCESSING_IMAGE"] == {"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "Processing"]}
        assert variables["KMS_KEY_ARN"] == {"Fn::ImportValue": f"{PREFIX}:DataKeyArn"}
        assert variables["GLUE_DATABASE"] == naming.drives_glue_database_name(env.config.prefix)
        assert variables["GLUE_TABLE"] == TIMELINE_TABLE_NAME
        assert variables["POWERTOOLS_SERVICE_NAME"] == "roadseg-drives"
        assert json.loads(variables["BUILDER_ARGUMENTS"])["--scheme"] == env.config.classes.scheme
        for uri in ("CODE_ENTRY_URI", "CODE_PACKAGE_URI", "DRIVE_WHEELS_URI", "SETTINGS_URI"):
            assert "cdk-hnb659fds-assets" in json.dumps(variables[uri])
        # Lists travel as the job settings' files, not in the environment (contracts.job_settings).
        assert "CAMERAS" not in variables and "--classes-json" not in variables["BUILDER_ARGUMENTS"]
        assert ("EXTRACTION_ARGUMENTS" in variables) == bool(env.config.drives.cameras)


def test_drive_logs_reach_the_launcher_and_frames_still_reach_the_ingest_queue(template) -> None:
    """One notification configuration per bucket; drives/ and incoming/ are disjoint prefixes for the same event
    type (S3 refuses overlapping ones: aws_docs.S3_NOTIFICATION_FILTER_DOC)."""
    _, notifications = _resource(template, "Custom::S3BucketNotifications", "SharedDataInferenceNotifications")
    config = notifications["Properties"]["NotificationConfiguration"]
    launcher_id, _ = _resource(template, "AWS::Lambda::Function", "DriveProcessingLauncher")
    (to_launcher,) = config["LambdaFunctionConfigurations"]
    assert to_launcher == {"Events": ["s3:ObjectCreated:*"], "LambdaFunctionArn": {"Fn::GetAtt": [launcher_id, "Arn"]},
                           "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "drives/"}]}}}
    (to_queue,) = config["QueueConfigurations"]
    assert to_queue["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}}
    assert "PreprocessorsIngestQueue" in to_queue["QueueArn"]["Fn::GetAtt"][0]
    prefixes = [c["Filter"]["Key"]["FilterRules"][0]["Value"] for c in (to_launcher, to_queue)]
    assert not any(a != b and a.startswith(b) for a in prefixes for b in prefixes)
    (permission,) = [r for r in of_type(template, "AWS::Lambda::Permission").values()
                     if r["Properties"]["FunctionName"] == {"Fn::GetAtt": [launcher_id, "Arn"]}]
    assert permission["Properties"]["Principal"] == "s3.amazonaws.com"


def test_completion_reads_only_drive_items_from_the_stream_with_bounded_retries(env, template) -> None:
    table_id, _ = table(template)
    completion_id, _ = _resource(template, "AWS::Lambda::Function", "DriveProcessingCompletion")
    (mapping,) = [r["Properties"] for r in of_type(template, "AWS::Lambda::EventSourceMapping").values()
                  if r["Properties"]["FunctionName"] == {"Ref": completion_id}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    (pattern,) = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    # The dynamodb key only (aws_docs.DDB_EVENT_FILTER_DOC); NewImage: a REMOVE record has none, so INSERT and MODIFY.
    assert pattern == {"dynamodb": {"NewImage": {drive_table.SORT_KEY: {"S": [
        drive_table.DRIVE_ITEM, {"prefix": drive_table.COUNTER_ITEM_PREFIX}]}}}}
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == env.config.drives.stream_retry_attempts >= 0
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0].startswith(
        "DriveProcessingCompletionFailedInvocations")


def _statement_with(statements: list[dict], action: str) -> list[dict]:
    return [s for s in statements if action in _actions(s)]


# The launcher also starts the builds that waited for Processing capacity (it consumes the capacity-wait queue).
@pytest.mark.parametrize(("function", "roles"), [("Launcher", ("ExtractionRole", "BuilderRole")),
                                                 ("Completion", ("BuilderRole",))])
def test_functions_start_only_drive_jobs_and_pass_only_their_job_roles(template, function, roles) -> None:
    statements = _role_statements(template, f"DriveProcessing{function}ServiceRoleDefaultPolicy")
    (start,) = _statement_with(statements, "sagemaker:CreateProcessingJob")
    assert sorted(_actions(start)) == ["sagemaker:AddTags", "sagemaker:CreateProcessingJob"]
    assert json.dumps(start["Resource"]).endswith(f':processing-job/{naming.drive_job_prefix(PREFIX)}*"]]}}')
    role_ids = [_resource(template, "AWS::IAM::Role", f"DriveProcessing{role}")[0] for role in roles]
    pass_roles = _statement_with(statements, "iam:PassRole")
    assert [s["Resource"] for s in pass_roles] == [{"Fn::GetAtt": [role_id, "Arn"]} for role_id in role_ids]
    for pass_role in pass_roles:
        assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    (grant,) = _statement_with(statements, "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert not [s for s in statements if any(a in ("sagemaker:*", "iam:*", "s3:*") for a in _actions(s))]


def test_launcher_lists_drive_logs_writes_drive_outputs_and_creates_the_drive_item(template) -> None:
    statements = _role_statements(template, "DriveProcessingLauncherServiceRoleDefaultPolicy")
    (listing,) = _statement_with(statements, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["drives/*"]}}
    assert _bucket_paths(statements, "s3:PutObject") == {"drive-outputs/*"}
    assert not _bucket_paths(statements, "s3:GetObject*")
    table_id, _ = table(template)
    on_table = [s for s in statements if table_id in json.dumps(s["Resource"])]
    assert [sorted(_actions(s)) for s in on_table] == [["dynamodb:GetItem", "dynamodb:PutItem",
                                                         "dynamodb:UpdateItem"]]


def test_completion_claims_queries_writes_manifests_and_registers_partitions(env, template) -> None:
    statements = _role_statements(template, "DriveProcessingCompletionServiceRoleDefaultPolicy")
    table_id, _ = table(template)
    on_table = {a for s in statements if json.dumps({"Fn::GetAtt": [table_id, "Arn"]}) in json.dumps(s["Resource"])
                for a in _actions(s)}
    assert on_table == {"dynamodb:Query", "dynamodb:UpdateItem"}
    assert _bucket_paths(statements, "s3:PutObject") == {"drive-outputs/*"}
    assert _bucket_paths(statements, "s3:GetObject*") == {"drive-outputs/*/manifest.json"}
    (glue_statement,) = _statement_with(statements, "glue:BatchCreatePartition")
    assert sorted(_actions(glue_statement)) == ["glue:BatchCreatePartition", "glue:GetTable"]
    database = naming.drives_glue_database_name(env.config.prefix)
    tails = sorted(r["Fn::Join"][1][-1] for r in _resources(glue_statement))
    assert tails == [":catalog", f":database/{database}", f":table/{database}/{TIMELINE_TABLE_NAME}"]


def test_drive_manifest_name_matches_the_contract() -> None:
    from contracts.drives import DriveId, DriveOutputs
    from stacks.drive_processing import DRIVE_MANIFEST

    outputs = DriveOutputs(DriveId.parse("car-1/2024-05-01T10-00-00"))
    assert outputs.manifest == outputs.prefix + DRIVE_MANIFEST


def test_extraction_role_reads_logs_writes_frames_and_outputs_and_updates_the_table(template) -> None:
    statements = _role_statements(template, "DriveProcessingExtractionRoleDefaultPolicy")
    assert _bucket_paths(statements, "s3:GetObject*") == {"drives/*", "drive-outputs/*/extract-inputs.manifest",
                                                          "drive-outputs/*/manifests/*"}
    assert _bucket_paths(statements, "s3:PutObject") == {"incoming/*", "drive-outputs/*"}
    table_id, _ = table(template)
    on_table = [s for s in statements if table_id in json.dumps(s["Resource"])]
    assert [sorted(_actions(s)) for s in on_table] == [["dynamodb:GetItem", "dynamodb:UpdateItem"]]
    _assert_job_basics(statements)


def test_builder_role_reads_the_drive_documents_and_writes_drive_outputs_only(template) -> None:
    statements = _role_statements(template, "DriveProcessingBuilderRoleDefaultPolicy")
    assert _bucket_paths(statements, "s3:GetObject*") == {"results/*", "async-output/*", "failures/*", "quarantine/*",
                                                          "drive-outputs/*"}
    assert _bucket_paths(statements, "s3:PutObject") == {"drive-outputs/*"}
    table_id, _ = table(template)
    assert not [s for s in statements if table_id in json.dumps(s)]
    _assert_job_basics(statements)


def _assert_job_basics(statements: list[dict]) -> None:
    (logs,) = _statement_with(statements, "logs:PutLogEvents")
    assert json.dumps(logs["Resource"]).endswith(':log-group:/aws/sagemaker/ProcessingJobs:*"]]}')
    (metrics,) = _statement_with(statements, "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}}
    (pull,) = _statement_with(statements, "ecr:BatchGetImage")
    assert pull["Resource"] == {"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "ProcessingRepository"]}
    assert "cdk-hnb659fds-assets" in json.dumps(_statement_with(statements, "s3:GetObject*"))
    assert not [s for s in statements if any(a.endswith(":*") for a in _actions(s))]


def test_job_roles_are_assumed_by_sagemaker_only(template) -> None:
    for marker in ("DriveProcessingExtractionRole", "DriveProcessingBuilderRole"):
        _, role = _resource(template, "AWS::IAM::Role", marker)
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_timeline_table_is_the_contract(env, template) -> None:
    """Columns and partition keys from contracts/drive_timeline.py, Parquet (aws_docs.PARQUET_SERDE_DOC), over the
    inference bucket's drive-outputs/timeline/."""
    from contracts.drive_timeline import TIMELINE_COLUMNS, TIMELINE_PARTITION_KEYS, TIMELINE_TABLE_PREFIX

    _, database = _resource(template, "AWS::Glue::Database", "DriveProcessingDatabase")
    database_name = naming.drives_glue_database_name(env.config.prefix)
    assert database["Properties"]["DatabaseInput"]["Name"] == database_name
    _, timeline = _resource(template, "AWS::Glue::Table", "DriveProcessingTimeline")
    props = timeline["Properties"]
    assert props["DatabaseName"] == database_name
    table_input = props["TableInput"]
    assert table_input["Name"] == TIMELINE_TABLE_NAME and table_input["TableType"] == "EXTERNAL_TABLE"
    as_contract = lambda columns: [{"Name": c.name, "Type": c.glue_type, "Comment": c.comment}  # noqa: E731
                                   for c in columns]
    assert table_input["PartitionKeys"] == as_contract(TIMELINE_PARTITION_KEYS)
    storage = table_input["StorageDescriptor"]
    assert storage["Columns"] == as_contract(TIMELINE_COLUMNS)
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert storage["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert storage["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    location = storage["Location"]["Fn::Join"][1]
    assert location[0] == "s3://" and location[-1] == f"/{TIMELINE_TABLE_PREFIX}"
    assert not set(c.name for c in TIMELINE_COLUMNS) & set(c.name for c in TIMELINE_PARTITION_KEYS)


def test_drive_path_has_its_five_alarms(template) -> None:
    alarms = [k for k in of_type(template, "AWS::CloudWatch::Alarm") if k.startswith("DriveProcessing")]
    assert len(alarms) == 5


# -- waiting for Processing capacity (lambda/drives.py CapacityWait) ------------------------------------------------


def _queue(template: dict, name: str) -> tuple[str, dict]:
    """The queue ``DriveProcessing<name>`` (its logical id: that and CDK's 8-character hash)."""
    (found,) = [(k, r) for k, r in of_type(template, "AWS::SQS::Queue").items() if k[:-8] == f"DriveProcessing{name}"]
    return found


def test_capacity_wait_queue_is_encrypted_redriven_and_consumed_by_the_launcher(env, template, drive_env) -> None:
    queue_id, queue = _queue(template, "CapacityWait")
    dead_id, dead = _queue(template, "CapacityWaitDeadLetters")
    key = queue["Properties"]["KmsMasterKeyId"]
    assert key == dead["Properties"]["KmsMasterKeyId"] and "OperationsKey" in json.dumps(key)
    assert queue["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dead_id, "Arn"]},
                                                    "maxReceiveCount": 3}
    launcher_timeout = env.config.drives.launcher.timeout_seconds
    assert queue["Properties"]["VisibilityTimeout"] == 6 * launcher_timeout  # Lambda's SQS recommendation
    launcher_id, _ = _resource(template, "AWS::Lambda::Function", "DriveProcessingLauncher")
    (mapping,) = [r["Properties"] for r in of_type(template, "AWS::Lambda::EventSourceMapping").values()
                  if r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}]
    assert mapping["FunctionName"] == {"Ref": launcher_id}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    variables = drive_env["Launcher"]["Environment"]["Variables"]
    assert variables["CAPACITY_QUEUE_URL"] == {"Ref": queue_id}
    assert variables["CAPACITY_DEAD_LETTER_URL"] == {"Ref": dead_id}
    assert variables["CAPACITY_MAX_WAIT_SECONDS"] == str(env.config.drives.capacity_max_wait_hours * 3600)
    assert drive_env["Completion"]["Environment"]["Variables"]["CAPACITY_QUEUE_URL"] == {"Ref": queue_id}


@pytest.mark.parametrize(("function", "queues"), [("Launcher", ("CapacityWait", "CapacityWaitDeadLetters")),
                                                  ("Completion", ("CapacityWait",))])
def test_drive_functions_send_only_to_their_capacity_queues_with_the_key(template, function, queues) -> None:
    statements = _role_statements(template, f"DriveProcessing{function}ServiceRoleDefaultPolicy")
    sends = {json.dumps(r) for s in _statement_with(statements, "sqs:SendMessage") for r in _resources(s)}
    expected = {json.dumps({"Fn::GetAtt": [_queue(template, q)[0], "Arn"]}) for q in queues}
    failed_invocations = {s for s in sends if "FailedInvocations" in s}  # Lambda's own DLQ delivery
    assert sends - failed_invocations == expected
    data_keys = [s for s in _statement_with(statements, "kms:GenerateDataKey*") if "OperationsKey" in json.dumps(s)]
    assert data_keys, "an encrypted queue needs the key's data keys to send (SQS_KMS_DOC)"


def test_capacity_wait_dead_letters_are_alarmed(template) -> None:
    dead_id, _ = _queue(template, "CapacityWaitDeadLetters")
    (alarm,) = [r["Properties"] for r in of_type(template, "AWS::CloudWatch::Alarm").values()
                if {"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_id, "QueueName"]}}
                in r["Properties"].get("Dimensions", [])]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1
    assert alarm["AlarmActions"], "the capacity-wait DLQ alarm notifies the alarm topic"


@pytest.mark.parametrize("hours", [0, 169])
def test_capacity_max_wait_is_validated(hours) -> None:
    from pydantic import ValidationError

    from envconfig.config import DrivesConfig

    assert DrivesConfig().capacity_max_wait_hours == 12
    with pytest.raises(ValidationError, match="capacity_max_wait_hours"):
        DrivesConfig(capacity_max_wait_hours=hours)


@pytest.mark.parametrize("example", ["isolated-create", "isolated-import"])
def test_isolated_network_mode_runs_the_drive_jobs_in_the_vpc(isolated_synth, example) -> None:
    """The jobs the drive functions start get the VPC's subnets and security groups (JOB_SUBNETS,
    JOB_SECURITY_GROUPS), and their roles may manage the jobs' network interfaces there."""
    env = isolated_synth(example)
    template = env.templates()[env.stacks.inference.stack_name]
    for name in ("Launcher", "Completion"):
        variables = _resource(template, "AWS::Lambda::Function", f"DriveProcessing{name}")[1]["Properties"][
            "Environment"]["Variables"]
        assert variables["JOB_SUBNETS"] and variables["JOB_SECURITY_GROUPS"], name
    for role in ("DriveProcessingExtractionRole", "DriveProcessingBuilderRole"):
        vpc = [s for s in _role_statements(template, role) if s.get("Sid") == "NetworkInterfacesInTheVpc"]
        assert vpc and "ec2:CreateNetworkInterface" in _actions(vpc[0]), role


def test_without_a_vpc_the_drive_jobs_get_none(drive_env) -> None:
    for name, function in drive_env.items():
        assert function["Environment"]["Variables"]["JOB_SUBNETS"] == "", name


def test_extraction_skips_what_ingest_would_refuse(env, drive_env) -> None:
    variables = drive_env["Launcher"]["Environment"]["Variables"]
    pre = env.config.preprocessing
    assert (variables["MAX_INPUT_BYTES"], variables["MAX_INPUT_PIXELS"]) == (str(pre.max_input_bytes),
                                                                             str(pre.max_input_pixels))
