"""Step ``bad_spectra`` on a cube of synthetic fits (SPEC §4, P1 App. A; issue 15): the fit's evidence, the
S/N-dependent limits recorded in the cube, the flag and its reason code, re-use when nothing changed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from survey_scale.config import CubeConfig, load_config
from survey_scale.core.wavelength import N_WAVE, wavelength_grid
from survey_scale.engine.contracts import ChunkContext, Output, Stage, StageResult
from survey_scale.engine.runner import DaskEngine
from survey_scale.products.info import cube_info
from survey_scale.stages import bad_spectra
from survey_scale.store.cube import create_cube, open_cube, open_group, resize_spec, write_column

N = 600
WAVE = wavelength_grid()
SHIFTED = np.arange(N) % 40 == 7  # a segment 6,200–7,000 Å with a wrong wavelength calibration
JUMP = np.arange(N) % 40 == 27  # a 15 % flux defect over 5,200–5,600 Å
EMISSION = np.arange(N) % 10 == 3  # Hα emission: the fit's model has none, the PCA's Hα χ² is large
STEP = np.arange(N) % 40 == 17  # the flux over 5,000–6,000 Å scaled by 1.6, which the normalization absorbed
LINES = np.array([4388.0, 4471.5, 4921.9, 5015.7, 5875.6, 6347.1, 6371.4, 6678.2, 7065.2, 7774.0, 8446.0])


def upstream_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """What normalize, PCA, fit and chi2ratio would have written (deterministic per row)."""
    rows = np.arange(ctx.start, ctx.stop)
    rng = np.random.default_rng(rows)
    n = rows.size
    snr = np.asarray(inputs["snr_g"], dtype=np.float64)
    depth = rng.uniform(0.1, 0.35, (n, LINES.size))
    model = 1.0 - np.einsum("nl,lp->np", depth, np.exp(-0.5 * ((WAVE - LINES[:, None]) / 2.5) ** 2))
    model -= rng.uniform(0.3, 0.5, (n, 1)) * np.exp(-0.5 * ((WAVE - 6564.6) / 12.0) ** 2)
    flux = model + rng.normal(size=model.shape) / snr[:, None]
    seg = np.flatnonzero((WAVE >= 6200) & (WAVE <= 7000))
    for i in np.flatnonzero(SHIFTED[rows]):
        flux[i, seg] = flux[i, np.clip(seg - 7, seg[0], seg[-1])]
    flux[np.ix_(JUMP[rows], (WAVE > 5200) & (WAVE < 5600))] *= 1.15
    em = EMISSION[rows]
    flux[em] += 0.8 * np.exp(-0.5 * ((WAVE - 6564.6) / 3.0) ** 2)
    chi2 = 10 ** rng.normal(0.0, 0.05, n) * (1 + (snr / 100) ** 2)
    continuum = 100.0 * (WAVE / 6000.0) ** rng.uniform(-3.0, -1.0, (n, 1))
    continuum[np.ix_(STEP[rows], (WAVE > 5000) & (WAVE < 6000))] *= 1.6
    return StageResult(
        {
            "flux": (flux * continuum).astype(np.float32),
            "norm_flux": flux.astype(np.float32),
            "norm_ivar": np.repeat((snr**2)[:, None], N_WAVE, axis=1).astype(np.float32),
            "pixmask": np.zeros((n, N_WAVE), np.uint8),
            "model_flux": model.astype(np.float32),
            "em_flag": em.astype(np.int8),
            "rv": rng.uniform(-100.0, 100.0, n).astype(np.float32),
            "chi2_red": chi2.astype(np.float32),
            "pca_chi2": chi2.astype(np.float32),
            "pca_local_z": (4.0 * 10 ** rng.normal(0.0, 0.05, n)).astype(np.float32),
            "halpha_chi2": np.where(em, 40.0, chi2).astype(np.float32),
            "chi2ratio": np.where(em, 30.0, rng.normal(0.0, 1.0, n)).astype(np.float32),
        }
    )


UPSTREAM = Stage(
    "upstream",
    "fake",
    upstream_chunk,
    inputs=("snr_g",),
    outputs=(
        Output("flux", "float32", ("spec", "wave")),
        Output("norm_flux", "float32", ("spec", "wave")),
        Output("norm_ivar", "float32", ("spec", "wave")),
        Output("pixmask", "uint8", ("spec", "wave")),
        Output("model_flux", "float32", ("spec", "wave")),
        *(Output(v, "float32") for v in ("pca_chi2", "pca_local_z", "halpha_chi2", "chi2ratio")),
        Output("em_flag", "int8"),
        Output("rv", "float32"),
        Output("chi2_red", "float32"),
    ),
)


@pytest.fixture(scope="module")
def flagged(tmp_path_factory, client) -> tuple[Path, Any, Any]:
    path = tmp_path_factory.mktemp("bad") / "cube.zarr"
    create_cube(path, CubeConfig(shard_spectra=256, inner_chunk_spectra=64))
    resize_spec(path, N)
    snr = 10 ** np.random.default_rng(1).uniform(1.2, 2.4, N)
    write_column(open_group(path, mode="r+"), "snr_g", snr.astype(np.float32), {})
    engine = DaskEngine(path, client, progress=False)
    engine.run_stage(UPSTREAM)
    config = load_config(None, {"cube.path": path, "bad_spectra.min_per_bin": 150})
    return path, config, bad_spectra.run(config, engine)


def test_corrupted_spectra_are_flagged_with_their_reason(flagged) -> None:
    path, _, summary = flagged
    assert summary.stage == "bad_spectra" and summary.n_computed == summary.n_chunks == 3
    ds = open_cube(path)
    flag, reason = ds.bad_spectrum_flag.values, ds.bad_spectrum_reason.values
    assert flag.dtype == np.int8 and reason.dtype == np.int16
    np.testing.assert_array_equal(flag == 1, reason != 0)
    assert np.all(reason[SHIFTED] & 16) and np.all(np.abs(ds.wave_shift_pixels.values[SHIFTED] - 7) <= 1)
    lo, hi = ds.wave_shift_lo.values[SHIFTED], ds.wave_shift_hi.values[SHIFTED]
    assert np.all((lo < 6400) & (hi > 6600) & (hi < 7150))  # holds Hα (and lines at most one block further)
    assert np.isnan(ds.wave_shift_lo.values[~SHIFTED & (ds.wave_shift_pixels.values == 0)]).all()
    assert np.all(reason[JUMP] & 4)
    # a jump the normalization absorbed is a step of the continuum unlike the survey's
    assert np.all(reason[STEP] & 64) and np.all(ds.flux_step_z.values[STEP] > 20)
    clean = ~SHIFTED & ~JUMP & ~STEP
    assert flag[clean].mean() < 0.02
    # an emission star's large chi2ratio and Hα misfit are not errors, nor its emission line in the fit residuals
    assert flag[EMISSION & clean].sum() == 0


def test_limits_and_counts_are_recorded_and_shown(flagged) -> None:
    path, _, _ = flagged
    record = open_cube(path).attrs["reductions"]["bad_spectra"]
    assert set(record["limits"]) == {
        "pca_chi2",
        "pca_local_z",
        "fit_local_z",
        "chi2ratio",
        "wave_shift_z",
        "halpha_chi2",
        "flux_step_z",
    }
    assert record["n_flagged"] == int(open_cube(path).bad_spectrum_flag.values.sum())
    assert record["n_by_evidence"]["wavelength"] >= SHIFTED.sum()
    # pca_chi2 grows as (S/N)^2 here: its limit follows it
    log_snr, values = record["limits"]["pca_chi2"]["log_snr"], record["limits"]["pca_chi2"]["values"]
    assert len(log_snr) == 4 and values[-1] > values[0] + 0.5
    text = cube_info(path)
    assert "erroneous spectra" in text and "wave_shift_z" in text


def test_rerun_does_nothing_and_a_fixed_limit_reruns_only_the_rule(flagged, client) -> None:
    path, config, _ = flagged
    engine = DaskEngine(path, client, progress=False)
    written = {
        "telluric": engine.model_path(bad_spectra.TELLURIC_FILE).stat().st_mtime_ns,
        "steps": engine.model_path(bad_spectra.STEPS_FILE).stat().st_mtime_ns,
    }
    assert bad_spectra.run(config, engine).n_computed == 0
    fixed = load_config(None, {"cube.path": path, "bad_spectra.min_per_bin": 150, "bad_spectra.chi2ratio_limit": 3.0})
    summary = bad_spectra.run(fixed, engine)
    assert summary.n_computed == summary.n_chunks
    assert open_cube(path).attrs["stages"]["fit_residuals"]["params"] == {"max_shift": 20, "min_shift": 3}
    # the kept survey references, not remade without runner.refit
    telluric, steps = engine.models["telluric"], engine.models["continuum_steps"]
    assert telluric.name == bad_spectra.TELLURIC_FILE and steps.name == bad_spectra.STEPS_FILE
    assert telluric.stat().st_mtime_ns == written["telluric"] and steps.stat().st_mtime_ns == written["steps"]
    reason = open_cube(path).bad_spectrum_reason.values
    assert (reason & 8).sum() > 0 and np.all(reason[EMISSION] & 8 == 0)
