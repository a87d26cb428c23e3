"""What a new operator hit in the roadseg command's first hour (issue 20, section 3): one region rule (AWS_REGION
too, the preflight included), an unparseable AWS answer in one line, error prefixes that are the command path,
messages that name real options and the real config file, `drive status` before the launcher ran, global options
after the command words, and config errors with did-you-mean and file:line:col. Offline: moto, botocore's own
response parser fed an HTML page, and the real config files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from contracts import drive_table as table
from contracts.drives import DriveId
from contracts.naming import drives_table_name
from envconfig.config import CONFIG_DIR, ConfigError, load_config, section_keys
from roadseg import preflight, session
from roadseg.drives import missing_drive_message
from roadseg.preflight import facts as preflight_facts

REGION = "us-east-1"
BUCKET = "roadseg-dev-inference-first-hour"
TABLE = drives_table_name("roadseg-dev")
# A captive portal's page: not XML (unclosed <meta>, <br>), so botocore's XML parser raises ResponseParserError.
PORTAL_HTML = (b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in to the guest network</title></head>'
               b"<body><p>Accept the terms<br>to continue</p></body></html>")
# A proxy's well-formed XHTML page: parsed as XML, then botocore's parser finds no result element (KeyError).
PROXY_XHTML = b"<html><head><title>403 Blocked by policy</title></head><body><p>Blocked</p></body></html>"


@pytest.fixture
def aws(offline_aws_env):
    with mock_aws():
        yield


def _only_aws_region(monkeypatch, region: str) -> None:
    """A shell like the new user's: AWS_REGION set, AWS_DEFAULT_REGION not, no profile region."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", region)


# ------------------------------------------------------------------------------------------------ 1. one region rule


def test_aws_region_alone_is_enough_and_the_order_is_explicit_config_aws_region_default(monkeypatch, offline_aws_env):
    _only_aws_region(monkeypatch, "eu-west-1")
    assert boto3.session.Session().region_name is None  # what boto3 alone would use: nothing
    assert session.resolve_region(None, None) == "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert session.resolve_region(None, None) == "eu-west-1"  # AWS_REGION before AWS_DEFAULT_REGION
    assert session.resolve_region(None, "us-west-2") == "us-west-2"  # the config's pin before both
    assert session.resolve_region("ap-south-1", "us-west-2") == "ap-south-1"  # --region before all


def test_every_client_of_a_command_gets_the_aws_region(run, aws, monkeypatch):
    _only_aws_region(monkeypatch, "eu-west-1")
    seen = []
    real = session.make_client
    monkeypatch.setattr(session, "make_client", lambda service, region: seen.append((service, region))
                        or real(service, region))
    rc, _, _ = run("model", "list", "--group", "g")
    assert rc == 0 and seen == [("sagemaker", "eu-west-1")]


def test_the_preflight_uses_the_same_rule(monkeypatch, offline_aws_env):
    _only_aws_region(monkeypatch, "eu-west-1")
    dev = load_config("dev")
    assert dev.region is None
    assert preflight.resolve_region(None, dev) == "eu-west-1"
    assert preflight.resolve_region(None, load_config("prod")) == "eu-west-1"  # prod pins it
    seen = []
    monkeypatch.setattr(session, "make_client", lambda service, region, **options: seen.append((service, region,
                                                                                                options)))
    preflight_facts.Clients(preflight.resolve_region(None, dev))("sts")
    assert seen == [("sts", "eu-west-1", {"max_attempts": 5, "user_agent": "roadseg-preflight"})]


def test_one_session_per_run_and_each_caller_its_retries_and_user_agent(offline_aws_env):
    session.forget_session()
    first = session._boto3_session()
    command = session.make_client("s3", REGION)
    check = session.make_client("sts", REGION, max_attempts=5, user_agent="roadseg-preflight")
    assert session._boto3_session() is first
    assert (command.meta.config.retries, command.meta.config.user_agent_extra) == ({"mode": "standard"}, "roadseg-cli")
    assert check.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}  # 5 retries after the first
    assert check.meta.config.user_agent_extra == "roadseg-preflight"
    session.forget_session()
    assert session._boto3_session() is not first


