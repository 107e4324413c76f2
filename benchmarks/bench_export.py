"""Survey-wide reductions and the catalog export at survey scale: time and peak memory (SPEC §6, §13).

Builds a cube of ``--n-rows`` synthetic fitted spectra (per-spectrum results only, no spectra: labels,
errors, χ², flags, identifiers, cross-match columns; stars with 1–3 visits on different nights) on a
threaded Dask cluster in this process, then measures, with tracemalloc (numpy's allocations included):

- each survey-wide step — uniqflag, chi2ratio, repeats (pairs, precision, calibration) — and
- the export of the labels catalog as FITS + Parquet, streamed ``export.block_spectra`` rows at a time,
  against a baseline run in the same process: the naive export that loads every catalog column of the cube
  into memory at once and writes FITS and Parquet from it (``astropy.table.Table.write``, ``pandas``);
- the export with HATS too (hats-import on the same Dask client).

Times are measured untraced; the peak memory of the exports in a second, traced run (tracemalloc slows
hats-import's pandas work many-fold, so HATS is timed only). Prints the ratios, the files' sizes, and checks
that lsdb opens the HATS catalog. Run on a quiet machine:

    python benchmarks/bench_export.py --n-rows 1200000
"""

from __future__ import annotations

import argparse
import shutil
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale.config import CubeConfig, load_config
from survey_scale.core.labels import LABEL_NAMES, P2_TABLE5_CORRELATIONS
from survey_scale.engine.catalog_writer import FORMATS
from survey_scale.engine.contracts import ChunkContext, Output, Stage, StageResult
from survey_scale.engine.runner import DaskEngine
from survey_scale.science.label_catalog import CUBE_INPUTS, labels_catalog_block
from survey_scale.stages import chi2ratio, export, repeats, uniqflag
from survey_scale.store.cube import create_cube, open_cube, open_group, resize_spec, write_column

HERE = Path(__file__).resolve().parent
SCALARS = ("chi2_red", "vsini_raw", *(f"corr_{a}_{b}" for a, b in P2_TABLE5_CORRELATIONS))


