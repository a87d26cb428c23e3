"""What the preflight reads from the cloud assembly ``make synth`` wrote (cdk.out): the stacks and their templates,
the bootstrap versions they require, the Lambda reservations, the regions of the algorithm image, the VPC endpoints
the network stack adds; and the names the app gives this environment's resources, which the assembly must hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contracts import cloud_assembly
from contracts.naming import CDK_BOOTSTRAP_QUALIFIER
from envconfig.config import EnvironmentConfig
from roadseg.preflight.errors import UsageError

DEFAULT_QUALIFIER = CDK_BOOTSTRAP_QUALIFIER
DEFAULT_BOOTSTRAP_PARAMETER = f"/cdk-bootstrap/{DEFAULT_QUALIFIER}/version"


@dataclass(frozen=True)
class StackTemplate:
    name: str  # the CloudFormation stack name
    template: dict


@dataclass(frozen=True)
class Assembly:
    stacks: tuple[StackTemplate, ...]
    # SSM parameter holding the bootstrap version -> the highest version any artifact requires.
    bootstrap: dict[str, int] = field(default_factory=dict)

    @property
    def stack_names(self) -> list[str]:
        return [stack.name for stack in self.stacks]


def parse_assembly(manifest: dict, load_template: Callable[[str], dict]) -> Assembly:
    """The stacks (with their templates, by artifact id) and bootstrap requirements of a cloud assembly's
    manifest.json."""
    artifacts = sorted(cloud_assembly.stack_artifacts(manifest), key=lambda stack: stack.artifact_id)
    stacks = tuple(StackTemplate(stack.name, load_template(stack.template_file)) for stack in artifacts)
    return Assembly(stacks, cloud_assembly.bootstrap_requirements(manifest, DEFAULT_BOOTSTRAP_PARAMETER))


def read_assembly(directory: Path, env: str) -> Assembly:
    synth = f"run `make synth ENV={env}` first"
    if not directory.is_dir():
        raise UsageError(f"no cloud assembly: {directory} does not exist: {synth}")
    try:
        manifest = cloud_assembly.read_manifest(directory)
        return parse_assembly(manifest, lambda name: json.loads((directory / name).read_text()))
    except FileNotFoundError as exc:
        raise UsageError(f"incomplete cloud assembly in {directory} ({Path(exc.filename).name} missing): "
                         f"{synth}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"unreadable cloud assembly in {directory} ({type(exc).__name__}: {exc}): {synth}") from None


def require_environment(assembly: Assembly, names: Names, env: str, directory: Path) -> None:
    """The assembly must hold this environment's stacks (cdk.out may come from a synth of another ENV)."""
    if names.inference_stack not in assembly.stack_names:
        held = ", ".join(assembly.stack_names) or "no stacks"
        raise UsageError(f"{directory} holds {held}, not {names.inference_stack}: run `make synth ENV={env}` first")


def template_reservations(assembly: Assembly) -> dict[str, int]:
    """``<stack>/<logical id>`` -> ReservedConcurrentExecutions of every Lambda function that sets it."""
    found = {}
    for stack in assembly.stacks:
        for logical_id, resource in (stack.template.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            value = (resource.get("Properties") or {}).get("ReservedConcurrentExecutions")
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                found[f"{stack.name}/{logical_id}"] = int(value)
    return found


def image_regions(assembly: Assembly) -> set[str] | None:
    """Regions in every template's ``Mappings.Images`` (stacks/images.py); None when no template has one."""
    regions = None
    for stack in assembly.stacks:
        images = (stack.template.get("Mappings") or {}).get("Images")
        if images is not None:
            regions = set(images) if regions is None else regions & set(images)
    return regions


@dataclass(frozen=True)
class PlannedEndpoint:
    """A VPC endpoint the network stack's template creates: service suffix (``s3``, ``sagemaker.api``), type."""

    service: str
    gateway: bool


def planned_endpoints(assembly: Assembly) -> tuple[str | None, tuple[PlannedEndpoint, ...]]:
    """(the network stack's name, the VPC endpoints its template creates), from the cloud assembly."""
    for stack in assembly.stacks:
        planned = []
        for resource in (stack.template.get("Resources") or {}).values():
            if resource.get("Type") != "AWS::EC2::VPCEndpoint":
                continue
            props = resource.get("Properties") or {}
            service = props.get("ServiceName")
            parts = service.get("Fn::Join", ["", []])[1] if isinstance(service, dict) else [service]
            # "com.amazonaws.<region>.<suffix>" literal (pinned region), or a join ending in ".<suffix>"
            last = str(parts[-1] if parts else "")
            suffix = last.split(".", 3)[3] if last.startswith("com.amazonaws.") else last.lstrip(".")
            planned.append(PlannedEndpoint(suffix, props.get("VpcEndpointType", "Gateway") == "Gateway"))
        if planned:
            return stack.name, tuple(planned)
    return None, ()


# --------------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class Names:
    """What the app names this environment's resources (stacks/environment.py, stacks/inference_stack.py)."""

    inference_stack: str
    endpoints: tuple[tuple[str, str], ...]  # (config section, endpoint name): realtime_endpoint, async_endpoint
    variant: str


def deployment_names(config: EnvironmentConfig) -> Names:
    from contracts import naming

    realtime, async_ = naming.endpoint_names(config.prefix)
    return Names(naming.inference_stack_name(config.prefix), (("realtime_endpoint", realtime),
                                                              ("async_endpoint", async_)), naming.VARIANT_NAME)
