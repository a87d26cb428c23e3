"""roadseg/preflight/: each pure check (pass and fail, with its fix), the table, and `roadseg env preflight` end to
end against moto (STS, SSM, CloudFormation, Lambda, SageMaker, Application Auto Scaling) plus botocore's Stubber
where moto has no API (Service Quotas ListServiceQuotas, Lambda GetAccountSettings)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from envconfig.config import EnvironmentConfig, load_config
from roadseg import session
from roadseg.preflight import checks
from roadseg.preflight.assembly import (
    Assembly,
    Names,
    StackTemplate,
    image_regions,
    read_assembly,
    template_reservations,
)
from roadseg.preflight.checks import CheckResult, QuotaNeed
from roadseg.preflight.errors import UsageError
from roadseg.preflight.facts import AwsFacts, EndpointState, LambdaAccount, Quota
from roadseg.preflight.report import render_json, render_table

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
PARAM = "/cdk-bootstrap/hnb659fds/version"
NAMES = Names("RoadsegDevInference", (("realtime_endpoint", "roadseg-dev-realtime"),
                                      ("async_endpoint", "roadseg-dev-async")), "AllTraffic")


def make_config(**overrides) -> EnvironmentConfig:
    raw = {"name": "dev", "prefix": "roadseg-dev",
           "training": {"instance_type": "ml.g4dn.xlarge", "use_spot_instances": True, "max_wait_hours": 48,
                        "tuning": {"max_jobs": 4, "max_parallel_jobs": 3}},
           "realtime_endpoint": {"instance_type": "ml.g4dn.xlarge", "max_capacity": 1},
           "async_endpoint": {"instance_type": "ml.g4dn.xlarge", "max_capacity": 2}}
    raw.update(overrides)
    return EnvironmentConfig.model_validate(raw)


def sample_assembly(reservations: dict[str, int] | None = None, regions=("us-east-1", "eu-west-1")) -> Assembly:
    functions = {lid: {"Type": "AWS::Lambda::Function", "Properties": {"ReservedConcurrentExecutions": n}}
                 for lid, n in (reservations or {}).items()}
    functions["Plain"] = {"Type": "AWS::Lambda::Function", "Properties": {"MemorySize": 128}}
    images = {"Images": {r: {"Algorithm": "img"} for r in regions}}
    return Assembly((StackTemplate("RoadsegDevData", {"Resources": {}}),
                     StackTemplate("RoadsegDevTraining", {"Mappings": images, "Resources": {}}),
                     StackTemplate("RoadsegDevInference", {"Mappings": images, "Resources": functions})),
                    {PARAM: 6})


def passing_quotas(config: EnvironmentConfig, **values: float) -> dict[str, Quota]:
    needs = checks.sagemaker_quota_needs(config)
    quotas = {n.name: Quota(n.name, f"L-{i:08X}", n.amount) for i, n in enumerate(needs)}
    for name, value in values.items():
        quotas[name] = Quota(name, quotas[name].code, value)
    return quotas


# ------------------------------------------------------------------------------------------- pure checks


def test_account_unpinned_passes_and_pinned_mismatch_fails_with_fix():
    assert checks.check_account(make_config(), ACCOUNT, REGION).passed
    prod = make_config(name="prod", prefix="roadseg-prod", account="111111111111", region="eu-west-1")
    assert checks.check_account(prod, "111111111111", "eu-west-1").passed
    result = checks.check_account(prod, ACCOUNT, "us-east-1")
    assert not result.passed
    assert (result.needed, result.have) == ("111111111111 / eu-west-1", f"{ACCOUNT} / us-east-1")
    assert "pins account 111111111111 but the credentials are for 123456789012" in result.fix
    assert "--region eu-west-1" in result.fix


def test_bootstrap_missing_old_and_current():
    missing = checks.check_bootstrap(PARAM, 6, None, ACCOUNT, REGION)
    assert not missing.passed and missing.have.startswith("not bootstrapped")
    assert f"npx cdk bootstrap aws://{ACCOUNT}/{REGION}`" in missing.fix
    old = checks.check_bootstrap(PARAM, 21, "6", ACCOUNT, REGION)
    assert not old.passed and old.have == "version 6" and old.needed == "version >= 21"
    assert checks.check_bootstrap(PARAM, 6, "28", ACCOUNT, REGION).passed
    custom = checks.check_bootstrap("/cdk-bootstrap/abc123/version", 6, None, ACCOUNT, REGION)
    assert custom.check == "CDK bootstrap (/cdk-bootstrap/abc123/version)" and "--qualifier abc123" in custom.fix


def test_lambda_concurrency_counts_deployed_reservations_as_available():
    reserved = {"RoadsegProdInference/RealtimeFront": 20}
    ok = checks.check_lambda_concurrency("prod", reserved, LambdaAccount(1000, 980, {"fn": 20}), REGION)
    assert ok.passed and ok.needed.startswith("120 ") and ok.have.startswith("1000 ")
    tight = checks.check_lambda_concurrency("prod", reserved, LambdaAccount(110, 110), REGION,
                                               ["preprocessing.realtime.reserved_concurrency"])
    assert not tight.passed
    assert tight.fix.startswith("remove preprocessing.realtime.reserved_concurrency from config/prod.yaml, or ")
    assert ('"Concurrent executions" >= 120: aws service-quotas request-service-quota-increase --service-code lambda '
            '--quota-code L-B99A9384 --desired-value 120 --region us-east-1') in tight.fix
    assert "aws service-quotas list-service-quotas --service-code lambda" in tight.fix
    # Nothing reserved: only the unreserved minimum is needed.
    assert checks.check_lambda_concurrency("dev", {}, LambdaAccount(100, 100), REGION).passed
    assert not checks.check_lambda_concurrency("dev", {}, LambdaAccount(50, 50), REGION).passed


def test_quota_needs_double_endpoints_tuning_on_demand_and_spot_training():
    needs = {n.name: n for n in checks.sagemaker_quota_needs(make_config())}
    assert needs["ml.g4dn.xlarge for endpoint usage"].amount == 2 * 1 + 2 * 2
    assert needs["ml.g4dn.xlarge for training job usage"].amount == 3  # tuning's parallel jobs run on demand
    assert needs["ml.g4dn.xlarge for spot training job usage"].amount == 1  # the training pipeline's job
    assert needs["ml.g4dn.xlarge for transform job usage"].amount == 1
    assert needs["ml.m5.xlarge for processing job usage"].amount == 1
    on_demand = make_config(training={"instance_type": "ml.p3.2xlarge", "use_spot_instances": False},
                            async_endpoint={"instance_type": "ml.g4dn.2xlarge", "max_capacity": 3})
    needs = {n.name: n.amount for n in checks.sagemaker_quota_needs(on_demand)}
    assert needs["ml.p3.2xlarge for training job usage"] == 2  # default max_parallel_jobs
    assert "ml.p3.2xlarge for spot training job usage" not in needs
    assert needs["ml.g4dn.xlarge for endpoint usage"] == 2 and needs["ml.g4dn.2xlarge for endpoint usage"] == 6


def test_sagemaker_quota_pass_low_missing_and_not_adjustable():
    need = QuotaNeed("ml.g4dn.xlarge for endpoint usage", 6, "2 x 1 realtime + 2 x 2 async max_capacity",
                     ("realtime_endpoint.instance_type",), ("realtime_endpoint.max_capacity",))
    assert checks.check_sagemaker_quota(need, Quota(need.name, "L-1", 6.0), "dev", REGION).passed
    low = checks.check_sagemaker_quota(need, Quota(need.name, "L-ABCD1234", 2.0), "dev", REGION)
    assert not low.passed and low.have == "2" and low.needed.startswith("6 (")
    assert ("aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code L-ABCD1234 "
            "--desired-value 6 --region us-east-1") in low.fix
    assert '"ml.g4dn.xlarge for endpoint usage"' in low.fix
    missing = checks.check_sagemaker_quota(need, None, "dev", "ap-east-1")
    assert not missing.passed
    assert ('no quota named "ml.g4dn.xlarge for endpoint usage" in ap-east-1: the instance type may not be offered '
            'there') in missing.fix
    fixed = checks.check_sagemaker_quota(need, Quota(need.name, "L-1", 0.0, adjustable=False), "dev", REGION)
    assert not fixed.passed and "not adjustable" in fixed.fix and "request-service-quota-increase" not in fixed.fix
    default = checks.check_sagemaker_quota(need, Quota(need.name, "L-1", 8.0, applied=False), "dev", REGION)
    assert default.passed and default.have == "8 (AWS default)"


def test_algorithm_image_region():
    assert checks.check_algorithm_image({"us-east-1"}, "us-east-1", "dev").passed
    missing = checks.check_algorithm_image({"us-east-1", "eu-west-1"}, "mx-central-1", "dev")
    assert not missing.passed and "not published in mx-central-1" in missing.fix
    assert "one of eu-west-1, us-east-1" in missing.fix
    assert not checks.check_algorithm_image(None, "us-east-1", "dev").passed


@pytest.mark.parametrize("state, scaling_on, passed, fix_part", [
    (EndpointState("ep", deployed=False), True, True, None),
    (EndpointState("ep", True, "ml.g4dn.xlarge", autoscaled=True), True, True, None),
    (EndpointState("ep", True, "ml.g5.xlarge", autoscaled=False), True, True, None),
    (EndpointState("ep", True, "ml.g5.xlarge", autoscaled=True), True, False,
     "two steps: 1) with the deployed type (ml.g5.xlarge) still in config/dev.yaml run `make deploy ENV=dev "
     "SCALING=off` (removes the scalable target), 2) set realtime_endpoint.instance_type to ml.g4dn.xlarge and run "
     "`make deploy ENV=dev` (updates the endpoint, then registers scaling again)"),
    (EndpointState("ep", True, "ml.g5.xlarge", autoscaled=True), False, False,
     "step 1 must keep the deployed instance type"),
    (EndpointState("ep", True, "ml.g4dn.xlarge", autoscaled=True), False, True, None),
    # Step 2 after step 1: the target is gone, so the type may change (scaling on or off).
    (EndpointState("ep", True, "ml.g5.xlarge", autoscaled=False), False, True, None),
])
def test_instance_type_change(state, scaling_on, passed, fix_part):
    result = checks.check_instance_type_change(state, "realtime_endpoint", "ml.g4dn.xlarge", scaling_on, "dev")
    assert result.passed is passed
    assert (result.fix is None) if passed else (fix_part in result.fix)


def test_assembly_parsing_and_template_facts(tmp_path):
    out = write_assembly(tmp_path, reservations={"Front": 20, "Rollout": 1})
    assembly = read_assembly(out, "dev")
    assert assembly.stack_names == ["RoadsegDevData", "RoadsegDevInference", "RoadsegDevTraining"]
    assert assembly.bootstrap == {PARAM: 6}
    assert template_reservations(assembly) == {"RoadsegDevInference/Front": 20,
                                                         "RoadsegDevInference/Rollout": 1}
    assert image_regions(assembly) == {"us-east-1", "eu-west-1"}
    with pytest.raises(UsageError, match="make synth ENV=dev"):
        read_assembly(tmp_path / "missing", "dev")


def test_evaluate_stops_at_wrong_account_and_orders_checks():
    config = make_config()
    facts = AwsFacts(ACCOUNT, REGION, {PARAM: "21"}, LambdaAccount(1000, 1000), passing_quotas(config),
                     {"roadseg-dev-realtime": EndpointState("roadseg-dev-realtime", True, "ml.g4dn.xlarge", True)})
    results = checks.evaluate(config, sample_assembly({"Front": 20}), NAMES, facts, scaling_on=True)
    assert [r.check for r in results][:3] == ["account/region", "CDK bootstrap", "Lambda concurrency"]
    assert results[-2:][0].check == "instance type roadseg-dev-realtime"
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    prod = make_config(name="prod", prefix="roadseg-prod", account="111111111111", region="eu-west-1")
    wrong = AwsFacts(ACCOUNT, "eu-west-1")
    assert [r.check for r in checks.evaluate(prod, sample_assembly(), NAMES, wrong, True)] == ["account/region"]


def test_render_table_and_json():
    results = [CheckResult("account/region", "any account / any region", "1 / us-east-1", True),
               CheckResult("quota: x", "6", "2", False, "request it")]
    lines = render_table(results).splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["check", "needed", "have", "result"]
    assert set(lines[1]) <= {"-", "+"}
    assert lines[2].endswith("| PASS") and lines[3].endswith("| FAIL")
    assert lines[-1] == "FAIL quota: x: request it"
    assert json.loads(render_json(results))[1] == {"check": "quota: x", "needed": "6", "have": "2",
                                                            "passed": False, "fix": "request it"}


# ---------------------------------------------------------------------------------------- end to end


def write_assembly(root: Path, prefix: str = "RoadsegDev", reservations: dict[str, int] | None = None,
                   regions=("us-east-1", "eu-west-1"), bootstrap: int = 6) -> Path:
    """A minimal cloud assembly shaped like `cdk synth`'s: manifest.json, asset manifests, three templates."""
    out = root / "cdk.out"
    out.mkdir(exist_ok=True)
    artifacts = {}
    bootstrap_props = {"requiresBootstrapStackVersion": bootstrap, "bootstrapStackVersionSsmParameter": PARAM}
    for suffix in ("Data", "Training", "Inference"):
        name = f"{prefix}{suffix}"
        template: dict = {"Resources": {"Plain": {"Type": "AWS::Lambda::Function", "Properties": {}}}}
        if suffix != "Data":
            template["Mappings"] = {"Images": {r: {"Algorithm": "img"} for r in regions}}
        if suffix == "Inference":
            template["Resources"].update({lid: {"Type": "AWS::Lambda::Function",
                                                "Properties": {"ReservedConcurrentExecutions": n}}
                                          for lid, n in (reservations or {}).items()})
        (out / f"{name}.template.json").write_text(json.dumps(template))
        (out / f"{name}.assets.json").write_text(json.dumps({"version": "48.0.0", "files": {}, "dockerImages": {}}))
        artifacts[f"{name}.assets"] = {"type": "cdk:asset-manifest",
                                       "properties": {"file": f"{name}.assets.json", **bootstrap_props}}
        artifacts[name] = {"type": "aws:cloudformation:stack", "environment": "aws://unknown-account/unknown-region",
                           "properties": {"templateFile": f"{name}.template.json", **bootstrap_props},
                           "dependencies": [f"{name}.assets"]}
    artifacts["Tree"] = {"type": "cdk:tree", "properties": {"file": "tree.json"}}
    (out / "manifest.json").write_text(json.dumps({"version": "48.0.0", "artifacts": artifacts}))
    return out


