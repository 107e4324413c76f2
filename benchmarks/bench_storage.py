"""Cube bytes per spectrum with and without the fit's ``model_flux`` (issue 25: storage by choice).

A mock release of ``--stars`` stars (with its contaminants, ~2.2 spectra per star) is run through
``survey-scale run`` twice, with ``cube.keep_model_flux: true`` (the default) and ``false``; then, per cube, the
bytes on disk of each spectra variable (``spec`` × ``wave``), of the per-spectrum variables and of the
bookkeeping folder ``_survey_scale/`` (models, done markers, chunk results: it grows far slower than the
spectra), per spectrum. Also printed: what the dropped cube's evidence and catalog columns lose — the
variables that differ between the two cubes and by how much (``bad_spectra`` rebuilds the model spectra from
the labels where they are not kept).

    OMP_NUM_THREADS=1 python benchmarks/bench_storage.py --stars 500 --workdir /tmp/bench_storage
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml

from survey_scale.mock import make_release
from survey_scale.store.cube import open_cube

COMPARED = ("labels", "fit_local_z", "wave_shift_z", "bad_spectrum_flag", "em_flag", "mks", "final_sample")


def folder_bytes(path: Path) -> int:
    return sum(os.path.getsize(Path(root) / f) for root, _, files in os.walk(path) for f in files)


def run(mock: Path, work: Path, keep: bool) -> Path:
    """``survey-scale run`` of the mock with ``cube.keep_model_flux: keep``; the cube's path."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = {
        "cube": {"path": str(work / "cube.zarr"), "keep_model_flux": keep},
        "ingest": {
            "input": str(mock / "spectra"),
            "catalog": str(mock / "catalog.csv"),
            "crossmatch": str(mock / "crossmatch.parquet"),
        },
        "export": {"out": str(work / "catalogs"), "formats": ["parquet"]},
        "runner": {"progress": False},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    with open(work / "run.log", "w") as log:
        subprocess.run(
            ["survey-scale", "run", "--config", str(work / "config.yaml")], check=True, stdout=log, stderr=log
        )
    return work / "cube.zarr"


def sizes(cube: Path) -> dict[str, float]:
    """Bytes per spectrum: each spectra variable, the per-spectrum variables together, the bookkeeping."""
    ds = open_cube(cube)
    n = ds.sizes["spec"]
    out = {}
    per_spectrum = 0
    for name in sorted(p.name for p in cube.iterdir() if p.is_dir() and not p.name.startswith("_")):
        size = folder_bytes(cube / name)
        if name in ds and ds[name].dims == ("spec", "wave"):
            out[name] = size / n
        else:
            per_spectrum += size
    out["per-spectrum variables"] = per_spectrum / n
    out["spectra and variables"] = sum(out.values())
    out["_survey_scale bookkeeping"] = folder_bytes(cube / "_survey_scale") / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", type=int, default=500)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("bench_storage"))
    args = ap.parse_args()
    mock = args.workdir / "mock"
    if not (mock / "catalog.csv").exists():
        make_release(mock, args.stars, args.seed, release="MOCKS")
    cubes = {keep: run(mock, args.workdir / f"keep_{str(keep).lower()}", keep) for keep in (True, False)}
    table = {keep: sizes(cube) for keep, cube in cubes.items()}
    n = open_cube(cubes[True]).sizes["spec"]
    print(f"{n:,} spectra; kB per spectrum on disk (Blosc-zstd)\n")
    print(f"{'':<28}{'keep_model_flux: true':>24}{'false':>10}")
    for name in table[True]:
        drop = table[False].get(name)
        print(f"{name:<28}{table[True][name] / 1e3:>24.1f}{'-' if drop is None else format(drop / 1e3, '.1f'):>10}")
    kept, dropped = table[True]["spectra and variables"], table[False]["spectra and variables"]
    less = 100 * (1 - dropped / kept)
    print(f"\nwithout model_flux: {dropped / 1e3:.1f} of {kept / 1e3:.1f} kB per spectrum ({less:.0f} % less)")
    a, b = open_cube(cubes[True]), open_cube(cubes[False])
    for name in COMPARED:
        x, y = a[name].values.astype(np.float64), b[name].values.astype(np.float64)
        same = np.isclose(x, y, rtol=0, atol=0, equal_nan=True)
        if same.all():
            print(f"{name}: identical")
        else:
            print(f"{name}: {int((~same).any(axis=tuple(range(1, same.ndim))).sum())} spectra differ, by at most "
                  f"{np.nanmax(np.abs(x - y)):.2g}")  # fmt: skip


if __name__ == "__main__":
    main()
