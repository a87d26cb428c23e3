"""stacks/delivery/large_assets.py, the Synth step's last command, on a fake cloud assembly shaped like the delivery
app's (a pipeline stack, two stage assemblies whose assets.json files name ``../asset.<hash>`` sources in the top
directory), publishing under moto into each stage account's bootstrap bucket through its file-publishing role."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from stacks.checks.service_contracts.delivery import STRIP_THRESHOLD_BYTES, directory_bytes, large_file_assets
from stacks.delivery import large_assets

BIG = "b" * 64  # asset ids are hashes
SMALL = "5" * 64
OUTSIDE = "0" * 64
STAGES = {"Staging": "222222222222", "Prod": "333333333333"}
REGION = "eu-west-1"
THRESHOLD = 1024  # the publishing tests use small files and a small threshold


def _bucket(account: str) -> str:
    return f"cdk-hnb659fds-assets-{account}-{REGION}"


def _role(account: str) -> str:
    return f"arn:${{AWS::Partition}}:iam::{account}:role/cdk-hnb659fds-file-publishing-role-{account}-{REGION}"


def _destination(account: str, asset_id: str, suffix: str) -> dict:
    return {f"{account}-{REGION}-{suffix}": {"bucketName": _bucket(account), "objectKey": f"{asset_id}.zip",
                                             "region": REGION, "assumeRoleArn": _role(account)}}


def _stage(outdir: Path, stage: str, account: str, outside: Path) -> None:
    directory = outdir / f"assembly-P-{stage}"
    directory.mkdir()
    (directory / f"P{stage}Training.template.json").write_text("{}")
    files = {
        BIG: {"displayName": "Pipelines/ExportWheels", "source": {"path": f"../asset.{BIG}", "packaging": "zip"},
              "destinations": _destination(account, BIG, "aa")},
        SMALL: {"displayName": "Pipelines/JobSettings", "source": {"path": f"../asset.{SMALL}", "packaging": "zip"},
                "destinations": _destination(account, SMALL, "bb")},
        OUTSIDE: {"displayName": "Unstaged", "source": {"path": str(outside), "packaging": "zip"},
                  "destinations": _destination(account, OUTSIDE, "cc")},
        "t" * 64: {"displayName": "Template", "source": {"path": f"P{stage}Training.template.json",
                                                          "packaging": "file"},
                   "destinations": _destination(account, "t" * 64, "dd")}}
    inference = {BIG: files[BIG]}  # the same asset and destination in another stack of the stage
    for stack, entries in (("Training", files), ("Inference", inference)):
        (directory / f"P{stage}{stack}.assets.json").write_text(json.dumps({"version": "55.0.0", "files": entries}))
    (directory / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": {
        f"P{stage}{stack}.assets": {"type": "cdk:asset-manifest",
                                    "properties": {"file": f"P{stage}{stack}.assets.json"}}
        for stack in ("Training", "Inference")}}))


def _write(path: Path, data: bytes, sparse_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        if sparse_size:
            f.truncate(sparse_size)  # sparse: the size counts, no disk is used


def _assembly(tmp_path: Path, big_size: int | None = None) -> Path:
    """cdk.out with a large asset shared by both stages (two wheels), a small one, and a large source outside (as
    with asset staging disabled), which the directory does not hold and nothing may publish or delete."""
    out = tmp_path / "cdk.out"
    _write(out / f"asset.{BIG}" / "mxnet-1.9.1-py3-none-manylinux2014_x86_64.whl", b"W" * 4096, big_size)
    _write(out / f"asset.{BIG}" / "sub" / "numpy.whl", b"N" * 16)
    _write(out / f"asset.{SMALL}" / "settings.json", b"{}")
    outside = tmp_path / "wheelhouse"
    _write(outside / "big.whl", b"", 300 * 2**20)
    (out / "P.template.json").write_text("{}")
    (out / "P.assets.json").write_text(json.dumps({"version": "55.0.0", "files": {}}))
    artifacts = {"P.assets": {"type": "cdk:asset-manifest", "properties": {"file": "P.assets.json"}}}
    for stage, account in STAGES.items():
        _stage(out, stage, account, outside)
        artifacts[f"assembly-P-{stage}"] = {"type": "cdk:cloud-assembly",
                                            "properties": {"directoryName": f"assembly-P-{stage}"}}
    (out / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": artifacts}))
    return out


def _client(service: str, account: str):
    """A client in ``account`` (moto keeps accounts apart by the credentials of an assumed role)."""
    import boto3

    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/test-setup", RoleSessionName="test-setup")["Credentials"]
    return boto3.client(service, region_name=REGION, aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"])


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def buckets(aws) -> dict[str, str | None]:
    """Both stages' bootstrap buckets: staging's encrypted by default with a KMS key (as `cdk bootstrap` can make
    it), prod's with no default encryption configured. Returns account -> KMS key ARN (or None)."""
    keys = {}
    for account in STAGES.values():
        s3 = _client("s3", account)
        s3.create_bucket(Bucket=_bucket(account), CreateBucketConfiguration={"LocationConstraint": REGION})
        keys[account] = None
    staging = STAGES["Staging"]
    keys[staging] = _client("kms", staging).create_key()["KeyMetadata"]["Arn"]
    default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys[staging]}
    _client("s3", staging).put_bucket_encryption(Bucket=_bucket(staging), ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
    return keys


def _objects(account: str) -> dict[str, bytes]:
    s3 = _client("s3", account)
    return {o["Key"]: s3.get_object(Bucket=_bucket(account), Key=o["Key"])["Body"].read()
            for o in s3.list_objects_v2(Bucket=_bucket(account)).get("Contents", [])}


# -- selection (no AWS) ---------------------------------------------------------------------------------------------

def test_only_staged_assets_over_the_threshold_are_selected(tmp_path):
    outdir = _assembly(tmp_path, big_size=300 * 2**20)
    found = large_file_assets(outdir)
    assert {a.source.name for a in found} == {f"asset.{BIG}"}
    assert {a.manifest.name for a in found} == {f"P{s}{k}.assets.json" for s in STAGES
                                                for k in ("Training", "Inference")}
    assert all(a.size == 300 * 2**20 + 16 for a in found)
    assert STRIP_THRESHOLD_BYTES > directory_bytes(outdir / f"asset.{SMALL}")
    plan = large_assets.publish_plan(found)  # once per stage: the Inference manifests repeat Training's
    assert [(a.asset_id, d.id, d.bucket, d.role_arn) for a, d in plan] == [
        (BIG, f"{account}-{REGION}-aa", _bucket(account),
         f"arn:aws:iam::{account}:role/cdk-hnb659fds-file-publishing-role-{account}-{REGION}")
        for account in STAGES.values()]


# -- publishing (moto) ----------------------------------------------------------------------------------------------

def test_publishes_to_every_stage_then_strips_the_sources(tmp_path, buckets, capsys):
    outdir = _assembly(tmp_path)
    assert large_assets.run(outdir, threshold=THRESHOLD) == 0
    for account in STAGES.values():
        objects = _objects(account)
        assert set(objects) == {f"{BIG}.zip"}  # the small asset is the Assets wave's
        archive = zipfile.ZipFile(io.BytesIO(objects[f"{BIG}.zip"]))
        assert archive.namelist() == ["mxnet-1.9.1-py3-none-manylinux2014_x86_64.whl", "sub/numpy.whl"]
        assert archive.read("sub/numpy.whl") == b"N" * 16
    assert not (outdir / f"asset.{BIG}").exists()
    assert (outdir / f"asset.{SMALL}" / "settings.json").is_file()
    assert all((outdir / f"assembly-P-{s}" / f"P{s}Training.template.json").is_file() for s in STAGES)
    assert (tmp_path / "wheelhouse" / "big.whl").is_file()  # never outside the assembly
    assert not list(outdir.rglob("*.zip"))  # zipped outside the directory
    assert "1 (0 MiB), 2 uploads, 0 already published, stripped" in capsys.readouterr().out


def test_uploads_carry_the_buckets_default_encryption_and_expected_owner(tmp_path, buckets, monkeypatch):
    """S3 applies a bucket's default encryption anyway (moto too); the headers are for SCPs that deny uploads without
    them, so the test reads the requests themselves."""
    import boto3

    sent = []
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.Session())  # the clients publish() makes; restored after
    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.PutObject",
                                          lambda params, **_: sent.append(dict(params)))
    outdir = _assembly(tmp_path)
    assert large_assets.run(outdir, threshold=THRESHOLD) == 0
    uploads = {p["Bucket"]: p for p in sent}
    staging, prod = STAGES["Staging"], STAGES["Prod"]
    assert set(uploads) == {_bucket(staging), _bucket(prod)}
    assert uploads[_bucket(staging)]["ServerSideEncryption"] == "aws:kms"
    assert uploads[_bucket(staging)]["SSEKMSKeyId"] == buckets[staging]
    assert "ServerSideEncryption" not in uploads[_bucket(prod)]
    assert all(uploads[_bucket(a)]["ExpectedBucketOwner"] == a for a in (staging, prod))
    assert all(p["ContentType"] == "application/zip" for p in sent)
    head = _client("s3", staging).head_object(Bucket=_bucket(staging), Key=f"{BIG}.zip")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == buckets[staging]


