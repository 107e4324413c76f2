"""``survey-scale info``: what a cube holds (SPEC §12)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.science.bad_spectra import SnrLimit
from survey_scale.science.final_sample import RULES
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import META_GROUP, open_group, open_rejects, read_column, shard_spectra, spec_length


def store_bytes(path: Path, exclude: str | None = META_GROUP) -> int:
    """Bytes on disk of a store (without its bookkeeping folder by default)."""
    return sum(
        p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and (exclude is None or exclude not in p.parts)
    )


def spectra_bytes(path: Path) -> int:
    """Bytes on disk of the spectra arrays ``flux``, ``ivar`` and ``pixmask``."""
    return sum(store_bytes(Path(path) / name, None) for name in ("flux", "ivar", "pixmask"))


EMULATOR_CHOICE_FILE = "emulator_choice.json"
"""The emulator step's record of its choice in the models folder (``survey_scale.stages.emulator.CHOICE_FILE``,
not imported here: that module loads torch)."""


def emulator_lines(path: Path) -> list[str]:
    """``survey-scale info`` lines of the emulator the emulator step chose and why (none before it ran)."""
    try:
        record = json.loads((Bookkeeping(path).model_path(EMULATOR_CHOICE_FILE)).read_text())
    except (OSError, ValueError):
        return []
    how = {"default": "chosen by the input", "emulator.path": "given", "trained": "trained"}.get(record.get("how"), "")
    lines = [
        f"  emulator: {record.get('emulator')} ({how}), file {Path(str(record.get('path'))).name}, "
        f"updated {record.get('updated')}",
        f"    why: {record.get('reason')}",
    ]
    if counts := record.get("counts"):
        order = [k for k in ("mock", "lamost", "unknown") if k in counts] + sorted(
            set(counts) - {"mock", "lamost", "unknown"}
        )
        lines.append("    spectra by file origin: " + ", ".join(f"{k} {counts[k]:,}" for k in order))
    if record.get("warning"):
        lines.append(f"    warning: {record['warning']}")
    return lines


FINAL_SAMPLE_RULES = RULES
"""P2 §5.1's final-sample rules, one flag column each; ``flag_chi2ratio`` is step chi2ratio's, the others step
final_sample's."""


def component_names(flag_meanings: str) -> dict[int, str]:
    """The emulator set's component names by index from ``fit_component``'s ``flag_meanings`` ("0: cool; 1:
    hot"); {} when the attribute says nothing."""
    return {int(i): name.strip() for i, name in re.findall(r"(-?\d+)\s*:\s*([^;]+)", str(flag_meanings or ""))}


