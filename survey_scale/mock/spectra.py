"""Observed LAMOST-like spectra of the mock visits, on the native pixel grid (SPEC §2, §10).

For each visit (batched, vectorized over spectra) :func:`observe` builds, in order of the light path:

1. **Star** — the synthesizer's surface flux F(λ) of the primary, shifted by the visit's radial velocity
   (:func:`stellar_flux_native`); for an unresolved binary the composite R1² F1 + R2² F2 with each component
   at its own velocity (radii in R_sun, so the composite keeps the components' luminosity ratio).
2. **Emission** — Gaussian Hα, Hβ and Paschen emission lines with the visit's equivalent widths relative to
   the local continuum, at the primary's velocity, of intrinsic width σ_v and the visit's LSF.
3. **Interstellar medium** — Na I D, Ca II K and DIBs scaling with E(B−V)
   (``synth.interstellar_transmission``, at rest in the heliocentric frame: v_ISM = 0) and the continuum
   reddening 10^(−0.4 E(B−V) k(λ)) of the Fitzpatrick (1999) R_V = 3.1 curve
   (:func:`survey_scale.mock.photometry.reddening_transmission`).
4. **Atmosphere** — telluric O2 and H2O bands for the plan's airmass and water vapour, at rest in the
   observatory frame: LAMOST wavelengths are heliocentric, so a telluric line sits at λ_t (1 + v_corr/c)
   with v_corr the visit's heliocentric correction.
5. **Instrument** — counts C = k F T(λ) with a two-arm throughput T (dichroic at 5900 Å), noise
   σ_C² = C + B(λ) with a sky background B (flat in the g band, brighter in the red, with sky lines), k
   set so that the median S/N per pixel over 4000–5500 Å (the g band) equals the visit's S/N exactly
   (the median commutes with the monotonic C → C/√(C + B)). The written flux is the flux-calibrated
   F × (residual calibration error: a smooth cubic in λ of a few per cent and a small dichroic step) ×
   a scale 500 × 10^(−0.4 (G − 14)), like LAMOST's relative fluxes; ``ivar`` is the matching inverse
   variance of that flux, so (flux − model)² · ivar has unit mean.
6. **Pipeline** — a few bad-pixel clusters (ivar 0, and/or-mask bits), or-mask BRIGHTSKY bits at strong
   sky lines, zero flux in the reddest 12–30 pixels (as real files have beyond ~9040 Å), and for ~1 % of
   visits a corruption (P1 Fig. 15): a flux jump over a range, an artefact ripple, or a segment whose
   wavelength calibration is off by several pixels.

Native grid and the Doppler shift
---------------------------------
LAMOST's native grid is log-linear, λ_i = 10^(3.5682 + 10⁻⁴ i), i = 0…3908, in the observed (heliocentric)
frame. The common grid (:mod:`survey_scale.core.wavelength`) has the same step and starts at log10(3750) =
3.5682 + 58 × 10⁻⁴ + δ with δ = 3.1268 × 10⁻⁵ dex. A star moving at v is seen at
F_obs(λ_i) = F_rest(λ_i / (1 + v/c)) (LAMOST's Z = v/c convention). Asking the synthesizer for the
spectrum shifted by v′ with 1 + v′/c = (1 + v/c) 10^δ gives, at its common-grid pixel j, exactly
F_rest(λ_{j+58} / (1 + v/c)) = F_obs at native pixel i = j + 58: the shift and the resampling are exact,
with no interpolation. Native pixels 0–57 (3700–3749 Å) and 3860–3908 (9000–9099 Å) lie outside the
synthesizer's range; there the continuum comes from ``synth.sed`` (evaluated on an extended grid and
shifted by linear interpolation of the smooth continuum, error < 10⁻⁶) times the median normalized flux of
the 20 nearest synthesized pixels, held constant (no lines). After the ingest's shift to the rest frame
these pixels touch the common grid only at its very ends — its first pixel when v < −21.6 km/s, its last
pixel otherwise — both masked by every fit (λ < 3820 Å, λ > 8880 Å).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from survey_scale.core import masks
from survey_scale.core.labels import LABEL_NAMES
from survey_scale.core.wavelength import LOG10_WAVE_START, N_WAVE
from survey_scale.mock import photometry as ph

C_KMS: float = 299792.458
NATIVE_COEFF0: float = 3.5682
NATIVE_COEFF1: float = 1.0e-4
NATIVE_NPIX: int = 3909
NATIVE_OFFSET: int = int(np.floor((LOG10_WAVE_START - NATIVE_COEFF0) / NATIVE_COEFF1 + 1e-9))
"""Native pixel of common-grid pixel 0, before the sub-pixel offset (58)."""
NATIVE_SUBPIXEL_DEX: float = LOG10_WAVE_START - (NATIVE_COEFF0 + NATIVE_OFFSET * NATIVE_COEFF1)
"""δ = 3.1268e-5 dex: how far the common grid starts redward of native pixel 58."""
_EXT: int = 12
"""Extra pixels on each side of the extended continuum grid (covers |v| up to ~800 km/s)."""

SNR_BAND_WINDOWS: dict[str, tuple[float, float]] = {
    "u": (3700.0, 4000.0),
    "g": (4000.0, 5500.0),
    "r": (5600.0, 6900.0),
    "i": (6900.0, 8400.0),
    "z": (8400.0, 9100.0),
}
"""Wavelength windows (Å) of the per-band median S/N written as SNRU…SNRZ; g sets the visit's S/N."""

