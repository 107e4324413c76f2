"""Built-in hot-star spectrum synthesizer and model grids (SPEC §10, §5.1; P2 §3–§4).

Public interface::

    from survey_scale.synth import synthesize, sed, interstellar_transmission, telluric_transmission
    from survey_scale.synth import make_model_grid

    synthesize(labels, *, resolution=None, rv=None, kind="normalized", chunk_size=256) -> (n, 3802) float32
    sed(teff, logg, wave=None, *, he_frac=None)                  -> (n, P) F_λ, erg s⁻¹ cm⁻² Å⁻¹
    interstellar_transmission(ebv, wave=None, *, distance=None, resolution=1800.0) -> (n, P) in (0, 1]
    telluric_transmission(airmass, wave=None, pwv=None, *, resolution=1800.0)      -> (n, P) in (0, 1]
    make_model_grid(n, seed, *, resolution=1800.0, chunk_size=1024) -> survey_scale.science.model_grid.ModelGrid
    draw_resolution(n, rng, mean=1800.0, scatter=0.08) -> (n,) per-fibre resolving powers for synthesize

    from survey_scale.synth.cannon_grid import make_cannon_model_grid   # a physics-based grid for real spectra
    make_cannon_model_grid(model_path, n, seed) -> ModelGrid (teff, logg, vsini, fe_h) from thedoppler's
                                                    hot-dwarf Cannon model, broadened by this package's kernels

What it is
----------
A fast, deterministic, vectorized LTE synthesizer with the *information structure* of real hot-star spectra
at LAMOST resolution (P2 §3, Figs. 3–5): which pixels respond to which of the 11 labels, with the right
signs, the right temperature sequences and magnitudes within a factor of ~2. It is the physics core of the
mock release and of the emulator's training grid. It is **not** Kurucz/SYNTHE or TLUSTY: a fit to its
spectra tests the pipeline, not stellar astrophysics.

Physics (modules :mod:`.atmosphere`, :mod:`.lines`, :mod:`.spectrum`, :mod:`.linelists`)
----------------------------------------------------------------------------------------
- *One-layer photosphere.* Gas and electron pressure at τ̄ = 2/3 from hydrostatic equilibrium with a
  Rosseland mean of Gray's continuous opacities (H I bound-free/free-free, H⁻, He II bound-free, Thomson
  scattering) and Saha equilibrium of H and He; the He fraction changes the mean molecular weight and the
  electron supply, hence (mildly) the H lines. Lines form in a layer at 0.92 T_eff and 0.45 P_g.
- *Line strengths.* Saha–Boltzmann populations (constant partition functions) of ~320 lines of C, N, O, Mg,
  Si, S, Ca, Fe in stages I–IV (Ca I/Fe I/Mg I and Fe II, Mg II 4481, Ca II K at A stars; Si II→III→IV, C II,
  N II, O II, S II/S III, Fe III, C III/N III in B/O stars) relative to the continuous opacity at each line,
  Milne–Eddington line depths d = d_max η/(1+η) and, for narrow lines, a curve of growth with Doppler width
  √(2kT/m + v_mic²) (v_mic desaturates strong lines) and damping. [C/H], [N/H], [O/H], [Si/H], [S/H], [Fe/H]
  scale their element's lines only (Mg and Ca follow [Fe/H]); metals do not feed back on the atmosphere.
- *Resolved lines.* Balmer (n ≤ 30) and Paschen (n ≤ 30) lines with linear-Stark (Holtsmark-like,
  ∝ |Δλ|^-5/2) wings whose width ∝ N_e^{2/3} grows with log g, Inglis–Teller dissolution of high series
  members; He I lines (quadratic Stark, appear above ~11,000 K and peak near 20,000 K), He II Pickering and
  4686 lines (hydrogenic, above ~30,000 K); Ca II H, K and the IR triplet with damping wings. Balmer
  strengths peak near 9,500 K (H⁻ opacity below, ionization above).
- *Broadening and sampling.* Everything is computed on a 3× oversampled log-λ grid; rotation (Gray's
  profile, ε = 0.6), a Gaussian LSF of constant resolving power R (default 1800 at all λ; per-spectrum R for
  fibre scatter) and, for metal lines, thermal + micro-turbulent Gaussians are applied per spectrum by
  batched FFT convolution, with radial velocities as exact Fourier phase shifts, then averaged into the
  3802 pixels of :func:`survey_scale.core.wavelength.wavelength_grid`.
- *SED.* Eddington–Barbier flux with the same opacities, normalized to σT_eff⁴: Balmer/Paschen jumps that
  peak for A stars and, for A stars below ~9000 K, grow at low log g.
- *ISM and tellurics* (:mod:`.ism`): Na I D, Ca II K/H and 17 DIBs scaled with E(B−V) by published
  relations; O₂ A/B and H₂O band envelopes scaled with airmass and PWV.

Limits (what is approximated)
-----------------------------
- One layer instead of a model atmosphere: no depth dependence of T, P or ionization; LTE only (no NLTE
  line cores or infilling, no winds or emission); constant partition functions; no line blanketing; no
  He I, metal or molecular continuous opacity.
- Atomic data are rounded, approximate values for ~320 strong lines (see :mod:`.linelists`), not a complete
  line list: A-star metal-line blanketing is much weaker than reality, F-type stars below ~7000 K are
  schematic. Four calibration factors (H, He I, He II, metals) set typical equivalent widths near observed
  ones; the abundance responses at the P2 fiducial B star are 1–4 % per dex (P2 Fig. 3: mostly ≤ 1 %).
- Narrow-line profiles are deltas broadened by the kernels (their intrinsic saturated widths are
  neglected); metal lines are applied multiplicatively after broadening, exp(−K⊗m).
- The LSF has constant R (LAMOST's is closer to constant FWHM per arm and varies along the spectrum); the
  He I forbidden components, Stark shifts and line asymmetries are ignored.
- Valid label range :data:`SYNTH_LIMITS` (wider than the model-grid box
  :data:`survey_scale.core.labels.LABEL_RANGES`); |rv| ≤ 2000 km s⁻¹; 500 ≤ R ≤ 4000 (the 3× oversampled grid
  must resolve the LSF).

Performance (``benchmarks/bench_synth.py``, 2 CPU cores shared with other jobs, load 2–3): ~1000–1400
normalized and ~600–800 flux spectra per second, a 10,000-spectrum model grid in 15–19 s.
"""

from __future__ import annotations

from survey_scale.synth.core import DEFAULT_RESOLUTION, SYNTH_LIMITS, draw_resolution, sed, synthesize
from survey_scale.synth.ism import interstellar_transmission, telluric_transmission
from survey_scale.synth.synthetic_grid import make_model_grid, sample_labels

__all__ = [
    "DEFAULT_RESOLUTION",
    "SYNTH_LIMITS",
    "draw_resolution",
    "interstellar_transmission",
    "make_model_grid",
    "sample_labels",
    "sed",
    "synthesize",
    "telluric_transmission",
]
