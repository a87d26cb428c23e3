"""``python -m demo [--frames 8] [--out demo-out] [--env dev] [--no-drive]``: the local rehearsal (``make demo``).

Exit status 0 when every stage behaved as the deployed system must (good frames processed, broken frames
quarantined, one rollout update then one skip, ...), 1 when something did not, 2 when it could not run (bad
options, an --out folder that cannot be written), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before any import: the wall time includes them (and the pipelines stage's CDK, SDK)

import os  # noqa: E402
from collections.abc import MutableMapping  # noqa: E402
from pathlib import Path  # noqa: E402

NODE_BIN = Path(__file__).resolve().parent.parent / "node_modules" / ".bin"


def use_pinned_node(environ: MutableMapping[str, str], node_bin: Path = NODE_BIN) -> bool:
    """Put the project's Node.js (package.json, ``npm ci``) first on PATH, as the Makefile does: jsii, which every
    ``import aws_cdk`` starts, then runs on it instead of the machine's (an unsupported Node prints an 11-line
    banner). Must run before the imports below; False when node_modules has no node (``make demo`` installs it)."""
    if not (node_bin / "node").exists():
        return False
    path = environ.get("PATH", "")
    if path.split(os.pathsep)[0] != str(node_bin):
        environ["PATH"] = f"{node_bin}{os.pathsep}{path}" if path else str(node_bin)
    return True


use_pinned_node(os.environ)

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from demo.options import Options, RehearsalError  # noqa: E402
from demo.rehearsal import run  # noqa: E402
from demo.render import format_summary  # noqa: E402
from envconfig.config import ConfigError  # noqa: E402


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


def output_folder_problem(out: Path) -> str | None:
    """Why the rehearsal cannot write its outputs under ``out`` (None: it can): a file in the way, a read-only or
    foreign folder. Checked by writing, since permissions alone do not say (root, read-only mounts, ACLs)."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a folder: name a folder (it is created)"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".roadseg-demo-write-check-"):
            pass
    except OSError as exc:
        return f"--out {out} cannot be written ({exc.strerror or type(exc).__name__}): name a folder you can write"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.noise <= 1:
        print("python -m demo: error: --noise must be within 0..1", file=sys.stderr)
        return 2
    problem = output_folder_problem(args.out)
    if problem:
        print(f"python -m demo: error: {problem}", file=sys.stderr)
        return 2
    options = Options(env=args.env, frames=args.frames, width=args.width, height=args.height, out=args.out,
                      seed=args.seed, noise=args.noise, readme_picture=args.readme_picture,
                      drive=args.drive, drive_seconds=args.drive_seconds, drive_hz=args.drive_hz)
    try:
        report = run(options)
    except (RehearsalError, ConfigError) as exc:
        print(f"python -m demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the local server and the clients were stopped on the way out
        print(f"python -m demo: interrupted; partial outputs in {args.out}/", file=sys.stderr)
        return 130
    print()
    print(format_summary(report))
    print(f"python -m demo: finished in {time.perf_counter() - STARTED:.1f} s wall time (imports included)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
