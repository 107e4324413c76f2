"""``survey-scale report CUBE --out DIR``: one HTML page on what a run made (SPEC §11, §12).

``DIR/report.html`` (the jinja2 template ``products/templates/report.html.j2``) with its PNG figures beside
it: the run summary — spectra, stars and releases; every pipeline step with its status, provenance and
timings (from the cube's bookkeeping: each step's recorded runs, each chunk's compute time); rejects by stage
and reason; the emulator's precision (its file's header); the chi2ratio coefficients, the repeat-visit
precision and the MKs model's MCMC posterior (``ds.attrs["reductions"]``); P2 §5.1's final sample (spectra
removed by each rule, the final sample's size, the spectra each emulator component fitted) — and the papers'
figures that apply (:data:`FIGURES`: P1 Figs. 2–5, 8, 10–12; P2 Figs. 3–4, 8, 10, 13, 16, 17; the final
sample's: the fitted Teff against LAMOST's class, the spectra each rule removes), each with its caption.

A cube on which some steps have not run gets a report all the same: a section lists the steps missing and
the figures they would give. With ``truth`` (the mock release the cube was made from) the report adds the
mock-vs-truth figures, and a table of the contaminants that the final sample keeps and the hot stars it loses,
per rule.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale._version import __version__
from survey_scale.core.files import file_sha256
from survey_scale.products.info import final_sample_counts, store_bytes
from survey_scale.products.status import DONE, MISSING, PARTIAL, CubeState, StepStatus, step_statuses
from survey_scale.science.repeats import snr_bin
from survey_scale.store.cube import open_rejects, read_column

log = logging.getLogger(__name__)

P2_EMULATOR_SIGMA = (0.00165, 0.00586)
"""P2's emulator precision (Fig. 6): 0.165 % of the flux overall, 0.586 % where the flux is below 0.95."""

P1_MKS_POSTERIOR = {"sigma_int": 0.25, "sigma_s100": 0.10}
"""P1's MCMC result (Fig. 8): σ_int = 0.25 mag, σ_s = 0.10 mag at S/N = 100."""


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


# --- the summary -------------------------------------------------------------------------------------------


def _short(value: Any, n: int = 12) -> str:
    return str(value)[:n] if value else "—"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 90:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"


def _when(stamp: str | None) -> str:
    """An ISO time stamp of the bookkeeping (UTC) as "2026-01-31 12:34 UTC"."""
    if not stamp:
        return "?"
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return stamp


def _counts(state: CubeState) -> dict[str, Any]:
    root = state.root
    counts: dict[str, Any] = {"spectra": state.n, "stars": 0, "releases": []}
    if state.n and "release" in root:
        table = pd.DataFrame({"release": read_column(root, "release")})
        table["star_id"] = read_column(root, "star_id") if "star_id" in root else ""
        table["batch"] = read_column(root, "batch") if "batch" in root else -1
        counts["stars"] = int(table["star_id"].nunique())
        for release, group in table.groupby("release", sort=True):
            counts["releases"].append(
                {
                    "name": release,
                    "spectra": len(group),
                    "stars": int(group["star_id"].nunique()),
                    "batches": ", ".join(str(b) for b in sorted(group["batch"].unique())),
                }
            )
    counts["size_mib"] = store_bytes(state.cube) / 2**20
    return counts


POPULATION_NAMES = {"hot": "hot stars", "cool_contaminant": "cool contaminants", "qso": "QSOs"}
"""How the report names the mock's truth ``population`` values (others as written)."""


def _final_sample(state: CubeState, truth: Path | None) -> dict[str, Any] | None:
    """The final sample's counts (:func:`survey_scale.products.info.final_sample_counts`) for the template and,
    with the mock's truth, what each rule removes per true population (:func:`_final_sample_truth`); None for
    a cube without any of the final-sample variables."""
    counts = final_sample_counts(state.root)
    if counts is None:
        return None
    out = dict(counts)
    out["truth"] = None
    if truth is not None and counts["final"] is not None:
        try:
            out["truth"] = _final_sample_truth(state, truth, [r["name"] for r in counts["rules"] if r["present"]])
        except Exception as exc:  # a truth table that cannot be made must not cost the report
            log.warning("report: final sample against the truth not made", exc_info=True)
            out["truth"] = {"note": f"not made: {type(exc).__name__}: {exc}"}
    return out


