"""P2 §5.1's final-sample rules as flags (SPEC §13; issue 23) — pure numpy, one row per spectrum.

A hot-star *candidate* list holds many stars that are not hot (P2 §2, §5.1: of 1.16 M candidate spectra,
455 k entered the final sample). P2 removes them; survey_scale keeps every row and flags each rule in its own
column, with ``final_sample`` = 1 where none is set and the fit has a result:

``flag_teff_lt_7000``
    The combined T_eff < 7,000 K (P2 keeps 7,000–7,500 K).
``flag_snr_lt_5``
    S/N < 5.
``flag_not_converged``
    A fit that entered the result did not converge.
``flag_chi2ratio``
    chi2ratio > ``chi2ratio.flag`` (P2 §5.2; written by step ``chi2ratio``).
``flag_cool_star``
    The intrinsically cool star, fitted hot (P2 §5.1: ~5 % of the cool stars at low S/N): an independent
    cool-star T_eff < 7,000 K — P2 takes it from DD-Payne, survey_scale from the fit of a cool-star model
    (``teff_cool``: :func:`survey_scale.science.label_fit.fit_labels_set`) — *and* either

    - the dereddened Gaia colour (BP−RP)₀ = (BP−RP) − (R_BP − R_RP) E(B−V) > 0.4, with R_BP = 3.24,
      R_RP = 1.91 (Chen et al. 2019, as P2 §5.3) and E(B−V) of step ``extinction`` — not for spectra LAMOST
      classes O or B, as P2 exempts its OB-star sample (a cool-star model fitted to an O star lands below
      7,000 K too, and an O star reddened beyond its E(B−V) would be taken for a cool one), or
    - the spectra alone: the cool-star model fits better than the hot-star model (``chi2_red_cool`` <
      ``chi2_red_hot``, the full-spectrum fits' reduced χ² over the same pixels).

    The second clause is what decides without a Gaia colour; it also catches what the colour clause misses by
    construction: E(B−V) comes from intrinsic colours *at the fitted T_eff*, so a cool star fitted hot is
    dereddened towards a hot star's colour.
``flag_non_stellar``
    LAMOST's class is QSO or GALAXY (never in the final sample, whatever ``ingest.classes`` says).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from survey_scale.core.fit_flags import FLAG_NO_DATA, FLAG_NOT_CONVERGED, FLAG_SNR_LT_5, FLAG_TEFF_LT_7000

R_BP = 3.24
"""A_BP / E(B−V) (Chen et al. 2019, P2 §5.3)."""
R_RP = 1.91
"""A_RP / E(B−V) (Chen et al. 2019, P2 §5.3)."""
BP_RP0_COOL = 0.4
"""(BP−RP)₀ above which a star is intrinsically cool (P2 §5.1)."""
TEFF_COOL = 7000.0
"""Independent cool-star T_eff (K) below which a star is cool (P2 §5.1)."""
NON_STELLAR_CLASSES = ("QSO", "GALAXY")
"""LAMOST classes that are not stars."""

RULES = (
    "flag_teff_lt_7000",
    "flag_snr_lt_5",
    "flag_not_converged",
    "flag_chi2ratio",
    "flag_cool_star",
    "flag_non_stellar",
)
"""The flag columns, one per rule, in the order of the module docstring."""

DESCRIPTIONS: dict[str, str] = {
    "bp_rp0": "dereddened Gaia colour (BP-RP) - (3.24 - 1.91) E(B-V) (P2 5.3)",
    "flag_teff_lt_7000": "1 = Teff < 7000 K (P2 5.1)",
    "flag_snr_lt_5": "1 = S/N < 5 (P2 5.1)",
    "flag_not_converged": "1 = a fit that entered the labels did not converge",
    "flag_chi2ratio": "1 = chi2ratio above chi2ratio.flag (P2 5.2)",
    "flag_cool_star": "1 = intrinsically cool: cool-star model Teff < 7000 K and ((BP-RP)0 > 0.4, not for LAMOST "
    "class O/B; or the cool-star model fits better than the hot-star model) (P2 5.1)",
    "flag_non_stellar": "1 = LAMOST class QSO or GALAXY",
    "final_sample": "1 = none of the flag_* rules is set and the fit has labels (P2 5.1)",
}


HOT_STAR_EVIDENCE = ("fit_flags", "teff_cool", "chi2_red_cool", "chi2_red_hot")
"""The per-spectrum columns :func:`hot_star_candidates` reads (the fit's)."""


def spectrally_cool(teff_cool: np.ndarray, chi2_red_cool: np.ndarray, chi2_red_hot: np.ndarray) -> np.ndarray:
    """The spectra alone say cool: the cool-star model's T_eff < 7,000 K and it fits better than the hot-star
    model (the second clause of ``flag_cool_star``; NaN: False)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(teff_cool, np.float64) < TEFF_COOL) & (
            np.asarray(chi2_red_cool, np.float64) < np.asarray(chi2_red_hot, np.float64)
        )


def hot_star_candidates(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Spectra the survey-wide models of hot stars learn from (chi2ratio's χ² model, the erroneous-spectrum
    limits and references, the repeat-visit calibration, the MKs networks): neither fitted below 7,000 K
    (``fit_flags``) nor :func:`spectrally_cool`. A candidate list's cool stars would otherwise set a hot star's
    χ² scale, its error calibration and its MKs (issue 23). ``columns`` holds ``fit_flags`` and, where the fit
    wrote them, ``teff_cool``, ``chi2_red_cool``, ``chi2_red_hot`` (without them only the first test applies).
    Decided from the fit alone, so every reduction after step ``fit`` can use it."""
    fit_flags = np.asarray(columns["fit_flags"]).astype(np.int64)
    hot = (fit_flags & FLAG_TEFF_LT_7000) == 0
    if all(name in columns for name in HOT_STAR_EVIDENCE[1:]):
        hot &= ~spectrally_cool(columns["teff_cool"], columns["chi2_red_cool"], columns["chi2_red_hot"])
    return hot


def dereddened_bp_rp(bp: np.ndarray, rp: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """(BP−RP)₀ = (BP − RP) − (R_BP − R_RP) E(B−V) (mag; NaN where any input is missing)."""
    bp, rp, ebv = (np.asarray(a, dtype=np.float64) for a in (bp, rp, ebv))
    return (bp - rp) - (R_BP - R_RP) * ebv


def _text(values: np.ndarray) -> np.ndarray:
    """Upper-case, stripped fixed-width strings (via object: Zarr's variable-length strings, numpy StringDType,
    do not cast to fixed-width str directly)."""
    return np.char.upper(np.char.strip(np.asarray(values).astype(object).astype(str)))


def final_sample_flags(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rules' flags (int16, 0/1), ``bp_rp0`` and ``final_sample`` of a block of rows (module docstring).

    ``columns`` holds (n,) arrays: ``fit_flags`` (bits of :data:`survey_scale.core.fit_flags.FLAG_BITS`),
    ``teff`` (K, the combined labels), ``chi2ratio``, ``flag_chi2ratio``, ``teff_cool``, ``chi2_red_cool``,
    ``chi2_red_hot``, ``BP``, ``RP``, ``ebv`` (mag; NaN where unknown), ``lasp_class`` and ``lasp_subclass``
    (LAMOST CLASS and SUBCLASS, text). Missing evidence never sets a flag: NaN compares false.
    """
    fit_flags = np.asarray(columns["fit_flags"]).astype(np.int64)
    teff = np.asarray(columns["teff"], dtype=np.float64)
    bp_rp0 = dereddened_bp_rp(columns["BP"], columns["RP"], columns["ebv"])
    teff_cool = np.asarray(columns["teff_cool"], dtype=np.float64)
    cool_spectrum = spectrally_cool(teff_cool, columns["chi2_red_cool"], columns["chi2_red_hot"])
    lasp_class = _text(columns["lasp_class"])
    subclass = _text(columns["lasp_subclass"])
    ob_class = np.char.startswith(subclass, "O") | np.char.startswith(subclass, "B")
    with np.errstate(invalid="ignore"):
        flags = {
            "flag_teff_lt_7000": (fit_flags & FLAG_TEFF_LT_7000) > 0,
            "flag_snr_lt_5": (fit_flags & FLAG_SNR_LT_5) > 0,
            "flag_not_converged": (fit_flags & FLAG_NOT_CONVERGED) > 0,
            "flag_chi2ratio": np.asarray(columns["flag_chi2ratio"]) == 1,
            "flag_cool_star": ((teff_cool < TEFF_COOL) & (bp_rp0 > BP_RP0_COOL) & ~ob_class) | cool_spectrum,
            "flag_non_stellar": np.isin(lasp_class, NON_STELLAR_CLASSES),
        }
    has_fit = (
        ((fit_flags & FLAG_NO_DATA) == 0) & np.isfinite(teff) & np.isfinite(np.asarray(columns["chi2ratio"], float))
    )
    any_rule = np.logical_or.reduce([flags[name] for name in RULES])
    out = {"bp_rp0": bp_rp0.astype(np.float32)}
    out.update({name: flags[name].astype(np.int16) for name in RULES})
    out["final_sample"] = (has_fit & ~any_rule).astype(np.int16)
    return out