def test_an_object_already_published_is_left_alone_and_the_source_still_stripped(tmp_path, buckets, capsys):
    outdir = _assembly(tmp_path)
    prod = STAGES["Prod"]
    _client("s3", prod).put_object(Bucket=_bucket(prod), Key=f"{BIG}.zip", Body=b"published before")
    assert large_assets.run(outdir, threshold=THRESHOLD) == 0
    assert _objects(prod)[f"{BIG}.zip"] == b"published before"
    assert not (outdir / f"asset.{BIG}").exists()
    assert "1 uploads, 1 already published" in capsys.readouterr().out


def test_a_failed_publish_strips_nothing(tmp_path, aws, capsys):
    outdir = _assembly(tmp_path)  # no bootstrap buckets: the stages are not bootstrapped
    assert large_assets.run(outdir, threshold=THRESHOLD) == 1
    assert (outdir / f"asset.{BIG}").is_dir()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"publishing {BIG[:12]} (asset.{BIG}) to s3://{_bucket(STAGES['Staging'])}/")
    assert "NoSuchBucket" in err and err.endswith("nothing was stripped")


def test_a_destination_without_a_literal_account_is_one_line(tmp_path, aws, capsys):
    outdir = _assembly(tmp_path)
    manifest = outdir / "assembly-P-Staging" / "PStagingTraining.assets.json"
    manifest.write_text(manifest.read_text().replace(_bucket(STAGES["Staging"]),
                                                     "cdk-hnb659fds-assets-${AWS::AccountId}-eu-west-1"))
    assert large_assets.run(outdir, threshold=THRESHOLD) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a delivery stage pins its account and region" in err
    assert (outdir / f"asset.{BIG}").is_dir()


def test_still_over_the_limit_after_stripping_fails(tmp_path, buckets, capsys):
    outdir = _assembly(tmp_path)
    assert large_assets.run(outdir, threshold=THRESHOLD, limit=10) == 1
    assert not (outdir / f"asset.{BIG}").exists()  # published and stripped all the same
    err = capsys.readouterr().err
    assert "over the 0 MiB that CodePipeline's CloudFormation actions accept" in err and "limits.html" in err


def test_nothing_large_publishes_nothing(tmp_path, aws):
    outdir = _assembly(tmp_path)
    assert large_assets.run(outdir) == 0  # the default threshold: nothing here is that large, no AWS call
    assert (outdir / f"asset.{BIG}").is_dir()


def test_no_assembly_is_one_line(tmp_path, capsys):
    assert large_assets.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"no cloud assembly in {tmp_path / 'missing'}: run `make synth` first"