def _final_sample_truth(state: CubeState, truth: Path, rules: list[str]) -> dict[str, Any]:
    """Per true population of the mock (hot stars, cool contaminants, QSOs): the spectra each rule flags, those
    in the final sample and those removed; and a sentence on the contaminants kept and the hot stars lost.
    Spectra are matched on ``specid`` (the truth's invalid files left out); rows the step has not computed
    are left out."""
    table = pd.read_parquet(truth / "truth.parquet")
    if "population" not in table:
        return {"note": "the truth has no population column (a mock release made before contaminants)"}
    if "invalid" in table:
        table = table[~table["invalid"].to_numpy(dtype=bool)]
    root = state.root
    cube = pd.DataFrame({"specid": read_column(root, "specid").astype(str)})
    for name in rules:
        cube[name] = read_column(root, name) == 1
    final = read_column(root, "final_sample")
    cube["final_sample"] = final == 1
    cube = cube[final >= 0]
    d = cube.merge(table[["specid", "population"]], on="specid", how="inner", validate="one_to_one")
    present = [str(p) for p in pd.unique(d["population"])]
    order = [p for p in POPULATION_NAMES if p in present] + sorted(set(present) - set(POPULATION_NAMES))
    groups = {p: (d["population"] == p).to_numpy() for p in order}
    totals = {p: int(sel.sum()) for p, sel in groups.items()}

    def row(name: str, values: np.ndarray) -> dict[str, Any]:
        cells = []
        for p, sel in groups.items():
            k = int(np.sum(values & sel))
            cells.append(f"{k:,} ({100 * k / totals[p]:.1f} %)" if totals[p] else "—")
        return {"name": name, "cells": cells}

    rows = [row(name, d[name].to_numpy()) for name in rules]
    final_in = d["final_sample"].to_numpy()
    rows.append(row("in the final sample", final_in))
    rows.append(row("removed (any rule, or no labels)", ~final_in))
    hot = groups.get("hot", np.zeros(len(d), bool))
    n_in, n_hot, n_hot_out = int(final_in.sum()), int(hot.sum()), int(np.sum(~final_in & hot))
    n_cont, n_cont_in = int(np.sum(~hot)), int(np.sum(final_in & ~hot))
    per_population = ", ".join(
        f"{POPULATION_NAMES.get(p, p)} {int(np.sum(final_in & groups[p])):,} of {totals[p]:,}"
        for p in order
        if p != "hot"
    )
    summary = (
        f"{len(d):,} spectra matched to the truth. Contaminants in the final sample: {n_cont_in:,} of {n_cont:,}"
        + (f" ({per_population})" if per_population else "")
        + f", {100 * n_cont_in / max(n_in, 1):.1f} % of the final sample; hot stars removed: {n_hot_out:,} of "
        f"{n_hot:,} ({100 * n_hot_out / max(n_hot, 1):.1f} %)."
    )
    return {
        "note": None,
        "populations": [f"{POPULATION_NAMES.get(p, p)} ({totals[p]:,})" for p in order],
        "rows": rows,
        "summary": summary,
    }


