#!/usr/bin/env python3
"""roadseg CDK app: `cdk synth -c env=<name>` (default dev) builds the stacks of config/<name>.yaml."""

import sys

import aws_cdk as cdk

from envconfig.config import ConfigError, load_config
from stacks.app_builder import ROOT, build_app


def main() -> None:
    app = cdk.App()
    env_name = app.node.try_get_context("env") or "dev"
    try:
        # `-c config_dir=config/examples` (or ROADSEG_CONFIG_DIR): another folder of environment files
        config_dir = app.node.try_get_context("config_dir")
        if config_dir:
            directory = ROOT / config_dir
            config = load_config(env_name, directory)
            build_app(config, app, directory)
        else:
            config = load_config(env_name)
            build_app(config, app)
    except ConfigError as exc:
        print(f"roadseg: {exc}", file=sys.stderr)
        sys.exit(2)
    app.synth()


if __name__ == "__main__":
    main()
