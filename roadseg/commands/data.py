"""``roadseg data``: prepare a labelled dataset locally and upload a tree to the datasets bucket."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from contracts import naming
from roadseg.output import Printer
from roadseg.session import Session, UserError


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def data_prepare(out: Printer, *, layout: str, input_dir: Path, output_dir: Path, scheme, split_file: Path | None,
                 max_bad_fraction: float | None, workers: int, configured_max_bad_fraction: float,
                 config_source: str, overwrite: bool = False) -> None:
    """Prepare locally with the bad-pair limit the pipeline's PrepareDataset step applies (the environment's
    ``training.max_bad_pair_fraction``, named by ``config_source``) unless ``max_bad_fraction`` overrides it, so
    a dataset that passes here does not fail after the upload."""
    from training.prepare import PreparationError, prepare_dataset

    if max_bad_fraction is None:
        limit, source = configured_max_bad_fraction, f"training.max_bad_pair_fraction of {config_source}"
    else:
        limit, source = max_bad_fraction, "--max-bad-fraction"
    try:
        report = prepare_dataset(input_dir, output_dir, layout, scheme, split_file=split_file,
                                 max_bad_fraction=limit, max_bad_fraction_source=source, workers=workers,
                                 overwrite=overwrite)
    except PreparationError as exc:
        raise UserError(str(exc)) from None
    splits = report["splits"]
    out.line(f"prepared {splits['train']['images']} train and {splits['validation']['images']} validation pairs "
             f"({len(report['dropped'])} dropped, {report['dropped_fraction']:.1%}; limit {limit:.1%} from {source}) "
             f"into {output_dir}; report: {Path(output_dir) / 'report.json'}"
             + (f"; replaced {report['replaced']}" if report["replaced"] else ""))


def data_upload(session: Session, out: Printer, *, directory: Path, bucket: str | None, prefix: str | None) -> None:
    from boto3.s3.transfer import TransferConfig

    from contracts.layout import DATASETS

    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise UserError(f"{root} holds no files to upload (hidden files are skipped)")
    bucket = session.name(naming.DATASETS_BUCKET_NAME, bucket, option="--bucket")
    prefix = prefix if prefix is not None else f"{DATASETS.raw}{root.resolve().name}/"
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    total = sum(p.stat().st_size for p in files)
    s3 = session.client("s3")
    config = TransferConfig(multipart_threshold=64 * 1024**2, max_concurrency=8)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload",
              disable=True if out.quiet else None) as bar:
        for path in files:
            key = prefix + path.relative_to(root).as_posix()
            s3.upload_file(str(path), bucket, key, Callback=bar.update, Config=config)
    out.line(f"uploaded {len(files)} files ({human_bytes(total)}) to s3://{bucket}/{prefix}")
