"""The two pipeline definitions as the stack takes them: JSON with ``${Placeholders}`` for ``Fn::Sub``.

Each is generated in a hermetic SDK session (sdk.py) with sentinels for the deployment's values (sentinels.py); the
sentinels are then replaced by ``${Name}`` placeholders (placeholders.py), and any other ``${`` in the JSON is
escaped as ``${!`` so that ``Fn::Sub`` leaves it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.naming import training_pipeline_name, tuning_pipeline_name
from training.pipelines.parameters import PipelineParameters
from training.pipelines.sdk import Pipeline, PipelineSession, offline_session
from training.pipelines.sentinels import SENTINELS
from training.pipelines.settings import PipelineSettings
from training.pipelines.training_job import training_steps
from training.pipelines.tuning_job import tuning_steps


def build_training_pipeline(settings: PipelineSettings) -> str:
    """The ``<prefix>-training`` definition: JSON with ``${Placeholders}`` for ``Fn::Sub``."""
    name = training_pipeline_name(settings.prefix)
    with offline_session(default_bucket=SENTINELS.artifacts_bucket) as session:
        params = PipelineParameters.for_training(settings)
        return _render(session, name, params, training_steps(session, settings, name, params))


def build_tuning_pipeline(settings: PipelineSettings) -> str:
    """The ``<prefix>-tuning`` definition: the training pipeline with a tuning job instead of one job."""
    name = tuning_pipeline_name(settings.prefix)
    with offline_session(default_bucket=SENTINELS.artifacts_bucket) as session:
        params = PipelineParameters.for_tuning(settings)
        return _render(session, name, params, tuning_steps(session, settings, name, params))


def _render(session: PipelineSession, name: str, params: PipelineParameters, steps: Sequence) -> str:
    pipeline = Pipeline(
        name=name,
        parameters=params.as_list(),
        steps=steps,
        sagemaker_session=session,
        pipeline_experiment_config=None,  # no automatic Experiments/Trials per execution
    )
    definition = pipeline.definition().replace("${", "${!")  # Fn::Sub would read any other ${ as a variable
    for sentinel, placeholder in SENTINELS.placeholders().items():
        definition = definition.replace(sentinel, "${" + placeholder + "}")
    return definition
