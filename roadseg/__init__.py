"""roadseg operator command."""
