"""``python -m stacks.delivery.large_assets cdk.out``: publish the Synth output's large file assets, then strip them.

The pipeline's Synth step runs this last. CodePipeline's CloudFormation actions accept input artifacts of at most
256 MB (CODEPIPELINE_QUOTAS_DOC), and each receives the whole Synth output. So every staged file asset of at least
STRIP_THRESHOLD_BYTES (the wheelhouses, the bundled rollout function) is published here, with cdk-assets, to every
destination of every asset manifest (each stage's bootstrap bucket, through its
``cdk-<qualifier>-file-publishing-role-<account>-<region>``, which cdk-assets assumes as the manifest says), and
then deleted from the directory, with the ``.cache`` folders where cdk-assets zipped them. The Assets wave later
runs the same cdk-assets publish, finds each object already there and skips it without reading its source.

Exit status: 0 published, stripped and within the limit; 1 a publish failed (nothing stripped) or the directory is
still over the limit; 2 bad usage (no assembly, no cdk-assets on PATH). One line each, no traceback.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from stacks.service_contracts.delivery import (
    CLOUDFORMATION_INPUT_ARTIFACT_LIMIT,
    CODEPIPELINE_QUOTAS_DOC,
    STRIP_THRESHOLD_BYTES,
    StagedFileAsset,
    directory_bytes,
    large_file_assets,
)

CDK_ASSETS = "cdk-assets"
CACHE_DIR = ".cache"  # cdk-assets zips a directory into <manifest directory>/.cache/<asset id>.zip


def publish_commands(assets: list[StagedFileAsset], executable: str = CDK_ASSETS) -> list[list[str]]:
    """One ``cdk-assets publish`` per asset manifest, selecting each asset at each of its destinations (once: two
    stacks of a stage share an asset and destination)."""
    selectors: dict[Path, list[str]] = {}
    seen: set[str] = set()
    for asset in assets:
        for selector in asset.selectors:
            if selector not in seen:
                seen.add(selector)
                selectors.setdefault(asset.manifest, []).append(selector)
    return [[executable, "--path", str(manifest), "--verbose", "publish", *chosen]
            for manifest, chosen in selectors.items()]


def strip_paths(assets: list[StagedFileAsset]) -> list[Path]:
    """What to delete once published: each source (once) and the cdk-assets cache of each manifest's directory."""
    sources = dict.fromkeys(asset.source for asset in assets)
    caches = dict.fromkeys(asset.manifest.parent / CACHE_DIR for asset in assets)
    return [*sources, *caches]


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else 'large_assets'}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", default="cdk.out", type=Path, help="cloud assembly (default cdk.out)")
    args = parser.parse_args(argv)
    outdir: Path = args.outdir
    if not (outdir / "manifest.json").is_file():
        print(f"no cloud assembly in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    assets = large_file_assets(outdir)
    if assets:
        executable = shutil.which(CDK_ASSETS)
        if executable is None:
            print(f"{CDK_ASSETS} is not on PATH: install it (npm install -g cdk-assets@<version>, as the Synth "
                  "step does)", file=sys.stderr)
            return 2
        for command in publish_commands(assets, executable):
            done = subprocess.run(command, check=False)
            if done.returncode != 0:
                print(f"{CDK_ASSETS} failed (exit {done.returncode}) publishing {' '.join(command[5:])} from "
                      f"{command[2]}: nothing was stripped", file=sys.stderr)
                return 1
        for path in strip_paths(assets):
            _delete(path)
    size = directory_bytes(outdir)
    stripped = {asset.source: asset.size for asset in assets}
    print(f"published and stripped {len(stripped)} file assets of at least {STRIP_THRESHOLD_BYTES / 2**20:.0f} MiB "
          f"({sum(stripped.values()) / 2**20:.0f} MiB); {outdir} is now {size / 2**20:.0f} MiB")
    if size > CLOUDFORMATION_INPUT_ARTIFACT_LIMIT:
        print(f"{outdir} is {size / 2**20:.0f} MiB, over the {CLOUDFORMATION_INPUT_ARTIFACT_LIMIT / 2**20:.0f} MiB "
              f"that CodePipeline's CloudFormation actions accept ({CODEPIPELINE_QUOTAS_DOC})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
