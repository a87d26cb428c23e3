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
        for asset in props.code_assets:
            acknowledged(role, lambda asset=asset: asset.grant_read(role),
                         reasons="CDK asset grant: the processing entry, package and drive wheels in the bootstrap "
                                 "bucket.")
        acknowledged(role, lambda: buckets.key.grant_encrypt_decrypt(role), reasons="The project data key.")
        grants = (
            (lambda: buckets.artifacts.grant_read(role, BUNDLE_PATTERN),
             "Read-only: the edge bundles the ExportModel step writes (pipelines/<pipeline>/<execution>/bundle/)."),
            (lambda: buckets.inference.grant_read(role, f"{INFERENCE.incoming}*"),
             "Read-only: the frames of the pool, under incoming/."),
            (lambda: buckets.inference.grant_read(role, f"{INFERENCE.label_scores}*/input/*"),
             "Read-only: the pool and the manifest files roadseg label score writes for each job."),
            (lambda: buckets.inference.grant_put(role, f"{INFERENCE.label_scores}*/output/*"),
             "SageMaker uploads each job's model-scores.parquet and summary under its output/ folder."),
        )
        for grant, reason in grants:
            acknowledged(role, grant, reasons=reason)
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
