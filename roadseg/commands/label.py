"""``roadseg label select|export|import`` and ``roadseg data versions|verify``: the data engine's commands (issue 22).

    select   drive timelines -> selection.json (+ contact-sheet.png, pool.txt)           labelling.selection
    export   selection.json -> a CVAT or Label Studio hand-off, pre-annotated with the model's masks
                                                                    labelling.cvat / labelling.label_studio
    import   the tool's export + roadseg-export.json -> a new immutable dataset version    labelling.versions
    versions the dataset versions in the datasets bucket; verify: recompute a version's SHA-256s

Frames are read from S3 by key and S3 version id (the exact bytes that were labelled); an export records the version
id it read, and the import reads those bytes again, so the version's images are the frames the labels were drawn on.
Bad input exits 2 with one line (the labelling modules' errors), a version that fails its check exits 1.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from contracts import naming
from roadseg import session as sessions
from roadseg.output import Printer, when
from roadseg.session import JobFailed, Session, UserError

# Presigned URLs signed with SigV4 live at most 7 days; signed with temporary credentials (an assumed role, SSO),
# they stop working when those credentials expire, whatever ExpiresIn says.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html
PRESIGNED_URL_MAX_SECONDS = 7 * 24 * 3600
PRESIGNED_URL_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html"
CONTACT_SHEET_PICKS = 100  # the contact sheet shows the first picks (overlays fetched for these only)
CVAT_ANNOTATIONS_ZIP = "cvat-annotations.zip"
CVAT_IMAGES_ZIP = "cvat-images.zip"
LABEL_STUDIO_DIR = "label-studio"
LABEL_STUDIO_ZIP = "label-studio-frames.zip"
TOOLS = ("cvat", "label-studio")


def _datasets_bucket(session: Session, bucket: str | None) -> str:
    return session.name(naming.DATASETS_BUCKET_NAME, bucket, option="--bucket")


def _frames_bucket(session: Session, bucket: str | None) -> str:
    """Drive frames live under incoming/ of the inference bucket (drivelogs.naming.frame_key)."""
    return session.name(naming.INFERENCE_BUCKET_NAME, bucket, option="--frames-bucket")


def credentials_expiry(credentials: Any) -> tuple[bool, dt.datetime | None]:
    """(temporary, expiry) of botocore credentials: temporary when they carry a session token or expire; the expiry
    when botocore knows it (RefreshableCredentials of an assumed role, SSO or a credential process keep it in
    ``_expiry_time``; a session token from the environment has none)."""
    if credentials is None:
        return False, None
    expiry = getattr(credentials, "_expiry_time", None)
    expiry = expiry if isinstance(expiry, dt.datetime) else None
    if expiry is not None and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.UTC)
    return bool(getattr(credentials, "token", None)) or expiry is not None, expiry


def presigned_urls_expire_at(now: dt.datetime, expires_in: int, temporary: bool,
                             credentials_expire_at: dt.datetime | None) -> tuple[dt.datetime, str | None]:
    """When presigned URLs stop working and a line saying why, when not after ``expires_in``: a URL signed with
    temporary credentials dies with them whatever its X-Amz-Expires (re:Post, "presigned-url-s3-bucket-expiration";
    PRESIGNED_URL_DOC). UserError when the credentials have already expired."""
    wanted = now + dt.timedelta(seconds=expires_in)
    if credentials_expire_at is not None:
        if credentials_expire_at <= now:
            raise UserError(f"your AWS credentials expired at {_utc(credentials_expire_at)}: sign in again (aws sso "
                            "login, or assume the role again) and export again")
        if credentials_expire_at < wanted:
            return credentials_expire_at, (
                f"the frame URLs stop working at {_utc(credentials_expire_at)}, when the temporary AWS credentials "
                f"that signed them expire, not at {_utc(wanted)} as --expires-in {expires_in} asks "
                f"({PRESIGNED_URL_DOC}); for longer, export with longer-lived credentials (a role session with a "
                "longer duration) or export with --zip")
        return wanted, None
    if temporary:
        return wanted, (f"the frame URLs are signed with temporary AWS credentials of unknown expiry: they stop "
                        f"working when those expire, possibly before {_utc(wanted)} ({PRESIGNED_URL_DOC})")
    return wanted, None


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signing_credentials() -> Any:
    """The credentials the presigner signs with: those of the one boto3 session (roadseg.session)."""
    return sessions._boto3_session().get_credentials()


def _not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion")


# -------------------------------------------------------------------------------------------------- data versions


def data_versions(session: Session, out: Printer, *, bucket: str | None) -> None:
    from contracts.layout import DATASETS
    from labelling.versions import list_versions, version_prefix

    bucket = _datasets_bucket(session, bucket)
    versions = list_versions(session.client("s3"), bucket)
    out.table(["VERSION", "PARENT", "CREATED", "FRAMES", "TRAIN", "VALIDATION", "STATE"],
              [[v.version, v.parent or "-", when(v.created_at), v.frames if v.complete else "-",
                v.train if v.complete else "-", v.validation if v.complete else "-",
                "complete" if v.complete else "incomplete (claimed, no manifest)"] for v in versions])
    if not versions:
        out.line(f"no dataset versions in s3://{bucket}/{DATASETS.versions} yet: roadseg label import")
    out.document([{"version": v.version, "parent": v.parent, "created_at": v.created_at, "frames": v.frames,
                   "train": v.train, "validation": v.validation, "complete": v.complete,
                   "uri": f"s3://{bucket}/{version_prefix(v.version)}"} for v in versions])


def data_verify(session: Session, out: Printer, *, version: str, bucket: str | None) -> None:
    from labelling.versions import VersionError, verify_version

    bucket = _datasets_bucket(session, bucket)
    try:
        report = verify_version(session.client("s3"), bucket, version)
    except VersionError as exc:
        raise UserError(str(exc)) from None
    out.document({"version": version, "ok": report.ok, "checked": report.checked, "problems": report.problems})
    if not report.ok:
        raise JobFailed(f"{version}: {len(report.problems)} problem(s) against its manifest:\n"
                        + "\n".join(report.problems[:20])
                        + (f"\n... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""))
    out.line(f"{version}: all {report.checked} files match the SHA-256 and size in its manifest")


# ------------------------------------------------------------------------------------------------------- select


def _version_context(s3: Any, bucket: str, exclude_version: str | None) -> tuple[dict[str, Any] | None, str]:
    """The dataset version whose frames a selection leaves out (its labelled and validation frames) and whose class
    shares weigh rare classes: ``latest`` (the newest complete one, if any), an id, or ``none``."""
    from labelling.versions import VersionError, latest_version, read_manifest

    if exclude_version in (None, "none"):
        return None, "none"
    try:
        version = latest_version(s3, bucket) if exclude_version == "latest" else exclude_version
        if version is None:
            return None, "none (no dataset version yet)"
        return read_manifest(s3, bucket, version), version
    except VersionError as exc:
        raise UserError(str(exc)) from None


def _download_timelines(session: Session, drives: Sequence[str], frames_bucket: str | None,
                        folder: Path) -> dict[Path, str]:
    """Each drive's timeline downloaded into ``folder``: local path -> the S3 URI it came from."""
    from contracts.drives import DriveId, DriveKeyError, DriveOutputs

    s3 = session.client("s3")
    bucket = _frames_bucket(session, frames_bucket)
    paths = {}
    for text in drives:
        try:
            drive = DriveId.parse(text)
        except DriveKeyError as exc:
            raise UserError(f"--drive {text}: {exc}") from None
        key = DriveOutputs(drive).timeline
        target = folder / f"{drive.vehicle}__{drive.drive}.parquet"
        try:
            s3.download_file(bucket, key, str(target))
        except Exception as exc:
            if _not_found(exc) or "404" in str(exc):
                raise UserError(f"drive {drive} has no timeline (s3://{bucket}/{key}): build it first "
                                f"(roadseg drive status {drive})") from None
            raise
        paths[target] = f"s3://{bucket}/{key}"
    return paths