def test_make_deploy_preflight_runs_with_only_aws_region(run, monkeypatch, offline_aws_env, tmp_path):
    """`make deploy` runs `roadseg --env ENV env preflight`: it used to stop at "no AWS region" in such a shell."""
    from tests.roadseg.test_preflight import write_assembly

    _only_aws_region(monkeypatch, "eu-west-1")
    regions = []
    monkeypatch.setattr(preflight, "run", lambda config, assembly, names, region, scaling_on: regions.append(region)
                        or [])
    rc, _, _ = run("--env", "dev", "env", "preflight", "--scaling", "on", "--assembly", write_assembly(tmp_path))
    assert rc == 0 and regions == ["eu-west-1"]


def test_no_region_anywhere_names_the_config_file_in_use(run, aws, monkeypatch, tmp_path):
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    shutil.copy(CONFIG_DIR / "dev.yaml", tmp_path / "dev.yaml")
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(tmp_path))
    rc, _, err = run("pipeline", "status", "--execution", "arn:x")
    assert rc == 3 and err.strip() == (f"roadseg pipeline status: error: no AWS region: pass --region, set AWS_REGION, "
                                       f"or set region: in {tmp_path / 'dev.yaml'}")


# ------------------------------------------------------------------------ 2. an answer that is not an AWS response


def _answers_html(client, page: bytes = PORTAL_HTML):
    """Every request of ``client`` gets an HTML page (HTTP 200) instead of AWS's answer, parsed by botocore as usual
    (registered first: before moto's own before-send handler)."""

    class Raw:
        def stream(self, **_):
            yield page

    client.meta.events.register_first(
        "before-send", lambda request, **_: AWSResponse(request.url, 200, {"Content-Type": "text/html"}, Raw()))
    return client


@pytest.mark.parametrize("page", [PORTAL_HTML, PROXY_XHTML], ids=["not-xml", "well-formed-xhtml"])
def test_an_html_page_instead_of_aws_xml_is_one_line_exit_3(run, aws, monkeypatch, page):
    real = session.make_client
    monkeypatch.setattr(session, "make_client", lambda service, region: _answers_html(real(service, region), page))
    rc, out, err = run("--env", "dev", "model", "list")  # DescribeStacks: CloudFormation's XML protocol
    assert (rc, out) == (3, "")
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("roadseg model list: error: the answer to an AWS request was not an AWS response")
    assert "check your proxy/network settings" in err and "<html>" not in err


def test_the_preflight_reports_it_in_one_line_too(run, aws, monkeypatch, tmp_path):
    from tests.roadseg.test_preflight import write_assembly

    real = session.make_client
    monkeypatch.setattr(session, "make_client",
                        lambda service, region, **options: _answers_html(real(service, region, **options)))
    rc, _, err = run("env", "preflight", "--assembly", write_assembly(tmp_path))
    assert rc == 3 and len(err.strip().splitlines()) == 1 and "check your proxy/network settings" in err
    assert err.startswith("roadseg-preflight: the answer to an AWS request")


# ------------------------------------------------------------------------------------------ 3. messages that point


def test_the_error_prefix_is_the_command_path_not_option_values(run, aws):
    rc, _, err = run("--env", "dev", "--region", REGION, "env", "outputs")
    assert rc == 2 and err.startswith("roadseg env outputs: error: no stack of environment 'dev'")
    rc, _, err = run("-q", "drive", "--env", "dev", "status", "car-7/d1")
    assert rc == 2 and err.startswith("roadseg drive status: error:")


def test_a_stack_not_deployed_offers_the_commands_real_option(run, aws):
    rc, _, err = run("model", "list")
    assert rc == 2 and "pass the name explicitly" not in err
    assert err.strip().endswith("is not deployed in us-east-1 (make deploy ENV=dev); or pass --group")
    rc, _, err = run("pipeline", "start", "--dataset", "cityscapes")
    assert rc == 2 and err.strip().endswith("; or pass --pipeline <name>")