def synthetic_fit(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Fitted labels and errors whose scatter follows S/N; a few bad fits (deterministic per chunk)."""
    rng = np.random.default_rng(ctx.start)
    snr = inputs["snr_g"].astype(np.float64)
    n, n_labels = snr.size, len(LABEL_NAMES)
    err = np.outer(100.0 / snr, np.linspace(1.0, 2.0, n_labels))
    labels = 1.0 + 2.0 * err * rng.normal(size=(n, n_labels))
    labels[:, 0] += inputs["teff_true"]
    out = {
        "labels": labels.astype(np.float32),
        "label_err": err.astype(np.float32),
        "fit_flags": np.where(rng.random(n) < 0.01, 4, 0).astype(np.uint8),
        "fit_converged": np.ones(n, np.int8),
        "fit_n_iter": rng.integers(3, 30, n).astype(np.int32),
    }
    for name in SCALARS:
        out[name] = rng.normal(size=n).astype(np.float32)
    out["chi2_red"] = (1.0 + 0.3 * np.log10(snr) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return StageResult(out)


def build_cube(path: Path, n_rows: int, engine_client: Any) -> DaskEngine:
    create_cube(path, CubeConfig())
    rng = np.random.default_rng(0)
    n_stars = int(n_rows / 1.5)
    star = np.sort(rng.integers(0, n_stars, n_rows))
    teff_star = 10 ** rng.uniform(3.85, 4.5, n_stars)
    snr = (10 ** rng.uniform(0.7, 2.5, n_stars))[star] * 10 ** rng.normal(0, 0.03, n_rows)
    resize_spec(path, n_rows)
    root = open_group(path, mode="r+")
    columns = {
        "specid": np.array(
            [f"5{7000 + i % 900:04d}-PLAN{i // 4000:05d}-{i % 16 + 1:02d}-{i % 250:03d}" for i in range(n_rows)]
        ),
        "star_id": np.array([f"S{s:07d}+{s % 900000:06d}" for s in star]),
        "snr_g": snr.astype(np.float32),
        "lmjd": (57000 + rng.integers(0, 400, n_rows)).astype(np.int32),
        "teff_true": teff_star[star].astype(np.float32),
        "ra": rng.uniform(0, 360, n_stars)[star],
        "dec": np.degrees(np.arcsin(rng.uniform(-0.3, 1, n_stars)))[star],
        "rv": rng.normal(0, 20, n_rows).astype(np.float32),
        "rv_err": rng.uniform(2, 10, n_rows).astype(np.float32),
        "gaia_id": rng.integers(1, 2**60, n_stars)[star],
        "mjd": rng.uniform(57000, 57400, n_rows),
        "release": np.full(n_rows, "DR9"),
    }
    columns["fitsname"] = np.char.add(np.char.add("spec-", columns["specid"]), ".fits")
    for name in ("parallax", "parallax_error", "pmra", "pmra_error", "pmdec", "pmdec_error", "ruwe"):
        columns[name] = rng.normal(1, 0.1, n_rows).astype(np.float32)
    for band in ("G", "BP", "RP", "J", "H", "Ks"):
        columns[band] = rng.uniform(8, 16, n_rows).astype(np.float32)
    for name, values in columns.items():
        write_column(root, name, values, {})
    engine = DaskEngine(path, engine_client, progress=False)
    outputs = (
        Output("labels", "float32", ("spec", "label")),
        Output("label_err", "float32", ("spec", "label")),
        Output("fit_flags", "uint8"),
        Output("fit_converged", "int8"),
        Output("fit_n_iter", "int32"),
        *(Output(name, "float32") for name in SCALARS),
    )
    engine.run_stage(
        Stage(
            "fit",
            "synthetic",
            synthetic_fit,
            inputs=("snr_g", "teff_true"),
            outputs=outputs,
            dims={"label": LABEL_NAMES},
        )
    )
    return engine


def measure(label: str, func, memory: str) -> tuple[Any, float, float]:
    """Seconds of ``func()`` and its peak traced memory: ``memory`` "again" traces a second call (the time is
    untraced), "once" traces the only call (the time is traced too: reductions cache their results), "no"."""
    if memory == "once":
        tracemalloc.start()
    t0 = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - t0
    peak = float("nan")
    if memory == "again":
        tracemalloc.start()
        func()
    if memory != "no":
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    traced = " (traced)" if memory == "once" else ""
    print(f"{label:<58} {seconds:8.1f} s{traced:<9}  peak {peak:8.1f} MiB")
    return result, seconds, peak


def exporter(config: Any, engine: DaskEngine, out: Path, formats: list[str]):
    """An export of ``formats`` into a fresh folder each call (so that a second call is not skipped)."""

    def run() -> Any:
        shutil.rmtree(out, ignore_errors=True)
        return export.run(
            config.model_copy(update={"export": config.export.model_copy(update={"out": out, "formats": formats})}),
            engine,
        )

    return run


def naive_export(cube: Path, out: Path) -> None:
    """The baseline: every catalog column of the cube in memory at once, then FITS and Parquet."""
    import pandas as pd
    from astropy.table import Table

    ds = open_cube(cube)
    data = {name: ds[name].values for name in CUBE_INPUTS if name in ds}
    columns = labels_catalog_block(data, {"label_names": [str(n) for n in ds.label.values]})
    frame = pd.DataFrame({k: (v.astype(str) if v.dtype == object else v) for k, v in columns.items()})
    frame.to_parquet(out / "naive.parquet")
    Table.from_pandas(frame).write(out / "naive.fits", overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-rows", type=int, default=1_200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "export")
    parser.add_argument("--block", type=int, default=131072, help="export.block_spectra")
    args = parser.parse_args()

    import torch
    from distributed import Client, LocalCluster

    torch.set_num_threads(1)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    cube = args.out / "cube.zarr"
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        with Client(cl) as client:
            t0 = time.perf_counter()
            engine = build_cube(cube, args.n_rows, client)
            print(f"synthetic cube of {args.n_rows:,} fitted spectra built in {time.perf_counter() - t0:.0f} s")
            config = load_config(
                None,
                {"cube.path": cube, "export.out": args.out / "catalogs", "export.block_spectra": args.block},
            )
            measure("uniqflag (reduce by star)", lambda: uniqflag.run(config, engine), "once")
            measure("chi2ratio (histogram reduction + stage)", lambda: chi2ratio.run(config, engine), "once")
            measure("repeats (pairs, precision, calibration + stage)", lambda: repeats.run(config, engine), "once")
            out = args.out / "catalogs"
            _, t_stream, m_stream = measure(
                f"export FITS + Parquet, streamed ({args.block:,} rows a block)",
                exporter(config, engine, out / "streamed", ["fits", "parquet"]),
                "again",
            )
            _, t_naive, m_naive = measure(
                "baseline: naive FITS + Parquet (all in memory)", lambda: naive_export(cube, args.out), "again"
            )
            paths, _, _ = measure(
                "export FITS + Parquet + HATS (hats-import on the client)", exporter(config, engine, out, FORMATS), "no"
            )
    print(f"streamed / naive (FITS + Parquet): time {t_stream / t_naive:.2f}, peak memory {m_stream / m_naive:.2f}")
    for fmt, path in paths.items():
        size = (
            sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        print(f"{fmt:<8} {path}  {size / 2**20:8.1f} MiB  ({size / args.n_rows:.0f} bytes/row)")
    import lsdb

    catalog = lsdb.open_catalog(paths["hats"])
    rows = catalog.hc_structure.catalog_info.total_rows
    print(f"lsdb.open_catalog: {rows:,} rows in {len(catalog.get_healpix_pixels())} HATS partitions")


if __name__ == "__main__":
    main()
