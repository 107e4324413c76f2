"""A small analytic model grid for the tests (and the emulator and fit benchmarks): :func:`toy_model_grid`.

Gaussian absorption lines driven smoothly by the 11 labels of :data:`survey_scale.core.labels.LABEL_NAMES`;
labels in physical units, wavelengths (P,) in vacuum Å, flux (n, P) float32 in (0, 1]. Not a stellar model:
a fast, seeded stand-in with the structure the emulator (SPEC §5.1) and the fit need.
"""

from __future__ import annotations

import numpy as np

from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.model_grid import ModelGrid

_TOY_METALS = {
    # label: vacuum line centres (Å) of a few strong-ish lines of the element in hot stars
    "c_h": (4268.2, 4648.0, 6580.0),
    "n_h": (3996.1, 4631.5, 5681.0),
    "o_h": (4070.0, 4351.3, 4650.0, 7775.4),
    "si_h": (4129.2, 4553.6, 4568.0, 5041.0, 6348.9, 6373.1),
    "s_h": (4163.0, 5454.0, 5641.0),
    "fe_h": (4234.6, 4385.4, 4550.0, 4584.8, 5018.4, 5170.5, 5318.0),
}
_TOY_HE = (4027.3, 4389.2, 4472.7, 4714.5, 4923.3, 5017.1, 5877.3, 6680.0, 7067.1)
_TOY_H = (
    6564.6,
    4862.7,
    4341.7,
    4102.9,
    3971.2,
    3890.2,
    3836.5,
    8865.2,
    8752.9,
    8667.4,
    8600.8,
    8547.7,
    8504.8,
)


def toy_model_grid(
    n: int,
    seed: int = 0,
    wave: np.ndarray | None = None,
    label_ranges: dict[str, tuple[float, float]] | None = None,
) -> ModelGrid:
    """An analytic model grid of Gaussian absorption lines driven smoothly by the 11 labels.

    Not a stellar model: a fast, seeded stand-in with the right *structure* for developing and testing the
    emulator and the fit (every label changes some pixels, Teff and log g share the hydrogen lines whose
    strength peaks near 9,500 K, He lines rise with Teff and N_He/N_tot, metal lines scale with their
    abundance and fade with Teff, vmic strengthens metal lines, vsini broadens every line, the Ca II K line
    weakens with Teff). The real grid comes from the built-in synthesizer (``survey_scale.synth``).

    Parameters
    ----------
    n
        Number of spectra; labels drawn uniformly within the ranges.
    seed
        Seed of :func:`numpy.random.default_rng`.
    wave
        (P,) vacuum wavelengths in Å (default: the 3802-pixel common grid).
    label_ranges
        Ranges per label (default :data:`survey_scale.core.labels.LABEL_RANGES`).

    Returns
    -------
    ModelGrid
        Labels in :data:`LABEL_NAMES` order, float32 flux in (0, 1].
    """
    ranges = dict(LABEL_RANGES if label_ranges is None else label_ranges)
    wave = wavelength_grid() if wave is None else np.asarray(wave, dtype=np.float64)
    rng = np.random.default_rng(seed)
    lo = np.array([ranges[k][0] for k in LABEL_NAMES])
    hi = np.array([ranges[k][1] for k in LABEL_NAMES])
    labels = lo + (hi - lo) * rng.random((n, len(LABEL_NAMES)))
    return ModelGrid(
        labels,
        LABEL_NAMES,
        lo,
        hi,
        wave,
        toy_spectra(labels, wave),
        {"producer": "toy_model_grid", "seed": seed},
    )


def toy_spectra(labels: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Noiseless toy spectra (n, P) float32 for labels (n, 11) in :data:`LABEL_NAMES` order (see
    :func:`toy_model_grid`)."""
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    col = {k: lab[:, i : i + 1] for i, k in enumerate(LABEL_NAMES)}
    lt = np.log10(col["teff"])
    logg, vmic, vsini, he = col["logg"], col["vmic"], col["vsini"], col["he_frac"]
    tau = np.zeros((lab.shape[0], wave.size))
    c_kms = 299792.458
    lsf = 2.2  # Å, Gaussian σ of the instrumental profile (R ≈ 1800 at 5000 Å)

    def add(centre: float, depth: np.ndarray, width: np.ndarray) -> None:
        sig = np.sqrt(width**2 + lsf**2 + (0.6 * vsini / c_kms * centre) ** 2)
        window = np.abs(wave - centre) < 60.0
        if window.any():
            d = (wave[window] - centre) / sig
            # equivalent width conserved under broadening: the peak depth falls as the line widens
            tau[:, window] += depth * (width + lsf) / sig * np.exp(-0.5 * d**2)

    # hydrogen: strongest near Teff 9500 K; Stark width grows with log g
    h_strength = np.exp(-0.5 * ((lt - np.log10(9500.0)) / 0.22) ** 2)
    for c in _TOY_H:
        add(c, 1.4 * h_strength * (0.6 + 0.1 * logg), 3.0 + 2.5 * logg)
    # helium: rises above ~12,000 K, proportional to the helium fraction
    he_strength = 1.0 / (1.0 + np.exp(-(lt - np.log10(15000.0)) / 0.04)) * (0.2 + 6.0 * he)
    for c in _TOY_HE:
        add(c, 0.35 * he_strength, 1.5 + 0.3 * logg)
    # metals: abundance-driven, fading with Teff, vmic desaturates
    metal_t = np.exp(-(col["teff"] - 7000.0) / 15000.0)
    for k, centres in _TOY_METALS.items():
        for j, c in enumerate(centres):
            depth = 0.25 * metal_t * 10.0 ** (0.8 * col[k]) * (1.0 + 0.04 * vmic) * (0.7 + 0.1 * j)
            add(c, np.log1p(depth), 1.0 + 0.05 * vmic)
    # Ca II K: strong in A stars
    add(
        3934.77,
        1.2 * np.exp(-(col["teff"] - 7000.0) / 2500.0) * 10.0 ** (0.3 * col["fe_h"]),
        2.0 + 0.2 * logg,
    )
    return np.exp(-tau).astype(np.float32)
