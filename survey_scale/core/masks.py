"""Wavelength windows and pixel masks used by every stage (SPEC §3, §4, §5.3, §8).

All wavelengths are **vacuum**, in Å, in the rest frame of the star (the cube's frame). Air wavelengths
from the literature were converted with the Morton (2000) formula. Windows are defined once here and
re-used: the continuum normalization (§3), the PCA clean windows and emission diagnostics (§4), the fit
masks (§5.3), the MKs network masks (§8) and the mock synthesizer's interstellar and telluric features.

Sources
-------
- Hydrogen Balmer and Paschen series: NIST Atomic Spectra Database (air λ), converted to vacuum. Half
  widths chosen to cover the Stark wings of B/A dwarfs at R ~ 1800 (P2 Fig. 8 bottom shows the masked
  hydrogen windows of an early A star).
- He I, He II, Mg II, Ca II, O I, Fe II: NIST ASD.
- Diffuse interstellar bands: Hobbs et al. (2008, ApJ 680, 1256) catalogue (the DIB database that P2 §4.5
  cites, http://dibdata.org), strongest bands only, half widths from their FWHM.
- Na I D and Ca II K interstellar lines: P2 §4.5.
- Telluric bands (O2 B and A bands, H2O): standard atmospheric transmission at Xinglong (LAMOST site),
  band limits rounded outward.
- Dichroic region 5700–6050 Å and the blue/red edges 3820 / 8880 Å: P2 §4.5.
- Hα excess window 6557–6571 Å and χ² windows 6400–6550 / 6590–6690 Å: P1 §3, Fig. 3.
- MKs-network masks: P1 §5 (5720–6050, 6270–6380, 6800–6990, 7100–7320, 7520–7740, 8050–8350 Å).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A wavelength window [lo, hi] in vacuum Å with the kind of feature it covers."""

    name: str
    lo: float
    hi: float
    kind: str

    def __post_init__(self) -> None:
        if not self.lo < self.hi:
            raise ValueError(f"window {self.name}: lo={self.lo} must be < hi={self.hi}")


def _around(name: str, centre: float, half_width: float, kind: str) -> Window:
    return Window(name, centre - half_width, centre + half_width, kind)


# --- line centres (vacuum Å) --------------------------------------------------------------------------

BALMER_LINES: dict[str, float] = {
    "H_alpha": 6564.61,
    "H_beta": 4862.69,
    "H_gamma": 4341.69,
    "H_delta": 4102.90,
    "H_epsilon": 3971.19,
    "H8": 3890.15,
    "H9": 3836.47,
    "H10": 3798.98,
    "H11": 3771.70,
}
PASCHEN_LINES: dict[str, float] = {
    "Pa11": 8865.21,
    "Pa12": 8752.87,
    "Pa13": 8667.40,
    "Pa14": 8600.75,
    "Pa15": 8547.73,
    "Pa16": 8504.82,
    "Pa17": 8469.58,
    "Pa18": 8440.27,
    "Pa19": 8415.63,
    "Pa20": 8394.71,
}
HELIUM_I_LINES: dict[str, float] = {
    "HeI_4010": 4010.39,
    "HeI_4027": 4027.33,
    "HeI_4145": 4144.93,
    "HeI_4389": 4389.16,
    "HeI_4473": 4472.73,
    "HeI_4714": 4714.46,
    "HeI_4923": 4923.30,
    "HeI_5017": 5017.08,
    "HeI_5877": 5877.25,
    "HeI_6680": 6679.99,
    "HeI_7067": 7067.14,
}
HELIUM_II_LINES: dict[str, float] = {
    "HeII_4201": 4201.01,
    "HeII_4543": 4542.86,
    "HeII_4687": 4687.01,
    "HeII_5413": 5413.02,
}
CA_II_K: float = 3934.77
CA_II_H: float = 3969.59
NA_I_D: tuple[float, float] = (5891.58, 5897.55)
CA_II_TRIPLET: tuple[float, float, float] = (8500.35, 8544.44, 8664.52)
MG_II_4481: float = 4482.39
O_I_7774: float = 7776.14
O_I_8446: float = 8448.68
FE_II_EMISSION: tuple[float, ...] = (4925.29, 5019.84, 5170.47)

