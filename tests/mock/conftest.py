"""Shared mock releases for the tests of survey_scale.mock (built once per session, ~1 s each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from survey_scale.mock.release import ReleaseSummary, make_release

SHARED_LAMOST = Path(__file__).resolve().parents[3] / "shared" / "data" / "lamost"


@pytest.fixture(scope="session")
def release_a(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSummary:
    """A small release: 40 hot stars (and the default cool contaminants and a QSO), seed 3, every kind of
    invalid input."""
    return make_release(tmp_path_factory.mktemp("rel") / "a", 40, 3, "MOCK1")


@pytest.fixture(scope="session")
def release_a_again(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSummary:
    """The same arguments as ``release_a`` in another folder."""
    return make_release(tmp_path_factory.mktemp("rel") / "a_again", 40, 3, "MOCK1")


@pytest.fixture(scope="session")
def release_a_hot_only(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSummary:
    """``release_a``'s arguments without contaminants (``cool_fraction=0``)."""
    return make_release(tmp_path_factory.mktemp("rel") / "a_hot", 40, 3, "MOCK1", cool_fraction=0.0)


@pytest.fixture(scope="session")
def release_next(tmp_path_factory: pytest.TempPathFactory, release_a: ReleaseSummary) -> ReleaseSummary:
    """A second release extending ``release_a``: revisits plus 25 new stars, no invalid inputs."""
    return make_release(tmp_path_factory.mktemp("rel") / "next", 25, 5, "MOCK2", previous=release_a.outdir, n_invalid=0)


MOCK_HEADER = {
    "FILENAME": "spec-57306-GAC084N24B1_sp01-187.fits",
    "OBSID": 500000001,
    "DATA_V": "MOCK1",
    "DATE": "2017-01-01T00:00:00",
    "DATE-OBS": "2015-10-10T19:52:12.0",
    "DATE-BEG": "2015-10-11T03:00:00.0",
    "DATE-END": "2015-10-11T04:30:00.0",
    "LMJD": 57306,
    "MJD": 57305,
    "LMJMLIST": "1-2-3",
    "PLANID": "GAC084N24B1",
    "RA": 84.123456,
    "DEC": 24.5,
    "DESIG": "LAMOST J053629.62+243000.0",
    "FIBERID": 187,
    "CELL_ID": "F0187",
    "X_VALUE": "-1.0000000000",
    "Y_VALUE": "2.0000000000",
    "OBJNAME": "123",
    "EXPTIME": 1800.0,
    "BESTEXP": 123,
    "SPID": 1,
    "SPRA": 84.0,
    "SPDEC": 24.0,
    "SEEING": 2.5,
    "MOONPHA": 3.2,
    "HELIO_RV": -27.8,
    "COEFF0": 3.5682,
    "COEFF1": 1e-4,
    "SUBCLASS": "B9",
    "Z": 1.0e-4,
    "Z_ERR": 1.2e-5,
    "SNRU": 1.0,
    "SNRG": 2.0,
    "SNRR": 3.0,
    "SNRI": 4.0,
    "SNRZ": 5.0,
}
"""Header values of a mock spectrum file (the writer tests and the reader's fuzz seeds)."""
