"""The report's tables (SPEC §11): the run summary, the steps with their provenance and timings, the rejects,
the final sample, the emulator's precision and the survey-wide reductions — dictionaries for the template,
from the cube's bookkeeping and attributes."""

from __future__ import annotations

import logging
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.core.files import file_sha256
from survey_scale.products.info import final_sample_counts, store_bytes
from survey_scale.products.report_figures import ReportInputs
from survey_scale.products.status import DONE, PARTIAL, CubeState, StepStatus
from survey_scale.science.chi2ratio import quality_rows
from survey_scale.science.mks import PARAMETERS
from survey_scale.science.repeats import snr_bin
from survey_scale.store.cube import open_rejects, read_column

log = logging.getLogger(__name__)

P2_EMULATOR_SIGMA = (0.00165, 0.00586)
"""P2's emulator precision (Fig. 6): 0.165 % of the flux overall, 0.586 % where the flux is below 0.95."""

P1_MKS_POSTERIOR = {"sigma_int": 0.25, "sigma_s100": 0.10}
"""P1's MCMC result (Fig. 8): σ_int = 0.25 mag, σ_s = 0.10 mag at S/N = 100."""


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


def run_counts(state: CubeState) -> dict[str, Any]:
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


def final_sample_table(state: CubeState, truth: Path | None) -> dict[str, Any] | None:
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


def step_rows(state: CubeState, statuses: list[StepStatus]) -> list[dict[str, Any]]:
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


def rejects_table(cube: Path) -> dict[str, Any]:
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


def emulator_table(inputs: ReportInputs) -> dict[str, Any] | None:
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


def reductions_table(state: CubeState) -> dict[str, Any]:
    reductions = dict(state.root.attrs.get("reductions", {}))
    out: dict[str, Any] = dict.fromkeys(("chi2ratio", "repeats", "calibration", "mks"))
    if chi2 := reductions.get("chi2ratio"):
        flagged = None
        if "flag_chi2ratio" in state.root:
            flags = read_column(state.root, "flag_chi2ratio")
            flagged = float(np.mean(flags == 1)) if flags.size else None
        flag_text = f"; flag_chi2ratio = 1 for {100 * flagged:.2f} % of the spectra" if flagged is not None else ""
        if chi2.get("method") != "cells":  # recorded by chi2ratio version 1
            out["chi2ratio"] = {
                "summary": f"polynomials of an older chi2ratio: re-run step chi2ratio; updated "
                f"{_when(chi2.get('updated'))}" + flag_text,
                "rows": [],
            }
        else:
            quality = chi2["quality"]
            snr_names, rows = quality_rows(quality)
            dx = chi2["log_teff_edges"][1] - chi2["log_teff_edges"][0]
            dy = chi2["log_snr_edges"][1] - chi2["log_snr_edges"][0]
            out["chi2ratio"] = {
                "summary": f"median and dispersion (1.4826 MAD) of χ² per (Teff, S/N) cell of {dx:.2g} dex in log Teff "
                f"× {dy:.2g} dex in log S/N, χ² above median + {chi2['clip']:g} dispersions left out; "
                f"{chi2['n_cells']} cells of {chi2['n_spectra']:,} fits, {chi2['n_own']} on their own, the others "
                f"pooled with their neighbours to {chi2['min_count']} fits; updated {_when(chi2.get('updated'))}"
                + flag_text,
                "caption": f"chi2ratio of the fitted spectra per Teff and S/N region: median / robust σ (with the "
                f"{chi2['clip']:g}σ clip: 0 / 1 where the model fits) / % > {quality['flag']:g} (count)",
                "snr": snr_names,
                "rows": [{"teff": name, "cells": cells} for name, cells in rows],
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
                            if p in post  # a model trained before κ has four
                            else "-"
                            for p in PARAMETERS
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
                f"{P1_MKS_POSTERIOR['sigma_s100']} mag (P1 has no κ: the networks' disagreement is survey_scale's "
                "term, issue 27)",
            }
    return out
