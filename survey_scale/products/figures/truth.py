"""Figures of a cube made from a mock release against the mock's truth (SPEC §10): how well the run recovers
the labels (P2 Fig. 7 analogue), MKs and binaries (P1 Figs. 5, 10) and distances (P1 Fig. 11).

Each takes the cube and the mock release folder (its ``truth.parquet``: one row per spectrum, with the true
labels, MKs, distance, and whether the star is a binary, has emission or a corrupted spectrum).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd

from survey_scale.core.labels import LABEL_UNITS
from survey_scale.products.figures.common import plt, save_png
from survey_scale.products.figures.labels import good_fits
from survey_scale.science.distance import posterior
from survey_scale.science.poly2d import robust_sigma
from survey_scale.store.cube import open_cube


def matched(cube: str | Path, truth: str | Path, variables: Sequence[str]) -> pd.DataFrame:
    """The cube's ``variables`` (per spectrum) joined to the truth of the same spectra (truth columns get the
    suffix ``_true`` where the names clash).

    Raises
    ------
    FileNotFoundError
        If the cube lacks a variable or ``truth`` holds no ``truth.parquet``.
    """
    ds = open_cube(cube)
    missing = [v for v in variables if v not in ds]
    if missing:
        raise FileNotFoundError(f"{cube}: no {', '.join(missing)} yet (survey-scale run makes them)")
    path = Path(truth) / "truth.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{truth}: no truth.parquet (give the mock release the cube was made from)")
    got = pd.DataFrame({"specid": ds.specid.values.astype(str)})
    for name in variables:
        values = ds[name].values
        if values.ndim == 2 and name == "labels":
            for k, label in enumerate(ds.label.values):
                got[str(label)] = values[:, k]
        else:
            got[name] = values
    t = pd.read_parquet(path)
    t = t[~t["invalid"].to_numpy(dtype=bool)]
    return got.merge(t, on="specid", suffixes=("", "_true"), validate="one_to_one")


def _clean_single(d: pd.DataFrame) -> np.ndarray:
    """Single stars without emission and with an uncorrupted spectrum (the truth's flags)."""
    return (~d["binary"].astype(bool) & ~d["emission"].astype(bool) & ~d["corrupted"].astype(bool)).to_numpy()


def plot_labels_vs_truth(cube: str | Path, truth: str | Path, path: str | Path, min_snr: float = 20.0) -> Path:
    """P2 Fig. 7 analogue on the mock: fitted minus true label against the true Teff, per label, for single,
    non-emission, uncorrupted stars of the final sample (:func:`~survey_scale.products.figures.labels.good_fits`)
    with S/N > ``min_snr``, coloured by S/N; each panel gives
    the median offset and robust σ (Teff as a fraction of the true value)."""
    ds = open_cube(cube)
    if "labels" not in ds:
        raise FileNotFoundError(f"{cube}: no labels yet (survey-scale fit makes them)")
    names = [str(n) for n in ds.label.values]
    d = matched(cube, truth, ("labels", "snr_g"))
    good = pd.Series(good_fits(ds), index=ds.specid.values.astype(str))
    d = d[_clean_single(d) & (d["snr_g"] > min_snr) & good.loc[d["specid"]].to_numpy()]
    teff_true = d["teff_true"].to_numpy()
    ncol = 4
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(14, 2.9 * nrow), sharex=True, layout="constrained")
    points = None
    for ax, name in zip(axes.flat, names, strict=False):
        delta = (d[name] - d[f"{name}_true"]).to_numpy()
        unit = LABEL_UNITS.get(name, "")
        if name == "teff":
            delta, unit = delta / teff_true, "fraction"
        points = ax.scatter(teff_true, delta, s=3, c=np.log10(d["snr_g"]), cmap="viridis", vmin=np.log10(min_snr),
                            vmax=np.log10(300), rasterized=True)  # fmt: skip
        ax.axhline(0.0, c="k", lw=0.6)
        finite = delta[np.isfinite(delta)]
        med, sig = (np.median(finite), robust_sigma(finite)) if finite.size else (np.nan, np.nan)
        text = f"{med:+.3f} ± {sig:.3f}" if name in ("teff", "logg", "he_frac") else f"{med:+.2f} ± {sig:.2f}"
        ax.text(0.03, 0.93, text, transform=ax.transAxes, va="top", fontsize=8, color="tab:red",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})  # fmt: skip
        if np.isfinite(sig) and sig > 0:
            ax.set_ylim(med - 6 * sig, med + 6 * sig)
        ax.set_ylabel(f"Δ{name} [{unit}]", fontsize=8)
        ax.set_xscale("log")
        lo, hi = (0.9 * teff_true.min(), 1.1 * teff_true.max()) if teff_true.size else (6500.0, 50000.0)
        ax.set_xlim(lo, hi)
        ticks = [t for t in (7000, 10000, 15000, 20000, 30000, 45000) if lo < t < hi]
        ax.set_xticks(ticks, [f"{t // 1000}k" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("true Teff [K]")
    if points is not None:
        fig.colorbar(points, ax=axes.ravel().tolist(), label="log10 S/N (g)", fraction=0.02, pad=0.01, aspect=40)
    fig.suptitle(
        f"fit − truth on the mock: {len(d)} single, non-emission, uncorrupted spectra with S/N > {min_snr:g} "
        "(P2 Fig. 7 analogue; median ± robust σ)"
    )
    return save_png(fig, path)


def plot_mks_vs_truth(cube: str | Path, truth: str | Path, path: str | Path, min_snr: float = 20.0) -> Path:
    """P1 Figs. 5 and 10 against the truth: spectroscopic MKs against the true MKs of the star (the primary's
    for a binary), S/N > ``min_snr``; and the share of true binaries and of true single stars that
    ``binary_flag`` marks, in bins of true MKs (P1: binaries are found best among luminous stars)."""
    d = matched(cube, truth, ("mks", "mks_err", "snr_g", "binary_flag", "em_flag"))
    d = d[(d["snr_g"] > min_snr) & np.isfinite(d["mks"]) & ~d["corrupted"].astype(bool)]
    binary = d["binary"].astype(bool).to_numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.5, 5))
    for sel, colour, name in ((~binary, "tab:blue", "single"), (binary, "tab:orange", "binary (primary's MKs)")):
        delta = (d["mks"] - d["mks_true"]).to_numpy()[sel]
        label = f"{name}: {np.nanmedian(delta):+.2f} ± {robust_sigma(delta):.2f} mag (n {sel.sum()})"
        ax.scatter(d["mks_true"][sel], d["mks"][sel], s=4, c=colour, alpha=0.5, label=label, rasterized=True)
    lim = [float(np.nanpercentile(d["mks_true"], 0.5)) - 0.5, float(np.nanpercentile(d["mks_true"], 99.5)) + 0.5]
    ax.plot(lim, lim, c="k", lw=0.8)
    ax.set_xlim(lim[1], lim[0])
    ax.set_ylim(lim[1], lim[0])
    ax.set_xlabel("true MKs [mag]")
    ax.set_ylabel("spectroscopic MKs [mag]")
    ax.legend(fontsize=8, loc="upper left", markerscale=3)
    ax.set_title(f"MKs against the truth, S/N > {min_snr:g}", fontsize=10)
    flagged = (d["binary_flag"] == 1).to_numpy()
    known = (d["binary_flag"] >= 0).to_numpy()
    system = d["mks_system"].to_numpy() if "mks_system" in d else d["mks_true"].to_numpy()
    edges = np.arange(np.floor(np.nanmin(system)), np.ceil(np.nanmax(system)) + 1.0, 1.0)
    centre = 0.5 * (edges[1:] + edges[:-1])
    which = np.digitize(system, edges) - 1
    for sel, colour, name in ((binary, "tab:orange", "true binaries flagged"),
                              (~binary, "tab:blue", "true singles flagged")):  # fmt: skip
        rate = [
            flagged[sel & known & (which == b)].mean() if (sel & known & (which == b)).sum() >= 5 else np.nan
            for b in range(centre.size)
        ]
        total = flagged[sel & known].mean() if (sel & known).any() else float("nan")
        bx.plot(centre, rate, "o-", c=colour, label=f"{name}: {total:.1%} overall")
    bx.set_xlabel("true MKs of the system [mag]")
    bx.set_ylabel("share with binary_flag = 1")
    bx.set_ylim(-0.02, 1.02)
    bx.invert_xaxis()
    bx.legend(fontsize=8)
    bx.set_title("binaries found by S/N_Δϖ ≥ 2 (bins with ≥ 5 spectra)", fontsize=10)
    fig.suptitle("MKs and binary flags against the mock's truth (P1 Figs. 5, 10 analogues)", fontsize=11)
    fig.tight_layout()
    return save_png(fig, path)


