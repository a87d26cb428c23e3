"""``roadseg env``: the environment's deployed stack outputs and what its endpoints cost."""

from __future__ import annotations

from collections.abc import Sequence

from roadseg.output import Printer
from roadseg.session import Session, UserError


def env_outputs(session: Session, out: Printer) -> None:
    found = session.all_outputs()
    if not found:
        raise UserError(f"no stack of environment '{session.env}' is deployed in {session.region} "
                        f"(make deploy ENV={session.env})")
    out.table(["STACK", "OUTPUT", "VALUE"],
              [[stack, key, value] for stack, outputs in found.items() for key, value in sorted(outputs.items())])
    out.document(found)


def env_costs(out: Printer, environments: Sequence[str]) -> None:
    from dataclasses import asdict

    from envconfig.config import ConfigError, load_config
    from envconfig.costs import cost_table, endpoint_costs, load_prices

    try:
        configs = [load_config(name) for name in environments]
        prices = load_prices()
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    out.line(cost_table(configs, prices))
    out.document([{**asdict(c), "idle_usd_per_month": round(c.idle_usd_per_month, 2),
                   "usd_per_1000_frames": round(c.usd_per_1000_frames, 4)}
                  for config in configs for c in endpoint_costs(config, prices)])
