"""Labels of real LAMOST hot-star spectra from both shipped emulators, and the cross-model systematics (issue 16).

Part 1 — real spectra. The files (default: ``../shared/data/lamost_hot``; ``--extra DIR`` adds more, e.g. the
MIT-licensed LAMOST DR1 files of github.com/grd349/LearningLAMOST) are ingested and normalized by the pipeline
(a temporary cube: ingest → normalize, SPEC §2–§3) and fitted by the P2 procedure (§5.3,
:func:`survey_scale.science.label_fit.fit_labels`) with

- the ``physical`` emulator (thedoppler's hot-dwarf Cannon model, :mod:`survey_scale.synth.cannon_grid`), and
- the ``synthesizer`` emulator (the built-in synthesizer's model grid; ``--synth-emulator`` gives a file when
  the package does not ship one yet).

Printed per spectrum: LAMOST class (header ``SUBCLASS``), its Teff from the Pecaut & Mamajek (2013, ApJS 208,
9) dwarf sequence (E. Mamajek's table, version 2024.05.15, ``../shared/data/tables/EEM_dwarf_UBVIJHK_colors_Teff.txt``;
subgiant and giant classes take the dwarf Teff of their subtype), S/N, and each emulator's Teff, log g, [Fe/H],
v sin i and χ²_red. Figures in ``--out``: the best fits of both emulators over each spectrum
(``fits_*.png``) and fitted Teff against class Teff (``teff_vs_class.png``).

Part 2 — cross-model systematics (P2 §4.7's question: how far do labels move when the model changes?).
``--n-cross`` label sets are drawn where both models are defined (T_eff 8,000–40,000 K log-uniform inside the
Cannon model's training hull, log g 2.5–5, [Fe/H] −2.5…+0.5, v sin i 0–400 km s⁻¹); the synthesizer's other
labels are scaled-solar (every [X/H] = [Fe/H], N_He/N_tot = 0.085, v_mic = 2 km s⁻¹). Noised spectra (S/N
``--cross-snr`` per pixel) of the synthesizer (normalized as the model grid is) are fitted with the physical
emulator, and spectra of the Cannon model (the physical grid's procedure) with the synthesizer's emulator; both
models' own spectra are fitted by their own emulators as the reference. The table gives, per label and Teff
range, the median offset (fit − truth) and the robust scatter — the systematic floor a user should expect
between two credible models.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/eval_real.py --extra /tmp/LearningLAMOST/Data/DR1 \\
        --synth-emulator synthesizer.npz --out benchmarks/out/real
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import yaml

from survey_scale.config import load_config
from survey_scale.core.labels import LABEL_NAMES
from survey_scale.core.masks import FIT_WINDOWS, window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.io import read_lamost
from survey_scale.pipeline import run_pipeline
from survey_scale.science.emulator import Emulator, default_emulator_path, load
from survey_scale.science.label_fit import fit_labels_set
from survey_scale.science.normalize import normalize_continuum
from survey_scale.store.cube import open_cube
from survey_scale.synth import synthesize
from survey_scale.synth.cannon_grid import (
    cannon_model_spectra,
    joined_model_spectra,
    read_cannon_model,
    sample_cannon_labels,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SHOWN = ("teff", "logg", "fe_h", "vsini")
TEFF_BINS = ((8000.0, 12000.0), (12000.0, 20000.0), (20000.0, 40000.0))
SOLAR_HE_FRAC = 0.085


# ------------------------------------------------------------------------------------------------------
# class Teff (Pecaut & Mamajek 2013)
# ------------------------------------------------------------------------------------------------------


def pm13_teff_by_type(path: Path) -> dict[str, float]:
    """Spectral subtype (e.g. ``"A2"``) → Teff (K) of the dwarf sequence in E. Mamajek's table."""
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([OBAFGKMLTY]\d(?:\.\d)?)V\s+(\d+)\s", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = float(m.group(2))
    if not out:
        raise SystemExit(f"{path}: no 'SpT Teff' rows found (expected E. Mamajek's EEM_dwarf table)")
    return out


def class_teff(subclass: str, table: dict[str, float]) -> float:
    m = re.match(r"^([OBAFGKM]\d(?:\.\d)?)", subclass or "")
    return table.get(m.group(1), np.nan) if m else np.nan


# ------------------------------------------------------------------------------------------------------
# part 1: real spectra
# ------------------------------------------------------------------------------------------------------


