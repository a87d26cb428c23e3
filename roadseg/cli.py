"""``roadseg``: the operator command. Subcommands are grouped by what they work on:

    roadseg data prepare|upload       roadseg pipeline start|status|list     roadseg model list|show|approve|reject
    roadseg endpoint invoke|submit|status                                     roadseg env preflight|outputs|costs
    roadseg segment PATH... --bundle DIR|s3://...  (ONNX Runtime here, with the service's pre- and postprocessing)
    roadseg drive upload|status|scenes|fetch      (whole drive logs: ROS 1/ROS 2 bags, MCAP)
    roadseg label select|score|export|import      roadseg data versions|verify   (the data engine: docs/data-engine.md)
    roadseg monitor status [--window 24h] [--plot out.png]   (drift per camera: docs/drift.md)

``--env`` (default dev) picks ``config/<env>.yaml`` (``$ROADSEG_CONFIG_DIR/<env>.yaml`` when set); names of
buckets, pipelines, the model package group and endpoints come from the deployed stacks' outputs, and explicit
options override them. Exit codes: 0 success, 1 the job, inference or check failed, 2 bad input or usage, 3 AWS
access or credentials, 130 interrupted.
The global options (``--env``, ``--region``, ``-v``, ``-q``) go before or after the command words; ``--json`` too,
on the commands that print a JSON document. Imports stay inside the commands so that ``roadseg --help`` starts fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from contracts.layout import INFERENCE
from labelling.scoring_job import INSTANCE_VCPUS as SCORING_INSTANCE_TYPES
from roadseg import __version__
from roadseg.output import Printer
from roadseg.session import (
    UNPARSEABLE_RESPONSE,
    AwsAccessError,
    JobFailed,
    Session,
    UserError,
    forget_session,
    unparseable_response,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
CREDENTIAL_ERROR_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
    "InvalidSignatureException", "RequestExpired", "InvalidAccessKeyId", "AuthFailure"})


def _example(*lines: str) -> str:
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON document (keys in docs/cli.md)")


def _session(ctx: click.Context) -> Session:
    return ctx.find_object(Session)


def _takes_json(ctx: click.Context) -> bool:
    return any(param.name == "as_json" for param in ctx.command.params)


def _printer(ctx: click.Context, as_json: bool = False) -> Printer:
    """The command's printer; ``--json`` given before the command counts as the command's own."""
    session = _session(ctx)
    if session.json and not as_json and not _takes_json(ctx):
        raise click.UsageError(f"--json: `{ctx.command_path}` prints no JSON document (commands with --json: "
                               "see their -h)", ctx)
    return Printer(as_json=as_json or session.json, quiet=session.quiet)


def _configure_logging(verbose: int) -> None:
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, stream=sys.stderr, force=True)
        if verbose < 2:
            for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
                logging.getLogger(noisy).setLevel(logging.WARNING)


def _merge_global(ctx: click.Context, param: click.Parameter, value) -> None:
    """A global option given after command words (``roadseg env costs --env prod``): merged into the session the
    top-level group made before this command's options were parsed; the last one given wins."""
    session = ctx.find_object(Session)
    if ctx.resilient_parsing or session is None or value in (None, False, 0):
        return
    if param.name == "global_env":
        session.env, session.env_given = value, True
    elif param.name == "global_region":
        session.region_override = value
    elif param.name == "global_quiet":
        session.quiet = True
    elif param.name == "global_json":
        session.json = True
    elif param.name == "global_verbose":
        session.verbose = True
        _configure_logging(value)


def _global_options(with_json: bool) -> list[click.Option]:
    """The top-level options, accepted on every group and command too (``--json`` only where no command's own)."""
    options = [
        click.Option(["--env", "global_env"], expose_value=False, callback=_merge_global, metavar="ENV",
                     help="as `roadseg --env` (also accepted here)"),
        click.Option(["--region", "global_region"], expose_value=False, callback=_merge_global,
                     help="as `roadseg --region`"),
        click.Option(["-v", "--verbose", "global_verbose"], count=True, expose_value=False, callback=_merge_global,
                     help="as `roadseg -v`"),
        click.Option(["-q", "--quiet", "global_quiet"], is_flag=True, expose_value=False, callback=_merge_global,
                     help="as `roadseg -q`"),
    ]
    if with_json:
        options.append(click.Option(["--json", "global_json"], is_flag=True, expose_value=False,
                                    callback=_merge_global, help="as `roadseg --json`"))
    return options


def _scheme(session: Session, scheme: str | None, classes_file: Path | None):
    from segcore.classes import get_scheme, load_classes_file, scheme_from_config

    try:
        if scheme is None and classes_file is None:
            return scheme_from_config(session.config.classes)
        custom = load_classes_file(classes_file) if classes_file else None
        return get_scheme(scheme or "custom", custom)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None


def scheme_options(function):
    function = click.option("--classes-file", type=click.Path(path_type=Path),
                            help='custom scheme: JSON [{"name": ..., "color": [r, g, b]}]')(function)
    return click.option("--scheme", type=click.Choice(["cityscapes", "camvid", "custom"]),
                        help="label scheme (default: the environment's classes.scheme)")(function)


HELP = """roadseg: train, gate, deploy and use the road-scene segmentation models of one environment.

\b
--env (default dev) picks config/<env>.yaml ($ROADSEG_CONFIG_DIR/<env>.yaml when that is set); bucket, pipeline,
model-group and endpoint names come from the deployed stacks' outputs (explicit options override them).
--env, --region, -v and -q go before or after the command words; --json too, on commands with a JSON document.
Exit codes: 0 success, 1 the job or check failed, 2 bad input or usage, 3 AWS access or credentials,
130 interrupted.
"""


