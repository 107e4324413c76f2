"""``survey-scale demo``: the whole pipeline on one machine, end to end (SPEC §11, §12)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from survey_scale.config import load_config
from survey_scale.info import cube_info
from survey_scale.ingest import ingest

log = logging.getLogger(__name__)

REAL_FILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lamost"


def run_demo(workdir: str | Path, *, n_stars: int = 600, seed: int = 1, progress: bool = True) -> Path:
    """Ingest the real LAMOST files of ../shared/data/lamost into a fresh cube and print ``info``.

    Returns the cube's path.
    """
    workdir = Path(workdir)
    cube = workdir / "cube.zarr"
    if cube.exists():
        shutil.rmtree(cube)
    workdir.mkdir(parents=True, exist_ok=True)
    if not REAL_FILES.is_dir():
        raise FileNotFoundError(f"demo: the real LAMOST files are expected in {REAL_FILES}")
    config = load_config(None, {"cube.path": str(cube), "ingest.input": str(REAL_FILES)})
    for summary in ingest(config, progress=progress):
        print(summary.balance_line())
    print(cube_info(cube))
    return cube
