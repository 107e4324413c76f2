"""``survey-scale info``: what a cube holds (SPEC §12)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.science.final_sample import RULES
from survey_scale.stages.registry import Registry, default_registry
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


def cube_info(path: str | Path, registry: Registry | None = None) -> str:
    """A human-readable summary: counts per release and batch, stages done, the emulator, the final sample and
    the emulator components fitted, each step's summary (its :attr:`~survey_scale.engine.contracts.Step.summary`
    over the reductions recorded in the cube), rejects by reason, size."""
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
    lines += step_summary_lines(dict(root.attrs.get("reductions", {})), registry or default_registry())
    rejects = open_rejects(path)
    lines.append(f"  rejects: {len(rejects):,}")
    if len(rejects):
        for (stage, code), group in rejects.groupby(["stage", "code"], sort=True):
            example = group["reason"].iloc[0]
            lines.append(
                f"    {stage:<10} {code:<26} {len(group):>7,}  e.g. {Path(group['source'].iloc[0]).name}: {example}"
            )
    return "\n".join(line for line in lines if line)


def step_summary_lines(reductions: dict, registry: Registry) -> list[str]:
    """The summary lines of every step of ``registry`` that declares one, in run order (SPEC §6, §8)."""
    lines = [line for step in registry.ordered() if step.summary for line in step.summary(reductions)]
    return ["  survey-wide reductions:", *lines] if lines else []


__all__ = [
    "FINAL_SAMPLE_RULES",
    "component_names",
    "cube_info",
    "emulator_lines",
    "final_sample_counts",
    "final_sample_lines",
    "spectra_bytes",
    "step_summary_lines",
    "store_bytes",
]