@click.group(context_settings=CONTEXT, help=HELP)
@click.version_option(__version__, "--version", prog_name="roadseg")
@click.option("--env", default="dev", show_default=True, envvar="ROADSEG_ENV",
              help="environment: config/<env>.yaml (or $ROADSEG_CONFIG_DIR/<env>.yaml) and its deployed stacks")
@click.option("--region", help="AWS region (default: the config's, then AWS_REGION, AWS_DEFAULT_REGION, your "
                               "profile's)")
@click.option("-v", "--verbose", count=True, help="more log output (-vv: AWS SDK debug)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars or notes on stderr")
@click.option("--json", "as_json", is_flag=True, help="commands with a JSON document print it (as their --json)")
@click.pass_context
def cli(ctx: click.Context, env: str, region: str | None, verbose: int, quiet: bool, as_json: bool) -> None:
    from click.core import ParameterSource

    _configure_logging(verbose)
    ctx.obj = Session(env=env, region_override=region, quiet=quiet, verbose=bool(verbose), json=as_json,
                      env_given=ctx.get_parameter_source("env") is not ParameterSource.DEFAULT)


# -- data --------------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def data() -> None:
    """Prepare labelled datasets and upload them for the pipelines."""


@data.command("prepare", epilog=_example(
    "roadseg data prepare --layout cityscapes --input ~/cityscapes --output /tmp/cityscapes-prepared"))
@click.option("--layout", required=True, type=click.Choice(["cityscapes", "generic"]))
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path), help="dataset root")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path),
              help="output directory (created when missing)")
@click.option("--overwrite", is_flag=True, help="replace a dataset prepared earlier in --output")
@click.option("--split-file", type=click.Path(path_type=Path),
              help="generic layout: JSON or CSV split (default input/split.json)")
@click.option("--max-bad-fraction", type=click.FloatRange(0, 1),
              help="fail above this fraction of dropped pairs (default: the environment's "
                   "training.max_bad_pair_fraction, which the pipeline applies)")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="parallel processes (default: all CPUs)")
@scheme_options
@click.pass_context
def data_prepare(ctx, layout, input_dir, output_dir, overwrite, split_file, max_bad_fraction, workers, scheme,
                 classes_file):
    """Check every image/mask pair and write the algorithm's four channels plus report.json (runs locally)."""
    import os

    from roadseg.commands import data as commands

    session = _session(ctx)
    commands.data_prepare(_printer(ctx), layout=layout, input_dir=input_dir, output_dir=output_dir,
                          scheme=_scheme(session, scheme, classes_file), split_file=split_file,
                          max_bad_fraction=max_bad_fraction, workers=workers or os.cpu_count() or 1,
                          configured_max_bad_fraction=session.config.training.max_bad_pair_fraction,
                          config_source=str(session.config_path), overwrite=overwrite)


@data.command("upload", epilog=_example("roadseg data upload ~/cityscapes   # s3://<datasets bucket>/raw/cityscapes/"))
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--prefix", help="key prefix (default raw/<directory name>/)")
@click.option("--bucket", help="override: the datasets bucket (default: the data stack's DatasetsBucketName)")
@click.pass_context
def data_upload(ctx, directory, prefix, bucket):
    """Upload a directory to the environment's datasets bucket, with a progress bar."""
    from roadseg.commands import data as commands

    commands.data_upload(_session(ctx), _printer(ctx), directory=directory, bucket=bucket, prefix=prefix)


datasets_bucket_option = click.option("--bucket", help="override: the datasets bucket (default: the data stack's "
                                                       "DatasetsBucketName)")


@data.command("versions", epilog=_example("roadseg data versions --json"))
@datasets_bucket_option
@json_option
@click.pass_context
def data_versions(ctx, bucket, as_json):
    """List the dataset versions (roadseg label import makes them) with their parents and frame counts."""
    from roadseg.commands import label as commands

    commands.data_versions(_session(ctx), _printer(ctx, as_json), bucket=bucket)


@data.command("verify", epilog=_example("roadseg data verify v0002"))
@click.argument("version")
@datasets_bucket_option
@json_option
@click.pass_context
def data_verify(ctx, version, bucket, as_json):
    """Recompute the SHA-256 of every file of a dataset version against its manifest (exit 1 on a mismatch)."""
    from roadseg.commands import label as commands

    commands.data_verify(_session(ctx), _printer(ctx, as_json), version=version, bucket=bucket)


# -- label -------------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def label() -> None:
    """Choose frames worth labelling, hand them to CVAT or Label Studio, import the labels as a dataset version."""


frames_bucket_option = click.option("--frames-bucket", help="override: the bucket of the frames (default: the data "
                                                            "stack's InferenceBucketName, where drive frames land)")


@label.command("select", epilog=_example(
    "roadseg label select --drive car-7/2026-12-03-0912 --budget-hours 40 --per-camera 50 --output selection/"))
@click.argument("timelines", nargs=-1, type=click.Path(path_type=Path))
@click.option("--drive", "drives", multiple=True, metavar="VEHICLE/DRIVE",
              help="a built drive: its timeline.parquet is read from the drive outputs (repeatable)")
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="folder for selection.json, pool.txt and contact-sheet.png")
@click.option("--budget-frames", type=click.IntRange(min=1), help="frames to pick")
@click.option("--budget-hours", type=click.FloatRange(min=0, min_open=True),
              help="labelling hours to fill (with --minutes-per-frame)")
@click.option("--minutes-per-frame", type=click.FloatRange(min=0, min_open=True),
              help="labelling time per frame (default 90: fine Cityscapes-style labelling)")
