"""Figures of the P1 half (SPEC §7–§9), from a cube: P1 Figs. 4, 5, 8, 10, 11 and 12 analogues.

- :func:`plot_ebv` (Fig. 4): E(B−V) against a reference — the mock's truth when a mock release is given
  (P1 compared with the Green et al. 2019 map), else against distance;
- :func:`plot_mks` (Fig. 5): spectroscopic against geometric MKs of the test stars, per network;
- :func:`plot_mcmc_corner` (Fig. 8): the posterior of the uncertainty model (ε, δ, σ_int, σ_s^100);
- :func:`plot_snr_dparallax` (Fig. 10): S/N_Δϖ and the binary threshold;
- :func:`plot_distance_precision` (Fig. 11): precision against distance, with the parallax alone;
- :func:`plot_xy_map` (Fig. 12): the stars in Galactic X, Y.

Each reads the per-spectrum columns it needs (at most ``max_points`` random rows are drawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from survey_scale.products.figures.common import plt, save_png
from survey_scale.science.distance import posterior
from survey_scale.science.mks import PARAMETERS, MKsModel, star_fold
from survey_scale.science.poly2d import robust_sigma
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_cube

PARAMETER_TEX = {"epsilon": r"$\epsilon$", "delta": r"$\delta$", "sigma_int": r"$\sigma_{\rm int}$",
                 "sigma_s100": r"$\sigma_s^{100}$", "kappa": r"$\kappa$"}  # fmt: skip


def _columns(cube: Path, names: Sequence[str], max_points: int | None = None, seed: int = 0) -> pd.DataFrame:
    ds = open_cube(cube)
    missing = [n for n in names if n not in ds]
    if missing:
        raise FileNotFoundError(f"{cube}: no {', '.join(missing)} yet (survey-scale run makes them)")
    n = ds.sizes["spec"]
    rows = np.arange(n)
    if max_points is not None and n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    return pd.DataFrame({name: np.asarray(ds[name].values)[rows] for name in names})


def plot_ebv(cube: str | Path, path: str | Path, truth: str | Path | None = None, max_points: int = 100_000) -> Path:
    """P1 Fig. 4 analogue: E(B−V) against the mock's truth (``truth``: a mock release), else against distance."""
    cube = Path(cube)
    names = ("specid", "ebv", "ebv_err", "em_flag", "snr_g")
    d = _columns(cube, names if truth is not None else (*names, "dis"), max_points)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if truth is not None:
        t = pd.read_parquet(Path(truth) / "truth.parquet", columns=["specid", "ebv"])
        d["specid"] = d["specid"].astype(str)
        d = d.merge(t.rename(columns={"ebv": "ebv_ref"}), on="specid")
        d = d[d["snr_g"] > 20]
        for em, colour, name in ((0, "tab:blue", "no emission"), (1, "tab:red", "emission")):
            s = d[d["em_flag"] == em]
            delta = (s["ebv"] - s["ebv_ref"]).to_numpy()
            label = f"{name}: {np.nanmedian(delta):+.3f} ± {robust_sigma(delta):.3f} (n {len(s)})"
            ax.scatter(s["ebv_ref"], s["ebv"], s=3, c=colour, alpha=0.5, label=label, rasterized=True)
        top = float(np.nanpercentile(d["ebv_ref"], 99.5)) * 1.1
        ax.plot([0, top], [0, top], c="k", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(-0.1, top)
        ax.set_xlabel("E(B−V), mock truth [mag]")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title("E(B−V) against the truth, S/N > 20 (P1 Fig. 4)", fontsize=10)
    else:
        for em, colour, name in ((0, "tab:blue", "no emission"), (1, "tab:red", "emission")):
            s = d[d["em_flag"] == em]
            ax.scatter(s["dis"] / 1e3, s["ebv"], s=3, c=colour, label=f"{name} ({len(s)})", rasterized=True)
        ax.legend(fontsize=8, loc="upper left", markerscale=3)
        ax.set_xlabel("distance [kpc]")
        ax.set_title("E(B−V) against distance (give --truth for P1 Fig. 4)", fontsize=10)
    ax.set_ylabel("E(B−V), this run [mag]")
    return save_png(fig, path, tight=True)


def test_rows(d: pd.DataFrame, min_snr: float = 50.0, min_parallax_snr: float = 10.0) -> np.ndarray:
    """The MKs test set of the default settings (SPEC §8): ϖ/σ > 10, and star fold 0 or S/N ≤ 50."""
    plx_snr = (d["parallax"] + d["parallax_offset"]) / d["parallax_error"]
    fold0 = star_fold(d["star_id"].astype(str).to_numpy()) == 0
    return ((plx_snr > min_parallax_snr) & (fold0 | (d["snr_g"] <= min_snr)) & np.isfinite(d["mks_geo"])).to_numpy()


def plot_mks(cube: str | Path, path: str | Path, max_points: int = 100_000) -> Path:
    """P1 Fig. 5 analogue: spectroscopic vs geometric MKs of the test stars (ϖ/σ > 10, S/N > 20); the dashed
    line is the 0.75 mag offset of equal-mass binaries."""
    names = ("star_id", "mks", "mks_geo", "em_flag", "snr_g", "parallax", "parallax_offset", "parallax_error")
    has_binary = "binary_flag" in open_cube(cube)  # made by the distances step, which may not have run yet
    d = _columns(Path(cube), (*names, "binary_flag") if has_binary else names, max_points)
    if not has_binary:
        d["binary_flag"] = -9
    d = d[test_rows(d) & (d["snr_g"] > 20)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    for ax, em, title in zip(axes, (0, 1), ("non-emission network", "emission network (clean windows)"), strict=True):
        s = d[d["em_flag"] == em]
        delta = (s["mks"] - s["mks_geo"]).to_numpy()
        ax.scatter(s["mks_geo"], s["mks"], s=4, c=np.where(s["binary_flag"] == 1, "tab:orange", "tab:blue"),
                   alpha=0.6, rasterized=True)  # fmt: skip
        ax.plot([-8, 4], [-8, 4], c="k", lw=0.8)
        ax.plot([-8, 4], [-7.25, 4.75], c="k", lw=0.8, ls="--")
        ax.set_title(f"{title}: n {len(s)}, Δ {np.nanmedian(delta):+.2f} ± {robust_sigma(delta):.2f}", fontsize=9)
        ax.set_xlabel("geometric MKs [mag]")
    axes[0].set_ylabel("spectroscopic MKs [mag]")
    axes[0].set_xlim(-7, 3)
    axes[0].set_ylim(-7, 3)
    axes[0].invert_xaxis()
    axes[0].invert_yaxis()
    binaries = "orange: binary_flag = 1" if has_binary else "no binary_flag yet (run distances)"
    fig.suptitle(f"test stars, parallax/error > 10, S/N > 20; {binaries} (P1 Fig. 5)", fontsize=10)
    return save_png(fig, path, tight=True)


def plot_mcmc_corner(cube: str | Path, path: str | Path, network: str = "non_emission") -> Path:
    """P1 Fig. 8 analogue: the MCMC posterior of (ε, δ, σ_int, σ_s^100, κ), marginals with 16/50/84 % lines."""
    cube = Path(cube)
    model_path = Bookkeeping(cube).recorded_model("mks")
    samples = MKsModel.load(model_path).samples.get(network)
    if samples is None:
        raise FileNotFoundError(f"{cube}: the MKs model has no MCMC samples for the {network} network")
    k = samples.shape[1]  # a model trained before κ has four parameters
    fig, axes = plt.subplots(k, k, figsize=(9, 9))
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(samples[:, i], bins=40, color="0.4", histtype="step")
                q = np.percentile(samples[:, i], [16, 50, 84])
                for v in q:
                    ax.axvline(v, c="tab:blue", lw=0.8, ls="--")
                interval = f"$^{{+{q[2] - q[1]:.3f}}}_{{-{q[1] - q[0]:.3f}}}$"
                ax.set_title(f"{PARAMETER_TEX[PARAMETERS[i]]} = {q[1]:.3f}{interval}", fontsize=9)
                ax.set_yticks([])
            else:
                ax.hist2d(samples[:, j], samples[:, i], bins=40, cmap="Greys")
            if i == k - 1:
                ax.set_xlabel(PARAMETER_TEX[PARAMETERS[j]])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(PARAMETER_TEX[PARAMETERS[i]])
            elif j > 0:
                ax.set_yticklabels([])
    fig.suptitle(f"MKs uncertainty model, {network.replace('_', '-')} single test stars (P1 Fig. 8)", fontsize=10)
    return save_png(fig, path, tight=True)


def plot_snr_dparallax(cube: str | Path, path: str | Path, max_points: int = 200_000) -> Path:
    """P1 Fig. 10 analogue: the distribution of S/N_Δϖ and against MKs, with the threshold of binary_flag."""
    d = _columns(Path(cube), ("snr_dparallax", "mks", "binary_flag"), max_points)
    d = d[np.isfinite(d["snr_dparallax"])]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.hist(np.clip(d["snr_dparallax"], -10, 20), bins=120, color="0.4", histtype="step")
    ax1.axvline(2.0, c="tab:red", lw=1)
    ax1.set_yscale("log")
    ax1.set_xlabel(r"S/N$_{\Delta\varpi}$ (clipped to [−10, 20])")
    ax1.set_title(f"binary_flag = 1: {(d['binary_flag'] == 1).mean():.1%} of {len(d)} spectra", fontsize=10)
    ax2.scatter(d["mks"], np.clip(d["snr_dparallax"], -10, 20), s=2, c="0.4", rasterized=True)
    ax2.axhline(2.0, c="tab:red", lw=1)
    ax2.set_xlabel("spectroscopic MKs [mag]")
    ax2.set_ylabel(r"S/N$_{\Delta\varpi}$")
    ax2.invert_xaxis()
    fig.suptitle("spectro-photometric against Gaia parallax (P1 Fig. 10)", fontsize=10)
    return save_png(fig, path, tight=True)


def plot_distance_precision(cube: str | Path, path: str | Path, max_points: int = 20_000) -> Path:
    """P1 Fig. 11 analogue: left, the distances of the single stars (binary_flag 0, highest-S/N visit); right,
    their precision (d84 − d16)/2d against distance, ours and with the parallax alone, with running medians."""
    names = ("dis", "dis_low", "dis_high", "parallax", "parallax_offset", "parallax_error", "mks", "mks_err", "Ks")
    d = _columns(Path(cube), (*names, "Ks_err", "aks", "aks_err", "binary_flag", "uniqflag"), max_points)
    d = d[np.isfinite(d["dis"]) & (d["binary_flag"] == 0) & (d["uniqflag"] == 1)]
    alone = posterior(d["parallax"] + d["parallax_offset"], d["parallax_error"], d["mks"], d["mks_err"], d["Ks"],
                      d["Ks_err"], d["aks"], d["aks_err"], binary=np.ones(len(d), bool))  # fmt: skip
    kpc = d["dis"].to_numpy() / 1e3
    ours = (0.5 * (d["dis_high"] - d["dis_low"]) / d["dis"]).to_numpy()
    plx = 0.5 * (alone.dis_high - alone.dis_low) / alone.dis
    top = float(np.nanpercentile(kpc, 99.5)) if len(d) else 1.0
    fig, (hx, ax) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    hx.hist(kpc, bins=np.linspace(0, top, 40), color="0.4", histtype="step")
    hx.set_xlabel("distance [kpc]")
    hx.set_ylabel("single stars")
    hx.set_title(f"{len(d)} single stars, median {np.nanmedian(kpc):.2f} kpc", fontsize=10)
    ax.scatter(kpc, plx, s=2, c="tab:orange", alpha=0.3, rasterized=True)
    ax.scatter(kpc, ours, s=2, c="tab:blue", alpha=0.3, rasterized=True)
    edges = np.linspace(0, top, 13)
    centre = 0.5 * (edges[1:] + edges[:-1])
    which = np.digitize(kpc, edges) - 1
    for values, colour, label in ((ours, "tab:blue", "this run (MKs + parallax)"), (plx, "tab:orange",
                                  "parallax alone")):  # fmt: skip
        med = [np.nanmedian(values[which == b]) if (which == b).sum() >= 5 else np.nan for b in range(centre.size)]
        ax.plot(centre, med, c=colour, lw=2, ls="-" if colour == "tab:blue" else "--",
                label=f"{label}: median {np.nanmedian(values):.3f}")  # fmt: skip
    ax.axhline(0.08, c="k", lw=0.8, ls=":", label="P1: 8 %")
    ax.set_xlabel("distance [kpc]")
    ax.set_ylabel("relative precision (d84 − d16) / 2d")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, top)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("distance precision; lines: running medians", fontsize=10)
    fig.suptitle("distances of single stars (P1 Fig. 11)", fontsize=10)
    return save_png(fig, path, tight=True)


def plot_xy_map(cube: str | Path, path: str | Path, max_points: int = 500_000, max_precision: float = 0.3) -> Path:
    """P1 Fig. 12 analogue: the stars (highest-S/N visit) whose distance is known to ``max_precision``
    ((d84 − d16)/2d) in Galactic X, Y, coloured by Z; the Sun marked, dashed rings every kpc from it. The axes
    span the central 99 % of the stars (the few beyond are counted in the title)."""
    d = _columns(Path(cube), ("X", "Y", "Z", "uniqflag", "dis", "dis_low", "dis_high"), max_points)
    precision = 0.5 * (d["dis_high"] - d["dis_low"]) / d["dis"]
    d = d[np.isfinite(d["X"]) & (d["uniqflag"] == 1) & (precision < max_precision)]
    sun = -8.1
    reach = float(np.nanpercentile(np.hypot(d["X"] - sun, d["Y"]), 99.0)) * 1.1 if len(d) else 2.0
    reach = max(2.0, reach)
    outside = int((np.hypot(d["X"] - sun, d["Y"]) > reach).sum())
    fig, ax = plt.subplots(figsize=(6.5, 6))
    sc = ax.scatter(d["X"], d["Y"], c=np.clip(d["Z"], -0.5, 0.5), s=3, cmap="coolwarm", rasterized=True)
    theta = np.linspace(0, 2 * np.pi, 361)
    for r in range(1, int(reach) + 1):
        ax.plot(sun + r * np.cos(theta), r * np.sin(theta), ls="--", lw=0.4, c="0.7", zorder=0)
    ax.plot([sun], [0.0], marker="*", c="gold", ms=14, mec="k")
    fig.colorbar(sc, ax=ax, label="Z [kpc] (clipped to ±0.5)")
    ax.set_xlim(sun - reach, sun + reach)
    ax.set_ylim(-reach, reach)
    ax.set_xlabel("X [kpc] (Sun at −8.1)")
    ax.set_ylabel("Y [kpc]")
    ax.set_aspect("equal")
    beyond = f" ({outside} beyond the frame)" if outside else ""
    ax.set_title(f"{len(d)} stars with distances to {max_precision:.0%}{beyond}\nrings every kpc from the Sun "
                 "(P1 Fig. 12)", fontsize=9)  # fmt: skip
    return save_png(fig, path, tight=True)