DIB_CENTRES: dict[str, tuple[float, float]] = {
    # name: (vacuum centre, FWHM) in Å; Hobbs et al. (2008)
    "DIB_4430": (4429.44, 20.0),
    "DIB_4503": (4503.06, 3.0),
    "DIB_4728": (4728.15, 3.0),
    "DIB_4764": (4763.93, 4.0),
    "DIB_4883": (4883.36, 16.0),
    "DIB_5707": (5706.66, 2.5),
    "DIB_5782": (5782.08, 2.1),
    "DIB_5799": (5798.67, 1.0),
    "DIB_6198": (6197.69, 0.5),
    "DIB_6205": (6204.77, 4.0),
    "DIB_6272": (6271.58, 1.5),
    "DIB_6286": (6285.58, 4.0),
    "DIB_6381": (6381.08, 0.8),
    "DIB_6615": (6615.45, 1.0),
    "DIB_6995": (6995.06, 1.5),
    "DIB_7226": (7226.02, 1.5),
    "DIB_8623": (8622.77, 4.0),
}

TELLURIC_BANDS: tuple[Window, ...] = (
    Window("O2_B", 6865.0, 6935.0, "telluric"),
    Window("H2O_7200", 7160.0, 7340.0, "telluric"),
    Window("O2_A", 7590.0, 7710.0, "telluric"),
    Window("H2O_8200", 8125.0, 8350.0, "telluric"),
)

DICHROIC = Window("dichroic", 5700.0, 6050.0, "instrument")
BLUE_EDGE = 3820.0
RED_EDGE = 8880.0

# --- window sets --------------------------------------------------------------------------------------

_BALMER_HALF_WIDTH = {
    "H_alpha": 50.0,
    "H_beta": 50.0,
    "H_gamma": 45.0,
    "H_delta": 40.0,
    "H_epsilon": 30.0,
    "H8": 25.0,
    "H9": 20.0,
    "H10": 15.0,
    "H11": 12.0,
}

HYDROGEN_WINDOWS: tuple[Window, ...] = tuple(
    [_around(n, c, _BALMER_HALF_WIDTH[n], "hydrogen") for n, c in BALMER_LINES.items()]
    + [_around(n, c, 15.0, "hydrogen") for n, c in PASCHEN_LINES.items()]
)
"""Balmer and Paschen windows: masked for the continuum (§3) and in the H-masked fit (§5.3)."""

STRONG_LINE_WINDOWS: tuple[Window, ...] = (
    _around("CaII_H_K", 0.5 * (CA_II_K + CA_II_H), 30.0, "strong_line"),
    _around("HeI_4027", HELIUM_I_LINES["HeI_4027"], 8.0, "strong_line"),
    _around("HeI_4473", HELIUM_I_LINES["HeI_4473"], 8.0, "strong_line"),
    _around("MgII_4482", MG_II_4481, 6.0, "strong_line"),
    _around("HeII_4687", HELIUM_II_LINES["HeII_4687"], 8.0, "strong_line"),
    _around("HeI_5877", HELIUM_I_LINES["HeI_5877"], 8.0, "strong_line"),
    _around("HeI_6680", HELIUM_I_LINES["HeI_6680"], 8.0, "strong_line"),
    _around("OI_7776", O_I_7774, 8.0, "strong_line"),
    *(_around(f"CaII_{int(c)}", c, 10.0, "strong_line") for c in CA_II_TRIPLET),
)
"""Other strong stellar lines masked for the continuum (§3)."""

_LSF_MARGIN = 2.5
"""Å added to each interstellar window: ~1.5 σ of the R ≈ 1800 line-spread function at 6000 Å, so that the
broadened feature, not only its intrinsic FWHM, is masked."""

INTERSTELLAR_WINDOWS: tuple[Window, ...] = (
    *(_around(n, c, max(fwhm, 2.0) + _LSF_MARGIN, "interstellar") for n, (c, fwhm) in DIB_CENTRES.items()),
    Window("NaI_D", NA_I_D[0] - 4.0 - _LSF_MARGIN, NA_I_D[1] + 4.0 + _LSF_MARGIN, "interstellar"),
    _around("CaII_K_ISM", CA_II_K, 4.0 + _LSF_MARGIN, "interstellar"),
)
"""Diffuse interstellar bands, interstellar Na I D and Ca II K (§3, §5.3), widened by the LSF."""