@click.option("--per-camera", type=click.IntRange(min=0), help="most picks per camera")
@click.option("--per-vehicle", type=click.IntRange(min=0), help="most picks per vehicle")
@click.option("--min-gap-s", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="near-duplicates: least time between two picks of one camera")
@click.option("--max-hamming", type=click.IntRange(0, 64), default=6, show_default=True,
              help="near-duplicates: dHash bits within which two frames of a drive count as one")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--start", type=click.DateTime(), help="frames from this UTC time")
@click.option("--end", type=click.DateTime(), help="frames before this UTC time")
@click.option("--exclude-version", default="latest", show_default=True,
              help="dataset version whose labelled and validation frames are left out and whose class shares weigh "
                   "rare classes: latest, an id, or none")
@click.option("--model-scores", multiple=True, type=click.Path(path_type=Path),
              help="Parquet of model signals for a candidate pool (python -m labelling.scoring), repeatable")
@click.option("--overlays", type=click.Path(path_type=Path, file_okay=False),
              help="contact sheet: a local copy of the inference bucket to take overlays from (else read from S3)")
@frames_bucket_option
@datasets_bucket_option
@scheme_options
@json_option
@click.pass_context
def label_select(ctx, timelines, drives, output, budget_frames, budget_hours, minutes_per_frame, per_camera,
                 per_vehicle, min_gap_s, max_hamming, seed, start, end, exclude_version, model_scores, overlays,
                 frames_bucket, bucket, scheme, classes_file, as_json):
    """Pick the frames worth labelling from drive timelines, within a budget, with the reason for each pick."""
    from datetime import UTC

    from roadseg.commands import label as commands

    session = _session(ctx)
    commands.label_select(session, _printer(ctx, as_json), timelines=timelines, drives=drives, output=output,
                          budget_frames=budget_frames, budget_hours=budget_hours,
                          minutes_per_frame=minutes_per_frame, per_camera=per_camera, per_vehicle=per_vehicle,
                          min_gap_s=min_gap_s, max_hamming=max_hamming, seed=seed,
                          start=start.replace(tzinfo=UTC) if start else None,
                          end=end.replace(tzinfo=UTC) if end else None, exclude_version=exclude_version,
                          model_scores=model_scores, frames_bucket=frames_bucket, bucket=bucket,
                          scheme=_scheme(session, scheme, classes_file), overlays=overlays)


@label.command("export", epilog=_example(
    "roadseg label export selection/selection.json --format cvat --output to-cvat/",
    "roadseg label export selection/selection.json --format label-studio --urls --expires-in 86400 --output ls/"))
@click.argument("selection", type=click.Path(path_type=Path))
@click.option("--format", "tool", required=True, type=click.Choice(["cvat", "label-studio"]))
@click.option("--output", required=True, type=click.Path(path_type=Path), help="folder for the export")
@click.option("--urls/--zip", default=False, show_default=True,
              help="Label Studio: frames as presigned S3 URLs (--urls) or as files and a zip (--zip); CVAT: --zip")
@click.option("--expires-in", type=int, default=3600, show_default=True, help="seconds the presigned URLs live")
@frames_bucket_option
@scheme_options
@json_option
@click.pass_context
def label_export(ctx, selection, tool, output, urls, expires_in, frames_bucket, scheme, classes_file, as_json):
    """Write a selection's frames with the model's masks as pre-annotations for CVAT or Label Studio."""
    from roadseg.commands import label as commands

    session = _session(ctx)
    commands.label_export(session, _printer(ctx, as_json), selection_path=selection, tool=tool, output=output,
                          urls=urls, expires_in=expires_in, scheme=_scheme(session, scheme, classes_file),
                          frames_bucket=frames_bucket)


@label.command("score", epilog=_example(
    "roadseg label score --pool selection/pool.txt --wait --output scores/",
    "roadseg label select --drive car-7/2026-12-03-0912 --model-scores scores/model-scores.parquet --output picks/"))
@click.option("--pool", required=True, type=click.Path(path_type=Path),
              help="the candidate pool: pool.txt (or selection.json) that roadseg label select wrote")
@click.option("--bundle", help="an ExportModel bundle, s3://<artifacts>/pipelines/<pipeline>/<execution>/bundle/ "
                               "(the only place the scoring role reads; default: the serving package's EdgeBundle)")
@click.option("--instance-type", default="ml.m5.xlarge", show_default=True,
              type=click.Choice(list(SCORING_INSTANCE_TYPES)),
              help="the Processing instance (GPU types need a GPU scoring image in the stack)")
@click.option("--region-size", "region", type=click.IntRange(min=1),
              help="RIPU region side in pixels (default: labelling.scoring's 32)")
@click.option("--wait", is_flag=True, help="wait until the job ends (exit 1 unless Completed) and print its counts")
@click.option("--output", type=click.Path(path_type=Path),
              help="with --wait: folder to copy model-scores.parquet and scoring-summary.json into")
@click.option("--timeout", type=click.FloatRange(min=0), default=0,
              help="with --wait: give up after this many seconds (0: never)")
@click.option("--poll-interval", type=float, default=30.0, hidden=True)
@json_option
@click.pass_context
def label_score(ctx, pool, bundle, instance_type, region, wait, output, timeout, poll_interval, as_json):
    """Score a candidate pool with the approved model in a SageMaker Processing job: entropy, margin and region
    score per frame, for roadseg label select --model-scores."""
    from roadseg.commands import label_score as commands

    commands.label_score(_session(ctx), _printer(ctx, as_json), pool=pool, bundle=bundle, instance_type=instance_type,
                         wait=wait, output=output, timeout=timeout, poll_interval=poll_interval, region=region)


