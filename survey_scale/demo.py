"""``survey-scale demo``: the whole pipeline on one machine, from a fresh mock release (SPEC §10–§12).

Steps (everything under ``--workdir``):

1. write a mock release (``mock/``: LAMOST FITS files, catalog, cross-match table, truth);
2. write ``config.yaml`` for it and run the pipeline (``survey-scale run --config``): ingest → normalize →
   PCA/emission → emulator (trained on a synthesized model grid) → label fit;
3. write the figures (``figures/``) and print ``survey-scale info``.

Re-running the demo in the same folder starts from a fresh mock and cube.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.products.figures import write_figures
from survey_scale.products.info import cube_info

log = logging.getLogger(__name__)


def demo_config(workdir: Path) -> dict:
    """The demo's configuration: the defaults, pointed at the mock release, with a smaller PCA."""
    mock = workdir / "mock"
    return {
        "cube": {"path": str(workdir / "cube.zarr")},
        "ingest": {
            "input": str(mock / "spectra"),
            "catalog": str(mock / "catalog.csv"),
            "crossmatch": str(mock / "crossmatch.parquet"),
        },
        "pca": {"n_components": 50},
        "emulator": {"grid_size": 4000, "architecture": "shared"},
    }


def run_demo(workdir: str | Path, *, n_stars: int = 1000, seed: int = 1, progress: bool = True) -> Path:
    """Run the demo in ``workdir`` and return the cube's path."""
    workdir = Path(workdir)
    for old in ("cube.zarr", "figures"):
        if (workdir / old).exists():
            shutil.rmtree(workdir / old)
    workdir.mkdir(parents=True, exist_ok=True)
    summary = make_release(workdir / "mock", n_stars, seed, release="MOCK1")
    print(f"mock release: {summary.n_files} files, {summary.n_valid_files} valid spectra of {summary.n_stars} stars")
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(workdir), sort_keys=False))
    config = load_config(config_path)
    result = run_pipeline(config, progress=progress)
    for ingest in result.ingest:
        print(ingest.balance_line())
    cube = Path(config.cube.path)
    figures = workdir / "figures"
    written = [
        *write_figures("mock", workdir / "mock", figures),
        *write_figures("emission", cube, figures),
        *write_figures("fits", cube, figures),
        *write_figures("survey", cube, figures),
        *write_figures("distances", cube, figures, truth=workdir / "mock"),
        *write_figures("emulator", result.models["emulator"], figures),
    ]
    print(cube_info(cube))
    print("figures:\n  " + "\n  ".join(str(p) for p in written))
    return cube
