"""What runs over a synthesized cloud assembly after ``make synth``: the summary it prints (summary.py) and the
integration contracts (service_contracts/). Both read cdk.out through contracts.cloud_assembly."""
