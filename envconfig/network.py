"""The ``network:`` section of an environment file: opt-in isolated-network mode (see ``stacks/network.py``).

Absent (the default): no VPC, every function and job runs as before. Present: either ``create`` a VPC with private
isolated subnets (no NAT, no internet gateway) or ``import`` an existing one by its IDs. Nothing is looked up at
synth: IDs come from the file, or, written ``ssm:/parameter/name``, from an SSM parameter that CloudFormation
resolves at deploy time (an ``AWS::SSM::Parameter::Value<AWS::EC2::...::Id>`` template parameter,
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html#aws-ssm-parameter-types).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SSM_REFERENCE = re.compile(r"^ssm:(/[A-Za-z0-9_.\-/]+)$")
AVAILABILITY_ZONE = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$"


def _id_or_ssm(kind: str, prefix: str):
    pattern = re.compile(rf"^{prefix}-[0-9a-f]{{8}}([0-9a-f]{{9}})?$")

    def check(value: str) -> str:
        if not (pattern.match(value) or SSM_REFERENCE.match(value)):
            raise ValueError(f"'{value}' is neither a {kind} ID ({prefix}-0123456789abcdef0) nor an SSM parameter "
                             f"reference (ssm:/parameter/name)")
        return value
    return check


def ssm_parameter_name(value: str) -> str | None:
    """``/name`` of an ``ssm:/name`` reference, None for a literal ID."""
    match = SSM_REFERENCE.match(value)
    return match.group(1) if match else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


VpcId = Annotated[str, Field(min_length=1)]
ResourceId = Annotated[str, Field(min_length=1)]


class CreateVpcConfig(_Strict):
    """A new VPC: one private isolated subnet per availability zone, no NAT, no internet gateway."""

    cidr: str = "10.42.0.0/16"
    # Default: the region's first two zones, resolved by CloudFormation (Fn::GetAZs), so synth needs no
    # availability-zone lookup; listed here, the zones are pinned instead (cfn-lint then warns W3010).
    availability_zones: Annotated[list[Annotated[str, Field(pattern=AVAILABILITY_ZONE)]],
                                  Field(min_length=2, max_length=3)] | None = None

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 CIDR block: {exc}") from None
        if not 16 <= network.prefixlen <= 24:
            raise ValueError(f"use a /16../24 block (VPCs allow /16../28, and each zone gets a quarter), got {value}")
        return value


class ImportVpcConfig(_Strict):
    """An existing VPC. Subnets are private (no route to the internet is needed), one per availability zone
    (``availability_zones`` in the same order); ``route_table_ids`` are theirs (the S3 gateway endpoint's routes);
    ``security_group_ids`` are attached to every function, job and model (1..5, SageMaker's VpcConfig limit)."""

    vpc_id: VpcId
    availability_zones: Annotated[list[Annotated[str, Field(pattern=AVAILABILITY_ZONE)]],
                                  Field(min_length=2, max_length=16)]
    private_subnet_ids: Annotated[list[ResourceId], Field(min_length=2, max_length=16)]
    route_table_ids: Annotated[list[ResourceId], Field(min_length=2, max_length=16)]
    security_group_ids: Annotated[list[ResourceId], Field(min_length=1, max_length=5)]

    @field_validator("vpc_id")
    @classmethod
    def _vpc(cls, value: str) -> str:
        return _id_or_ssm("VPC", "vpc")(value)

    @field_validator("private_subnet_ids")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        return [_id_or_ssm("subnet", "subnet")(v) for v in value]

    @field_validator("route_table_ids")
    @classmethod
    def _route_tables(cls, value: list[str]) -> list[str]:
        return [_id_or_ssm("route table", "rtb")(v) for v in value]

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return [_id_or_ssm("security group", "sg")(v) for v in value]

    @model_validator(mode="after")
    def _one_per_subnet(self) -> ImportVpcConfig:
        n = len(self.private_subnet_ids)
        if len(self.availability_zones) != n or len(self.route_table_ids) != n:
            raise ValueError(f"availability_zones ({len(self.availability_zones)}) and route_table_ids "
                             f"({len(self.route_table_ids)}) need one entry per private subnet ({n}), in its order")
        return self


class IsolatedNetworkConfig(_Strict):
    """``network:``: run every function, job and model in private subnets that reach AWS only through VPC
    endpoints. Exactly one of ``create`` and ``import``."""

    mode: Literal["create", "import"]
    create: CreateVpcConfig | None = None
    import_: ImportVpcConfig | None = Field(default=None, alias="import")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_mode(self) -> IsolatedNetworkConfig:
        if self.mode == "import" and (self.import_ is None or self.create is not None):
            raise ValueError("mode 'import' needs an 'import' section (vpc_id, availability_zones, private_subnet_ids, "
                             "route_table_ids, security_group_ids) and no 'create' section")
        if self.mode == "create" and self.import_ is not None:
            raise ValueError("mode 'create' takes an optional 'create' section (cidr, availability_zones), "
                             "not 'import'")
        return self

    def created(self) -> CreateVpcConfig:
        return self.create or CreateVpcConfig()
