"""labelling.scoring_job: the scoring job's CreateProcessingJob request, built without AWS, checked against
SageMaker's limits and botocore's own service model, and run end to end here: the request's arguments, with its
inputs laid out as SageMaker downloads them (manifest files), through jobs/processing_entry.py's ``score`` module
from the processing package zip, write the model scores that selection joins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import pyarrow.parquet as pq
import pytest
from botocore.validate import ParamValidator

from contracts.layout import INFERENCE
from contracts.service_limits import RequestLimitError
from labelling import scoring_job
from labelling.scoring import SCORES_FILE, SUMMARY_FILE
from labelling.scoring_job import (
    BUNDLE_FILES,
    ScoringJobError,
    ScoringJobSettings,
    approved_bundle,
    bundle_manifest,
    frames_manifest,
    input_key,
    job_name,
    normalise_bundle_uri,
    read_pool,
    scoring_request,
)
from stacks.code_assets import PROCESSING_ENTRY, processing_files
from tests.roadseg.test_segment import BLUE, RED, frame, write_bundle

BUCKET = "roadseg-dev-inference"
BUNDLE_URI = "s3://roadseg-dev-artifacts/pipelines/roadseg-dev-training/abc123/bundle/"
KEYS = ["incoming/veh-1/d1/front/1.jpg", "incoming/veh-1/d1/front/2.jpg", "incoming/veh-1/d1/front/9.jpg"]
NOW = datetime(2026, 12, 8, 4, 5, 6, tzinfo=UTC)
DATA_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1111-2222"
# The LabelScoringJob output: the bucket and the data key come from the data stack's outputs (from_output's arguments).
SETTINGS = {"prefix": "roadseg-dev",
            "role_arn": "arn:aws:iam::123456789012:role/RoadsegDevInference-LabelScoringRole",
            "image_uri": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312",
            "code_entry_uri": "s3://cdk-hnb659fds-assets-123456789012-eu-west-1/0a1b.py",
            "code_package_uri": "s3://cdk-hnb659fds-assets-123456789012-eu-west-1/2c3d.zip",
            "wheels_uri": "s3://cdk-hnb659fds-assets-123456789012-eu-west-1/4e5f.zip",
            "volume_size_gb": 30, "max_runtime_seconds": 7200}


def settings(**changes) -> ScoringJobSettings:
    return ScoringJobSettings.from_output(json.dumps({**SETTINGS, **changes}), bucket=BUCKET, kms_key_arn=DATA_KEY)


def request(**kwargs):
    name = job_name("roadseg-dev", KEYS, BUNDLE_URI, NOW)
    return scoring_request(kwargs.pop("job_settings", settings()), name=name, pool_sha256="ab" * 32, **kwargs)


def _botocore_problems(request: dict) -> str:
    """botocore's own parameter validation of CreateProcessingJob (what boto3 checks before sending)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(request, model.operation_model("CreateProcessingJob").input_shape)
    return report.generate_report()


