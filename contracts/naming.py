"""Every resource name, as a pure function of the environment's ``prefix`` (``config.prefix``, e.g. "roadseg-dev").

The stacks create resources under these names, and the operator commands, preflight, the rollout Lambda and the
local rehearsal find them by the same functions, so a name is never rebuilt by hand.
"""

from __future__ import annotations

import hashlib

# Logical stack keys (what an operator command asks for) and the CloudFormation parameter the rollout updates.
DATA, TRAINING, INFERENCE = "Data", "Training", "Inference"
MODEL_PACKAGE_PARAMETER = "ModelPackageArn"
# Its CloudFormation type: the value of the SSM parameter serving_package_parameter(prefix) (stacks.registry_model).
SSM_PARAMETER_TYPE = "AWS::SSM::Parameter::Value<String>"
VARIANT_NAME = "AllTraffic"  # the one production variant of each endpoint
# The value of the serving-package SSM parameter while no package is approved for the environment (an SSM String
# value cannot be empty: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html).
NO_MODEL_PACKAGE = "none"

# CloudFormation output keys (stack outputs, read with DescribeStacks).
DATASETS_BUCKET_NAME = "DatasetsBucketName"
ARTIFACTS_BUCKET_NAME = "ArtifactsBucketName"
INFERENCE_BUCKET_NAME = "InferenceBucketName"
# The data key's ARN as a plain output (not exported): what a command reads to encrypt with the key. Outputs of the
# other stacks carry no Fn::ImportValue of the data stack's exports (cfn-lint W6001), so a command joins them itself.
DATA_KEY_ARN = "DataKeyArn"
TRAINING_PIPELINE_NAME = "TrainingPipelineName"
TUNING_PIPELINE_NAME = "TuningPipelineName"
MODEL_PACKAGE_GROUP_NAME = "ModelPackageGroupName"
EXECUTION_ROLE_ARN = "ExecutionRoleArn"
ALARM_TOPIC_ARN = "AlarmTopicArn"
REALTIME_ENDPOINT_NAME = "RealtimeEndpointName"  # only while a model is approved
ASYNC_ENDPOINT_NAME = "AsyncEndpointName"  # only while a model is approved
SERVING_STATUS = "ServingStatus"
REALTIME_FRONT_URL = "RealtimeFrontUrl"
REALTIME_FRONT_INVOKE_POLICY_ARN = "RealtimeFrontInvokePolicyArn"
# What `roadseg label score` needs to start a scoring Processing job (a JSON object: labelling.scoring_job
# .ScoringJobSettings) and the name prefix of those jobs (a plain string the failure-alarm contract reads).
LABEL_SCORING_JOB = "LabelScoringJob"
LABEL_SCORING_JOB_PREFIX = "LabelScoringJobPrefix"

# Which stack (logical key) holds each output.
OUTPUT_STACKS: dict[str, str] = {
    DATASETS_BUCKET_NAME: DATA, ARTIFACTS_BUCKET_NAME: DATA, INFERENCE_BUCKET_NAME: DATA, DATA_KEY_ARN: DATA,
    TRAINING_PIPELINE_NAME: TRAINING, TUNING_PIPELINE_NAME: TRAINING, MODEL_PACKAGE_GROUP_NAME: TRAINING,
    EXECUTION_ROLE_ARN: TRAINING,
    ALARM_TOPIC_ARN: INFERENCE, REALTIME_ENDPOINT_NAME: INFERENCE, ASYNC_ENDPOINT_NAME: INFERENCE,
    SERVING_STATUS: INFERENCE, REALTIME_FRONT_URL: INFERENCE, REALTIME_FRONT_INVOKE_POLICY_ARN: INFERENCE,
    LABEL_SCORING_JOB: INFERENCE, LABEL_SCORING_JOB_PREFIX: INFERENCE,
}
# Outputs naming the prefix of jobs an operator command starts (not a role of the app): the contract
# async-jobs-reach-the-alarm-topic requires a failure rule for each (job kind by output key).
OPERATOR_JOB_PREFIX_OUTPUTS: dict[str, str] = {LABEL_SCORING_JOB_PREFIX: "processing"}