BRIGHTENING_BINS = (0.0, 0.1, 0.25, 0.5, 0.76)
"""Bins of a binary's true brightening over its primary (mag; twins reach 0.75, P1 §6)."""
PARALLAX_SNR_BINS = (5.0, 10.0, 20.0, np.inf)
"""Bins of ϖ/σ_ϖ (zero-point corrected parallax) for the recall."""


def binary_recall(d: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Recall of ``binary_flag`` among the true binaries by true brightening and parallax precision, and the
    false-positive rate among single stars with ϖ/σ_ϖ > 10 (issue 27).

    ``d``: the cube's ``uniqflag``, ``binary_flag``, ``parallax``, ``parallax_offset``, ``parallax_error`` joined
    to the truth (:func:`matched`: ``binary``, ``mks_true`` the primary's MKs, ``mks_system``). Each star counts
    once, by its highest-S/N visit with a flag (``uniqflag`` 1, ``binary_flag`` ≥ 0); with a ``population``
    column, the hot stars only. Brightening is ``mks_true − mks_system`` (mag).

    Returns the table (one row per :data:`BRIGHTENING_BINS` × :data:`PARALLAX_SNR_BINS` cell: the bounds,
    ``n`` binaries, ``recall``, NaN where empty) and ``{"rate", "n_singles", "n_flagged"}`` of the singles.
    """
    if "population" in d:  # the hot stars (P1's MKs model is theirs), not a candidate list's contaminants
        d = d[d["population"] == "hot"]
    best = d[(d["uniqflag"] == 1) & (d["binary_flag"] >= 0)]
    plx_snr = ((best["parallax"] + best["parallax_offset"]) / best["parallax_error"]).to_numpy()
    found = (best["binary_flag"] == 1).to_numpy()
    binary = best["binary"].to_numpy(dtype=bool)
    brightening = (best["mks_true"] - best["mks_system"]).to_numpy()
    rows = []
    for lo, hi in itertools.pairwise(BRIGHTENING_BINS):
        for plo, phi in itertools.pairwise(PARALLAX_SNR_BINS):
            cell = binary & (brightening >= lo) & (brightening < hi) & (plx_snr >= plo) & (plx_snr < phi)
            recall = float(found[cell].mean()) if cell.any() else float("nan")
            rows.append({"brightening_lo": lo, "brightening_hi": hi, "plx_snr_lo": plo, "plx_snr_hi": phi,
                         "n": int(cell.sum()), "recall": recall})  # fmt: skip
    singles = ~binary & (plx_snr > 10)
    false = {
        "rate": float(found[singles].mean()) if singles.any() else float("nan"),
        "n_singles": int(singles.sum()),
        "n_flagged": int(found[singles].sum()),
    }
    return pd.DataFrame(rows), false


def plot_binary_recall(cube: str | Path, truth: str | Path, path: str | Path) -> Path:
    """The share of true binaries that ``binary_flag`` finds against their true brightening, one line per
    parallax-precision bin, and the false-positive rate among single stars with ϖ/σ_ϖ > 10
    (:func:`binary_recall`)."""
    # the cube's mks too: the truth's then comes as mks_true (the primary's), as binary_recall reads it
    variables = ("uniqflag", "binary_flag", "parallax", "parallax_offset", "parallax_error", "mks")
    table, false = binary_recall(matched(cube, truth, variables))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (plo, phi), cells in table.groupby(["plx_snr_lo", "plx_snr_hi"], sort=True):
        centre = 0.5 * (cells["brightening_lo"] + cells["brightening_hi"])
        label = f"ϖ/σ {plo:g}–{phi:g}" if np.isfinite(phi) else f"ϖ/σ > {plo:g}"
        line = ax.plot(centre, cells["recall"], "o-", label=f"{label} ({int(cells['n'].sum())} binaries)")[0]
        for x, y, n in zip(centre, cells["recall"], cells["n"], strict=True):
            if np.isfinite(y):
                ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, c=line.get_color())
    ax.set_xlabel("true brightening of the binary over its primary [mag]")
    ax.set_ylabel("share with binary_flag = 1")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(
        f"hot stars' binary recall (numbers: binaries per point); false positives among singles with ϖ/σ > 10: "
        f"{false['rate']:.1%} ({false['n_flagged']} of {false['n_singles']})",
        fontsize=9,
    )
    fig.tight_layout()
    return save_png(fig, path)


def plot_distances_vs_truth(cube: str | Path, truth: str | Path, path: str | Path) -> Path:
    """P1 Fig. 11 against the truth: d / d_true − 1 against the true distance for single stars, this run's
    distances and those of the parallax alone, with running medians and robust σ in distance bins."""
    variables = ("dis", "parallax", "parallax_offset", "parallax_error", "mks", "mks_err", "Ks", "Ks_err", "aks")
    d = matched(cube, truth, (*variables, "aks_err", "binary_flag"))
    d = d[np.isfinite(d["dis"]) & ~d["binary"].astype(bool) & ~d["corrupted"].astype(bool)]
    alone = posterior(d["parallax"] + d["parallax_offset"], d["parallax_error"], d["mks"], d["mks_err"], d["Ks"],
                      d["Ks_err"], d["aks"], d["aks_err"], binary=np.ones(len(d), bool))  # fmt: skip
    true_kpc = d["distance_pc"].to_numpy() / 1e3
    ours = d["dis"].to_numpy() / d["distance_pc"].to_numpy() - 1
    plx = alone.dis / d["distance_pc"].to_numpy() - 1
    fig, ax = plt.subplots(figsize=(7.5, 5))
    top = float(np.nanpercentile(true_kpc, 99.5)) if len(d) else 1.0
    edges = np.linspace(0, top, 11)
    centre = 0.5 * (edges[1:] + edges[:-1])
    which = np.digitize(true_kpc, edges) - 1
    for values, colour, name in ((plx, "tab:orange", "parallax alone"), (ours, "tab:blue", "this run")):
        ax.scatter(true_kpc, values, s=3, c=colour, alpha=0.3, rasterized=True)
        med = np.array([np.nanmedian(values[which == b]) if (which == b).sum() >= 5 else np.nan for b in range(10)])
        sig = np.array([robust_sigma(values[which == b]) if (which == b).sum() >= 5 else np.nan for b in range(10)])
        label = f"{name}: {np.nanmedian(values):+.3f} ± {robust_sigma(values[np.isfinite(values)]):.3f}"
        ax.plot(centre, med, c=colour, lw=2, label=label)
        ax.fill_between(centre, med - sig, med + sig, color=colour, alpha=0.15, lw=0)
    ax.axhline(0, c="k", lw=0.8)
    ax.set_ylim(-0.6, 0.6)
    ax.set_xlim(0, top)
    ax.set_xlabel("true distance [kpc]")
    ax.set_ylabel("d / d_true − 1")
    ax.legend(fontsize=8, loc="upper left", title="median ± robust σ; band: ±σ per bin", title_fontsize=8)
    ax.set_title(f"distances of {len(d)} single-star spectra against the truth (P1 Fig. 11 analogue)", fontsize=10)
    return save_png(fig, path, tight=True)
