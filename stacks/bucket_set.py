"""The project's S3 buckets and their KMS key, with secure defaults shared by all of them."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from contracts import naming
from contracts.layout import DATASETS, INFERENCE
from envconfig.config import EnvironmentConfig
from stacks.compliance import acknowledge, acknowledge_all_packs

_ARN_EXPORTS = {"Datasets": naming.DATASETS_BUCKET_ARN_EXPORT, "Artifacts": naming.ARTIFACTS_BUCKET_ARN_EXPORT,
                "Inference": naming.INFERENCE_BUCKET_ARN_EXPORT}
REPLICATION_REASON = (
    "Cross-region replication is a per-organisation disaster-recovery decision (second region, second key); "
    "versioning and retained KMS keys protect against loss within the region."
)


@dataclass(frozen=True)
class BucketSetProps:
    config: EnvironmentConfig


@dataclass(frozen=True)
class SharedBuckets:
    """The buckets and key as seen from another stack (typed; imported through the data stack's exports)."""

    datasets: s3.IBucket
    artifacts: s3.IBucket
    inference: s3.IBucket
    key: kms.IKey
    export_prefix: str

    def export_name(self, attribute: str) -> str:
        return naming.export_name(self.export_prefix, attribute)


class BucketSet(Construct):
    """Datasets, model artifacts, inference and access-log buckets encrypted with one customer-managed key."""

    def __init__(self, scope: Construct, construct_id: str, props: BucketSetProps) -> None:
        super().__init__(scope, construct_id)
        cfg = props.config
        retention = cfg.retention
        self._removal = cdk.RemovalPolicy.RETAIN if cfg.retain else cdk.RemovalPolicy.DESTROY

        self.key = kms.Key(
            self,
            "DataKey",
            description=f"{cfg.prefix}: datasets, model artifacts and inference data",
            enable_key_rotation=True,
            removal_policy=self._removal,
            pending_window=cdk.Duration.days(30 if cfg.retain else 7),
        )

        # S3 server access logging only delivers to SSE-S3 buckets, hence no KMS key here.
        self.access_logs = self._bucket(
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[
                self._abort_uploads(retention.abort_incomplete_upload_days),
                s3.LifecycleRule(id="expire-access-logs", expiration=cdk.Duration.days(retention.access_log_days),
                                 noncurrent_version_expiration=cdk.Duration.days(1)),
            ],
            is_log_bucket=True,
        )
        acknowledge_all_packs(self.access_logs, "S3DefaultEncryptionKMS",
                              "S3 server access logs can only be delivered to an SSE-S3 bucket, not SSE-KMS.")

        noncurrent = self._expire_noncurrent(retention.noncurrent_version_days)
        self.datasets = self._bucket(
            "Datasets",
            lifecycle_rules=[self._abort_uploads(retention.abort_incomplete_upload_days), noncurrent],
        )
        # Dataset versions are written once (labelling.versions writes with If-None-Match): S3 refuses a PutObject
        # under versions/ without that header, so no tool overwrites a version. CopyObject is refused there too
        # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html); multipart
        # uploads would be (UploadPart carries no conditional header): versions are written with single PutObjects.
        self.datasets.add_to_resource_policy(iam.PolicyStatement(
            sid="DatasetVersionsAreWrittenOnce", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[self.datasets.arn_for_objects(f"{DATASETS.versions}*")],
            conditions={"Null": {"s3:if-none-match": "true"}},
        ))
        # ... and never deleted: a DeleteObject would only add a delete marker (the bucket is versioned) but hides
        # the version from the pipeline; DeleteObjectVersion would destroy it. Denied to every principal. No role
        # needs an exemption: no bucket of this app has auto_delete_objects (no Custom::S3AutoDeleteObjects
        # function), so `cdk destroy` of a retain=false environment fails on a non-empty datasets bucket, as it does
        # today, and an operator empties it after removing this statement. Lifecycle rules are not requests and are
        # not subject to the policy (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lifecycle-mgmt.html):
        # the datasets bucket's only expiry is noncurrent-version expiration, and objects under versions/ never get a
        # noncurrent version (written once with If-None-Match, never deleted), so it cannot touch them.
        self.datasets.add_to_resource_policy(iam.PolicyStatement(
            sid="DatasetVersionsAreNeverDeleted", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:DeleteObject", "s3:DeleteObjectVersion"],
            resources=[self.datasets.arn_for_objects(f"{DATASETS.versions}*")],
        ))
        self.artifacts = self._bucket(
            "Artifacts",
            lifecycle_rules=[self._abort_uploads(retention.abort_incomplete_upload_days), noncurrent],
        )
        # Safe to expire only after every late reader: a drive build reads all its frames' documents, a dead-letter
        # replay what its message names. envconfig.config refuses any expiry below minimum_output_days (14-day dead
        # letters + the drive stream's 24 h of retries + drives.max_runtime_hours), for quarantine/ too.
        output_days = cdk.Duration.days(retention.inference_output_days)
        self.inference = self._bucket(
            "Inference",
            lifecycle_rules=[
                self._abort_uploads(retention.abort_incomplete_upload_days),
                noncurrent,
                *(
                    s3.LifecycleRule(id=f"expire-{prefix.strip('/')}", prefix=prefix, expiration=output_days)
                    for prefix in INFERENCE.expiring_outputs
                ),
                s3.LifecycleRule(id="expire-quarantine", prefix=INFERENCE.quarantine,
                                 expiration=cdk.Duration.days(retention.quarantine_days)),
            ],
        )

        # Explicit, stable export names: consumers' IAM policies (and their reviewed cdk-nag acknowledgments)
        # then read the same in every synth instead of CDK's hashed automatic export names.
        self.export_prefix = cfg.prefix
        for name, bucket in self._shared.items():
            cdk.CfnOutput(self, f"{name}BucketArn", value=bucket.bucket_arn,
                          export_name=naming.export_name(self.export_prefix, _ARN_EXPORTS[name]))
        cdk.CfnOutput(self, "DataKeyArn", value=self.key.key_arn,
                      export_name=naming.export_name(self.export_prefix, naming.DATA_KEY_ARN_EXPORT))

    @property
    def _shared(self) -> dict[str, s3.Bucket]:
        return {"Datasets": self.datasets, "Artifacts": self.artifacts, "Inference": self.inference}

    def share_with(self, consumer: Construct) -> SharedBuckets:
        """Typed references for a construct in another stack (which then depends on this one)."""
        consumer_stack = cdk.Stack.of(consumer)
        consumer_stack.add_dependency(cdk.Stack.of(self))
        scope = Construct(consumer, "SharedData")
        key = kms.Key.from_key_arn(scope, "DataKey", cdk.Fn.import_value(
            naming.export_name(self.export_prefix, naming.DATA_KEY_ARN_EXPORT)))
        imported = {
            name: s3.Bucket.from_bucket_attributes(
                scope, name, bucket_arn=cdk.Fn.import_value(naming.export_name(self.export_prefix, _ARN_EXPORTS[name])),
                encryption_key=key)
            for name in self._shared
        }
        return SharedBuckets(datasets=imported["Datasets"], artifacts=imported["Artifacts"],
                             inference=imported["Inference"], key=key, export_prefix=self.export_prefix)

    @property
    def data_buckets(self) -> tuple[s3.Bucket, s3.Bucket, s3.Bucket]:
        return (self.datasets, self.artifacts, self.inference)

    @staticmethod
    def _abort_uploads(days: int) -> s3.LifecycleRule:
        return s3.LifecycleRule(id="abort-incomplete-multipart-uploads",
                                abort_incomplete_multipart_upload_after=cdk.Duration.days(days))

    @staticmethod
    def _expire_noncurrent(days: int) -> s3.LifecycleRule:
        return s3.LifecycleRule(id="expire-noncurrent-versions",
                                noncurrent_version_expiration=cdk.Duration.days(days))

    def _bucket(self, construct_id: str, *, is_log_bucket: bool = False, **overrides) -> s3.Bucket:
        props = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=self._removal,
        )
        if not is_log_bucket:
            props.update(server_access_logs_bucket=self.access_logs,
                         server_access_logs_prefix=f"{construct_id.lower()}/")
        props.update(overrides)
        if props.get("encryption") != s3.BucketEncryption.KMS:
            props.pop("encryption_key")
            props.pop("bucket_key_enabled")
        bucket = s3.Bucket(self, construct_id, **props)
        acknowledge_all_packs(bucket, "S3BucketReplicationEnabled", REPLICATION_REASON)
        if is_log_bucket:
            reason = "This is the access-log destination; logging it into itself would log its own log deliveries."
            acknowledge_all_packs(bucket, "S3BucketLoggingEnabled", reason)
            acknowledge(bucket, "AwsSolutions-S1", reason)
        return bucket