# Cross-stack export keys of the data stack (the export name is ``export_name(prefix, key)``).
DATASETS_BUCKET_ARN_EXPORT = "DatasetsBucketArn"
ARTIFACTS_BUCKET_ARN_EXPORT = "ArtifactsBucketArn"
INFERENCE_BUCKET_ARN_EXPORT = "InferenceBucketArn"
DATA_KEY_ARN_EXPORT = "DataKeyArn"


# The CDK bootstrap's default qualifier: the bootstrap stack's roles, file-asset bucket and version parameter carry it
# (`cdk bootstrap --qualifier` changes it: https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-customizing.html).
# aws_cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER is the same value (tests/contracts/test_bootstrap_names.py); it is
# written here so that the operator command and the rehearsal name it without loading the CDK.
CDK_BOOTSTRAP_QUALIFIER = "hnb659fds"


def cdk_assets_bucket(account: str, region: str) -> str:
    """The default bootstrap's file-asset bucket: ``cdk-<qualifier>-assets-<account>-<region>``."""
    return f"cdk-{CDK_BOOTSTRAP_QUALIFIER}-assets-{account}-{region}"


def stack_name_prefix(prefix: str) -> str:
    """``roadseg-dev`` -> ``RoadsegDev``."""
    return "".join(part.capitalize() for part in prefix.split("-"))


def stack_names(prefix: str) -> dict[str, str]:
    """``roadseg-dev`` -> {"Data": "RoadsegDevData", "Training": "RoadsegDevTraining", "Inference": ...}."""
    base = stack_name_prefix(prefix)
    return {key: f"{base}{key}" for key in (DATA, TRAINING, INFERENCE)}


def data_stack_name(prefix: str) -> str:
    return stack_names(prefix)[DATA]


def training_stack_name(prefix: str) -> str:
    return stack_names(prefix)[TRAINING]


def inference_stack_name(prefix: str) -> str:
    """The stack the rollout Lambda updates (and the local rehearsal's stand-in)."""
    return stack_names(prefix)[INFERENCE]


def export_name(prefix: str, key: str) -> str:
    """``roadseg-dev``, ``DataKeyArn`` -> ``roadseg-dev:DataKeyArn``: stable, so IAM acknowledgments can name it."""
    return f"{prefix}:{key}"


def serving_package_parameter(prefix: str) -> str:
    """The SSM parameter holding the model package approved for serving (the rollout writes it; the inference
    stack's ``ModelPackageArn`` parameter is SSM-typed and re-reads it on every deploy). Under ``/roadseg/``: SSM
    refuses names that begin with ``aws`` or ``ssm``, which a prefix may."""
    return f"/roadseg/{prefix}/serving/model-package-arn"


def label_scoring_settings_parameter(prefix: str) -> str:
    """The SSM String parameter holding the scoring job's settings JSON (stacks.label_scoring writes it; the
    ``LabelScoringJob`` output names it; ``roadseg label score`` reads it). A parameter, not the output itself: the
    settings embed the network stack's exports in isolated mode, and an output may not (cfn-lint W6001)."""
    return f"/roadseg/{prefix}/label-scoring/settings"


def realtime_endpoint_name(prefix: str) -> str:
    return f"{prefix}-realtime"


def async_endpoint_name(prefix: str) -> str:
    return f"{prefix}-async"


def endpoint_names(prefix: str) -> tuple[str, str]:
    """(real-time endpoint, async endpoint)."""
    return realtime_endpoint_name(prefix), async_endpoint_name(prefix)


def training_pipeline_name(prefix: str) -> str:
    return f"{prefix}-training"


def tuning_pipeline_name(prefix: str) -> str:
    return f"{prefix}-tuning"


def pipeline_names(prefix: str) -> tuple[str, str]:
    """(training pipeline, tuning pipeline)."""
    return training_pipeline_name(prefix), tuning_pipeline_name(prefix)


def model_package_group_name(prefix: str) -> str:
    return f"{prefix}-segmentation"


