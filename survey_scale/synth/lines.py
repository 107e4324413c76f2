"""Line strengths and intrinsic widths in a Milne–Eddington picture (SPEC §10).

For every line and star the synthesizer needs the ratio of line to continuous opacity η(Δλ) = A φ(Δλ),
where φ is a unit-area profile (Å⁻¹) and the *line area* (Å)

    A = s · (π e² / m_e c²) λ² gf · (N_X/N_H) · f_stage · exp(−χ/kT) / U · (1 − e^{−hc/λkT}) / κ_c(λ)

is evaluated in a line-forming layer above the photosphere (T = 0.92 T_eff, P_g = 0.45 P_g(τ̄ = 2/3), the
Eddington temperature at τ̄ ≈ 0.3 and the hydrostatic pressure there); κ_c is the continuous opacity per H
nucleus of :mod:`.atmosphere`. ``s`` is one calibration factor per line class (hydrogen, helium, metals) that
stands for everything a one-layer model leaves out (depth dependence, NLTE, line formation over a range of
τ); the factors were set so that typical equivalent widths come out near observed values (Hγ ≈ 15 Å in A0 V,
He I 4471 ≈ 1.2 Å in B2 V, Mg II 4481 ≈ 0.4 Å in A0 V, Si III 4553 ≈ 0.3 Å in B1 V, Ca II K ≈ 7 Å at
7000 K).

The residual flux follows the Milne–Eddington / Eddington–Barbier solution, line depth
d = d_max η / (1 + η), with the maximum depth d_max = 1 − B_λ(T₀)/B_λ(T_eff), T₀ = 0.78 T_eff (a boundary
temperature somewhat below the grey 0.84 T_eff, as line blanketing makes it). This gives curves of growth
with linear, flat (Doppler) and damping parts. For narrow metal lines the equivalent width comes from that
curve of growth, W = d_max Δλ_D F(η₀, a), F computed as the Rodgers & Williams (1974) combination of the
exact Doppler-core integral and the analytic Lorentz integral; η₀ = A / (√π Δλ_D) falls as the Doppler
width Δλ_D = (λ/c) √(2kT/m + v_mic²) grows, so micro-turbulence desaturates strong lines and leaves weak
lines alone.

Resolved lines (H, He I, He II, Ca II) keep their profiles: a pseudo-Voigt (Thompson et al. 1987 mixing)
of the Doppler core and a pressure-broadened component, Holtsmark-like ∝ |Δλ|^-5/2 (linear Stark effect,
hydrogenic lines, half width ∝ N_e^{2/3}) or Lorentzian (quadratic Stark effect of He I, ∝ N_e; damping of
Ca II, ∝ P_g). Upper hydrogen levels above the Inglis–Teller limit, log N_e = 23.26 − 7.5 log n, are
dissolved smoothly, so the Balmer and Paschen series merge earlier in dwarfs than in supergiants.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from survey_scale.synth import atmosphere as atm
from survey_scale.synth.linelists import (
    ABUNDANCE_LABEL,
    ATOMIC_MASS,
    BROAD_LINES,
    METAL_LINES,
    METALS,
    PARTITION,
    SOLAR_LOG_EPS,
    BroadLineTable,
    LineTable,
)

LINE_TEMP_FACTOR = 0.92
LINE_PRESSURE_FACTOR = 0.45
BOUNDARY_TEMP_FACTOR = 0.78
SCALE_HYDROGEN = 1.0
SCALE_HELIUM = 1.0
SCALE_METALS = 2.0
SCALE_HE_II = 0.3

_PI_R_E = np.pi * 2.8179403262e-13
"""π e² / (m_e c²) in cm."""
_LOG_GAMMA_RAD = 8.5
_LOG_GAMMA_STARK = -5.7
"""Typical radiative and quadratic-Stark (per N_e) damping constants of metal lines, s⁻¹ and s⁻¹ cm³."""


def max_depth(wave: np.ndarray, teff: np.ndarray) -> np.ndarray:
    """Maximum line depth d_max = 1 − B_λ(0.78 T_eff) / B_λ(T_eff).

    ``wave`` (P,) in Å, ``teff`` (n,) in K; returns (n, P) in the floating type of ``wave``.
    """
    wave, teff = np.asarray(wave), np.asarray(teff)
    x = (atm.HC_EV_A / wave)[None, :] / (atm.K_EV * teff)[:, None].astype(wave.dtype)
    return 1.0 - np.expm1(x) / np.expm1(x / BOUNDARY_TEMP_FACTOR)


@lru_cache(maxsize=1)
def _doppler_cog_table() -> tuple[np.ndarray, np.ndarray]:
    log_eta = np.arange(-6.0, 14.0001, 0.01)
    v = np.linspace(0.0, 8.0, 4001)
    prof = np.exp(-(v**2))
    out = np.empty_like(log_eta)
    for i0 in range(0, log_eta.size, 200):
        eta = 10.0 ** log_eta[i0 : i0 + 200, None]
        out[i0 : i0 + 200] = 2.0 * np.trapezoid(eta * prof / (1.0 + eta * prof), v, axis=1)
    return log_eta, np.log10(out)


def curve_of_growth(eta0: np.ndarray, damping: np.ndarray) -> np.ndarray:
    """Reduced equivalent width F = W / (d_max Δλ_D) of a Milne–Eddington line.

    Parameters
    ----------
    eta0
        Line-centre ratio of line to continuous opacity for a pure Doppler profile, η₀ = A / (√π Δλ_D).
    damping
        Voigt damping parameter a = γ / Δλ_D (γ the Lorentzian half width).

    Returns
    -------
    numpy.ndarray
        F, same shape; F → √π η₀ for weak lines.
    """
    eta0 = np.asarray(eta0, dtype=np.float64)
    log_eta, log_f = _doppler_cog_table()
    le = np.log10(np.maximum(eta0, 1e-30))
    weak = np.sqrt(np.pi) * eta0
    f_d = np.where(le < log_eta[0], weak, 10.0 ** np.interp(le, log_eta, log_f))
    peak = eta0 / (np.sqrt(np.pi) * damping)
    f_l = damping * np.pi * peak / np.sqrt(1.0 + peak)
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = np.where(weak > 0, f_d * f_l / np.where(weak > 0, weak, 1.0), 0.0)
    return np.sqrt(np.maximum(f_d**2 + f_l**2 - cross**2, 0.0))


def doppler_width(wave: np.ndarray, temp: np.ndarray, mass: np.ndarray, vmic: np.ndarray) -> np.ndarray:
    """Doppler 1/e half width Δλ_D (Å); ``wave``/``mass`` (L,), ``temp``/``vmic`` (n,) → (n, L)."""
    thermal2 = 2.0 * atm.K_BOLTZ * temp[:, None] / (np.asarray(mass)[None, :] * atm.AMU) * 1e-10
    v2 = thermal2 + vmic[:, None] ** 2
    return np.asarray(wave)[None, :] / atm.C_KMS * np.sqrt(v2)


def _populations(
    table: LineTable | BroadLineTable, layer: atm.Layer, abundances: dict[str, np.ndarray]
) -> np.ndarray:
    """(n, L) N_X/N_H · f_stage / U of the lower level's ion, per line of ``table``."""
    n = layer.temp.size
    out = np.zeros((n, len(table)))
    elements = np.asarray(table.element)
    for element in sorted(set(table.element)):
        sel = np.flatnonzero(elements == element)
        frac = layer.fractions(element)
        stage = table.ion[sel] - 1
        u = np.asarray(PARTITION[element])[stage]
        if element == "H":
            abund = np.ones(n)
        elif element == "He":
            abund = layer.he_per_h
        else:
            abund = abundances[element]
        out[:, sel] = abund[:, None] * frac[:, stage] / u[None, :]
    return out


