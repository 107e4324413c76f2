"""``survey-scale info``: what a cube holds (SPEC §12)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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


def cube_info(path: str | Path) -> str:
    """A human-readable summary: counts per release and batch, stages done, rejects by reason, size."""
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
    rejects = open_rejects(path)
    lines.append(f"  rejects: {len(rejects):,}")
    if len(rejects):
        for (stage, code), group in rejects.groupby(["stage", "code"], sort=True):
            example = group["reason"].iloc[0]
            lines.append(
                f"    {stage:<10} {code:<26} {len(group):>7,}  e.g. {Path(group['source'].iloc[0]).name}: {example}"
            )
    return "\n".join(line for line in lines if line)


__all__ = ["cube_info", "spectra_bytes", "store_bytes"]
