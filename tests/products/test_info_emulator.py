"""``survey-scale info`` shows which emulator the emulator step chose, and why."""

from __future__ import annotations

import json
from pathlib import Path

from survey_scale.config import CubeConfig
from survey_scale.products.info import EMULATOR_CHOICE_FILE, cube_info, emulator_lines
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import create_cube


def test_the_choice_file_is_the_emulator_steps() -> None:
    from survey_scale.stages.emulator import CHOICE_FILE

    assert EMULATOR_CHOICE_FILE == CHOICE_FILE


def test_info_shows_the_emulator_choice_and_its_warning(tmp_path: Path) -> None:
    cube = tmp_path / "cube.zarr"
    create_cube(cube, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    assert emulator_lines(cube) == [] and "emulator:" not in cube_info(cube)  # before the step ran
    record = {
        "emulator": "physical",
        "path": "/somewhere/physical.npz",
        "how": "default",
        "reason": "3 of the 5 spectra are real LAMOST files (and 2 survey_scale mock ones)",
        "counts": {"lamost": 3, "mock": 2, "unknown": 0},
        "warning": "the cube mixes 2 survey_scale mock spectra with 3 real LAMOST ones",
        "updated": "2026-01-01T00:00:00+00:00",
    }
    path = Bookkeeping(cube).model_path(EMULATOR_CHOICE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    text = cube_info(cube)
    assert "  emulator: physical (chosen by the input), file physical.npz, updated 2026-01-01" in text
    assert "    why: 3 of the 5 spectra are real LAMOST files (and 2 survey_scale mock ones)" in text
    assert "    spectra by file origin: mock 2, lamost 3, unknown 0" in text
    assert "    warning: the cube mixes 2 survey_scale mock spectra" in text
    path.write_text(
        json.dumps({**record, "how": "emulator.path", "emulator": "mine.npz", "counts": {}, "warning": None})
    )
    lines = emulator_lines(cube)
    assert lines[0].startswith("  emulator: mine.npz (given)") and len(lines) == 2
