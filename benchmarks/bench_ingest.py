"""Ingest throughput vs reading the same files with astropy (issue: spine; SPEC §2).

Builds N gzipped DR9-layout files (copies of the real ../shared/data/lamost files under new specids,
cached in benchmarks/out/), then measures in the same run:

- baseline: open each file with astropy and read its arrays (one process, no other work);
- full ingest: a fresh cube, ``run_pipeline_with_client(..., until="ingest")`` on a LocalCluster sized to the
  machine (inspect, plan, allocate, read + resample + write), timed with the cluster already running, and
  with its start-up.

Prints files/s of both, their ratio (goal: the full ingest reaches >= 80 % of the read-only rate) and the
cube's bytes per spectrum on disk.

    python benchmarks/bench_ingest.py --n-files 2000
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from distributed import Client, LocalCluster

from survey_scale.config import load_config
from survey_scale.engine.cluster import available_cores
from survey_scale.io.lamost import relabel_lamost_file
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.products.info import spectra_bytes, store_bytes
from survey_scale.store.cube import create_cube

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "data" / "lamost"
DR9_SOURCES = (
    "spec-55859-F5902_sp01-001.fits.gz",
    "spec-55859-F5902_sp01-002.fits.gz",
    "spec-55859-F5902_sp01-005.fits.gz",
    "spec-60591-LN042429N340750BM01_sp01-001.fits.gz",
)


def make_inputs(folder: Path, n: int) -> list[Path]:
    """N gzipped DR9-layout files with new specids (cached between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("spec-*.fits.gz"))
    if len(existing) == n:
        return existing
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return [
        relabel_lamost_file(
            REAL / DR9_SOURCES[i % len(DR9_SOURCES)],
            folder,
            obsid=900_000_000 + i,
            planid="BENCH",
            spid=1 + i // 250,
            fiberid=1 + i % 250,
        )
        for i in range(n)
    ]


def read_only(paths: list[Path]) -> float:
    """Seconds to open every file with astropy and read its five arrays."""
    t0 = time.perf_counter()
    for path in paths:
        with fits.open(path) as hdul:
            table = hdul["COADD"].data
            arrays = [np.array(table[c][0]) for c in ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")]
        assert arrays[0].size > 3000
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "ingest")
    args = parser.parse_args()

    paths = make_inputs(args.out / "inputs", args.n_files)
    cube = args.out / "cube.zarr"
    n_workers = args.workers or available_cores()
    print(
        f"{len(paths)} gz DR9-layout files, {sum(p.stat().st_size for p in paths) / 2**20:.1f} MiB; "
        f"{available_cores()} cores, {n_workers} Dask workers"
    )

    read_only(paths[:50])  # warm the page cache and astropy's imports
    t_read = read_only(paths)

    if cube.exists():
        shutil.rmtree(cube)
    config = load_config(
        None, {"cube.path": str(cube), "ingest.input": str(args.out / "inputs"), "cluster.local.n_workers": n_workers}
    )
    create_cube(cube, config.cube)
    t_start = time.perf_counter()
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        t_ready = time.perf_counter()
        (summary,) = run_pipeline_with_client(config, client, progress=False, until="ingest").ingest
        t_done = time.perf_counter()
    assert summary.n_new == len(paths), summary

    rate_read = len(paths) / t_read
    rate_ingest = len(paths) / (t_done - t_ready)
    rate_total = len(paths) / (t_done - t_start)
    print(f"read-only (astropy, 1 process):   {rate_read:8.1f} files/s")
    print(
        f"full ingest (cluster running):     {rate_ingest:8.1f} files/s  = {rate_ingest / rate_read:.0%} of read-only"
    )
    print(f"full ingest (with cluster start):  {rate_total:8.1f} files/s  = {rate_total / rate_read:.0%} of read-only")
    print(
        f"cube: {spectra_bytes(cube) / len(paths):,.0f} bytes/spectrum for flux+ivar+pixmask "
        f"(raw float32+float32+uint8: {3802 * 9:,}); whole store {store_bytes(cube) / len(paths):,.0f} bytes/spectrum"
    )


if __name__ == "__main__":
    main()
