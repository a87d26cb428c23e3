"""Stage 11, the data engine (issue 22 section 6): the rehearsal drive through the labelling loop with the roadseg
commands a team runs (docs/data-engine.md), against the local moto server:

1. the team's labels so far: dataset version v0001, the rehearsal's loose frames (stage 4) with their ground truth,
   written with ``labelling.versions`` (a first version needs frames of more than one drive - splits are by drive -
   and the rehearsal has one drive; each loose frame, having no drive, is a group of its own);
2. ``roadseg label select --drive veh-100/rehearsal-drive``: frames of the drive within a budget;
3. ``roadseg label export --format cvat``: those frames with the STAND-IN's masks as pre-annotations;
4. the "annotators": the scene generator's ground truth of each exported frame, written as CVAT's "Segmentation mask
   1.1" by datumaro (a real client of the format, not roadseg's writer) with CVAT's label map, zipped as CVAT does;
5. ``roadseg label import``: checked against the scheme; v0002 = v0001 + the drive's frames, validation kept;
6. ``roadseg data verify v0002`` and ``roadseg pipeline start --dataset-version v0002`` on the training pipeline.

Names resolve as in an account: a stand-in of the data stack (CloudFormation outputs only) names the buckets. The
stage checks its own result (every imported mask equals the ground truth, the version's validation drives are
v0001's, the execution's parameters point at v0002, every exported frame is imported, refused as unchanged or
missing, and none is refused) and raises RehearsalError otherwise. Outputs: labelling/ (summary.json, the selection,
the CVAT export, the "annotators'" zip).
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from demo.awsenv import AwsClients
from demo.log import RehearsalLog, run_roadseg
from demo.options import Names, RehearsalError
from demo.standin import SceneFrame, StandInSegmenter
from labelling.archive import frame_name_for_key
from labelling.versions import FrameProvenance, NewFrame, create_version, read_manifest, version_prefix
from roadseg.session import stack_names
from segcore.classes import IGNORE_INDEX, ClassScheme

DRIVE = "veh-100/rehearsal-drive"  # demo/drive.py's DRIVE_ID
BUDGET_FRAMES = 4
TOOL_OF_THE_SEED = "rehearsal-ground-truth"


def _data_stack(aws: AwsClients, prefix: str, names: Names) -> None:
    """The data stack's outputs, which the commands read names from (DescribeStacks), as deployed."""
    outputs = {"DatasetsBucketName": names.datasets_bucket, "ArtifactsBucketName": names.artifacts_bucket,
               "InferenceBucketName": names.inference_bucket}
    template = {"Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    aws("cloudformation").create_stack(StackName=stack_names(prefix)["Data"], TemplateBody=json.dumps(template))


def _seed_version(aws: AwsClients, names: Names, scheme: ClassScheme, segmenter: StandInSegmenter,
                  loose: list[tuple[SceneFrame, bytes]], versions: dict[str, str | None]) -> dict[str, Any]:
    frames = []
    for frame, data in loose:
        suffix = PurePosixPath(frame.key).suffix.lower()
        frames.append(NewFrame(frame_name_for_key(frame.key), data, segmenter.ground_truth(frame.key),
                               FrameProvenance(tool=TOOL_OF_THE_SEED, source_key=frame.key,
                                               source_version_id=versions.get(frame.key),
                                               camera=PurePosixPath(frame.key).parent.name),
                               image_ext=suffix))
    return create_version(aws("s3"), names.datasets_bucket, frames, scheme, parent=None, seed=7)


def _annotate_with_datumaro(export_manifest: dict[str, Any], scheme: ClassScheme, segmenter: StandInSegmenter,
                            archive: Path) -> dict[str, np.ndarray]:
    """What CVAT's "Export task dataset > Segmentation mask 1.1" gives: datumaro's voc_segmentation with the
    project's label map (background 0,0,0 first, cvat/apps/dataset_manager/formats/mask.py), here holding the
    generator's ground truth of each exported frame."""
    from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image as DmImage

    names = [c.name for c in scheme.classes]
    truths, items = {}, []
    for frame in export_manifest["frames"]:
        truth = segmenter.ground_truth(frame["source_key"])
        truths[frame["name"]] = truth
        annotations = [Mask(image=truth == v, label=int(v)) for v in np.unique(truth) if v != IGNORE_INDEX]
        items.append(DatasetItem(id=frame["name"], subset="default", annotations=annotations))
    dataset = Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(names)},
                                    media_type=DmImage)
    label_map = {"background": [(0, 0, 0), [], []], **{c.name: [tuple(c.color), [], []] for c in scheme.classes}}
    with tempfile.TemporaryDirectory(prefix="roadseg-cvat-task-") as tmp:
        dataset.export(tmp, "voc_segmentation", save_media=False, apply_colormap=True, label_map=label_map)
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(tmp).as_posix())
    return truths


