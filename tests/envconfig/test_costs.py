"""envconfig/costs.py: the cost table of docs/costs-and-sizing.md is what the function computes from the dated price
table and the throughput measurements of config/measurements/ (roadseg endpoint bench)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from envconfig.config import ConfigError, load_config
from envconfig.costs import MEASUREMENTS_DIR, PRICES_FILE, cost_table, endpoint_costs, load_measurements, load_prices

COSTS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "costs-and-sizing.md"
BLOCK = re.compile(r"<!-- costs:begin -->\n(.*?)\n<!-- costs:end -->", re.S)


def test_documented_cost_table_matches_the_function_for_dev_and_prod():
    match = BLOCK.search(COSTS_PAGE.read_text())
    assert match, "docs/costs-and-sizing.md lacks the <!-- costs:begin --> ... <!-- costs:end --> block"
    expected = cost_table([load_config("dev"), load_config("prod")], load_prices())
    assert match.group(1) == expected, ("docs/costs-and-sizing.md cost table is stale: paste the output of "
                                        "`python -m envconfig.costs`")


def test_price_table_is_dated_and_covers_the_configured_instance_types():
    prices = load_prices(measurements_dir=None)
    assert prices.as_of.isoformat() == "2026-11-01" and prices.currency == "USD"
    for itype in ("ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.p3.2xlarge", "ml.g5.xlarge"):
        assert prices.price(itype) > 0 and prices.throughput(itype) > 0
    for env in ("dev", "prod"):
        assert len(endpoint_costs(load_config(env), prices)) == 2


def test_idle_cost_and_cost_per_1000_frames():
    prices = load_prices(measurements_dir=None)
    realtime, async_ = endpoint_costs(load_config("prod"), prices)
    hourly = prices.price("ml.g4dn.xlarge")
    assert realtime.endpoint == "real-time" and realtime.min_capacity == 2
    assert realtime.idle_usd_per_month == pytest.approx(2 * hourly * prices.hours_per_month)
    assert realtime.usd_per_1000_frames == pytest.approx(hourly / (prices.throughput("ml.g4dn.xlarge") * 3600) * 1000)
    assert async_.endpoint == "async" and async_.idle_usd_per_month == 0  # scales to zero
    assert async_.max_usd_per_hour == pytest.approx(8 * prices.price("ml.g4dn.2xlarge"))


def test_throughput_assumption_can_be_overridden():
    prices = load_prices(measurements_dir=None)
    base = endpoint_costs(load_config("dev"), prices)[0]
    doubled = endpoint_costs(load_config("dev"), prices, {"ml.g4dn.xlarge": 2 * base.frames_per_second})[0]
    assert doubled.usd_per_1000_frames == pytest.approx(base.usd_per_1000_frames / 2)
    assert doubled.idle_usd_per_month == base.idle_usd_per_month
    assert (base.frames_per_second_label, doubled.frames_per_second_label) == ("assumed", "given")


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


def _measurement(directory: Path, name: str, **changes) -> Path:
    """A result file as `roadseg endpoint bench` writes it (the fields the cost table reads, and a few more)."""
    doc = {"schema_version": "1.0", "env": "dev", "region": "us-east-1", "kind": "realtime",
           "endpoint": "roadseg-dev-realtime", "instance_type": "ml.g4dn.xlarge", "head": "deeplab",
           "resolution": [1024, 512], "source_resolution": [2048, 1024], "target_size": [1024, 512], "roi": None,
           "concurrency": 4, "duration": 60.0, "counts": {"requests": 600, "ok": 600, "errors": 0},
           "latency_ms": {"p50": 300.0, "p90": 350.0, "p99": 420.0}, "frames_per_second": 10.0,
           "frames_per_second_per_instance": 10.0, "measured_at": "2026-12-01T10:00:00Z", **changes}
    path = directory / name
    path.write_text(json.dumps(doc))
    return path


def test_without_measurements_every_row_is_labelled_assumed():
    assert load_prices().measurements == load_measurements(MEASUREMENTS_DIR)  # read by default
    table = cost_table([load_config("dev"), load_config("prod")], load_prices(measurements_dir=None))
    rows = [line for line in table.splitlines() if line.startswith("| dev |") or line.startswith("| prod |")]
    assert len(rows) == 4 and all(row.endswith("| assumed |") for row in rows)
    header = table.splitlines()[2]
    assert "| serving resolution | head |" in header and header.endswith("| frames/s per instance | frames/s figure |")
    assert "| 1024x512 (ROI 0,0,1,0.88) | deeplab |" in rows[2]


def test_the_newest_matching_measurement_replaces_the_assumption(tmp_path):
    _measurement(tmp_path, "endpoint-dev-realtime-20261201T100000Z.json")
    _measurement(tmp_path, "endpoint-dev-realtime-20261202T100000Z.json", measured_at="2026-12-02T10:00:00Z",
                 frames_per_second_per_instance=12.5)
    # Newer, but not at dev's serving settings or of no use: ignored.
    _measurement(tmp_path, "endpoint-dev-realtime-20261203T100000Z.json", measured_at="2026-12-03T10:00:00Z",
                 head="fcn", frames_per_second_per_instance=30.0)
    _measurement(tmp_path, "endpoint-prod-realtime-20261204T100000Z.json", measured_at="2026-12-04T10:00:00Z",
                 env="prod", roi=[0.0, 0.0, 1.0, 0.88], resolution=[1024, 451], frames_per_second_per_instance=14.0)
    _measurement(tmp_path, "endpoint-dev-realtime-20261205T100000Z.json", measured_at="2026-12-05T10:00:00Z",
                 target_size=[512, 256], resolution=[512, 256], frames_per_second_per_instance=40.0)
    _measurement(tmp_path, "endpoint-dev-realtime-20261206T100000Z.json", measured_at="2026-12-06T10:00:00Z",
                 frames_per_second_per_instance=None)
    prices = load_prices(measurements_dir=tmp_path)
    assert len(prices.measurements) == 6
    realtime, async_ = endpoint_costs(load_config("dev"), prices)
    assert realtime.frames_per_second == 12.5 and realtime.frames_per_second_label == "measured 2026-12-02"
    assert realtime.measurement == "endpoint-dev-realtime-20261202T100000Z.json"
    hourly = prices.price("ml.g4dn.xlarge")
    assert realtime.usd_per_1000_frames == pytest.approx(hourly / (12.5 * 3600) * 1000)
    assert async_.frames_per_second == prices.throughput("ml.g4dn.xlarge") and async_.frames_per_second_label == (
        "assumed")
    # prod's real-time endpoint (the same instance type, with an ROI) takes the prod measurement, dev's does not.
    prod_realtime = endpoint_costs(load_config("prod"), prices)[0]
    assert prod_realtime.frames_per_second == 14.0 and prod_realtime.frames_per_second_label == "measured 2026-12-04"
    table = cost_table([load_config("dev")], prices)
    assert "| dev | real-time | ml.g4dn.xlarge | 1-1 | 1024x512 | deeplab | 0.736 | 537.28 | 0.016 | 12.5 " \
           "| measured 2026-12-02 |" in table
    assert "| dev | async | ml.g4dn.xlarge | 0-2 | 1024x512 | deeplab | 0.736 | 0.00 | 0.034 | 6 | assumed |" in table


def test_a_broken_measurement_file_names_the_file_and_the_key(tmp_path):
    _measurement(tmp_path, "endpoint-dev-realtime-20261201T100000Z.json", kind="batch")
    with pytest.raises(ConfigError, match=r"endpoint-dev-realtime-20261201T100000Z.json: kind"):
        load_prices(measurements_dir=tmp_path)
    (tmp_path / "endpoint-dev-realtime-20261201T100000Z.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the measurement"):
        load_measurements(tmp_path)
    assert load_measurements(tmp_path / "missing") == () and load_measurements(None) == ()


def _serving_at(name: str, width: int, height: int):
    """config/<name>.yaml serving at width x height (validated like the file)."""
    config = load_config(name)
    pre = type(config.preprocessing).model_validate(
        {**config.preprocessing.model_dump(), "target_width": width, "target_height": height})
    return config.model_copy(update={"preprocessing": pre})


def test_assumed_throughput_scales_with_the_serving_pixel_count():
    prices = load_prices(measurements_dir=None)
    assert tuple(prices.assumed_at_size) == (1024, 512)
    at_default = endpoint_costs(load_config("dev"), prices)[0]
    double = endpoint_costs(_serving_at("dev", 2048, 1024), prices)[0]  # 4 x the pixels
    half = endpoint_costs(_serving_at("dev", 512, 512), prices)[0]  # 1/2 the pixels
    assumed = prices.throughput("ml.g4dn.xlarge")
    assert at_default.frames_per_second == assumed and at_default.frames_per_second_label == "assumed"
    assert double.frames_per_second == pytest.approx(assumed / 4)
    assert double.usd_per_1000_frames == pytest.approx(4 * at_default.usd_per_1000_frames)
    assert half.frames_per_second == pytest.approx(assumed * 2)
    assert double.frames_per_second_label == half.frames_per_second_label == "assumed, scaled from 1024x512"
    assert double.resolution == "2048x1024" and double.idle_usd_per_month == at_default.idle_usd_per_month
    assert prices.throughput("ml.g4dn.xlarge", (2048, 1024)) == pytest.approx(assumed / 4)
    table = cost_table([_serving_at("dev", 2048, 1024)], prices)
    assert "| dev | real-time | ml.g4dn.xlarge | 1-1 | 2048x1024 | deeplab | 0.736 | 537.28 | 0.136 | 1.5 " \
           "| assumed, scaled from 1024x512 |" in table
    assert "scaled by pixel count" in table.splitlines()[0]


def test_a_measurement_at_the_serving_size_is_not_scaled(tmp_path):
    _measurement(tmp_path, "endpoint-dev-realtime-20261201T100000Z.json", target_size=[2048, 1024],
                 resolution=[2048, 1024], frames_per_second_per_instance=2.5)
    prices = load_prices(measurements_dir=tmp_path)
    realtime, async_ = endpoint_costs(_serving_at("dev", 2048, 1024), prices)
    assert realtime.frames_per_second == 2.5 and realtime.frames_per_second_label == "measured 2026-12-01"
    assert realtime.scaled_from is None
    assert async_.frames_per_second == pytest.approx(prices.throughput("ml.g4dn.xlarge") / 4)


def test_the_price_file_must_state_the_size_of_its_assumption(tmp_path):
    raw = yaml.safe_load(PRICES_FILE.read_text())
    del raw["assumed_at_size"]
    bad = tmp_path / "prices.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="assumed_at_size"):
        load_prices(bad)