@label.command("import", epilog=_example(
    "roadseg label import task_7.zip --format cvat --export-manifest to-cvat/roadseg-export.json"))
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--format", "tool", required=True, type=click.Choice(["cvat", "label-studio"]))
@click.option("--export-manifest", type=click.Path(path_type=Path),
              help="the roadseg-export.json `roadseg label export` wrote (CVAT's own export does not keep it)")
@click.option("--parent", default="latest", show_default=True,
              help="the version to merge with: latest, an id (v0003), or none for a first version")
@click.option("--replace", is_flag=True, help="imported frames that the parent already holds replace its labels")
@click.option("--reshuffle-validation", is_flag=True,
              help="draw the validation drives afresh (gate results are then not comparable with earlier ones)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the validation draw")
@click.option("--validation-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="share of frames in validation when it is drawn")
@click.option("--allow-missing", is_flag=True, help="exported frames without labels are left out, not an error")
@click.option("--task", help="the labelling tool's task id, recorded with each frame")
@click.option("--accept-unchanged", is_flag=True,
              help="import frames whose labels equal the model's pre-annotation (left out by default: CVAT turns "
                   "pre-annotations into annotations, so such a frame may never have been reviewed)")
@frames_bucket_option
@datasets_bucket_option
@scheme_options
@json_option
@click.pass_context
def label_import(ctx, archive, tool, export_manifest, parent, replace, reshuffle_validation, seed,
                 validation_fraction, allow_missing, task, accept_unchanged, frames_bucket, bucket, scheme,
                 classes_file, as_json):
    """Check a labelling tool's export against the scheme and write it, merged with its parent, as a new
    immutable dataset version."""
    from roadseg.commands import label as commands

    session = _session(ctx)
    commands.label_import(session, _printer(ctx, as_json), archive=archive, tool=tool,
                          export_manifest=export_manifest, parent=parent, replace=replace,
                          reshuffle_validation=reshuffle_validation, seed=seed,
                          validation_fraction=validation_fraction, allow_missing=allow_missing, task=task,
                          scheme=_scheme(session, scheme, classes_file), frames_bucket=frames_bucket, bucket=bucket,
                          accept_unchanged=accept_unchanged)


# -- pipeline ----------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def pipeline() -> None:
    """Start and follow the training and tuning pipelines."""


@pipeline.command("start", epilog=_example(
    "roadseg pipeline start --dataset cityscapes --param Epochs=30 --wait"))
@click.option("--pipeline", "which", default="training", show_default=True,
              help="training, tuning, or an explicit pipeline name")
@click.option("--dataset", help="a tree uploaded with `roadseg data upload`: sets InputDataS3Uri to "
                                "s3://<datasets bucket>/raw/<dataset>/")
@click.option("--dataset-version", metavar="VERSION", help="a dataset version (roadseg data versions): sets "
                                                           "InputDataS3Uri to it and DatasetLayout to generic")
@click.option("--param", "params", multiple=True, metavar="Key=Value", help="pipeline parameter (repeatable)")
@click.option("--wait", is_flag=True, help="wait until the execution ends (exit 1 unless Succeeded)")
@click.option("--timeout", type=click.FloatRange(min=0), default=0,
              help="with --wait: give up after this many seconds (0: never)")
@click.option("--poll-interval", type=float, default=30.0, hidden=True)
@json_option
@click.pass_context
def pipeline_start(ctx, which, dataset, dataset_version, params, wait, timeout, poll_interval, as_json):
    """Start an execution of the environment's training (or tuning) pipeline and print its ARN."""
    from roadseg.commands import pipeline as commands

    commands.pipeline_start(_session(ctx), _printer(ctx, as_json), pipeline=which, params=params, wait=wait,
                            timeout=timeout, poll_interval=poll_interval, dataset=dataset,
                            dataset_version=dataset_version)


@pipeline.command("status", epilog=_example("roadseg pipeline status --execution <execution arn> --json"))
@click.option("--execution", "execution_arn", required=True, metavar="ARN")
@json_option
@click.pass_context
def pipeline_status(ctx, execution_arn, as_json):
    """Show a pipeline execution and its steps."""
    from roadseg.commands import pipeline as commands

    commands.pipeline_status(_session(ctx), _printer(ctx, as_json), execution_arn=execution_arn)


@pipeline.command("list", epilog=_example("roadseg pipeline list --limit 5"))
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="executions per pipeline")
@json_option
@click.pass_context
def pipeline_list(ctx, limit, as_json):
    """List the latest executions of both pipelines."""
    from roadseg.commands import pipeline as commands

    commands.pipeline_list(_session(ctx), _printer(ctx, as_json), limit=limit)


# -- model -------------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def model() -> None:
    """Review, approve and reject the registered model packages."""


def _safety(session: Session, safety_classes: Sequence[str]) -> list[str]:
    if safety_classes:
        return list(safety_classes)
    return list(session.config.classes.safety_critical_iou_floors)


group_option = click.option("--group", help="override: the model package group (default: the training stack's)")
safety_option = click.option("--safety-class", "safety_classes", multiple=True, metavar="NAME",
                             help="class whose IoU to show (repeatable; default: the config's safety floors)")


@model.command("list", epilog=_example("roadseg model list --with-metrics"))
@click.option("--with-metrics", is_flag=True, help="read each evaluation JSON: mIoU and safety-class IoUs")
@safety_option
@group_option
@json_option
@click.pass_context
def model_list(ctx, with_metrics, safety_classes, group, as_json):
    """List the model packages of the environment's group, newest first."""
    from roadseg.commands import model as commands

    session = _session(ctx)
    commands.model_list(session, _printer(ctx, as_json), group=group, with_metrics=with_metrics,
                        safety_classes=_safety(session, safety_classes) if with_metrics else [])