def test_the_request_on_a_cpu_instance():
    built = request()
    name = built["ProcessingJobName"]
    assert name == "roadseg-dev-label-score-20261208040506-" + scoring_job.pool_digest(KEYS, BUNDLE_URI)[:8]
    assert built["RoleArn"] == SETTINGS["role_arn"]
    app = built["AppSpecification"]
    assert app["ImageUri"] == SETTINGS["image_uri"]
    arguments = app["ContainerArguments"]
    assert arguments[0] == "score"
    assert arguments[arguments.index("--device") + 1] == "cpu"
    assert arguments[arguments.index("--workers") + 1] == "1"  # ONNX Runtime's threads use every core
    assert arguments[arguments.index("--key-prefix") + 1] == INFERENCE.incoming
    inputs = {i["InputName"]: i["S3Input"] for i in built["ProcessingInputs"]}
    assert list(inputs) == ["code", "package", "wheels", "bundle", "frames", "pool"]
    assert inputs["wheels"]["S3Uri"] == SETTINGS["wheels_uri"]
    for manifest in ("bundle", "frames"):
        assert inputs[manifest]["S3DataType"] == "ManifestFile"
        assert inputs[manifest]["S3Uri"].startswith(f"s3://{BUCKET}/{INFERENCE.label_scores}{name}/input/")
    [output] = built["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == f"s3://{BUCKET}/{INFERENCE.label_scores}{name}/output/"
    assert output["S3Output"]["LocalPath"] == arguments[arguments.index("--output") + 1]
    assert built["ProcessingOutputConfig"]["KmsKeyId"] == DATA_KEY
    cluster = built["ProcessingResources"]["ClusterConfig"]
    assert cluster == {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30,
                       "VolumeKmsKeyId": DATA_KEY}
    assert built["NetworkConfig"] == {"EnableNetworkIsolation": True}  # reads and writes only what SageMaker moves
    assert built["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert _botocore_problems(built) == ""


def test_isolated_network_mode_puts_the_job_in_the_vpc():
    built = request(job_settings=settings(subnets="subnet-1,subnet-2", security_group_ids=["sg-1"]))
    assert built["NetworkConfig"]["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    assert _botocore_problems(built) == ""


def test_a_gpu_instance_needs_the_gpu_image_and_gets_cuda_workers_and_no_volume_key():
    with pytest.raises(ScoringJobError, match="ships no GPU scoring image"):
        request(instance_type="ml.g4dn.xlarge")
    built = request(instance_type="ml.g4dn.xlarge",
                    job_settings=settings(gpu_image_uri="1.dkr.ecr.eu-west-1.amazonaws.com/gpu:1",
                                          gpu_wheels_uri="s3://assets/gpu-wheels.zip"))
    arguments = built["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--device") + 1] == "cuda"
    assert arguments[arguments.index("--workers") + 1] == "4"
    assert built["AppSpecification"]["ImageUri"].endswith("/gpu:1")
    assert "VolumeKmsKeyId" not in built["ProcessingResources"]["ClusterConfig"]  # g4dn has local NVMe storage
    with pytest.raises(ScoringJobError, match="scoring runs on"):
        request(instance_type="ml.t3.medium")


def test_a_request_over_sagemakers_limits_is_not_built():
    with pytest.raises(RequestLimitError, match="ImageUri has 300 characters"):
        request(job_settings=settings(image_uri="x" * 300))


def test_the_settings_output_is_checked():
    joined = {"bucket": BUCKET, "kms_key_arn": DATA_KEY}
    with pytest.raises(ScoringJobError, match="not JSON"):
        ScoringJobSettings.from_output("{", **joined)
    with pytest.raises(ScoringJobError, match="lacks role_arn"):
        ScoringJobSettings.from_output(json.dumps({k: v for k, v in SETTINGS.items() if k != "role_arn"}), **joined)
    with pytest.raises(ScoringJobError, match="must be integers"):
        ScoringJobSettings.from_output(json.dumps({**SETTINGS, "volume_size_gb": "big"}), **joined)
    for missing in ("bucket", "kms_key_arn"):
        with pytest.raises(ScoringJobError, match="InferenceBucketName and DataKeyArn"):
            ScoringJobSettings.from_output(json.dumps(SETTINGS), **{**joined, missing: ""})


def test_the_bucket_and_key_are_the_data_stacks_not_the_outputs():
    """An inference stack deployed before they left its output still carries them: the data stack's values win."""
    stale = {**SETTINGS, "bucket": "old-bucket", "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/old"}
    joined = ScoringJobSettings.from_output(json.dumps(stale), bucket=BUCKET, kms_key_arn=DATA_KEY)
    assert (joined.bucket, joined.kms_key_arn) == (BUCKET, DATA_KEY)
    assert joined == settings()


def test_read_pool_takes_pool_txt_or_a_selection_manifest():
    assert read_pool("\n".join(KEYS + KEYS[:1]) + "\n\n", "pool.txt") == KEYS  # order kept, duplicates dropped
    picks = {"picks": [{"frame_key": k, "rank": i} for i, k in enumerate(KEYS)]}
    assert read_pool(json.dumps(picks), "selection.json") == KEYS
    with pytest.raises(ScoringJobError, match="lists no frames"):
        read_pool("\n", "pool.txt")
    with pytest.raises(ScoringJobError, match="not frames under incoming/"):
        read_pool("results/veh-1/d1/front/1.json\n", "pool.txt")
    with pytest.raises(ScoringJobError, match="every pick needs a frame_key"):
        read_pool(json.dumps({"picks": [{"rank": 1}]}), "selection.json")
    with pytest.raises(ScoringJobError, match="picks list"):
        read_pool("{}", "selection.json")


def test_approved_bundle_follows_the_serving_package():
    describe = {"CustomerMetadataProperties": {"EdgeBundle": BUNDLE_URI.rstrip("/")}}
    assert approved_bundle("arn:aws:sagemaker:eu-west-1:1:model-package/g/3", describe) == BUNDLE_URI
    with pytest.raises(ScoringJobError, match="no model package is approved"):
        approved_bundle("none", None)
    with pytest.raises(ScoringJobError, match="records no EdgeBundle"):
        approved_bundle("arn:aws:sagemaker:eu-west-1:1:model-package/g/3", {"CustomerMetadataProperties": {}})
    with pytest.raises(ScoringJobError, match="not an s3://bucket/prefix/"):
        approved_bundle("arn:aws:sagemaker:eu-west-1:1:model-package/g/3",
                        {"CustomerMetadataProperties": {"EdgeBundle": "s3://only-a-bucket"}})


@pytest.mark.parametrize("uri", [
    "s3://other-bucket/pipelines/roadseg-dev-training/abc123/bundle/",  # another bucket
    "s3://roadseg-dev-artifacts/models/roadseg-dev-training/abc123/bundle/",  # outside pipelines/
    "s3://roadseg-dev-artifacts/pipelines/roadseg-dev-training/abc123/",  # not a bundle/ folder
    "s3://roadseg-dev-artifacts/pipelines/bundle/",  # no pipeline/execution below pipelines/
    "s3://roadseg-dev-artifacts/pipelines//x/bundle/",  # an empty segment
])
def test_a_bundle_outside_the_roles_read_grant_is_refused(uri):
    # The role reads only pipelines/*/bundle/* of the artifacts bucket (stacks/label_scoring.py).
    with pytest.raises(ScoringJobError, match="not an edge bundle of this environment"):
        normalise_bundle_uri(uri, "roadseg-dev-artifacts")
    with pytest.raises(ScoringJobError, match="not an edge bundle of this environment"):
        approved_bundle("arn:aws:sagemaker:eu-west-1:1:model-package/g/3",
                        {"CustomerMetadataProperties": {"EdgeBundle": uri}}, "roadseg-dev-artifacts")


def test_a_bundle_of_the_artifacts_bucket_is_kept():
    assert normalise_bundle_uri(BUNDLE_URI.rstrip("/"), "roadseg-dev-artifacts") == BUNDLE_URI
    assert normalise_bundle_uri("s3://roadseg-dev-artifacts/pipelines/p/e/deeper/bundle",
                                "roadseg-dev-artifacts") == "s3://roadseg-dev-artifacts/pipelines/p/e/deeper/bundle/"


def _download(manifest: list, store: Path, local: Path) -> None:
    """What SageMaker does with a ManifestFile input: each listed key below the prefix lands at the same relative path
    under the input's LocalPath (API_S3DataSource)."""
    prefix = manifest[0]["prefix"]
    bucket, _, key_prefix = prefix[5:].partition("/")
    for relative in manifest[1:]:
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store / bucket / key_prefix / relative, target)


def test_the_job_runs_its_arguments_through_the_processing_entry(tmp_path):
    """The request's inputs laid out as SageMaker downloads them, the entry script run in an isolated interpreter on
    the processing package zip (as in the container; the wheels are this venv's): the pool's frames are scored, the
    key absent from the bucket is counted missing (exit 1, which fails the job), the scores name the pool's keys."""
    store = tmp_path / "s3"
    bundle_bucket, _, bundle_prefix = BUNDLE_URI[5:].partition("/")
    write_bundle(store / bundle_bucket / bundle_prefix)
    frame(store / BUCKET / "incoming/veh-1/d1/front/1.jpg", RED, (128, 64))
    frame(store / BUCKET / "incoming/veh-1/d1/front/2.jpg", BLUE, (128, 64))
    built = request()
    name = built["ProcessingJobName"]
    root = tmp_path / "container"

    def local(path: str) -> Path:
        return root / path.lstrip("/")

    present = [k for k in KEYS if (store / BUCKET / k).is_file()]
    inputs = {i["InputName"]: i["S3Input"] for i in built["ProcessingInputs"]}
    assert inputs["frames"]["S3Uri"] == f"s3://{BUCKET}/{input_key(name, 'frames.manifest')}"
    _download(frames_manifest(BUCKET, present), store, local(inputs["frames"]["LocalPath"]))
    _download(bundle_manifest(BUNDLE_URI), store, local(inputs["bundle"]["LocalPath"]))
    assert sorted(p.name for p in local(inputs["bundle"]["LocalPath"]).iterdir()) == sorted(BUNDLE_FILES)
    pool = local(inputs["pool"]["LocalPath"]) / "pool.txt"
    pool.parent.mkdir(parents=True)
    pool.write_text("\n".join(KEYS) + "\n")
    package = tmp_path / "package"
    package.mkdir()
    with zipfile.ZipFile(package / "f00d.zip", "w") as archive:
        for file_name, path in processing_files():
            archive.write(path, file_name)
    arguments = [str(local(a)) if a.startswith("/opt/ml/") else a
                 for a in built["AppSpecification"]["ContainerArguments"]]
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("processing_entry", {str(PROCESSING_ENTRY)!r})
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        try:
            entry.main({arguments!r}, Path({str(package)!r}), Path({str(tmp_path / "no-settings")!r}))
        except SystemExit as exc:
            print(json.dumps({{"code": exc.code, "labelling": sys.modules["labelling"].__file__}}))
    """)
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "TMPDIR": str(tmp_path), "ROADSEG_IN_DRIVE_ENV": "1"}, timeout=180)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["code"] == 1, run.stderr  # one pool frame is not in the bucket
    assert not report["labelling"].startswith(str(Path(scoring_job.__file__).parents[1]))  # from the zip
    output = local(built["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["LocalPath"])
    scores = pq.read_table(output / SCORES_FILE).to_pydict()
    assert scores["frame_key"] == present
    summary = json.loads((output / SUMMARY_FILE).read_text())
    assert (summary["pool"], summary["scored"], summary["missing"]) == (3, 2, 1)
    assert summary["missing_keys"] == [KEYS[2]]