def _overlay_images(session: Session, picks: Sequence[Any], overlays: Path | None, limit: int) -> dict[str, Any]:
    """Frame key -> its overlay for the contact sheet: a local copy under ``overlays`` (a synced bucket,
    labelling.selection.local_images), else the overlay itself from S3. Best effort: the sheet draws a pick without
    one as its class-fraction bars, so a missing or unreadable overlay is no error."""
    from labelling.selection import Selection, local_images
    from segcore.keys import parse_s3_uri

    picks = list(picks)[:limit]
    images: dict[str, Any] = dict(local_images(Selection(picks=tuple(picks), document={}), overlays)) \
        if overlays else {}
    wanted = [p for p in picks if p.frame_key not in images and (p.overlay_uri or "").startswith("s3://")]
    if not wanted:
        return images
    s3 = session.client("s3")

    def fetch(pick: Any) -> bytes | None:
        try:
            bucket, key = parse_s3_uri(pick.overlay_uri)
            found = _get(s3, bucket, key)
        except Exception:  # noqa: BLE001 - no access, no bucket, expired: the sheet falls back to bars
            return None
        return found[0] if found else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        for pick, data in zip(wanted, pool.map(fetch, wanted), strict=True):
            if data:
                images[pick.frame_key] = data
    return images


def label_select(session: Session, out: Printer, *, timelines: Sequence[Path], drives: Sequence[str],
                 output: Path, budget_frames: int | None, budget_hours: float | None,
                 minutes_per_frame: float | None, per_camera: int | None, per_vehicle: int | None,
                 min_gap_s: float, max_hamming: int | None, seed: int, start: dt.datetime | None,
                 end: dt.datetime | None, exclude_version: str | None, model_scores: Sequence[Path],
                 frames_bucket: str | None, bucket: str | None, scheme=None, overlays: Path | None = None) -> None:
    from contracts.labelling import CONTACT_SHEET_FILE, POOL_FILE, SELECTION_MANIFEST_FILE
    from labelling.selection import (
        Budget,
        NearDuplicates,
        Quotas,
        SelectionError,
        select_frames,
        version_exclusions,
        write_contact_sheet,
        write_pool,
        write_selection,
    )

    if not timelines and not drives:
        raise UserError("name the frames to choose from: timeline files or folders, or --drive <vehicle>/<drive>")
    manifest, excluded_from = (None, "none") if exclude_version == "none" else _version_context(
        session.client("s3"), _datasets_bucket(session, bucket), exclude_version)
    try:
        version = version_exclusions(manifest, f"dataset version {excluded_from}") if manifest else None
    except SelectionError as exc:
        raise UserError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="roadseg-select-") as tmp:
        downloaded = _download_timelines(session, drives, frames_bucket, Path(tmp)) if drives else {}
        paths = [*timelines, *downloaded]
        try:
            budget = Budget(frames=budget_frames, hours=budget_hours,
                            **({"minutes_per_frame": minutes_per_frame} if minutes_per_frame else {}))
            selection = select_frames(paths, budget=budget, quotas=Quotas(per_camera=per_camera,
                                                                          per_vehicle=per_vehicle),
                                      seed=seed, start=start, end=end,
                                      near_duplicates=NearDuplicates(min_gap_s=min_gap_s, max_hamming=max_hamming),
                                      labelled_keys=version.labelled_keys if version else None,
                                      validation_keys=version.validation_keys if version else None,
                                      validation_drives=version.validation_drives if version else None,
                                      training_frequency=(version.class_frequency or None) if version else None,
                                      model_scores=list(model_scores) or None,
                                      source_names={str(p): uri for p, uri in downloaded.items()})
        except SelectionError as exc:
            raise UserError(str(exc)) from None
    output.mkdir(parents=True, exist_ok=True)
    write_selection(selection, output / SELECTION_MANIFEST_FILE)
    write_pool(selection, output / POOL_FILE)
    images = _overlay_images(session, selection.picks, overlays, CONTACT_SHEET_PICKS)
    palette = {c.name: tuple(c.color) for c in scheme.classes} if scheme is not None else None
    write_contact_sheet(selection, output / CONTACT_SHEET_FILE, images, palette=palette, limit=CONTACT_SHEET_PICKS)
    accounting = selection.accounting
    out.line(f"picked {accounting['picked']} of {accounting['candidates']} frames "
             f"(excluded {sum(accounting['excluded'].values())}, near-duplicates "
             f"{sum(accounting['suppressed'].values())}, not chosen {sum(accounting['not_chosen'].values())}); "
             f"frames of dataset version {excluded_from} left out")
    out.line(f"selection: {output / SELECTION_MANIFEST_FILE}; contact sheet: {output / CONTACT_SHEET_FILE}",
             f"next: roadseg label export {output / SELECTION_MANIFEST_FILE} --format cvat --output <folder>")
    out.document({"selection": str(output / SELECTION_MANIFEST_FILE), "contact_sheet": str(output / CONTACT_SHEET_FILE),
                  "contact_sheet_overlays": len(images), "pool": str(output / POOL_FILE),
                  "excluded_version": excluded_from, "accounting": accounting})