@model.command("show", epilog=_example("roadseg model show 7"))
@click.argument("package")
@safety_option
@group_option
@json_option
@click.pass_context
def model_show(ctx, package, safety_classes, group, as_json):
    """Show one model package (version number or ARN) with its evaluation."""
    from roadseg.commands import model as commands

    session = _session(ctx)
    commands.model_show(session, _printer(ctx, as_json), package=package, group=group,
                        safety_classes=_safety(session, safety_classes))


@model.command("approve", epilog=_example('roadseg model approve 7 --note "mIoU 0.71, VRU floors met"'))
@click.argument("package")
@click.option("--note", help="approval description")
@group_option
@click.pass_context
def model_approve(ctx, package, note, group):
    """Approve a model package (version or ARN): the rollout deploys it to both endpoints."""
    from roadseg.commands import model as commands

    commands.model_set_approval(_session(ctx), _printer(ctx), package=package, group=group, status="Approved",
                                note=note)


@model.command("reject", epilog=_example('roadseg model reject 8 --note "rider IoU regressed"'))
@click.argument("package")
@click.option("--note", required=True, help="why (kept as the approval description)")
@group_option
@click.pass_context
def model_reject(ctx, package, note, group):
    """Reject a model package (version or ARN)."""
    from roadseg.commands import model as commands

    commands.model_set_approval(_session(ctx), _printer(ctx), package=package, group=group, status="Rejected",
                                note=note)


@model.command("export", epilog=_example(
    "roadseg model export model.tar.gz --out bundle/ --validation-miou 0.71 --validation-pixel-accuracy 0.93",
    "roadseg model export model.tar.gz --out bundle/ --classes-file classes.json --width 1024 --height 512 "
    "--validation-frames frames/ --evaluation evaluation.json"))
@click.argument("model_archive", metavar="MODEL_TAR_GZ", type=click.Path(path_type=Path))
@click.option("--out", "bundle_dir", required=True, type=click.Path(path_type=Path),
              help="new (or empty) folder for the edge bundle")
@scheme_options
@click.option("--width", type=int, help="serving width (default: the environment's preprocessing.target_width)")
@click.option("--height", type=int, help="serving height (default: the environment's preprocessing.target_height)")
@click.option("--validation-frames", type=click.Path(path_type=Path),
              help="JPEG frames for the ONNX parity check (default: generated road scenes at the serving size)")
@click.option("--evaluation", type=click.Path(path_type=Path), help="roadseg's evaluation.json of this model")
@click.option("--validation-miou", type=float, help="no evaluation.json: the training job's final validation:mIOU")
@click.option("--validation-pixel-accuracy", type=float, help="... and its final validation:pixel_accuracy")
@click.option("--export-python", type=click.Path(path_type=Path),
              help="the export environment's python (default: $ROADSEG_EXPORT_PYTHON, then .venv-export/bin/python)")
@json_option
@click.pass_context
def model_export(ctx, model_archive, bundle_dir, scheme, classes_file, width, height, validation_frames, evaluation,
                 validation_miou, validation_pixel_accuracy, export_python, as_json):
    """Export a Semantic Segmentation model.tar.gz (model_algo-1 + hyperparams.json) to an edge bundle here, with
    the ExportModel step's checks (strict parameter load, ONNX parity, bundle validators), in the export
    environment (.venv-export: Python 3.11, MXNet 1.9.1). Exit 1 when a check fails."""
    from roadseg.model_export import model_export as export

    session = _session(ctx)
    export(session, _printer(ctx, as_json), model=model_archive, bundle_dir=bundle_dir,
           scheme=_scheme(session, scheme, classes_file), width=width, height=height,
           validation_frames=validation_frames, evaluation=evaluation, validation_miou=validation_miou,
           validation_pixel_accuracy=validation_pixel_accuracy, python=export_python)


# -- endpoint ----------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def endpoint() -> None:
    """Segment frames on the deployed endpoints and see their state."""


@endpoint.command("invoke", epilog=_example("roadseg endpoint invoke frame.jpg --out-dir out/"))
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--out-dir", required=True, type=click.Path(path_type=Path))
@click.option("--endpoint", "endpoint_name", help="override: the real-time endpoint")
@scheme_options
@click.pass_context
def endpoint_invoke(ctx, image, out_dir, endpoint_name, scheme, classes_file):
    """Segment one image on the real-time endpoint (request at most 6 MiB): writes the mask and an overlay."""
    from roadseg.commands import endpoint as commands

    session = _session(ctx)
    commands.endpoint_invoke(session, _printer(ctx), endpoint=endpoint_name, image=image, out_dir=out_dir,
                             scheme=_scheme(session, scheme, classes_file))


@endpoint.command("submit", epilog=_example("roadseg endpoint submit a.jpg b.png --out-dir out/"))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out-dir", required=True, type=click.Path(path_type=Path))
@click.option("--timeout", type=click.FloatRange(min=0), default=900, show_default=True,
              help="seconds to wait for results (0: submit, print the pending locations, do not wait)")
@click.option("--probabilities", is_flag=True,
              help="request class probabilities (RecordIO protobuf): writes <stem>_probs.npy too")
@click.option("--endpoint", "endpoint_name", help="override: the async endpoint")
@click.option("--bucket", help=f"override: the inference bucket (inputs go to {INFERENCE.async_input})")
@click.option("--input-prefix", default=INFERENCE.async_input, hidden=True)
@click.option("--poll-interval", type=float, default=5.0, hidden=True)
@scheme_options
@click.pass_context
def endpoint_submit(ctx, images, out_dir, timeout, probabilities, endpoint_name, bucket, input_prefix,
                    poll_interval, scheme, classes_file):
    """Segment images on the async endpoint through S3 and wait for the results."""
    from roadseg.commands import endpoint as commands

    session = _session(ctx)
    commands.endpoint_submit(session, _printer(ctx), endpoint=endpoint_name, bucket=bucket, images=images,
                             out_dir=out_dir, scheme=_scheme(session, scheme, classes_file), timeout=timeout,
                             probabilities=probabilities, input_prefix=input_prefix, poll_interval=poll_interval)


