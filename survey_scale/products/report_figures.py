"""The report's figures (SPEC §11): what each draws, from which steps, with its caption (:data:`FIGURES`, by
section :data:`SECTIONS`), the inputs they share (:class:`ReportInputs`), and drawing them without letting one
figure that fails cost the report (:func:`draw_figures`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from survey_scale.products.status import DONE, MISSING, CubeState

log = logging.getLogger("survey_scale.products.report")


# --- inputs ------------------------------------------------------------------------------------------------


@dataclass
class ReportInputs:
    """What the figures draw from: the cube, the mock release (``truth``), the emulator file of the fit."""

    cube: Path
    truth: Path | None
    state: CubeState

    @cached_property
    def emulator_path(self) -> Path | None:
        """The emulator the fit used, as the bookkeeping records it; None if none is."""
        try:
            return self.state.books.recorded_model("emulator")
        except FileNotFoundError:
            return None

    @cached_property
    def emulator(self) -> Any:
        from survey_scale.science.emulator import load

        if self.emulator_path is None:
            raise FileNotFoundError(f"{self.cube}: no emulator file (survey-scale emulator makes one)")
        return load(self.emulator_path)


# --- the figures -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its file, the paper figure it is an analogue of, and what it needs."""

    name: str
    """PNG file stem."""
    section: str
    paper: str
    """The paper figure, e.g. ``"P1 Fig. 2"``."""
    title: str
    caption: str
    """What the reader sees (and how it compares with the paper)."""
    needs: tuple[str, ...]
    """Registry steps whose products the figure draws."""
    draw: Callable[[ReportInputs, Path], Path]
    truth: bool = False
    """Drawn only when the report is given the mock release's truth."""


def _emission(inputs: ReportInputs, path: Path) -> Path:
    from survey_scale.products.figures.cube import plot_emission_diagram

    return plot_emission_diagram(inputs.cube, inputs.state.books.recorded_model("pca"), path)


def _gradients(inputs: ReportInputs, path: Path) -> Path:
    from survey_scale.core.labels import LABEL_NAMES
    from survey_scale.products.figures.emulator import plot_emulator_gradients
    from survey_scale.synth.gradients import FIDUCIAL_B_STAR, gradient_spectra

    em = inputs.emulator
    star = [FIDUCIAL_B_STAR.get(name, 0.0) for name in em.label_names]
    reference = None
    if tuple(em.label_names) == LABEL_NAMES and em.wave.size == gradient_spectra().shape[1]:
        reference = gradient_spectra(FIDUCIAL_B_STAR)
    return plot_emulator_gradients(em, star, path, device="cpu", reference=reference,
                                   reference_name="synthesizer (finite differences)")  # fmt: skip


def _cramer_rao(inputs: ReportInputs, path: Path) -> Path:
    from survey_scale.products.figures.emulator import plot_cramer_rao
    from survey_scale.synth.gradients import FIDUCIAL_B_STAR

    em = inputs.emulator
    star = [FIDUCIAL_B_STAR.get(name, 0.0) for name in em.label_names]
    return plot_cramer_rao(em, star, path, snr=100, device="cpu")


def _cube_figure(module: str, function: str, truth: bool = False) -> Callable[[ReportInputs, Path], Path]:
    """A figure function ``function(cube, path)`` (``function(cube, truth, path)`` when ``truth``) of
    ``survey_scale.products.figures.<module>``, imported when drawn."""

    def draw(inputs: ReportInputs, path: Path) -> Path:
        import importlib

        func = getattr(importlib.import_module(f"survey_scale.products.figures.{module}"), function)
        return func(inputs.cube, inputs.truth, path) if truth else func(inputs.cube, path)

    return draw


def _ebv(inputs: ReportInputs, path: Path) -> Path:
    from survey_scale.products.figures.distances import plot_ebv

    return plot_ebv(inputs.cube, path, inputs.truth)


def _mock_population(inputs: ReportInputs, path: Path) -> Path:
    from survey_scale.products.figures.mock import plot_population

    assert inputs.truth is not None
    return plot_population(pd.read_parquet(inputs.truth / "truth_stars.parquet"), path)


