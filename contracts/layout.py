"""Object-key layout of the project's buckets: the one place prefixes are named.

Stacks (lifecycle rules, notifications, IAM scoping), Lambdas (defaults of their environment, see
``contracts.lambda_env``) and the command-line tools all read these, so a prefix is never spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetsLayout:
    incoming: str = "incoming/"        # raw camera frames dropped by vehicles / upload tools
    raw: str = "raw/"                  # labelled source datasets (Cityscapes tree, images/+masks/)
    prepared: str = "prepared/"        # the algorithm's channels written by the Prepare step
    # Immutable dataset versions (labelling.versions): versions/<id>/{images/,masks/,split.json,manifest.json}, the
    # generic layout the Prepare step reads; written with conditional writes (If-None-Match), never overwritten.
    versions: str = "versions/"


@dataclass(frozen=True)
class ArtifactsLayout:
    pipelines: str = "pipelines/"      # training output, predictions, evaluation reports
    checkpoints: str = "checkpoints/"  # spot-training checkpoints


@dataclass(frozen=True)
class InferenceLayout:
    incoming: str = "incoming/"            # frames to segment through the async path
    async_input: str = "async-input/"      # preprocessed JPEGs the async endpoint reads
    async_output: str = "async-output/"    # masks written by the async endpoint
    async_failures: str = "async-failures/"
    results: str = "results/"              # result JSON (and overlays) per frame
    failures: str = "failures/"            # failure records per frame
    quarantine: str = "quarantine/"        # rejected frames + reason JSON
    data_capture: str = "data-capture/"    # real-time endpoint request/response samples
    drives: str = "drives/"                # drive logs (ROS 1/2 bags, MCAP): drives/<vehicle>/<drive>.<ext>
    drive_outputs: str = "drive-outputs/"  # per drive: manifest, timeline, scenes, review videos, summary
    # Model scores of a candidate pool (labelling.scoring_job): label-scores/<job>/input/ (the pool, the frames' and
    # the bundle's manifest files the CLI writes) and label-scores/<job>/output/ (model-scores.parquet, the summary).
    label_scores: str = "label-scores/"

    @property
    def expiring_outputs(self) -> tuple[str, ...]:
        """Prefixes of derived data that expire after ``retention.inference_output_days``."""
        return (self.async_input, self.async_output, self.async_failures, self.results, self.failures,
                self.data_capture)


DATASETS = DatasetsLayout()
ARTIFACTS = ArtifactsLayout()
INFERENCE = InferenceLayout()

# What `roadseg pipeline start` points the pipelines' InputDataS3Uri at (--dataset: raw/<name>/, --dataset-version:
# versions/<id>/): the pipeline role must read both (stacks/checks rule pipeline-role-reads-dataset-inputs).
PIPELINE_INPUT_PREFIXES = (DATASETS.raw, DATASETS.versions)


# SageMaker Processing jobs run ``python3 <entry script> <module> [args]`` (jobs/processing_entry.py). The entry
# script is one S3 object downloaded into PROCESSING_CODE_DIR under its own key name, which the stack does not control
# (a CDK file asset is stored as <hash>.py): the shell runs whichever .py file arrived there. The pipelines and the
# drive jobs' requests (roadseg_lambda.drive_jobs) use this one entrypoint.
PROCESSING_CODE_DIR = "/opt/ml/processing/input/code"
PROCESSING_ENTRYPOINT = ("/bin/sh", "-c", f'exec python3 {PROCESSING_CODE_DIR}/*.py "$@"', "processing-entry")
