"""What a step has left in a cube and what a step still lacks (no Dask: a toy cube and bookkeeping)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from survey_scale.config import CubeConfig
from survey_scale.engine.contracts import Step
from survey_scale.products.status import DONE, MISSING, PARTIAL, missing_requirements, step_statuses
from survey_scale.stages.registry import Registry
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import create_cube, open_group, resize_spec, write_column

MAKE_X = Step("make_x", "m:f", requires=("flux",), produces=("x",), description="writes x")
FIT_MODEL = Step("fit_model", "m:f", requires=("x",), produces=("model:toy",), description="a model from x")
USE = Step("use", "m:f", requires=("x", "model:toy"), produces=("y",), description="uses both")
REGISTRY = Registry([MAKE_X, FIT_MODEL, USE])


def test_a_step_names_what_is_missing_and_the_step_that_makes_it(tmp_path: Path) -> None:
    cube = tmp_path / "cube.zarr"
    create_cube(cube, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    resize_spec(cube, 8)
    problems = missing_requirements(cube, USE, REGISTRY)
    assert problems == [
        "the cube has no variable 'x' (run `survey-scale make_x` first)",
        "no toy model is recorded in the cube's bookkeeping (run `survey-scale fit_model` first)",
    ]
    # x written by stage make_x on rows 0:4 only (an append since): partial, and the rows are named
    write_column(open_group(cube, mode="r+"), "x", np.zeros(8), {"provenance_stage": "make_x"})
    books = Bookkeeping(cube)
    books.record_chunk("make_x", 0, 4, {}, [], {"stage": "make_x"}, started=0.0)
    model = tmp_path / "toy.npz"
    model.write_bytes(b"toy")
    books.record_model("toy", model, "fit_model")
    assert missing_requirements(cube, USE, REGISTRY) == [
        "'x': rows 4:8 of 8 not computed (run `survey-scale make_x` first)"
    ]
    statuses = {s.step.name: s for s in step_statuses(cube, REGISTRY)}
    assert statuses["make_x"].state == PARTIAL and statuses["make_x"].stages == ["make_x"]
    assert statuses["fit_model"].state == DONE and statuses["use"].state == MISSING
    books.record_chunk("make_x", 4, 8, {}, [], {"stage": "make_x"}, started=0.0)
    assert missing_requirements(cube, USE, REGISTRY) == []
    model.unlink()
    assert missing_requirements(cube, USE, REGISTRY) == [
        f"the toy model: the recorded file {model.resolve()} is gone (run `survey-scale fit_model` first)"
    ]