def _step_rows(state: CubeState, statuses: list[StepStatus]) -> list[dict[str, Any]]:
    """One row per step: status, what it made, its summary (its :attr:`Step.summary` lines), its provenance and
    timings."""
    reductions = dict(state.root.attrs.get("reductions", {}))
    rows = []
    for status in statuses:
        step = status.step
        runs = state.books.step_history(step.name)
        last = runs[-1] if runs else None
        computed = [r for r in runs if r.get("n_computed", 1) > 0]
        provenance: list[str] = []
        chunk_times: list[float] = []
        n_chunks = n_rows = 0
        for stage in status.stages:
            prov = state.stage_attrs.get(stage, {})
            models = prov.get("model_hashes") or {}
            provenance.append(
                f"stage {stage} v{prov.get('stage_version', '?')}, config {_short(prov.get('config_hash'))}"
                + "".join(f", {name} {_short(sha)}" for name, sha in models.items())
                + f", code {prov.get('code_version', '?')}, {_when(prov.get('updated'))}"
            )
            for marker in state.books.chunk_markers(stage):
                n_chunks += 1
                n_rows += marker["stop"] - marker["start"]
                if "compute_seconds" in marker:
                    chunk_times.append(float(marker["compute_seconds"]))
        for item in status.items:
            if item.item.startswith("model:") and item.state == DONE:
                record = state.models.get(item.item[6:])
                provenance.append(
                    f"{item.item[6:]} model {Path(record['path']).name}, sha256 {_short(record['sha256'])}, "
                    f"{_when(record['updated'])}"
                    if record
                    else f"{item.item[6:]} model: {item.detail}"
                )
        for item in status.items:
            if item.item.startswith("catalog:") and item.state == DONE:
                provenance.append(f"{item.item[8:]}: {item.detail}")
        if not status.stages:  # variables written whole by a reduction carry their own stamp
            for item in status.items:
                if item.item.startswith(("model:", "catalog:")) or item.item not in state.root:
                    continue
                attrs = state.root[item.item].attrs
                if "provenance_key" in attrs:
                    provenance.append(
                        f"key {_short(attrs['provenance_key'])}, code {attrs.get('provenance_code_version', '?')}, "
                        f"{_when(attrs.get('provenance_updated'))}"
                    )
                    break
        produced = [i.item for i in status.items]
        rows.append(
            {
                "name": step.name,
                "description": step.description,
                "summary": [line.strip() for line in step.summary(reductions)] if step.summary else [],
                "state": status.state,
                "produces": ", ".join(produced[:6]) + (f", … ({len(produced)} in all)" if len(produced) > 6 else ""),
                "missing": "; ".join(f"{i.item}: {i.detail}" for i in status.missing[:3])
                if status.state == PARTIAL
                else "",
                "provenance": provenance,
                "last_run": _seconds(last["seconds"]) if last else "—",
                "last_run_when": _when(last.get("finished")) if last else "",
                "last_run_detail": _run_detail(last) if last else "no run recorded",
                "last_compute": _seconds(computed[-1]["seconds"]) if computed and computed[-1] is not last else "",
                "chunks": n_chunks,
                "chunk_total": _seconds(sum(chunk_times)) if chunk_times else "—",
                "chunk_median": _seconds(statistics.median(chunk_times)) if chunk_times else "—",
                "rate": f"{n_rows / sum(chunk_times):,.0f}" if chunk_times and sum(chunk_times) > 0 else "—",
                "computing_seconds": computed[-1]["seconds"] if computed else None,
            }
        )
    return rows


def _run_detail(run: dict[str, Any]) -> str:
    if "n_chunks" in run:
        return f"{run['n_computed']} of {run['n_chunks']} chunks computed, {run['n_rejects']} rejects"
    if "batches" in run:
        return "; ".join(
            f"batch {b['batch']}: {b['n_files']} files, {b['n_new']} new, {b['n_rejected']} rejected"
            for b in run["batches"]
        )
    if "rewrote" in run:
        return "rewritten" if run["rewrote"] else "up to date"
    if "outputs" in run:
        return ", ".join(Path(p).name for p in run["outputs"].values())
    if "model" in run:
        return Path(run["model"]).name
    return ""


def _rejects(cube: Path) -> dict[str, Any]:
    table = open_rejects(cube)
    rows = []
    for (stage, code), group in table.groupby(["stage", "code"], sort=True):
        rows.append(
            {
                "stage": stage,
                "code": code,
                "count": len(group),
                "example": Path(str(group["source"].iloc[0])).name,
                "reason": str(group["reason"].iloc[0]),
            }
        )
    return {"total": len(table), "rows": rows}


def _percent(value: Any) -> str:
    return f"{100 * value:.3f} %" if isinstance(value, int | float) and np.isfinite(value) else "—"