class _WithAccountSettings:
    """moto's Lambda client plus GetAccountSettings, which moto 5.2 does not implement."""

    def __init__(self, client, concurrent: int, unreserved: int) -> None:
        self._client, self._limit = client, {"ConcurrentExecutions": concurrent,
                                             "UnreservedConcurrentExecutions": unreserved}

    def get_account_settings(self) -> dict:
        return {"AccountLimit": self._limit}

    def __getattr__(self, name: str):
        return getattr(self._client, name)


@pytest.fixture
def aws(offline_aws_env, monkeypatch, tmp_path):
    """moto for everything; Service Quotas answered by a Stubber from `quotas`; Lambda's account limits settable."""
    with mock_aws():
        state = _AwsState()
        real = session.make_client

        def factory(service: str, region: str, **kwargs):
            if service == "service-quotas":
                return state.quota_client(region)
            client = real(service, region, **kwargs)
            return _WithAccountSettings(client, *state.lambda_limits) if service == "lambda" else client

        monkeypatch.setattr(session, "make_client", factory)
        yield state


class _AwsState:
    def __init__(self) -> None:
        self.quotas: list[dict] = []
        self.lambda_limits = (1000, 1000)
        self.quota_calls = 0

    def set_quotas(self, config: EnvironmentConfig, **values: float) -> None:
        quotas = passing_quotas(config, **values)
        self.quotas = [{"ServiceCode": "sagemaker", "QuotaName": q.name, "QuotaCode": q.code, "Value": q.value,
                        "Adjustable": True} for q in quotas.values()]

    def quota_client(self, region: str):
        client = boto3.client("service-quotas", region_name=region)
        stub = Stubber(client)
        half = len(self.quotas) // 2  # two pages, to prove the pagination
        stub.add_response("list_service_quotas", {"Quotas": self.quotas[:half], "NextToken": "page2"},
                          {"ServiceCode": "sagemaker", "MaxResults": 100})
        stub.add_response("list_service_quotas", {"Quotas": self.quotas[half:]},
                          {"ServiceCode": "sagemaker", "MaxResults": 100, "NextToken": "page2"})
        stub.add_response("list_aws_default_service_quotas", {"Quotas": [
            {"ServiceCode": "sagemaker", "QuotaName": "ml.p5.48xlarge for endpoint usage", "QuotaCode": "L-DEF",
             "Value": 0.0}]}, {"ServiceCode": "sagemaker", "MaxResults": 100})
        stub.activate()
        self.quota_calls += 1
        return client


