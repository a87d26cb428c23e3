"""Packaging of the Lambda code in `lambda/` (with `contracts/` next to `roadseg_lambda/`) without Docker.

CDK's default bundling runs pip inside a Docker image; there is no Docker engine on the build machines, so a
local bundler installs `lambda/requirements.txt` with pip for the Lambda platform (manylinux_2_28 x86_64
wheels of the runtime's Python, which Amazon Linux 2023 runtimes load) next to the handler modules.
Docker stays the fallback if local bundling fails. The source is the staging directory of
`stacks.code_assets` (lambda/ plus contracts/), so the asset hash covers both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.code_assets import staged
from stacks.compliance import acknowledge_all_packs
from stacks.operations_key import OperationsKey

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the latest Python runtime of this aws-cdk-lib (cdk-nag AwsSolutions-L1)
PYTHON_VERSION = RUNTIME.name.removeprefix("python")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "requirements.txt")


@jsii.implements(cdk.ILocalBundling)
class PipLocalBundler:
    """Installs platform wheels for the Lambda runtime with the local pip, then copies the handlers and
    ``contracts/`` (both in the staged source)."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: object) -> bool:
        out = Path(output_dir)
        requirements = self.source / "requirements.txt"
        if requirements.is_file():
            command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                       "-r", str(requirements), "-t", str(out), "--platform", "manylinux_2_28_x86_64",
                       "--implementation", "cp", "--python-version", PYTHON_VERSION, "--only-binary=:all:"]
            if subprocess.run(command, check=False).returncode != 0:
                print(f"local bundling of {self.source} failed; falling back to Docker", file=sys.stderr)
                return False
        shutil.copytree(self.source, out, dirs_exist_ok=True, ignore=IGNORED)
        return True


def lambda_code() -> lambda_.Code:
    """One code asset for every roadseg function (handlers share roadseg_lambda, contracts and the same
    dependencies)."""
    source = staged("lambda")
    return lambda_.Code.from_asset(
        str(source),
        exclude=["__pycache__", "*.pyc"],
        bundling=cdk.BundlingOptions(
            image=cdk.DockerImage.from_registry("scratch"),
            command=["false"],  # never used: local bundling always runs first
            local=PipLocalBundler(source),
        ),
    )


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
    1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def function_log_group(scope: Construct, construct_id: str, *, key: OperationsKey, retention_days: int,
                       retain: bool) -> logs.LogGroup:
    """A KMS-encrypted log group keeping events ``retention_days`` (a CloudWatch Logs retention), itself kept on
    stack deletion when ``retain``. CloudWatch Logs encrypts with the key itself, so the key admits it (in the
    same call, so the two cannot drift apart)."""
    key.admit_log_groups()
    return logs.LogGroup(
        scope, construct_id,
        retention=getattr(logs.RetentionDays, _RETENTION[retention_days]),
        encryption_key=key.key,
        removal_policy=cdk.RemovalPolicy.RETAIN if retain else cdk.RemovalPolicy.DESTROY,
    )


def acknowledge_unreserved_concurrency(function: lambda_.Function) -> None:
    """HIPAA/NIST LambdaConcurrency asks for a reservation on every function; roadseg reserves only on request."""
    acknowledge_all_packs(function, "LambdaConcurrency",
                          "Reserved concurrency is taken from the account's unreserved pool, of which AWS keeps 100 "
                          "(new accounts often have far less than 1,000), so it can fail a first deploy. It is opt-in "
                          "per function (preprocessing.<fn>.reserved_concurrency; make deploy's preflight checks the "
                          "account); the ingest path is bounded by its event source's maximum concurrency.")