def _emulator(inputs: ReportInputs) -> dict[str, Any] | None:
    """The emulator's header: architecture, training, precision against P2's, and its other scalar entries."""
    path = inputs.emulator_path
    if path is None:
        return None
    try:
        em = inputs.emulator
    except Exception as exc:  # a broken file: say so rather than lose the report
        return {"path": str(path), "error": f"{type(exc).__name__}: {exc}"}
    meta = em.meta
    settings = meta.get("settings") or {}
    hidden = settings.get("hidden") or [w.shape[-2] for w in em.weights]
    rows = [
        ("file", f"{path} ({path.stat().st_size / 2**20:.1f} MiB, sha256 {_short(file_sha256(path))})"),
        (
            "architecture",
            f"{em.architecture}, {em.activation}, hidden {list(hidden)}, {em.n_labels} labels, {em.wave.size} pixels",
        ),
    ]
    if "n_train" in meta:
        rows.append(
            (
                "training",
                f"{meta['n_train']:,} spectra ({meta.get('n_valid', 0):,} held out), "
                f"{meta.get('n_epochs', 0):.0f} epochs in {_seconds(meta.get('train_seconds'))}, "
                f"stopped: {meta.get('stop_reason', '?')}",
            )
        )
    for key, value in meta.items():  # what else the file says about itself (grid, versions, ...)
        if key.startswith("valid_") or key in (
            "settings",
            "history",
            "n_train",
            "n_valid",
            "n_epochs",
            "train_seconds",
            "stop_reason",
            "training_key",
        ):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items() if not isinstance(v, dict | list) or len(v) < 8)
        elif isinstance(value, list) and len(value) > 12:
            continue
        rows.append((key.replace("_", " "), str(value)))
    precision = [
        ("overall (standard deviation)", _percent(meta.get("valid_sigma")), _percent(P2_EMULATOR_SIGMA[0])),
        ("flux < 0.95 (standard deviation)", _percent(meta.get("valid_sigma_deep")), _percent(P2_EMULATOR_SIGMA[1])),
        ("overall (Gaussian core, 1.4826 MAD)", _percent(meta.get("valid_sigma_gauss")), ""),
        ("flux < 0.95 (Gaussian core)", _percent(meta.get("valid_sigma_deep_gauss")), ""),
    ]
    return {"path": str(path), "rows": rows, "precision": precision, "error": None}


def _poly(poly: dict | None) -> str:
    if poly is None:
        return "—"
    return "[" + ", ".join(f"{c:.4g}" for c in poly["coeffs"]) + "]"


def _reductions(state: CubeState) -> dict[str, Any]:
    reductions = dict(state.root.attrs.get("reductions", {}))
    out: dict[str, Any] = dict.fromkeys(("chi2ratio", "repeats", "calibration", "mks"))
    if chi2 := reductions.get("chi2ratio"):
        (x0, x1), (y0, y1) = chi2["median"]["x_range"], chi2["median"]["y_range"]
        flagged = None
        if "flag_chi2ratio" in state.root:
            flags = read_column(state.root, "flag_chi2ratio")
            flagged = float(np.mean(flags == 1)) if flags.size else None
        out["chi2ratio"] = {
            "summary": f"3rd-order polynomials of log10 median and log10 dispersion of χ² in (log10 Teff, log10 S/N) "
            f"over {chi2['n_cells']} cells of {chi2['n_spectra']:,} fits; log Teff {x0:.3f}–{x1:.3f}, "
            f"log S/N {y0:.2f}–{y1:.2f}; {chi2['median']['n_clipped']} + {chi2['sigma']['n_clipped']} cells "
            f"clipped; updated {_when(chi2.get('updated'))}"
            + (f"; flag_chi2ratio = 1 for {100 * flagged:.2f} % of the spectra" if flagged is not None else ""),
            "median": _poly(chi2["median"]),
            "sigma": _poly(chi2["sigma"]),
        }
    if rep := reductions.get("repeat_precision"):
        table = rep["table"]
        labels = list(table["precision"])
        edges = table["snr_edges"]
        out["repeats"] = {
            "summary": f"{rep['n_pairs']:,} repeat pairs ({rep['selection']}); precision = robust scatter / √2 for "
            f"Teff > {rep['teff_min']:g} K; updated {_when(rep.get('updated'))}",
            "labels": labels,
            "rows": [
                {
                    "bin": f"S/N {snr_bin(edges[b], edges[b + 1])}",
                    "n": n,
                    "values": [
                        "—" if table["precision"][label][b] is None else f"{table['precision'][label][b]:.3g}"
                        for label in labels
                    ],
                }
                for b, n in enumerate(table["n_pairs"])
            ],
            "pulls": [
                (label, f"{p['formal']:.2f}", f"{p['calibrated']:.2f}")
                for label, p in rep["pull_sigma"].items()
                if p["formal"] is not None and p["calibrated"] is not None
            ],
        }
    if cal := reductions.get("error_calibration"):
        out["calibration"] = {
            "summary": f"log10 of the scale of the formal errors, 3rd-order polynomials in (log10 Teff, log10 S/N) "
            f"from {cal['n_pairs']:,} pairs; updated {_when(cal.get('updated'))}",
            "rows": [
                (label, "formal errors kept (too few pairs)" if poly is None else _poly(poly))
                for label, poly in zip(cal["label_names"], cal["log_scale"], strict=True)
            ],
        }
    if mks := reductions.get("mks_model"):
        if "untrained" in mks:
            out["mks"] = {"untrained": mks["untrained"]}
        else:
            networks = []
            for network, post in mks["posterior"].items():
                if "uses" in post:
                    networks.append({"name": network, "n": post["n_stars"], "uses": post["uses"], "values": []})
                    continue
                networks.append(
                    {
                        "name": network,
                        "n": post["n_stars"],
                        "uses": None,
                        "acceptance": f"{post['acceptance_fraction']:.2f}",
                        "values": [
                            f"{post[p]['mean']:+.3f} [{post[p]['p16']:+.3f}, {post[p]['p84']:+.3f}]"
                            for p in ("epsilon", "delta", "sigma_int", "sigma_s100")
                        ],
                    }
                )
            out["mks"] = {
                "untrained": None,
                "summary": f"{mks['n_train']:,} training spectra ({mks['n_train_emission']:,} with emission; "
                f"{mks['n_train_before_binary_cuts'] - mks['n_train']:,} binaries removed in "
                f"{len(mks['binary_iterations'])} iterations), {mks['n_test']:,} test spectra; {mks['selection']}"
                + (f"; trained in {_seconds(mks['seconds'])}" if "seconds" in mks else "")
                + f"; updated {_when(mks.get('updated'))}",
                "networks": networks,
                "p1": f"P1 (Fig. 8): σ_int = {P1_MKS_POSTERIOR['sigma_int']} mag, σ_s100 = "
                f"{P1_MKS_POSTERIOR['sigma_s100']} mag",
            }
    return out


