"""Figures of P2 §5.1's final sample (SPEC §13; issue 23), from a cube: the fitted T_eff against LAMOST's
spectral class, and how many spectra each final-sample rule removes.

Both read the per-spectrum columns straight from the Zarr store (no Dask) and stay cheap at survey size:
the class figure draws at most :data:`MAX_POINTS` spectra (a random subset, said in its title).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.colors
import matplotlib.ticker
import numpy as np

from survey_scale.products.figures.common import plt, save_png
from survey_scale.products.info import final_sample_counts
from survey_scale.store.cube import open_group, read_column

SPECTRAL_LETTERS = "OBAFGKM"
"""The MK letters of the class axis, hottest first."""

MAX_POINTS = 100_000
"""The class figure draws at most this many spectra (a random subset beyond it)."""

TEFF_CUT = 7000.0
"""P2 §5.1's T_eff limit of the final sample (K; ``flag_teff_lt_7000``)."""

_MK = re.compile(r"^(OB|[OBAFGKM])(\d+(?:\.\d+)?)?")
_M_PREFIX = re.compile(r"^(sd|d|g)(?=M)", re.IGNORECASE)


def subclass_position(subclass: str) -> tuple[float, bool]:
    """Where a LAMOST subclass sits on the class axis: the letter ``L`` of ``SPECTRAL_LETTERS`` spans
    [i, i + 1) (i its index); subtype d (0–9.5) at i + 0.05 + d / 10. Returns (x, has_subtype); x is NaN for
    no MK type (empty, "Non", "WD", "Carbon", a QSO's or a galaxy's subclass). An M type's d/g/sd prefix is
    dropped ("dM2" is M2), and "OB" sits on the O/B border."""
    text = _M_PREFIX.sub("", str(subclass or "").strip()).upper()
    match = _MK.match(text)
    if match is None:
        return float("nan"), False
    letter, digits = match.groups()
    if letter == "OB":
        return 1.0, True
    i = SPECTRAL_LETTERS.index(letter)
    if digits is None:
        return i + 0.5, False
    return i + 0.05 + min(float(digits), 9.5) / 10.0, True


def _class_axis(ax: plt.Axes) -> None:
    ax.set_xlim(0, len(SPECTRAL_LETTERS))
    ax.set_xticks(np.arange(len(SPECTRAL_LETTERS)) + 0.5, list(SPECTRAL_LETTERS))
    ax.xaxis.set_minor_locator(matplotlib.ticker.FixedLocator(np.arange(len(SPECTRAL_LETTERS) + 1)))
    ax.tick_params(axis="x", which="minor", length=8)
    for x in range(1, len(SPECTRAL_LETTERS)):
        ax.axvline(x, c="0.85", lw=0.6, zorder=0)


def _teff_axis(ax: plt.Axes, lo: float, hi: float) -> None:
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ticks = [t for t in (3000, 4000, 5000, 7000, 10000, 15000, 20000, 30000, 40000, 50000) if lo <= t <= hi]
    ax.set_yticks(ticks, [f"{t:,}" for t in ticks])
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _dwarf_sequence_line() -> tuple[np.ndarray, np.ndarray]:
    """The Pecaut & Mamajek (2013) dwarf T_eff of each subtype, at its place on the class axis."""
    from survey_scale.science.photometry import dwarf_sequence

    table = dwarf_sequence()
    x = np.array([subclass_position(str(spt).rstrip("V"))[0] for spt in table["SpT"]])
    order = np.argsort(x)
    return x[order], np.asarray(table["Teff"], dtype=float)[order]


