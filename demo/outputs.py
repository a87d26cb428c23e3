"""Stage 9: results, overlays, quarantine and failure documents downloaded into the output folder, each frame's
outcome read from them, and the side-by-side pictures rendered (labelled stand-in output)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from contracts.layout import INFERENCE
from demo import render
from demo.awsenv import AwsClients
from demo.log import RehearsalLog
from demo.options import Names, Options
from demo.report import Report
from demo.standin import NOTE

# ----------------------------------------------------------------------------------------- 9. outputs


def collect_outputs(aws: AwsClients, names: Names, report: Report, out: Path, options: Options,
                    log: RehearsalLog) -> None:
    s3 = aws("s3")
    downloaded = {}
    for prefix in (INFERENCE.results, INFERENCE.quarantine, INFERENCE.failures):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=names.inference_bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = out / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=names.inference_bucket, Key=obj["Key"])["Body"].read())
                downloaded[obj["Key"]] = target
    masks = s3.list_objects_v2(Bucket=names.inference_bucket, Prefix=INFERENCE.async_output).get("Contents", [])
    if masks:
        key = masks[0]["Key"]
        report.stand_in_labels = {
            "key": key, "metadata": s3.head_object(Bucket=names.inference_bucket, Key=key)["Metadata"],
            "tags": {t["Key"]: t["Value"]
                     for t in s3.get_object_tagging(Bucket=names.inference_bucket, Key=key)["TagSet"]}}
    from segcore.keys import frame_identity, quarantine_keys

    for frame in report.frames:
        identity = frame_identity(frame.key)
        _, reason_key = quarantine_keys(frame.key, INFERENCE.quarantine)
        result_key = f"{INFERENCE.results}{identity}.json"
        if result_key in downloaded:
            frame.status, frame.identity = "processed", identity
            frame.result_path = downloaded[result_key]
            frame.result = json.loads(frame.result_path.read_text())
            frame.overlay_path = downloaded.get(f"{INFERENCE.results}{identity}.overlay.jpg")
        elif reason_key in downloaded:
            frame.status, frame.reason_path = "quarantined", downloaded[reason_key]
            frame.reason = json.loads(frame.reason_path.read_text())
        elif f"{INFERENCE.failures}{identity}.json" in downloaded:
            frame.status = "failed"
    for frame in report.frames:
        if frame.status != "processed" or frame.overlay_path is None:
            continue
        async_input = s3.get_object(Bucket=names.inference_bucket,
                                    Key=f"{INFERENCE.async_input}{frame.identity}.jpg")["Body"].read()
        target = out / "side-by-side" / f"{frame.identity}.png"
        render.side_by_side(Image.open(io.BytesIO(async_input)), Image.open(frame.overlay_path), target,
                            noise=options.noise, title=frame.key)
        frame.side_by_side_path = target
    picture = options.readme_picture
    first = next((f for f in report.frames if f.side_by_side_path is not None), None)
    if picture is not None and first is not None:
        render.readme_picture(first.side_by_side_path, picture)
        report.readme_picture = picture
        log(f"README picture written to {picture} ({picture.stat().st_size // 1024} KiB)")
    (out / "README.txt").write_text(
        "roadseg local rehearsal output (make demo): everything here came from moto on 127.0.0.1.\n"
        f"Masks, overlays, result JSONs and side-by-side pictures are STAND-IN output ({NOTE}).\n"
        "results/     result JSON + overlay per frame, as postprocess.handler wrote them to the inference bucket\n"
        "quarantine/  refused frames and their .reason.json, as ingest.handler wrote them\n"
        "realtime/    the real-time front's response for one frame\n"
        "side-by-side/ frame | overlay pictures; pipelines/ registry/ rollout/ logs/: the other stages\n")
    log(f"outputs in {out}/: {report.count(status='processed')} results with overlays, "
        f"{report.count(status='quarantined')} quarantine reasons")
