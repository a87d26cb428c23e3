"""Benchmark of the per-frame signals (segcore/signals.py) against decoding the same frame (run:
.venv/bin/python bench/signals.py).

Input: a driving scene from segcore/scenes.py (the procedural generator) at 1920x1080 (and at 1024x512, the
prepared frame the ingest function computes the input signals on), encoded as JPEG quality 90, and the generator's
Cityscapes class mask of the same size.

Paths timed (median of --runs runs each, interleaved round-robin so drift hits every path alike):
  input     segcore.signals.input_signals(rgb)                         (ingest: per frame)
  output    segcore.signals.output_signals(mask, ...)                  (postprocess: per frame)
  from_stats  segcore.signals.output_signals_from_fractions(stats.class_pixels) (postprocess reusing the counts
            mask_statistics already made: the same numbers as output, no second pass over the mask)
  flicker   segcore.signals.downscale_mask + label_flicker              (drive builder: per frame)
  baseline  the same frame's JPEG decoded by Pillow to an RGB array   (what every path that sees a frame pays)
  mask_png  decode of the mask PNG (segcore.masks.decode_mask_png)     (what postprocess and the builder pay)
  stats     segcore.masks.mask_statistics (postprocess's existing per-mask work)

Printed: milliseconds and each path's ratio against the JPEG decode measured in the same run. Target (issue 23:
signal computation adds <= 10 % to postprocess): input + output signals cost well under one JPEG decode.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable

import numpy as np
from benchkit import wall_medians_ms  # bench/benchkit.py, beside this file
from PIL import Image

from segcore.classes import CITYSCAPES
from segcore.masks import decode_mask_png, encode_mask_png, mask_statistics
from segcore.scenes import generate_scene
from segcore.signals import (
    downscale_mask,
    input_signals,
    label_flicker,
    output_signals,
    output_signals_from_fractions,
)

SIZES = ((1920, 1080), (1024, 512))
QUALITY = 90


def make_paths(width: int, height: int) -> dict[str, Callable[[], object]]:
    rgb, mask = generate_scene(width, height, 3)
    _, next_mask = generate_scene(width, height, 4)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=QUALITY)
    jpeg = buf.getvalue()
    png = encode_mask_png(mask)
    names = CITYSCAPES.names
    vru = CITYSCAPES.vulnerable_road_users
    previous = downscale_mask(next_mask)
    stats = mask_statistics(mask, names, vru_classes=vru)

    return {
        "baseline": lambda: np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")),
        "input": lambda: input_signals(rgb),
        "output": lambda: output_signals(mask, names, vru_classes=vru),
        "from_stats": lambda: output_signals_from_fractions(stats.class_pixels, vru_classes=vru,
                                                             vru_present=stats.vru_present),
        "flicker": lambda: label_flicker(previous, downscale_mask(mask)),
        "mask_png": lambda: decode_mask_png(png),
        "stats": lambda: mask_statistics(mask, names, vru_classes=vru),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    report = {}
    for width, height in SIZES:
        ms = wall_medians_ms(make_paths(width, height), args.runs)
        base = ms["baseline"]
        signals = ms["input"] + ms["output"]
        report[f"{width}x{height}"] = {"ms": {k: round(v, 3) for k, v in ms.items()},
                                       "ratio_to_jpeg_decode": {k: round(v / base, 3) for k, v in ms.items()},
                                       "input_plus_output_ratio": round(signals / base, 3)}
        if not args.json:
            print(f"{width}x{height} (median of {args.runs} runs; ratio = path / JPEG decode of the same frame)")
            for name, value in ms.items():
                print(f"  {name:10s} {value:8.3f} ms   {value / base:6.3f}x")
            print(f"  input + output signals: {signals:.3f} ms = {signals / base:.3f}x the JPEG decode")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