@endpoint.command("status", epilog=_example("roadseg endpoint status --json"))
@json_option
@click.pass_context
def endpoint_status(ctx, as_json):
    """Both endpoints: status, instance type and instance count."""
    from roadseg.commands import endpoint as commands

    commands.endpoint_status(_session(ctx), _printer(ctx, as_json))


@endpoint.command("bench", epilog=_example(
    "roadseg endpoint bench --kind realtime --concurrency 4 --duration 120",
    "roadseg --env prod endpoint bench --kind async --concurrency 32 --duration 600 --json"))
@click.option("--kind", type=click.Choice(["realtime", "async"]), default="realtime", show_default=True,
              help="which endpoint of the environment")
@click.option("--concurrency", type=click.IntRange(1, 512), default=4, show_default=True,
              help="requests in flight at once (one thread each)")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="seconds to send for; requests in flight then finish")
@click.option("--frames", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="distinct generated scenes, sent round robin")
@click.option("--source-size", default="2048x1024", show_default=True, metavar="WxH",
              help="camera frame size of the scenes, before the ingest preprocessing fits them to the serving size")
@click.option("--requests", "max_requests", type=click.IntRange(1), help="stop after this many requests")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=900, show_default=True,
              help="async: seconds to wait for one result")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="folder of the result file (default: config/measurements/, which the cost table reads)")
@click.option("--endpoint", "endpoint_name", help="override: the endpoint (default: the inference stack's, per --kind)")
@click.option("--bucket", help=f"override: the inference bucket (async inputs go to {INFERENCE.async_input}bench/)")
@click.option("--seed", type=int, default=0, hidden=True)
@click.option("--poll-interval", type=float, default=0.5, hidden=True)
@click.option("--instance-poll", type=float, default=15.0, hidden=True)
@json_option
@click.pass_context
def endpoint_bench(ctx, kind, concurrency, duration, frames, source_size, max_requests, timeout, out_dir,
                   endpoint_name, bucket, seed, poll_interval, instance_poll, as_json):
    """Measure an endpoint with frames at the serving resolution: latency p50/p90/p99, frames/s (overall and per
    instance), errors and throttles; writes endpoint-<env>-<kind>-<UTC time>.json for the cost table."""
    from roadseg.endpoint_bench import run_bench

    run_bench(_session(ctx), _printer(ctx, as_json), kind=kind, concurrency=concurrency, duration=duration,
              frames=frames, source_size=source_size, out_dir=out_dir, endpoint=endpoint_name, bucket=bucket,
              timeout=timeout, max_requests=max_requests, seed=seed, poll_interval=poll_interval,
              instance_poll=instance_poll)


# -- segment -----------------------------------------------------------------------------------------------------

@cli.command("segment", context_settings=CONTEXT, epilog=_example(
    "roadseg segment ~/drives/0412/ --bundle s3://<artifacts>/pipelines/<pipeline>/<execution>/bundle/ --output out/",
    "roadseg segment a.jpg b.png --bundle ./bundle --device cpu --no-overlay"))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--bundle", required=True, metavar="DIR|s3://BUCKET/PREFIX/",
              help="the edge bundle the ExportModel step wrote (a folder, or an S3 prefix downloaded for the run)")
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=Path("segmented"),
              show_default=True, help="results folder; paths below it mirror the inputs' paths")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="ONNX Runtime provider: auto takes CUDA when the installed onnxruntime-gpu has it")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="write <name>.overlay.jpg")
@click.pass_context
def segment(ctx, paths, bundle, output_dir, device, overlay):
    """Segment image files and folders (.jpg/.jpeg/.png, recursively) with an edge bundle's ONNX model, through the
    service's own frame preparation and postprocessing: <name>.json (result document), <name>.mask.png (class
    indices at the original size) and <name>.overlay.jpg per frame. Refused frames are reported with the ingest
    function's codes and make the exit code 1."""
    from roadseg.segment import segment_paths

    segment_paths(_session(ctx), _printer(ctx), paths=paths, bundle=bundle, output_dir=output_dir, device=device,
                  overlay=overlay)


# -- drive -------------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def drive() -> None:
    """Whole drives: upload a ROS 1/ROS 2 bag or MCAP log, follow it, read its scenes, fetch its timeline and videos."""


bucket_option = click.option("--bucket", help="override: the inference bucket (default: the data stack's "
                                              "InferenceBucketName)")


@drive.command("upload", epilog=_example("roadseg drive upload ~/logs/2026-12-03-0912.mcap --vehicle car-7",
                                         "roadseg drive upload ~/logs/rosbag2_2026_12_03/ --vehicle car-7 --drive d1"))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--vehicle", required=True, help="vehicle name (letters, digits, '.', '_', '-')")
@click.option("--drive", "drive_name", help="drive name (default: the file's stem or the bag directory's name)")
@bucket_option
@click.pass_context
def drive_upload(ctx, path, vehicle, drive_name, bucket):
    """Upload a drive log under drives/<vehicle>/ with a progress bar; its arrival starts the extraction (a ROS 2
    bag directory's metadata.yaml is uploaded last)."""
    from roadseg import drives

    drives.drive_upload(_session(ctx), _printer(ctx), path=path, vehicle=vehicle, drive=drive_name, bucket=bucket)


