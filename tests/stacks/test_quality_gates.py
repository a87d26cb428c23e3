"""Quality gates over every synthesized template: synthesis with cdk-nag, cfn-lint, offline behaviour."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs
from cfnlint.api import ManualArgs, lint_all

from envconfig.config import available_environments
from stacks.app_builder import ROOT, cdk_json_context
from stacks.compliance import add_compliance_checks

# The one place cfn-lint rules are ignored, each with its reason.
CFN_LINT_IGNORED = {
    "W3005": "CDK emits explicit DependsOn that cfn-lint finds redundant with an implicit Ref; harmless ordering.",
}


@pytest.mark.parametrize("env_name", available_environments())
def test_environment_synthesizes_with_zero_unacknowledged_nag_findings(synth, env_name):
    env = synth(env_name)  # app.synth() raises ValidationFailed on any unacknowledged cdk-nag finding
    names = {p.name.removesuffix(".template.json") for p in env.template_files}
    assert {s.stack_name for s in env.stacks.all} == names
    report = json.loads((env.outdir / "validation-report.json").read_text())
    assert all(p["conclusion"] == "success" for p in report["pluginReports"]), report


@pytest.mark.parametrize("env_name", available_environments())
def test_cfn_lint_reports_no_errors_or_unlisted_warnings(synth, env_name):
    env = synth(env_name)
    args = ManualArgs(ignore_checks=list(CFN_LINT_IGNORED), regions=[env.config.region or "us-east-1"])
    for template_file in env.template_files:
        matches = lint_all(template_file.read_text(), ) if False else _lint(template_file, args)
        assert not matches, f"{template_file.name}:\n" + "\n".join(str(m) for m in matches)


def _lint(template_file: Path, args) -> list:
    from cfnlint.api import lint_file

    return [m for m in lint_file(template_file, config=args) if m.rule.id[0] in "EW"]


def acknowledgments(stack: cdk.Stack) -> list[tuple[str, str, str]]:
    found = []
    for construct in stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found += [(construct.node.path, rule, reason) for rule, reason in entry.data.items()]
    return found


SINGLE_RULE = re.compile(r"Annotation::(AwsSolutions|HIPAA\.Security|NIST\.800\.53\.R5)-[A-Za-z0-9]+(\[.+\])?")


@pytest.mark.parametrize("env_name", available_environments())
def test_nag_acknowledgments_name_one_finding_with_a_reason(synth, env_name):
    env = synth(env_name)
    found = [ack for stack in env.stacks.all for ack in acknowledgments(stack)]
    assert found, "expected the documented acknowledgments to be recorded"
    for path, rule, reason in found:
        assert SINGLE_RULE.fullmatch(rule), (path, rule)
        assert "*]" not in rule or "::" in rule.split("[", 1)[1], (path, rule)
        assert len(reason) >= 20, (path, rule, reason)


def test_an_unacknowledged_finding_fails_synth(tmp_path):
    app = cdk.App(outdir=str(tmp_path), context={**cdk_json_context(), "aws:cdk:disable-asset-staging": True})
    stack = cdk.Stack(app, "Insecure")
    sqs.Queue(stack, "PlainQueue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    add_compliance_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


def test_cdk_cli_is_offline_and_pinned():
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    assert cdk_json["notices"] is False
    assert cdk_json["context"]["cli-telemetry"] is False
    version = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert version.lstrip("^~").split(".")[0] == "2" and int(version.lstrip("^~").split(".")[1]) >= 1148
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"].startswith("2.")


def test_cdk_runs_on_the_node_pinned_in_package_json():
    """jsii no longer supports Node 20: the set-up commands install a supported Node next to the CDK CLI."""
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["node"]
    assert int(pinned.split(".")[0]) >= 22
    node = ROOT / "node_modules" / ".bin" / "node"
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    assert version == f"v{pinned}"
    makefile = (ROOT / "Makefile").read_text()
    assert "export PATH := $(CURDIR)/node_modules/.bin:$(PATH)" in makefile


def test_synth_makes_no_network_call(tmp_path):
    """Runs the real app.py in a fresh interpreter where any outbound connection raises."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(textwrap.dedent("""
        import socket
        _real_connect = socket.socket.connect

        def _refuse(self, address):
            if self.family == socket.AF_UNIX:  # jsii talks to its node child over pipes, not sockets
                return _real_connect(self, address)
            raise OSError(f"network call attempted during synth: {address!r}")

        socket.socket.connect = _refuse
        socket.create_connection = lambda *a, **k: _refuse(socket.socket(), a[0])
    """))
    env = {
        "PATH": f"{ROOT / 'node_modules' / '.bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(guard),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # closed loopback port: an escaped call fails fast, locally
        "CDK_OUTDIR": str(tmp_path / "out"),
        # What the CLI passes: cdk.json's context (feature flags) plus -c values.
        "CDK_CONTEXT_JSON": json.dumps({**cdk_json_context(), "env": "dev", "aws:cdk:bundling-stacks": []}),
    }
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "network call attempted" not in result.stderr
    assert list((tmp_path / "out").glob("*.template.json"))
