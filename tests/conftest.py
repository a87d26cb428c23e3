"""Session-wide test setup: offline AWS settings and one synthesized app per environment."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing in the suite may reach AWS: fake credentials, a region, no instance metadata, no CDK chatter.
OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
}
os.environ.update(OFFLINE_ENV)
os.environ.pop("AWS_PROFILE", None)

# jsii (started by `import aws_cdk`) runs on the Node.js pinned in package.json, as under make.
NODE_BIN = Path(__file__).resolve().parent.parent / "node_modules" / ".bin"
if (NODE_BIN / "node").exists() and not os.environ.get("PATH", "").startswith(str(NODE_BIN)):
    os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

