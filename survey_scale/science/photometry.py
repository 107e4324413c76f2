"""Photometric bands, intrinsic colours and interstellar extinction for hot stars (SPEC §7).

The single place that holds the extinction coefficients R_band = A_band / E(B−V), the Fitzpatrick (1999)
extinction curve and the intrinsic colour table: the extinction stage uses them, and the mock release
(:mod:`survey_scale.mock.photometry`) builds its stars from them — with the log g, [Fe/H] and star-to-star
colour differences real stars show, so that the pipeline is not evaluated on its own assumptions.

Extinction curve
    Fitzpatrick (1999, PASP 111, 63), R_V = 3.1, from the ``dust_extinction`` package (``F99``): the spline
    through the IR and optical anchors of F99 Table 4 and the Fitzpatrick & Massa (1990) UV parametrization,
    in A(λ)/E(B−V). (Earlier versions carried a hand-written copy; the values agree to 1e-4.)

Extinction coefficients
    R_band for a hot star as P1 §4 prescribes (a Teff = 12,000 K, log g = 4.5 spectrum and the F99 curve with
    R_V = 3.1), in the limit of small E(B−V): the photon-weighted mean of A(λ)/E(B−V) over each passband,
    R = ∫ F_λ S(λ) λ k(λ) dλ / ∫ F_λ S(λ) λ dλ. The Kurucz model of P1 is replaced by a 12,000 K black body
    with a 1 mag Balmer jump below 3646 Å (what a late-B dwarf shows); the coefficients change by < 1 %
    between a 10,000 and a 15,000 K black body. Passbands: Gaia DR2 (Maíz Apellániz & Weiler 2018), SDSS
    (Doi et al. 2010), 2MASS (Cohen et al. 2003), resampled in ``data/passbands_sampled.txt``;
    :func:`band_extinction_coefficient` recomputes the numbers (a test checks they agree). For broad bands
    the coefficient falls with the amount of extinction (R_G = 2.91 at E(B−V) → 0, 2.73 at 0.5); the mock
    applies the small-extinction value linearly, as photometric extinction stages usually do.

Intrinsic colours
    The Pecaut & Mamajek (2013, ApJS 208, 9) dwarf colour–Teff sequence (E. Mamajek's table, version
    2024.05.15; rows O3V–M6V copied to ``data/pm13_dwarf_sequence.txt``), interpolated linearly in log Teff.
    Extensions, all documented in :func:`intrinsic_colors`:

    - O3V–O8.5V lack V−Ks, J−H, H−Ks, V−Rc and V−Ic: each is extrapolated linearly in B−V (known for every
      row) from the three hottest rows that have it, so colours saturate toward the Rayleigh–Jeans limit as
      B−V does.
    - Gaia BP−RP and G−RP exist only from B9V on: hotter rows use a straight line in V−Ic fitted to the
      B9V–A5V rows; G−V is held at its hottest tabulated value where missing.
    - SDSS g, r, i from B−V and Rc−Ic with the Jester et al. (2005) transformations for stars (the
      U−B < 0 set for hot stars, the all-star set for U−B > 0.1, blended linearly in between).
    - The table is a function of Teff alone: giants and supergiants take the dwarf colours of their Teff.
      At fixed Teff the optical and near-IR colours of hot stars depend on gravity and metallicity by a few
      hundredths of a magnitude (P1 §4: empirical and model relations differ by < 0.03 mag).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"

BANDS: tuple[str, ...] = ("G", "BP", "RP", "J", "H", "Ks", "g", "r", "i")
"""Photometric bands of the mock cross-match table: Gaia DR2, 2MASS and XSTPS-GAC/APASS-like g, r, i."""

R_V: float = 3.1
"""Total-to-selective extinction ratio of the adopted Fitzpatrick (1999) curve."""

EXTINCTION_COEFFS: dict[str, float] = {
    "G": 2.909,
    "BP": 3.554,
    "RP": 1.925,
    "J": 0.824,
    "H": 0.520,
    "Ks": 0.350,
    "g": 3.811,
    "r": 2.602,
    "i": 1.931,
}
"""R_band = A_band / E(B−V) for a hot star (12,000 K) and the F99 R_V = 3.1 curve, E(B−V) → 0.

