"""``python -m demo [--frames 8] [--out demo-out] [--env dev] [--no-drive]``: the local rehearsal (``make demo``).

Exit status 0 when every stage behaved as the deployed system must (good frames processed, broken frames
quarantined, one rollout update then one skip, ...), 1 when something did not, 2 when it could not run.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports below (CDK, SageMaker SDK): the wall time includes them

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from demo.rehearsal import Options, RehearsalError, run  # noqa: E402
from demo.render import format_summary  # noqa: E402
from stacks.config import ConfigError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="dev", help="configuration in config/<env>.yaml (default dev)")
    parser.add_argument("--frames", type=int, default=8, help="camera frames to generate (default 8)")
    parser.add_argument("--width", type=int, default=1280, help="frame width in pixels (default 1280)")
    parser.add_argument("--height", type=int, default=640, help="frame height in pixels (default 640)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    parser.add_argument("--seed", type=int, default=2026, help="scene and noise seed (default 2026)")
    parser.add_argument("--noise", type=float, default=0.05,
                        help="fraction of 8x8 mask tiles the stand-in segmenter perturbs (default 0.05)")
    parser.add_argument("--readme-picture", type=Path, metavar="PNG",
                        help="also write the first frame's side-by-side picture here (docs/demo-overlay.png)")
    parser.add_argument("--no-drive", dest="drive", action="store_false",
                        help="skip the drive stage (a generated two-camera MCAP drive through extraction, ingest, "
                             "the stand-in endpoint, the drives table and the drive builder)")
    parser.add_argument("--drive-seconds", type=float, default=3.0, help="length of the drive (default 3)")
    parser.add_argument("--drive-hz", type=float, default=5.0, help="frames per second per camera (default 5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.noise <= 1:
        print("python -m demo: error: --noise must be within 0..1", file=sys.stderr)
        return 2
    options = Options(env=args.env, frames=args.frames, width=args.width, height=args.height, out=args.out,
                      seed=args.seed, noise=args.noise, readme_picture=args.readme_picture,
                      drive=args.drive, drive_seconds=args.drive_seconds, drive_hz=args.drive_hz)
    try:
        report = run(options)
    except (RehearsalError, ConfigError) as exc:
        print(f"python -m demo: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(format_summary(report))
    print(f"python -m demo: finished in {time.perf_counter() - STARTED:.1f} s wall time (imports included)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