def line_areas(
    table: LineTable | BroadLineTable, layer: atm.Layer, abundances: dict[str, np.ndarray], scale: np.ndarray
) -> np.ndarray:
    """Line areas A (Å), the wavelength-integrated line-to-continuum opacity ratio, (n, L)."""
    wave = table.wave
    kt = atm.K_EV * layer.temp[:, None]
    boltz = np.exp(-table.chi[None, :] / kt)
    stim = -np.expm1(-atm.HC_EV_A / wave[None, :] / kt)
    strength = _PI_R_E * (wave * 1e-8) ** 2 * 10.0 ** table.log_gf * 1e8
    pop = _populations(table, layer, abundances)
    return scale[None, :] * strength[None, :] * pop * boltz * stim / layer.kappa(wave)


def abundances_from_labels(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """N_X / N_H of each metal from the [X/H] labels (Mg and Ca follow [Fe/H])."""
    return {el: 10.0 ** (SOLAR_LOG_EPS[el] - 12.0 + labels[ABUNDANCE_LABEL[el]]) for el in METALS}


@dataclass
class LineParameters:
    """Per-star line parameters for a batch of n stars."""

    metal_ew: np.ndarray
    """(n, N_metal) equivalent widths of the narrow metal lines, Å."""
    broad_area: np.ndarray
    """(n, N_broad) line areas A of the resolved lines, Å."""
    broad_fwhm: np.ndarray
    """(n, N_broad) FWHM of the pseudo-Voigt profile, Å."""
    broad_mix: np.ndarray
    """(n, N_broad) weight ξ of the pressure-broadened component (1 − ξ for the Doppler core)."""


def _pseudo_voigt(fwhm_g: np.ndarray, fwhm_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thompson, Cox & Hastings (1987) total FWHM and mixing parameter of a pseudo-Voigt profile."""
    fg, fl = fwhm_g, fwhm_l
    f = (fg**5 + 2.69269 * fg**4 * fl + 2.42843 * fg**3 * fl**2 + 4.47163 * fg**2 * fl**3
         + 0.07842 * fg * fl**4 + fl**5) ** 0.2
    r = fl / f
    return f, np.clip(1.36603 * r - 0.47719 * r**2 + 0.11116 * r**3, 0.0, 1.0)


def _pressure_width(layer: atm.Layer) -> np.ndarray:
    """(n, N_broad) Lorentzian / Holtsmark half widths (Å) of the resolved lines in ``layer``."""
    kinds = np.asarray(BROAD_LINES.kind)
    n_e = layer.n_e[:, None]
    stark = BROAD_LINES.stark[None, :]
    return np.where(
        kinds == "hydrogenic",
        stark * n_e ** (2.0 / 3.0),
        np.where(kinds == "quadratic", stark * n_e / 1e16, stark * (0.2 + 0.8 * layer.pg[:, None] / 1e4)),
    )


def _dissolution(layer: atm.Layer) -> np.ndarray:
    """(n, N_broad) survival factor of hydrogenic upper levels against the Inglis–Teller limit."""
    upper = BROAD_LINES.upper_n.astype(np.float64)
    # Upper-level n scaled by Z: He II levels dissolve like hydrogen levels of n/Z.
    z = np.where(np.asarray(BROAD_LINES.element) == "He", 2.0, 1.0)
    n_eff = np.where(upper > 0, upper / z, 0.0)[None, :]
    return 1.0 - atm.dissolved_fraction(n_eff, atm.inglis_teller(layer.n_e)[:, None])


_SCALES_BROAD = np.array([
    SCALE_HYDROGEN if e == "H" else (SCALE_HELIUM if i == 1 else SCALE_HE_II) if e == "He" else SCALE_METALS
    for e, i in zip(BROAD_LINES.element, BROAD_LINES.ion, strict=True)
])
_SCALES_METAL = np.full(len(METAL_LINES), SCALE_METALS)
_MASS_BROAD = np.array([ATOMIC_MASS[e] for e in BROAD_LINES.element])
_MASS_METAL = np.array([ATOMIC_MASS[e] for e in METAL_LINES.element])


def line_parameters(
    photo: atm.Layer, vmic: np.ndarray, abundance_labels: dict[str, np.ndarray]
) -> LineParameters:
    """All per-star line parameters of the synthesizer.

    Parameters
    ----------
    photo
        Photospheres of the n stars (:func:`survey_scale.synth.atmosphere.photosphere`); T = T_eff.
    vmic
        (n,) micro-turbulence, km s⁻¹.
    abundance_labels
        [X/H] in dex per label name (``c_h``, ``n_h``, ``o_h``, ``si_h``, ``s_h``, ``fe_h``), each (n,).

    Returns
    -------
    LineParameters
    """
    teff = photo.temp
    layer = atm.line_layer(photo, LINE_TEMP_FACTOR, LINE_PRESSURE_FACTOR)
    abund = abundances_from_labels(abundance_labels)

    # narrow metal lines: curve of growth
    area = line_areas(METAL_LINES, layer, abund, _SCALES_METAL)
    dop = doppler_width(METAL_LINES.wave, layer.temp, _MASS_METAL, vmic)
    gamma_s = 10.0**_LOG_GAMMA_RAD + 10.0**_LOG_GAMMA_STARK * layer.n_e[:, None]
    gamma = (METAL_LINES.wave[None, :] * 1e-8) ** 2 / (4.0 * np.pi * atm.C_LIGHT) * gamma_s * 1e8
    dmax = max_depth(METAL_LINES.wave, teff)
    ew = dmax * dop * curve_of_growth(area / (np.sqrt(np.pi) * dop), gamma / dop)

    # resolved lines: areas, widths and mixing of their pseudo-Voigt profiles
    b_area = line_areas(BROAD_LINES, layer, abund, _SCALES_BROAD) * _dissolution(layer)
    b_dop = doppler_width(BROAD_LINES.wave, layer.temp, _MASS_BROAD, vmic)
    fwhm, mix = _pseudo_voigt(2.0 * np.sqrt(np.log(2.0)) * b_dop, 2.0 * _pressure_width(layer))
    return LineParameters(metal_ew=ew, broad_area=b_area, broad_fwhm=fwhm, broad_mix=mix)
