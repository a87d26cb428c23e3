"""Prints one line per synthesized stack (name, resource count): `python -m stacks.summary cdk.out`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(outdir: Path) -> list[tuple[str, int]]:
    manifest = json.loads((outdir / "manifest.json").read_text())
    rows = []
    for name, artifact in manifest["artifacts"].items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
        rows.append((name, len(template.get("Resources", {}))))
    return sorted(rows)


def main(argv: list[str]) -> int:
    outdir = Path(argv[0] if argv else "cdk.out")
    if not (outdir / "manifest.json").is_file():
        print(f"no cloud assembly in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    for name, count in summarize(outdir):
        print(f"{name:<40} {count:>4} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
