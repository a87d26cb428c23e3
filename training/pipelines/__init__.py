"""SageMaker Pipelines definitions for roadseg, generated offline at CDK synth time.

Two pipelines share one set of steps::

    <prefix>-training: PrepareDataset -> TrainSegmentation -> CreateCandidateModel -> TransformValidation
                       -> EvaluateModel -> IsFirstModel ?
                          QualityGate -> (ExportModel -> RegisterModel) | GateFailed
                        : CreateIncumbentModel -> TransformIncumbent -> EvaluateVsIncumbent
                          -> QualityGateVsIncumbent -> (ExportModelVsIncumbent -> RegisterModelVsIncumbent)
                                                       | GateFailedVsIncumbent
    <prefix>-tuning:   PrepareDataset -> TuneSegmentation (best job) -> CreateCandidateModel -> ... (same)

    both:              PrepareDataset -> PrepareServingValidation -> TransformValidation (beside the training)

The gate measures what ships: PrepareServingValidation turns the validation images into exactly what the ingest
function sends the endpoints (training/serving.py: ``prepare_frame`` with the environment's preprocessing), the
transform runs on those, and EvaluateModel maps each mask back to the annotation the way the postprocess function
restores masks, scoring the ROI only (training/evaluate.py).

The gate compares with the incumbent (issue 22 s.5): ``roadseg pipeline start`` passes the latest Approved model
package as IncumbentModelS3Uri; with one, the incumbent runs on the same serving frames and the candidate may lose at
most MaxIoURegression IoU on any safety-critical class; without one (a first model) the floors alone decide
(steps.py says why there are two tails). EvaluateModel also writes the reference profile of the gated frames
(issue 23 s.2), which the model package records as its drift check baseline.

Only a model that passes the gate is exported and registered: ExportModel (export/model.py) rebuilds the GluonCV
network at the serving resolution, writes the edge bundle (MXNet graph for Neo, ONNX, classes, preprocessing, parity
report; contracts/bundle.py) and fails on a parity miss; the model package records the bundle (``EdgeBundle``).

The modules, from what the stack reads to what builds the JSON:

- ``settings``: ``PipelineSettings``, what the pipelines need from the environment configuration, validated;
- ``placeholders``: the ``${Name}`` values the stack fills in with ``Fn::Sub``, and where the code lands;
- ``sdk``: the one module that imports the SageMaker SDK, with the traps of importing and running it offline;
- ``sentinels``: the literal stand-ins for the deployment's values while the SDK generates;
- ``parameters``: the pipeline parameters an execution may override;
- ``blocks``: what every job shares (processor, inputs and outputs, S3 locations, network, encryption);
- ``steps``: PrepareDataset and everything after the model artifact (serving validation, gate, export, register);
- ``training_job``, ``tuning_job``: the training job, the tuning job, and each pipeline's steps around them;
- ``definition``: ``build_training_pipeline`` and ``build_tuning_pipeline``, the JSON for the stack.

This file imports nothing: ``settings`` and ``placeholders`` load without the SDK and leave ``os.environ`` alone
(the stack's settings and the rehearsal need them; tests/training/test_pipelines.py checks it).
"""