@pytest.fixture
def run(run):
    """run(*argv) -> (exit code, stdout, stderr) of `roadseg env preflight` with these arguments."""
    return lambda *argv: run("env", "preflight", *argv)


def bootstrap(version: str = "21") -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(Name=PARAM, Value=version, Type="String")


def deploy_endpoint(name: str, instance_type: str, autoscaled: bool) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(ModelName=f"{name}-model", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm",
                    PrimaryContainer={"Image": "img"})
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": f"{name}-model", "InstanceType": instance_type,
         "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    if autoscaled:
        boto3.client("application-autoscaling", region_name=REGION).register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=f"endpoint/{name}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=1, MaxCapacity=2)


def test_main_all_pass_with_a_deployed_environment(aws, run, tmp_path):
    config = load_config("dev")
    aws.set_quotas(config)
    bootstrap()
    # The deployed inference stack reserves 30; the account has only 90 unreserved left, which is enough because
    # the deploy gives those 30 back before it reserves the new 20 (90 + 30 >= 20 + 100).
    role = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                           "Action": "sts:AssumeRole"}]}}}
    function = {"Type": "AWS::Lambda::Function", "Properties": {
        "Runtime": "python3.12", "Handler": "index.handler", "Role": {"Fn::GetAtt": ["Role", "Arn"]},
        "Code": {"ZipFile": "def handler(event, context): pass"}, "ReservedConcurrentExecutions": 30}}
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="RoadsegDevInference", TemplateBody=json.dumps({"Resources": {"Role": role, "Fn": function}}))
    aws.lambda_limits = (1000, 90)
    deploy_endpoint("roadseg-dev-realtime", config.realtime_endpoint.instance_type, autoscaled=True)
    out_dir = write_assembly(tmp_path, reservations={"Front": 20})

    rc, out, err = run("--env", "dev", "--assembly", out_dir)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["check", "needed", "have", "result"]
    assert f"{ACCOUNT} / {REGION}" in lines[2]
    lambda_row = next(line for line in lines if line.startswith("Lambda concurrency"))
    assert "120 = 20 reserved + 100 unreserved" in lambda_row and "120 = 90 unreserved + 30 reserved" in lambda_row
    assert all(line.endswith("| PASS") for line in lines[2:]), out
    assert any(line.startswith("instance type roadseg-dev-async") and "not deployed" in line for line in lines)