def final_sample_counts(root: Any) -> dict[str, Any] | None:
    """How many spectra each final-sample rule flags and how many are in the final sample (P2 §5.1), and how
    many spectra each emulator component fitted, from a cube's root group; None when the cube has none of
    these variables (made before step final_sample and the emulator sets, or not fitted yet).

    Returns a dict: ``n`` (spectra); ``rules``: per rule of :data:`FINAL_SAMPLE_RULES` a dict with ``name``,
    ``description`` (the variable's ``long_name``), ``present`` (the cube has it), ``flagged`` (rows = 1),
    ``only`` (rows that this rule alone flags) and ``share`` (of the computed rows); ``n_any`` (rows flagged by
    any rule), ``n_several`` (by two or more); ``final`` (None without ``final_sample``, else ``n_in``,
    ``n_computed`` — rows the step wrote, the others hold the fill value −1 —, ``n_no_labels``: rows out of
    the final sample that no rule flags, i.e. without fit labels, and ``share``: ``n_in`` / ``n``);
    ``components``: None without ``fit_component``, else a list of (index, name, count), index −1 = not fitted.
    """
    names = [*FINAL_SAMPLE_RULES, "final_sample", "fit_component"]
    if not any(name in root for name in names):
        return None
    n = spec_length(root)
    flags = {name: read_column(root, name) == 1 for name in FINAL_SAMPLE_RULES if name in root}
    n_set = np.sum([f for f in flags.values()], axis=0) if flags else np.zeros(n, dtype=np.int64)
    final = None
    computed = np.ones(n, dtype=bool)
    if "final_sample" in root:
        values = read_column(root, "final_sample")
        computed = values >= 0
        final = {
            "n_in": int(np.sum(values == 1)),
            "n_computed": int(computed.sum()),
            "n_no_labels": int(np.sum(computed & (values != 1) & (n_set == 0))),
            "share": int(np.sum(values == 1)) / max(n, 1),
        }
    n_base = max(int(computed.sum()), 1)
    rules = []
    for name in FINAL_SAMPLE_RULES:
        present = name in flags
        flagged = int(flags[name].sum()) if present else 0
        rules.append(
            {
                "name": name,
                "description": str(root[name].attrs.get("long_name", "")) if present else "",
                "present": present,
                "flagged": flagged,
                "only": int(np.sum(flags[name] & (n_set == 1))) if present else 0,
                "share": flagged / n_base,
            }
        )
    components = None
    if "fit_component" in root:
        values = read_column(root, "fit_component").astype(np.int64)
        labels = component_names(root["fit_component"].attrs.get("flag_meanings", ""))
        indices = sorted(set(labels) | set(np.unique(values).tolist()), key=lambda i: (i < 0, i))
        components = [
            (i, "not fitted" if i < 0 else labels.get(i, f"component {i}"), int(np.sum(values == i))) for i in indices
        ]
    return {
        "n": n,
        "rules": rules,
        "n_any": int(np.sum(n_set > 0)),
        "n_several": int(np.sum(n_set > 1)),
        "final": final,
        "components": components,
    }


def final_sample_lines(root: Any) -> list[str]:
    """``survey-scale info`` lines of P2 §5.1's final sample (spectra per rule, the final sample's size) and of
    the emulator components the fit kept; "not computed yet" for what an older cube lacks."""
    if spec_length(root) == 0:
        return []
    counts = final_sample_counts(root)
    if counts is None:
        return [
            "  final sample: not computed yet (steps fit, chi2ratio and final_sample make it)",
            "  fit components: not computed yet (step fit)",
        ]
    n, final = counts["n"], counts["final"]
    if final is None:
        lines = ["  final sample: not computed yet (step final_sample)"]
    else:
        left = n - final["n_computed"]
        lines = [
            f"  final sample (P2 5.1): {final['n_in']:,} of {n:,} spectra ({100 * final['share']:.1f} %)"
            + (f"; {left:,} rows not computed yet (step final_sample)" if left else "")
        ]
    if any(rule["present"] for rule in counts["rules"]):
        lines.append(f"    {'rule':<20} {'flagged':>9} {'':>9} {'by it alone':>12}")
        for rule in counts["rules"]:
            if rule["present"]:
                share = f"({100 * rule['share']:.1f} %)"
                lines.append(f"    {rule['name']:<20} {rule['flagged']:>9,} {share:>9} {rule['only']:>12,}")
            else:
                lines.append(f"    {rule['name']:<20} not computed yet")
        text = f"    any rule: {counts['n_any']:,} ({counts['n_several']:,} by several rules)"
        if final is not None:
            text += f"; out without a rule (no fit labels): {final['n_no_labels']:,}"
        lines.append(text)
    if counts["components"] is None:
        lines.append("  fit components: not computed yet (step fit)")
    else:
        lines.append(
            "  fit components (fit_component): "
            + ", ".join(f"{name} {count:,}" for _, name, count in counts["components"])
        )
    return lines


