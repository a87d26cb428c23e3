"""The promotion pipeline (opt-in: a ``delivery:`` section in an environment file; see ``envconfig/config.py``).

``DeliveryStack`` (stacks/delivery/pipeline.py) is a CDK Pipelines ``CodePipeline`` in the tools account (the
file's ``account``/``region``) with cross-account KMS keys. It pulls the repository, runs the offline gates
(``make test``: ruff, lint-imports, the pytest suite) and synthesizes the delivery app, then deploys one
``RoadsegStage`` (stacks/delivery/stage.py) per environment in ``delivery.stages`` order, each into the account and
region its own config file pins: preflight before (with the target's CDK lookup role), a manual approval before
the stages named in ``delivery.manual_approval_before`` (default: prod), a smoke test after.

Models across accounts: **retrain per account**, not "promote the model". What the pipeline promotes is the code
and configuration (pipeline definitions, quality gate, serving stack) that was tested in the previous stage; each
account trains on its own datasets bucket, registers into its own model package group through the same quality
gate (mIoU and the safety-critical IoU floors), and its own rollout rule deploys the approvals of its own
registry. Reasons:

- every environment keeps one customer-managed data key and buckets that admit only its own account (bucket_set,
  operations_key); promoting artifacts would need cross-account grants on the artifacts bucket and its key, a
  model package group resource policy and cross-account EventBridge routing into the rollout rule, each a new
  trust edge that the integration contracts and nag acknowledgments would have to cover;
- the data that trains a prod model commonly may not leave the prod account, while the gate that decides what
  serves runs identically in every account;
- nothing cross-account exists beyond the pipeline's own deploy roles (CDK bootstrap ``--trust``).

The cost is training once per account (GPU hours; docs/costs-and-sizing.md lists endpoint costs, not training), and
that prod serves a model trained from the same code and data recipe rather than the byte-identical artifact
evaluated in staging. Promoting is the follow-up if that matters: share the staging group with the prod account
(``AWS::SageMaker::ModelPackageGroup`` ``ModelPackageGroupPolicy``: ``sagemaker:DescribeModelPackage``,
``sagemaker:ListModelPackages``, ``sagemaker:CreateModel`` for the prod account), grant the prod model role
``s3:GetObject`` on the artifact and ``kms:Decrypt`` on the staging key, and forward the staging account's
"SageMaker Model Package State Change" events to the prod event bus for the rollout rule.
"""

from stacks.delivery.pipeline import DeliveryStack, delivery_stack_name
from stacks.delivery.stage import RoadsegStage

__all__ = ["DeliveryStack", "RoadsegStage", "delivery_stack_name"]
