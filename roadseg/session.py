"""What every operator command shares: the environment's config, the region, AWS clients, and the names of the
deployed resources, read from the stacks' outputs (DescribeStacks) so nobody copies a bucket or endpoint name.

All AWS clients come from :func:`make_client`, so tests can point them at moto or stub them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from contracts import naming

# AWS_REGION is the SDKs' and AWS CLI v2's region variable; AWS_DEFAULT_REGION is the older one boto3 reads.
AWS_REGION_DOC = "https://docs.aws.amazon.com/sdkref/latest/guide/feature-region.html"
BOTO3_CONFIG_DOC = "https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html"


class UserError(Exception):
    """Something the user can fix: bad arguments, missing files, an environment not deployed (exit 2)."""


class AwsAccessError(Exception):
    """AWS cannot be used: no credentials or region, access denied, or AWS refused the request (exit 3)."""


class JobFailed(Exception):
    """The job, execution or inference the command waited for failed (exit 1)."""


@cache
def _boto3_session() -> Any:
    """One boto3 session per process, so credentials (and any MFA or SSO prompt) are resolved once."""
    import boto3

    return boto3.session.Session()


def forget_session() -> None:
    """The next client starts a new session: each run (``cli.main``, the preflight) resolves the credentials
    afresh."""
    _boto3_session.cache_clear()


def make_client(service: str, region: str, *, max_attempts: int | None = None,
                user_agent: str = "roadseg-cli", signature_version: str | None = None) -> Any:
    """The one place AWS clients are created, for the commands and the preflight (tests replace it to use moto or
    botocore's Stubber). Standard retries; ``max_attempts`` goes to botocore's retry config as it is (the retries
    after the first try; botocore's default where None); the user agent tells the commands' calls and the
    preflight's apart."""
    from botocore.config import Config

    retries = {"mode": "standard"} | ({"max_attempts": max_attempts} if max_attempts is not None else {})
    config = Config(user_agent_extra=user_agent, retries=retries,
                    read_timeout=70 if service == "sagemaker-runtime" else 60,
                    **({"signature_version": signature_version} if signature_version else {}))
    return _boto3_session().client(service, region_name=region, config=config)


def config_file(env: str) -> Path:
    """The file ``load_config(env)`` reads: ``config/<env>.yaml``, or ``$ROADSEG_CONFIG_DIR/<env>.yaml``."""
    from envconfig.config import CONFIG_DIR, CONFIG_DIR_VARIABLE

    return Path(os.environ.get(CONFIG_DIR_VARIABLE) or CONFIG_DIR) / f"{env}.yaml"


def resolve_region(explicit: str | None, configured: str | None, *, config_path: Path | None = None) -> str:
    """The one region rule of every roadseg command (the preflight too): --region, the config's ``region``,
    AWS_REGION, AWS_DEFAULT_REGION, the profile's region. boto3 itself reads AWS_DEFAULT_REGION but not AWS_REGION
    (botocore's configprovider), which the AWS CLI v2 and the other SDKs read first (AWS_REGION_DOC)."""
    import boto3

    region = (explicit or configured or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
              or boto3.session.Session().region_name)
    if not region:
        where = f"set region: in {config_path}" if config_path else "pin region in the config"
        raise AwsAccessError(f"no AWS region: pass --region, set AWS_REGION, or {where}")
    return region


UNPARSEABLE_RESPONSE = ("the answer to an AWS request was not an AWS response (often an HTML page of a proxy or "
                        "captive portal): check your proxy/network settings (HTTPS_PROXY, NO_PROXY, a network login) "
                        "and run again")


def unparseable_response(exc: BaseException | None) -> bool:
    """Whether botocore failed to parse what came back (``exc`` or an exception it was raised from): a page that is
    no XML raises ResponseParserError, which is no BotoCoreError and is not retried; a well-formed (X)HTML page fails
    inside botocore's parser with a KeyError or the like."""
    import traceback

    from botocore import parsers

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, parsers.ResponseParserError):
            return True
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
        if frames and Path(frames[-1].filename) == Path(parsers.__file__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# Why an output may be missing although its stack exists.
MISSING_OUTPUT_HINTS = {
    naming.REALTIME_ENDPOINT_NAME: "no model package is approved yet, so the endpoints are not deployed "
                            "(roadseg model approve)",
    naming.ASYNC_ENDPOINT_NAME: "no model package is approved yet, so the endpoints are not deployed "
                         "(roadseg model approve)",
}


def stack_names(prefix: str) -> dict[str, str]:
    """``roadseg-dev`` -> {"Data": "RoadsegDevData", "Training": ..., "Inference": ...}."""
    from contracts.naming import stack_names as names

    return names(prefix)


@dataclass
class Session:
    """One command's view of an environment. Clients and stack outputs are fetched on first use."""

    env: str
    region_override: str | None = None
    quiet: bool = False
    verbose: bool = False
    json: bool = False  # --json given before the command (commands with a JSON document take it from here too)
    env_given: bool = False  # --env or ROADSEG_ENV given (not the default): commands over all environments take it
    _config: Any = None
    _region: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        if self._config is None:
            from envconfig.config import ConfigError, load_config

            try:
                self._config = load_config(self.env)
            except ConfigError as exc:
                raise UserError(str(exc)) from None
        return self._config

    @property
    def config_path(self) -> Path:
        return config_file(self.env)

    @property
    def region(self) -> str:
        if self._region is None:
            self._region = resolve_region(self.region_override, self.config.region, config_path=self.config_path)
        return self._region

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = make_client(service, self.region)
        return self._clients[service]

    def stack_outputs(self, stack: str, *, option: str = "") -> dict[str, str]:
        """The outputs of one of this environment's stacks ("Data", "Training", "Inference"); ``option``: the
        command's option that names the resource instead, offered when the stack is not deployed."""
        if stack not in self._outputs:
            from botocore.exceptions import ClientError

            name = stack_names(self.config.prefix)[stack]
            try:
                described = self.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
            except ClientError as exc:
                if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                    raise UserError(f"stack {name} of environment '{self.env}' is not deployed in {self.region} "
                                    f"(make deploy ENV={self.env})" + (f"; or pass {option}" if option else "")
                                    ) from None
                raise
            self._outputs[stack] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        return self._outputs[stack]

    def name(self, output_key: str, override: str | None = None, *, option: str = "") -> str:
        """An explicit override, else the named output of the environment's stacks."""
        if override:
            return override
        from contracts.naming import OUTPUT_STACKS

        stack = OUTPUT_STACKS[output_key]
        outputs = self.stack_outputs(stack, option=option)
        if output_key not in outputs:
            hint = MISSING_OUTPUT_HINTS.get(output_key, "redeploy the stack")
            stack_name = stack_names(self.config.prefix)[stack]
            raise UserError(f"stack {stack_name} has no output {output_key}: {hint}"
                            + (f"; or pass {option}" if option else ""))
        return outputs[output_key]

    def all_outputs(self) -> dict[str, dict[str, str]]:
        """Every deployed stack's outputs by stack name (stacks not deployed are left out)."""
        found = {}
        for stack, name in stack_names(self.config.prefix).items():
            try:
                found[name] = self.stack_outputs(stack)
            except UserError:
                continue
        return found
