"""The candidate-pool scoring job's role and settings (``roadseg label score``; labelling/scoring_job.py builds the
request, the operator's credentials send it).

- The ROLE (assumed by SageMaker only) reads exactly what the job downloads: the processing entry, package and drive
  wheels (the drive jobs' assets: one S3 object each), the edge bundles (``pipelines/*/bundle/*`` of the artifacts
  bucket: the ExportModel step's outputs), the frames (``incoming/`` of the inference bucket) and the inputs the
  command writes (``label-scores/*/input/*``); it writes only ``label-scores/*/output/*`` (SageMaker uploads the
  scores with it; the job runs with network isolation). Besides: the data key, the processing image, the
  /aws/sagemaker/ProcessingJobs logs, SageMaker's own metrics and, in isolated-network mode, the job's network
  interfaces in the VPC.
- The SETTINGS (``settings_json``): one JSON object, read by ``labelling.scoring_job.ScoringJobSettings.from_output``,
  kept in the SSM String parameter ``contracts.naming.label_scoring_settings_parameter`` (Standard tier, value at most
  ``contracts.service_limits.MAX_SSM_STANDARD_PARAMETER_VALUE``); the stack output
  ``contracts.naming.LABEL_SCORING_JOB`` holds that parameter's NAME. Why a parameter: in isolated mode the subnets
  and security groups are the network stack's exports, and an output may not embed an ``Fn::ImportValue`` (cfn-lint
  W6001) while a resource may. The subnets and security groups travel comma-joined (they may be SSM-typed parameters
  in isolated mode: lists of tokens). The inference bucket and the data key are NOT in it: the command reads them
  from the data stack's own outputs (``InferenceBucketName``, ``DataKeyArn``).
- Failure heard: jobs are named ``contracts.naming.label_scoring_job_prefix`` and stacks/job_failure_alarms.py's
  ``<prefix>-job-failed-label-scoring`` rule sends their Failed/Stopped state changes to the alarm topic (contract
  async-jobs-reach-the-alarm-topic, through the ``LabelScoringJobPrefix`` output).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from contracts import naming
from contracts.layout import ARTIFACTS, INFERENCE
from stacks.bucket_set import SharedBuckets
from stacks.compliance import acknowledge_inline_policy, acknowledged
from stacks.images import RegionImagesMapping
from stacks.processing_job_role import grant_processing_job_basics

SAGEMAKER = "sagemaker.amazonaws.com"
# ExportModel writes each execution's bundle to pipelines/<pipeline>/<execution>/bundle/ (training/pipelines/steps.py).
BUNDLE_PATTERN = f"{ARTIFACTS.pipelines}*/bundle/*"
# roadseg label score writes each job's pool and manifest files to label-scores/<job>/input/ (labelling.scoring_job).
JOB_INPUTS_PATTERN = f"{INFERENCE.label_scores}*/input/*"


@dataclass(frozen=True)
class LabelScoringProps:
    prefix: str
    buckets: SharedBuckets
    images: RegionImagesMapping  # "Processing", "ProcessingRepository"
    # The processing entry script, package and drive wheels (DriveProcessing's assets).
    code_assets: tuple[s3_assets.Asset, s3_assets.Asset, s3_assets.Asset]
    volume_size_gb: int
    max_runtime_seconds: int
    vpc_config: Mapping[str, list[str]] | None = None


class LabelScoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: LabelScoringProps) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        buckets = props.buckets
        entry, package, wheels = props.code_assets
        role = self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal(SAGEMAKER),
                                    description="roadseg label score: the candidate-pool scoring Processing job")
        # Explicit statements, not asset.grant_read / bucket.grant_read: those add s3:GetBucket*/s3:List* on the
        # WHOLE bootstrap assets bucket (every stack's code) and on the whole artifacts and inference buckets.
        # What SageMaker needs, per input type (API_ProcessingS3Input, sagemaker-roles.html "CreateProcessingJob API:
        # Execution Role Permissions", https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html):
        # - S3Prefix ("all objects with the specified key name prefix"): SageMaker lists the prefix, so s3:ListBucket
        #   on the bucket, narrowed by the s3:prefix condition to the prefixes the request names: each asset's key
        #   (code, package, wheels) and label-scores/<job>/input/ (the pool object);
        # - ManifestFile (bundle, frames): SageMaker reads the manifest and GETs each listed key; the docs name no
        #   listing for it, so s3:GetObject on the bundles and frames only;
        # - every object downloaded: s3:GetObject (no GetObjectVersion/Tagging/Acl: the request names no version).
        # The bootstrap assets bucket uses SSE-S3 or the AWS managed aws/s3 key (CDK bootstrap default), which S3
        # uses for any principal of the account: no key grant for the assets (Asset has no key to grant on).
        asset_buckets = {asset.bucket.bucket_arn: asset.bucket for asset in props.code_assets}
        asset_keys = sorted({asset.s3_object_key for asset in props.code_assets})
        # acknowledged(..., reasons={}): these name no wildcard; one would fail here instead of passing unreasoned.
        acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
            sid="ReadCodeAssets", actions=["s3:GetObject"],
            resources=[asset.bucket.arn_for_objects(asset.s3_object_key) for asset in props.code_assets])),
            reasons={})
        acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
            sid="ListCodeAssets", actions=["s3:ListBucket"], resources=list(asset_buckets),
            conditions={"StringEquals": {"s3:prefix": asset_keys}})), reasons={})
        # kms:Decrypt reads the frames, bundles and inputs; kms:GenerateDataKey writes the scores (the output's
        # KmsKeyId is the data key). Nothing else of the key (no ReEncrypt*, no Encrypt: SSE-KMS uses neither).
        acknowledged(role, lambda: buckets.key.grant(role, "kms:Decrypt", "kms:GenerateDataKey"),
                     reasons="The project data key.")
        reads = (
            (buckets.artifacts, BUNDLE_PATTERN,
             "Read-only: the edge bundles the ExportModel step writes (pipelines/<pipeline>/<execution>/bundle/)."),
            (buckets.inference, f"{INFERENCE.incoming}*", "Read-only: the frames of the pool, under incoming/."),
            (buckets.inference, JOB_INPUTS_PATTERN,
             "Read-only: the pool and the manifest files roadseg label score writes for each job."),
        )
        for bucket, pattern, reason in reads:
            acknowledged(role, lambda bucket=bucket, pattern=pattern: role.add_to_policy(iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[bucket.arn_for_objects(pattern)])), reasons=reason)
        # The pool input is an S3Prefix (one object's key under label-scores/<job>/input/): SageMaker lists it.
        acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
            sid="ListJobInputs", actions=["s3:ListBucket"], resources=[buckets.inference.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [JOB_INPUTS_PATTERN]}})), reasons={})
        # Not grant_put: it adds kms:Encrypt/ReEncrypt*/GenerateDataKey* on the key and the object ACL/legal-hold
        # actions. A (multipart) upload with SSE-KMS needs s3:PutObject, kms:GenerateDataKey and kms:Decrypt (above);
        # s3:AbortMultipartUpload lets an interrupted upload be cleaned up.
        acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[buckets.inference.arn_for_objects(f"{INFERENCE.label_scores}*/output/*")])),
            reasons="SageMaker uploads each job's model-scores.parquet and summary under its output/ folder.")
        grant_processing_job_basics(role, props.images, props.vpc_config)
        acknowledge_inline_policy(role)

        vpc = props.vpc_config or {}
        self.job_prefix = naming.label_scoring_job_prefix(props.prefix)
        # labelling.scoring_job.ScoringJobSettings, field for field, less the imported bucket and key (docstring).
        self.settings_json = stack.to_json_string({
            "prefix": props.prefix, "role_arn": role.role_arn,
            "image_uri": props.images.get("Processing"), "code_entry_uri": entry.s3_object_url,
            "code_package_uri": package.s3_object_url, "wheels_uri": wheels.s3_object_url,
            "volume_size_gb": props.volume_size_gb,
            "max_runtime_seconds": props.max_runtime_seconds,
            "subnets": cdk.Fn.join(",", list(vpc.get("subnets", []))) if vpc.get("subnets") else "",
            "security_group_ids": cdk.Fn.join(",", list(vpc.get("security_group_ids", [])))
            if vpc.get("security_group_ids") else "",
        })
        self.settings_parameter_name = naming.label_scoring_settings_parameter(props.prefix)
        self.settings_parameter = ssm.StringParameter(
            self, "Settings", parameter_name=self.settings_parameter_name, string_value=self.settings_json,
            tier=ssm.ParameterTier.STANDARD,
            description="roadseg label score: the scoring job's settings (JSON; the LabelScoringJob output names it)")
