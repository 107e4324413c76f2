"""Build the PCA basis the package ships for cubes with too few PCA training spectra (SPEC §4; issue 16).

``survey-scale run`` on a handful of real spectra has fewer than 2K spectra with S/N > ``pca.min_snr``; rather
than stop, the ``pca_model`` step then uses the previous release's kept model or this basis
(:func:`survey_scale.stages.pca.fallback_pca_model`), with a warning. It is the PCA of noised spectra of the
physics-based model grid (:mod:`survey_scale.synth.cannon_grid`): ``--n-train`` spectra with Gaussian noise of
a per-spectrum S/N drawn log-uniformly in 40–200, K = ``--n-components`` components (brought to the configured
K when used), float32 arrays.

The emission and erroneous-spectrum thresholds are derived as the pipeline derives them
(``configs/default.yaml``'s emission settings) — on real spectra when ``--real`` is given: real stars differ from
any model by more than noise (on LAMOST A stars the model spectra leave an Hα excess of ~0.04 and local misfits
of ~9σ that thresholds from the noised model spectra would flag in most stars). The shipped basis uses the
O/B/A stars with S/N(g) ≥ 20 among the LAMOST DR1 files of github.com/grd349/LearningLAMOST (MIT licence;
``Data/DR1``, ``SampleFits``, ...), ingested and normalized by the pipeline.

Example::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/make_fallback_pca.py --grid /tmp/physical_grid.npz \
        --real /tmp/LearningLAMOST_fits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from survey_scale.config import Config
from survey_scale.core.files import file_sha256
from survey_scale.core.masks import clean_window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.io import read_lamost
from survey_scale.science.emission import derive_thresholds
from survey_scale.science.model_grid import load_model_grid
from survey_scale.science.pca import diagnostics_block, fit_pca_arrays

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "survey_scale/science/data/pca_fallback.npz"


def hot_stars(folder: Path, min_snr: float, work: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The normalized spectra (pipeline: ingest → normalize) of the O/B/A stars of ``folder`` with S/N ≥ ``min_snr``."""
    from eval_real import normalized_cube  # benchmarks/eval_real.py, beside this script

    files = []
    for p in sorted(folder.iterdir()):
        if ".fits" in p.name:
            h = read_lamost(p).header
            if h.get("CLASS") == "STAR" and str(h.get("SUBCLASS", ""))[:1] in "OBA":
                files.append(p)
    cube = normalized_cube(files, work)
    keep = cube["snr_g"] >= min_snr
    return {k: cube[k][keep] for k in ("norm_flux", "norm_ivar")}, sorted(cube["fitsname"][keep].tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=Path, required=True, help="the physical model grid (make_physical_emulator.py)")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-components", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--real", type=Path, help="folder of real LAMOST files: derive the thresholds on their hot stars")
    ap.add_argument("--real-min-snr", type=float, default=20.0)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/fallback_pca"))
    args = ap.parse_args()

    grid = load_model_grid(args.grid)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(grid.n_spectra, min(args.n_train, grid.n_spectra), replace=False))
    flux = grid.flux[rows].astype(np.float64)
    snr = 10.0 ** rng.uniform(np.log10(40.0), np.log10(200.0), rows.size)
    sigma = 1.0 / snr[:, None] * np.ones_like(flux)
    noisy = (flux + sigma * rng.standard_normal(flux.shape)).astype(np.float32)
    ivar = (1.0 / sigma**2).astype(np.float32)
    meta = {
        "fallback_basis": "PCA of noised spectra of the physics-based model grid (survey_scale.synth.cannon_grid)",
        "model_grid_sha256": file_sha256(args.grid),
        "model_grid_meta": {k: grid.meta.get(k) for k in ("model_source", "model_sha256", "seed", "n_spectra")},
        "n_train_rows_seed": args.seed,
        "noise": "Gaussian, per-spectrum S/N log-uniform in 40-200",
        "built_by": "benchmarks/make_fallback_pca.py",
    }
    model = fit_pca_arrays(noisy, ivar, clean_window_mask(wavelength_grid()), args.n_components, meta)
    em_cfg = Config().emission
    if args.real is None:
        stats = diagnostics_block({"norm_flux": noisy, "norm_ivar": ivar}, {"model": model})
        where = f"the {rows.size} noised model spectra of the basis"
    else:
        data, names = hot_stars(args.real, args.real_min_snr, args.work)
        stats = diagnostics_block(data, {"model": model})
        where = (
            f"{len(names)} real LAMOST O/B/A spectra with S/N(g) >= {args.real_min_snr:g} "
            f"(folder {args.real.name}: {', '.join(names)})"
        )
        model.meta["thresholds_source"] = "LAMOST DR1 files of github.com/grd349/LearningLAMOST (MIT licence)"
    model.meta["thresholds"] = derive_thresholds(stats, em_cfg.bad_n_sigma, em_cfg.bad_local_n_sigma)
    model.meta["threshold_rule"] = (
        f"derived as the pipeline does (bad_n_sigma {em_cfg.bad_n_sigma}, bad_local_n_sigma "
        f"{em_cfg.bad_local_n_sigma}) on {where}"
    )
    small = model.as_float32()
    small.save(args.out)
    print(
        f"fallback PCA: K = {model.n_components}, {rows.size} spectra, explained {model.meta['explained_clean']:.6f} "
        f"(clean windows); thresholds {model.meta['thresholds']}; pca_chi2 median "
        f"{np.nanmedian(stats['pca_chi2']):.3f} -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)"
    )


if __name__ == "__main__":
    main()