def test_main_failures_print_fixes_and_json(aws, run, tmp_path):
    config = load_config("dev")
    endpoint_quota = f"{config.realtime_endpoint.instance_type} for endpoint usage"
    aws.set_quotas(config, **{endpoint_quota: 1.0})
    aws.lambda_limits = (1000, 110)
    deploy_endpoint("roadseg-dev-realtime", "ml.p3.2xlarge", autoscaled=True)
    out_dir = write_assembly(tmp_path, reservations={"Front": 20}, regions=("eu-west-1",))

    rc, out, err = run("--env", "dev", "--assembly", out_dir)
    assert (rc, err) == (1, "")
    fixes = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert [f.split(":")[0] for f in fixes] == ["FAIL CDK bootstrap", "FAIL Lambda concurrency", "FAIL quota",
                                                "FAIL algorithm image in region",
                                                "FAIL instance type roadseg-dev-realtime"]
    assert f"`npx cdk bootstrap aws://{ACCOUNT}/{REGION}`" in fixes[0]
    assert "--quota-code L-B99A9384 --desired-value 1010 --region us-east-1" in fixes[1]
    assert "--service-code sagemaker --quota-code L-00000000" in fixes[2]
    assert "`make deploy ENV=dev SCALING=off`" in fixes[4]

    rc, out, _ = run("--env", "dev", "--assembly", out_dir, "--json", "--scaling", "off")
    assert rc == 1
    rows = json.loads(out)
    assert all(list(row) == ["check", "needed", "have", "passed", "fix"] for row in rows)
    assert all(isinstance(row[k], str) for row in rows for k in ("check", "needed", "have"))
    assert all((row["fix"] is None) == row["passed"] for row in rows)
    realtime = next(row for row in rows if row["check"] == "instance type roadseg-dev-realtime")
    assert realtime["have"] == "ml.p3.2xlarge (autoscaled)"
    assert realtime["fix"].startswith("step 1 must keep the deployed instance type")