# Alarm names are literal (not generated) because SageMaker's blue/green rollout and the model role's
# cloudwatch:DescribeAlarms grant refer to them by name.
def realtime_latency_alarm_name(prefix: str) -> str:
    return f"{realtime_endpoint_name(prefix)}-latency-p90"


def realtime_errors_alarm_name(prefix: str) -> str:
    return f"{realtime_endpoint_name(prefix)}-5xx-errors"


def async_failures_alarm_name(prefix: str) -> str:
    return f"{async_endpoint_name(prefix)}-invocation-failures"


def async_backlog_alarm_name(prefix: str) -> str:
    return f"{async_endpoint_name(prefix)}-backlog-without-capacity"


def async_oldest_request_alarm_name(prefix: str) -> str:
    return f"{async_endpoint_name(prefix)}-oldest-request-age"


def realtime_rollback_alarm_names(prefix: str) -> tuple[str, ...]:
    return realtime_latency_alarm_name(prefix), realtime_errors_alarm_name(prefix)


def async_rollback_alarm_names(prefix: str) -> tuple[str, ...]:
    return (async_failures_alarm_name(prefix),)


def rollback_alarm_names(prefix: str) -> tuple[str, ...]:
    """Every alarm that rolls a blue/green endpoint update back."""
    return realtime_rollback_alarm_names(prefix) + async_rollback_alarm_names(prefix)


def neo_compilation_job_prefix(prefix: str) -> str:
    """Neo compilation jobs the rollout creates for approved packages start with this (IAM scopes on it)."""
    return f"{prefix}-neo-"


def neo_compilation_job_name(job_prefix: str, version: int, target: str) -> str:
    """One job per package version and target (``job_prefix``: ``neo_compilation_job_prefix``): a redelivered
    approval finds it and creates nothing twice. SageMaker job names: 1-63 letters, digits and '-' (targets such as
    ml_g4dn carry '_')."""
    name = f"{job_prefix}v{version}-{target.replace('_', '-')}"
    if len(name) > 63:
        raise ValueError(f"compilation job name {name!r} is over 63 characters: shorten the prefix")
    return name


def drives_table_name(prefix: str) -> str:
    """The drives table (contracts.drive_table): counters and per-frame outcomes of whole drives."""
    return f"{prefix}-drives"


def drive_job_prefix(prefix: str) -> str:
    """Processing jobs of whole drives (extraction, build) start with this (IAM scopes on it)."""
    return f"{prefix}-drive-"


def drive_job_name(prefix: str, kind: str, drive_id: str) -> str:
    """One job per drive and kind ("extract" or "build"): deterministic, so a redelivered event finds it
    (ResourceInUse) and starts nothing twice. The drive id enters as a digest (job names: 1-63 letters, digits, '-')."""
    if kind not in ("extract", "build"):
        raise ValueError(f"unknown drive job kind {kind!r} (extract or build)")
    name = f"{drive_job_prefix(prefix)}{kind}-{hashlib.sha256(drive_id.encode()).hexdigest()[:24]}"
    if len(name) > 63:
        raise ValueError(f"drive job name {name!r} is over 63 characters: shorten the prefix")
    return name


def label_scoring_job_prefix(prefix: str) -> str:
    """Processing jobs that score a candidate pool (``roadseg label score``) start with this: the job-failure rule
    matches it (stacks/job_failure_alarms.py)."""
    return f"{prefix}-label-score-"


def label_scoring_job_name(prefix: str, stamp: str, digest: str) -> str:
    """``<prefix>-label-score-<UTC stamp YYYYMMDDHHMMSS>-<8 hex of the pool and bundle>``: a new job per run (the
    same pool may be scored again by a newer model), readable by time. Job names: 1-63 letters, digits and '-'."""
    name = f"{label_scoring_job_prefix(prefix)}{stamp}-{digest[:8]}"
    if len(name) > 63:
        raise ValueError(f"scoring job name {name!r} is over 63 characters: shorten the prefix")
    return name


def drives_glue_database_name(prefix: str) -> str:
    """Glue database of the drive timeline table (letters, digits and '_' only)."""
    return prefix.replace("-", "_") + "_drives"