FLUX_SCALE_G14: float = 500.0
"""Median g-band flux (LAMOST relative units) written for a G = 14 star."""

SKY_G_EQUIVALENT: float = 15.5
"""Sky background per fibre, as the G magnitude of a star of equal g-band counts (as in snr_from_g)."""

# LAMOST pixel mask bits (LAMOST DR data model: 1 BADCCD, 2 BADPROFILE, 4 NOSKY, 8 BRIGHTSKY, 16 BADCENTER,
# 32 NODATA).
MASK_BITS: dict[str, int] = {
    "BADCCD": 1,
    "BADPROFILE": 2,
    "NOSKY": 4,
    "BRIGHTSKY": 8,
    "BADCENTER": 16,
    "NODATA": 32,
}
SKY_LINES: tuple[float, ...] = (5578.89, 5891.58, 5897.55, 6302.05, 6365.54)
"""Strong night-sky lines (vacuum Å): [O I] 5577, Na I D, [O I] 6300/6364."""


def native_wavelength() -> np.ndarray:
    """LAMOST native pixel wavelengths (3909,), float64 Å: 10^(3.5682 + 10⁻⁴ i)."""
    return 10.0 ** (NATIVE_COEFF0 + NATIVE_COEFF1 * np.arange(NATIVE_NPIX))


def synth_velocity(rv_kms: np.ndarray) -> np.ndarray:
    """Velocity v′ (km/s) to ask the synthesizer for so that its pixel j is native pixel j + 58 at v.

    1 + v′/c = (1 + v/c) · 10^δ with δ = :data:`NATIVE_SUBPIXEL_DEX` (see the module docstring).
    """
    return C_KMS * ((1.0 + np.asarray(rv_kms, dtype=np.float64) / C_KMS) * 10.0**NATIVE_SUBPIXEL_DEX - 1.0)


def instrument_throughput(wave: np.ndarray) -> np.ndarray:
    """Relative counts per unit flux of a LAMOST fibre: blue arm (peak 4700 Å) and red arm (peak 7200 Å)
    joined at the 5900 Å dichroic; 0.25–1, low at both ends and across the dichroic."""
    wave = np.asarray(wave, dtype=np.float64)
    blue = np.exp(-0.5 * ((wave - 4700.0) / 850.0) ** 2)
    red = np.exp(-0.5 * ((wave - 7200.0) / 1150.0) ** 2)
    w_blue = 1.0 / (1.0 + np.exp((wave - 5900.0) / 25.0))
    return 0.05 + 0.95 * (w_blue * blue + (1.0 - w_blue) * red)


