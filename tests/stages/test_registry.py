"""The registry of pipeline steps: order from requirements, ``--until`` from the registry, and a new stage
added with no edit to the pipeline or the CLI (a toy science function, stage and registry entry)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from survey_scale import cli
from survey_scale.config import CubeConfig, load_config
from survey_scale.engine.contracts import ChunkContext, Engine, Output, PipelineError, Stage, StageResult, Step
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.stages.registry import Registry, default_registry
from survey_scale.store.cube import create_cube, open_cube, open_group, resize_spec

# --- the toy: one science function, one stage module, one registry entry ----------------------------------


def line_depth(norm_flux: np.ndarray) -> np.ndarray:
    """Science: the deepest point of each normalized spectrum below the continuum, 1 − min(norm_flux)."""
    finite = np.isfinite(norm_flux).any(axis=1)
    deepest = np.nanmin(np.where(finite[:, None], norm_flux, 1.0), axis=1)
    return np.where(finite, 1.0 - deepest, np.nan).astype(np.float32)


def line_depth_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    depth = line_depth(inputs["norm_flux"])
    rejects = [(int(i), "no_depth", "no finite pixel") for i in np.flatnonzero(~np.isfinite(depth))]
    return StageResult({"line_depth": depth}, rejects)


def run_line_depth(config: Any, engine: Engine) -> Any:
    return engine.run_stage(
        Stage("line_depth", "1", line_depth_chunk, inputs=("norm_flux",), outputs=(Output("line_depth", "float32"),))
    )


TOY = Step("line_depth", run_line_depth, requires=("norm_flux",), produces=("line_depth",), description="toy")


def test_default_order_and_until_choices() -> None:
    names = default_registry().names()
    assert names == [
        "ingest",
        "normalize",
        "pca_model",
        "pca",
        "emulator",
        "fit",
        "uniqflag",
        "chi2ratio",
        "bad_spectra",
        "repeats",
        "extinction",
        "final_sample",
        "mks_model",
        "mks",
        "distances",
        "export",
    ]
    run = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["run"]._actions if a.dest == "until")
    assert list(run.choices) == names


def test_order_follows_requirements_not_insertion() -> None:
    steps = [
        Step("b", "m:f", requires=("x",), produces=("y",)),
        Step("c", "m:f", produces=("z",)),
        Step("a", "m:f", produces=("x",)),
    ]
    assert Registry(steps).names() == ["c", "a", "b"]
    assert Registry(steps).until("a") == [steps[1], steps[2]]
    with pytest.raises(PipelineError, match="cycle"):
        Registry(
            [Step("p", "m:f", requires=("q",), produces=("p",)), Step("q", "m:f", requires=("p",), produces=("q",))]
        ).names()
    with pytest.raises(PipelineError, match="registered twice"):
        Registry(steps).add(steps[0])
    with pytest.raises(PipelineError, match="until must be one of"):
        Registry(steps).until("nope")


def test_a_new_stage_runs_with_no_edit_to_the_pipeline_or_the_cli(tmp_path: Path, client, monkeypatch) -> None:
    # the chunk function alone, on numpy
    flux = np.ones((3, 3802), np.float32)
    flux[1, 100] = 0.25
    flux[2] = np.nan
    result = line_depth_chunk({"norm_flux": flux}, {}, ChunkContext(0, 3, {}))
    np.testing.assert_allclose(result.outputs["line_depth"][:2], [0.0, 0.75])
    assert [r[:2] for r in result.rejects] == [(2, "no_depth")]

    # registered last, it runs after what it requires (and, like every step, after the steps registered
    # before it: --until runs a prefix of the order), and --until offers it
    registry = default_registry().add(TOY)
    assert registry.names()[-2:] == ["export", "line_depth"]
    monkeypatch.setattr(cli, "default_registry", lambda: registry)
    assert cli.build_parser().parse_args(["run", "--until", "line_depth"]).until == "line_depth"

    # run on a cube with the steps it needs: ingest (nothing to ingest) -> normalize -> line_depth
    cube = tmp_path / "cube.zarr"
    create_cube(cube, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    resize_spec(cube, 6)
    root = open_group(cube, mode="r+")
    rng = np.random.default_rng(0)
    root["flux"][:] = rng.normal(100.0, 1.0, (6, 3802)).astype(np.float32)
    root["ivar"][:] = 1.0
    root["pixmask"][:] = 0
    config = load_config(None, {"cube.path": str(cube), "normalize.block_spectra": 2})
    only = Registry(s for s in registry.ordered() if s.name in ("ingest", "normalize", "line_depth"))
    summary = run_pipeline_with_client(config, client, progress=False, until="line_depth", registry=only)
    assert [s.stage for s in summary.stages] == ["normalize", "line_depth"]
    ds = open_cube(cube)
    np.testing.assert_allclose(ds.line_depth.values, line_depth(ds.norm_flux.values), rtol=0)
    assert ds.attrs["stages"]["line_depth"]["stage_version"] == "1" and "labels" not in ds
    again = run_pipeline_with_client(config, client, progress=False, until="line_depth", registry=only)
    assert [s.n_computed for s in again.stages] == [0, 0]  # up to date: nothing recomputed


def test_registry_entries_name_what_their_stages_write() -> None:
    """``produces`` orders the steps: it must be among the stage's real outputs (no drift)."""
    from survey_scale.config import Config
    from survey_scale.stages.final_sample import final_sample_stage
    from survey_scale.stages.fit import fit_stage
    from survey_scale.stages.ingest import METADATA_OUTPUTS, SPECTRA
    from survey_scale.stages.normalize import normalize_stage
    from survey_scale.stages.pca import pca_stage

    config = Config()
    outputs = {
        "ingest": [o.name for o in (*SPECTRA, *METADATA_OUTPUTS)],
        "normalize": [o.name for o in normalize_stage(config.normalize).outputs],
        "pca": [o.name for o in pca_stage(Path("m.npz"), config.pca, config.emission).outputs],
        "fit": [o.name for o in fit_stage(Path("e.npz"), ("teff",), config.fit).outputs],
        "final_sample": [o.name for o in final_sample_stage(0).outputs],
    }
    steps = {s.name: s for s in default_registry().ordered()}
    for name, names in outputs.items():
        assert set(steps[name].produces) <= set(names), name
    assert set(final_sample_stage(0).inputs) >= set(steps["final_sample"].requires)
    assert steps["pca_model"].produces == ("model:pca",) and steps["emulator"].produces == ("model:emulator",)


def test_a_run_that_lost_its_writer_lock_stops_and_records_nothing_more(tmp_path: Path, client) -> None:
    """The pipeline checks the writer lock before each step and before recording one (issue 26)."""
    from survey_scale.store.bookkeeping import Bookkeeping
    from survey_scale.store.lock import LockLostError

    cube = tmp_path / "cube.zarr"
    create_cube(cube, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    resize_spec(cube, 4)
    root = open_group(cube, mode="r+")
    root["flux"][:] = 1.0
    root["ivar"][:] = 1.0
    root["pixmask"][:] = 0
    checks: list[str] = []

    def lock_check() -> None:
        checks.append("check")
        if len(checks) > 1:
            raise LockLostError(f"{cube}: the writer lock was broken by another process")

    config = load_config(None, {"cube.path": str(cube)})
    only = Registry(s for s in default_registry().ordered() if s.name in ("normalize", "line_depth"))
    with pytest.raises(LockLostError, match="broken by another process"):
        run_pipeline_with_client(config, client, progress=False, registry=only, lock_check=lock_check)
    assert checks == ["check", "check"]  # before the step, and before recording it: not recorded
    assert Bookkeeping(cube).step_history("normalize") == []
