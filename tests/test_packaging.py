"""The package's metadata is declared the way current setuptools wants it, so an install
prints no deprecation warning (issue 26 item 12)."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_string_with_its_file() -> None:
    """A `license = {text = ...}` table warns on every install since setuptools 77."""
    project = PYPROJECT["project"]
    assert project["license"] == "BSD-3-Clause"
    files = project["license-files"]
    assert files and all(list(ROOT.glob(pattern)) for pattern in files), files
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()


def test_build_requires_a_setuptools_that_knows_the_spdx_form() -> None:
    """setuptools older than 77 refuses a string license: the build must not pick one."""
    (setuptools,) = [
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert not setuptools.specifier.contains(Version("76.1.0"))
    assert setuptools.specifier.contains(Version("77.0.3"))


def test_the_installed_metadata_carries_the_license_expression() -> None:
    """What the build wrote: Metadata 2.4's License-Expression and the license file."""
    metadata = importlib.metadata.metadata("riverbed")
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert (
        metadata.get_all("License") is None
    )  # get_all: the importlib_metadata backport raises on []
