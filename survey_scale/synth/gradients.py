"""Finite-difference gradient spectra of the synthesizer at a fiducial B star (SPEC §10; P2 Fig. 3)."""

from __future__ import annotations

import numpy as np

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.synth.core import synthesize

FIDUCIAL_B_STAR: dict[str, float] = {
    "teff": 18000.0,
    "logg": 4.0,
    "vmic": 5.0,
    "vsini": 100.0,
    "he_frac": 0.085,
    "c_h": 0.0,
    "n_h": 0.0,
    "o_h": 0.0,
    "si_h": 0.0,
    "s_h": 0.0,
    "fe_h": 0.0,
}
"""The fiducial star of P2 Figs. 3–5 (T_eff 18,000 K, log g 4.0, [Fe/H] 0, v sin i 100 km/s; v_mic and He,
which P2 does not state, set to 5 km/s and 0.085)."""

GRADIENT_STEPS: dict[str, float] = {
    "teff": 1000.0,
    "logg": 1.0,
    "vmic": 5.0,
    "vsini": 20.0,
    "he_frac": 0.05,
    "c_h": 1.0,
    "n_h": 1.0,
    "o_h": 1.0,
    "si_h": 1.0,
    "s_h": 1.0,
    "fe_h": 1.0,
}
"""Δl of P2 Fig. 3 (1000 K, 5 km/s, 20 km/s, 0.05; per dex for log g and abundances)."""

_LOGG_DIFF = 0.2
"""log g is differenced over ±0.1 dex and scaled to 1 dex (a full-dex step would not be a derivative)."""


def gradient_spectra(star: dict[str, float] | None = None, steps: dict[str, float] | None = None) -> np.ndarray:
    """Central finite differences f(l + Δl/2) − f(l − Δl/2) for every label, (11, 3802).

    Parameters
    ----------
    star
        Physical labels of the reference star (default :data:`FIDUCIAL_B_STAR`).
    steps
        Δl per label (default :data:`GRADIENT_STEPS`); log g uses ±0.1 dex scaled to its Δl.
    """
    star = dict(FIDUCIAL_B_STAR if star is None else star)
    steps = dict(GRADIENT_STEPS if steps is None else steps)
    base = np.array([star[k] for k in LABEL_NAMES])
    rows = []
    for i, name in enumerate(LABEL_NAMES):
        h = _LOGG_DIFF if name == "logg" else steps[name]
        up, down = base.copy(), base.copy()
        up[i] += 0.5 * h
        down[i] -= 0.5 * h
        rows.extend([up, down])
    spec = synthesize(np.array(rows)).astype(np.float64)
    diff = spec[0::2] - spec[1::2]
    diff[LABEL_NAMES.index("logg")] *= steps["logg"] / _LOGG_DIFF
    return diff