# --- the report --------------------------------------------------------------------------------------------


def _draw(figures: list[DrawnFigure], inputs: ReportInputs, out: Path, done: dict[str, str]) -> None:
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


def write_report(cube: str | Path, out: str | Path, truth: str | Path | None = None) -> Path:
    """Write ``out/report.html`` and its PNG figures for the cube at ``cube`` and return the HTML's path.

    ``truth``: the mock release the cube was made from (its ``truth.parquet``), for the mock-vs-truth figures.

    Raises
    ------
    FileNotFoundError
        If ``cube`` is not a cube or ``truth`` holds no ``truth.parquet``.
    """
    import jinja2

    cube, out = Path(cube), Path(out)
    truth = Path(truth) if truth is not None else None
    if truth is not None and not (truth / "truth.parquet").is_file():
        raise FileNotFoundError(f"{truth}: no truth.parquet (give the mock release the cube was made from)")
    state = CubeState(cube)
    out.mkdir(parents=True, exist_ok=True)
    statuses = step_statuses(cube)
    done = {s.step.name: s.state for s in statuses}
    inputs = ReportInputs(cube, truth, state)
    specs = [spec for spec in FIGURES if truth is not None or not spec.truth]
    figures = [DrawnFigure(spec, number) for number, spec in enumerate(specs, 1)]
    _draw(figures, inputs, out, done)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("survey_scale.products", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = environment.get_template("report.html.j2").render(
        cube=str(cube.resolve()),
        truth=str(truth.resolve()) if truth is not None else None,
        version=__version__,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        counts=_counts(state),
        steps=_step_rows(state, statuses),
        missing_steps=[s for s in statuses if s.state != DONE],
        not_drawn=[f for f in figures if f.file is None],
        rejects=_rejects(cube),
        emulator=_emulator(inputs),
        reductions=_reductions(state),
        final_sample=_final_sample(state, truth),
        sections=[(name, [f for f in figures if f.spec.section == name]) for name in SECTIONS],
        figures=figures,
    )
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


__all__ = ["FIGURES", "FigureSpec", "write_report"]
