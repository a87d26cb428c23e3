"""The stacks' tests use the session-wide `synth` fixture of tests/conftest.py (one synthesized app per
environment, shared with the rehearsal's tests)."""

import json  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "config" / "examples"
ISOLATED_EXAMPLES = ("isolated-create", "isolated-import")
_isolated: dict = {}


@dataclass
class IsolatedEnv:
    config: Any
    stacks: Any
    outdir: Path

    def templates(self) -> dict[str, dict]:
        return {s.stack_name: json.loads((self.outdir / s.template_file).read_text()) for s in self.stacks.all}

    @property
    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


@pytest.fixture(scope="session")
def isolated_synth(tmp_path_factory):
    """isolated_synth(name) -> SynthesizedEnv of config/examples/<name>.yaml (isolated-network mode), once per
    session, with cdk-nag (app.synth() fails on any unacknowledged finding)."""
    import aws_cdk as cdk

    from envconfig.config import load_config
    from stacks.app_builder import build_app, cdk_json_context

    def get(name: str):
        if name not in _isolated:
            outdir = tmp_path_factory.mktemp(f"cdk-{name}")
            app = cdk.App(outdir=str(outdir),
                          context={**cdk_json_context(), "env": name, "aws:cdk:bundling-stacks": [],
                                   "aws:cdk:disable-asset-staging": True})
            config = load_config(name, EXAMPLES_DIR)
            app, stacks = build_app(config, app)
            app.synth()
            _isolated[name] = IsolatedEnv(config=config, stacks=stacks, outdir=outdir)
        return _isolated[name]

    return get
