"""Labels of the mock stars (SPEC §10): Teff, log g and evolutionary class; vmic, vsini, He, abundances.

Each function takes a ``numpy.random.Generator`` and draws from it in a fixed order (the mock is seeded: the
order of the draws is part of its output).
"""

from __future__ import annotations

import numpy as np

from survey_scale.core.labels import LABEL_RANGES
from survey_scale.mock import photometry as ph
from survey_scale.mock.galaxy import R_SUN_GC_KPC
from survey_scale.mock.stellar import logg_lower_limit


def _draw_teff_logg(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teff and log g of the primaries and their evolutionary class (0 MS, 1 giant, 2 supergiant).

    Teff: p(Teff) ∝ Teff⁻³ on [7000, 45000] K (80 % below 15,000 K, 3 % above 30,000 K). log g:
    main sequence (86 %), uniform in age-like fraction u^0.7 between the ZAMS (mean dwarf + 0.12 dex) and
    0.6 dex below it; 12 % giants/subgiants between 0.5 and 1.8 dex below the ZAMS (but ≥ 0.5 dex above the
    lower limit); 2 % supergiants within 0.8 dex of the Eddington-parallel lower limit
    :func:`logg_lower_limit` (and ≥ 0.4 dex below the ZAMS). Where a class has no room (the hottest stars)
    the star stays on the main sequence.
    """
    lo, hi = LABEL_RANGES["teff"][0], LABEL_RANGES["teff"][1]
    u = rng.random(n)
    teff = (lo**-2 - u * (lo**-2 - hi**-2)) ** -0.5  # inverse CDF of p ∝ T^-3
    zams = ph.dwarf_logg(teff) + 0.12
    floor = logg_lower_limit(teff)
    state = rng.choice(3, size=n, p=[0.86, 0.12, 0.02])
    # Giants need room between the supergiant zone and the main sequence; the hottest stars have none and
    # stay on the main sequence.
    giant_top = zams - 0.5
    giant_bottom = np.maximum(zams - 1.8, floor + 0.5)
    state = np.where((state == 1) & (giant_bottom >= giant_top), 0, state)
    sg_top = np.minimum(floor + 0.8, zams - 0.4)
    state = np.where((state == 2) & (sg_top <= floor), 0, state)
    logg = np.empty(n)
    ms = state == 0
    logg[ms] = zams[ms] - 0.6 * rng.random(ms.sum()) ** 0.7
    gi = state == 1
    logg[gi] = rng.uniform(giant_bottom[gi], giant_top[gi])
    sg = state == 2
    logg[sg] = rng.uniform(floor[sg], sg_top[sg])
    logg = np.clip(np.maximum(logg, floor), LABEL_RANGES["logg"][0], LABEL_RANGES["logg"][1])
    return teff, logg, state


def _draw_other_labels(
    rng: np.random.Generator, teff: np.ndarray, logg: np.ndarray, radius_gc: np.ndarray, emission: np.ndarray
) -> dict[str, np.ndarray]:
    """vmic, vsini, N_He/N_tot and the five abundances [X/H] plus [Fe/H].

    - vsini = v_eq sin i, i isotropic; v_eq ~ N(190, 80) km/s for normal stars, N(40, 25) for 20 % slow
      rotators (Am/Ap), N(300, 60) for emission-line (Be) stars, N(60, 30) for log g < 3; clipped to 0–420.
    - vmic: 0–3 km/s on the main sequence, growing to ~12 km/s for supergiants (log g ≈ 1.5).
    - N_He/N_tot ~ N(0.09, 0.007) in [0.07, 0.11]; 4 % He-weak (0.02–0.06) at 12,000–20,000 K; 2 % He-rich
      (0.13–0.22) above 18,000 K.
    - Metallicity: a radial gradient −0.06 dex/kpc around −0.05 dex at the Sun, cosmic scatter 0.10 dex;
      each [X/H] = that + N(0, 0.08) (C offset −0.10, N +0.25 for evolved stars). Am stars (10 % of
      7,000–10,000 K slow rotators): [Fe/H] +0.2–0.5; Si stars (5 % of 9,000–14,000 K): [Si/H] +0.3–1.0.
    All clipped to :data:`survey_scale.core.labels.LABEL_RANGES`.
    """
    n = teff.size
    sin_i = np.sqrt(1.0 - rng.random(n) ** 2)
    slow = rng.random(n) < 0.20
    v_eq = np.where(slow, rng.normal(40.0, 25.0, n), rng.normal(190.0, 80.0, n))
    v_eq = np.where(logg < 3.0, rng.normal(60.0, 30.0, n), v_eq)
    v_eq = np.where(emission, rng.normal(300.0, 60.0, n), v_eq)
    vsini = np.clip(np.abs(v_eq) * sin_i, 0.0, 420.0)

    evolved = np.clip((ph.dwarf_logg(teff) - logg) / 2.5, 0.0, 1.0)
    vmic = rng.uniform(0.0, 3.0, n) + 10.0 * evolved * rng.uniform(0.6, 1.2, n)

    he = np.clip(rng.normal(0.09, 0.007, n), 0.07, 0.11)
    he_weak = (teff > 12000) & (teff < 20000) & (rng.random(n) < 0.04)
    he_rich = (teff > 18000) & (rng.random(n) < 0.02)
    he = np.where(he_weak, rng.uniform(0.02, 0.06, n), he)
    he = np.where(he_rich, rng.uniform(0.13, 0.22, n), he)

    base = -0.05 - 0.06 * (radius_gc - R_SUN_GC_KPC) + rng.normal(0.0, 0.10, n)
    labels = {"vmic": vmic, "vsini": vsini, "he_frac": he}
    offsets = {"c_h": -0.10, "n_h": 0.0, "o_h": 0.0, "si_h": 0.0, "s_h": 0.0, "fe_h": 0.0}
    for name, off in offsets.items():
        labels[name] = base + off + rng.normal(0.0, 0.08, n)
    labels["n_h"] = labels["n_h"] + 0.25 * (evolved > 0.2)
    am = (teff < 10000) & (vsini < 100) & (rng.random(n) < 0.10)
    labels["fe_h"] = labels["fe_h"] + am * rng.uniform(0.2, 0.5, n)
    si_star = (teff > 9000) & (teff < 14000) & (rng.random(n) < 0.05)
    labels["si_h"] = labels["si_h"] + si_star * rng.uniform(0.3, 1.0, n)
    for name in labels:
        lo, hi = LABEL_RANGES[name]
        labels[name] = np.clip(labels[name], lo, hi)
    return labels