Computed by :func:`band_extinction_coefficient` (see the module docstring for the ingredients).
A_Ks = 0.350 E(B−V) matches P1 §4 ("E(B−V) = 1 mag ... ∼0.3 mag extinction in the Ks band").
"""

SUN_MBOL: float = 4.74
"""Bolometric absolute magnitude of the Sun (IAU 2015 B2), the zero point of the P&M table."""


# --- extinction curve --------------------------------------------------------------------------------


def fitzpatrick99(wave: np.ndarray, r_v: float = R_V) -> np.ndarray:
    """Fitzpatrick (1999) extinction curve A(λ)/E(B−V), from ``dust_extinction`` (its ``F99`` model gives
    A(λ)/A(V); × R_V gives A(λ)/E(B−V)).

    Parameters
    ----------
    wave
        Wavelengths in Å (vacuum or air: the curve is far smoother than the difference), any shape,
        1,000 Å–3.3 µm (the model's 0.3–10 µm⁻¹).
    r_v
        R_V = A_V / E(B−V).

    Returns
    -------
    numpy.ndarray
        A(λ)/E(B−V) (dimensionless, ``wave``'s shape): multiply by E(B−V) for A(λ) in magnitudes.
    """
    import astropy.units as u
    from dust_extinction.parameter_averages import F99

    wave = np.asarray(wave, dtype=np.float64)
    x = 1.0e4 / wave.ravel()
    if np.any((x < 0.3) | (x > 10.0)):
        raise ValueError("fitzpatrick99: the F99 curve is defined for 1,000 Å ≤ λ ≤ 33,333 Å only")
    return (np.asarray(F99(Rv=float(r_v))(x / u.micron)) * float(r_v)).reshape(wave.shape)


def reddening_transmission(wave: np.ndarray, ebv: np.ndarray | float, r_v: float = R_V) -> np.ndarray:
    """Continuum transmission 10^(−0.4 E(B−V) k(λ)) of the F99 curve.

    Parameters
    ----------
    wave
        (P,) wavelengths in Å.
    ebv
        Scalar or (n,) E(B−V) in mag.

    Returns
    -------
    numpy.ndarray
        (P,) for a scalar ``ebv``, else (n, P); values in (0, 1].
    """
    k = fitzpatrick99(wave, r_v)
    ebv = np.asarray(ebv, dtype=np.float64)
    return 10.0 ** (-0.4 * ebv[..., None] * k)


# --- passbands and extinction coefficients --------------------------------------------------------------


@lru_cache(maxsize=1)
def load_passbands() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The resampled passbands of ``data/passbands_sampled.txt``.

    Returns
    -------
    dict
        band → (wavelength in Å, relative photon-counting response), both (m,) float64.
    """
    text = (DATA_DIR / "passbands_sampled.txt").read_text().splitlines()
    rows = [ln.split() for ln in text if ln.strip() and not ln.startswith("#")]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for band in BANDS:
        values = np.array([[float(r[1]), float(r[2])] for r in rows if r[0] == band])
        out[band] = (values[:, 0], values[:, 1])
    return out


def hot_star_sed(wave: np.ndarray, teff: float = 12000.0, balmer_jump_mag: float = 1.0) -> np.ndarray:
    """Black-body F_λ with a Balmer jump, the stand-in for P1's 12,000 K Kurucz spectrum.

    Parameters
    ----------
    wave
        Wavelengths in Å.
    teff
        Temperature in K.
    balmer_jump_mag
        Flux drop (mag) below the Balmer limit at 3646 Å.

    Returns
    -------
    numpy.ndarray
        F_λ in arbitrary units, ``wave``'s shape.
    """
    lam_cm = np.asarray(wave, dtype=np.float64) * 1e-8
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    flux = 1.0 / lam_cm**5 / np.expm1(h * c / (lam_cm * k * teff))
    return np.where(np.asarray(wave) < 3646.0, flux * 10.0 ** (-0.4 * balmer_jump_mag), flux)


def band_extinction_coefficient(
    band: str, teff: float = 12000.0, ebv: float = 0.0, r_v: float = R_V, n_sample: int = 4000
) -> float:
    """A_band / E(B−V) of a hot star through a passband (how :data:`EXTINCTION_COEFFS` was computed).

    Parameters
    ----------
    band
        One of :data:`BANDS`.
    teff
        Temperature (K) of the black-body stand-in spectrum.
    ebv
        E(B−V) in mag; 0 gives the small-extinction limit (photon-weighted mean of k(λ)).
    r_v
        R_V of the F99 curve.
    n_sample
        Number of wavelength samples across the passband.

    Returns
    -------
    float
        R_band.
    """
    w_pb, s_pb = load_passbands()[band]
    wave = np.linspace(w_pb[0], w_pb[-1], n_sample)
    weight = hot_star_sed(wave, teff) * np.interp(wave, w_pb, s_pb) * wave  # photon counting
    k = fitzpatrick99(wave, r_v)
    norm = np.trapezoid(weight, wave)
    if ebv <= 0.0:
        return float(np.trapezoid(weight * k, wave) / norm)
    return float(-2.5 * np.log10(np.trapezoid(weight * 10.0 ** (-0.4 * k * ebv), wave) / norm) / ebv)


# --- the dwarf sequence ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def dwarf_sequence() -> dict[str, np.ndarray]:
    """The Pecaut & Mamajek (2013) dwarf table rows O3V–M6V, sorted by increasing Teff.

    Returns
    -------
    dict
        Column name (as in the table header: ``Teff``, ``BCv``, ``B-V``, ``V-Ks``, ``Msun`` ...) → (m,)
        float64 array, NaN where the table has no value; ``SpT`` → array of spectral-type strings.
    """
    path = DATA_DIR / "pm13_dwarf_sequence.txt"
    lines = path.read_text().splitlines()
    header = next(ln for ln in lines if ln.startswith("#SpT")).lstrip("#").split()
    rows = [ln.split() for ln in lines if ln.strip() and not ln.startswith("#")]
    table: dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        if name in table or name.startswith("#"):  # the last column repeats SpT
            continue
        values = [r[i] if i < len(r) else "..." for r in rows]
        if name == "SpT":
            table[name] = np.array(values)
            continue
        table[name] = np.array([_to_float(v) for v in values])
    order = np.argsort(table["Teff"], kind="stable")
    return {k: v[order] for k, v in table.items()}


def _to_float(text: str) -> float:
    try:
        return float(text.rstrip(":"))
    except ValueError:
        return float("nan")


def _extrapolate_in(x: np.ndarray, y: np.ndarray, n_anchor: int = 3) -> np.ndarray:
    """Fill NaNs of ``y`` at the hot end by a straight line in ``x`` through the hottest known rows."""
    y = y.copy()
    known = np.flatnonzero(np.isfinite(y))
    hot = known[-n_anchor:]  # the table is sorted by increasing Teff
    slope, intercept = np.polyfit(x[hot], y[hot], 1)
    missing = ~np.isfinite(y)
    hot_missing = missing & (np.arange(y.size) > hot[-1])
    y[hot_missing] = slope * x[hot_missing] + intercept
    return y


@lru_cache(maxsize=1)
def colour_table() -> dict[str, np.ndarray]:
    """The dwarf sequence with the extensions of the module docstring: column → (m,) by increasing Teff (``logT``
    = log10 Teff; colours such as ``V-Ks``, ``Bp-Rp``, ``g-V``; ``BCv``, ``Msun``, ``R_Rsun``)."""
    t = dwarf_sequence()
    bv = t["B-V"]
    cols = {"logT": np.log10(t["Teff"]), "BCv": t["BCv"], "Msun": t["Msun"], "R_Rsun": t["R_Rsun"]}
    for name in ("V-Ks", "J-H", "H-Ks", "V-Rc", "V-Ic"):
        cols[name] = _extrapolate_in(bv, t[name])
    # G-V: nearly flat for hot stars; hold the hottest tabulated value where missing.
    gv = t["G-V"].copy()
    known = np.flatnonzero(np.isfinite(gv))
    gv[known[-1] + 1 :] = gv[known[-1]]
    cols["G-V"] = _fill_interior(cols["logT"], gv)
    # BP-RP, G-RP: straight line in V-Ic fitted on B9V-A5V where both are tabulated.
    vi = cols["V-Ic"]
    ref = (t["Teff"] >= 8100.0) & (t["Teff"] <= 10700.0) & np.isfinite(t["Bp-Rp"]) & np.isfinite(t["G-Rp"])
    for name in ("Bp-Rp", "G-Rp"):
        y = t[name].copy()
        slope, intercept = np.polyfit(vi[ref], y[ref], 1)
        hot = (t["Teff"] > 10700.0) & ~np.isfinite(y)
        y[hot] = slope * vi[hot] + intercept
        cols[name] = _fill_interior(cols["logT"], y)
    # SDSS g, r, i from Jester et al. (2005): (U-B < 0) set blended into the all-star set by U-B = 0.1.
    ub = _fill_interior(cols["logT"], t["U-B"])
    w = np.clip(ub / 0.1, 0.0, 1.0)  # 0 -> hot-star set, 1 -> all-star set
    rc_ic = cols["V-Ic"] - cols["V-Rc"]
    g_v = (1 - w) * (0.64 * bv - 0.13) + w * (0.60 * bv - 0.12)
    r_v = (1 - w) * (-0.46 * bv + 0.11) + w * (-0.42 * bv + 0.11)
    r_i = (1 - w) * (0.98 * rc_ic - 0.22) + w * (0.91 * rc_ic - 0.20)
    cols["g-V"], cols["r-V"], cols["r-i"] = g_v, r_v, r_i
    for name in ("V-Ks", "J-H", "H-Ks", "V-Rc", "V-Ic", "g-V", "r-V", "r-i", "BCv"):
        cols[name] = _fill_interior(cols["logT"], cols[name])
    return cols


def _fill_interior(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation over interior NaNs (the table has a few isolated gaps)."""
    ok = np.isfinite(y)
    if ok.all():
        return y
    return np.interp(x, x[ok], y[ok])


def _interp_logt(teff: np.ndarray, name: str) -> np.ndarray:
    cols = colour_table()
    logt = np.log10(np.asarray(teff, dtype=np.float64))
    return np.interp(logt, cols["logT"], cols[name])


def intrinsic_colors(teff: np.ndarray) -> dict[str, np.ndarray]:
    """Intrinsic absolute magnitude of each band relative to Ks, M_band − M_Ks (mag).

    Parameters
    ----------
    teff
        (n,) effective temperatures in K; clipped to the table range (2810–45900 K).

    Returns
    -------
    dict
        band (each of :data:`BANDS` and ``"V"``) → (n,) M_band − M_Ks.

    Notes
    -----
    The colours of the Pecaut & Mamajek (2013) dwarf sequence with the extensions listed in the module
    docstring; the same colours are used for all gravities.
    """
    teff = np.asarray(teff, dtype=np.float64)
    v_ks = _interp_logt(teff, "V-Ks")
    j_h, h_ks = _interp_logt(teff, "J-H"), _interp_logt(teff, "H-Ks")
    g_ks = _interp_logt(teff, "G-V") + v_ks
    rp_ks = g_ks - _interp_logt(teff, "G-Rp")
    bp_ks = rp_ks + _interp_logt(teff, "Bp-Rp")
    r_ks = _interp_logt(teff, "r-V") + v_ks
    return {
        "V": v_ks,
        "G": g_ks,
        "BP": bp_ks,
        "RP": rp_ks,
        "J": j_h + h_ks,
        "H": h_ks,
        "Ks": np.zeros_like(teff),
        "g": _interp_logt(teff, "g-V") + v_ks,
        "r": r_ks,
        "i": r_ks - _interp_logt(teff, "r-i"),
    }


def bolometric_correction_ks(teff: np.ndarray) -> np.ndarray:
    """BC_Ks = M_bol − M_Ks = BC_V + (V − Ks) of the dwarf sequence (mag), (n,) for (n,) Teff in K."""
    return _interp_logt(teff, "BCv") + _interp_logt(teff, "V-Ks")
