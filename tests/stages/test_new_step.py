"""A new step is one science function, one step module (with its configuration section and summary) and one
registry line (issue 24): written here as a file, it runs through ``survey-scale run``, ``info``, the report's
steps table and ``config show`` with no other file of the package edited."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from survey_scale.cli import build_parser, main
from survey_scale.stages import registry as registry_module
from survey_scale.store.cube import open_cube

TOY_MODULE = '''
"""Toy step: the depth of the deepest line of each normalized spectrum (a science function, its stage, its
configuration section, its summary)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from survey_scale.core.settings import Section
from survey_scale.engine.contracts import ChunkContext, Output, Stage, StageResult, Step, output_names


def line_depth(norm_flux: np.ndarray, floor: float) -> np.ndarray:
    """Science: 1 - min(norm_flux) per spectrum, 0 below ``floor``; NaN without a finite pixel."""
    finite = np.isfinite(norm_flux).any(axis=1)
    deepest = np.nanmin(np.where(finite[:, None], norm_flux, 1.0), axis=1)
    depth = 1.0 - deepest
    return np.where(finite, np.where(depth < floor, 0.0, depth), np.nan).astype(np.float32)


class LineDepthConfig(Section):
    """The toy step."""

    floor: float = Field(0.0, ge=0, description="depths below this are reported as 0")


OUTPUTS = (Output("line_depth", "float32", attrs={"long_name": "1 - min(norm_flux)"}),)


def line_depth_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    return StageResult({"line_depth": line_depth(inputs["norm_flux"], params["floor"])})


def run(config: Any, engine: Any) -> Any:
    stage = Stage(
        "line_depth", "1", line_depth_chunk, inputs=("norm_flux",), outputs=OUTPUTS,
        params={"floor": config.line_depth.floor},
    )
    result = engine.run_stage(stage)
    depth = engine.read_column("line_depth")
    engine.record_reduction("line_depth", {"median": float(np.nanmedian(depth)), "n": int(np.isfinite(depth).sum())})
    return result


def summary_lines(reductions: Mapping[str, Any]) -> list[str]:
    record = reductions.get("line_depth")
    return [f"    line depth: median {record['median']:.3f} over {record['n']} spectra"] if record else []


STEPS = (
    Step(
        "line_depth",
        run,
        requires=("norm_flux",),
        produces=output_names(OUTPUTS),
        description="toy: the depth of the deepest line",
        config={"line_depth": LineDepthConfig},
        summary=summary_lines,
    ),
)
'''


@pytest.mark.slow
def test_a_new_step_module_and_one_registry_line_reach_run_info_report_and_config(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from survey_scale.mock import make_release

    (tmp_path / "toy_line_depth.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    # the one registry line
    monkeypatch.setattr(registry_module, "STEP_MODULES", (*registry_module.STEP_MODULES, "toy_line_depth"))
    import toy_line_depth

    # config show: the step's section, with its default and its description's key
    assert main(["config", "show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["line_depth"] == {"floor": 0.0}
    # run: --until and a sub-command of its own
    parser = build_parser()
    assert parser.parse_args(["run", "--until", "line_depth"]).until == "line_depth"
    assert parser.parse_args(["line_depth", "--config", "x.yaml"]).command == "line_depth"

    mock = make_release(tmp_path / "mock", 12, seed=5, n_invalid=0).outdir
    cube = tmp_path / "cube.zarr"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cube: {{path: {cube}, shard_spectra: 64, inner_chunk_spectra: 8}}\n"
        f"ingest: {{input: {mock / 'spectra'}, catalog: {mock / 'catalog.csv'}, "
        f"crossmatch: {mock / 'crossmatch.parquet'}}}\n"
        "cluster: {local: {n_workers: 1, processes: false, dashboard_address: null}}\n"
        "runner: {progress: false}\n"
        "fit: {max_iter: 20, cool_star_emulator: null}\n"
        "chi2ratio: {min_count: 1}\n"
        "mks: {mcmc_steps: 200, mcmc_burn: 50, max_epochs: 20}\n"
        "export: {formats: [parquet]}\n"
        "line_depth: {floor: 0.05}\n"
    )
    assert main(["run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "line_depth: 1 of 1 chunks computed" in out
    ds = open_cube(cube)
    np.testing.assert_array_equal(ds.line_depth.values, toy_line_depth.line_depth(ds.norm_flux.values, 0.05))
    assert ds.attrs["stages"]["line_depth"]["stage_version"] == "1"

    assert main(["info", str(cube)]) == 0
    info = capsys.readouterr().out
    assert "    line_depth " in info  # its stage's line
    median = float(np.nanmedian(ds.line_depth.values))
    assert f"line depth: median {median:.3f} over {int(np.isfinite(ds.line_depth.values).sum())} spectra" in info

    assert main(["report", str(cube), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<b>line_depth</b>" in html and "toy: the depth of the deepest line" in html
    assert f"line depth: median {median:.3f}" in html
