"""What the three preprocessor functions (ingest, postprocess, real-time front) share."""

from __future__ import annotations

import dataclasses

from contracts.lambda_env import SERVICE_NAMES, PreprocessorEnvironment
from envconfig.config import EnvironmentConfig, FunctionConfig
from stacks.functions.roadseg_function import RoadsegFunctionProps
from stacks.operations_key import OperationsKey

NO_VPC = ("The function talks only to regional AWS APIs (S3, SageMaker runtime) through their public endpoints "
          "with IAM auth; a VPC would need NAT or interface endpoints without narrowing access.")


def preprocessor_function_props(config: EnvironmentConfig, environment: PreprocessorEnvironment,
                                key: OperationsKey, *, module: str, function: FunctionConfig,
                                description: str) -> RoadsegFunctionProps:
    """The function of handler module ``module``, with the preprocessor environment under its own service name."""
    return RoadsegFunctionProps(
        handler=f"{module}.handler", description=description, function=function,
        environment=dataclasses.replace(environment, service_name=SERVICE_NAMES[module]),
        key=key, log_retention_days=config.retention.log_group_days, retain=config.retain, no_vpc_reason=NO_VPC,
        tracing=config.preprocessing.tracing)
