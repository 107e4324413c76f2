"""Shared mock releases for the tests of survey_scale.mock (built once per session, ~1 s each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from survey_scale.mock.release import ReleaseSummary, make_release

SHARED_LAMOST = Path(__file__).resolve().parents[3] / "shared" / "data" / "lamost"


@pytest.fixture(scope="session")
def release_a(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSummary:
    """A small release: 40 stars, seed 3, every kind of invalid input."""
    return make_release(tmp_path_factory.mktemp("rel") / "a", 40, 3, "MOCK1")


@pytest.fixture(scope="session")
def release_a_again(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSummary:
    """The same arguments as ``release_a`` in another folder."""
    return make_release(tmp_path_factory.mktemp("rel") / "a_again", 40, 3, "MOCK1")


@pytest.fixture(scope="session")
def release_next(tmp_path_factory: pytest.TempPathFactory, release_a: ReleaseSummary) -> ReleaseSummary:
    """A second release extending ``release_a``: revisits plus 25 new stars, no invalid inputs."""
    return make_release(tmp_path_factory.mktemp("rel") / "next", 25, 5, "MOCK2", previous=release_a.outdir, n_invalid=0)
