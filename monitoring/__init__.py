"""Label-free monitoring (issue 23): reference profiles of the per-frame signals (segcore.signals) on the frames a
model was gated on, and drift per camera position (population stability index, Jensen-Shannon distance) of a recent
window against that reference. Runs in the scheduled monitoring job and in ``roadseg monitor``; imports segcore and
contracts, never the CDK or the SageMaker SDK."""