def select_files(args: argparse.Namespace) -> list[Path]:
    files = sorted(p for d in args.spectra for p in Path(d).iterdir() if ".fits" in p.name)
    seen = {p.name.replace("_dr8", "") for p in files}
    for folder in args.extra or []:
        for p in sorted(Path(folder).iterdir()):
            if ".fits" not in p.name or p.name in seen:
                continue
            h = read_lamost(p).header
            snr = h.get("SNRG", h.get("SN_G"))
            if h.get("CLASS") == "STAR" and str(h.get("SUBCLASS", ""))[:1] in "OB" + "A" and (snr or 0) >= args.min_snr:
                files.append(p)
                seen.add(p.name)
    return files


def normalized_cube(files: list[Path], work: Path) -> dict[str, np.ndarray]:
    """Ingest and normalize ``files`` with the pipeline in a temporary cube; the arrays the fit needs."""
    if work.exists():
        shutil.rmtree(work)
    inp = work / "input"
    inp.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), inp / f.name)
    config = load_config(
        None,
        {
            "cube.path": str(work / "cube.zarr"),
            "ingest.input": str(inp),
            "runner.progress": False,
            "cluster.local.n_workers": 1,
        },
    )
    run_pipeline(config, progress=False, until="normalize")
    ds = open_cube(work / "cube.zarr")
    out = {k: ds[k].values for k in ("norm_flux", "norm_ivar", "pixmask", "snr_g", "fitsname")}
    out["fitsname"] = out["fitsname"].astype(str)
    return out


