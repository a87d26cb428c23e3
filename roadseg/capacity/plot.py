"""The ``--plot`` PNG of one simulation: the endpoint backlog (with the ingest queue and the requests that expired
unprocessed) over the instance count, per minute; matplotlib when installed, else the same panels with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roadseg.capacity.model import METRIC_PERIOD_SECONDS, CapacityInputError, Simulation

PLOT_SIZE = (1200, 700)  # pixels of the --plot PNG


def _per_minute(sim: Simulation) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    per_minute = int(round(METRIC_PERIOD_SECONDS / sim.step_seconds))
    minutes = sim.steps // per_minute

    def peak(values: np.ndarray) -> np.ndarray:
        return values[: minutes * per_minute].reshape(minutes, per_minute).max(axis=1)

    hours = np.arange(minutes) * METRIC_PERIOD_SECONDS / 3600.0  # each minute's start (drawn as steps)
    # Frames expired by each minute's end (drawn at the minute's start, like the other series).
    expired = np.cumsum(sim.expired)[per_minute - 1: minutes * per_minute: per_minute]
    return hours, {"backlog": peak(sim.backlog), "sqs": peak(sim.sqs), "in_service": peak(sim.in_service),
                   "billed": peak(sim.billed), "expired": expired}


def first_expiry_hours(sim: Simulation) -> float | None:
    """When the first request expired in the endpoint queue (hours), None when none did."""
    steps = np.flatnonzero(sim.expired > 0)
    return float(steps[0] * sim.step_seconds / 3600.0) if steps.size else None


def _expired_label(sim: Simulation) -> str:
    ttl = sim.fleet.request_ttl_seconds
    return f"expired after the {f'{ttl / 3600:g} h' if ttl >= 3600 else f'{ttl:g} s'} TTL (frames, cumulative)"


def write_plot(sim: Simulation, path: Path, title: str) -> Path:
    """A PNG of the endpoint backlog (and the ingest queue, and the requests that expired unprocessed) and the
    instance count over time, PLOT_SIZE pixels; drawn with Pillow when matplotlib is not installed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            figure = plot_figure(sim, title)
        except ImportError:
            _plot_pillow(sim, path, title)
            return path
        figure.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise CapacityInputError(f"--plot: cannot write {path}: {exc}") from None
    return path


def plot_figure(sim: Simulation, title: str):
    """The matplotlib figure of :func:`write_plot` (ImportError without matplotlib). The legends sit right of the
    panels, where no curve runs; requests that expired unprocessed are drawn (cumulative) and the first expiry
    is marked on both panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hours, series = _per_minute(sim)
    figure = Figure(figsize=(PLOT_SIZE[0] / 100, PLOT_SIZE[1] / 100), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    figure.subplots_adjust(left=0.08, right=0.7)
    top.plot(hours, series["backlog"], color="tab:blue", label="endpoint backlog (frames)")
    if series["sqs"].any():
        top.plot(hours, series["sqs"], color="tab:orange", label="ingest queue (frames)")
    first_expiry = first_expiry_hours(sim)
    if first_expiry is not None:
        top.plot(hours, series["expired"], color="tab:purple", linestyle="--", label=_expired_label(sim))
        top.axvline(first_expiry, color="tab:purple", linestyle=":",
                    label=f"first request expired ({first_expiry:.1f} h)")
    top.set_ylabel("frames")
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    top.grid(alpha=0.3)
    bottom.step(hours, series["billed"], where="post", color="tab:red", label="instances (incl. starting)")
    bottom.step(hours, series["in_service"], where="post", color="tab:green", label="instances in service")
    bottom.axhline(sim.fleet.max_capacity, color="grey", linestyle="--", label="max_capacity")
    if first_expiry is not None:
        bottom.axvline(first_expiry, color="tab:purple", linestyle=":",
                       label=f"first request expired ({first_expiry:.1f} h)")
    bottom.set_ylabel("instances")
    bottom.set_xlabel("hours")
    bottom.set_ylim(0, max(sim.fleet.max_capacity, 1) * 1.15)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    bottom.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def _plot_pillow(sim: Simulation, path: Path, title: str) -> None:
    """The same two panels drawn with Pillow (used when matplotlib is not installed)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = PLOT_SIZE
    image = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    hours, series = _per_minute(sim)
    draw.text((width // 2, 20), title, fill="black", font=font, anchor="mm")
    left, right = 100, width - 330  # the legends go right of the panels, where no curve runs
    span = float(hours[-1] + METRIC_PERIOD_SECONDS / 3600.0) if hours.size else 1.0
    blue, orange, red, green, grey = (31, 119, 180), (255, 127, 14), (214, 39, 40), (44, 160, 44), (128, 128, 128)
    purple = (148, 103, 189)
    first_expiry = first_expiry_hours(sim)
    panels = [
        (60, height // 2 - 30, "frames",
         [("backlog", blue, "endpoint backlog"), ("sqs", orange, "ingest queue"),
          ("expired", purple, _expired_label(sim))], None),
        (height // 2 + 30, height - 60, "instances",
         [("billed", red, "instances (incl. starting)"), ("in_service", green, "instances in service")],
         float(sim.fleet.max_capacity)),
    ]
    for top, bottom, label, lines, ceiling in panels:
        peak = max([float(series[name].max()) for name, _, _ in lines if series[name].size] + [1.0])
        if ceiling is not None:
            peak = max(peak, ceiling) * 1.15
        draw.rectangle((left, top, right, bottom), outline="black")
        draw.text((left, top - 4), label, fill="black", font=font, anchor="ld")
        draw.text((left - 6, top), f"{peak:,.0f}", fill="black", font=font, anchor="rt")
        draw.text((left - 6, bottom), "0", fill="black", font=font, anchor="rb")
        legend_y = top + 8
        for name, colour, text in lines:
            values = series[name]
            if not values.size or (name in ("sqs", "expired") and not values.any()):
                continue
            # steps: each minute's value held until the next minute
            xs = np.repeat(left + np.append(hours, span) / span * (right - left), 2)[1:-1]
            ys = np.repeat(bottom - values / peak * (bottom - top), 2)
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=2)
            draw.text((right + 15, legend_y), text, fill=colour, font=font)
            legend_y += 18
        if ceiling is not None:
            y = bottom - ceiling / peak * (bottom - top)
            for x in range(left, right, 12):
                draw.line((x, y, min(x + 6, right), y), fill=grey, width=1)
            draw.text((right + 15, legend_y), "max_capacity", fill=grey, font=font)
            legend_y += 18
        if first_expiry is not None:
            x = left + first_expiry / span * (right - left)
            for y in range(top, bottom, 8):
                draw.line((x, y, x, min(y + 4, bottom)), fill=purple, width=1)
            draw.text((right + 15, legend_y), f"first request expired ({first_expiry:.1f} h)", fill=purple,
                      font=font)
    for tick in np.linspace(0, span, 7):
        x = left + tick / span * (right - left)
        draw.line((x, height - 60, x, height - 55), fill="black")
        draw.text((x, height - 52), f"{tick:.1f}", fill="black", font=font, anchor="mt")
    draw.text(((left + right) // 2, height - 22), "hours", fill="black", font=font, anchor="mm")
    image.save(path, format="PNG")
