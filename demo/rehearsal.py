"""The rehearsal's stages, in order, against a moto server on 127.0.0.1 (see demo/__init__.py); ``run`` runs them
and hands the report (demo/report.py) to demo/render.py. Each stage has its module:

1. resources (demo/resources.py): the buckets, ingest queue + DLQ, async success/error topics, the S3 notification
   incoming/ -> ingest queue, the execution role, KMS key, model package group and a stand-in of the inference stack
   (CloudFormation, one ``ModelPackageArn`` parameter), all named from ``load_config(env)`` (demo/options.py);
2. pipelines (demo/pipelines.py): both definitions generated as at synth time, placeholders substituted, upserted,
   one execution each started with parameters through ``roadseg pipeline start``;
3. registry and rollout (demo/rollout.py): an evaluation report (``training.evaluate`` on stand-in predictions), a
   model package with it as model metrics, approval through ``roadseg model approve``, the rollout handler on the
   EventBridge event (a real UpdateStack against moto), then the same event again (skipped);
4. frames (demo/frames.py): generated scenes (JPEG and PNG) plus the broken files, put under incoming/;
5. ingest (demo/inference.py, as 6-8): the SQS messages moto produced from the bucket notification, to
   ``ingest.handler`` in batches;
6. async endpoint: the STAND-IN SEGMENTER answers each InvokeEndpointAsync (mask under async-output/,
   notification on the success topic);
7. postprocess: the notifications (via an SQS tap on the topics) to ``postprocess.handler``;
8. real-time: one frame through ``realtime.handler`` (function URL event), answered by the stand-in;
9. outputs (demo/outputs.py): results, overlays, quarantine and side-by-side pictures into the local output folder;
10. drive (``--no-drive`` skips it): a generated two-camera MCAP drive through extraction, the same ingest / async /
    postprocess path with the drives table counting, the drive builder, and its outputs (demo/drive.py);
11. labelling (with the drive): select from the drive, export to CVAT, "annotate" with the generator's ground truth
    written by datumaro, import as a new dataset version, pipeline start on it (demo/labelling.py).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from contracts.layout import INFERENCE
from demo import render
from demo.awsenv import AwsClients, LocalMoto, local_aws
from demo.drive import DriveError, DriveOptions, DriveReport, rehearse_drive
from demo.frames import upload_frames
from demo.inference import answer_async, answer_realtime, function_environment, ingest, postprocess
from demo.labelling import rehearse_labelling
from demo.lambdas import Lambdas
from demo.log import RehearsalLog
from demo.options import Names, Options, RehearsalError
from demo.outputs import collect_outputs
from demo.pipelines import run_pipelines
from demo.report import Report
from demo.resources import create_resources
from demo.rollout import register_and_roll_out
from demo.standin import LABEL, TILE, StandInRuntime, StandInSegmenter
from envconfig.classes import resolve_scheme
from envconfig.config import EnvironmentConfig, load_config

# Output subfolders this rehearsal owns (only these are cleared before a run: --out may be any folder).
OUTPUT_PARTS = ("results", "quarantine", "failures", "realtime", "side-by-side", "pipelines", "registry",
                "rollout", "drive", "labelling", "logs", "summary.txt", "summary.json", "README.txt")


def run(options: Options, echo: Callable[[str], None] = print) -> Report:
    """Run every stage; returns the report (``report.problems`` lists what went wrong)."""
    started = time.perf_counter()
    if options.frames < 1:
        raise RehearsalError("--frames must be at least 1")
    if options.width < 64 or options.height < 32:
        raise RehearsalError("frames must be at least 64x32 pixels")
    if options.drive and not (0 < options.drive_seconds <= 60 and 0 < options.drive_hz <= 30):
        raise RehearsalError("--drive-seconds must be within 0..60 and --drive-hz within 0..30")
    config = load_config(options.env)
    scheme = resolve_scheme(config)
    if scheme.name != "cityscapes":
        raise RehearsalError(f"config/{config.name}.yaml uses the '{scheme.name}' classes: the scene generator "
                             "draws Cityscapes classes only, so the rehearsal needs classes.scheme: cityscapes")
    names = Names.from_config(config)
    out = options.out
    _clear_outputs(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    log = RehearsalLog(out / "logs" / "rehearsal.log", echo)
    report = Report(options=options, env=config.name, prefix=config.prefix, region=names.region, names=names)
    segmenter = StandInSegmenter(options.noise, options.seed, lambda m: log(m, console=False))

    log(f"roadseg local rehearsal: env {config.name}, prefix {config.prefix}, region {names.region} "
        f"(moto on 127.0.0.1, no AWS account used)")
    log(f"{LABEL}: every mask below is the scene generator's ground truth with {options.noise:.0%} of its "
        f"{TILE}x{TILE} tiles perturbed, NOT a model prediction")

    @contextlib.contextmanager
    def stage(title: str) -> Iterator[None]:
        log(f"-- {title}")
        begin = time.perf_counter()
        try:
            yield
        finally:
            report.stages.append((title, time.perf_counter() - begin))

    server: LocalMoto | None = None
    try:
        begin = time.perf_counter()
        log("-- start moto server, create resources")
        with local_aws(names.region) as (server, aws):
            report.endpoint_url = server.endpoint_url or ""
            log(f"moto server listening on {server.endpoint_url}")
            lambdas = Lambdas(out / "logs" / "lambda.jsonl")
            runtime = StandInRuntime(real=aws("sagemaker-runtime"), segmenter=segmenter,
                                     output_prefix_uri=f"s3://{names.inference_bucket}/{INFERENCE.async_output}",
                                     failure_prefix_uri=f"s3://{names.inference_bucket}/{INFERENCE.async_failures}")
            with lambdas.session(runtime):
                arns = create_resources(aws, config, names, log)
                report.stages.append(("start moto server, create resources", time.perf_counter() - begin))
                with stage("pipelines: generate, upsert, start"):
                    run_pipelines(aws, config, names, arns, report, out, log)
                with stage("registry: evaluate, register, approve; rollout x2"):
                    version = register_and_roll_out(aws, config, names, arns, scheme, lambdas, report, out,
                                                    options, log)
                env = function_environment(config, scheme, names, version)
                with stage("frames: generate and upload to incoming/"):
                    frames = upload_frames(aws, names, options, segmenter, report, log)
                with stage("ingest: SQS batches -> ingest.handler"):
                    ingest(aws, config, names, arns, lambdas, runtime, env, report, log)
                with stage("async endpoint: STAND-IN SEGMENTER answers"):
                    answer_async(aws, names, arns, runtime, segmenter, lambdas, report, log)
                with stage("postprocess: SNS notifications -> postprocess.handler"):
                    postprocess(aws, names, arns, lambdas, env, report, log)
                with stage("real-time front: one frame -> realtime.handler"):
                    answer_realtime(config, names, lambdas, runtime, env, frames[0], report, out, log)
                with stage("outputs: download results, render side-by-side"):
                    collect_outputs(aws, names, report, out, options, log)
                if options.drive:
                    with stage("drive: MCAP -> extract -> ingest/async/postprocess -> counts -> build"):
                        report.drive = _drive(aws, config, scheme, names, arns, lambdas, runtime, segmenter, env,
                                              options, out, log)
                    with stage("labelling: select, export to CVAT, annotate (datumaro), import, version, train"):
                        rehearse_labelling(aws, prefix=config.prefix, names=names, scheme=scheme,
                                           segmenter=segmenter, loose=frames,
                                           loose_versions={f.key: f.version_id for f in report.frames},
                                           out=out, log=log)
    finally:
        if server is not None:
            report.server_running_after = server.running
    report.wall_seconds = time.perf_counter() - started
    render.write_summary(report, out)
    return report


def _clear_outputs(out: Path) -> None:
    for part in OUTPUT_PARTS:
        path = out / part
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _drive(aws: AwsClients, config: EnvironmentConfig, scheme: Any, names: Names, arns: dict[str, str],
           lambdas: Lambdas, runtime: StandInRuntime, segmenter: StandInSegmenter, env: dict[str, str],
           options: Options, out: Path, log: RehearsalLog) -> DriveReport:
    """Stage 10, the drive (demo/drive.py), with stages 5-7 (demo/inference.py) as its ingest / async / postprocess
    path."""
    pre = config.preprocessing

    def process() -> dict[str, Any]:
        # Stages 5-7 on what the drive's frames queued, counted apart: the report's frame counts stay the frames'.
        scratch = Report(options=options, env=report_env, prefix=config.prefix, region=names.region, names=names)
        earlier, runtime.async_requests = runtime.async_requests, []
        try:
            ingest(aws, config, names, arns, lambdas, runtime, env, scratch, log)
            answer_async(aws, names, arns, runtime, segmenter, lambdas, scratch, log)
            postprocess(aws, names, arns, lambdas, env, scratch, log)
        finally:
            runtime.async_requests = earlier + runtime.async_requests
        return {"ingest_batches": scratch.ingest_batches, "ingest_item_failures": scratch.ingest_item_failures,
                "async_invocations": scratch.async_invocations, "async_answers": scratch.async_answers,
                "postprocess_outcomes": scratch.postprocess_outcomes}

    report_env = config.name
    drive_options = DriveOptions(seconds=options.drive_seconds, hz=options.drive_hz, width=options.width,
                                 height=options.height, seed=options.seed, noise=options.noise,
                                 inference_size=(pre.target_width, pre.target_height),
                                 vru_min_pixels=pre.vru_min_pixels)
    try:
        return rehearse_drive(aws, bucket=names.inference_bucket, table=names.drives_table, scheme=scheme,
                              options=drive_options, segmenter=segmenter, process=process,
                              decide_completion=lambdas.drives.decide_completion, out=out, log=log)
    except DriveError as exc:
        raise RehearsalError(str(exc)) from None