PCA, EMULATOR, LABELS, FINAL, SURVEY, P1, TRUTH = (
    "Spectra: PCA reconstruction and emission (P1 §3)",
    "The emulator and the information in a spectrum (P2 §3)",
    "Stellar labels (P2 §4–§6)",
    "The final sample (P2 §5.1)",
    "Survey-wide reductions: repeat visits and χ² (P2 §4.6, §5.2)",
    "Extinction, MKs, binaries and distances (P1 §4–§7)",
    "Against the mock's truth",
)
SECTIONS = (PCA, EMULATOR, LABELS, FINAL, SURVEY, P1, TRUTH)

FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("pca_reconstructions", PCA, "P1 Fig. 2", "PCA reconstructions",
               "The highest-S/N non-emission spectrum (top) and emission spectrum (bottom), normalized, in black, with "
               "their PCA reconstruction from the clean windows (shaded blue) in red. As in P1, the reconstruction "
               "follows the photosphere under Hα, so the emission star's Hα rises above it.",
               ("pca",), _cube_figure("cube", "plot_reconstructions")),
    FigureSpec("emission_diagram", PCA, "P1 Fig. 3", "Hα emission identification",
               "Each spectrum's Hα excess over its PCA reconstruction (6557–6571 Å) against the reduced χ² of the "
               "Hα wings. Red: em_flag = 1; blue crosses: erroneous spectra; the dashed line is the threshold of a "
               "noiseless spectrum (each spectrum's own threshold adds its measurement error).",
               ("pca",), _emission),
    FigureSpec("emulator_gradients", EMULATOR, "P2 Fig. 3", "Gradient spectra of the emulator",
               "∂f/∂l × Δl of every label for the fiducial B star (Teff 18,000 K, log g 4.0, [Fe/H] 0, vsini "
               "100 km/s; Δl = 1000 K, 5 km/s for vmic, 20 km/s for vsini, 0.05 for He, 1 dex otherwise): the "
               "emulator's in red over the synthesizer's finite differences in black, as P2 compares its "
               "HotPayne with Kurucz. Agreement means the emulator reads labels from their own features.",
               ("emulator",), _gradients),
    FigureSpec("emulator_cramer_rao", EMULATOR, "P2 Figs. 4–5", "Cramér–Rao bound",
               "Left: the best precision any unbiased fit can reach for each label of the fiducial B star at "
               "S/N = 100 (Teff in 1000 K, log g in dex, velocities in km/s, abundances in dex, He as N_He/N_tot), "
               "from the emulator's gradients. Right: the label correlations that bound predicts (P2 Fig. 5).",
               ("emulator",), _cramer_rao),
    FigureSpec("example_fits", LABELS, "P2 Fig. 8", "Example label fits",
               "The highest-S/N B star and early A star (black) with their best-fit emulator model (red); grey: "
               "regions masked in every fit (telluric bands, DIBs, ISM lines, the dichroic); orange: the hydrogen "
               "lines masked in the H-masked fit where that fit has weight. The title gives the labels and χ².",
               ("fit",), _cube_figure("cube", "plot_example_fits")),
    FigureSpec("kiel", LABELS, "P2 Fig. 13", "Kiel diagram",
               "Teff against log g of P2 §5.1's final sample (final_sample = 1: every rule of the section below) with "
               "S/N > 20, coloured by [Fe/H]: the main sequence, giants and (at high Teff and log g) hot subdwarfs, "
               "as P2 shows them.",
               ("fit",), _cube_figure("cube", "plot_kiel")),
    FigureSpec("vsini", LABELS, "P2 Fig. 16", "Projected rotation velocities",
               "vsini of the final sample with S/N > 50 and log g < 5, one visit per star: its distribution (top "
               "left), per Teff range (top right, normalized), against Teff and against [Fe/H]. Negative values (the "
               "fit extrapolates below 0) are kept, as in P2: their tail shows the measurement uncertainty. P2's "
               "critical-velocity line (from MIST) is not drawn.",
               ("fit",), _cube_figure("labels", "plot_vsini")),
    FigureSpec("abundances", LABELS, "P2 Fig. 17", "[Fe/H] and [Si/H]",
               "Stars with S/N > 50: [Fe/H] against Teff (left), and [Si/H] against [Fe/H] for Teff ≥ 8,000 K "
               "(right, with the 1:1 line; P2 finds them consistent and Ap/Bp stars Si-rich).",
               ("fit",), _cube_figure("labels", "plot_abundances")),
    FigureSpec("teff_vs_class", FINAL, "P2 §5.1", "Fitted Teff against LAMOST class",
               "The fitted Teff (log scale) against LAMOST's subclass, O to M (subtypes in order within each letter, "
               "jittered; a subclass without a subtype spread over its letter), blue in P2 §5.1's final sample, "
               "orange out of it; black: the dwarf Teff of each subtype (Pecaut & Mamajek 2013); dashed: 7,000 K. "
               "Right: the Teff of the cool-star check (teff_cool) of the same spectra. Hot stars follow the dwarf "
               "line; cool stars that LAMOST calls A (a hot-star candidate list's contaminants) sit below it and "
               "should be out. Spectra without an O–M subclass are left out (the title counts them).",
               ("final_sample",), _cube_figure("final_sample", "plot_teff_against_class")),
    FigureSpec("final_sample_rules", FINAL, "P2 §5.1", "Spectra removed by each final-sample rule",
               "Left: the spectra each of P2 §5.1's rules flags (light) and those it alone flags (dark), with the "
               "share of all spectra; right: the overlaps, spectra flagged by both rules of a pair (the diagonal "
               "repeats each rule's count). A spectrum is in the final sample when no rule flags it and the fit "
               "has labels; the flags are kept in the labels catalog, nothing is deleted.",
               ("final_sample",), _cube_figure("final_sample", "plot_final_sample_rules")),
    FigureSpec("repeat_precision", SURVEY, "P2 Fig. 10", "Precision from repeat visits",
               "Label differences of repeat pairs (different nights, S/N within 20 %, Teff > 10,000 K) against their "
               "mean S/N, per label; red: median and ± robust σ per S/N bin; the numbers are the precision "
               "(scatter/√2) for S/N < 50 / 50–100 / > 100, as P2's table.",
               ("repeats",), _cube_figure("survey", "plot_repeat_precision")),
    FigureSpec("chi2ratio", SURVEY, "P2 §5.2", "The survey's χ² model",
               "Left: reduced χ² of the fit against S/N, coloured by log Teff, with the fitted median (solid) and "
               "median + 10σ (dashed) at three Teff. Right: the distribution of chi2ratio; spectra above 10 get "
               "flag_chi2ratio (P2 §5.2 has no figure; this shows the cut).",
               ("chi2ratio",), _cube_figure("survey", "plot_chi2ratio")),
    FigureSpec("ebv", P1, "P1 Fig. 4", "E(B−V)",
               "E(B−V) from the colour excesses against the reference: the mock's true E(B−V) when the report "
               "has the truth (P1 compares with the Green et al. 2019 map), else against distance. Blue: no "
               "emission; red: emission stars, whose excess P1 finds shifted by circumstellar dust.",
               ("extinction",), _ebv),
    FigureSpec("mks", P1, "P1 Fig. 5", "Spectroscopic against geometric MKs",
               "The MKs test stars (ϖ/σ > 10, S/N > 20): the non-emission network (left) and the clean-window "
               "network of emission stars (right) against the MKs from the parallax; the dashed line is the "
               "0.75 mag of equal-mass binaries; orange: binary_flag = 1.",
               ("mks",), _cube_figure("distances", "plot_mks")),
    FigureSpec("mks_mcmc", P1, "P1 Fig. 8", "MKs uncertainty model (MCMC)",
               "The posterior of the uncertainty model of P1 Eq. 7–14 from emcee on the single test stars of the "
               "non-emission network: bias ε, its S/N slope δ, the intrinsic σ_int and the noise term σ_s at "
               "S/N = 100, with 16/50/84 % lines (P1: σ_int = 0.25 mag, σ_s100 = 0.10 mag).",
               ("mks_model",), _cube_figure("distances", "plot_mcmc_corner")),
    FigureSpec("snr_dparallax", P1, "P1 Fig. 10", "Spectro-photometric against Gaia parallax",
               "S/N_Δϖ, the parallax difference over its error, of every spectrum (left) and against MKs (right); "
               "the red line at 2 is the binary threshold (binary_flag = 1 above).",
               ("distances",), _cube_figure("distances", "plot_snr_dparallax")),
    FigureSpec("distance_precision", P1, "P1 Fig. 11", "Distances and their precision",
               "Single stars, one visit each: the distance distribution (left) and the relative precision "
               "(d84 − d16)/2d against distance (right), this run's (MKs and parallax, blue) and the parallax's "
               "alone (orange), with running medians: MKs helps most for distant stars, as in P1.",
               ("distances", "uniqflag"), _cube_figure("distances", "plot_distance_precision")),
    FigureSpec("xy_map", P1, "P1 Fig. 12", "The stars in the Galactic plane",
               "Stars (highest-S/N visit) with distances to 30 % in Galactic X–Y, coloured by Z; the Sun at "
               "X = −8.1 kpc (star).",
               ("distances", "uniqflag"), _cube_figure("distances", "plot_xy_map")),
    FigureSpec("labels_vs_truth", TRUTH, "P2 Fig. 7", "Labels against the truth",
               "Fitted minus true label against true Teff for single, non-emission, uncorrupted mock spectra with "
               "S/N > 20, coloured by S/N; red: median offset ± robust σ (Teff as a fraction). P2 Fig. 7 does "
               "this on Kurucz spectra at S/N ~ 100.",
               ("fit",), _cube_figure("truth", "plot_labels_vs_truth", truth=True), truth=True),
    FigureSpec("mks_vs_truth", TRUTH, "P1 Figs. 5, 10", "MKs and binaries against the truth",
               "Left: spectroscopic MKs against the true MKs (a binary's primary) for S/N > 20. Right: the share "
               "of true binaries and of true single stars that binary_flag marks, by the system's true MKs.",
               ("mks", "distances"), _cube_figure("truth", "plot_mks_vs_truth", truth=True), truth=True),
    FigureSpec("binary_recall", TRUTH, "P1 §6", "Binaries found, by brightening and parallax precision",
               "The share of the mock's binaries (each star's highest-S/N visit) with binary_flag = 1, against how "
               "much brighter the system is than its primary, one line per parallax/error bin; the title gives "
               "the false-positive rate among single stars with parallax/error > 10.",
               ("distances", "uniqflag"), _cube_figure("truth", "plot_binary_recall", truth=True), truth=True),
    FigureSpec("distances_vs_truth", TRUTH, "P1 Fig. 11", "Distances against the truth",
               "d/d_true − 1 of single-star spectra against the true distance: this run's distances (blue) and "
               "those of the parallax alone (orange), with the median and ±σ per distance bin.",
               ("distances",), _cube_figure("truth", "plot_distances_vs_truth", truth=True), truth=True),
    FigureSpec("mock_population", TRUTH, "P1 Fig. 12, P2 Fig. 13", "The mock's true population",
               "The mock stars as drawn: Galactic X–Y (left; Sun +, rings every kpc) and the true Kiel diagram "
               "(right) — what the X–Y map and Kiel diagram above should recover.",
               (), _mock_population, truth=True),
)  # fmt: skip
"""Every figure the report can draw, in report order."""


@dataclass
class DrawnFigure:
    spec: FigureSpec
    number: int
    file: str | None = None
    """The PNG's name in the report folder; None if not drawn."""
    reason: str = ""
    """Why it is not drawn."""


# --- drawing --------------------------------------------------------------------------------------------


def draw_figures(figures: list[DrawnFigure], inputs: ReportInputs, out: Path, done: dict[str, str]) -> None:
    for figure in figures:
        spec = figure.spec
        missing = [step for step in spec.needs if done.get(step) == MISSING]
        partial = [step for step in spec.needs if done.get(step) not in (DONE, MISSING)]
        if missing:
            figure.reason = f"needs step {', '.join(missing)}, which has not run"
            continue
        if partial:
            figure.reason = f"needs step {', '.join(partial)}, which has not finished"
            continue
        try:
            figure.file = spec.draw(inputs, out / f"{spec.name}.png").name
        except Exception as exc:  # one figure that cannot be drawn must not cost the report
            log.warning("report: figure %s (%s) not drawn", spec.name, spec.paper, exc_info=True)
            figure.reason = f"{type(exc).__name__}: {exc}"