def fit_both(ems: dict[str, Emulator], data: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    wave = wavelength_grid()
    return {
        name: fit_labels_set(
            em, data["norm_flux"], data["norm_ivar"], wave, pixmask=data["pixmask"], device="cpu", snr=data["snr_g"]
        )
        for name, em in ems.items()
    }


def label(res: dict[str, np.ndarray], em: Emulator, name: str) -> np.ndarray:
    return (
        res["labels"][:, em.label_names.index(name)] if name in em.label_names else np.full(len(res["labels"]), np.nan)
    )


def plot_fits(out: Path, data: dict, ems: dict, fits: dict, header: list[dict]) -> list[Path]:
    wave = wavelength_grid()
    masked = window_mask(wave, FIT_WINDOWS)
    paths, per_page = [], 4
    colors = {"physical": "tab:red", "synthesizer": "tab:blue"}
    for page in range(0, len(header), per_page):
        rows = list(range(page, min(page + per_page, len(header))))
        fig, axes = plt.subplots(
            len(rows), 2, figsize=(14, 3.1 * len(rows)), squeeze=False, gridspec_kw={"width_ratios": [2.2, 1]}
        )
        for (ax, zoom), i in zip(axes, rows, strict=True):
            flux = np.where(data["norm_ivar"][i] > 0, data["norm_flux"][i], np.nan)
            h = header[i]
            title = [f"{h['file']}  {h['class']} (PM13 {h['class_teff']:.0f} K), S/N {h['snr']:.0f}"]
            for a in (ax, zoom):
                a.plot(wave, np.where(masked, np.nan, flux), c="k", lw=0.5, label="LAMOST (normalized)")
                a.plot(wave, np.where(masked, flux, np.nan), c="0.7", lw=0.5)
                for name in ems:
                    a.plot(wave, fits[name]["model_flux"][i], c=colors.get(name, "tab:green"), lw=0.7, label=name)
                a.set_ylim(0.2, 1.3)
            for name, em in ems.items():
                r = fits[name]
                title.append(
                    f"{name}: Teff {label(r, em, 'teff')[i]:.0f}, logg {label(r, em, 'logg')[i]:.2f}, "
                    f"[Fe/H] {label(r, em, 'fe_h')[i]:.2f}, vsini {label(r, em, 'vsini')[i]:.0f}, "
                    f"chi2_red {r['chi2_red'][i]:.2f}"
                )
            ax.set_title("\n".join(title), fontsize=7, loc="left")
            ax.set_xlim(wave[0], wave[-1])
            zoom.set_xlim(3850.0, 4400.0)
            ax.set_ylabel("normalized flux")
        axes[0, 0].legend(fontsize=7, loc="lower right", ncol=3)
        axes[-1, 0].set_xlabel("rest-frame vacuum wavelength (Å); grey: masked in the fit")
        axes[-1, 1].set_xlabel("Ca II K, Hε–Hγ (Å)")
        fig.tight_layout()
        path = out / f"fits_{page // per_page + 1:02d}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_teff(out: Path, header: list[dict], ems: dict, fits: dict) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    t_class = np.array([h["class_teff"] for h in header])
    size = 8 + 0.8 * np.array([h["snr"] for h in header])
    for name, marker in (("physical", "o"), ("synthesizer", "s")):
        if name in fits:
            ax.scatter(t_class, label(fits[name], ems[name], "teff"), marker=marker, s=size, label=name, alpha=0.7)
    lim = (6500.0, 10500.0)
    ax.plot(lim, lim, c="0.5", lw=0.8)
    ax.axvline(8000.0, c="tab:red", lw=0.8, ls="--")
    ax.text(8050.0, 6700.0, "physical model's lowest Teff", color="tab:red", fontsize=7)
    ax.set_xlim(lim)
    ax.set_yscale("log")
    ax.set_ylim(6000.0, 35000.0)
    ax.set_yticks([6000, 8000, 10000, 15000, 20000, 30000], ["6k", "8k", "10k", "15k", "20k", "30k"])
    ax.set_xlabel("Teff of the LAMOST class, K\n(Pecaut & Mamajek 2013 dwarf sequence)")
    ax.set_ylabel("fitted Teff, K (symbol size: S/N)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = out / "teff_vs_class.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------
# part 0: a real candidate list through `survey-scale run` (issue 23)
# ------------------------------------------------------------------------------------------------------

LETTERS = "OBAFGKM"


def class_letter(subclass: str) -> str:
    """Spectral letter of a LAMOST subclass ("A2V" → A, "dM5"/"gM0"/"sdM2" → M; "" when there is none)."""
    m = re.match(r"^(?:sd|d|g)?([OBAFGKM])", str(subclass or ""))
    return m.group(1) if m else ""


def robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else np.nan


def run_candidates(folder: Path, out: Path, table: dict[str, float], emulator: str, workers: int) -> pd.DataFrame:
    """``survey-scale run`` (every step, ``emulator.path: <emulator>``) on the LAMOST files of ``folder``; the
    labels catalog with the class letter and class Teff (Pecaut & Mamajek) added."""
    work = out / f"candidates_{folder.name}"
    if work.exists():
        shutil.rmtree(work)
    (work / "input").mkdir(parents=True)
    for f in sorted(folder.iterdir()):
        if ".fits" in f.name:
            os.symlink(f.resolve(), work / "input" / f.name)
    config = {
        "cube": {"path": str(work / "cube.zarr")},
        "ingest": {"input": str(work / "input")},
        "emulator": {"path": emulator},
        "cluster": {"local": {"n_workers": workers}},
        "export": {"formats": ["parquet"]},
        "runner": {"progress": False},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    t = time.perf_counter()
    subprocess.run(["survey-scale", "run", "--config", str(work / "config.yaml")], check=True)
    cat = pd.read_parquet(work / "catalogs" / "labels.parquet")
    print(f"survey-scale run on {len(cat)} spectra of {folder} ({emulator}): {time.perf_counter() - t:.0f} s")
    cat["letter"] = [class_letter(s) for s in cat["lasp_subclass"]]
    cat["class_teff"] = [class_teff(s.lstrip("dgs"), table) for s in cat["lasp_subclass"].astype(str)]
    return cat


def candidate_figures(cat: pd.DataFrame) -> None:
    """The issue-23 figures of a candidate list: who enters the final sample, A stars against their class, and
    repeat visits."""
    rules = [c for c in cat.columns if c.startswith("flag_") and c != "flag_chi2ratio"] + ["flag_chi2ratio"]
    print("\n| class | spectra | final_sample = 1 | cool component kept | " + " | ".join(rules) + " | median Teff |")
    print("|---|---|---|---|" + "---|" * len(rules) + "---|")
    for letter in [*LETTERS, ""]:
        s = cat[cat["letter"] == letter]
        if len(s):
            counts = " | ".join(str(int((s[r] == 1).sum())) for r in rules)
            print(
                f"| {letter or 'none'} | {len(s)} | {int((s['final_sample'] == 1).sum())} | "
                f"{int((s['fit_component'] == 0).sum())} | {counts} | {np.nanmedian(s['teff']):.0f} |"
            )
    cool = cat["letter"].isin(list("FGKM"))
    print(
        f"\nF/G/K/M spectra in the final sample: {int((cat.loc[cool, 'final_sample'] == 1).sum())} of "
        f"{int(cool.sum())} ({100 * (cat.loc[cool, 'final_sample'] == 1).mean():.1f} %; issue 23: <= 3 %)"
    )
    a = cat[(cat["letter"] == "A") & (cat["snr_g"] >= 30)]
    d = (a["teff"] - a["class_teff"]).to_numpy()
    if len(a) == 0:
        print("no A stars with S/N(g) >= 30")
        return
    print(
        f"A stars with S/N(g) >= 30: {len(a)}; within 1,000 K of the class Teff "
        f"{100 * np.mean(np.abs(d) < 1000):.0f} % (issue 23: >= 85 %); median |dTeff| {np.nanmedian(np.abs(d)):.0f} K "
        f"(<= 500 K); median dTeff {np.nanmedian(d):+.0f} K; in the final sample {int((a['final_sample'] == 1).sum())}"
    )
    dwarfs = cat[(cat["letter"] == "A") & cat["lasp_subclass"].astype(str).str.contains(r"(?:V|IV)$")]
    lg = dwarfs["logg"].to_numpy()
    print(
        f"A dwarfs and subgiants (V, IV): {len(dwarfs)}; log g within 3.0-4.8: "
        f"{100 * np.mean((lg >= 3) & (lg <= 4.8)):.0f} % (issue 23: >= 90 %); median {np.nanmedian(lg):.2f}"
    )
    pairs = cat[cat.duplicated("star_id", keep=False)].sort_values(["star_id", "uniqflag"])
    pulls = []
    for _, g in pairs.groupby("star_id"):
        t, e = g["teff"].to_numpy(), g["teff_err"].to_numpy()
        pulls.append((t[0] - t[1]) / np.hypot(e[0], e[1]))
    pulls = np.array(pulls)
    print(
        f"repeat visits: {len(pulls)} stars with two or more spectra; Teff pulls (calibrated teff_err) robust sigma "
        f"{robust_sigma(pulls):.2f}" + (f", values {np.round(pulls, 2).tolist()}" if 0 < len(pulls) <= 10 else "")
    )


def pm13_colour_sequence(path: Path, colour: str = "g-r") -> tuple[np.ndarray, np.ndarray]:
    """The dwarf sequence's ``colour`` and Teff (K) from E. Mamajek's table, A0V–K9V, sorted by colour."""
    lines = path.read_text().splitlines()
    header = next(line for line in lines if line.startswith("#SpT")).lstrip("#").split()
    col = header.index(colour)
    pairs = []
    for line in lines:
        parts = line.split()
        if re.match(r"^[AFGK]\d(?:\.\d)?V$", parts[0] if parts else "") and len(parts) > col:
            try:
                pairs.append((float(parts[col]), float(parts[1])))
            except ValueError:  # '...' = missing
                continue
    c, t = np.array(sorted(pairs)).T
    return c, t


def header_colour(path: Path, first: str = "g", second: str = "r") -> float:
    """``first − second`` from a LAMOST header's input-catalog magnitudes (MAGTYPE names MAG1…MAG7); NaN when
    either is absent or 99 (LAMOST's missing value)."""
    h = read_lamost(path).header
    kinds = str(h.get("MAGTYPE", "")).strip()
    mags = {k: float(h.get(f"MAG{i + 1}", 99.0)) for i, k in enumerate(kinds)}
    a, b = mags.get(first, 99.0), mags.get(second, 99.0)
    return a - b if max(a, b) < 90.0 else np.nan


def photometric_teff_check(folder: Path, cat: pd.DataFrame, pm13: Path, min_snr: float = 30.0) -> None:
    """An independent Teff scale for the A stars: the input catalog's g − r (LAMOST headers) against Pecaut &
    Mamajek's dwarf sequence, dereddened by one E(g − r) for the plate.

    E(g − r) is the median over the F stars of observed g − r minus the sequence's g − r at their LAMOST class
    (their class is the only input; the fit is not used). At b ≈ 9° the dust lies within ~1 kpc, and the F and A
    stars of these sets (g ≈ 15–16.5) are both beyond it, so one reddening for the plate is a fair first step;
    ±0.05 in E(g − r) moves an A4 star's photometric Teff by about ∓200 K (printed)."""
    colours, teffs = pm13_colour_sequence(pm13)
    gr = np.array([header_colour(folder / str(name)) for name in cat["fitsname"]])
    pm_gr = np.interp(cat["class_teff"], teffs[::-1], colours[::-1], left=np.nan, right=np.nan)
    f = (cat["letter"] == "F").to_numpy() & np.isfinite(gr) & np.isfinite(pm_gr)
    if f.sum() < 5:
        print("photometric Teff: fewer than 5 F stars with g and r in their headers; not measured")
        return
    ebv = float(np.median(gr[f] - pm_gr[f]))
    a = (cat["letter"] == "A").to_numpy() & (cat["snr_g"] >= min_snr).to_numpy() & np.isfinite(gr)
    print(
        f"\nphotometric Teff (header g - r, Pecaut & Mamajek dwarf sequence), E(g - r) = {ebv:.3f} from {int(f.sum())} "
        f"F stars' classes; A stars with S/N(g) >= {min_snr:g} and g, r: {int(a.sum())}"
    )
    for shift in (0.0, -0.05, 0.05):
        phot = np.interp(gr[a] - (ebv + shift), colours, teffs, left=np.nan, right=np.nan)
        fit_d = cat["teff"].to_numpy()[a] - phot
        cls_d = cat["class_teff"].to_numpy()[a] - phot
        print(
            f"  E(g - r) {ebv + shift:.3f}: fit - photometric median {np.nanmedian(fit_d):+.0f} K, median |.| "
            f"{np.nanmedian(np.abs(fit_d)):.0f} K; class - photometric median {np.nanmedian(cls_d):+.0f} K, "
            f"median |.| {np.nanmedian(np.abs(cls_d)):.0f} K"
        )
    for letter in "FGK":
        s = (cat["letter"] == letter).to_numpy() & np.isfinite(gr)
        if s.sum():
            phot = np.interp(gr[s] - ebv, colours, teffs, left=np.nan, right=np.nan)
            print(
                f"  {letter} stars ({int(s.sum())}): fit - photometric median "
                f"{np.nanmedian(cat['teff'].to_numpy()[s] - phot):+.0f} K; class - photometric median "
                f"{np.nanmedian(cat['class_teff'].to_numpy()[s] - phot):+.0f} K"
            )


def cannon_teff_scale(work: Path, cat: pd.DataFrame, cool_model: Path, hot_model: Path, min_snr: float = 30.0) -> None:
    """Where thedoppler's two Cannon models themselves put the A stars, without the emulator or the fit: per
    spectrum, the model spectrum (:func:`cannon_model_spectra`, the physical grid's procedure) of lowest χ² over
    a brute-force grid — T_eff in 250 K steps, log g 3.0–4.75, [Fe/H] −1…+0.5 in 0.25 dex, v sin i 0–250 km s⁻¹
    in 50 — over the fit's pixels (§5.3 windows, bad pixels out). Two pairings, each keeping the lower χ²: the
    raw models joined at their shared 8,000 K edge (cool-star model 6,500–8,250 K, hot-dwarf model
    8,000–10,500 K), and what the ``physical`` set emulates (its cool grid, :func:`joined_model_spectra`: the
    bridge between the models' 7,500 and 9,000 K nodes, 6,500–9,000 K; the hot-dwarf model). A median offset
    here is the models' own T_eff scale against LAMOST's classes."""
    a = cat[(cat["letter"] == "A") & (cat["snr_g"] >= min_snr)]
    if len(a) == 0:
        return
    cube = open_cube(work / "cube.zarr")
    row = {str(name): i for i, name in enumerate(cube["fitsname"].values)}
    idx = np.array([row[str(name)] for name in a["fitsname"]])
    wave = cube["wave"].values
    flux, ivar = cube["norm_flux"].values[idx].astype(np.float64), cube["norm_ivar"].values[idx].astype(np.float64)
    bad = (cube["pixmask"].values[idx] != 0) | window_mask(wave, FIT_WINDOWS)[None, :] | ~np.isfinite(flux)
    weight = np.where(bad | ~(ivar > 0), 0.0, ivar)
    flux = np.where(weight > 0, flux, 0.0)
    grid = [
        (g, v, f)
        for g in np.arange(3.0, 4.76, 0.25)
        for v in np.arange(0, 251, 50.0)
        for f in np.arange(-1, 0.51, 0.25)
    ]
    cool, hot = read_cannon_model(cool_model), read_cannon_model(hot_model)
    best = {}
    for name, spectra_at, teffs in (
        ("cool", lambda lab: cannon_model_spectra(cool, lab), np.arange(6500, 8251, 250)),
        ("hot", lambda lab: cannon_model_spectra(hot, lab), np.arange(8000, 10501, 250)),
        ("bridge", lambda lab: joined_model_spectra(cool, hot, lab), np.arange(6500, 9001, 250)),
    ):
        chi2 = np.full((len(idx), teffs.size), np.inf)
        for j, t in enumerate(teffs):
            spectra = spectra_at(np.array([(t, *x) for x in grid])).astype(np.float64)
            chi2[:, j] = (((flux[:, None, :] - spectra[None]) ** 2) * weight[:, None, :]).sum(-1).min(1)
        best[name] = (teffs[np.argmin(chi2, 1)], chi2.min(1))
    print(f"\nthedoppler's Cannon models by brute force (no emulator or fit), A stars, S/N(g) >= {min_snr:g}: {len(a)}")
    chosen = {}
    for pairing, first in (("joined at 8,000 K", "cool"), ("bridged 7,500-9,000 K (as emulated)", "bridge")):
        use_hot = best["hot"][1] < best[first][1]
        chosen[first] = np.where(use_hot, best["hot"][0], best[first][0])
        d = chosen[first] - a["class_teff"].to_numpy()
        print(
            f"  {pairing}: hot-dwarf model the better fit for {int(use_hot.sum())}; median dTeff {np.median(d):+.0f} "
            f"K, median |dTeff| {np.median(np.abs(d)):.0f} K"
        )
    print(f"  (the pipeline: median |dTeff| {np.median(np.abs(a['teff'] - a['class_teff'])):.0f} K)")
    for sub, t_joined, t_bridge, fit in zip(a["lasp_subclass"], chosen["cool"], chosen["bridge"], a["teff"]):
        print(f"  {sub}: joined at 8,000 K {t_joined:.0f} K, bridged {t_bridge:.0f} K; pipeline {fit:.0f} K")


def plot_candidates(out: Path, cat: pd.DataFrame) -> Path:
    """Fitted Teff (and the cool-star model's) against the LAMOST class, in or out of the final sample."""
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    has = cat["letter"] != ""
    x = np.array([LETTERS.index(c) for c in cat.loc[has, "letter"]], dtype=float)
    sub = cat.loc[has, "lasp_subclass"].astype(str).str.extract(r"[OBAFGKM](\d(?:\.\d)?)")[0].astype(float)
    x = x + 0.08 * np.nan_to_num(sub.to_numpy(), nan=5.0)
    final = cat.loc[has, "final_sample"].to_numpy() == 1
    teff = cat.loc[has, "teff"].to_numpy()
    ax.scatter(x[final], teff[final], s=14, c="tab:blue", label="final_sample = 1")
    ax.scatter(x[~final], teff[~final], s=14, c="tab:red", marker="x", label="final_sample = 0")
    ax.scatter(x, cat.loc[has, "teff_cool"], s=6, c="0.6", label="cool-star model's Teff")
    ax.axhline(7000.0, c="0.3", ls="--", lw=0.8)
    ax.set_xticks(range(len(LETTERS)), list(LETTERS))
    ax.set_yscale("log")
    ax.set_ylim(3000.0, 45000.0)
    ax.set_yticks([3500, 5000, 7000, 10000, 20000, 40000], ["3.5k", "5k", "7k", "10k", "20k", "40k"])
    ax.set_xlabel("LAMOST class (subtype to the right)")
    ax.set_ylabel("fitted Teff, K")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = out / "teff_vs_lamost_class.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------
# part 2: cross-model systematics
# ------------------------------------------------------------------------------------------------------


def synth_labels(phys_labels: np.ndarray) -> np.ndarray:
    """The 11 synthesizer labels of (n, 4) physical-grid labels, scaled-solar (module docstring)."""
    n = phys_labels.shape[0]
    col = {k: i for i, k in enumerate(LABEL_NAMES)}
    out = np.zeros((n, len(LABEL_NAMES)))
    teff, logg, vsini, fe_h = phys_labels.T
    out[:, col["teff"]], out[:, col["logg"]], out[:, col["vsini"]] = teff, logg, vsini
    out[:, col["vmic"]] = 2.0
    out[:, col["he_frac"]] = SOLAR_HE_FRAC
    for k in ("c_h", "n_h", "o_h", "si_h", "s_h", "fe_h"):
        out[:, col[k]] = fe_h
    return out


def noised(flux: np.ndarray, snr: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    sigma = 1.0 / snr
    return (flux + sigma * rng.standard_normal(flux.shape)).astype(np.float32), np.full(flux.shape, snr**2, np.float32)


def offsets_table(truth: np.ndarray, res: dict, em: Emulator) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(label, Teff range) → (median offset, robust scatter, n) of fit − truth; Teff as a fraction."""
    out = {}
    ok = np.isfinite(res["labels"]).any(axis=1)
    for lo, hi in ((8000.0, 40000.0), *TEFF_BINS):
        sel = ok & (truth[:, 0] >= lo) & (truth[:, 0] < hi)
        for j, name in enumerate(("teff", "logg", "vsini", "fe_h")):
            fit = label(res, em, name)[sel]
            d = fit - truth[sel, j]
            if name == "teff":
                d = d / truth[sel, j]
            med = float(np.median(d)) if d.size else np.nan
            sig = float(1.4826 * np.median(np.abs(d - med))) if d.size else np.nan
            out[(name, f"{lo / 1000:.0f}-{hi / 1000:.0f}k")] = (med, sig, int(sel.sum()))
    return out


def print_offsets(title: str, table: dict) -> None:
    print(f"\n{title}")
    ranges = sorted({r for _, r in table}, key=lambda r: (r != "8-40k", float(r.split("-")[0])))
    print("| label | " + " | ".join(f"{r} (n={table[('teff', r)][2]})" for r in ranges) + " |")
    print("|---|" + "---|" * len(ranges))
    for name in ("teff", "logg", "fe_h", "vsini"):
        unit = "(fraction)" if name == "teff" else ""
        cells = []
        for r in ranges:
            med, sig, _ = table[(name, r)]
            cells.append(f"{med:+.3f} ± {sig:.3f}" if name != "vsini" else f"{med:+.1f} ± {sig:.1f}")
        print(f"| {name} {unit} | " + " | ".join(cells) + " |")


def cross_model(args: argparse.Namespace, ems: dict[str, Emulator]) -> None:
    rng = np.random.default_rng(args.seed)
    model = read_cannon_model(args.cannon_model)
    truth = sample_cannon_labels(model, args.n_cross, rng)
    truth[:, 2] = np.minimum(truth[:, 2], 300.0)  # both grids cover vsini to 300 km/s with margin
    wave = wavelength_grid()
    t = time.perf_counter()
    synth_flux = synthesize(synth_labels(truth), kind="flux")
    synth_norm = normalize_continuum(synth_flux, np.ones_like(synth_flux))[0]
    cannon_norm = cannon_model_spectra(model, truth)
    took = time.perf_counter() - t
    print(f"\ncross-model: {args.n_cross} label sets, S/N {args.cross_snr:g}, spectra made in {took:.0f} s")
    cases = (
        ("synthesizer spectra fitted with the physical emulator", synth_norm, "physical"),
        ("Cannon-model spectra fitted with the synthesizer's emulator", cannon_norm, "synthesizer"),
        ("reference: Cannon-model spectra fitted with the physical emulator", cannon_norm, "physical"),
        ("reference: synthesizer spectra fitted with the synthesizer's emulator", synth_norm, "synthesizer"),
    )
    for title, spectra, name in cases:
        flux, ivar = noised(spectra, args.cross_snr, rng)
        res = fit_labels_set(ems[name], flux, ivar, wave, device="cpu")
        print_offsets(
            f"{title}: median(fit - truth) ± robust sigma (Teff as a fraction of the truth; median chi2_red "
            f"{np.nanmedian(res['chi2_red']):.2f})",
            offsets_table(truth, res, ems[name]),
        )


# ------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spectra", nargs="+", default=[str(SHARED / "lamost_hot")], help="folders of LAMOST files")
    ap.add_argument("--extra", nargs="*", help="more folders: their O/B/A stars with S/N >= --min-snr are added")
    ap.add_argument("--min-snr", type=float, default=20.0)
    ap.add_argument("--pm13", type=Path, default=SHARED / "tables" / "EEM_dwarf_UBVIJHK_colors_Teff.txt")
    ap.add_argument("--physical-emulator", type=Path, help="default: the shipped one")
    ap.add_argument("--synth-emulator", type=Path, help="default: the shipped one")
    ap.add_argument("--cannon-model", type=Path, help="thedoppler's hot-dwarf Cannon model .pkl (part 2)")
    ap.add_argument(
        "--cool-cannon-model",
        type=Path,
        help="thedoppler's cool-star Cannon model .pkl: with --cannon-model and --candidates, where the two models "
        "themselves put the A stars (brute force, no emulator)",
    )
    ap.add_argument("--n-cross", type=int, default=300)
    ap.add_argument("--cross-snr", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "real")
    ap.add_argument(
        "--candidates",
        type=Path,
        nargs="*",
        help="part 0 only: folders of real LAMOST files of any class (e.g. ../shared/data/lamost_classes) run "
        "through `survey-scale run`: final-sample rules by class, A stars against their class, repeat visits",
    )
    ap.add_argument("--emulator", default="physical", help="part 0: emulator.path of the run")
    ap.add_argument("--workers", type=int, default=2, help="part 0: Dask workers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.candidates:
        table = pm13_teff_by_type(args.pm13)
        for folder in args.candidates:
            cat = run_candidates(folder, args.out, table, args.emulator, args.workers)
            candidate_figures(cat)
            photometric_teff_check(folder, cat, args.pm13)
            if args.cool_cannon_model and args.cannon_model:
                cannon_teff_scale(
                    args.out / f"candidates_{folder.name}", cat, args.cool_cannon_model, args.cannon_model
                )
            print(f"figure: {plot_candidates(args.out, cat)}")
        return
    ems = {
        "physical": load(args.physical_emulator or default_emulator_path("physical")),
        "synthesizer": load(args.synth_emulator or default_emulator_path("synthesizer")),
    }
    for name, em in ems.items():
        m = em.meta
        print(
            f"{name} emulator: {em!r}; validation sigma {100 * m.get('valid_sigma', np.nan):.3f} % "
            f"({100 * m.get('valid_sigma_deep', np.nan):.3f} % where flux < 0.95)"
        )

    files = select_files(args)
    table = pm13_teff_by_type(args.pm13)
    data = normalized_cube(files, args.out / "work")
    t = time.perf_counter()
    fits = fit_both(ems, data)
    print(f"{len(files)} spectra fitted by both emulators in {time.perf_counter() - t:.1f} s")
    by_name = {f.name: f for f in files}
    header = []
    for i, name in enumerate(data["fitsname"]):
        h = read_lamost(by_name[name]).header
        sub = str(h.get("SUBCLASS", ""))
        header.append(
            {"file": name, "class": sub, "class_teff": class_teff(sub, table), "snr": float(data["snr_g"][i])}
        )
    cols = " | ".join(f"{e} {k}" for e in ems for k in (*SHOWN, "chi2_red"))
    print(f"\n| spectrum | class | class Teff | S/N_g | {cols} |")
    print("|---|---|---|---|" + "---|" * (len(ems) * (len(SHOWN) + 1)))
    for i, h in enumerate(header):
        cells = []
        for e, em in ems.items():
            r = fits[e]
            cells += [
                f"{label(r, em, 'teff')[i]:.0f}",
                f"{label(r, em, 'logg')[i]:.2f}",
                f"{label(r, em, 'fe_h')[i]:.2f}",
                f"{label(r, em, 'vsini')[i]:.0f}",
                f"{r['chi2_red'][i]:.2f}",
            ]
        print(f"| {h['file']} | {h['class']} | {h['class_teff']:.0f} | {h['snr']:.1f} | " + " | ".join(cells) + " |")
    t_class = np.array([h["class_teff"] for h in header])
    snr = np.array([h["snr"] for h in header])
    subsets = {
        "all": np.ones(len(header), bool),
        "class Teff >= 8,000 K (inside the physical model), S/N >= 40": (t_class >= 8000.0) & (snr >= 40.0),
    }
    for title, sel in subsets.items():
        print(f"\n{title}: {int(sel.sum())} spectra")
        for e, em in ems.items():
            d = (label(fits[e], em, "teff") - t_class)[sel]
            lg = label(fits[e], em, "logg")[sel]
            chi2 = fits[e]["chi2_red"][sel]
            g_max = em.x_max[em.label_names.index("logg")]
            above = int(np.sum(lg > g_max))
            print(
                f"  {e}: Teff - class Teff median {np.nanmedian(d):+.0f} K, robust sigma "
                f"{1.4826 * np.nanmedian(np.abs(d - np.nanmedian(d))):.0f} K; chi2_red median {np.nanmedian(chi2):.2f} "
                f"(range {np.nanmin(chi2):.2f}-{np.nanmax(chi2):.2f}); log g median {np.nanmedian(lg):.2f} "
                f"(range {np.nanmin(lg):.2f}-{np.nanmax(lg):.2f}), above the grid (> {g_max:.2f}) {above}"
            )
    for p in (*plot_fits(args.out, data, ems, fits, header), plot_teff(args.out, header, ems, fits)):
        print(f"figure: {p}")
    if args.cannon_model is not None:
        cross_model(args, ems)


if __name__ == "__main__":
    main()
