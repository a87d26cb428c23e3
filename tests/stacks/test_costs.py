"""stacks/costs.py: the README's cost table is what the function computes from the dated price table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stacks.config import ConfigError, load_config
from stacks.costs import PRICES_FILE, cost_table, endpoint_costs, load_prices

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- costs:begin -->\n(.*?)\n<!-- costs:end -->", re.S)


def test_readme_cost_table_matches_the_function_for_dev_and_prod():
    match = BLOCK.search(README.read_text())
    assert match, "README.md lacks the <!-- costs:begin --> ... <!-- costs:end --> block"
    expected = cost_table([load_config("dev"), load_config("prod")], load_prices())
    assert match.group(1) == expected, "README cost table is stale: paste the output of `python -m stacks.costs`"


def test_price_table_is_dated_and_covers_the_configured_instance_types():
    prices = load_prices()
    assert prices.as_of.isoformat() == "2026-11-01" and prices.currency == "USD"
    for itype in ("ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.p3.2xlarge", "ml.g5.xlarge"):
        assert prices.price(itype) > 0 and prices.throughput(itype) > 0
    for env in ("dev", "prod"):
        assert len(endpoint_costs(load_config(env), prices)) == 2


def test_idle_cost_and_cost_per_1000_frames():
    prices = load_prices()
    realtime, async_ = endpoint_costs(load_config("prod"), prices)
    hourly = prices.price("ml.g4dn.xlarge")
    assert realtime.endpoint == "real-time" and realtime.min_capacity == 2
    assert realtime.idle_usd_per_month == pytest.approx(2 * hourly * prices.hours_per_month)
    assert realtime.usd_per_1000_frames == pytest.approx(hourly / (prices.throughput("ml.g4dn.xlarge") * 3600) * 1000)
    assert async_.endpoint == "async" and async_.idle_usd_per_month == 0  # scales to zero
    assert async_.max_usd_per_hour == pytest.approx(8 * prices.price("ml.g4dn.2xlarge"))


def test_throughput_assumption_can_be_overridden():
    prices = load_prices()
    base = endpoint_costs(load_config("dev"), prices)[0]
    doubled = endpoint_costs(load_config("dev"), prices, {"ml.g4dn.xlarge": 2 * base.frames_per_second})[0]
    assert doubled.usd_per_1000_frames == pytest.approx(base.usd_per_1000_frames / 2)
    assert doubled.idle_usd_per_month == base.idle_usd_per_month


def test_unknown_instance_type_and_bad_file_name_the_problem(tmp_path):
    prices = load_prices()
    with pytest.raises(ConfigError, match="ml.p5.48xlarge"):
        prices.price("ml.p5.48xlarge")
    raw = yaml.safe_load(PRICES_FILE.read_text())
    raw["usd_per_instance_hour"]["ml.g4dn.xlarge"] = -1
    bad = tmp_path / "prices.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="usd_per_instance_hour.ml.g4dn.xlarge"):
        load_prices(bad)
