"""The 11 stellar labels of the full-spectrum fit (SPEC §5, P2 §3–§4).

The order of :data:`LABEL_NAMES` is the order of the `label` dimension of the cube, of emulator inputs and
of fit outputs everywhere in survey_scale.
"""

from __future__ import annotations

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