def sky_shape(wave: np.ndarray, resolution: float = 1800.0) -> np.ndarray:
    """Sky background per pixel relative to its g-band level: 1 in the g band, rising to 2.5 in the red
    (OH bands), plus the strong sky lines of :data:`SKY_LINES` at the given resolution."""
    wave = np.asarray(wave, dtype=np.float64)
    shape = 1.0 + 1.5 / (1.0 + np.exp(-(wave - 7000.0) / 300.0))
    for centre, amp in zip(SKY_LINES, (30.0, 8.0, 8.0, 12.0, 5.0), strict=True):
        sigma = centre / resolution / 2.3548
        shape = shape + amp * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)
    return shape


@dataclass
class VisitInputs:
    """Everything :func:`observe` needs for a batch of n visits (arrays of length n, or (n, 11) labels).

    Attributes
    ----------
    labels1, labels2
        (n, 11) physical labels of the primary / secondary in :data:`LABEL_NAMES` order; rows of NaN for
        single stars' secondaries.
    radius1, radius2
        Radii (R_sun) weighting the composite; radius2 NaN for single stars.
    rv1, rv2
        Heliocentric radial velocities (km/s) of the components at the visit.
    resolution
        Resolving power R of the visit's Gaussian LSF.
    ebv, distance_pc
        E(B−V) (mag) toward the star and its distance (pc; sets the interstellar Ca II strength).
    v_helio_corr
        astropy heliocentric correction (km/s) of the visit (tellurics sit at λ_t (1 + v/c)).
    airmass, pwv_mm
        Telluric parameters of the visit (those of its plan).
    snr
        Target median S/N per pixel over 4000–5500 Å.
    g_mag
        Apparent G (sets the flux scale and the sky-to-star ratio).
    ha_ew, hb_ew, pa_ew, em_sigma_kms
        Emission equivalent widths (Å, > 0 for emission; 0 for none) and intrinsic width.
    corrupt_kind
        "" or one of :data:`survey_scale.mock.schedule.CORRUPTION_KINDS`.
    seeds
        (n,) integers; visit i draws its noise and pipeline defects from
        ``SeedSequence([seed_base, 4, seeds[i]])``.
    """

    labels1: np.ndarray
    labels2: np.ndarray
    radius1: np.ndarray
    radius2: np.ndarray
    rv1: np.ndarray
    rv2: np.ndarray
    resolution: np.ndarray
    ebv: np.ndarray
    distance_pc: np.ndarray
    v_helio_corr: np.ndarray
    airmass: np.ndarray
    pwv_mm: np.ndarray
    snr: np.ndarray
    g_mag: np.ndarray
    ha_ew: np.ndarray
    hb_ew: np.ndarray
    pa_ew: np.ndarray
    em_sigma_kms: np.ndarray
    corrupt_kind: np.ndarray
    seeds: np.ndarray


@dataclass
class ObservedBatch:
    """Spectra of a batch on the native grid (all (n, 3909) float32 unless noted).

    Attributes
    ----------
    flux, ivar, andmask, ormask, normalization
        What the files hold (masks as float32 bit values, as LAMOST writes them).
    model
        The noiseless written flux (same calibration and scale as ``flux``, before defects).
    snr_bands
        (n, 5) median S/N per pixel in u, g, r, i, z, measured on the written data as the pipeline does.
    light_frac2
        (n,) fraction of the g-band (4000–5500 Å) stellar flux from the secondary (0 for single stars).
    corrupt_info
        Per visit: dict with the corruption's range (Å) and amount, or empty.
    stellar
        (n, 3909) float64 composite stellar flux R1²F1 + R2²F2 at the visit velocities (only with
        ``keep_intermediate``).
    """

    flux: np.ndarray
    ivar: np.ndarray
    andmask: np.ndarray
    ormask: np.ndarray
    normalization: np.ndarray
    model: np.ndarray
    snr_bands: np.ndarray
    light_frac2: np.ndarray
    corrupt_info: list[dict] = field(default_factory=list)
    stellar: np.ndarray | None = None


# --- the star -----------------------------------------------------------------------------------------------


def _extended_wave() -> np.ndarray:
    return 10.0 ** (NATIVE_COEFF0 + NATIVE_COEFF1 * (np.arange(NATIVE_NPIX + 2 * _EXT) - _EXT))


