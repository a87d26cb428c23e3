"""CDK stacks and constructs of roadseg."""
