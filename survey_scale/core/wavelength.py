"""The common rest-frame wavelength grid of the cube (SPEC §1).

Every spectrum in the cube is resampled onto one grid, uniform in log10 λ with LAMOST's native step of
1e-4 dex, starting at 3750 Å: 3,802 pixels up to 8,999 Å (vacuum wavelengths, rest frame). The grid is
defined here once; the cube records it in its attributes and refuses a store whose grid differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from survey_scale.core.errors import SurveyScaleError

LOG10_WAVE_START: float = float(np.log10(3750.0))
"""log10 of the first pixel centre (Å)."""
LOG10_WAVE_STEP: float = 1e-4
"""Step of the grid in dex per pixel (LAMOST's native sampling)."""
N_WAVE: int = 3802
"""Number of pixels of the common grid."""

PIXMASK_BITS: dict[str, int] = {
    "ANDMASK": 1,
    "ORMASK": 2,
    "NO_COVERAGE": 4,
    "INTERPOLATED": 8,
}
"""Bits of ``pixmask``: LAMOST and-mask set on a contributing input pixel (1), or-mask set (2), the pixel is
outside the spectrum's wavelength coverage (4), mostly bad input pixels: flux interpolated over the gap and
ivar set to 0 (8)."""

GRID_ATTR_KEYS = ("grid_log10_wave_start", "grid_log10_wave_step", "grid_n_wave", "grid_medium")


class GridMismatchError(SurveyScaleError, ValueError):
    """A store or an input was made for another wavelength grid."""


def wavelength_grid() -> np.ndarray:
    """Pixel-centre wavelengths of the common grid.

    Returns
    -------
    numpy.ndarray
        Shape (3802,), float64, vacuum rest-frame wavelengths in Å.
    """
    return 10.0 ** (LOG10_WAVE_START + LOG10_WAVE_STEP * np.arange(N_WAVE))


def log10_pixel_edges() -> np.ndarray:
    """log10 of the pixel edges of the common grid, shape (3803,)."""
    return LOG10_WAVE_START + LOG10_WAVE_STEP * (np.arange(N_WAVE + 1) - 0.5)


def grid_attrs() -> dict[str, Any]:
    """The attributes that record the grid in a store (SPEC §1)."""
    return {
        "grid_log10_wave_start": LOG10_WAVE_START,
        "grid_log10_wave_step": LOG10_WAVE_STEP,
        "grid_n_wave": N_WAVE,
        "grid_medium": "vacuum, rest frame",
    }


def check_grid_attrs(attrs: Mapping[str, Any], where: str) -> None:
    """Raise :class:`GridMismatchError` unless ``attrs`` describe the common grid.

    Parameters
    ----------
    attrs
        Attributes of a store (or of an emulator file).
    where
        Name of the store or file, quoted in the error message.
    """
    missing = [k for k in GRID_ATTR_KEYS[:3] if k not in attrs]
    if missing:
        raise GridMismatchError(f"{where}: no wavelength grid recorded (missing attributes {missing})")
    expected = grid_attrs()
    for key in GRID_ATTR_KEYS[:3]:
        got, want = attrs[key], expected[key]
        if not np.isclose(float(got), float(want), rtol=0, atol=1e-12):
            raise GridMismatchError(
                f"{where}: wavelength grid differs from survey_scale's common grid: {key} = {got!r}, "
                f"expected {want!r} (log10 step 1e-4 dex from 3750 Å, {N_WAVE} pixels)"
            )


def air_to_vacuum(wave_air: np.ndarray | float) -> np.ndarray:
    """Air → vacuum wavelengths in Å: the inverse of Morton (2000, ApJS 130, 403) by N. Piskunov (VALD).

    n = 1 + 8.336624212083e-5 + 2.408926869968e-2/(130.1065924522 − s²)
          + 1.599740894897e-4/(38.92568793293 − s²),
    with s = 10⁴/λ_air (µm⁻¹); λ_vac = n λ_air. Round trip with the forward Morton formula
    (:func:`vacuum_to_air`) to ~1e-4 Å over 2000–10⁵ Å.
    """
    w = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return w * n


def vacuum_to_air(wave_vac: np.ndarray | float) -> np.ndarray:
    """Vacuum → air wavelengths in Å (Morton 2000, the IAU standard)."""
    w = np.asarray(wave_vac, dtype=np.float64)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return w / n