def continuum_native(
    teff: np.ndarray, logg: np.ndarray, rv_kms: np.ndarray, he_frac: np.ndarray | None = None
) -> np.ndarray:
    """Surface continuum F_λ (``synth.sed``) on the native grid at the stars' rest wavelengths λ/(1+v/c).

    Parameters
    ----------
    teff, logg
        (n,) labels.
    rv_kms
        (n,) radial velocities.
    he_frac
        (n,) N_He/N_tot (the synthesizer's SED depends on it slightly); default solar.

    Returns
    -------
    numpy.ndarray
        (n, 3909) float64, erg s⁻¹ cm⁻² Å⁻¹.
    """
    from survey_scale.synth import sed

    wave_ext = _extended_wave()
    teff = np.asarray(teff, dtype=np.float64)
    logg = np.asarray(logg, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp() overflows in the far-UV Wien tail of the SED's norm: flux 0
        cont_ext = np.asarray(sed(teff, logg, wave_ext, he_frac=he_frac))
    # Rest wavelength of native pixel i sits at extended index i + EXT - log10(1+z)/step (fractional).
    shift = np.log10(1.0 + np.asarray(rv_kms, dtype=np.float64) / C_KMS) / NATIVE_COEFF1
    pos = np.arange(NATIVE_NPIX)[None, :] + _EXT - shift[:, None]
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, wave_ext.size - 2)
    t = pos - i0
    rows = np.arange(cont_ext.shape[0])[:, None]
    # Linear interpolation in log λ of a smooth continuum: relative error ~ (step·ln10)²/8 · |d²lnF/dlnλ²|.
    return (1.0 - t) * cont_ext[rows, i0] + t * cont_ext[rows, i0 + 1]


