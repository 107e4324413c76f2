"""Normalization through the runner vs a per-spectrum numpy loop; PCA fit time and peak memory (SPEC §3–§4).

Builds a cube of noisy synthesizer spectra (written straight into the cube, no FITS: the ingest has its
own benchmark), then measures in the same run:

1. the §3 normalization through the runner (LocalCluster sized to the machine, cluster already running)
   in spectra/s, and a straightforward per-spectrum numpy loop of the same formula (the Gaussian weights
   precomputed once as a dense matrix, two matrix-vector products per spectrum) on a subset — goal ≥ 10×;
2. the §4 PCA fit (moments + Gram matrix tree reduction + eigen-decompositions) on 20,000 and on 80,000
   training spectra: wall time and the cluster's peak memory (distributed's MemorySampler) — the peak
   must not grow 4× with 4× the spectra.

    python benchmarks/bench_normalize.py                    # 80,000-spectrum cube (~4 GB on disk)
    python benchmarks/bench_normalize.py --n-spectra 20000 --pca-sizes 5000 20000
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import zarr
from distributed import Client, LocalCluster
from distributed.diagnostics import MemorySampler

from survey_scale.config import CubeConfig
from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.cluster import available_cores
from survey_scale.engine.runner import DaskEngine, run_stage
from survey_scale.science.normalize import CONTINUUM_LENGTH, continuum_mask
from survey_scale.stages.normalize import normalize_stage
from survey_scale.stages.pca import fit_pca
from survey_scale.store.cube import create_cube, resize_spec, write_column
from survey_scale.synth import synthesize

HERE = Path(__file__).resolve().parent


def build_cube(path: Path, n: int, n_unique: int, seed: int) -> None:
    """n noisy spectra (S/N 20–200) drawn from n_unique synthesizer flux spectra."""
    rng = np.random.default_rng(seed)
    lo = np.array([LABEL_RANGES[k][0] for k in LABEL_NAMES])
    hi = np.array([LABEL_RANGES[k][1] for k in LABEL_NAMES])
    labels = lo + (hi - lo) * rng.random((n_unique, len(LABEL_NAMES)))
    labels[:, 0] = 10 ** rng.uniform(np.log10(7500), np.log10(30000), n_unique)
    labels[:, 1] = rng.uniform(3.0, 4.5, n_unique)
    base = synthesize(labels, kind="flux")
    base /= np.median(base, axis=1, keepdims=True)
    create_cube(path, CubeConfig())
    resize_spec(path, n)
    root = zarr.open_group(str(path), mode="r+")
    shard = 8192
    for a in range(0, n, shard):
        b = min(a + shard, n)
        pick = rng.integers(0, n_unique, b - a)
        snr = 10 ** rng.uniform(np.log10(20), np.log10(200), b - a)
        sigma = base[pick] / snr[:, None]
        root["flux"][a:b] = (base[pick] + rng.normal(size=sigma.shape) * sigma).astype(np.float32)
        root["ivar"][a:b] = (1.0 / sigma**2).astype(np.float32)
        root["pixmask"][a:b] = 0
    write_column(root, "specid", np.array([f"B{i:07d}" for i in range(n)]), {})


def numpy_loop(flux: np.ndarray, ivar: np.ndarray) -> float:
    """Seconds for the per-spectrum loop of P2 Eq. 1–2 (dense weights precomputed once)."""
    wave = wavelength_grid()
    kernel = np.exp(-((wave[:, None] - wave[None, :]) ** 2) / CONTINUUM_LENGTH**2)
    masked = continuum_mask()
    t0 = time.perf_counter()
    for f, w in zip(flux, ivar):
        m = ((w > 0) & ~masked).astype(np.float64)
        continuum = (kernel @ (f * m)) / (kernel @ m)
        norm_flux, norm_ivar = f / continuum, w * continuum**2
    assert np.isfinite(norm_flux).any() and np.isfinite(norm_ivar).any()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-spectra", type=int, default=80_000)
    parser.add_argument("--pca-sizes", type=int, nargs="+", default=[20_000, 80_000])
    parser.add_argument("--n-loop", type=int, default=200, help="spectra timed in the numpy loop")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "normalize")
    args = parser.parse_args()

    cube = args.out / "cube.zarr"
    if cube.exists():
        shutil.rmtree(cube)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_cube(cube, args.n_spectra, n_unique=2000, seed=args.seed)
    print(f"cube of {args.n_spectra:,} spectra built in {time.perf_counter() - t0:.0f} s; {available_cores()} cores")

    root = zarr.open_group(str(cube))
    t_loop = numpy_loop(root["flux"][: args.n_loop].astype(np.float64), root["ivar"][: args.n_loop].astype(np.float64))
    rate_loop = args.n_loop / t_loop
    with (
        LocalCluster(n_workers=available_cores(), threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        summary = run_stage(cube, normalize_stage(), client, progress=False)
        t_runner = time.perf_counter() - t0
        rate_runner = args.n_spectra / t_runner
        print(f"normalize, per-spectrum numpy loop:   {rate_loop:9.1f} spectra/s  ({args.n_loop} spectra)")
        print(
            f"normalize, runner ({summary.n_chunks} chunks, read+write): {rate_runner:9.1f} spectra/s  "
            f"= {rate_runner / rate_loop:.0f}x the loop"
        )

        sampler = MemorySampler()
        rng = np.random.default_rng(args.seed)
        for size in args.pca_sizes:
            rows = np.sort(rng.choice(args.n_spectra, min(size, args.n_spectra), replace=False))
            client.run(lambda: __import__("gc").collect())
            baseline = sum(w["metrics"]["memory"] for w in client.scheduler_info()["workers"].values())
            t0 = time.perf_counter()
            with sampler.sample(f"pca-{size}", interval=0.2):
                model = fit_pca(DaskEngine(cube, client, progress=False), rows, 100, 2048, {"benchmark": True})
            elapsed = time.perf_counter() - t0
            peak = sampler.to_pandas()[f"pca-{size}"].max()
            print(
                f"PCA fit, {rows.size:6,} training spectra: {elapsed:6.1f} s, cluster memory peak "
                f"{peak / 2**20:7.0f} MiB ({(peak - baseline) / 2**20:+.0f} MiB over idle); "
                f"explained (clean) {model.meta['explained_clean']:.3f}"
            )


if __name__ == "__main__":
    main()