@drive.command("status", epilog=_example("roadseg drive status car-7/2026-12-03-0912"))
@click.argument("drive_id")
@click.option("--table", "table_name", help="override: the drives table (default <prefix>-drives)")
@bucket_option
@json_option
@click.pass_context
def drive_status(ctx, drive_id, table_name, bucket, as_json):
    """Frames extracted, processed, quarantined and failed, what remains and the estimated time left (a drive not
    started yet: whether its log is in the bucket)."""
    from roadseg import drives

    drives.drive_status(_session(ctx), _printer(ctx, as_json), drive=drive_id, table_name=table_name, bucket=bucket)


@drive.command("scenes", epilog=_example("roadseg drive scenes car-7/2026-12-03-0912 --kind vru_in_drivable_ahead"))
@click.argument("drive_id")
@click.option("--kind", type=click.Choice(["vru_in_drivable_ahead", "drivable_ahead_collapse"]),
              help="only scenes of this kind")
@bucket_option
@json_option
@click.pass_context
def drive_scenes(ctx, drive_id, kind, bucket, as_json):
    """The drive's scenes: windows where a vulnerable road user is in the drivable area ahead, or the drivable
    area ahead collapses."""
    from roadseg import drives

    drives.drive_scenes(_session(ctx), _printer(ctx, as_json), drive=drive_id, bucket=bucket, kind=kind)


@drive.command("fetch", epilog=_example("roadseg drive fetch car-7/2026-12-03-0912 --out-dir drive-out/"))
@click.argument("drive_id")
@click.option("--out-dir", type=click.Path(path_type=Path), default=Path("drive-out"), show_default=True)
@click.option("--videos/--no-videos", default=True, show_default=True, help="also fetch the review videos")
@bucket_option
@click.pass_context
def drive_fetch(ctx, drive_id, out_dir, videos, bucket):
    """Download the drive's summary, scenes, timeline (Parquet) and review videos."""
    from roadseg import drives

    drives.drive_fetch(_session(ctx), _printer(ctx), drive=drive_id, bucket=bucket, out_dir=out_dir, videos=videos)


# -- monitor -----------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def monitor() -> None:
    """Label-free drift per camera against the serving model's reference profile (docs/drift.md)."""


@monitor.command("status", epilog=_example("roadseg --env prod monitor status --window 24h --plot drift.png",
                                           "roadseg monitor status --camera front --json"))
@click.option("--window", metavar="Nh|Nd", help="the window judged, ending on the last whole hour (default: the "
              "configured monitoring window, 1h hourly / 24h daily)")
@click.option("--camera", "cameras", multiple=True, help="only this camera (repeatable)")
@click.option("--plot", type=click.Path(path_type=Path), help="PNG of the hourly signal means against the reference")
@json_option
@click.pass_context
def monitor_status(ctx, window, cameras, plot, as_json):
    """Drift per camera over the window (exit 1 when a camera drifted), the reference model version, every
    signal's PSI and Jensen-Shannon distance; publishes nothing."""
    from roadseg.commands import monitor as commands

    ctx.exit(commands.monitor_status(_session(ctx), _printer(ctx, as_json), window=window, cameras=cameras,
                                     plot=plot))


# -- env ---------------------------------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def env() -> None:
    """The environment itself: deploy preflight, stack outputs, costs."""


@env.command("preflight", epilog=_example("make synth ENV=prod && roadseg --env prod env preflight"))
@click.option("--assembly", type=click.Path(path_type=Path), default=Path("cdk.out"), show_default=True,
              help="cloud assembly written by make synth")
@click.option("--scaling", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="off: the deploy leaves the scalable targets out (make deploy SCALING=off)")
@json_option
@click.pass_context
def env_preflight(ctx, assembly, scaling, as_json):
    """Read-only check that the account fits the deploy: bootstrap, quotas, Lambda concurrency, instance types."""
    from roadseg import preflight

    session = _session(ctx)
    ctx.exit(preflight.command(session.env, assembly=assembly, scaling_on=scaling == "on",
                               region=session.region_override, as_json=as_json or session.json))


@env.command("outputs", epilog=_example("roadseg --env prod env outputs --json"))
@json_option
@click.pass_context
def env_outputs(ctx, as_json):
    """Every output of the environment's deployed stacks (the names the other commands use)."""
    from roadseg.commands import env as commands

    commands.env_outputs(_session(ctx), _printer(ctx, as_json))


@env.command("costs", epilog=_example("roadseg env costs dev prod"))
@click.argument("environments", nargs=-1)
@json_option
@click.pass_context
def env_costs(ctx, environments, as_json):
    """What the endpoints cost per environment (idle and per 1,000 frames), from the dated price table: the
    environments named, else the one --env names, else every environment of the config folder."""
    from envconfig.config import available_environments
    from roadseg.commands import env as commands

    session = _session(ctx)
    if not environments:
        environments = [session.env] if session.env_given else available_environments(session.config_path.parent)
    commands.env_costs(_printer(ctx, as_json), list(environments))


@env.command("capacity", epilog=_example(
    "roadseg --env prod env capacity --rate 400 --plot prod-400fps.png   # 100 vehicles x 2 cameras x 2 Hz",
    "roadseg env capacity --burst 36000@600 --frames-per-second 9 --startup-seconds 420",
    "roadseg env capacity --profile weekday.csv --json   # CSV hour,frames_per_second, 24 rows"))
@click.option("--rate", type=float, help="steady upload rate, frames per second")
@click.option("--burst", metavar="N@START[+WINDOW]",
              help="N frames from START seconds, spread over WINDOW seconds (default 60)")
@click.option("--profile", type=click.Path(path_type=Path), help="daily profile: CSV hour,frames_per_second (24 rows)")
@click.option("--hours", type=float, help="simulated hours (default 24; a burst: 2 after it starts)")
@click.option("--frames-per-second", type=float,
              help="measured frames/s per instance (default: the cost table's figure, see env costs)")
