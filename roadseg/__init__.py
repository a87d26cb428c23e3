"""roadseg operator command (``roadseg``, see roadseg/cli.py) and its deploy preflight."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("roadseg")
except PackageNotFoundError:  # running from a checkout that `make synth` has not installed yet
    __version__ = "0+checkout"
