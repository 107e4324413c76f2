"""Shared helpers for the synthesizer tests (SPEC §10)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.core.wavelength import wavelength_grid

BASE_STAR = {
    "teff": 10000.0,
    "logg": 4.0,
    "vmic": 2.0,
    "vsini": 20.0,
    "he_frac": 0.085,
    "c_h": 0.0,
    "n_h": 0.0,
    "o_h": 0.0,
    "si_h": 0.0,
    "s_h": 0.0,
    "fe_h": 0.0,
}


def _star(**labels: float) -> list[float]:
    unknown = set(labels) - set(LABEL_NAMES)
    if unknown:
        raise KeyError(f"unknown labels {unknown}")
    row = {**BASE_STAR, **labels}
    return [row[name] for name in LABEL_NAMES]


@pytest.fixture(scope="session")
def wave() -> np.ndarray:
    return wavelength_grid()


@pytest.fixture(scope="session")
def star() -> Callable[..., list[float]]:
    """Label row (LABEL_NAMES order) of an A0-like dwarf with the given labels overridden."""
    return _star


@pytest.fixture(scope="session")
def equivalent_width(wave: np.ndarray) -> Callable[[np.ndarray, float, float], np.ndarray]:
    """Σ (1 − f) Δλ over |λ − centre| < half (Å) of each row of a normalized spectrum."""
    step = np.gradient(wave)

    def ew(flux: np.ndarray, centre: float, half: float) -> np.ndarray:
        sel = np.abs(wave - centre) < half
        return ((1.0 - np.atleast_2d(flux)[:, sel].astype(np.float64)) * step[sel]).sum(axis=1)

    return ew