# ------------------------------------------------------------------------------------------------------- export


def _read_selection(path: Path) -> dict[str, Any]:
    from contracts.documents import DocumentError
    from contracts.labelling import validate_selection

    try:
        return validate_selection(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the selection ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSON and DocumentError (a ValueError) alike
        kind = "a selection manifest" if isinstance(exc, DocumentError) else "JSON"
        raise UserError(f"{path}: not {kind} ({exc}); pass the selection.json `roadseg label select` wrote") from None


def _get(s3: Any, bucket: str, key: str, version_id: str | None = None) -> tuple[bytes, str | None] | None:
    """The object's bytes and S3 version id, None when it does not exist."""
    request = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    try:
        response = s3.get_object(**request)
    except Exception as exc:
        if _not_found(exc):
            return None
        raise
    return response["Body"].read(), response.get("VersionId")


def _pre_annotation(s3: Any, inference_bucket: str, frame_key: str, mask_uri: str | None, size: tuple[int, int],
                    ignore_index: int) -> tuple[Any, str | None]:
    """The model's mask of a frame at the frame's size and the model package version that made it, from the
    frame's result document (results/<identity>.json) and its mask; (None, None) when there is none any more."""
    import numpy as np

    from contracts.layout import INFERENCE
    from segcore.keys import frame_identity, object_keys, parse_s3_uri
    from segcore.masks import Geometry, MaskError, decode_mask_png, restore_to_original

    keys = object_keys(frame_identity(frame_key), async_input_prefix=INFERENCE.async_input,
                       results_prefix=INFERENCE.results, failures_prefix=INFERENCE.failures)
    found = _get(s3, inference_bucket, keys.result)
    document = json.loads(found[0]) if found else {}
    uri = mask_uri or document.get("mask_uri")
    if not uri:
        return None, document.get("model_package_version")
    mask_bucket, mask_key = parse_s3_uri(uri)
    data = _get(s3, mask_bucket, mask_key)
    if data is None:
        return None, document.get("model_package_version")
    try:
        mask = decode_mask_png(data[0])
    except MaskError:
        return None, document.get("model_package_version")
    if (mask.shape[1], mask.shape[0]) != size:
        crop = document.get("crop_box")
        if not crop:
            return None, document.get("model_package_version")
        mask = restore_to_original(mask, Geometry(original_size=size, crop_box=tuple(crop)), ignore_index)
    return np.ascontiguousarray(mask, dtype=np.uint8), document.get("model_package_version")


def label_export(session: Session, out: Printer, *, selection_path: Path, tool: str, output: Path, urls: bool,
                 expires_in: int, scheme, frames_bucket: str | None) -> None:
    import numpy as np
    from PIL import Image

    from labelling.archive import FrameToLabel, LabelExportError, frame_name_for_key

    if tool == "cvat" and urls:
        raise UserError("CVAT takes the frames as a zip here (--zip); presigned URLs (--urls) are for Label Studio")
    if not 1 <= expires_in <= PRESIGNED_URL_MAX_SECONDS:
        raise UserError(f"--expires-in {expires_in}: presigned URLs last 1 to {PRESIGNED_URL_MAX_SECONDS} seconds "
                        f"(7 days, {PRESIGNED_URL_DOC})")
    selection = _read_selection(selection_path)
    picks = selection["picks"]
    if not picks:
        raise UserError(f"{selection_path}: the selection picked no frames; nothing to export")
    s3 = session.client("s3")
    # SigV4 explicitly: its URLs carry X-Amz-Expires (the 7-day limit is SigV4's); SigV2 is deprecated for S3.
    presigner = sessions.make_client("s3", session.region, signature_version="s3v4") if urls else None
    inference_bucket = _frames_bucket(session, None)
    bucket = frames_bucket or inference_bucket
    frames, urls_by_name, models = [], {}, Counter()
    without_pre_annotation = []
    with tempfile.TemporaryDirectory(prefix="roadseg-export-") as tmp:
        for pick in picks:
            key = pick["frame_key"]
            found = _get(s3, bucket, key)
            if found is None:
                raise UserError(f"frame s3://{bucket}/{key} of {selection_path} does not exist (deleted, or in "
                                "another bucket: pass --frames-bucket)")
            data, version_id = found
            name = frame_name_for_key(key)
            local = Path(tmp) / f"{name}{PurePosixPath(key).suffix.lower() or '.jpg'}"
            local.write_bytes(data)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    size = image.size
            except Exception as exc:  # noqa: BLE001 - any decoding failure is one line
                raise UserError(f"frame s3://{bucket}/{key} is not an image Pillow decodes ({exc})") from None
            mask, model = _pre_annotation(s3, inference_bucket, key, pick.get("mask_uri"), size, scheme.ignore_index)
            if mask is None:
                without_pre_annotation.append(key)
                mask = np.full((size[1], size[0]), scheme.ignore_index, dtype=np.uint8)
            if model:
                models[model] += 1
            frames.append(FrameToLabel(name, local, mask, source_key=key, source_version_id=version_id))
            if urls:
                params = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
                urls_by_name[name] = presigner.generate_presigned_url("get_object", Params=params,
                                                                      ExpiresIn=expires_in)
        model_version = models.most_common(1)[0][0] if models else None
        expires_at, expiry_note = None, None
        if urls:  # after signing: refreshable credentials may have been refreshed for it
            expires_at, expiry_note = presigned_urls_expire_at(dt.datetime.now(dt.UTC), expires_in,
                                                               *credentials_expiry(_signing_credentials()))
        output.mkdir(parents=True, exist_ok=True)
        try:
            written = _write_export(tool, frames, scheme, output, model_version=model_version,
                                    urls=urls_by_name if urls else None,
                                    urls_expire_at=_utc(expires_at) if expires_at else None)
        except LabelExportError as exc:
            raise UserError(str(exc)) from None
    manifest_path = output / "roadseg-export.json"
    if len(models) > 1:
        out.warn(f"the pre-annotations come from {len(models)} model versions ({', '.join(sorted(models))}); the "
                 f"export records the most common, {model_version}")
    if without_pre_annotation:
        out.warn(f"{len(without_pre_annotation)} frame(s) have no model mask any more (results expire): they are "
                 f"exported unlabelled, e.g. {without_pre_annotation[0]}")
    out.line(f"exported {len(frames)} frames for {tool} into {output}: {', '.join(str(p.name) for p in written)}",
             f"export manifest: {manifest_path} (keep it: `roadseg label import` needs it)")
    if expires_at is not None:
        out.line(f"frame URLs expire at {_utc(expires_at)} (recorded in {manifest_path.name})")
    if expiry_note:
        out.warn(expiry_note)
    out.document({"tool": tool, "frames": len(frames), "output": str(output), "files": [str(p) for p in written],
                  "export_manifest": str(manifest_path), "model_version": model_version,
                  "without_pre_annotation": without_pre_annotation,
                  "urls_expire_in_s": expires_in if urls else None,
                  "urls_expire_at": _utc(expires_at) if expires_at else None})


def _write_export(tool: str, frames: list, scheme, output: Path, *, model_version: str | None,
                  urls: dict[str, str] | None, urls_expire_at: str | None) -> list[Path]:
    from labelling.archive import MANIFEST_FILE

    if tool == "cvat":
        from labelling.cvat import write_cvat

        manifest = write_cvat(frames, scheme, output / CVAT_ANNOTATIONS_ZIP, model_version=model_version,
                              images_destination=output / CVAT_IMAGES_ZIP)
        (output / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        return [output / CVAT_ANNOTATIONS_ZIP, output / CVAT_IMAGES_ZIP, output / MANIFEST_FILE]
    from labelling.label_studio import write_label_studio

    folder = output / LABEL_STUDIO_DIR
    if urls is not None:
        write_label_studio(frames, scheme, folder, image_urls=urls, urls_expire_at=urls_expire_at,
                           model_version=model_version)
        written = sorted(p for p in folder.iterdir() if p.is_file())
    else:
        write_label_studio(frames, scheme, folder, model_version=model_version)
        with zipfile.ZipFile(output / LABEL_STUDIO_ZIP, "w", zipfile.ZIP_STORED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
        written = [*sorted(p for p in folder.iterdir() if p.is_file()), output / LABEL_STUDIO_ZIP]
    shutil.copyfile(folder / MANIFEST_FILE, output / MANIFEST_FILE)
    return [*written, output / MANIFEST_FILE]


# ------------------------------------------------------------------------------------------------------- import


def label_import(session: Session, out: Printer, *, archive: Path, tool: str, export_manifest: Path | None,
                 parent: str, replace: bool, reshuffle_validation: bool, seed: int, validation_fraction: float,
                 allow_missing: bool, task: str | None, scheme, frames_bucket: str | None,
                 bucket: str | None, accept_unchanged: bool = False) -> None:
    from labelling.archive import LabelImportError, load_export_manifest, unchanged_labels
    from labelling.versions import (
        WRITE_WORKERS,
        FrameProvenance,
        NewFrame,
        VersionConflict,
        VersionError,
        check_version_id,
        create_version,
        version_prefix,
    )
    from segcore.keys import parse_frame_key

    try:
        expected = load_export_manifest(export_manifest) if export_manifest else None
        if expected is not None:
            problem = expected.scheme_problem(scheme, str(export_manifest))
            if problem:
                raise UserError(problem)
        if tool == "cvat":
            from labelling.cvat import read_cvat

            result = read_cvat(archive, scheme, expected, allow_missing=allow_missing, task=task)
        else:
            from labelling.label_studio import read_label_studio

            result = read_label_studio(archive, scheme, expected, allow_missing=allow_missing)
    except LabelImportError as exc:
        raise UserError(str(exc)) from None
    # CVAT turns uploaded pre-annotations into annotations: a frame nobody opened would import as labelled (and be
    # left out of every later selection). Masks equal to their pre-annotation are refused unless accepted.
    unchanged = unchanged_labels(result, accept_unchanged)
    refusal = unchanged.refusal_line()
    if refusal and not unchanged.imported:
        raise UserError(f"nothing to import: {refusal}")
    if parent not in ("latest", "none"):
        try:
            check_version_id(parent)
        except VersionError as exc:
            raise UserError(f"--parent: {exc}") from None
    no_source = [label.frame_name for label in unchanged.imported if not label.source_key]
    if no_source:
        raise UserError(f"{len(no_source)} imported frame(s) have no source frame key (e.g. {no_source[0]}): pass "
                        "--export-manifest with the roadseg-export.json of the export they came from")
    s3 = session.client("s3")
    source_bucket = _frames_bucket(session, frames_bucket)
    pattern = re.compile(session.config.preprocessing.key_pattern)
    frames = []
    with ThreadPoolExecutor(max_workers=WRITE_WORKERS) as pool:  # boto3 clients are thread-safe
        downloads = list(pool.map(lambda lb: _get(s3, source_bucket, lb.source_key, lb.source_version_id),
                                  unchanged.imported))
    for label, found in zip(unchanged.imported, downloads, strict=True):
        if found is None:
            version = f" version {label.source_version_id}" if label.source_version_id else ""
            raise UserError(f"frame {label.frame_name}: s3://{source_bucket}/{label.source_key}{version} does not "
                            "exist any more (or lies in another bucket: pass --frames-bucket)")
        data, version_id = found
        key = parse_frame_key(label.source_key, pattern)
        drive = f"{key.vehicle}/{key.drive}" if key.vehicle and key.drive else None
        suffix = PurePosixPath(label.source_key).suffix.lower()
        frames.append(NewFrame(label.frame_name, data, label.mask, FrameProvenance(
            tool=result.tool, source_key=label.source_key, source_version_id=label.source_version_id or version_id,
            drive=drive, camera=key.camera, task=label.task or task, model_package_version=label.model_version),
            image_ext=suffix if suffix in (".jpg", ".jpeg", ".png") else ".jpg"))
    datasets = _datasets_bucket(session, bucket)
    try:
        manifest = create_version(s3, datasets, frames, scheme, parent=None if parent == "none" else parent,
                                  replace=replace, reshuffle_validation=reshuffle_validation, seed=seed,
                                  validation_fraction=validation_fraction)
    except VersionConflict as exc:
        raise JobFailed(f"{exc}; run the import again (it takes the next free version id)") from None
    except VersionError as exc:
        raise UserError(str(exc)) from None
    version, counts = manifest["version"], manifest["counts"]
    uri = f"s3://{datasets}/{version_prefix(version)}"
    out.line(f"dataset version {version} (parent {manifest['parent'] or 'none'}): {counts['frames']} frames, "
             f"{counts['train']} train / {counts['validation']} validation; {counts['added']} added, "
             f"{counts['replaced']} replaced, {counts['kept']} kept from the parent",
             f"{uri}  (validation drives {'drawn afresh' if manifest['split']['reshuffled'] else 'kept'}: "
             f"{', '.join(manifest['split']['validation_groups'])})",
             f"train on it: roadseg pipeline start --dataset-version {version}")
    labels = {**unchanged.counts(), "missing": len(result.missing)}
    if result.manifest is not None:
        labels["exported"] = len(result.manifest.frames)  # = imported + refused + missing
    out.line(f"labels: {labels['imported']} imported ({labels['changed']} changed by annotators, "
             f"{labels['unchanged_accepted']} unchanged and accepted"
             + (f", {labels['unchecked']} not checked: the export recorded no pre-annotation digest" if
                labels["unchecked"] else "")
             + f"), {labels['refused']['unchanged']} refused as unchanged, {labels['missing']} missing"
             + (f", of {labels['exported']} exported" if "exported" in labels else ""))
    if refusal:
        out.warn(refusal)
    if result.missing:
        out.warn(f"{len(result.missing)} exported frame(s) were not labelled and are left out, e.g. "
                 f"{result.missing[0]}")
    out.document({"version": version, "parent": manifest["parent"], "uri": uri, "counts": counts,
                  "labels": labels, "refused_unchanged": [label.frame_name for label in unchanged.refused],
                  "split": manifest["split"], "replaced": manifest["replaced"], "missing": list(result.missing),
                  "tool": result.tool})
