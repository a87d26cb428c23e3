"""What the rehearsal found, stage by stage, and the checks that decide whether it passed (``Report.problems``).

demo/render.py prints and writes this report; it does not import this module (it takes any object of this shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.drive import DriveReport
from demo.options import Names, Options


@dataclass
class FrameOutcome:
    key: str
    kind: str  # "good" | "broken"
    status: str = "pending"  # processed | quarantined | failed | pending
    identity: str | None = None
    result: dict[str, Any] | None = None
    result_path: Path | None = None
    overlay_path: Path | None = None
    side_by_side_path: Path | None = None
    reason: dict[str, Any] | None = None
    reason_path: Path | None = None
    version_id: str | None = None  # what PutObject answered: the inference bucket is versioned, as deployed


@dataclass
class PipelineRun:
    name: str
    execution_arn: str
    status: str
    parameters: dict[str, str]
    declared_parameters: list[str]
    definition_path: Path


@dataclass
class Report:
    options: Options
    env: str
    prefix: str
    region: str
    endpoint_url: str = ""
    names: Names | None = None
    frames: list[FrameOutcome] = field(default_factory=list)
    pipelines: list[PipelineRun] = field(default_factory=list)
    model_package_arn: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)
    rollout: list[dict[str, Any]] = field(default_factory=list)
    update_stack_calls: list[dict[str, Any]] = field(default_factory=list)
    stack_parameter_before: str | None = None
    stack_parameter_after: str | None = None
    ingest_batches: int = 0
    ingest_item_failures: int = 0
    test_events: int = 0
    async_invocations: int = 0
    async_answers: dict[str, int] = field(default_factory=dict)
    postprocess_outcomes: dict[str, int] = field(default_factory=dict)
    realtime: dict[str, Any] = field(default_factory=dict)
    stand_in_labels: dict[str, Any] = field(default_factory=dict)  # metadata and tags of an async-output mask
    stages: list[tuple[str, float]] = field(default_factory=list)
    server_running_after: bool | None = None
    wall_seconds: float = 0.0
    readme_picture: Path | None = None
    drive: DriveReport | None = None

    def count(self, kind: str | None = None, status: str | None = None) -> int:
        return sum(1 for f in self.frames
                   if (kind is None or f.kind == kind) and (status is None or f.status == status))

    @property
    def version_ids_carried(self) -> tuple[int, int]:
        """(documents that carry their upload's VersionId, finished frames): see source_version_problem."""
        finished = [f for f in self.frames if f.status in ("processed", "quarantined")]
        return sum(1 for f in finished if source_version_problem(f) is None), len(finished)

    @property
    def problems(self) -> list[str]:
        """What did not behave as the deployed system must (empty: the rehearsal passed)."""
        found = []
        for frame in self.frames:
            if frame.kind == "good" and frame.status != "processed":
                found.append(f"good frame {frame.key} ended {frame.status}")
            if frame.kind == "broken" and frame.status != "quarantined":
                found.append(f"broken frame {frame.key} ended {frame.status}")
        actions = [r.get("action") for r in self.rollout]
        if actions != ["updated", "skipped"] or len(self.update_stack_calls) != 1:
            found.append(f"rollout: expected one update then one skip, got {actions} with "
                         f"{len(self.update_stack_calls)} UpdateStack call(s)")
        if self.ingest_item_failures:
            found.append(f"ingest reported {self.ingest_item_failures} batch item failure(s)")
        if self.realtime.get("status_code") != 200:
            found.append(f"real-time front answered {self.realtime.get('status_code')}")
        if any(run.status != "Succeeded" for run in self.pipelines) or len(self.pipelines) != 2:
            found.append("pipeline executions did not both succeed")
        if self.options.drive:
            found += self.drive.problems if self.drive is not None else ["the drive stage did not finish"]
        if self.server_running_after:
            found.append("the moto server thread is still running")
        found += [p for p in map(source_version_problem, self.frames) if p]
        return found


def source_version_problem(frame: FrameOutcome) -> str | None:
    """What is wrong with the version id in a finished frame's document (None: right, or not finished). The document
    carries the VersionId its upload got: a quarantine document as ``source_version_id``, a result in its
    ``inference_id`` (segcore.keys.derive_inference_id), so a re-upload of the same key is a new inference and
    the quarantine copy names the version it copied."""
    from segcore.keys import derive_inference_id

    if frame.status not in ("processed", "quarantined"):
        return None
    if not frame.version_id:
        return f"{frame.key}: the upload got no VersionId (is the inference bucket versioned?)"
    if frame.status == "quarantined":
        carried = (frame.reason or {}).get("source_version_id")
        if carried != frame.version_id:
            return (f"{frame.key}: quarantine document source_version_id {carried!r}, upload VersionId "
                    f"{frame.version_id!r}")
        return None
    result = frame.result or {}
    if result.get("inference_id") != derive_inference_id(result.get("source_bucket") or "", frame.key,
                                                         frame.version_id):
        return f"{frame.key}: result inference_id is not derived from the upload's VersionId {frame.version_id!r}"
    return None
