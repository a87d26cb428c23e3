"""``python -m stacks.delivery.large_assets cdk.out``: publish the Synth output's large file assets, then strip them.

The pipeline's Synth step runs this last. CodePipeline's CloudFormation actions accept input artifacts of at most
256 MB (CODEPIPELINE_QUOTAS_DOC), and each receives the whole Synth output. So every staged file asset of at least
STRIP_THRESHOLD_BYTES (the wheelhouses, the bundled rollout function) is published here to every destination its
asset manifests name (each stage's bootstrap bucket, through the role the manifest names, the stage's
``cdk-<qualifier>-file-publishing-role-<account>-<region>``), then deleted from the directory. The Assets wave later
runs cdk-assets on the same manifests; it lists each destination before it packages the source, finds the object
and skips it without reading the (absent) source.

It publishes as cdk-assets does (lib/private/handlers/files.ts): an object already at the destination key is left
alone (keys are content hashes); directories are zipped, files uploaded as they are; the bucket's default encryption
is repeated on the upload (SCPs may demand the header). Unlike the cdk-assets CLI, it does not depend on a release
that reads this assembly's schema version: the newest on the registry (4.7.3) reads up to 54, aws-cdk-lib 2.275
writes 55. Every request names the destination account as the bucket's expected owner.

Exit status: 0 published, stripped and within the limit; 1 a publish failed (nothing stripped) or the directory is
still over the limit; 2 no assembly. One line each, no traceback.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from contracts import cloud_assembly
from stacks.checks.service_contracts.delivery import (
    CLOUDFORMATION_INPUT_ARTIFACT_LIMIT,
    CODEPIPELINE_QUOTAS_DOC,
    STRIP_THRESHOLD_BYTES,
    StagedFileAsset,
    directory_bytes,
    large_file_assets,
)

SESSION_NAME = "roadseg-synth-large-assets"
# S3 refuses these when the bucket has no default encryption configured, or the role may not read it; cdk-assets
# then uploads with the bucket's defaults, and so does this.
NO_ENCRYPTION_SETTINGS = ("ServerSideEncryptionConfigurationNotFoundError", "AccessDenied")


class PublishError(Exception):
    """A destination that cannot be published to (one line: what and why)."""


@dataclass(frozen=True)
class Destination:
    id: str
    bucket: str
    key: str
    region: str
    role_arn: str
    external_id: str | None = None

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]


def partition_of(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _entry(asset: StagedFileAsset) -> dict:
    return json.loads(asset.manifest.read_text())["files"][asset.asset_id]


def destinations(asset: StagedFileAsset) -> list[Destination]:
    """The asset's destinations with the placeholders a pinned stage leaves (partition, region) filled in."""
    found = []
    for destination_id, raw in _entry(asset)["destinations"].items():
        region = raw.get("region") or ""
        fields = {}
        for name in ("bucketName", "objectKey", "assumeRoleArn"):
            value = (raw.get(name) or "").replace("${AWS::Partition}", partition_of(region))
            value = value.replace("${AWS::Region}", region)
            if not value or "${" in value or not region:
                raise PublishError(f"{asset.manifest.name}: {asset.asset_id}:{destination_id} has no literal "
                                   f"{name} or region ({value or 'missing'}): a delivery stage pins its account "
                                   "and region")
            fields[name] = value
        found.append(Destination(destination_id, fields["bucketName"], fields["objectKey"], region,
                                 fields["assumeRoleArn"], raw.get("assumeRoleExternalId")))
    return found


def publish_plan(assets: list[StagedFileAsset]) -> list[tuple[StagedFileAsset, Destination]]:
    """Each (asset, destination) once: two stacks of a stage name the same asset and destination."""
    plan, seen = [], set()
    for asset in assets:
        for destination in destinations(asset):
            if (asset.asset_id, destination.id) not in seen:
                seen.add((asset.asset_id, destination.id))
                plan.append((asset, destination))
    return plan


def zip_directory(directory: Path, into: Path) -> Path:
    """A zip of ``directory``'s files, sorted, with fixed dates (the same bytes for the same content)."""
    with zipfile.ZipFile(into, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (path.stat().st_mode & 0xFFFF) << 16  # the file's mode, as cdk-assets keeps it
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, 1 << 20)
    return into