_EMITTING_HYDROGEN = ("H_alpha", "H_beta", "H_gamma", *PASCHEN_LINES)

EMISSION_WINDOWS: tuple[Window, ...] = (
    *(w for w in HYDROGEN_WINDOWS if w.name in _EMITTING_HYDROGEN),
    *(_around(n, c, 10.0, "emission") for n, c in HELIUM_I_LINES.items()),
    _around("HeII_4687_em", HELIUM_II_LINES["HeII_4687"], 10.0, "emission"),
    *(_around(f"FeII_{int(c)}", c, 8.0, "emission") for c in FE_II_EMISSION),
    _around("OI_7776_em", O_I_7774, 10.0, "emission"),
    _around("OI_8449_em", O_I_8446, 10.0, "emission"),
    *(_around(f"CaII_{int(c)}_em", c, 10.0, "emission") for c in CA_II_TRIPLET),
)
"""Where emission-line stars (Be, Herbig Ae/Be, H II contamination) may show emission (P1 §3): Hα, Hβ, Hγ,
the Paschen series (often with the Ca II triplet), He I, He II 4686, Fe II, O I. The higher Balmer lines
(Hδ and up) stay in the clean windows: the Balmer decrement makes their emission weak except in the
strongest emitters (which the Hα excess flags anyway), and their Stark profiles carry most of the Teff and
log g information that lets the PCA predict the Hα absorption from the clean windows (on the mock they
halve the scatter of the Hα excess of non-emission stars)."""

FIT_WINDOWS: tuple[Window, ...] = (
    *INTERSTELLAR_WINDOWS,
    *TELLURIC_BANDS,
    DICHROIC,
    Window("blue_edge", 0.0, BLUE_EDGE, "edge"),
    Window("red_edge", RED_EDGE, 1e5, "edge"),
)
"""Pixels excluded from every label fit (SPEC §5.3, P2 §4.5)."""

CONTINUUM_WINDOWS: tuple[Window, ...] = (
    *HYDROGEN_WINDOWS,
    *STRONG_LINE_WINDOWS,
    *INTERSTELLAR_WINDOWS,
    *TELLURIC_BANDS,
)
"""Pixels given zero weight in the pseudo-continuum (SPEC §3, P2 Eq. 1–2)."""

HALPHA_EXCESS_WINDOW = Window("Halpha_excess", 6557.0, 6571.0, "diagnostic")
HALPHA_CHI2_WINDOWS: tuple[Window, ...] = (
    Window("Halpha_chi2_blue", 6400.0, 6550.0, "diagnostic"),
    Window("Halpha_chi2_red", 6590.0, 6690.0, "diagnostic"),
)

MKS_NETWORK_WINDOWS: tuple[Window, ...] = tuple(
    Window(f"mks_mask_{int(lo)}", lo, hi, "mks")
    for lo, hi in (
        (5720.0, 6050.0),
        (6270.0, 6380.0),
        (6800.0, 6990.0),
        (7100.0, 7320.0),
        (7520.0, 7740.0),
        (8050.0, 8350.0),
    )
)
"""Regions dropped from the non-emission MKs network input (P1 §5)."""


def window_mask(wave: np.ndarray, windows: Iterable[Window]) -> np.ndarray:
    """Boolean mask, True where ``wave`` falls inside any of ``windows``.

    Parameters
    ----------
    wave
        Wavelengths in vacuum Å, any shape.
    windows
        Windows to mark.

    Returns
    -------
    numpy.ndarray
        Boolean array of ``wave``'s shape.
    """
    wave = np.asarray(wave)
    out = np.zeros(wave.shape, dtype=bool)
    for w in windows:
        out |= (wave >= w.lo) & (wave <= w.hi)
    return out


def clean_window_mask(wave: np.ndarray) -> np.ndarray:
    """True on the PCA clean-window pixels (SPEC §4, P1 §3).

    Clean pixels are free of possible emission (:data:`EMISSION_WINDOWS`), of telluric bands, of the
    dichroic region and of the noisy blue/red edges.
    """
    excluded = (*EMISSION_WINDOWS, *TELLURIC_BANDS, DICHROIC)
    wave = np.asarray(wave)
    return ~window_mask(wave, excluded) & (wave >= BLUE_EDGE) & (wave <= RED_EDGE)
