"""Read-only deploy preflight, ``roadseg env preflight``: does the account fit what `cdk deploy` of this
environment's cloud assembly needs?

``make deploy`` runs it between ``cdk synth`` (which writes the cloud assembly to cdk.out) and
``cdk deploy --app cdk.out``, the delivery pipeline before each stage. It uses the deployer's AWS credentials
(boto3's default chain), makes only read calls (``facts.READ_ACTIONS``), and prints one table
``check | needed | have | result``, then one line with the exact fix for every failed check (``--json``: a list of
``{check, needed, have, passed, fix}`` instead).

Checks: account/region (the config's pins), the CDK bootstrap version, Lambda concurrency (reservations in the
templates plus the 100 AWS keeps unreserved), SageMaker instance quotas (endpoints x2 for blue/green, training,
transform, processing), the algorithm image in the region, instance-type changes on autoscaled endpoints, Lake
Formation's defaults for new Data Catalog resources (the drive timeline's Glue database and table), and in
isolated-network import mode the given VPC: DNS support and hostnames, the security groups' rules, and no gateway or
private-DNS interface endpoint already serving a service the network stack adds (``check_network_*``).

Exit codes: 0 every check passed, 1 a check failed, 2 bad input (unknown environment, invalid configuration, no
cloud assembly), 3 AWS not usable (no credentials, access denied, no region, another AWS error).

Structure: the cloud assembly is read (``assembly``), facts come from AWS (``facts``: ``fetch_*``, every client
from ``roadseg.session.make_client``), each check is a pure function of those facts (``checks``: ``check_*``,
combined by ``evaluate``), and the results are rendered (``report``). :func:`command` runs them for the click
command.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from envconfig.config import ConfigError, EnvironmentConfig, load_config
from roadseg.preflight.assembly import Assembly, Names, deployment_names, read_assembly, require_environment
from roadseg.preflight.checks import CheckResult, check_account, evaluate
from roadseg.preflight.errors import AwsError, UsageError
from roadseg.preflight.facts import Clients, describe_client_error, fetch_account, fetch_facts
from roadseg.preflight.report import render_json, render_table
from roadseg.session import forget_session

# The prefix of its one-line errors, as make deploy's and the pipeline's logs have always shown them.
PROG = "roadseg-preflight"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AWS = 0, 1, 2, 3
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")


def resolve_region(explicit: str | None, config: EnvironmentConfig) -> str:
    if explicit is not None and not _REGION.match(explicit):
        raise UsageError(f"--region: '{explicit}' is not an AWS region name (e.g. eu-west-1)")
    from roadseg.session import AwsAccessError, config_file
    from roadseg.session import resolve_region as region_rule  # the one rule of every roadseg command

    try:
        return region_rule(explicit, config.region, config_path=config_file(config.name))
    except AwsAccessError as exc:
        raise AwsError(str(exc)) from None


def run(config: EnvironmentConfig, assembly: Assembly, names: Names, region: str,
        scaling_on: bool) -> list[CheckResult]:
    clients = Clients(region)
    account = fetch_account(clients)
    first = check_account(config, account, region)
    if not first.passed:
        return [first]
    return evaluate(config, assembly, names, fetch_facts(clients, account, assembly, names, config), scaling_on)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message holds
    return code


def command(env: str, *, assembly: Path, scaling_on: bool = True, region: str | None = None,
            as_json: bool = False) -> int:
    """``roadseg env preflight``: print the table (or the JSON list) and return the exit code; errors are one line
    on stderr."""
    forget_session()
    try:
        config = load_config(env)
        cloud_assembly = read_assembly(assembly, env)
        names = deployment_names(config)
        require_environment(cloud_assembly, names, env, assembly)
        results = run(config, cloud_assembly, names, resolve_region(region, config), scaling_on=scaling_on)
    except (ConfigError, UsageError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except AwsError as exc:
        return _fail(str(exc), EXIT_AWS)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        return _fail(f"no usable AWS credentials ({exc}): set AWS_PROFILE or log in (e.g. aws sso login)", EXIT_AWS)
    except ClientError as exc:
        return _fail(describe_client_error(exc, "aws"), EXIT_AWS)
    except BotoCoreError as exc:
        return _fail(f"AWS: {exc}", EXIT_AWS)
    except Exception as exc:  # botocore could not parse the answer (a proxy's HTML page): not retried, not BotoCore
        from roadseg.session import UNPARSEABLE_RESPONSE, unparseable_response

        if not unparseable_response(exc):
            raise
        return _fail(UNPARSEABLE_RESPONSE, EXIT_AWS)
    print(render_json(results) if as_json else render_table(results))
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED
