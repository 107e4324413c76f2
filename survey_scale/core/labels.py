"""The 11 stellar labels of the full-spectrum fit (SPEC §5, P2 §3–§4).

The order of :data:`LABEL_NAMES` is the order of the `label` dimension of the cube, of emulator inputs and
of fit outputs everywhere in survey_scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABEL_NAMES: tuple[str, ...] = (
    "teff",
    "logg",
    "vmic",
    "vsini",
    "he_frac",
    "c_h",
    "n_h",
    "o_h",
    "si_h",
    "s_h",
    "fe_h",
)
"""Label names in their canonical order."""

LABEL_UNITS: dict[str, str] = {
    "teff": "K",
    "logg": "dex (cm s-2)",
    "vmic": "km s-1",
    "vsini": "km s-1",
    "he_frac": "N_He/N_tot",
    "c_h": "dex",
    "n_h": "dex",
    "o_h": "dex",
    "si_h": "dex",
    "s_h": "dex",
    "fe_h": "dex",
}

LABEL_TEX: dict[str, str] = {
    "teff": r"$T_\mathrm{eff}$",
    "logg": r"$\log g$",
    "vmic": r"$v_\mathrm{mic}$",
    "vsini": r"$v\sin i$",
    "he_frac": r"$N_\mathrm{He}/N_\mathrm{tot}$",
    "c_h": "[C/H]",
    "n_h": "[N/H]",
    "o_h": "[O/H]",
    "si_h": "[Si/H]",
    "s_h": "[S/H]",
    "fe_h": "[Fe/H]",
}

LABEL_RANGES: dict[str, tuple[float, float]] = {
    "teff": (7000.0, 45000.0),
    "logg": (0.0, 5.0),
    "vmic": (0.0, 15.0),
    "vsini": (0.0, 500.0),
    "he_frac": (0.0, 0.25),
    "c_h": (-2.0, 1.0),
    "n_h": (-2.0, 1.5),
    "o_h": (-2.0, 1.0),
    "si_h": (-2.0, 1.5),
    "s_h": (-2.0, 1.5),
    "fe_h": (-2.5, 0.5),
}
"""Physical range of each label covered by the built-in synthesizer and its model grid (§10).

Teff, log g, vmic, vsini and N_He/N_tot follow P2 Table 1 (Teff capped at 45,000 K, the synthesizer's
limit). The abundance ranges are P2's [X/Fe] ranges narrowed to where hot-star lines still respond at
R ~ 1800 (P2 §4.2 notes that below [X/H] ~ -1 the features vanish).
"""

N_LABELS: int = len(LABEL_NAMES)

P2_TABLE5_CORRELATIONS: tuple[tuple[str, str], ...] = (
    ("teff", "logg"),
    ("teff", "vsini"),
    ("teff", "si_h"),
    ("teff", "fe_h"),
    ("logg", "vsini"),
    ("logg", "si_h"),
    ("logg", "fe_h"),
    ("vsini", "si_h"),
    ("vsini", "fe_h"),
    ("si_h", "fe_h"),
)
"""The 10 label pairs whose correlation coefficients P2 Table 5 publishes."""


def output_label_names(fitted: Sequence[str]) -> tuple[str, ...]:
    """The label order of the fit's outputs for an emulator fitting ``fitted``: the 11 labels of
    :data:`survey_scale.core.labels.LABEL_NAMES` when ``fitted`` is a subset of them (the others NaN),
    else ``fitted`` itself (an emulator with labels of its own)."""
    fitted = tuple(str(n) for n in fitted)
    return LABEL_NAMES if set(fitted) <= set(LABEL_NAMES) else fitted


def labels_fitted_mask(fitted: Sequence[str], names: Sequence[str]) -> int:
    """Bit mask of the labels ``fitted`` among ``names``: bit i set when ``names[i]`` is fitted."""
    return sum(1 << i for i, name in enumerate(names) if name in set(fitted))


_LABEL_OUTPUTS = ("labels", "errors", "full_labels", "full_errors", "hmask_labels", "hmask_errors")
_COV_OUTPUTS = ("cov", "full_cov", "hmask_cov")


def to_label_order(out: dict[str, np.ndarray], fitted: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The outputs of the label fit (labels in the emulator's order ``fitted``) on the labels ``names``.

    Labels of ``names`` the emulator does not fit are NaN in the label, error and covariance outputs; the
    result has ``labels_fitted`` (n,) uint16, :func:`labels_fitted_mask`. Every name of ``fitted`` must be
    in ``names``.
    """
    fitted, names = list(fitted), list(names)
    missing = [f for f in fitted if f not in names]
    if missing:
        raise ValueError(f"to_label_order: fitted labels {missing} are not among the output labels {names}")
    n = int(np.asarray(out["labels"]).shape[0])
    pos = np.array([names.index(f) for f in fitted], dtype=np.int64)
    res = dict(out)
    if fitted != names:
        for key in _LABEL_OUTPUTS:
            a = np.full((n, len(names)), np.nan)
            a[:, pos] = out[key]
            res[key] = a
        for key in _COV_OUTPUTS:
            a = np.full((n, len(names), len(names)), np.nan)
            a[:, pos[:, None], pos[None, :]] = out[key]
            res[key] = a
    res["labels_fitted"] = np.full(n, labels_fitted_mask(fitted, names), dtype=np.uint16)
    return res