@click.option("--startup-seconds", type=float, default=360, show_default=True,
              help="instance start-up until it serves (an estimate)")
@click.option("--ingest-seconds-per-batch", type=float,
              help="ingest function duration per SQS batch (default 0.25 s x batch size, an estimate)")
@click.option("--plot", type=click.Path(path_type=Path), help="write a PNG of backlog and instances over time")
@click.option("--min-capacity", type=int, help="what if: async_endpoint.min_capacity")
@click.option("--max-capacity", type=int, help="what if: async_endpoint.max_capacity")
@click.option("--ingest-max-concurrency", type=int, help="what if: preprocessing.ingest_max_concurrency")
@json_option
@click.pass_context
def env_capacity(ctx, rate, burst, profile, hours, frames_per_second, startup_seconds, ingest_seconds_per_batch, plot,
                 min_capacity, max_capacity, ingest_max_concurrency, as_json):
    """Simulate the async path under the environment's scaling policy: latency, instances, cost, Lambda and S3 load."""
    from roadseg import capacity

    config = _what_if(_session(ctx).config, min_capacity=min_capacity, max_capacity=max_capacity,
                      ingest_max_concurrency=ingest_max_concurrency)
    capacity.command(_printer(ctx, as_json), config, rate=rate, burst=burst, profile=profile,
                     hours=hours, frames_per_second=frames_per_second, startup_seconds=startup_seconds,
                     ingest_seconds_per_batch=ingest_seconds_per_batch, plot=plot)


def _what_if(config, **changes):
    """The environment's config with what-if values, validated like the file (an invalid one exits 2)."""
    from pydantic import ValidationError

    async_changes = {k: v for k in ("min_capacity", "max_capacity") if (v := changes.get(k)) is not None}
    ingest = changes.get("ingest_max_concurrency")
    if not async_changes and ingest is None:
        return config
    try:
        async_endpoint = type(config.async_endpoint).model_validate(
            {**config.async_endpoint.model_dump(), **async_changes})
        preprocessing = config.preprocessing if ingest is None else type(config.preprocessing).model_validate(
            {**config.preprocessing.model_dump(), "ingest_max_concurrency": ingest})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise UserError(f"what-if values: {problems}") from None
    return config.model_copy(update={"async_endpoint": async_endpoint, "preprocessing": preprocessing})


# -- errors and exit codes ---------------------------------------------------------------------------------------

def _command_path(argv: Sequence[str]) -> str:
    """``roadseg <group> <command>`` as invoked, for error prefixes: the command words only, found with each
    group's own option parser (so ``--env prod`` is an option and its value, not a command)."""
    words, command, args = ["roadseg"], cli, list(argv)
    try:
        while isinstance(command, click.Group) and args:
            # The command's context settings as make_context applies them: click caches the help option it builds
            # from the first context's help_option_names (-h would be lost).
            settings = {**command.context_settings, "resilient_parsing": True, "ignore_unknown_options": True}
            ctx = click.Context(command, info_name=words[-1], **settings)
            _, rest, _ = command.make_parser(ctx).parse_args(args)
            if not rest or rest[0].startswith("-"):
                break
            name, sub, args = command.resolve_command(ctx, rest)
            if sub is None:
                break
            words.append(name)
            command = sub
    except click.ClickException:
        pass
    return " ".join(words)


def _aws_exit(exc: Exception, where: str) -> int | None:
    """Exit code for an AWS SDK failure (None: not one). Credentials and access: 3; a request AWS refused
    for its content (no such pipeline, bucket, ...): 2, bad input."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoCredentialsError):
        print(f"{where}: error: no AWS credentials found (set a profile or AWS_* variables)", file=sys.stderr)
        return 3
    if isinstance(exc, NoRegionError):
        print(f"{where}: error: no AWS region: pass --region or set AWS_REGION", file=sys.stderr)
        return 3
    if unparseable_response(exc):
        print(f"{where}: error: {UNPARSEABLE_RESPONSE}", file=sys.stderr)
        return 3
    client_error = exc if isinstance(exc, ClientError) else exc.__context__
    if isinstance(client_error, ClientError) and isinstance(exc, (ClientError, Boto3Error)):
        info = client_error.response.get("Error", {})
        code, message = str(info.get("Code", "?")), info.get("Message", "")
        operation = getattr(client_error, "operation_name", "")
        print(f"{where}: AWS error {code}" + (f" in {operation}" if operation else "") + f": {message}",
              file=sys.stderr)
        return 3 if code in CREDENTIAL_ERROR_CODES else 2
    if isinstance(exc, (BotoCoreError, Boto3Error)):
        print(f"{where}: AWS error: {exc}", file=sys.stderr)
        return 3
    return None


def _accept_global_options_everywhere(group: click.Group) -> None:
    for command in group.commands.values():
        own = {opt for param in command.params for opt in getattr(param, "opts", [])}
        command.params.extend(o for o in _global_options(with_json=isinstance(command, click.Group))
                              if not own & set(o.opts))
        if isinstance(command, click.Group):
            _accept_global_options_everywhere(command)


_accept_global_options_everywhere(cli)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    where = _command_path(argv)
    forget_session()  # each run resolves the credentials afresh (the session is cached per process)
    try:
        result = cli.main(args=argv, prog_name="roadseg", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except UserError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        for line in str(exc).splitlines():
            print(f"{where}: {line}", file=sys.stderr)
        return 1
    except AwsAccessError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # the AWS SDK's errors, imported only when one happens (fast start-up)
        code = _aws_exit(exc, where)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