def plot_teff_against_class(cube: str | Path, path: str | Path, seed: int = 0) -> Path:
    """The fitted T_eff against LAMOST's subclass (O, B, A, F, G, K, M; subtypes spread within each letter,
    jittered; a subclass without a subtype spread over its letter), log T_eff, coloured by ``final_sample``
    (in / out), with the Pecaut & Mamajek (2013) dwarf T_eff of each subtype and a dashed line at 7,000 K. A
    second panel shows the cool-star check's T_eff (``teff_cool``) the same way where the fit made it.
    Spectra without an MK subclass are left out (the title counts them).

    Raises
    ------
    FileNotFoundError
        If the cube has no labels, ``final_sample`` or ``subclass``.
    """
    root = open_group(cube)
    missing = [name for name in ("labels", "label", "final_sample", "subclass") if name not in root]
    if missing:
        raise FileNotFoundError(f"{cube}: no {', '.join(missing)} yet (survey-scale run makes them)")
    names = [str(v) for v in read_column(root, "label")]
    teff = np.asarray(root["labels"][:, names.index("teff")], dtype=np.float64)
    final = read_column(root, "final_sample") == 1
    subclass = read_column(root, "subclass")
    lamost_class = read_column(root, "class") if "class" in root else np.full(teff.size, "", dtype=object)
    teff_cool = None
    if "teff_cool" in root:
        teff_cool = np.asarray(read_column(root, "teff_cool"), dtype=np.float64)
        if not np.isfinite(teff_cool).any():
            teff_cool = None
    rng = np.random.default_rng(seed)
    pos = np.array([subclass_position(s) for s in subclass], dtype=object).reshape(-1, 2)
    x = pos[:, 0].astype(np.float64)
    has_subtype = pos[:, 1].astype(bool)
    stellar = np.char.upper(np.asarray(lamost_class, dtype=str)) != "QSO"
    stellar &= np.char.upper(np.asarray(lamost_class, dtype=str)) != "GALAXY"
    no_subclass = np.array([str(s).strip() in ("", "Non") for s in subclass], dtype=bool)
    shown = np.isfinite(x) & stellar & np.isfinite(teff) & (teff > 0)
    n_no_subclass = int(np.sum(no_subclass))
    n_other = int(np.sum(~no_subclass & ~shown & np.isfinite(teff)))
    n_no_fit = int(np.sum(~no_subclass & ~np.isfinite(teff)))
    x = x + np.where(has_subtype, rng.uniform(-0.03, 0.03, x.size), rng.uniform(-0.42, 0.42, x.size))
    rows = np.flatnonzero(shown)
    subset = rows.size > MAX_POINTS
    if subset:
        rows = np.sort(rng.choice(rows, MAX_POINTS, replace=False))
    panels = [("fitted Teff (the labels)", teff)]
    if teff_cool is not None:
        panels.append(("Teff of the cool-star check (teff_cool)", teff_cool))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 5.2), sharey=True, squeeze=False)
    values_shown = np.concatenate([v[rows] for _, v in panels])
    values_shown = values_shown[np.isfinite(values_shown) & (values_shown > 0)]
    lo = float(np.clip(np.percentile(values_shown, 0.2) * 0.85, 2500, 6000)) if values_shown.size else 3000.0
    hi = float(np.clip(np.percentile(values_shown, 99.8) * 1.2, 12000, 60000)) if values_shown.size else 50000.0
    seq_x, seq_teff = _dwarf_sequence_line()
    size = 10.0 if rows.size < 3000 else 4.0 if rows.size < 30000 else 1.5
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        for sel, colour, label in (
            (final[rows], "tab:blue", "in the final sample"),
            (~final[rows], "tab:orange", "out of the final sample"),
        ):
            r = rows[sel]
            ax.scatter(x[r], values[r], s=size, c=colour, alpha=0.5, lw=0, rasterized=True, zorder=2,
                       label=f"{label} ({r.size:,})")  # fmt: skip
        ax.plot(seq_x, seq_teff, c="k", lw=1.0, zorder=4, label="dwarf Teff of the subtype (Pecaut & Mamajek 2013)")
        ax.axhline(TEFF_CUT, c="k", ls="--", lw=0.9, zorder=4, label="7,000 K (P2 §5.1)")
        _class_axis(ax)
        _teff_axis(ax, lo, hi)
        ax.set_xlabel("LAMOST subclass")
        ax.set_title(title, fontsize=10)
    axes[0][0].set_ylabel("Teff [K]")
    axes[0][0].legend(fontsize=7.5, loc="upper right", markerscale=3, framealpha=0.9)
    text = (
        f"{shown.sum():,} spectra with an O–M subclass"
        + (f" ({MAX_POINTS:,} drawn at random)" if subset else "")
        + f"; left out: {n_no_subclass:,} without a subclass, {n_other:,} with another subclass or class "
        "(WD, carbon, QSO, galaxy, …)" + (f", {n_no_fit:,} without a fitted Teff" if n_no_fit else "")
    )
    fig.suptitle(f"fitted Teff against LAMOST's class\n{text}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def plot_final_sample_rules(cube: str | Path, path: str | Path) -> Path:
    """The spectra each final-sample rule flags (P2 §5.1): per rule, all it flags and those it alone flags
    (horizontal bars, with counts); and how the rules overlap: spectra flagged by both of each pair of rules
    (the diagonal: by the rule at all).

    Raises
    ------
    FileNotFoundError
        If the cube has no final-sample flags yet.
    """
    root = open_group(cube)
    counts = final_sample_counts(root)
    rules = [r for r in (counts or {}).get("rules", []) if r["present"]]
    if counts is None or counts["final"] is None or not rules:
        raise FileNotFoundError(f"{cube}: no final_sample yet (survey-scale final_sample makes it)")
    flags = np.array([read_column(root, r["name"]) == 1 for r in rules])
    names = [r["name"].removeprefix("flag_") for r in rules]
    n, final = counts["n"], counts["final"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
    y = np.arange(len(rules))[::-1]
    flagged = np.array([r["flagged"] for r in rules])
    alone = np.array([r["only"] for r in rules])
    ax.barh(y, flagged, color="tab:orange", alpha=0.45, label="flagged by the rule")
    ax.barh(y, alone, color="tab:red", label="flagged by this rule alone")
    top = max(int(flagged.max()), 1)
    for yi, f, a in zip(y, flagged, alone, strict=True):
        ax.text(f + 0.01 * top, yi, f"{f:,} ({100 * f / max(final['n_computed'], 1):.1f} %); alone {a:,}",
                va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, names)
    ax.set_xlim(0, top * 1.55)
    ax.set_xlabel("spectra")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(
        f"spectra removed by each rule: any rule {counts['n_any']:,}, several rules {counts['n_several']:,}"
        + (f"; no labels {final['n_no_labels']:,}" if final["n_no_labels"] else ""),
        fontsize=9.5,
    )
    both = (flags[:, None, :] & flags[None, :, :]).sum(axis=2)
    norm = matplotlib.colors.LogNorm(vmin=0.8, vmax=max(float(both.max()), 1.0))
    image = bx.imshow(np.maximum(both, 0.8), cmap="Oranges", norm=norm)
    for i in range(len(rules)):
        for j in range(len(rules)):
            colour = "white" if norm(max(both[i, j], 0.8)) > 0.65 else "black"
            bx.text(j, i, f"{both[i, j]:,}", ha="center", va="center", fontsize=7.5, color=colour)
    bx.set_xticks(range(len(rules)), names, rotation=35, ha="right", fontsize=8)
    bx.set_yticks(range(len(rules)), names, fontsize=8)
    bx.set_title("overlaps: spectra flagged by both rules (diagonal: by the rule)", fontsize=9.5)
    fig.colorbar(image, ax=bx, fraction=0.045, pad=0.02, label="spectra")
    fig.suptitle(
        f"P2 §5.1's final sample: {final['n_in']:,} of {n:,} spectra ({100 * final['n_in'] / max(n, 1):.1f} %)",
        fontsize=11,
    )
    fig.tight_layout()
    return save_png(fig, path)


__all__ = ["MAX_POINTS", "plot_final_sample_rules", "plot_teff_against_class", "subclass_position"]