def test_drive_status_without_the_drives_table_says_to_deploy(run, aws):
    rc, out, err = run("drive", "status", "car-7/d1")
    assert (rc, out) == (2, "")
    assert err.strip() == (f"roadseg drive status: error: the drives table {TABLE} does not exist in {REGION}: deploy "
                           "the environment's stacks, whose inference stack RoadsegDevInference holds it "
                           "(make deploy ENV=dev); or pass --table")


@pytest.fixture
def drives_bucket_and_table(aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("dynamodb", region_name=REGION).create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                                                              **table.key_schema())
    return s3


def test_drive_status_right_after_the_upload_says_the_launcher_has_not_run(run, drives_bucket_and_table, tmp_path):
    log = tmp_path / "2026-12-03-0912.mcap"
    log.write_bytes(b"\x89MCAP0\r\n")  # the upload sends bytes as they are; the launcher is not deployed here
    assert run("drive", "upload", log, "--vehicle", "car-7", "--bucket", BUCKET)[0] == 0
    rc, _, err = run("drive", "status", "car-7/2026-12-03-0912", "--bucket", BUCKET)
    assert rc == 2 and "upload its log" not in err
    assert (f"its log is uploaded (s3://{BUCKET}/drives/car-7/2026-12-03-0912.mcap) but the launcher has not "
            "started its extraction yet") in err


def test_drive_status_of_a_ros2_bag_without_metadata_says_to_upload_it_again(run, drives_bucket_and_table):
    drives_bucket_and_table.put_object(Bucket=BUCKET, Key="drives/car-7/d2/rosbag2_0.db3", Body=b"x")
    rc, _, err = run("drive", "status", "car-7/d2", "--bucket", BUCKET)
    assert rc == 2 and f"1 object(s) under s3://{BUCKET}/drives/car-7/d2/ but no metadata.yaml" in err


def test_drive_status_without_the_bucket_still_points_at_the_upload(run, drives_bucket_and_table):
    rc, _, err = run("drive", "status", "car-7/d3")  # no --bucket and no stacks: the bucket is unknown
    assert rc == 2 and "no drive car-7/d3: upload its log with `roadseg drive upload`" in err
    assert "if you uploaded it moments ago, the launcher has not started it yet" in err
    assert "drives/car-7/d3 in the inference bucket" in err


def test_what_is_under_the_drive_decides_the_message():
    drive = DriveId("car-7", "d1")
    lookalike = ["drives/car-7/d10.mcap", "drives/car-7/d1x/metadata.yaml"]
    assert missing_drive_message(drive, "b", lookalike).startswith("no drive car-7/d1: upload its log")
    assert "its log is uploaded (s3://b/drives/car-7/d1.bag)" in missing_drive_message(
        drive, "b", [*lookalike, "drives/car-7/d1.bag"])
    assert "its log is uploaded (s3://b/drives/car-7/d1/metadata.yaml)" in missing_drive_message(
        drive, "b", ["drives/car-7/d1/a.db3", "drives/car-7/d1/metadata.yaml"])
    assert "no metadata.yaml" in missing_drive_message(drive, "b", ["drives/car-7/d1/a.db3"])


# -------------------------------------------------------------------------------- 4. global options, env costs


def test_global_options_work_after_the_command_words(run, aws, monkeypatch):
    seen = []
    real = session.make_client
    monkeypatch.setattr(session, "make_client", lambda service, region: seen.append(region) or real(service, region))
    assert run("model", "list", "--group", "g", "--region", "eu-west-1")[0] == 0
    assert run("model", "--region", "ap-south-1", "list", "--group", "g")[0] == 0
    assert seen == ["eu-west-1", "ap-south-1"]
    rc, _, err = run("model", "list", "--env", "nowhere")
    assert rc == 2 and "no configuration for environment 'nowhere'" in err