def rehearse_labelling(aws: AwsClients, *, prefix: str, names: Names, scheme: ClassScheme,
                       segmenter: StandInSegmenter, loose: list[tuple[SceneFrame, bytes]],
                       loose_versions: dict[str, str | None], out: Path, log: RehearsalLog) -> dict[str, Any]:
    folder = out / "labelling"
    folder.mkdir(parents=True, exist_ok=True)
    _data_stack(aws, prefix, names)
    seed = _seed_version(aws, names, scheme, segmenter, loose, loose_versions)
    log(f"v0001 (the team's labels so far): {seed['counts']['frames']} loose frames with their ground truth, "
        f"validation {seed['split']['validation_groups']}")
    region = ["--region", names.region]

    selected = json.loads(run_roadseg([*region, "label", "select", "--drive", DRIVE, "--budget-frames",
                                       str(BUDGET_FRAMES), "--min-gap-s", "0.5", "--output",
                                       str(folder / "selection"), "--json"], log))
    picked = selected["accounting"]["picked"]
    if picked < 1:
        raise RehearsalError(f"labelling: roadseg label select picked no frame of {DRIVE}: {selected['accounting']}")
    exported = json.loads(run_roadseg([*region, "label", "export", selected["selection"], "--format", "cvat",
                                       "--output", str(folder / "to-cvat"), "--json"], log))
    export_manifest = json.loads(Path(exported["export_manifest"]).read_text())
    archive = folder / "cvat-task-export.zip"
    truths = _annotate_with_datumaro(export_manifest, scheme, segmenter, archive)
    imported = json.loads(run_roadseg([*region, "label", "import", str(archive), "--format", "cvat",
                                       "--export-manifest", exported["export_manifest"], "--task", "rehearsal-1",
                                       "--json"], log))
    version = imported["version"]
    verified = json.loads(run_roadseg([*region, "data", "verify", version, "--json"], log))
    started = json.loads(run_roadseg([*region, "pipeline", "start", "--pipeline", names.training_pipeline,
                                      "--dataset-version", version, "--json"], log))
    listed = aws("sagemaker").list_pipeline_parameters_for_execution(
        PipelineExecutionArn=started["execution_arn"])["PipelineParameters"]
    parameters = {p["Name"]: p["Value"] for p in listed}

    problems = _check(aws, names, version, seed, truths, parameters, verified)
    labels = imported["labels"]
    # Every exported frame is accounted for: imported, refused as unchanged (the stand-in's mask came back as it
    # was; the ground truth differs from it by the stand-in's noise, so none should be), or missing.
    if labels["imported"] + labels["refused"]["unchanged"] + labels["missing"] != exported["frames"]:
        problems.append(f"the import's labels {labels} do not add up to the {exported['frames']} exported frames")
    if imported["refused_unchanged"]:
        problems.append(f"{len(imported['refused_unchanged'])} frame(s) refused as unchanged although the ground "
                        f"truth was written for them: {imported['refused_unchanged'][:3]}")
    summary = {"drive": DRIVE, "seed_version": seed["version"], "picked": picked,
               "accounting": selected["accounting"], "exported": exported["frames"],
               "model_version": exported["model_version"], "version": version, "parent": imported["parent"],
               "counts": imported["counts"], "labels": labels, "refused_unchanged": imported["refused_unchanged"],
               "validation_groups": imported["split"]["validation_groups"],
               "verified_files": verified["checked"], "execution_arn": started["execution_arn"],
               "parameters": parameters, "problems": problems}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if problems:
        raise RehearsalError("labelling: " + "; ".join(problems))
    log(f"{DRIVE}: {picked} frames selected, exported to CVAT pre-annotated, annotated (ground truth, datumaro), "
        f"imported as {version} (parent {imported['parent']}: {imported['counts']['frames']} frames, "
        f"{imported['counts']['train']} train / {imported['counts']['validation']} validation); "
        f"{verified['checked']} files verified; training started on it "
        f"({parameters.get('InputDataS3Uri')}, layout {parameters.get('DatasetLayout')})")
    return summary


def _check(aws: AwsClients, names: Names, version: str, seed: dict[str, Any], truths: dict[str, np.ndarray],
           parameters: dict[str, str], verified: dict[str, Any]) -> list[str]:
    problems = []
    manifest = read_manifest(aws("s3"), names.datasets_bucket, version)
    if manifest["parent"] != seed["version"]:
        problems.append(f"{version}'s parent is {manifest['parent']}, not {seed['version']}")
    if manifest["split"]["validation_groups"] != seed["split"]["validation_groups"]:
        problems.append(f"{version} changed the validation groups of {seed['version']}")
    frames = {f["name"]: f for f in manifest["frames"]}
    for name, truth in truths.items():
        entry = frames.get(name)
        if entry is None:
            problems.append(f"{name} is not in {version}")
            continue
        body = aws("s3").get_object(Bucket=names.datasets_bucket,
                                    Key=f"{version_prefix(version)}{entry['mask']}")["Body"].read()
        if not np.array_equal(np.asarray(Image.open(io.BytesIO(body))), truth):
            problems.append(f"{name}: the imported mask differs from the ground truth written to CVAT's format")
        if entry["drive"] != DRIVE or entry["split"] != "train":
            problems.append(f"{name}: drive {entry['drive']}, split {entry['split']} (expected {DRIVE}, train)")
    if not verified["ok"]:
        problems.append(f"{version} failed its SHA-256 check: {verified['problems'][:3]}")
    expected = f"s3://{names.datasets_bucket}/{version_prefix(version)}"
    if parameters.get("InputDataS3Uri") != expected or parameters.get("DatasetLayout") != "generic":
        problems.append(f"pipeline start passed {parameters}, not InputDataS3Uri={expected}, DatasetLayout=generic")
    return problems
