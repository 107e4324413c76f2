"""The small mock release and processed cube that every tutorial notebook of the docs reads.

The notebooks are executed on every docs build, so they must run in seconds on a laptop: they share one small
release, processed once with survey_scale's own command line (``survey-scale mock``, ``survey-scale run``) into
``docs/_build/tutorial_data/`` and re-used by later builds (delete the folder to start over). The configuration
keys are those of the pipeline test (``tests/test_pipeline.py``): small shards so that a few hundred spectra span
several chunks, a smaller PCA, and MKs training sets loosened for a release with few 10-σ parallaxes.

The real-data tutorial runs the pipeline on the 176 LAMOST DR1 spectra of ``../shared/data/lamost_classes``
(beside the repository) when that folder is there: :func:`real_lamost_run`.

A notebook that changes a cube (the incremental-release tutorial) works on a copy: :func:`copy_of_cube`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parent
TUTORIAL_DATA = DOCS / "_build" / "tutorial_data"
"""Where the shared release, cube and catalogs live (ignored by git, kept between builds)."""

N_STARS = 150
"""Stars of the first mock release: ~370 spectra with the cool contaminants and repeat visits, enough for every
step (the MKs networks train on a few dozen stars) and a run of about a minute and a half on 2 cores."""
SEED = 21
RELEASE = "MOCK1"

SMALL_PIPELINE = {
    "cube": {"shard_spectra": 128, "inner_chunk_spectra": 32},
    "cluster": {"local": {"n_workers": 2}},
    "ingest": {"files_per_task": 64},
    "normalize": {"block_spectra": 64},
    "pca": {"n_components": 15, "min_snr": 30.0, "block_spectra": 64},
    "fit": {"block_spectra": 64, "max_iter": 30},
    "mks": {
        "min_parallax_snr": 3.0,
        "min_snr": 10.0,
        "max_epochs": 30,
        "mcmc_steps": 300,
        "mcmc_burn": 100,
        "min_error_stars": 10,
    },
    "runner": {"progress": False},
}
"""Configuration keys of a quick pipeline on a small release (the rest are the defaults)."""

LAMOST_CLASSES = DOCS.parent.parent / "shared" / "data" / "lamost_classes"
"""176 real LAMOST DR1 spectra of one plate with LAMOST's classes (``classes.csv``); not part of the repository."""

_COMPLETE = ".complete"
"""Written last: a folder without it is from an interrupted build and is made again."""


def survey_scale_command(*args: str | Path) -> list[str]:
    """The ``survey-scale`` command line run with this interpreter, so that it imports the same package as the
    notebook (a checkout on ``PYTHONPATH`` as well as an installed one)."""
    return [sys.executable, "-m", "survey_scale.cli", *map(str, args)]


def run_command(*args: str | Path) -> str:
    """Run ``survey-scale ARGS``; return its console output; raise with that output if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(survey_scale_command(*args), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"survey-scale {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def write_config(path: Path, cube: Path, release: Path, catalogs: Path) -> Path:
    """A configuration file for ``release`` into ``cube``, with :data:`SMALL_PIPELINE`'s keys."""
    settings = {
        **SMALL_PIPELINE,
        "cube": {**SMALL_PIPELINE["cube"], "path": str(cube)},
        "ingest": {
            **SMALL_PIPELINE["ingest"],
            "input": str(release / "spectra"),
            "catalog": str(release / "catalog.csv"),
            "crossmatch": str(release / "crossmatch.parquet"),
        },
        "export": {"out": str(catalogs)},
    }
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def tutorial_data() -> Path:
    """The shared folder, made if absent: ``mock/`` (the release), ``config.yaml``, ``cube.zarr`` (every step
    run) and ``catalogs/`` (FITS, Parquet, HATS)."""
    if (TUTORIAL_DATA / _COMPLETE).is_file():
        return TUTORIAL_DATA
    shutil.rmtree(TUTORIAL_DATA, ignore_errors=True)
    TUTORIAL_DATA.mkdir(parents=True)
    release = TUTORIAL_DATA / "mock"
    run_command("mock", release, "--n-stars", N_STARS, "--seed", SEED, "--release", RELEASE)
    config = write_config(
        TUTORIAL_DATA / "config.yaml", TUTORIAL_DATA / "cube.zarr", release, TUTORIAL_DATA / "catalogs"
    )
    run_command("run", "--config", config, "--no-progress")
    (TUTORIAL_DATA / _COMPLETE).write_text("made by docs/tutorial_data.py\n")
    return TUTORIAL_DATA


def copy_of_cube(workdir: str | Path) -> Path:
    """A fresh copy of the shared cube in ``workdir`` (replaced if there), for a notebook that changes it."""
    source = tutorial_data() / "cube.zarr"
    target = Path(workdir) / "cube.zarr"
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target


def real_lamost_run(folder: Path = LAMOST_CLASSES) -> Path | None:
    """``survey-scale run`` on the LAMOST files of ``folder`` (every step; the ``physical`` emulator is chosen
    from the input), once, into ``docs/_build/tutorial_data/real/``; None when ``folder`` is absent."""
    if not folder.is_dir():
        return None
    work = TUTORIAL_DATA / "real"
    if (work / _COMPLETE).is_file():
        return work
    shutil.rmtree(work, ignore_errors=True)
    (work / "input").mkdir(parents=True)
    for path in sorted(folder.glob("*.fits*")):  # links: the real files stay where they are, read-only
        (work / "input" / path.name).symlink_to(path.resolve())
    settings = {
        "cube": {"path": str(work / "cube.zarr")},
        "cluster": {"local": {"n_workers": 2}},
        "ingest": {"input": str(work / "input")},
        "export": {"out": str(work / "catalogs"), "formats": ["parquet"]},
        "runner": {"progress": False},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    run_command("run", "--config", work / "config.yaml", "--no-progress")
    (work / _COMPLETE).write_text("made by docs/tutorial_data.py\n")
    return work