def test_json_before_the_command_is_the_commands_json(run, aws):
    rc, out, _ = run("--json", "env", "costs", "dev")
    assert rc == 0 and {c["environment"] for c in json.loads(out)} == {"dev"}
    rc, out, err = run("--json", "data", "upload", ".")
    assert (rc, out) == (2, "") and "--json: `roadseg data upload` prints no JSON document" in err


def test_env_costs_follows_env_and_the_config_folder(run, aws, monkeypatch, tmp_path):
    rc, out, _ = run("--env", "prod", "env", "costs", "--json")
    assert rc == 0 and {c["environment"] for c in json.loads(out)} == {"prod"}
    rc, out, _ = run("env", "costs", "--env", "prod", "--json")
    assert rc == 0 and {c["environment"] for c in json.loads(out)} == {"prod"}
    shutil.copy(CONFIG_DIR / "dev.yaml", tmp_path / "dev.yaml")
    shutil.copy(CONFIG_DIR / "prod.yaml", tmp_path / "lab.yaml")
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(tmp_path))
    rc, out, err = run("env", "costs", "--json")  # no --env: every environment of the folder in use
    assert rc == 0, err
    assert {c["environment"] for c in json.loads(out)} == {"dev", "lab"}


def test_global_quiet_after_the_command_silences_the_progress_bar(run, aws, tmp_path):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    rc, out, err = run("data", "upload", tmp_path / "d", "--bucket", BUCKET, "-q")
    assert rc == 0 and "uploaded 1 files" in out and err == ""


# ------------------------------------------------------------------------------------------- 4. config errors


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "dev.yaml").write_text(text)
    return tmp_path


def test_an_unknown_config_key_gets_did_you_mean(tmp_path):
    config_dir = _write(tmp_path, "prefix: roadseg-dev\ntraining:\n  instance_typ: ml.g5.xlarge\ndrivs: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config("dev", config_dir)
    message = str(caught.value)
    assert f"{tmp_path / 'dev.yaml'}: training.instance_typ: unknown key (did you mean 'instance_type'?)" in message
    assert f"{tmp_path / 'dev.yaml'}: drivs: unknown key (did you mean 'drives'?)" in message


def test_an_unknown_key_with_nothing_close_lists_the_sections_keys(tmp_path):
    config_dir = _write(tmp_path, "prefix: roadseg-dev\nnetwork:\n  mode: create\n  create:\n    zzz: 1\n")
    with pytest.raises(ConfigError, match=r"network\.create\.zzz: unknown key \(allowed here: availability_zones, "
                                          r"cidr\)"):
        load_config("dev", config_dir)
    assert section_keys(("network", "import")) == sorted(section_keys(("network", "import")))
    assert "vpc_id" in section_keys(("network", "import"))  # the alias of import_
    assert section_keys(("classes", "safety_critical_iou_floors")) == []  # a mapping, not a section


def test_a_yaml_error_is_one_line_with_file_line_and_column(run, aws, monkeypatch, tmp_path):
    config_dir = _write(tmp_path, "prefix: roadseg-dev\ntraining:\n  instance_type: ml.g5.xlarge\n"
                                  "    epochs: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config("dev", config_dir)
    assert str(caught.value) == f"{tmp_path / 'dev.yaml'}:4:11: not valid YAML: mapping values are not allowed here"
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(config_dir))
    rc, _, err = run("model", "list")
    assert rc == 2 and err == (f"roadseg model list: error: {tmp_path / 'dev.yaml'}:4:11: not valid YAML: mapping "
                               "values are not allowed here\n")


@pytest.mark.parametrize("argv", [("-h",), ("--env", "prod", "env", "-h"), ("env", "costs", "-h"),
                                  ("drive", "status", "car-7/d1", "-q", "-h")])
def test_help_at_every_level_after_the_command_path_was_worked_out(run, argv):
    rc, out, _ = run(*argv)
    assert rc == 0 and out.startswith("Usage: roadseg") and "-h, --help" in out
