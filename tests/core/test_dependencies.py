"""Dependency floors leave out releases with known problems (issue 26)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

BAD_RELEASES = {
    "zarr": ["3.1.0", "3.1.2"],  # before atomic chunk writes in LocalStore (zarr-python #3412, in 3.1.3)
    "pyarrow": ["14.0.0"],  # CVE-2023-47248: code execution reading untrusted Parquet
}


def requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    return {(r := Requirement(d)).name: r for d in deps}


@pytest.mark.parametrize("name", sorted(BAD_RELEASES))
def test_floors_leave_out_known_bad_releases_and_admit_the_installed_one(name: str) -> None:
    spec = requirements()[name].specifier
    assert not [v for v in BAD_RELEASES[name] if spec.contains(v)], f"{name}{spec} admits a known bad release"
    assert spec.contains(Version(version(name)), prereleases=True), f"installed {name} {version(name)} outside {spec}"
