"""The ExportModel job (model.py): a gated model as an edge bundle, run in the export environment (Python 3.11,
MXNet 1.9.1, requirements.txt)."""
