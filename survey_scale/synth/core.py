"""Public entry points of the synthesizer: :func:`synthesize` and :func:`sed` (SPEC §10)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from survey_scale.core.labels import LABEL_NAMES, N_LABELS
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.synth import atmosphere as atm
from survey_scale.synth.lines import line_parameters
from survey_scale.synth.spectrum import normalized_chunk

DEFAULT_RESOLUTION = 1800.0
"""Mean LAMOST resolving power at 5000 Å (P2 §4.1: FWHM ≈ 2.8 Å)."""

SYNTH_LIMITS: dict[str, tuple[float, float]] = {
    "teff": (6000.0, 50000.0),
    "logg": (-0.5, 5.5),
    "vmic": (0.0, 30.0),
    "vsini": (0.0, 600.0),
    "he_frac": (0.0, 0.5),
    "c_h": (-5.0, 2.0),
    "n_h": (-5.0, 2.0),
    "o_h": (-5.0, 2.0),
    "si_h": (-5.0, 2.0),
    "s_h": (-5.0, 2.0),
    "fe_h": (-5.0, 2.0),
}
"""Labels accepted by :func:`synthesize`: somewhat wider than :data:`survey_scale.core.labels.LABEL_RANGES` (the
model grid's box) so that, e.g., cool companions of composite spectra down to 6000 K can be made; below
~7000 K the line list (no molecules, few neutral metals) makes the spectra increasingly schematic."""

RESOLUTION_RANGE = (500.0, 4000.0)
"""Resolving powers accepted by :func:`synthesize`: beyond R ≈ 4000 the Gaussian LSF is no longer resolved
by the 3× oversampled working grid and sub-pixel shifts would ring."""
MAX_RV = 2000.0
"""Largest |rv| (km s⁻¹) accepted: the synthesis margin (40 pixels ≈ 2760 km s⁻¹) must cover the shift."""
FIBRE_SCATTER = 0.08
"""Default fractional fibre-to-fibre scatter of R used by :func:`draw_resolution`."""
CHUNK_SIZE = 256
"""Stars synthesized per vectorized batch (bounds memory at ~0.3 GB)."""

_ABUNDANCE_LABELS = ("c_h", "n_h", "o_h", "si_h", "s_h", "fe_h")


def _as_labels(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != N_LABELS:
        raise ValueError(
            f"synthesize: labels must have shape (n, {N_LABELS}) in the order {LABEL_NAMES}, got {np.shape(labels)}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("synthesize: labels contain NaN or inf")
    for i, name in enumerate(LABEL_NAMES):
        lo, hi = SYNTH_LIMITS[name]
        bad = (arr[:, i] < lo) | (arr[:, i] > hi)
        if np.any(bad):
            raise ValueError(
                f"synthesize: {name} outside the synthesizer's range [{lo}, {hi}] for "
                f"{int(bad.sum())} spectra (e.g. {arr[bad, i][0]!r})"
            )
    return arr


def _per_spectrum(value: float | np.ndarray | None, n: int, default: float, name: str) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"synthesize: {name} must be a scalar or have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"synthesize: {name} contains NaN or inf")
    return arr


def synthesize(
    labels: np.ndarray,
    *,
    resolution: float | np.ndarray | None = None,
    rv: float | np.ndarray | None = None,
    kind: Literal["normalized", "flux"] = "normalized",
    chunk_size: int = CHUNK_SIZE,
) -> np.ndarray:
    """Synthetic hot-star spectra on the common grid (SPEC §1, §10).

    Parameters
    ----------
    labels
        (n, 11) or (11,) physical labels in :data:`survey_scale.core.labels.LABEL_NAMES` order: T_eff (K),
        log g (cgs dex), v_mic (km s⁻¹), v sin i (km s⁻¹), N_He/N_tot, [C/H], [N/H], [O/H], [Si/H], [S/H],
        [Fe/H] (dex; Mg and Ca follow [Fe/H]). Accepted range: :data:`SYNTH_LIMITS`.
    resolution
        Resolving power R = λ/FWHM of the Gaussian LSF (constant in velocity), scalar or (n,) for
        fibre-to-fibre scatter, within :data:`RESOLUTION_RANGE` (500–4000); default 1800 (the mean
        LAMOST LSF at 5000 Å). R is the resolution of the returned pixels (pixel integration included).
    rv
        Radial velocity in km s⁻¹ (scalar or (n,)), |rv| ≤ 2000; positive shifts lines to the red.
        Default: rest frame.
    kind
        ``"normalized"``: flux divided by the true continuum (continuum = 1, no pseudo-continuum);
        ``"flux"``: surface flux F_λ in erg s⁻¹ cm⁻² Å⁻¹, i.e. ``sed(teff, logg, he_frac=...)`` (evaluated
        at the Doppler-shifted wavelengths) times the normalized spectrum.
    chunk_size
        Stars per vectorized batch; results do not depend on it beyond floating-point rounding.

    Returns
    -------
    numpy.ndarray
        (n, 3802) float32 on :func:`survey_scale.core.wavelength.wavelength_grid` (vacuum Å). Always 2-D.

    Notes
    -----
    Deterministic: the same inputs give bit-identical outputs. See the package docstring for the
    physics and its limits.
    """
    if kind not in ("normalized", "flux"):
        raise ValueError(f"synthesize: kind must be 'normalized' or 'flux', got {kind!r}")
    arr = _as_labels(labels)
    n = arr.shape[0]
    res = _per_spectrum(resolution, n, DEFAULT_RESOLUTION, "resolution")
    if np.any((res < RESOLUTION_RANGE[0]) | (res > RESOLUTION_RANGE[1])):
        raise ValueError(
            f"synthesize: resolution must lie in {RESOLUTION_RANGE} (the 3x oversampled grid "
            "resolves the LSF up to R = 4000)"
        )
    vel = _per_spectrum(rv, n, 0.0, "rv")
    if np.any(np.abs(vel) > MAX_RV):
        raise ValueError(f"synthesize: |rv| must not exceed {MAX_RV} km/s")
    out = np.empty((n, wavelength_grid().size), dtype=np.float32)
    col = {name: i for i, name in enumerate(LABEL_NAMES)}
    for a in range(0, n, max(int(chunk_size), 1)):
        b = min(a + max(int(chunk_size), 1), n)
        c = arr[a:b]
        teff, logg, vmic, vsini, he = (c[:, col[k]] for k in ("teff", "logg", "vmic", "vsini", "he_frac"))
        photo = atm.photosphere(teff, logg, he)
        params = line_parameters(photo, vmic, {k: c[:, col[k]] for k in _ABUNDANCE_LABELS})
        norm = normalized_chunk(params, teff, vmic, vsini, res[a:b], vel[a:b])
        if kind == "flux":
            norm = norm * _shifted_sed(photo, vel[a:b])
        out[a:b] = norm
    return out


def draw_resolution(
    n: int, rng: np.random.Generator, mean: float = DEFAULT_RESOLUTION, scatter: float = FIBRE_SCATTER
) -> np.ndarray:
    """Per-fibre resolving powers: log-normal about ``mean`` with fractional ``scatter``, clipped to ±3σ.

    Parameters
    ----------
    n
        Number of spectra.
    rng
        Random generator (``np.random.default_rng(seed)``).
    mean, scatter
        Median R and the standard deviation of ln R (default 1800 and 0.08: LAMOST LSFs vary from fibre to
        fibre and exposure to exposure by several per cent, P2 §4.3; the value is an assumption of the mock).

    Returns
    -------
    numpy.ndarray
        (n,) resolving powers for :func:`synthesize`'s ``resolution``.
    """
    z = np.clip(rng.standard_normal(n), -3.0, 3.0)
    return np.clip(mean * np.exp(scatter * z), *RESOLUTION_RANGE)


def _shifted_sed(photo: atm.Layer, rv: np.ndarray) -> np.ndarray:
    """SED of ``photo`` on the common grid as seen at radial velocity ``rv``: F(λ / (1 + v/c)), (n, 3802)."""
    rest = wavelength_grid()[None, :] / (1.0 + rv[:, None] / atm.C_KMS)
    return atm.sed_from_photosphere(photo, rest if np.any(rv != 0.0) else rest[0])


def sed(
    teff: float | np.ndarray,
    logg: float | np.ndarray,
    wave: np.ndarray | None = None,
    *,
    he_frac: float | np.ndarray | None = None,
) -> np.ndarray:
    """Surface flux F_λ of the synthesizer's one-layer model photospheres (SPEC §10).

    Parameters
    ----------
    teff, logg
        Scalars or (n,) arrays: effective temperature (K) and log10 surface gravity (cgs).
    wave
        (P,) vacuum wavelengths in Å (any range, e.g. for synthetic photometry); default the common grid.
    he_frac
        N_He/N_tot, scalar or (n,); default solar (≈ 0.078).

    Returns
    -------
    numpy.ndarray
        (n, P) float64 surface flux in erg s⁻¹ cm⁻² Å⁻¹, normalized so that ∫ F_λ dλ = σ T_eff⁴ (the
        bolometric surface flux). A star of radius R at distance d contributes (R/d)² F_λ at the Earth,
        so a composite of two stars is R₁² F₁ + R₂² F₂ (up to the common factor 1/d²), and luminosity
        ratios are L₂/L₁ = R₂² T₂⁴ / (R₁² T₁⁴). No interstellar extinction.
    """
    teff_a, logg_a = np.broadcast_arrays(
        np.atleast_1d(np.asarray(teff, dtype=np.float64)), np.atleast_1d(np.asarray(logg, dtype=np.float64))
    )
    he = np.broadcast_to(np.asarray(atm.SOLAR_HE_FRAC if he_frac is None else he_frac, dtype=np.float64), teff_a.shape)
    if not (np.all(np.isfinite(teff_a)) and np.all(teff_a > 0)):
        raise ValueError("sed: teff must be finite and positive")
    wave_a = wavelength_grid() if wave is None else np.asarray(wave, dtype=np.float64)
    if wave_a.ndim != 1 or np.any(wave_a <= 0):
        raise ValueError("sed: wave must be a 1-D array of positive wavelengths (Å)")
    return atm.sed_from_photosphere(atm.photosphere(teff_a, logg_a, he), wave_a)
