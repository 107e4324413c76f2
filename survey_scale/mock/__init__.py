"""The built-in mock LAMOST release: a seeded population of hot stars observed as LAMOST would (SPEC §10).

Real LAMOST spectra cannot be bundled, so survey_scale writes its own release — the default data of the
demo, the tests and the benchmarks, and what users test their cluster set-up on. It goes through the same
ingest path as real data: LAMOST-layout FITS files (DR7 primary image and DR8+ ``COADD`` table, gzipped or
not, headers key-for-key as the real files), a release catalog and a Gaia/2MASS/photometry cross-match,
plus a truth table that the pipeline's results can be scored against. Like a real hot-star candidate list
(P2 §2, §5.1) it also holds contaminants: cool F/G/K stars (``cool_fraction`` of all stars, default 0.3; 0
for a hot-star-only release) with LAMOST-like classes, some misclassified as A, and a few QSOs, marked in the
truth (``population``); the hot stars are the same with or without them.

Usage::

    from survey_scale.mock import make_release
    summary = make_release("mock1", n_stars=600, seed=1)                       # MOCK1
    make_release("mock2", n_stars=300, seed=2, release="MOCK2", previous="mock1")  # new visits + new stars

Modules: :mod:`.population` (the stars), :mod:`.photometry` (bands, extinction coefficients, colours),
:mod:`.schedule` (plans, nights, fibres, S/N, velocities), :mod:`.spectra` (observed spectra),
:mod:`.writer` (FITS bytes), :mod:`.contaminants` (cool stars and QSOs), :mod:`.release` (orchestration,
tables); its figures are in
:mod:`survey_scale.products.figures.mock`.

Physics of the population (what is drawn, and from what)
--------------------------------------------------------
- **Sky and distances.** Plates of 2.5° radius, 75 % around the anti-centre (l ~ N(180°, 22°)), |b| Laplace
  with 6° scale, −10° < Dec < 65° (LSS-GAC-like; P2 §2). Along each sight line the distance (0.2–15 kpc)
  is drawn from d³ ρ★(d) S(G(d)): a young exponential disc (scale length 2.6 kpc, flaring 70 pc scale
  height, Perseus and Outer arm rings, truncated at R ≈ 15 kpc) times a LAMOST-like selection in G (soft
  limits at 10.3 and 17.8). The result: G ≈ 10–17.5 peaking near 13.5–14 (P2 Fig. 2).
- **Reddening** grows along each sight line as the integral of an exponential dust disc (0.55 mag kpc⁻¹
  in E(B−V) at the Sun, scale height 120 pc), modulated by a seeded log-normal cloud field on the sky
  (σ = 0.35, scales 1–10°) and 0.1 dex per star; emission-line stars carry +0.07 mag of circumstellar
  reddening (P1 Fig. 4). Continuum reddening uses Fitzpatrick (1999), R_V = 3.1.
- **Labels.** Teff ∝ Teff⁻³ on 7,000–45,000 K (80 % below 15,000 K); log g on the main sequence (86 %),
  giants (12 %) or supergiants (2 %) relative to the Pecaut & Mamajek (2013) dwarf sequence; vsini, vmic,
  N_He/N_tot and abundances (radial gradient, Am/Si peculiar stars) as documented in
  :func:`.population._draw_other_labels`, all within :data:`survey_scale.core.labels.LABEL_RANGES`.
- **MKs** = M_bol,sun − 2.5 log(L) − BC_Ks(Teff), L = M ℒ with ℒ = Teff⁴/g, the mass a smooth function of
  (Teff, log g): a fit to the Pecaut & Mamajek dwarfs (reproduced to 0.1 mag) blended into the
  flux-weighted gravity–luminosity relation of Kudritzki et al. for evolved stars; plus 0.1 mag of
  intrinsic scatter (carried by the mass, hence the radius).
- **Photometry** G, BP, RP, J, H, Ks, g, r, i: the dwarf colour sequence (extended to O stars by
  extrapolation in B−V, to hot Gaia colours by a line in V−Ic, SDSS colours by Jester et al. 2005; giants
  take the dwarf colours of their Teff) plus R_band E(B−V) with the coefficients of
  :data:`.photometry.EXTINCTION_COEFFS` (12,000 K star, F99 R_V = 3.1: G 2.909, BP 3.554, RP 1.925,
  J 0.824, H 0.520, Ks 0.350, g 3.811, r 2.602, i 1.931), G-dependent errors, and missing values past the
  2MASS/survey limits.
- **Astrometry.** Gaia DR2-like parallax errors (0.04 mas bright, 0.1 mas at G = 17), the zero point of
  SPEC §8 (ϖ_obs = ϖ − 0.0528 + 0.00421 (G − 12.2) mas), 2 % missing; proper motions and systemic radial
  velocities from a flat 235 km/s rotation curve with disc dispersions; RUWE near 1 with binary wobbles.
- **Binaries** (15 %): q flat in [0.1, 1] (Sana et al. 2012: f(q) ∝ q^−0.1); the secondary on the dwarf
  sequence for its mass, shifted like the primary by q⁴ (twins are identical stars, equal-mass systems are
  0.75 mag brighter, P1 §6); circular orbits, P log-uniform 2–5000 d, isotropic inclinations; composite
  spectra R1²F1 + R2²F2 with each component's velocity; summed photometry.
- **Emission-line stars** (13 %, peaking at B2 (Be) and ~9,000 K (Herbig Ae/Be)): Hα EW log-uniform
  1–50 Å; Hβ in 70 % (0.1–0.3 × Hα), Paschen in 30 % (0.02–0.08 × Hα each); ±10 % between visits;
  near-IR disc excess in J, H, Ks.
- **Visits.** ~30 % of stars have 2–5 visits on different nights; S/N = f(G) × 10^(N(0, 0.08) − Exp(0.32))
  gives a median near 40 and a log S/N peak near 1.8 (P2: 37 and 63); per-visit LSF R log-normal about
  1800 with 8 % scatter (``synth.draw_resolution``, as the model grids);
  ~1 % corrupted spectra (flux jumps, artefacts, mis-calibrated wavelength segments; P1 Fig. 15).
- **Contaminants** (:mod:`.contaminants`): cool dwarfs, subgiants and giants (Teff 3,700–7,500 K, [Fe/H]
  ~ N(−0.2, 0.3), slow rotators but F stars) on the same plates, in an old disc, with the same photometry,
  reddening and astrometry machinery; spectra from the cool-star emulator's normalized flux times a Planck
  continuum, observed as the hot stars; CLASS/SUBCLASS as LAMOST gives them (~15 % as A types); 0.3 % of the
  spectra are QSOs (power law, broad lines, header Z = redshift).
- **Spectra** (:mod:`.spectra`): the synthesizer's flux on LAMOST's native log-linear grid (exact
  Doppler mapping), emission, ISM lines, F99 reddening, tellurics in the observatory frame, a two-arm
  throughput and sky for the noise, residual flux calibration, bad pixels and masks.

Limits (what the mock does not do)
----------------------------------
- The synthesizer is a one-layer LTE model (see :mod:`survey_scale.synth`): spectra have the right
  information structure, not Kurucz accuracy. Companions cooler than 6,000 K contribute a continuum only.
- Colours do not depend on gravity or metallicity; BC_V is the dwarfs'. No hot subdwarfs, white dwarfs,
  BHB stars or high-latitude halo population; supergiants are few and schematic.
- Circular orbits, no triples; no light-travel or tidal effects; emission-line profiles are single
  Gaussians (no double peaks, no shell absorption); v_ISM = 0 in the heliocentric frame.
- Photometric extinction applies the small-E(B−V) coefficient linearly (broad bands like G in reality
  lose ~6 % of their coefficient by E(B−V) = 0.5).
- Star ids of a new release avoid those of its direct predecessor only (chains are checked link by link).
- Contaminants are single stars without emission, at the emulator's mean LSF; they are not revisited by a
  later release.
"""

from __future__ import annotations

from survey_scale.mock.contaminants import COOL_FRACTION, ContaminantConfig, cool_star_emulator
from survey_scale.mock.photometry import EXTINCTION_COEFFS
from survey_scale.mock.population import PopulationConfig, make_population
from survey_scale.mock.release import INVALID_KINDS, ReleaseSummary, make_release
from survey_scale.mock.schedule import ScheduleConfig, make_visits

__all__ = [
    "COOL_FRACTION",
    "EXTINCTION_COEFFS",
    "INVALID_KINDS",
    "ContaminantConfig",
    "PopulationConfig",
    "ReleaseSummary",
    "ScheduleConfig",
    "cool_star_emulator",
    "make_population",
    "make_release",
    "make_visits",
]
