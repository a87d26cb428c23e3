"""Fixtures of the operator command's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadseg import cli
from segcore.scenes import write_generic_tree

REGION = "us-east-1"


@pytest.fixture
def offline_aws_env(monkeypatch, tmp_path):
    """Fake credentials, one region, no profile, config or endpoint from the machine: set before mock_aws()."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                       "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def run(capsys):
    """run(*argv) -> (exit code, stdout, stderr) of the roadseg command, which never prints a traceback."""

    def _run(*argv) -> tuple[int, str, str]:
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return rc, out, err

    return _run


@pytest.fixture
def generic_tree(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """4 train + 2 validation generic-layout scenes at 64x32 (images/*.jpg, masks/*.png, split.json)."""
    root = tmp_path / "generic"
    return root, write_generic_tree(root, 4, 2, 64, 32, seed=5)