def test_main_wrong_account_reports_only_that(aws, run, tmp_path):
    out_dir = write_assembly(tmp_path, prefix="RoadsegProd")
    rc, out, _ = run("--env", "prod", "--assembly", out_dir, "--json")
    assert rc == 1
    rows = json.loads(out)
    assert [r["check"] for r in rows] == ["account/region"] and "credentials are for 123456789012" in rows[0]["fix"]
    assert aws.quota_calls == 0


@pytest.mark.parametrize("argv, message", [
    (["--env", "nope"], "no configuration for environment 'nope'"),
    (["--env", "dev", "--assembly", "{tmp}/absent"], "run `make synth ENV=dev` first"),
    (["--env", "prod", "--assembly", "{tmp}/cdk.out"], "not RoadsegProdInference: run `make synth ENV=prod` first"),
    (["--env", "dev", "--assembly", "{tmp}/cdk.out", "--region", "Mars"], "not an AWS region name"),
])
def test_main_bad_input_exits_2(aws, run, tmp_path, argv, message):
    write_assembly(tmp_path)
    rc, out, err = run(*(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert (rc, out) == (2, "")
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_unknown_scaling_value_is_a_usage_error(aws, run, tmp_path):
    rc, out, err = run("--env", "dev", "--assembly", write_assembly(tmp_path), "--scaling", "maybe")
    assert (rc, out) == (2, "") and "Invalid value for '--scaling'" in err


def test_main_access_denied_exits_3(aws, run, tmp_path, monkeypatch):
    aws.set_quotas(load_config("dev"))
    factory = session.make_client

    def denying(service, region, **kwargs):
        client = factory(service, region, **kwargs)
        if service == "ssm":
            stub = Stubber(client)
            stub.add_client_error("get_parameter", "AccessDeniedException", "User is not authorized to perform "
                                  "ssm:GetParameter", 400)
            stub.activate()
        return client

    monkeypatch.setattr(session, "make_client", denying)
    rc, out, err = run("--env", "dev", "--assembly", write_assembly(tmp_path))
    assert (rc, out) == (3, "")
    assert err.startswith("roadseg-preflight: access denied to ssm:GetParameter (AccessDeniedException")
    assert len(err.strip().splitlines()) == 1


def test_main_without_credentials_or_region_exits_3(run, tmp_path, monkeypatch):
    out_dir = write_assembly(tmp_path)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    rc, out, err = run("--env", "dev", "--assembly", out_dir)
    assert (rc, out) == (3, "") and "no usable AWS credentials" in err and len(err.strip().splitlines()) == 1

    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    rc, out, err = run("--env", "dev", "--assembly", out_dir)
    assert (rc, out) == (3, "") and "no AWS region" in err
