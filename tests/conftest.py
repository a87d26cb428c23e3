"""Session-wide test setup: offline AWS settings and one synthesized app per environment."""

from __future__ import annotations

import os

# Nothing in the suite may reach AWS: fake credentials, a region, no instance metadata, no CDK chatter.
OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
}
os.environ.update(OFFLINE_ENV)
os.environ.pop("AWS_PROFILE", None)

