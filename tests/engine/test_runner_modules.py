"""The runner's modules (engine/runner.py and the modules cut from it) keep their seams.

The driver-side cube work (stage_store, reduction_store) needs no Dask; what Dask ships to workers is
module-level, so it is pickled by reference; the names other modules import from the runner stay there.
"""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

from survey_scale.engine import reduction_store, reductions, runner, stage_store, stage_tasks


def test_the_cube_side_imports_no_dask() -> None:
    code = (
        "import sys; import survey_scale.engine.stage_store, survey_scale.engine.reduction_store; "
        "print(','.join(m for m in ('distributed', 'dask', 'tqdm', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


@pytest.mark.parametrize(
    "func",
    [stage_tasks.compute_block, stage_tasks.write_chunk, stage_tasks.ModelPlugin, reductions._block_task],
)
def test_what_runs_on_workers_is_pickled_by_reference(func: object) -> None:
    module = importlib.import_module(func.__module__)
    assert getattr(module, func.__qualname__) is func
    assert pickle.loads(pickle.dumps(func)) is func


def test_the_runner_re_exports_what_other_modules_import() -> None:
    moved = {
        "compute_block": stage_tasks, "write_chunk": stage_tasks, "is_system_error": stage_tasks,
        "ModelPlugin": stage_tasks, "MODEL_PLUGIN": stage_tasks, "chunk_bounds": stage_store,
        "consolidate_stage": stage_store, "input_provenance": stage_store, "stage_provenance": stage_store,
        "INPUT_STAMP_KEYS": stage_store, "star_groups": reductions,
    }  # fmt: skip
    for name, module in moved.items():
        assert getattr(runner, name) is getattr(module, name), name
    assert {"DaskEngine", "run_stage"} <= set(runner.__all__) and set(moved) <= set(runner.__all__)
    assert reduction_store.cached.__module__ == "survey_scale.engine.reduction_store"
