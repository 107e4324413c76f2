"""One-layer model photospheres: ionization, continuous opacity, gas pressure and the SED (SPEC §10).

Each star is reduced to a *characteristic layer* near continuum optical depth τ̄ = 2/3, where

- the gas pressure follows hydrostatic equilibrium, P_g = (2/3) g / κ_R, with κ_R the Rosseland mean of the
  continuous opacity below (solved by damped fixed-point iteration, vectorized over stars);
- the electron pressure follows from Saha equilibrium of H and He (metals are not electron donors: above
  7000 K hydrogen supplies ≥ 90 % of the electrons, and keeping metals out makes each abundance label act on
  its own lines only);
- the continuous opacity is that of Gray (2005, *The Observation and Analysis of Stellar Photospheres*,
  ch. 8): H I bound-free (hydrogenic Kramers cross-sections, levels n ≤ 10 explicitly and the Unsöld
  integral above) and free-free, H⁻ bound-free (Gray's polynomial α_bf) and free-free (Bell & Berrington
  fit as given by Gray), He II bound-free (hydrogenic, Z = 2) and Thomson scattering. He I, metal
  bound-free opacity and line blanketing are neglected.

The surface flux (SED) uses the Eddington–Barbier relation for a grey-like atmosphere with a non-grey
opacity: at wavelength λ we see down to τ̄_λ = (2/3) κ_R / κ_λ, where the Eddington temperature law gives
T_λ⁴ = ¾ T_eff⁴ (τ̄_λ + ⅔), and F_λ = π B_λ(T_λ), rescaled so that ∫ F_λ dλ = σ T_eff⁴ exactly. This
produces a Balmer (and Paschen) jump that is largest for A stars, shrinks towards O stars (Thomson
scattering) and F stars (H⁻), and in A stars cooler than ~9000 K grows at low log g (less H⁻ at low
pressure) — the behaviour of model atmospheres, at the ~20 % level in flux, not a replacement for
ATLAS/TLUSTY fluxes.

All quantities are cgs; wavelengths in Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from survey_scale.synth.linelists import IONIZATION_EV, PARTITION, SOLAR_LOG_EPS

K_BOLTZ = 1.380649e-16
"""Boltzmann constant, erg K⁻¹."""
K_EV = 8.617333262e-5
"""Boltzmann constant, eV K⁻¹."""
H_PLANCK = 6.62607015e-27
C_LIGHT = 2.99792458e10
"""Speed of light, cm s⁻¹."""
C_KMS = 299792.458
"""Speed of light, km s⁻¹."""
SIGMA_SB = 5.670374419e-5
"""Stefan–Boltzmann constant, erg s⁻¹ cm⁻² K⁻⁴."""
SIGMA_THOMSON = 6.6524587e-25
AMU = 1.66053907e-24
HC_EV_A = 12398.419843
"""h c in eV Å."""
_ALPHA0 = 1.0449e-26
"""Hydrogenic bound-free constant of Gray (8.4) for λ in Å, cm²."""
_LYMAN_EDGE = 911.753
_LOG_E = np.log10(np.e)

SOLAR_HE_FRAC: float = 10 ** (SOLAR_LOG_EPS["He"] - 12.0) / (1.0 + 10 ** (SOLAR_LOG_EPS["He"] - 12.0))
"""Solar N_He / N_tot (≈ 0.078), the default helium content of :func:`sed`."""

_H_MINUS_BF = (1.99654, -1.18267e-5, 2.64243e-6, -4.40524e-10, 3.23992e-14, -1.39568e-18, 2.78701e-23)
_ROSSELAND_WAVE = np.geomspace(200.0, 60000.0, 120)


def saha_phi(temp: np.ndarray, ion_ev: float, u_lower: float, u_upper: float) -> np.ndarray:
    """Saha ratio Φ(T) = N_{i+1} P_e / N_i in dyn cm⁻² (Gray eq. 1.20)."""
    return 0.6665 * (u_upper / u_lower) * temp**2.5 * 10.0 ** (-5040.0 * ion_ev / temp)


def stage_fractions(element: str, temp: np.ndarray, pe: np.ndarray) -> np.ndarray:
    """Fractions of ``element`` in each ionization stage (Saha equilibrium).

    Parameters
    ----------
    element
        Symbol of an element of :data:`survey_scale.synth.linelists.IONIZATION_EV`.
    temp, pe
        (n,) temperature (K) and electron pressure (dyn cm⁻²).

    Returns
    -------
    numpy.ndarray
        (n, n_stages) fractions summing to 1; column 0 is the neutral atom.
    """
    ips = IONIZATION_EV[element]
    part = PARTITION[element]
    temp = np.asarray(temp, dtype=np.float64)
    log_ratio = [np.zeros_like(temp)]
    for i, ip in enumerate(ips):
        phi = np.log(0.6665 * part[i + 1] / part[i]) + 2.5 * np.log(temp) - 5040.0 * ip / temp * np.log(10.0)
        log_ratio.append(log_ratio[-1] + phi - np.log(pe))
    log_n = np.stack(log_ratio, axis=-1)
    log_n -= log_n.max(axis=-1, keepdims=True)
    n = np.exp(log_n)
    return n / n.sum(axis=-1, keepdims=True)


def _hhe_saha(temp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Saha ratios Φ(H I), Φ(He I), Φ(He II) at ``temp`` (dyn cm⁻²)."""
    u_h, u_he = PARTITION["H"], PARTITION["He"]
    return (
        saha_phi(temp, IONIZATION_EV["H"][0], u_h[0], u_h[1]),
        saha_phi(temp, IONIZATION_EV["He"][0], u_he[0], u_he[1]),
        saha_phi(temp, IONIZATION_EV["He"][1], u_he[1], u_he[2]),
    )


