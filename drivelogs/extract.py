"""From log to frames: read a drive log and put its camera images where the ingest path picks them up.

The entry points: ``extract_drive`` and the command line below. The work is done by the parts: drivelogs/readers/
(one reader per log format, ``open_log`` picks it), drivelogs/decode.py (image message -> frame),
drivelogs/naming.py (camera names, frame keys), drivelogs/sinks.py (where frames go) and drivelogs/extractor.py
(camera selection, rates, stamps, the manifest).

Command line (the Processing job; logs are downloaded to a local directory, a drive split into several files is
sharded across instances by S3 key, each instance writing the manifest of its share)::

    python -m drivelogs.extract --drive-id car-7/2026-12-03 --log-dir /opt/ml/processing/input/logs \\
        --bucket roadseg-dev-inference --manifest /opt/ml/processing/output/manifest.json --rate-hz 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.drives import DriveId, DriveKeyError
from drivelogs.decode import FrameLimits
from drivelogs.extractor import CameraConfig, DriveExtractor, ExtractOptions
from drivelogs.naming import camera_name_for_topic, safe_camera_name
from drivelogs.readers import UnreadableLog, open_log
from drivelogs.sinks import FrameSink, LocalDirectorySink, S3Sink

LOG = logging.getLogger("roadseg.drives.extract")  # the extraction's one logger, whichever part logs


def extract_drive(drive: DriveId | str, logs: Sequence[Path | str], sink: FrameSink,
                  options: ExtractOptions | None = None) -> dict[str, Any]:
    """Open every log first (UnreadableLog before anything is written), then extract them in order; a log found
    unreadable only once reading starts is a ``read_error`` problem in the manifest (status ``partial``), which then
    records what the other logs gave."""
    drive_id = drive if isinstance(drive, DriveId) else DriveId.parse(drive)
    opened = [open_log(path) for path in logs]
    return DriveExtractor(drive_id, sink, options).extract(opened)


def logs_in(directory: Path) -> list[Path]:
    """The logs of a local input directory, in name order: *.mcap and *.bag files and ROS 2 bag directories (a
    directory holding metadata.yaml stands for its storage files)."""
    found: list[Path] = []
    for path in sorted(directory.rglob("*")):
        if path.name == "metadata.yaml":
            found.append(path.parent)
        elif path.is_file() and path.suffix in (".mcap", ".bag"):
            if not (path.parent / "metadata.yaml").is_file():
                found.append(path)
    return found


def parse_cameras(text: str) -> dict[str, CameraConfig]:
    """``{"/topic": "name"}``, ``{"/topic": {"name": "front", "rate_hz": 2}}`` or a list of topics (derived names);
    the text itself or ``@file``."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    value = json.loads(text)
    if isinstance(value, list):
        value = {topic: camera_name_for_topic(topic) for topic in value}
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object {topic: name} or a list of topics")
    cameras: dict[str, CameraConfig] = {}
    for topic, spec in value.items():
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
            raise ValueError(f"{topic}: give a camera name or {{'name': ..., 'rate_hz': ...}}")
        name = spec.get("name") or camera_name_for_topic(topic)
        if safe_camera_name(name) != name:
            raise ValueError(f"{topic}: camera name {name!r} must be letters, digits, '.', '_' or '-'")
        rate = spec.get("rate_hz")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"{topic}: rate_hz must be a positive number")
        cameras[topic] = CameraConfig(name, None if rate is None else float(rate))
    names = [c.name for c in cameras.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"two topics map to the same camera name: {sorted(n for n in names if names.count(n) > 1)}")
    return cameras


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m drivelogs.extract", description=__doc__.split("\n")[0])
    parser.add_argument("--drive-id", required=True, help="<vehicle>/<drive>, e.g. car-7/2026-12-03")
    parser.add_argument("--log", action="append", default=[], type=Path, help="a log file or ROS 2 bag directory "
                        "(repeat for a drive split into several files, in order)")
    parser.add_argument("--log-dir", type=Path, help="every log in this directory (the job's input)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output-dir", type=Path, help="write frames under this directory")
    target.add_argument("--bucket", help="put frames into this S3 bucket (the inference bucket)")
    parser.add_argument("--manifest", required=True, type=Path, help="where to write the drive manifest (JSON)")
    parser.add_argument("--cameras-json", help='{"/topic": "name" | {"name": ..., "rate_hz": ...}} or @file')
    parser.add_argument("--rate-hz", type=float, help="keep at most this many frames per second per camera")
    parser.add_argument("--max-bytes", type=int, default=FrameLimits.max_bytes)
    parser.add_argument("--max-pixels", type=int, default=FrameLimits.max_pixels)
    parser.add_argument("--progress-seconds", type=float, default=10.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)

    def usage(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    try:
        drive = DriveId.parse(args.drive_id)
    except DriveKeyError as exc:
        return usage(str(exc))
    paths = list(args.log)
    if args.log_dir is not None:
        if not args.log_dir.is_dir():
            return usage(f"--log-dir {args.log_dir}: not a directory")
        paths += logs_in(args.log_dir)
    if not paths:
        return usage("no logs: give --log PATH or a --log-dir with *.mcap, *.bag or ROS 2 bag directories")
    if args.rate_hz is not None and not args.rate_hz > 0:
        return usage(f"--rate-hz must be positive, got {args.rate_hz}")
    if args.max_bytes <= 0 or args.max_pixels <= 0:
        return usage("--max-bytes and --max-pixels must be positive")
    try:
        cameras = parse_cameras(args.cameras_json) if args.cameras_json else None
    except (OSError, ValueError) as exc:
        return usage(f"--cameras-json: {exc}")
    try:
        logs = [open_log(path) for path in paths]
    except UnreadableLog as exc:
        return usage(str(exc))
    sink: FrameSink = LocalDirectorySink(args.output_dir) if args.output_dir else S3Sink(args.bucket)
    options = ExtractOptions(cameras=cameras, rate_hz=args.rate_hz,
                             limits=FrameLimits(args.max_bytes, args.max_pixels),
                             progress_seconds=args.progress_seconds)
    started = time.monotonic()
    try:
        manifest = DriveExtractor(drive, sink, options).extract(logs)
    except UnreadableLog as exc:
        return usage(str(exc))
    args.manifest.parent.mkdir(parents=True, exist_ok=True)
    args.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    totals, elapsed = manifest["totals"], time.monotonic() - started
    LOG.info("drive %s: %s, %d frames extracted from %d camera messages (%d skipped, %d lost) in %.1f s "
             "(%.1f frames/s); manifest %s", drive, manifest["status"], totals["extracted"], totals["messages"],
             sum(totals["skipped"].values()), totals["messages_lost"], elapsed,
             totals["extracted"] / max(elapsed, 1e-9), args.manifest)
    for problem in manifest["problems"]:
        LOG.warning("%s: %s: %s", problem["log"] or "drive", problem["kind"], problem["detail"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
