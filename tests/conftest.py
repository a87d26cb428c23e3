"""Session-wide test setup: offline AWS settings and one synthesized app per environment."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing in the suite may reach AWS: fake credentials, a region, no instance metadata, no CDK chatter.
OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
}
os.environ.update(OFFLINE_ENV)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("ROADSEG_CONFIG_DIR", None)  # the suite reads config/ (the delivery pipeline sets it for its steps)

# jsii (started by `import aws_cdk`) runs on the Node.js pinned in package.json, as under make.
NODE_BIN = Path(__file__).resolve().parent.parent / "node_modules" / ".bin"
if (NODE_BIN / "node").exists() and not os.environ.get("PATH", "").startswith(str(NODE_BIN)):
    os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"



# -- one synthesized app per environment, shared by every test directory ------------------------------------------

import json  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402


@dataclass
class SynthesizedEnv:
    config: Any  # envconfig.config.EnvironmentConfig
    stacks: Any  # stacks.app_builder.RoadsegStacks
    outdir: Path

    def template(self, stack: Any):
        from aws_cdk.assertions import Template

        return Template.from_json(json.loads((self.outdir / stack.template_file).read_text()))

    @property
    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


def synthesize(env_name: str, outdir: Path) -> SynthesizedEnv:
    """The app of one environment, as `make synth` builds it but without Lambda bundling (pip downloads)."""
    import aws_cdk as cdk  # imported here: only the tests that synthesize pay for jsii

    from envconfig.config import load_config
    from stacks.app_builder import build_app, cdk_json_context

    # No asset staging: the assets are referenced where they are (the export wheelhouse is ~200 MB).
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": env_name, "aws:cdk:bundling-stacks": [],
                                              "aws:cdk:disable-asset-staging": True})
    config = load_config(env_name)
    app, stacks = build_app(config, app)
    app.synth()
    return SynthesizedEnv(config=config, stacks=stacks, outdir=outdir)


_synthesized: dict[str, SynthesizedEnv] = {}


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """synth(env_name) -> SynthesizedEnv, synthesized once per session (cdk-nag runs as part of it)."""

    def get(env_name: str) -> SynthesizedEnv:
        if env_name not in _synthesized:
            _synthesized[env_name] = synthesize(env_name, tmp_path_factory.mktemp(f"cdk-{env_name}"))
        return _synthesized[env_name]

    return get
