"""A built wheel holds every package: the list setuptools makes from pyproject.toml (``packages.find``) names each
folder of the project that has an ``__init__.py``. A hand-written list once missed training.drives and
stacks.delivery."""

from __future__ import annotations

from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"tests", "node_modules", "cdk.out", "bench"}  # bench/: scripts, run from the repository


def _found_packages() -> tuple[set[str], dict[str, str]]:
    setuptools = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]
    return set(setuptools["packages"]), setuptools.get("package-dir", {})


def _package_folders() -> set[Path]:
    folders = set()
    for init in ROOT.rglob("__init__.py"):
        parts = init.relative_to(ROOT).parts
        if parts[0] in NOT_SHIPPED or any(part.startswith(".") for part in parts):
            continue
        folders.add(init.parent)
    return folders


def _folder_of(package: str, package_dir: dict[str, str]) -> Path:
    top, *rest = package.split(".")
    return ROOT / package_dir.get(top, top) / Path(*rest) if rest else ROOT / package_dir.get(top, top)


def test_every_package_folder_is_in_the_wheel() -> None:
    packages, package_dir = _found_packages()
    shipped = {_folder_of(name, package_dir) for name in packages}
    missing = sorted(str(folder.relative_to(ROOT)) for folder in _package_folders() - shipped)
    assert not missing, f"pyproject.toml's packages.find misses {missing}"


def test_the_wheel_holds_no_folder_that_is_not_a_package() -> None:
    packages, package_dir = _found_packages()
    assert {"stacks.delivery", "drivelogs", "envconfig", "roadseg_lambda"} <= packages
    assert not [name for name in packages if not (_folder_of(name, package_dir) / "__init__.py").is_file()]
    assert not [name for name in packages if name.split(".")[0] in NOT_SHIPPED]