def cube_info(path: str | Path) -> str:
    """A human-readable summary: counts per release and batch, stages done, the emulator, the final sample and
    the emulator components fitted, rejects by reason, size."""
    path = Path(path)
    root = open_group(path)
    n = spec_length(root)
    lines = [f"cube {path}", f"  spectra: {n:,}"]
    if n and "release" in root:
        table = pd.DataFrame({"release": read_column(root, "release"), "batch": read_column(root, "batch")})
        if "star_id" in root:
            table["star_id"] = read_column(root, "star_id")
        lines.append(f"  stars: {table['star_id'].nunique():,}" if "star_id" in table else "")
        lines.append("  per release:")
        for release, group in table.groupby("release", sort=True):
            batches = ", ".join(str(b) for b in sorted(group["batch"].unique()))
            lines.append(f"    {release:<16} {len(group):>9,} spectra (batch {batches})")
    total = store_bytes(path)
    per_spectrum = spectra_bytes(path) / max(n, 1)
    lines.append(f"  size on disk: {total / 2**20:,.1f} MiB; flux+ivar+pixmask {per_spectrum:,.0f} bytes/spectrum")
    lines.append("  stages:")
    stages = dict(root.attrs.get("stages", {}))
    n_chunks = -(-n // shard_spectra(root))
    done = Bookkeeping(path).stages_done()
    if not stages:
        lines.append("    (none)")
    for name, prov in stages.items():
        done_rows = done.get(name, {}).get("rows_done", 0)
        models = prov.get("model_hashes") or {}
        model_text = ", ".join(f"{k} {v[:12]}" for k, v in models.items()) if isinstance(models, dict) else ""
        lines.append(
            f"    {name:<12} {min(done_rows, n):>9,} / {n:,} rows done ({n_chunks} chunks), version "
            f"{prov.get('stage_version')}, config {prov.get('config_hash')}, updated {prov.get('updated')}"
            + (f", models: {model_text}" if model_text else "")
        )
    lines += emulator_lines(path)
    lines += final_sample_lines(root)
    lines += reduction_lines(dict(root.attrs.get("reductions", {})))
    rejects = open_rejects(path)
    lines.append(f"  rejects: {len(rejects):,}")
    if len(rejects):
        for (stage, code), group in rejects.groupby(["stage", "code"], sort=True):
            example = group["reason"].iloc[0]
            lines.append(
                f"    {stage:<10} {code:<26} {len(group):>7,}  e.g. {Path(group['source'].iloc[0]).name}: {example}"
            )
    return "\n".join(line for line in lines if line)


def _coeffs(poly: dict) -> str:
    return "[" + ", ".join(f"{c:.4g}" for c in poly["coeffs"]) + "]"


def _ranges(poly: dict) -> str:
    (x0, x1), (y0, y1) = poly["x_range"], poly["y_range"]
    return f"log Teff {x0:.3f}..{x1:.3f}, log S/N {y0:.2f}..{y1:.2f}"


def snr_bin(lo: float | None, hi: float | None) -> str:
    """An S/N bin as text: "< 50", "50-100", "> 100" (an infinite edge is stored as null)."""
    if hi is None:
        return f"> {lo:g}"
    return f"< {hi:g}" if not lo else f"{lo:g}-{hi:g}"


def reduction_lines(reductions: dict) -> list[str]:
    """``survey-scale info`` lines of the survey-wide reductions recorded in the cube's attributes (SPEC §6,
    §8)."""
    if not reductions:
        return []
    lines = ["  survey-wide reductions:"]
    if chi2 := reductions.get("chi2ratio"):
        lines.append(
            f"    chi2ratio: log10 median and log10 dispersion of chisq_red, order-{chi2['median']['order']} "
            f"polynomials in (log10 Teff, log10 S/N) over {chi2['n_cells']} cells of {chi2['n_spectra']:,} fits "
            f"({_ranges(chi2['median'])}; {chi2['median']['n_clipped']} + {chi2['sigma']['n_clipped']} cells "
            f"clipped), updated {chi2.get('updated')}, code {chi2.get('code_version')}"
        )
        lines.append(f"      log10 median coefficients {_coeffs(chi2['median'])}")
        lines.append(f"      log10 dispersion coefficients {_coeffs(chi2['sigma'])}")
    if rep := reductions.get("repeat_precision"):
        table = rep["table"]
        lines.append(
            f"    repeat precision: {rep['n_pairs']:,} pairs ({rep['selection']}); scatter/sqrt(2) for Teff > "
            f"{rep['teff_min']:g} K, updated {rep.get('updated')}"
        )
        edges = table["snr_edges"]
        for b, n in enumerate(table["n_pairs"]):
            values = ", ".join(f"{label} {v[b]:.3g}" for label, v in table["precision"].items() if v[b] is not None)
            lines.append(f"      S/N {snr_bin(edges[b], edges[b + 1])}: {n:,} pairs: {values or '-'}")
        pulls = ", ".join(
            f"{label} {p['formal']:.2f}->{p['calibrated']:.2f}"
            for label, p in rep["pull_sigma"].items()
            if p["formal"] is not None and p["calibrated"] is not None
        )
        lines.append(f"      robust sigma of the pairs' pulls, formal -> calibrated errors: {pulls}")
    if cal := reductions.get("error_calibration"):
        lines.append(
            f"    error calibration: log10 scale of the formal errors as polynomials in (log10 Teff, log10 S/N), "
            f"{cal['n_pairs']:,} pairs, updated {cal.get('updated')}"
        )
        for label, poly in zip(cal["label_names"], cal["log_scale"], strict=True):
            text = "formal errors kept (too few pairs)" if poly is None else f"order {poly['order']} {_coeffs(poly)}"
            lines.append(f"      {label:<8} {text}")
    if bad := reductions.get("bad_spectra"):
        lines += bad_spectra_lines(bad)
    if mks := reductions.get("mks_model"):
        lines += mks_model_lines(mks)
    return lines


def bad_spectra_lines(bad: dict) -> list[str]:
    """``survey-scale info`` lines of the erroneous-spectrum counts and limits (``reductions['bad_spectra']``)."""
    counts = ", ".join(f"{name} {n:,}" for name, n in bad["n_by_evidence"].items())
    lines = [
        f"    erroneous spectra: {bad['n_flagged']:,} of {bad['n_spectra']:,} flagged ({counts}), updated "
        f"{bad.get('updated')}",
        "      limits at " + bad["snr_column"] + " 10 / 30 / 100 / 300 (n_sigma, or fixed):",
    ]
    for name, d in bad["limits"].items():
        values = SnrLimit.from_dict(d)(np.array([10.0, 30.0, 100.0, 300.0]))
        how = f"fixed {bad['fixed'][name]:g}" if name in bad.get("fixed", {}) else f"n_sigma {bad['n_sigma'][name]:g}"
        lines.append(f"        {name:<13} " + " / ".join(f"{v:.3g}" for v in values) + f"  ({how})")
    for name in bad.get("not_derived", []):
        lines.append(f"        {name:<13} no limit: too few spectra with this evidence (it flags none)")
    return lines


def mks_model_lines(mks: dict) -> list[str]:
    """``survey-scale info`` lines of the MKs model (SPEC §8): the sets and the MCMC posterior per network."""
    if "untrained" in mks:
        return [f"    MKs model: none ({mks['untrained']}); mks is NaN, distances use the parallax alone"]
    lines = [
        f"    MKs model: {mks['n_train']:,} training spectra ({mks['n_train_emission']:,} with emission; "
        f"{mks['n_train_before_binary_cuts'] - mks['n_train']:,} binaries removed in "
        f"{len(mks['binary_iterations'])} iterations), {mks['n_test']:,} test spectra; {mks['selection']}; "
        f"updated {mks.get('updated')}"
    ]
    for network, post in mks["posterior"].items():
        if "uses" in post:
            lines.append(f"      {network}: {post['n_stars']} single test stars: the {post['uses']} model's errors")
            continue
        values = ", ".join(
            f"{name} {post[name]['mean']:+.3f} [{post[name]['p16']:+.3f}, {post[name]['p84']:+.3f}]"
            for name in ("epsilon", "delta", "sigma_int", "sigma_s100")
        )
        lines.append(
            f"      {network}: MCMC on {post['n_stars']:,} single test stars, mean [16 %, 84 %]: {values} "
            f"(acceptance {post['acceptance_fraction']:.2f})"
        )
    return lines


__all__ = [
    "FINAL_SAMPLE_RULES",
    "component_names",
    "cube_info",
    "emulator_lines",
    "final_sample_counts",
    "final_sample_lines",
    "mks_model_lines",
    "reduction_lines",
    "spectra_bytes",
    "store_bytes",
]