def stellar_flux_native(
    labels: np.ndarray, rv_kms: np.ndarray, resolution: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Surface flux (with lines) of single stars on the native grid at their radial velocities.

    Parameters
    ----------
    labels
        (n, 11) physical labels (LABEL_NAMES order) within the synthesizer's range.
    rv_kms, resolution
        (n,) heliocentric velocity (km/s) and resolving power.

    Returns
    -------
    flux, continuum
        (n, 3909) float64 arrays (erg s⁻¹ cm⁻² Å⁻¹): the synthesized flux spectrum, exactly the synthesizer's
        on native pixels 58–3859 (see the module docstring), and the line-free continuum.
    """
    from survey_scale.synth import synthesize

    labels = np.asarray(labels, dtype=np.float64)
    cont = continuum_native(labels[:, 0], labels[:, 1], rv_kms, he_frac=labels[:, 4])
    with np.errstate(over="ignore"):  # the SED's normalization integral overflows exp() far in the UV: 0 flux
        inner = np.asarray(
            synthesize(
                labels,
                resolution=np.asarray(resolution, dtype=np.float64),
                rv=synth_velocity(rv_kms),
                kind="flux",
            ),
            dtype=np.float64,
        )
    lo, hi = NATIVE_OFFSET, NATIVE_OFFSET + N_WAVE
    flux = cont.copy()
    flux[:, lo:hi] = inner
    # Outside the synthesizer's range: the continuum × the median normalized flux of the 20 nearest covered
    # pixels (a pseudo-continuum level that ignores single line cores, e.g. H12 at 3751 Å).
    blue_norm = np.median(inner[:, :20] / cont[:, lo : lo + 20], axis=1)
    red_norm = np.median(inner[:, -20:] / cont[:, hi - 20 : hi], axis=1)
    flux[:, :lo] *= blue_norm[:, None]
    flux[:, hi:] *= red_norm[:, None]
    return flux, cont


def _clip_to_synth(labels: np.ndarray) -> np.ndarray:
    from survey_scale.synth import SYNTH_LIMITS

    out = labels.copy()
    for k, name in enumerate(LABEL_NAMES):
        lo, hi = SYNTH_LIMITS[name]
        out[:, k] = np.clip(out[:, k], lo, hi)
    return out


def composite_flux(
    inputs: VisitInputs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R1² F1 + R2² F2 on the native grid, each component at its own velocity.

    Secondaries cooler than the synthesizer's lower limit (6000 K, ``synth.SYNTH_LIMITS``) contribute their
    continuum only (``synth.sed``): at most a few per cent of the light of a hot primary, whose weak metal
    and molecular lines the mock omits (a documented limit).

    Returns
    -------
    flux, continuum, light_frac2
        (n, 3909) composite flux and continuum (erg s⁻¹ cm⁻² Å⁻¹ R_sun²), and the (n,) fraction of the
        4000–5500 Å stellar flux that comes from the secondary.
    """
    from survey_scale.synth import SYNTH_LIMITS

    n = inputs.labels1.shape[0]
    f1, c1 = stellar_flux_native(_clip_to_synth(inputs.labels1), inputs.rv1, inputs.resolution)
    r1sq = (inputs.radius1**2)[:, None]
    flux, cont = r1sq * f1, r1sq * c1
    light2 = np.zeros(n)
    binary = np.isfinite(inputs.radius2) & np.all(np.isfinite(inputs.labels2[:, :5]), axis=1)
    if binary.any():
        idx = np.flatnonzero(binary)
        lab2 = _clip_to_synth(inputs.labels2[idx])
        hot = inputs.labels2[idx, 0] >= SYNTH_LIMITS["teff"][0]
        f2 = np.empty((idx.size, NATIVE_NPIX))
        c2 = np.empty((idx.size, NATIVE_NPIX))
        if hot.any():
            f2[hot], c2[hot] = stellar_flux_native(lab2[hot], inputs.rv2[idx][hot], inputs.resolution[idx][hot])
        if (~hot).any():
            cool_lab = inputs.labels2[idx][~hot]
            cool = continuum_native(cool_lab[:, 0], cool_lab[:, 1], inputs.rv2[idx][~hot], he_frac=cool_lab[:, 4])
            f2[~hot], c2[~hot] = cool, cool
        r2sq = (inputs.radius2[idx] ** 2)[:, None]
        flux[idx] += r2sq * f2
        cont[idx] += r2sq * c2
        g = _WINDOWS["g"]
        light2[idx] = (r2sq[:, 0] * f2[:, g].sum(axis=1)) / flux[idx][:, g].sum(axis=1)
    return flux, cont, light2


def _window(band: tuple[float, float]) -> np.ndarray:
    wave = native_wavelength()
    return (wave >= band[0]) & (wave <= band[1])


_WINDOWS: dict[str, np.ndarray] = {name: _window(band) for name, band in SNR_BAND_WINDOWS.items()}


# --- emission, ISM, tellurics -------------------------------------------------------------------------------


EMISSION_LINES: dict[str, tuple[float, ...]] = {
    "ha": (masks.BALMER_LINES["H_alpha"],),
    "hb": (masks.BALMER_LINES["H_beta"],),
    "pa": tuple(masks.PASCHEN_LINES.values()),
}


def emission_spectrum(inputs: VisitInputs, continuum: np.ndarray) -> np.ndarray:
    """Gaussian emission lines to add to the composite flux (n, 3909).

    Each line carries EW × C(λ_c) of flux (EW in the star's rest frame, × (1+z) observed), centred at
    λ₀ (1 + v1/c), with σ_λ = λ_c/c · √(σ_v² + (c / (2.3548 R))²).
    """
    wave = native_wavelength()
    out = np.zeros((inputs.rv1.size, NATIVE_NPIX))
    z = inputs.rv1 / C_KMS
    lsf_v = C_KMS / (2.3548 * inputs.resolution)
    sigma_v = np.sqrt(np.nan_to_num(inputs.em_sigma_kms) ** 2 + lsf_v**2)
    for key, ew in (("ha", inputs.ha_ew), ("hb", inputs.hb_ew), ("pa", inputs.pa_ew)):
        active = np.flatnonzero(ew > 0)
        if active.size == 0:
            continue
        for centre0 in EMISSION_LINES[key]:
            centre = centre0 * (1.0 + z[active])
            sigma = centre * sigma_v[active] / C_KMS
            k = np.clip(np.searchsorted(wave, centre), 0, NATIVE_NPIX - 1)
            c_local = continuum[active, k]
            profile = np.exp(-0.5 * ((wave[None, :] - centre[:, None]) / sigma[:, None]) ** 2)
            profile /= np.sqrt(2 * np.pi) * sigma[:, None]
            out[active] += (ew[active] * (1.0 + z[active]) * c_local)[:, None] * profile
    return out


def interstellar_native(inputs: VisitInputs) -> np.ndarray:
    """Interstellar line transmission (n, 3909) on the native grid at the visits' resolving powers.

    The ISM is at rest in the heliocentric frame (v_ISM = 0, a simplification: anti-centre clouds move by
    ≲ 20 km/s); Ca II uses the star's distance (Megier et al. 2005, via ``synth.interstellar_transmission``).
    """
    from survey_scale.synth import interstellar_transmission

    wave = native_wavelength()
    out = np.empty((inputs.rv1.size, NATIVE_NPIX))
    for i in range(inputs.rv1.size):  # one call per visit: the LSF (resolution) is per visit; ~0.3 ms each
        out[i] = interstellar_transmission(
            inputs.ebv[i : i + 1], wave=wave, distance=inputs.distance_pc[i : i + 1],
            resolution=float(inputs.resolution[i]),
        )[0]  # fmt: skip
    return out


def telluric_native(inputs: VisitInputs) -> np.ndarray:
    """Telluric transmission (n, 3909) on the heliocentric native grid: bands sit at λ_t (1 + v_corr/c)."""
    from survey_scale.synth import telluric_transmission

    wave = native_wavelength()
    out = np.empty((inputs.rv1.size, NATIVE_NPIX))
    for i in range(inputs.rv1.size):
        topo = wave / (1.0 + inputs.v_helio_corr[i] / C_KMS)
        out[i] = telluric_transmission(
            inputs.airmass[i : i + 1], wave=topo, pwv=inputs.pwv_mm[i : i + 1],
            resolution=float(inputs.resolution[i]),
        )[0]  # fmt: skip
    return out


# --- the full observation -----------------------------------------------------------------------------------


def observe(
    inputs: VisitInputs,
    seed_base: int,
    *,
    keep_intermediate: bool = False,
    stellar_flux: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> ObservedBatch:
    """Simulate a batch of LAMOST visits (see the module docstring for the steps).

    Parameters
    ----------
    inputs
        The batch's :class:`VisitInputs`.
    seed_base
        Release-level seed; each visit's randomness comes from
        ``SeedSequence([seed_base, 4, inputs.seeds[i]])``, so a visit's noise and defects do not depend on
        the batch it was made in (its synthesized flux only in the last bits, from batched FFTs; the same
        batch size gives byte-identical files).
    keep_intermediate
        Also return the composite stellar flux (for tests).
    stellar_flux
        ``(flux, continuum, light_frac2)`` — (n, 3909) surface flux and its smooth continuum on the native
        grid at the visits' velocities, and the (n,) secondary light fraction — to observe instead of the
        synthesizer's :func:`composite_flux` (the mock's cool contaminants and QSOs,
        :mod:`survey_scale.mock.contaminants`); every later step is the same.

    Returns
    -------
    ObservedBatch
    """
    wave = native_wavelength()
    n = inputs.rv1.size
    stellar, cont, light2 = composite_flux(inputs) if stellar_flux is None else stellar_flux
    f_obs = stellar + emission_spectrum(inputs, cont)
    redden = ph.reddening_transmission(wave, inputs.ebv)
    f_obs = f_obs * interstellar_native(inputs) * redden * telluric_native(inputs)
    cont_obs = cont * redden  # the smooth continuum the pipeline's normalization divides out

    throughput = instrument_throughput(wave)
    gwin = _WINDOWS["g"]
    x = (np.log10(wave) - np.log10(wave[0])) / (np.log10(wave[-1]) - np.log10(wave[0])) * 2.0 - 1.0
    legendre = np.stack([x, 0.5 * (3 * x**2 - 1), 0.5 * (5 * x**3 - 3 * x)])
    step = 1.0 / (1.0 + np.exp(-(wave - 5900.0) / 15.0))

    flux = np.empty((n, NATIVE_NPIX), dtype=np.float32)
    ivar = np.empty((n, NATIVE_NPIX), dtype=np.float32)
    model = np.empty((n, NATIVE_NPIX), dtype=np.float32)
    norm = np.empty((n, NATIVE_NPIX), dtype=np.float32)
    andmask = np.zeros((n, NATIVE_NPIX), dtype=np.float32)
    ormask = np.zeros((n, NATIVE_NPIX), dtype=np.float32)
    snr_bands = np.empty((n, 5))
    corrupt_info: list[dict] = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed_base), 4, int(inputs.seeds[i])]))
        counts_per_flux = f_obs[i] * throughput
        beta = 10.0 ** (-0.4 * (SKY_G_EQUIVALENT - inputs.g_mag[i]))  # sky / star counts in the g band
        c_bar = inputs.snr[i] ** 2 * (1.0 + beta)
        k = c_bar / np.median(counts_per_flux[gwin])
        counts = k * counts_per_flux
        sigma_c = np.sqrt(np.clip(counts, 0.0, None) + beta * c_bar * sky_shape(wave, inputs.resolution[i]))
        cal = np.exp(legendre.T @ rng.normal(0.0, 0.03, 3)) * (1.0 + rng.normal(0.0, 0.015) * step)
        f_cal = f_obs[i] * cal
        scale = FLUX_SCALE_G14 * 10.0 ** (-0.4 * (inputs.g_mag[i] - 14.0)) / np.median(f_cal[gwin])
        f0 = scale * f_cal
        sigma_f = scale * cal * sigma_c / (k * throughput)
        obs = f0 + sigma_f * rng.standard_normal(NATIVE_NPIX)
        iv = 1.0 / sigma_f**2
        amask, omask = _bad_pixels(rng, obs, sigma_f, iv, wave, inputs.resolution[i])
        info = _corrupt(rng, obs, wave, str(inputs.corrupt_kind[i]))
        n_tail = int(rng.integers(12, 31))
        obs[-n_tail:] = 0.0
        flux[i], ivar[i], model[i] = obs, iv, f0
        andmask[i], ormask[i] = amask, omask
        norm[i] = obs / (scale * cal * cont_obs[i])
        good = iv > 0
        for b, name in enumerate(SNR_BAND_WINDOWS):
            sel = _WINDOWS[name] & good
            snr_bands[i, b] = float(np.median(obs[sel] * np.sqrt(iv[sel]))) if sel.any() else 0.0
        corrupt_info.append(info)
    return ObservedBatch(
        flux=flux,
        ivar=ivar,
        andmask=andmask,
        ormask=ormask,
        normalization=norm,
        model=model,
        snr_bands=snr_bands,
        light_frac2=light2,
        corrupt_info=corrupt_info,
        stellar=stellar if keep_intermediate else None,
    )


