"""Importing the rehearsal loads neither the CDK nor the SageMaker SDK: what it needs from the stacks' side
(the Lambda environment, the job settings, the class scheme, the SSM parameter type) lives in envconfig/ and
contracts/. Only the pipelines stage imports the SDK and, until pipeline_settings and images_by_region leave
stacks/, the CDK (demo/pipelines.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_rehearsal_loads_no_cdk_and_no_sagemaker_sdk():
    probe = ("import json, sys; import demo.rehearsal; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'aws_cdk', 'constructs', 'jsii', "
             "'sagemaker'})))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
