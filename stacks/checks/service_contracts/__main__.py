"""`python -m stacks.checks.service_contracts cdk.out [--env dev]`: check a synthesized app's integration contracts.

Prints one line per broken contract (rule, resource, what is missing, the AWS page) and exits 1 if any; `make synth`
runs it after synthesis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts import cloud_assembly
from envconfig.config import ConfigError, load_config
from stacks.checks.service_contracts import RULES, Assembly, Context, check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.checks.service_contracts",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", default="cdk.out", type=Path, help="cloud assembly (default cdk.out)")
    parser.add_argument("--env", default="dev", help="environment whose config the assembly was built from")
    args = parser.parse_args(argv)
    if not cloud_assembly.is_cloud_assembly(args.outdir):
        print(f"no cloud assembly in {args.outdir}: run `make synth` first", file=sys.stderr)
        return 2
    try:
        config = load_config(args.env)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    context = Context(reserved_concurrency_declared=config.reserved_lambda_concurrency,
                      account_pinned=config.account is not None)
    violations = check(Assembly.from_directory(args.outdir), context)
    for violation in violations:
        print(violation)
    print(f"integration contracts: {len(RULES)} rules, {len(violations)} broken")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
