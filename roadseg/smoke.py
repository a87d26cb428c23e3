"""Post-deploy smoke test of one environment (the delivery pipeline's step after each stage, or by hand).

``python -m roadseg.smoke --env staging [--region R] [--no-frame]``

1. every output the operator commands read is present on the deployed stacks (``DescribeStacks``, as
   ``roadseg env outputs`` reads them); the endpoint names only while a model is approved;
2. a stage that was given a model keeps serving it: when the serving SSM parameter
   (``naming.serving_package_parameter``, written by the rollout) names a package, the inference stack must have its
   endpoints (a deploy that dropped them fails here, even though nothing is left to send a frame to);
3. when a model is serving (the inference stack has ``RealtimeEndpointName``): one generated camera frame
   (``segcore/scenes.py``, 1280x640 JPEG) is POSTed to the real-time front's function URL, signed with SigV4
   (service ``lambda``), and the answer must be 200 with a mask and a summary.

Credentials: the caller needs ``cloudformation:DescribeStacks`` on the three stacks, ``ssm:GetParameter`` on the
serving parameter and, for the frame, the policy of the ``RealtimeFrontInvokePolicyArn`` output (the pipeline
assumes the stage's smoke role, which has all of them).
Exit codes: 0 passed, 1 a check failed, 2 bad input, 3 AWS not usable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from contracts import naming

# The outputs each stack has whatever the model state (the endpoint names exist only while a model is approved).
ALWAYS = (naming.DATASETS_BUCKET_NAME, naming.ARTIFACTS_BUCKET_NAME, naming.INFERENCE_BUCKET_NAME, naming.DATA_KEY_ARN,
          naming.TRAINING_PIPELINE_NAME, naming.TUNING_PIPELINE_NAME, naming.MODEL_PACKAGE_GROUP_NAME,
          naming.EXECUTION_ROLE_ARN, naming.ALARM_TOPIC_ARN, naming.SERVING_STATUS, naming.REALTIME_FRONT_URL,
          naming.LABEL_SCORING_JOB)
WHILE_SERVING = (naming.REALTIME_ENDPOINT_NAME, naming.ASYNC_ENDPOINT_NAME)
FRAME_SIZE = (1280, 640)


def missing_outputs(outputs: dict[str, dict[str, str]], prefix: str) -> list[str]:
    """``Stack.Output`` for each expected output that the deployed stacks lack (``outputs``: by stack name)."""
    names = naming.stack_names(prefix)
    inference = outputs.get(names[naming.INFERENCE], {})
    serving = naming.REALTIME_ENDPOINT_NAME in inference
    expected = ALWAYS + (WHILE_SERVING if serving else ())
    return [f"{names[naming.OUTPUT_STACKS[key]]}.{key}" for key in expected
            if key not in outputs.get(names[naming.OUTPUT_STACKS[key]], {})]


def serving_failure(approved: str | None, outputs: dict[str, dict[str, str]], prefix: str) -> str | None:
    """What is wrong when the stage was given a model but does not serve it. ``approved``: the serving SSM
    parameter's value (None: the parameter does not exist)."""
    parameter = naming.serving_package_parameter(prefix)
    if approved is None:
        return (f"the serving SSM parameter {parameter} does not exist: the data stack creates it, and the inference "
                "stack cannot deploy without it")
    inference = outputs.get(naming.stack_names(prefix)[naming.INFERENCE], {})
    if approved != naming.NO_MODEL_PACKAGE and naming.REALTIME_ENDPOINT_NAME not in inference:
        return (f"{parameter} says {approved} is approved for this stage, but the inference stack has no endpoints "
                "(no RealtimeEndpointName output): a deploy dropped them")
    return None


def signed_post(url: str, body: bytes, region: str, credentials: Any) -> urllib.request.Request:
    """A POST of ``body`` to a function URL, signed with SigV4 for the service ``lambda``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "image/jpeg"})
    SigV4Auth(credentials, "lambda", region).add_auth(request)
    return urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")


def check_frame_answer(status: int, body: bytes) -> str | None:
    """None when the front answered a frame with a mask and a summary, else what is wrong."""
    if status != 200:
        return f"the real-time front answered HTTP {status}: {body[:300]!r}"
    try:
        document = json.loads(body)
    except ValueError:
        return f"the real-time front answered 200 without JSON: {body[:300]!r}"
    if not document.get("mask_png_base64") or not isinstance(document.get("summary"), dict):
        return f"the real-time front's answer lacks mask_png_base64 or summary (keys: {sorted(document)})"
    return None


def _post(request: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=90) as response:  # noqa: S310 (https function URL)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def run(env: str, region: str | None, frame: bool, describe: Callable[[str], dict[str, str]] | None = None,
        post: Callable[[urllib.request.Request], tuple[int, bytes]] = _post,
        approved: Callable[[str], str | None] | None = None) -> list[str]:
    """The failed checks (empty: passed). ``describe(stack_name) -> outputs`` (None: the stack is not deployed);
    ``approved(parameter_name) -> value`` (None: no such parameter). Injected together (tests) or both from AWS; with
    only ``describe`` injected the serving check is left out."""
    import boto3

    from envconfig.config import load_config

    config = load_config(env)
    session = boto3.Session(region_name=region or config.region)
    if describe is None:
        cloudformation = session.client("cloudformation")

        def describe(name: str) -> dict[str, str] | None:
            from botocore.exceptions import ClientError

            try:
                stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
            except ClientError as exc:
                if "does not exist" in str(exc):
                    return None
                raise
            return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}

        ssm = session.client("ssm")

        def approved(name: str) -> str | None:
            try:
                return ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except ssm.exceptions.ParameterNotFound:
                return None

    outputs = {name: describe(name) or {} for name in naming.stack_names(config.prefix).values()}
    failures = [f"missing stack output {name}" for name in missing_outputs(outputs, config.prefix)]
    if approved is not None:
        problem = serving_failure(approved(naming.serving_package_parameter(config.prefix)), outputs, config.prefix)
        failures += [problem] if problem else []
    inference = outputs[naming.stack_names(config.prefix)[naming.INFERENCE]]
    if failures or not frame or naming.REALTIME_ENDPOINT_NAME not in inference:
        return failures
    from roadseg.endpoint_bench import camera_frame

    request = signed_post(inference[naming.REALTIME_FRONT_URL], camera_frame(*FRAME_SIZE, 2026),
                          session.region_name, session.get_credentials().get_frozen_credentials())
    problem = check_frame_answer(*post(request))
    return [problem] if problem else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roadseg.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="environment: config/<env>.yaml (or $ROADSEG_CONFIG_DIR)")
    parser.add_argument("--region", help="AWS region (default: the config's)")
    parser.add_argument("--no-frame", action="store_true", help="check the outputs only")
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    from envconfig.config import ConfigError

    try:
        failures = run(args.env, args.region, frame=not args.no_frame)
    except ConfigError as exc:
        print(f"roadseg smoke: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"roadseg smoke: AWS not usable: {exc}", file=sys.stderr)
        return 3
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"smoke test of {args.env}: {'passed' if not failures else f'{len(failures)} check(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
