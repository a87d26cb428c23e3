"""The environment model read from ``config/``: the validated per-environment file (``config.py``, with its
``network:`` section in ``network.py``) and what an environment's endpoints cost (``costs.py``).

Pydantic and YAML, no CDK: the stacks build from it, and the operator command (roadseg/) reads it without loading
the CDK. Job and Lambda code never import it; they receive their settings through the environment variables and
job arguments the stacks derive from it (contracts.lambda_env).
"""
