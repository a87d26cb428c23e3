"""roadseg/capacity/: closed-form checks of the fluid model of the async path, the traffic inputs, and
``roadseg env capacity`` end to end."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from PIL import Image

from envconfig.config import load_config
from envconfig.costs import endpoint_costs, load_prices
from roadseg.capacity import model
from roadseg.capacity.model import CapacityInputError, Fleet, Ingest
from roadseg.capacity.plot import PLOT_SIZE, first_expiry_hours, plot_figure, write_plot
from roadseg.capacity.report import report_tables, summarize

PRICE = 0.736


def fleet(**overrides) -> Fleet:
    values = dict(instance_type="ml.g4dn.xlarge", min_capacity=1, max_capacity=1, frames_per_second=6.0,
                  target_backlog_per_instance=5.0, scale_in_cooldown_seconds=600, scale_out_cooldown_seconds=300,
                  max_concurrent_invocations_per_instance=4, invocation_timeout_seconds=900,
                  usd_per_instance_hour=PRICE, startup_seconds=0.0)
    values.update(overrides)
    return Fleet(**values)


# Ingest never limits unless a test says so (1,000 functions x 10 frames / 0.01 s).
FAST_INGEST = Ingest(batch_size=10, max_concurrency=1000, seconds_per_batch=0.01)


def run_model(traffic, fleet_, ingest=FAST_INGEST, hours=1.0):
    sim = model.simulate(traffic, fleet_, ingest, hours)
    return sim, summarize(sim)


def test_steady_rate_below_one_instance_has_no_queue_and_latency_is_the_service_time():
    sim, report = run_model(model.steady(3.0), fleet(min_capacity=1, max_capacity=2))
    res, service = report["results"], 1 / 6
    assert res["peak_backlog_frames"] == 0 and res["frames_unfinished"] == 0 and res["frames_expired"] == 0
    assert res["frames_completed"] == 3 * 3600
    for key in ("p50", "p95", "max"):
        assert res["endpoint_latency_seconds"][key] == pytest.approx(service, abs=0.01)
        assert res["latency_seconds"][key] == pytest.approx(service + 0.01, abs=0.01)
    assert res["time_to_first_result_seconds"] == pytest.approx(service, abs=0.1)
    # one instance is enough: no scaling, one instance-hour
    assert res["peak_instances"] == 1 and report["scaling"]["scaling_actions"] == 0
    assert res["instance_hours"] == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 3])
def test_burst_on_a_fixed_fleet_drains_in_n_over_k_times_throughput(k):
    frames, start, window = 36_000, 100.0, 10.0
    traffic = model.parse_burst(f"{frames}@{start:g}+{window:g}")
    sim, report = run_model(traffic, fleet(min_capacity=k, max_capacity=k), hours=4)
    done = np.cumsum(sim.served)
    finished_at = (np.searchsorted(done, frames - 1e-6) + 1) * sim.step_seconds
    assert finished_at == pytest.approx(start + frames / (k * 6.0), abs=sim.step_seconds)
    res = report["results"]
    assert res["frames_completed"] == frames and res["peak_instances"] == k
    # the last frame arrived at start + window and left at the drain time
    assert res["endpoint_latency_seconds"]["max"] == pytest.approx(frames / (k * 6.0) - window + 1 / 6, abs=1.5)


def test_scale_from_zero_adds_the_startup_time_to_the_first_result():
    traffic = model.parse_burst("100@0+10")
    results = {}
    for startup in (0.0, 360.0):
        sim, report = run_model(traffic, fleet(min_capacity=0, max_capacity=2, startup_seconds=startup), hours=2)
        results[startup] = report["results"]["time_to_first_result_seconds"]
        assert sim.events[0][1:] == (0, 1, "HasBacklogWithoutCapacity")
        # back to zero once the backlog is gone (15 low minutes)
        assert sim.billed[-1] == 0 and sim.events[-1][2] == 0
    # the alarm's minute: the first frame (uploaded at 0.1 s) waits for the end of the first minute
    assert results[0.0] == pytest.approx(60 - 0.1 + 1 / 6 + 0.01, abs=1.0)
    assert results[360.0] - results[0.0] == pytest.approx(360, abs=1.0)


def test_target_tracking_scales_out_to_the_backlog_over_the_target_and_is_clamped_to_max():
    # 2,000 frames at once: after the first instance (step policy) the backlog asks for 2000/5 instances -> max 4
    sim, report = run_model(model.parse_burst("2000@0+1"), fleet(min_capacity=0, max_capacity=4), hours=1)
    assert [event[2] for event in sim.events[:2]] == [1, 4]
    assert sim.events[1][3] == "target tracking"
    assert report["results"]["peak_instances"] == 4


def test_cost_is_instance_hours_times_the_price():
    sim, report = run_model(model.steady(3.0), fleet(min_capacity=2, max_capacity=2), hours=3)
    res = report["results"]
    assert res["instance_hours"] == pytest.approx(6.0) and res["cost_usd"] == pytest.approx(6.0 * PRICE, abs=0.01)
    sim, report = run_model(model.parse_burst("20000@0"), fleet(min_capacity=0, max_capacity=3,
                                                                    startup_seconds=360), hours=2)
    hours = float(sim.billed.sum()) * sim.step_seconds / 3600
    assert report["results"]["instance_hours"] == pytest.approx(hours, abs=0.005)
    assert report["results"]["cost_usd"] == pytest.approx(hours * PRICE, abs=0.01)
    assert report["results"]["usd_per_1000_frames"] == pytest.approx(hours * PRICE / 20000 * 1000, rel=1e-3)


def test_requests_older_than_the_ttl_expire_and_latency_stays_below_it():
    sim, report = run_model(model.steady(20.0), fleet(request_ttl_seconds=600), hours=1)
    res = report["results"]
    assert res["frames_expired"] > 0
    assert res["frames_completed"] == pytest.approx(6 * 3600, abs=10)
    assert res["endpoint_latency_seconds"]["max"] <= 600 + 1 + 1 / 6
    assert res["oldest_request_max_seconds"] <= 601
    assert any("request TTL" in note for note in report["notes"])


def test_ingest_concurrency_and_its_cap():
    ingest = Ingest(batch_size=10, max_concurrency=10, seconds_per_batch=2.5)
    _, report = run_model(model.steady(100.0), fleet(max_capacity=40), ingest=ingest, hours=1)
    ing = report["ingest"]
    assert ing["concurrency_needed_at_peak"] == 25 and ing["frames_per_second_at_max"] == 40
    assert ing["limits_throughput"] and ing["peak_queue_frames"] == pytest.approx(60 * 3600, rel=0.01)
    assert any("ingest_max_concurrency is 10" in note for note in report["notes"])
    _, report = run_model(model.steady(100.0), fleet(max_capacity=40), ingest=dataclasses.replace(
        ingest, max_concurrency=50), hours=1)
    assert not report["ingest"]["limits_throughput"] and report["ingest"]["peak_queue_frames"] == 0


def test_s3_requests_per_prefix_at_the_peak():
    ingest = Ingest(batch_size=10, max_concurrency=1000, seconds_per_batch=0.01, write_overlay=True)
    _, report = run_model(model.steady(100.0), fleet(min_capacity=20, max_capacity=20), ingest=ingest)
    rows = {(r["prefix"], r["requests"]): r for r in report["s3"]}
    expected = {("incoming/", "PUT"): 100, ("incoming/", "GET"): 100, ("async-input/", "PUT"): 200,
                ("async-input/", "GET"): 400, ("async-output/", "PUT"): 100, ("async-output/", "GET"): 100,
                ("results/", "PUT"): 200, ("failures/", "PUT"): 0}
    assert {key: row["peak_per_second"] for key, row in rows.items()} == pytest.approx(expected)
    assert rows[("async-input/", "GET")]["limit_per_second"] == 5500
    assert rows[("incoming/", "PUT")]["limit_per_second"] == 3500
    assert all(row["within_limit"] for row in rows.values())
    # 5,000 uploads/s: the vehicles' PUTs and ingest's PUT + tagging go over one prefix's 3,500/s
    _, report = run_model(model.parse_burst("300000@0+60"), fleet(), hours=0.5)
    over = [r for r in report["s3"] if not r["within_limit"]]
    assert [(r["prefix"], r["requests"], r["peak_per_second"]) for r in over] == [
        ("incoming/", "PUT", 5000), ("async-input/", "PUT", 10000)]
    assert any("503 Slow Down" in note for note in report["notes"])


def test_a_daily_profile_repeats_every_day(tmp_path):
    path = tmp_path / "day.csv"
    path.write_text("# weekday\nhour,frames_per_second\n" + "".join(f"{h},{h}\n" for h in range(24)))
    traffic = model.load_profile(path)
    assert traffic.peak_rate == 23
    sim, report = run_model(traffic, fleet(max_capacity=8), hours=48)
    assert sim.uploaded.sum() == pytest.approx(2 * 3600 * sum(range(24)))
    assert report["traffic"]["peak_frames_per_second"] == 23


@pytest.mark.parametrize(("content", "message"), [
    ("0,1,2\n", ":1: expected 2 columns hour,frames_per_second, got 3"),
    ("hour,fps\n", ":1: the header must be hour,frames_per_second"),
    ("hour,frames_per_second\nnoon,5\n", ":2: hour must be an integer 0..23, got 'noon'"),
    ("24,5\n", ":1: hour must be within 0..23, got 24"),
    ("0,1\n\n0,2\n", ":3: hour 0 appears twice"),
    ("0,lots\n", ":1: frames_per_second must be a number, got 'lots'"),
    ("0,-3\n", ":1: frames_per_second must be a finite number >= 0, got '-3'"),
    ("0,nan\n", ":1: frames_per_second must be a finite number >= 0, got 'nan'"),
    ("".join(f"{h},1\n" for h in range(23)), "missing: 23"),
    ("".join(f"{h},0\n" for h in range(24)), "every hour has 0 frames per second"),
])
def test_profile_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CapacityInputError) as err:
        model.load_profile(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_profile_that_does_not_exist(tmp_path):
    with pytest.raises(CapacityInputError, match="cannot read the profile"):
        model.load_profile(tmp_path / "nowhere.csv")


@pytest.mark.parametrize(("text", "message"), [
    ("36000", "FRAMES@START_SECONDS"), ("a@1", "FRAMES@START_SECONDS"), ("0@5", "frames must be positive"),
    ("10@-1", "start must be seconds >= 0"), ("10@5+0", "window must be seconds > 0"),
])
def test_burst_errors(text, message):
    with pytest.raises(CapacityInputError, match=message):
        model.parse_burst(text)


def test_request_ttl_is_the_ingest_functions_default():
    from segcore.settings import Settings

    ttl = {f.name: f.default for f in dataclasses.fields(Settings)}["async_request_ttl_seconds"]
    assert model.REQUEST_TTL_SECONDS == ttl


def test_model_inputs_come_from_the_config_and_price_table():
    config, prices = load_config("prod"), load_prices()
    fleet_, ingest = model.model_inputs(config, prices)
    assert (fleet_.instance_type, fleet_.min_capacity, fleet_.max_capacity) == ("ml.g4dn.2xlarge", 0, 8)
    row = [c for c in endpoint_costs(config, prices) if c.endpoint == "async"][0]
    assert fleet_.frames_per_second == row.frames_per_second and fleet_.frames_per_second_source.endswith(
        "(the cost table's figure)")
    assert fleet_.usd_per_instance_hour == prices.price("ml.g4dn.2xlarge")
    assert ingest.max_concurrency == config.preprocessing.ingest_max_concurrency
    assert ingest.seconds_per_batch == pytest.approx(0.25 * config.preprocessing.batch_size)
    measured, _ = model.model_inputs(config, prices, frames_per_second=9.5, startup_seconds=420)
    assert measured.frames_per_second == 9.5 and measured.startup_seconds == 420
    assert measured.frames_per_second_source == "given (--frames-per-second)"


def test_plot_without_matplotlib_is_drawn_with_pillow(tmp_path, monkeypatch):
    sim, _ = run_model(model.parse_burst("2000@0+1"), fleet(min_capacity=0, max_capacity=4), hours=1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    path = write_plot(sim, tmp_path / "pillow.png", "test")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == PLOT_SIZE


# -- the command ----------------------------------------------------------------------------------------------------



def test_command_json_and_plot(run, tmp_path):
    plot = tmp_path / "out" / "capacity.png"
    rc, out, err = run("--env", "prod", "env", "capacity", "--rate", "400", "--hours", "2", "--json", "--plot", plot)
    assert rc == 0, err
    report = json.loads(out)
    assert set(report) == {"environment", "traffic", "model", "scaling", "results", "ingest", "s3", "notes", "plot"}
    assert set(report["results"]) == {
        "time_to_first_result_seconds", "latency_seconds", "endpoint_latency_seconds", "frames_completed",
        "frames_expired", "frames_unfinished", "peak_instances", "peak_instances_in_service", "peak_backlog_frames",
        "oldest_request_max_seconds", "oldest_request_alarm", "instance_hours", "cost_usd", "usd_per_1000_frames"}
    assert report["environment"] == "prod" and report["traffic"]["frames"] == 400 * 7200
    assert report["scaling"]["max_capacity"] == 8 and report["results"]["peak_instances"] == 8
    assert report["scaling"]["instances_for_peak_rate"] == 58  # 400 / 7 frames/s
    assert report["ingest"]["limits_throughput"] is True  # 100 functions needed, 50 allowed
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == PLOT_SIZE


def test_command_prints_the_tables(run, tmp_path):
    profile = tmp_path / "day.csv"
    profile.write_text("hour,frames_per_second\n" + "".join(f"{h},{2 if 7 <= h <= 19 else 0}\n" for h in range(24)))
    rc, out, _ = run("env", "capacity", "--profile", profile, "--frames-per-second", "8")
    assert rc == 0
    assert "Capacity of the async path (dev)" in out and "time to first result" in out
    assert "ml.g4dn.xlarge, 8 frames/s each, given (--frames-per-second)" in out
    assert "S3 requests per second at the peak, per prefix" in out and "async-input/" in out


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give exactly one traffic pattern"),
    (["--rate", "5", "--burst", "10@0"], "(got --rate and --burst)"),
    (["--rate", "0"], "--rate must be a positive number"),
    (["--burst", "lots"], "FRAMES@START_SECONDS"),
    (["--rate", "5", "--hours", "0"], "--hours must be within"),
    (["--rate", "5", "--hours", "1000"], "--hours must be within"),
    (["--rate", "5", "--frames-per-second", "-1"], "--frames-per-second must be a positive number"),
    (["--rate", "5", "--startup-seconds", "-1"], "--startup-seconds must be >= 0"),
    (["--burst", "10@7200", "--hours", "1"], "after the 1-hour horizon"),
    (["--profile", "missing.csv"], "cannot read the profile"),
])
def test_command_bad_input_exits_2(run, argv, message):
    rc, _, err = run("env", "capacity", *argv)
    assert rc == 2 and message in err and err.startswith("roadseg env capacity: error: ")


def test_command_help_has_an_example(run):
    rc, out, _ = run("env", "capacity", "--help")
    assert rc == 0 and "Example:" in out and "roadseg " in out.split("Example:")[1]


def test_what_if_flags_override_the_environment_and_are_validated(run):
    rc, out, _ = run("--env", "prod", "env", "capacity", "--rate", "400", "--hours", "2", "--min-capacity", "58",
                     "--max-capacity", "64", "--ingest-max-concurrency", "120", "--json")
    report = json.loads(out)
    assert rc == 0
    assert (report["scaling"]["min_capacity"], report["scaling"]["max_capacity"]) == (58, 64)
    assert report["ingest"]["max_concurrency"] == 120
    rc, _, err = run("env", "capacity", "--rate", "10", "--min-capacity", "5", "--max-capacity", "2")
    assert rc == 2 and "min_capacity (5) must be <= max_capacity (2)" in err
    rc, _, err = run("env", "capacity", "--rate", "10", "--ingest-max-concurrency", "1")
    assert rc == 2 and "ingest_max_concurrency" in err


# -- the size the throughput is for, and the plot ----------------------------------------------------------------

def _serving_at(name: str, width: int, height: int):
    config = load_config(name)
    pre = type(config.preprocessing).model_validate(
        {**config.preprocessing.model_dump(), "target_width": width, "target_height": height})
    return config.model_copy(update={"preprocessing": pre})


def test_throughput_is_scaled_to_the_serving_size_and_the_report_names_it():
    prices = load_prices(measurements_dir=None)
    at_default, _ = model.model_inputs(load_config("dev"), prices)
    at_double, _ = model.model_inputs(_serving_at("dev", 2048, 1024), prices)
    assert at_default.frames_per_second == prices.throughput("ml.g4dn.xlarge")
    assert at_double.frames_per_second == pytest.approx(at_default.frames_per_second / 4)
    assert at_double.serving_resolution == "2048x1024"
    assert at_double.frames_per_second_source == "assumed, scaled from 1024x512 (the cost table's figure)"
    sim, report = run_model(model.steady(1.0), at_double)
    assert report["model"]["serving_resolution"] == "2048x1024"
    summary = dict(report_tables(report)[0][2])
    assert summary["instance type"].startswith(
        "ml.g4dn.xlarge, 1.5 frames/s each, assumed, scaled from 1024x512 (the cost table's figure), "
        "for 2048x1024 frames; start-up")


def _expiring() -> model.Simulation:
    """12 frames/s into one 6 frames/s instance with a 600 s TTL: requests expire from 1,200 s on."""
    sim, report = run_model(model.steady(12.0), fleet(request_ttl_seconds=600.0))
    assert report["results"]["frames_expired"] > 0
    return sim


def test_first_expiry_is_when_the_queue_outgrows_the_ttl():
    assert first_expiry_hours(_expiring()) == pytest.approx(1200 / 3600, abs=2 / 3600)
    sim, _ = run_model(model.steady(3.0), fleet())
    assert first_expiry_hours(sim) is None


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_plot_marks_expired_requests_and_keeps_the_legends_off_the_panels():
    pytest.importorskip("matplotlib")
    figure = plot_figure(_expiring(), "test")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    top, bottom = figure.axes
    for axes in (top, bottom):
        legend = axes.get_legend()
        assert not _overlaps(legend.get_window_extent(renderer), axes.get_window_extent(renderer))
        assert any(text.get_text().startswith("first request expired (0.3 h)") for text in legend.get_texts())
    labels = [text.get_text() for text in top.get_legend().get_texts()]
    assert "expired after the 600 s TTL (frames, cumulative)" in labels
    expired_line = next(line for line in top.get_lines() if line.get_label().startswith("expired"))
    assert expired_line.get_ydata()[-1] == pytest.approx(_expiring().expired.sum())
    plain = plot_figure(run_model(model.steady(3.0), fleet())[0], "test")
    assert not any("expired" in line.get_label() for axes in plain.axes for line in axes.get_lines())


def test_pillow_plot_marks_expired_requests_right_of_the_panels(tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    purple = (148, 103, 189)
    with_expiry = write_plot(_expiring(), tmp_path / "expired.png", "test")
    without = write_plot(run_model(model.steady(3.0), fleet())[0], tmp_path / "plain.png", "test")
    right = PLOT_SIZE[0] - 330  # the panels' right edge; the legends are right of it
    with Image.open(with_expiry) as image:
        pixels = np.asarray(image.convert("RGB"))
    is_purple = np.all(pixels == purple, axis=-1)
    assert is_purple[:, :right].any() and is_purple[:, right + 1:].any()  # the curve, and its legend entry
    with Image.open(without) as image:
        assert not np.all(np.asarray(image.convert("RGB")) == purple, axis=-1).any()
