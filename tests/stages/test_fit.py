"""The §5.3 label fit as a runner stage: outputs in the cube, provenance, skip, re-run on a new emulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from survey_scale.config import CubeConfig, FitConfig
from survey_scale.engine.runner import run_stage
from survey_scale.science import emulator as E
from survey_scale.stages.fit import CORR_NAMES, fit_stage
from survey_scale.store.cube import (
    consolidate,
    create_cube,
    create_spectra_array,
    open_cube,
    open_rejects,
    resize_spec,
    write_column,
)

FIT = FitConfig(device="cpu", bounds=0.55, max_iter=60, n_starts=1, block_spectra=16)


@pytest.fixture(scope="module")
def emulator_file() -> Path:
    """The shipped emulator (11 labels, the whole common grid, trained on the synthesizer's model grid)."""
    return E.default_emulator_path()


@pytest.fixture
def fit_cube(tmp_path: Path, emulator_file: Path) -> tuple[Path, np.ndarray]:
    em = E.load(emulator_file)
    rng = np.random.default_rng(8)
    n = 40
    truth = em.unscale(rng.uniform(-0.3, 0.3, (n, em.n_labels)))
    flux = em.predict(truth)
    snr = np.full(n, 80.0)
    noisy = flux + rng.standard_normal(flux.shape) / snr[:, None]
    ivar = np.full_like(flux, 80.0**2)
    ivar[5] = 0.0  # one spectrum without data: rejected, labels NaN
    path = tmp_path / "cube.zarr"
    layout = CubeConfig(shard_spectra=32, inner_chunk_spectra=16)
    create_cube(path, layout)
    resize_spec(path, n)
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    # the fit reads the normalized variables; the toy spectra are normalized already: write them as such
    for name, values in (("norm_flux", noisy), ("norm_ivar", ivar)):
        create_spectra_array(root, name, "float32", layout, {}, n_spec=n)[:] = values.astype(np.float32)
    root["pixmask"][:] = 0
    write_column(root, "specid", np.array([f"T{i:03d}" for i in range(n)]), {})
    write_column(root, "snr_g", snr.astype(np.float32), {})
    consolidate(path)
    return path, truth


def test_fit_stage_writes_labels_and_provenance(fit_cube, emulator_file: Path, client) -> None:
    path, truth = fit_cube
    em = E.load(emulator_file)
    summary = run_stage(path, fit_stage(emulator_file, tuple(em.label_names), FIT), client, progress=False)
    assert (summary.n_chunks, summary.n_computed, summary.n_rejects) == (2, 2, 1)
    ds = open_cube(path)
    assert list(ds.label.values) == list(em.label_names)
    assert ds.labels.dims == ("spec", "label") and ds.label_cov.dims == ("spec", "label", "label2")
    assert ds.model_flux.dims == ("spec", "wave")
    good = np.arange(len(truth)) != 5
    labels = ds.labels.values
    # recovered within a few formal errors (teff and logg carry the most information)
    pulls = (labels[good] - truth[good]) / ds.label_err.values[good]
    assert np.nanmedian(np.abs(pulls[:, :2])) < 2.0
    assert np.all(np.isnan(labels[5])) and ds.fit_flags.values[5] & 8
    np.testing.assert_allclose(np.nanmedian(ds.chi2_red.values[good]), 1.0, atol=0.2)
    for name in CORR_NAMES:
        assert np.all(np.abs(ds[name].values[good]) <= 1.0)
    assert "emulator" in ds.labels.attrs["provenance_model_hashes"]
    rejects = open_rejects(path)
    assert rejects[["stage", "source", "code"]].values.tolist() == [["fit", "T005", "no_fit"]]


def test_fit_stage_skips_done_chunks_and_reruns_on_a_new_emulator(fit_cube, emulator_file, tmp_path, client) -> None:
    path, _ = fit_cube
    names = tuple(E.load(emulator_file).label_names)
    run_stage(path, fit_stage(emulator_file, names, FIT), client, progress=False)
    assert run_stage(path, fit_stage(emulator_file, names, FIT), client, progress=False).n_computed == 0
    other = E.load(emulator_file)
    other.meta["note"] = "retrained"  # a different file: a different hash
    other_path = other.save(tmp_path / "other.npz")
    assert run_stage(path, fit_stage(other_path, names, FIT), client, progress=False).n_computed == 2


def test_emulator_path_names_a_shipped_emulator(tmp_path) -> None:
    """``emulator.path: physical`` selects the shipped file; an unknown name or path says what exists."""
    from survey_scale.config import EmulatorConfig
    from survey_scale.engine.contracts import PipelineError
    from survey_scale.stages.emulator import build_emulator

    assert build_emulator(EmulatorConfig(path="physical"), engine=None) == E.default_emulator_path("physical")
    with pytest.raises(PipelineError, match="nor the name of a shipped emulator: physical, synthesizer"):
        build_emulator(EmulatorConfig(path=tmp_path / "none.npz"), engine=None)


def test_model_flux_dropped_is_rebuilt_from_the_labels(fit_cube, emulator_file, tmp_path, client) -> None:
    """``cube.keep_model_flux: false``: the fit stores no model_flux; :func:`rebuild_model_flux` gives it back
    from the labels (to float32 rounding of the labels), and the fit's residual evidence is the same."""
    import shutil

    from survey_scale.config import BadSpectraConfig
    from survey_scale.core.errors import SurveyScaleError
    from survey_scale.engine.contracts import ChunkContext
    from survey_scale.products.spectra import rebuild_model_flux
    from survey_scale.stages.bad_spectra import MODEL_INPUTS, fit_residuals_chunk
    from survey_scale.store.bookkeeping import Bookkeeping

    path, _ = fit_cube
    names = tuple(E.load(emulator_file).label_names)
    dropped = tmp_path / "dropped.zarr"
    shutil.copytree(path, dropped)
    run_stage(path, fit_stage(emulator_file, names, FIT), client, progress=False)
    stage = fit_stage(emulator_file, names, FIT, keep_model_flux=False)
    assert "model_flux" not in [o.name for o in stage.outputs]
    run_stage(dropped, stage, client, progress=False)
    kept, lean = open_cube(path), open_cube(dropped)
    assert "model_flux" not in lean and "model_flux" in kept
    np.testing.assert_array_equal(lean.labels.values, kept.labels.values)  # nothing else changed

    rebuilt = rebuild_model_flux(dropped, emulator=emulator_file)
    stored = kept.model_flux.values
    assert np.array_equal(np.isfinite(rebuilt), np.isfinite(stored))  # the spectrum without a fit: NaN in both
    np.testing.assert_allclose(rebuilt, stored, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(rebuild_model_flux(dropped, [3, 7], emulator=emulator_file), stored[[3, 7]], atol=1e-5)
    with pytest.raises(SurveyScaleError, match="no record of the fit's emulator is not there; pass emulator="):
        rebuild_model_flux(dropped)  # this test cube has no record of the emulator step's choice
    Bookkeeping(dropped).record_model("emulator", emulator_file, "emulator")
    np.testing.assert_array_equal(rebuild_model_flux(dropped), rebuilt)  # the recorded emulator
    other = E.load(emulator_file)
    other.meta["note"] = "retrained"
    with pytest.raises(SurveyScaleError, match="not the emulator of this cube's fit"):
        rebuild_model_flux(dropped, emulator=other.save(tmp_path / "other.npz"))

    # the residual evidence from the stored and from the rebuilt model spectra
    n = stored.shape[0]
    rng = np.random.default_rng(3)
    common = {
        "flux": kept.norm_flux.values * 100.0,
        "norm_flux": kept.norm_flux.values,
        "norm_ivar": kept.norm_ivar.values,
        "pixmask": np.zeros_like(stored, dtype=np.uint8),
        "em_flag": np.zeros(n, np.int8),
        "rv": rng.uniform(-50.0, 50.0, n).astype(np.float32),
    }
    cfg = BadSpectraConfig()
    steps = (np.zeros(stored.shape[1]), np.ones(stored.shape[1]))
    models = {"telluric": np.ones(stored.shape[1]), "continuum_steps": steps}
    params = {"max_shift": cfg.max_shift, "min_shift": cfg.min_shift}
    ctx = ChunkContext(0, n, models)
    from_stored = fit_residuals_chunk({**common, "model_flux": stored}, params, ctx).outputs
    ctx_rebuilt = ChunkContext(0, n, {**models, "emulator": E.load(emulator_file)})
    lean_inputs = {**common, **{k: lean[k].values for k in MODEL_INPUTS}}
    from_labels = fit_residuals_chunk(lean_inputs, {**params, "label_names": names}, ctx_rebuilt).outputs
    for key, value in from_stored.items():
        np.testing.assert_allclose(from_labels[key], value, rtol=1e-3, atol=1e-3, equal_nan=True, err_msg=key)
