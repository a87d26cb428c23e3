"""Synthesizes each configured environment once per session (the first synth costs seconds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.app_builder import RoadsegStacks, build_app, cdk_json_context
from stacks.config import EnvironmentConfig, available_environments, load_config

ENVIRONMENTS = available_environments()


@dataclass
class SynthesizedEnv:
    config: EnvironmentConfig
    stacks: RoadsegStacks
    outdir: Path

    def template(self, stack: cdk.Stack) -> Template:
        return Template.from_json(json.loads((self.outdir / stack.template_file).read_text()))

    @property
    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


def synthesize(env_name: str, outdir: Path) -> SynthesizedEnv:
    # Skip Lambda asset bundling (pip downloads) in tests; the templates are otherwise identical.
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": env_name, "aws:cdk:bundling-stacks": []})
    config = load_config(env_name)
    app, stacks = build_app(config, app)
    app.synth()
    return SynthesizedEnv(config=config, stacks=stacks, outdir=outdir)


_cache: dict[str, SynthesizedEnv] = {}


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """synth(env_name) -> SynthesizedEnv, synthesized once per session (cdk-nag runs as part of it)."""

    def get(env_name: str) -> SynthesizedEnv:
        if env_name not in _cache:
            _cache[env_name] = synthesize(env_name, tmp_path_factory.mktemp(f"cdk-{env_name}"))
        return _cache[env_name]

    return get
