"""The data engine's labelling side (issue 22): choose frames worth labelling from drive timelines (selection), hand
them to a labelling tool pre-annotated with the model's masks (CVAT, Label Studio), import the corrected labels and
write immutable dataset versions with splits by drive. Runs on the workstation (``roadseg label``/``roadseg data``)
and in Processing jobs; imports segcore and contracts, never the CDK or the SageMaker SDK."""