def _encryption(s3, destination: Destination) -> dict:
    """The upload's encryption arguments, from the bucket's default encryption (as cdk-assets sets them)."""
    try:
        found = s3.get_bucket_encryption(Bucket=destination.bucket, ExpectedBucketOwner=destination.account)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NO_ENCRYPTION_SETTINGS:
            return {}
        raise
    rules = found.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    default = (rules[0].get("ApplyServerSideEncryptionByDefault") or {}) if rules else {}
    if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
        key = {"SSEKMSKeyId": default["KMSMasterKeyID"]} if default.get("KMSMasterKeyID") else {}
        return {"ServerSideEncryption": default["SSEAlgorithm"], **key}
    if default.get("SSEAlgorithm") == "AES256":
        return {"ServerSideEncryption": "AES256"}
    return {}


def publish(asset: StagedFileAsset, destination: Destination, packaged: Path, content_type: str) -> bool:
    """Upload ``packaged`` to the destination unless its key is already there; True if it uploaded."""
    role = {"RoleArn": destination.role_arn, "RoleSessionName": SESSION_NAME}
    if destination.external_id:
        role["ExternalId"] = destination.external_id
    credentials = boto3.client("sts", region_name=destination.region).assume_role(**role)["Credentials"]
    s3 = boto3.client("s3", region_name=destination.region, aws_access_key_id=credentials["AccessKeyId"],
                      aws_secret_access_key=credentials["SecretAccessKey"],
                      aws_session_token=credentials["SessionToken"])
    listed = s3.list_objects_v2(Bucket=destination.bucket, Prefix=destination.key, MaxKeys=1,
                                ExpectedBucketOwner=destination.account)
    if any(item["Key"] == destination.key for item in listed.get("Contents", [])):
        return False
    s3.upload_file(str(packaged), destination.bucket, destination.key, ExtraArgs={
        "ContentType": content_type, "ExpectedBucketOwner": destination.account, **_encryption(s3, destination)})
    return True


def strip_paths(assets: list[StagedFileAsset]) -> list[Path]:
    """Each published source, once (the stages share them)."""
    return list(dict.fromkeys(asset.source for asset in assets))


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def publish_all(assets: list[StagedFileAsset], workdir: Path) -> tuple[int, int]:
    """Publish every (asset, destination) of the plan; (uploaded, already there)."""
    uploaded = found = 0
    packaged: dict[Path, tuple[Path, str]] = {}
    for asset, destination in publish_plan(assets):
        if asset.source not in packaged:
            if _entry(asset)["source"].get("packaging") == "zip":
                packaged[asset.source] = (zip_directory(asset.source, workdir / f"{asset.asset_id}.zip"),
                                          "application/zip")
            else:
                packaged[asset.source] = (asset.source, mimetypes.guess_type(asset.source.name)[0]
                                          or "application/octet-stream")
        try:
            if publish(asset, destination, *packaged[asset.source]):
                uploaded += 1
            else:
                found += 1
        except (ClientError, BotoCoreError) as exc:
            raise PublishError(f"publishing {asset.asset_id[:12]} ({asset.source.name}) to s3://{destination.bucket}/"
                               f"{destination.key} as {destination.role_arn}: {exc}") from None
    return uploaded, found


def run(outdir: Path, threshold: int = STRIP_THRESHOLD_BYTES, limit: int = CLOUDFORMATION_INPUT_ARTIFACT_LIMIT) -> int:
    if not cloud_assembly.is_cloud_assembly(outdir):
        print(f"no cloud assembly in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    assets = large_file_assets(outdir, threshold)
    try:
        with tempfile.TemporaryDirectory(prefix="roadseg-large-assets-") as workdir:  # zips stay out of cdk.out
            uploaded, found = publish_all(assets, Path(workdir))
    except PublishError as exc:
        print(f"{exc}: nothing was stripped", file=sys.stderr)
        return 1
    for path in strip_paths(assets):
        _delete(path)
    size = directory_bytes(outdir)
    stripped = {asset.source: asset.size for asset in assets}
    print(f"large file assets (at least {threshold / 2**20:.0f} MiB): {len(stripped)} "
          f"({sum(stripped.values()) / 2**20:.0f} MiB), {uploaded} uploads, {found} already published, stripped; "
          f"{outdir} is now {size / 2**20:.0f} MiB")
    if size > limit:
        print(f"{outdir} is {size / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB that CodePipeline's "
              f"CloudFormation actions accept ({CODEPIPELINE_QUOTAS_DOC})", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.delivery.large_assets",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", default="cdk.out", type=Path, help="cloud assembly (default cdk.out)")
    return run(parser.parse_args(argv).outdir)


if __name__ == "__main__":
    sys.exit(main())
