"""Stage 4: generated camera frames (JPEG and PNG, registered with the stand-in segmenter) and the broken files,
put under incoming/ of the inference bucket."""

from __future__ import annotations

import io
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from contracts.layout import INFERENCE
from demo.awsenv import AwsClients
from demo.log import RehearsalLog
from demo.options import Names, Options
from demo.report import FrameOutcome, Report
from demo.standin import SceneFrame, StandInSegmenter
from segcore.scenes import generate_scene, write_broken_frames

CAMERAS = ("front", "left", "right", "rear")
FIRST_TIMESTAMP = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
BROKEN_VEHICLE = "veh-900"


def scene_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def iso_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def upload_frames(aws: AwsClients, names: Names, options: Options, segmenter: StandInSegmenter, report: Report,
                  log: RehearsalLog) -> list[tuple[SceneFrame, bytes]]:
    s3 = aws("s3")
    frames: list[tuple[SceneFrame, bytes]] = []
    for i in range(options.frames):
        seed = scene_seed(options.seed, i)
        rgb, truth = generate_scene(options.width, options.height, seed)
        stamp = iso_timestamp(FIRST_TIMESTAMP + timedelta(milliseconds=100 * i))
        fmt, ext, content_type = (("JPEG", "jpg", "image/jpeg") if i % 2 == 0 else ("PNG", "png", "image/png"))
        key = f"{INFERENCE.incoming}veh-{1 + i // len(CAMERAS):03d}/{CAMERAS[i % len(CAMERAS)]}/{stamp}.{ext}"
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        frame = SceneFrame(key=key, scene_seed=seed, width=options.width, height=options.height, index=i)
        segmenter.register(frame, truth)
        put = s3.put_object(Bucket=names.inference_bucket, Key=key, Body=buf.getvalue(), ContentType=content_type)
        frames.append((frame, buf.getvalue()))
        report.frames.append(FrameOutcome(key=key, kind="good", version_id=put.get("VersionId")))
    with tempfile.TemporaryDirectory(prefix="roadseg-broken-") as tmp:
        for name in write_broken_frames(tmp):
            key = f"{INFERENCE.incoming}{BROKEN_VEHICLE}/front/{name}"
            put = s3.put_object(Bucket=names.inference_bucket, Key=key, Body=Path(tmp, name).read_bytes())
            report.frames.append(FrameOutcome(key=key, kind="broken", version_id=put.get("VersionId")))
    log(f"{options.frames} frames {options.width}x{options.height} (JPEG and PNG) and "
        f"{report.count('broken')} broken files put under s3://{names.inference_bucket}/{INFERENCE.incoming}")
    return frames
