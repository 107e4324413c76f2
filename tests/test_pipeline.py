"""The whole pipeline on a small mock release: every stage runs, a re-run does nothing, an append runs
only the new spectra (SPEC §11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.products.figures import write_figures
from survey_scale.products.info import cube_info
from survey_scale.store.cube import create_cube, open_cube


def _config(tmp_path: Path, release: Path):
    return load_config(
        None,
        {
            "cube.path": str(tmp_path / "cube.zarr"),
            "cube.shard_spectra": 128,
            "cube.inner_chunk_spectra": 32,
            "ingest.input": str(release / "spectra"),
            "ingest.catalog": str(release / "catalog.csv"),
            "ingest.crossmatch": str(release / "crossmatch.parquet"),
            "ingest.files_per_task": 64,
            "normalize.block_spectra": 64,
            "pca.n_components": 15,
            "pca.min_snr": 30.0,
            "pca.block_spectra": 64,
            "emulator.grid_size": 400,
            "emulator.epochs": 8,
            "emulator.hidden": [32, 32],
            "fit.block_spectra": 64,
            "fit.max_iter": 30,
            # a small release has few 10-sigma parallaxes: loosen the MKs sets so that the networks train
            "mks.min_parallax_snr": 3.0,
            "mks.min_snr": 10.0,
            "mks.max_epochs": 30,
            "mks.mcmc_steps": 300,
            "mks.mcmc_burn": 100,
            "mks.min_error_stars": 10,
        },
    )


@pytest.mark.slow
def test_pipeline_runs_resumes_and_appends(tmp_path: Path, client) -> None:
    first = make_release(tmp_path / "mock1", 120, seed=21, release="MOCK1")
    config = _config(tmp_path, first.outdir)
    create_cube(config.cube.path, config.cube)
    partial = run_pipeline_with_client(config, client, progress=False, until="pca")
    assert [s.stage for s in partial.stages] == ["normalize", "pca"] and set(partial.models) == {"pca"}
    assert "labels" not in open_cube(config.cube.path)
    summary = run_pipeline_with_client(config, client, progress=False)
    stages = ["normalize", "pca", "fit", "chi2ratio", "bad_spectra", "calibrate_errors", "extinction", "mks"]
    stages.append("distances")
    assert [s.stage for s in summary.stages] == stages
    assert [s.n_computed for s in summary.stages[:2]] == [0, 0]
    assert set(summary.models) == {"pca", "emulator", "telluric", "mks"}
    ds = open_cube(config.cube.path)
    n = ds.sizes["spec"]
    assert n == first.n_valid_files
    for name in ("norm_flux", "pca_flux", "em_flag", "labels", "label_cov", "chi2_red", "model_flux"):
        assert name in ds
    fitted = np.all(np.isfinite(ds.labels.values), axis=1)
    assert fitted.mean() > 0.95
    assert set(ds.attrs["stages"]) == {"ingest", "fit_residuals", *stages}
    reason = ds.bad_spectrum_reason.values
    np.testing.assert_array_equal(ds.bad_spectrum_flag.values == 1, reason != 0)
    for name in ("uniqflag", "chi2ratio", "flag_chi2ratio", "teff_err", "fe_h_err", "ebv", "mks", "dis", "X"):
        assert name in ds
    reductions = {"chi2ratio", "bad_spectra", "repeat_precision", "error_calibration", "mks_model"}
    assert set(ds.attrs["reductions"]) == reductions
    mks_model = ds.attrs["reductions"]["mks_model"]
    assert "untrained" not in mks_model and mks_model["posterior"]["non_emission"]["n_stars"] >= 10
    assert np.isfinite(ds.mks.values).mean() > 0.9 and np.isfinite(ds.dis.values).mean() > 0.9
    assert summary.results["export"]["distances_parquet"] == tmp_path / "catalogs" / "distances.parquet"
    model_written = summary.models["mks"].stat().st_mtime_ns
    lsdb = pytest.importorskip("lsdb")
    frame = lsdb.open_catalog(tmp_path / "catalogs" / "distances_hats").compute()
    assert len(frame) == n and {"specid", "mks", "dis", "binary_flag", "X", "Y", "Z"} <= set(frame.columns)
    catalog = summary.results["export"]["parquet"]
    assert catalog == tmp_path / "catalogs" / "labels.parquet" and catalog.exists()
    written = catalog.stat().st_mtime_ns

    again = run_pipeline_with_client(config, client, progress=False)
    assert [s.n_computed for s in again.stages] == [0] * len(stages)
    assert again.results["uniqflag"] is False and catalog.stat().st_mtime_ns == written

    second = make_release(tmp_path / "mock2", 40, seed=22, release="MOCK2", previous=first.outdir, n_invalid=0)
    config2 = _config(tmp_path, second.outdir)
    appended = run_pipeline_with_client(config2, client, progress=False)
    ds = open_cube(config.cube.path)
    assert ds.sizes["spec"] == n + second.n_valid_files
    # normalization and fit compute only the shards that hold new rows (the emulator did not change); the
    # PCA is refitted with the new candidates, so its stage runs again everywhere
    norm, pca, fit, chi2ratio, bad, _, extinction, *_ = appended.stages
    assert norm.n_computed == fit.n_computed == norm.n_chunks - n // 128
    assert pca.n_computed == pca.n_chunks
    assert np.isfinite(ds.labels.values[n:]).all(axis=1).mean() > 0.9
    # the survey-wide fits are redone; only their cheap per-spectrum columns are rewritten
    assert chi2ratio.n_computed == chi2ratio.n_chunks and appended.results["uniqflag"] is True
    assert bad.stage == "bad_spectra" and np.all(ds.bad_spectrum_flag.values >= 0)
    assert (ds.uniqflag.values >= 1).all() and catalog.stat().st_mtime_ns != written
    # the MKs model is kept (trained once; --refit retrains it) and applied to the new spectra
    assert appended.models["mks"].stat().st_mtime_ns == model_written
    assert extinction.n_computed == extinction.n_chunks - n // 128
    assert np.isfinite(ds.mks.values[n:]).mean() > 0.9 and np.isfinite(ds.dis.values[n:]).mean() > 0.9
    text = cube_info(config.cube.path)
    assert "MOCK2" in text and "fit" in text and "pca" in text
    assert "MKs model" in text and "sigma_int" in text
    figures = write_figures("distances", config.cube.path, tmp_path / "figs", truth=second.outdir)
    assert [f.name for f in figures] == [
        "ebv.png", "mks.png", "mks_mcmc.png", "snr_dparallax.png", "distance_precision.png", "xy_map.png"
    ]  # fmt: skip
    assert all(f.stat().st_size > 10_000 for f in figures)
