"""Bits of the label fit's ``fit_flags`` (SPEC §5.3, P2 §5.1): set by :func:`survey_scale.science.label_fit.fit_labels`,
read by the final-sample rules and the products (a module without torch, so that those need not load it)."""

from __future__ import annotations

TEFF_MIN_FLAG = 7000.0
"""Combined T_eff (K) below which ``FLAG_TEFF_LT_7000`` is set (P2 §5.1)."""
SNR_MIN_FLAG = 5.0
"""S/N below which ``FLAG_SNR_LT_5`` is set (P2 §5.1)."""

FLAG_TEFF_LT_7000 = 1
FLAG_SNR_LT_5 = 2
FLAG_NOT_CONVERGED = 4
FLAG_NO_DATA = 8
FLAG_VSINI_NEGATIVE = 16
FLAG_REFIT = 32
FLAG_AT_BOUND = 64
FLAG_BITS = {
    FLAG_TEFF_LT_7000: "teff_lt_7000: combined Teff < 7000 K (P2 §5.1 discards these)",
    FLAG_SNR_LT_5: "snr_lt_5: S/N < 5 (P2 §5.1 discards these)",
    FLAG_NOT_CONVERGED: "not_converged: the full, H-masked or re-fit did not pass the convergence test",
    FLAG_NO_DATA: "no_data: too few usable pixels to fit",
    FLAG_VSINI_NEGATIVE: "vsini_negative: raw vsini < 0, reported as 0 (P2 §5.1)",
    FLAG_REFIT: "refit: full fit redone from the H-masked labels (P2 footnote 4)",
    FLAG_AT_BOUND: "at_bound: a label of the combined result sits at a bound of the fit box",
}
"""Bits of the ``flags`` output of :func:`survey_scale.science.label_fit.fit_labels` (cube ``fit_flags``)."""
