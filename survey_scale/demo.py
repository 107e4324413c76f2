"""``survey-scale demo``: the whole pipeline on one machine, from a fresh mock release (SPEC §10–§12).

Steps (everything under ``--workdir``):

1. write a mock release (``mock/``: LAMOST FITS files, catalog, cross-match table, truth);
2. write ``config.yaml`` for it and run every step of the pipeline (``survey-scale run --config``): ingest,
   normalization, PCA and emission flags, the shipped emulator, the label fit, the survey-wide reductions,
   extinction, the MKs networks and their MCMC uncertainty model, distances, and the catalogs
   (``catalogs/``: FITS, Parquet, HATS);
3. write the report (``report/report.html``, with the mock's truth beside the results).

The console shows a progress bar and one line per step; everything else goes to the cube's log
(``cube.zarr/_survey_scale/logs/``). Re-running the demo in the same folder starts from a fresh mock and cube.

The demo deletes its outputs (``cube.zarr``, ``catalogs/``, ``report/``, ``config.yaml``) before it starts, so
it works only in a folder it made: a new or empty one, which it marks with a ``.survey_scale_demo`` file, or one
that has that marker. Any other folder that is not empty is refused (:class:`DemoWorkdirError`) and nothing in
it is touched — a folder of an older demo, from before the marker, too: delete it, or choose another
``--workdir``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from survey_scale.config import load_config
from survey_scale.core.errors import SurveyScaleError
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.products.report import write_report
from survey_scale.stages.registry import default_registry
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import create_cube

log = logging.getLogger(__name__)

DEMO_OUTPUTS = ("cube.zarr", "catalogs", "report", "config.yaml")

DEMO_MARKER = ".survey_scale_demo"
"""The file that marks a work folder as the demo's own: only there does it delete its old outputs."""


class DemoWorkdirError(SurveyScaleError):
    """The demo's ``--workdir`` is a folder it did not make (not empty, no :data:`DEMO_MARKER`)."""


def claim_workdir(workdir: str | Path) -> Path:
    """Make ``workdir`` the demo's: create it (or take it empty) and write the marker; return it.

    Raises
    ------
    DemoWorkdirError
        If ``workdir`` is not a folder, or is a folder that is not empty and has no marker: the demo would
        delete what is in it. Nothing is changed.
    """
    workdir = Path(workdir)
    marker = workdir / DEMO_MARKER
    if workdir.exists() and not workdir.is_dir():
        raise DemoWorkdirError(f"demo work folder {workdir} is a file, not a folder; choose another --workdir")
    if workdir.is_dir() and not marker.is_file() and (entries := sorted(p.name for p in workdir.iterdir())):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise DemoWorkdirError(
            f"demo work folder {workdir} is not empty ({shown}) and was not made by the demo (no {DEMO_MARKER} "
            f"file): the demo replaces {', '.join(DEMO_OUTPUTS)} in its folder, so it leaves this one alone. "
            "Choose a new or empty folder with --workdir, or delete this one if it is an older demo's."
        )
    workdir.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by survey-scale demo; a rerun may replace everything in this folder\n")
    return workdir


def demo_config(workdir: Path) -> dict:
    """The demo's configuration: the defaults, pointed at the mock release, with a smaller PCA and MKs sets
    loosened for a release of a thousand stars (few of them have 10-σ parallaxes)."""
    mock = workdir / "mock"
    return {
        "cube": {"path": str(workdir / "cube.zarr")},
        "ingest": {
            "input": str(mock / "spectra"),
            "catalog": str(mock / "catalog.csv"),
            "crossmatch": str(mock / "crossmatch.parquet"),
        },
        "pca": {"n_components": 50},
        "fit": {"block_spectra": 256},  # the release is one shard: blocks spread its fit over the workers
        "mks": {"min_parallax_snr": 5.0, "min_snr": 30.0, "mcmc_steps": 3000, "mcmc_burn": 500},
        "export": {"out": str(workdir / "catalogs")},
        "runner": {"progress": False},
    }


def step_line(name: str, record: dict[str, Any]) -> str:
    """One console line for a step run recorded by the bookkeeping (:func:`survey_scale.pipeline.step_record`)."""
    if "n_chunks" in record:
        what = f"{record['n_computed']} of {record['n_chunks']} chunks, {record['n_rejects']} rejects"
    elif "batches" in record:
        what = "; ".join(f"{b['n_new']} spectra ingested, {b['n_rejected']} inputs rejected" for b in record["batches"])
    elif "model" in record:
        what = Path(record["model"]).name
    elif "outputs" in record:
        what = ", ".join(sorted(record["outputs"]))
    else:
        what = "rewritten" if record.get("rewrote") else "done"
    return f"  {name:<11} {record['seconds']:6.1f} s  {what}"


@contextlib.contextmanager
def _console_at_warning() -> Iterator[None]:
    # One line per step on the console: the steps' own INFO lines go to the cube's log file only.
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def run_demo(workdir: str | Path, *, n_stars: int = 1000, seed: int = 1, progress: bool = True) -> Path:
    """Run the demo in ``workdir`` and return the report's path (``workdir/report/report.html``).

    Raises
    ------
    DemoWorkdirError
        If ``workdir`` is not the demo's (:func:`claim_workdir`); then nothing in it is touched.
    """
    workdir = claim_workdir(workdir)
    for old in DEMO_OUTPUTS:
        path = workdir / old
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    t0 = time.perf_counter()
    release = make_release(workdir / "mock", n_stars, seed, release="MOCK1")
    print(
        f"  {'mock':<11} {time.perf_counter() - t0:6.1f} s  {release.n_files} files: {release.n_valid_files} "
        f"spectra of {release.n_stars} hot stars and {release.n_contaminants} contaminants (cool stars, QSOs) and "
        f"{release.n_invalid} invalid inputs ({workdir / 'mock'})"
    )
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(workdir), sort_keys=False))
    config = load_config(config_path)
    steps = default_registry().names()
    bar = tqdm(total=len(steps) + 1, desc="demo", unit="step", disable=not progress, leave=False)

    create_cube(config.cube.path, config.cube)
    books = Bookkeeping(config.cube.path)
    log_file = logging.FileHandler(books.log_path("demo"))
    log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.getLogger().addHandler(log_file)

    @contextlib.contextmanager
    def one_line(name: str) -> Iterator[None]:
        bar.set_postfix_str(name)
        yield
        bar.write(step_line(name, books.step_history(name)[-1]))
        bar.update()

    try:
        with _console_at_warning():
            run_pipeline(config, step_context=one_line)
            bar.set_postfix_str("report")
            t0 = time.perf_counter()
            report = write_report(config.cube.path, workdir / "report", truth=workdir / "mock")
            bar.update()
    finally:
        bar.close()
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    print(f"  {'report':<11} {time.perf_counter() - t0:6.1f} s  {report}")
    print(f"cube: {config.cube.path}  (ss.open_cube; survey-scale info {config.cube.path})")
    print(f"catalogs: {workdir / 'catalogs'}  (labels and distances: FITS, Parquet, HATS)")
    print(f"report: {report}")
    return report