def _hhe_fractions(
    phis: tuple[np.ndarray, np.ndarray, np.ndarray], pe: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fractions H I, He II, He III and electrons from He per He nucleus, in closed form."""
    phi_h, phi_he1, phi_he2 = phis
    f_h1 = pe / (pe + phi_h)
    s1 = phi_he1 / pe
    s12 = s1 * phi_he2 / pe
    denom = 1.0 + s1 + s12
    return f_h1, s1 / denom, s12 / denom, (s1 + 2.0 * s12) / denom


def electron_pressure(temp: np.ndarray, pg: np.ndarray, he_per_h: np.ndarray, n_iter: int = 40) -> np.ndarray:
    """Electron pressure (dyn cm⁻²) of an H+He gas of gas pressure ``pg`` at ``temp`` (bisection in log).

    P_g = (N_H + N_He + N_e) k T fixes P_e = P_g x_e / (1 + N_He/N_H + x_e), with x_e = N_e/N_H from Saha;
    the bisection is on log10 P_e in [−8, log10 P_g] (40 halvings: ~1e-11 dex).
    """
    phis = _hhe_saha(temp)
    lo = np.full_like(pg, -8.0)
    hi = np.log10(pg)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        pe = 10.0**mid
        f_h1, _, _, e_he = _hhe_fractions(phis, pe)
        x_e = 1.0 - f_h1 + he_per_h * e_he
        too_high = pg * x_e / (1.0 + he_per_h + x_e) < pe
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    return 10.0 ** (0.5 * (lo + hi))


def inglis_teller(n_e: np.ndarray) -> np.ndarray:
    """Principal quantum number of the last undissolved hydrogen level, log N_e = 23.26 − 7.5 log n."""
    return 10.0 ** ((23.26 - np.log10(n_e)) / 7.5)


def dissolved_fraction(n_eff: np.ndarray, n_last: np.ndarray) -> np.ndarray:
    """Probability that a hydrogenic level of (effective) quantum number ``n_eff`` is dissolved.

    A smooth step, 1/(1 + (n_last/n_eff)^12), the complement of the survival factor applied to the lines.
    """
    return 1.0 / (1.0 + (n_last / np.maximum(n_eff, 1e-9)) ** 12)


def _hydrogenic_bf(
    wave: np.ndarray, theta: np.ndarray, z: int, n_last: np.ndarray | None = None
) -> np.ndarray:
    """Bound-free cross-section per ion of a hydrogenic species, levels populated by Boltzmann (cm²).

    ``wave`` (1, P) or (n, P) in Å, ``theta`` = 5040/T (n,); returns (n, P), without stimulated emission.
    With ``n_last`` (n,), the Inglis–Teller level of each star, every edge extends redwards as transitions
    to dissolved upper levels (effective quantum number n* of the upper state, in the spirit of the
    occupation-probability formalism of Hummer & Mihalas 1988); without it the edges are sharp.
    """
    ip = 13.598 * z**2
    th = theta[:, None]
    lam3 = _ALPHA0 * z**4 * wave**3
    out = np.zeros(np.broadcast_shapes(wave.shape, th.shape))
    for n in range(1, 11):
        edge = n**2 * _LYMAN_EDGE / z**2
        if n_last is None:
            active = np.where(wave <= edge, 1.0, 0.0)
        else:
            # (n_last / n*)² with n* = n / (z √(1 − edge/λ)), the effective upper level of the transition
            q = (n_last[:, None] * z / n) ** 2 * (1.0 - edge / wave)
            active = np.where(wave <= edge, 1.0, 1.0 / (1.0 + (q * q * q) ** 2))
        out += active * lam3 / n**3 * 10.0 ** (-th * ip * (1.0 - 1.0 / n**2))
    # levels n > 10: Unsöld's integral over the (quasi-continuous) high levels
    tail = (10.0 ** (-th * ip * (1.0 - 1.0 / 10.5**2)) - 10.0 ** (-th * ip)) * _LOG_E / (2.0 * th * ip)
    return out + lam3 * tail


def _h_minus_bf_alpha(wave: np.ndarray) -> np.ndarray:
    lam = np.asarray(wave, dtype=np.float64)
    alpha = sum(a * lam**i for i, a in enumerate(_H_MINUS_BF))
    return np.where(lam < 16419.0, np.clip(alpha, 0.0, None), 0.0) * 1e-18


def _h_minus_ff(wave: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """H⁻ free-free per neutral H atom per unit P_e (Gray eq. 8.13), clamped to its range of validity.

    ``wave`` (1, P) or (n, P), ``theta`` (n,); returns (n, P).
    """
    x = np.log10(np.clip(wave, 2600.0, 113900.0))
    f0 = -2.2763 - 1.6850 * x + 0.76661 * x**2 - 0.053346 * x**3
    f1 = 15.2827 - 9.2846 * x + 1.99381 * x**2 - 0.142631 * x**3
    f2 = -197.789 + 190.266 * x - 67.9775 * x**2 + 10.6913 * x**3 - 0.625151 * x**4
    lt = np.log10(np.clip(theta, 0.5, 3.6))[:, None]
    return 1e-26 * 10.0 ** (f0 + f1 * lt + f2 * lt**2)


@dataclass(frozen=True)
class OpacityTerms:
    """Temperature-only parts of the continuous opacity at wavelengths ``wave``, each (n, P), cm².

    κ per H nucleus = f(H I) (h + P_e h⁻) + (N_He/N_H) f(He II) he2 + σ_T N_e/N_H.
    """

    h: np.ndarray
    """H I bound-free + free-free per neutral H atom, with stimulated emission."""
    h_minus: np.ndarray
    """H⁻ bound-free (with stimulated emission) + free-free per neutral H atom, per unit P_e."""
    he2: np.ndarray
    """He II bound-free per He II ion, with stimulated emission."""

    @classmethod
    def at(cls, wave: np.ndarray, temp: np.ndarray, n_last: np.ndarray | None = None) -> OpacityTerms:
        """Terms at vacuum ``wave`` (Å): (P,) shared by all stars or (n, P) per star; ``temp`` (n,) in K.

        ``n_last`` (n,): Inglis–Teller level for the dissolution of the bound-free edges (sharp if None).
        """
        wave = np.asarray(wave, dtype=np.float64)
        wave = wave.reshape(1, -1) if wave.ndim < 2 else wave
        theta = 5040.0 / temp
        stim = -np.expm1(-HC_EV_A / wave / (K_EV * temp[:, None]))
        gaunt_free = _LOG_E / (2.0 * theta * 13.598) * 10.0 ** (-theta * 13.598)
        h_ff = _ALPHA0 * wave**3 * gaunt_free[:, None]
        h = (_hydrogenic_bf(wave, theta, 1, n_last) + h_ff) * stim
        hm_bf = 4.158e-10 * _h_minus_bf_alpha(wave) * (theta**2.5 * 10.0 ** (0.754 * theta))[:, None]
        h_minus = hm_bf * stim + _h_minus_ff(wave, theta)
        return cls(h=h, h_minus=h_minus, he2=_hydrogenic_bf(wave, theta, 2, n_last) * stim)

    def combine(self, pe: np.ndarray, f_h1: np.ndarray, he2_per_h: np.ndarray, x_e: np.ndarray) -> np.ndarray:
        """κ per H nucleus (cm²) for electron pressure ``pe``, H I fraction, N(He II)/N_H and N_e/N_H."""
        return (f_h1[:, None] * (self.h + pe[:, None] * self.h_minus) + he2_per_h[:, None] * self.he2
                + (SIGMA_THOMSON * x_e)[:, None])


def _rosseland_weights(temp: np.ndarray) -> np.ndarray:
    x = HC_EV_A / _ROSSELAND_WAVE[None, :] / (K_EV * temp[:, None])
    # ∂B_λ/∂T ∝ x⁶ eˣ / (eˣ − 1)² (common factors cancel in the normalized weights)
    weight = x**6 * np.exp(-x) / (-np.expm1(-x)) ** 2 * np.gradient(_ROSSELAND_WAVE)[None, :]
    return weight / weight.sum(axis=1, keepdims=True)


@dataclass
class Layer:
    """Thermodynamic state of one layer for a batch of n stars (all arrays (n,))."""

    temp: np.ndarray
    """Temperature, K."""
    pg: np.ndarray
    """Gas pressure, dyn cm⁻²."""
    pe: np.ndarray
    """Electron pressure, dyn cm⁻²."""
    he_per_h: np.ndarray
    """N_He / N_H."""

    @property
    def n_e(self) -> np.ndarray:
        """Electron density, cm⁻³."""
        return self.pe / (K_BOLTZ * self.temp)

    def fractions(self, element: str) -> np.ndarray:
        """(n, stages) ionization fractions of ``element`` in this layer."""
        return stage_fractions(element, self.temp, self.pe)

    def _state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f_h1, f_he2, _, e_he = _hhe_fractions(_hhe_saha(self.temp), self.pe)
        return f_h1, self.he_per_h * f_he2, 1.0 - f_h1 + self.he_per_h * e_he

    def kappa(self, wave: np.ndarray) -> np.ndarray:
        """Continuous opacity per hydrogen nucleus (cm²) at vacuum ``wave`` (Å, (P,) or (n, P)), (n, P).

        Bound-free edges are smeared by the dissolution of high levels at this layer's N_e.
        """
        terms = OpacityTerms.at(wave, self.temp, inglis_teller(self.n_e))
        return terms.combine(self.pe, *self._state())

    def rosseland(self) -> np.ndarray:
        """Rosseland mean opacity per hydrogen nucleus (cm²), shape (n,), with sharp bound-free edges."""
        kappa = OpacityTerms.at(_ROSSELAND_WAVE, self.temp).combine(self.pe, *self._state())
        return 1.0 / (_rosseland_weights(self.temp) / kappa).sum(axis=1)


def he_per_h(he_frac: np.ndarray) -> np.ndarray:
    """N_He / N_H from the label N_He / N_tot (metals neglected in N_tot)."""
    he_frac = np.asarray(he_frac, dtype=np.float64)
    return he_frac / (1.0 - he_frac)


def photosphere(teff: np.ndarray, logg: np.ndarray, he_frac: np.ndarray, n_iter: int = 16) -> Layer:
    """The τ̄ = 2/3 layer (T = T_eff) of stars in hydrostatic equilibrium.

    Parameters
    ----------
    teff, logg, he_frac
        (n,) effective temperature (K), log10 surface gravity (cgs) and N_He/N_tot.
    n_iter
        Damped fixed-point iterations of P_g = (2/3) g / κ_R (converged to ~1e-5 dex after 16).

    Returns
    -------
    Layer
        Temperature, gas and electron pressures of the layer.
    """
    teff = np.asarray(teff, dtype=np.float64)
    g = 10.0 ** np.asarray(logg, dtype=np.float64)
    a_he = he_per_h(he_frac)
    mass_per_h = AMU * (1.008 + 4.003 * a_he)
    terms = OpacityTerms.at(_ROSSELAND_WAVE, teff)
    weights = _rosseland_weights(teff)
    phis = _hhe_saha(teff)
    log_pg = np.log10(g) + 0.3
    for _ in range(n_iter):
        pg = 10.0**log_pg
        pe = electron_pressure(teff, pg, a_he)
        f_h1, f_he2, _, e_he = _hhe_fractions(phis, pe)
        kappa = terms.combine(pe, f_h1, a_he * f_he2, 1.0 - f_h1 + a_he * e_he)
        kappa_r = 1.0 / (weights / kappa).sum(axis=1)
        log_pg = 0.5 * (log_pg + np.log10(2.0 / 3.0 * g * mass_per_h / kappa_r))
    pg = 10.0**log_pg
    return Layer(teff, pg, electron_pressure(teff, pg, a_he), a_he)


def line_layer(photo: Layer, temp_factor: float, pressure_factor: float) -> Layer:
    """A layer above the photosphere where lines form: T = f_T T_eff, P_g = f_P P_g(τ̄ = 2/3)."""
    temp = photo.temp * temp_factor
    pg = photo.pg * pressure_factor
    return Layer(temp, pg, electron_pressure(temp, pg, photo.he_per_h), photo.he_per_h)


def planck_lambda(wave: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """Planck function B_λ in erg s⁻¹ cm⁻² Å⁻¹ sr⁻¹; ``wave`` (P,) in Å, ``temp`` broadcastable to (n, P)."""
    lam_cm = np.asarray(wave, dtype=np.float64) * 1e-8
    x = H_PLANCK * C_LIGHT / (lam_cm * K_BOLTZ * temp)
    # e^-x / (1 − e^-x) instead of 1 / (e^x − 1): no overflow far in the Wien tail
    return 2.0 * H_PLANCK * C_LIGHT**2 / lam_cm**5 * np.exp(-x) / -np.expm1(-x) * 1e-8


_SED_NORM_WAVE = np.geomspace(50.0, 3.0e5, 800)
"""Wavelengths (Å) of the bolometric normalization ∫ F_λ dλ = σ T_eff⁴ (trapezoid, accurate to ~5e-4)."""


def _eddington_barbier_flux(
    layer: Layer, teff: np.ndarray, wave: np.ndarray, kappa_r: np.ndarray
) -> np.ndarray:
    tau = (2.0 / 3.0) * kappa_r[:, None] / layer.kappa(wave)
    t_lambda = teff[:, None] * (0.75 * (tau + 2.0 / 3.0)) ** 0.25
    return np.pi * planck_lambda(wave, t_lambda)


def sed_from_photosphere(layer: Layer, wave: np.ndarray) -> np.ndarray:
    """Surface flux F_λ (erg s⁻¹ cm⁻² Å⁻¹) of the stars of ``layer`` at vacuum ``wave`` (Å), shape (n, P).

    ``wave`` is (P,) for all stars or (n, P) per star (e.g. Doppler-shifted rest-frame wavelengths).
    """
    teff = layer.temp
    kappa_r = layer.rosseland()
    coarse = _eddington_barbier_flux(layer, teff, _SED_NORM_WAVE, kappa_r)
    integral = np.trapezoid(coarse, _SED_NORM_WAVE, axis=1)
    scale = SIGMA_SB * teff**4 / integral
    return _eddington_barbier_flux(layer, teff, np.asarray(wave, dtype=np.float64), kappa_r) * scale[:, None]