def _bad_pixels(
    rng: np.random.Generator,
    flux: np.ndarray,
    sigma: np.ndarray,
    ivar: np.ndarray,
    wave: np.ndarray,
    resolution: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Bad-pixel clusters (Poisson mean 1 per spectrum, 3–7 pixels, ivar 0, a cosmic-ray-like spike, mask
    bits on the central pixels) and, in a third of the spectra, BRIGHTSKY or-mask bits at strong sky lines.
    Modifies ``flux`` and ``ivar`` in place; returns the and-mask and or-mask (float bit values)."""
    amask = np.zeros(NATIVE_NPIX)
    omask = np.zeros(NATIVE_NPIX)
    for _ in range(int(rng.poisson(1.0))):
        centre = int(rng.integers(0, NATIVE_NPIX - 40))
        half = int(rng.integers(1, 4))
        lo, hi = max(0, centre - half), min(NATIVE_NPIX, centre + half + 1)
        bit = float(rng.choice([MASK_BITS["BADCCD"], MASK_BITS["BADPROFILE"], MASK_BITS["BADCENTER"]]))
        flux[centre] += abs(rng.normal(8.0, 3.0)) * sigma[centre]
        ivar[lo:hi] = 0.0
        omask[centre] = bit
        if rng.random() < 0.5:
            amask[centre] = bit
    if rng.random() < 1.0 / 3.0:
        for line in SKY_LINES:
            k = int(np.argmin(np.abs(wave - line)))
            omask[k - 1 : k + 2] = np.maximum(omask[k - 1 : k + 2], MASK_BITS["BRIGHTSKY"])
    return amask, omask


def _corrupt(rng: np.random.Generator, flux: np.ndarray, wave: np.ndarray, kind: str) -> dict:
    """Apply one P1 Fig. 15-like defect to ``flux`` in place; return its parameters (empty if none)."""
    if not kind:
        return {}
    if kind == "flux_jump":
        lo = float(rng.uniform(4300.0, 7500.0))
        hi = lo + float(rng.uniform(300.0, 1500.0))
        factor = float(rng.choice([rng.uniform(0.4, 0.7), rng.uniform(1.4, 1.9)]))
        sel = (wave >= lo) & (wave <= hi)
        flux[sel] *= factor
        return {"corrupt_lo": lo, "corrupt_hi": hi, "corrupt_amount": factor}
    if kind == "artifact":
        lo = float(rng.uniform(4500.0, 6500.0))
        hi = lo + float(rng.uniform(1000.0, 2500.0))
        amp, period = float(rng.uniform(0.15, 0.35)), float(rng.uniform(40.0, 150.0))
        sel = (wave >= lo) & (wave <= hi)
        flux[sel] *= 1.0 + amp * np.sin(2 * np.pi * wave[sel] / period + rng.uniform(0, 2 * np.pi))
        return {"corrupt_lo": lo, "corrupt_hi": hi, "corrupt_amount": amp}
    if kind == "wrong_wavelength":
        lo = float(rng.uniform(5000.0, 7000.0))
        hi = lo + float(rng.uniform(600.0, 1500.0))
        shift = int(rng.integers(4, 16)) * int(rng.choice([-1, 1]))
        idx = np.flatnonzero((wave >= lo) & (wave <= hi))
        src = np.clip(idx - shift, idx[0], idx[-1])
        flux[idx] = flux[src].copy()
        return {"corrupt_lo": lo, "corrupt_hi": hi, "corrupt_amount": float(shift)}
    raise ValueError(f"unknown corruption kind {kind!r}")


def visit_inputs(visits: pd.DataFrame, stars: pd.DataFrame) -> VisitInputs:
    """Assemble :class:`VisitInputs` for ``visits`` rows from the star table (joined on ``star_index``)."""
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()]
    labels1 = st[list(LABEL_NAMES)].to_numpy(dtype=np.float64)
    labels2 = st[[f"{name}2" for name in LABEL_NAMES]].to_numpy(dtype=np.float64)
    binary = st["binary"].to_numpy(dtype=bool)
    return VisitInputs(
        labels1=labels1,
        labels2=np.where(binary[:, None], labels2, np.nan),
        radius1=st["radius"].to_numpy(dtype=np.float64),
        radius2=np.where(binary, st["radius2"].to_numpy(dtype=np.float64), np.nan),
        rv1=visits["rv"].to_numpy(dtype=np.float64),
        rv2=np.where(binary, visits["rv2"].to_numpy(dtype=np.float64), np.nan),
        resolution=visits["resolution"].to_numpy(dtype=np.float64),
        ebv=st["ebv"].to_numpy(dtype=np.float64),
        distance_pc=st["distance_pc"].to_numpy(dtype=np.float64),
        v_helio_corr=visits["v_helio_corr"].to_numpy(dtype=np.float64),
        airmass=visits["airmass"].to_numpy(dtype=np.float64),
        pwv_mm=visits["pwv_mm"].to_numpy(dtype=np.float64),
        snr=visits["snr"].to_numpy(dtype=np.float64),
        g_mag=st["G_true"].to_numpy(dtype=np.float64),
        ha_ew=visits["ha_ew"].to_numpy(dtype=np.float64),
        hb_ew=visits["hb_ew"].to_numpy(dtype=np.float64),
        pa_ew=visits["pa_ew"].to_numpy(dtype=np.float64),
        em_sigma_kms=st["em_sigma_kms"].to_numpy(dtype=np.float64),
        corrupt_kind=visits["corrupt_kind"].to_numpy(),
        seeds=visits["visit_seed"].to_numpy(dtype=np.int64),
    )
