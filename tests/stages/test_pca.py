"""PCA reconstruction and emission flags on a synthetic cube (SPEC §4; P1 §3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from survey_scale.config import CubeConfig, load_config
from survey_scale.core.masks import BALMER_LINES, clean_window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.runner import DaskEngine, run_stage
from survey_scale.science.pca import PCAModel, project
from survey_scale.stages.normalize import normalize_stage
from survey_scale.stages.pca import build_pca_models, pca_stage
from survey_scale.store.cube import create_cube, open_cube, resize_spec, write_column

WAVE = wavelength_grid()
HALPHA = BALMER_LINES["H_alpha"]


def synthetic_spectra(n: int, seed: int) -> dict[str, np.ndarray]:
    """Spectra from three latent parameters (lines everywhere, Balmer lines), 15 % with Hα emission."""
    rng = np.random.default_rng(seed)
    latent = rng.uniform(-1, 1, (n, 3))
    centres = rng.uniform(3900, 8800, 60)
    a, b = rng.uniform(0.02, 0.2, 60), rng.uniform(-0.1, 0.1, (60, 3))
    depth = np.clip(a + latent @ b.T, 0, 0.6)
    lines = np.ones((n, WAVE.size))
    for j, c in enumerate(centres):
        lines *= 1 - depth[:, j : j + 1] * np.exp(-0.5 * ((WAVE - c) / 2.0) ** 2)
    for k, c in enumerate(BALMER_LINES.values()):
        d = 0.4 + 0.15 * latent[:, :1] + 0.02 * k
        lines *= 1 - d * np.exp(-0.5 * ((WAVE - c) / (6.0 + 2 * latent[:, 1:2])) ** 2)
    emission = rng.random(n) < 0.15
    ew = np.where(emission, 10 ** rng.uniform(np.log10(0.5), np.log10(30), n), 0.0)
    sigma = 3.0
    lines += (ew / (sigma * np.sqrt(2 * np.pi)))[:, None] * np.exp(-0.5 * ((WAVE - HALPHA) / sigma) ** 2)
    continuum = (1 + 0.5 * latent[:, 2:3]) * (WAVE / 5000.0) ** -2.0
    snr = 10 ** rng.uniform(np.log10(15), np.log10(200), n)
    flux = continuum * lines
    # erroneous spectra among the training candidates (P1 Fig. 15): flux jumps and a ripple, which a PCA
    # trained with them learns to reconstruct unless the refits drop them
    corrupt = np.zeros(n, bool)
    rows = np.flatnonzero((snr > 80) & ~emission)[:4]
    corrupt[rows] = True
    segment = (WAVE > 5000) & (WAVE < 5700)
    flux[rows[0], segment] *= 0.6
    flux[rows[1], segment] *= 1.5
    for row in rows[2:]:
        flux[row, segment] *= 1 + 0.2 * np.sin(2 * np.pi * WAVE[segment] / 80.0)
    sigma_pix = continuum / snr[:, None]
    noisy = flux + rng.normal(size=flux.shape) * sigma_pix
    return {
        "flux": noisy.astype(np.float32),
        "ivar": (1 / sigma_pix**2).astype(np.float32),
        "snr": snr,
        "ew": ew,
        "corrupt": corrupt,
        "lines": lines,
    }


@pytest.fixture(scope="module")
def pca_cube(tmp_path_factory, client) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("pca") / "cube.zarr"
    truth = synthetic_spectra(600, seed=11)
    create_cube(path, CubeConfig(shard_spectra=256, inner_chunk_spectra=64))
    resize_spec(path, 600)
    root = zarr.open_group(str(path), mode="r+")
    root["flux"][:] = truth["flux"]
    root["ivar"][:] = truth["ivar"]
    root["pixmask"][:] = 0
    write_column(root, "specid", np.array([f"S{i:04d}" for i in range(600)]), {})
    write_column(root, "snr_g", truth["snr"].astype(np.float32), {})
    config = load_config(
        None,
        {
            "cube.path": str(path),
            "pca.n_components": 12,
            "pca.min_snr": 40.0,
            "pca.block_spectra": 128,
            "normalize.block_spectra": 128,
        },
    )
    run_stage(path, normalize_stage(config.normalize), client, progress=False)
    model_path = build_pca_models(config, DaskEngine(path, client, progress=False))
    run_stage(path, pca_stage(model_path, config.pca, config.emission), client, progress=False)
    return path, {"truth": truth, "config": config, "model": model_path}


def test_model_artifact(pca_cube) -> None:
    _, ctx = pca_cube
    model = PCAModel.load(ctx["model"])
    assert model.basis_clean.shape == (clean_window_mask(WAVE).sum(), 12)
    assert model.reconstruction.shape == (12, WAVE.size) and model.basis_full.shape == (WAVE.size, 12)
    np.testing.assert_allclose(model.basis_clean.T @ model.basis_clean, np.eye(12), atol=1e-8)
    assert model.meta["final_pass"] == model.meta["pass"] >= 2 and model.meta["n_excluded"] > 0
    assert np.all(np.diff(model.eig_clean) <= 0) and np.all(np.diff(model.eig_full) <= 0)
    assert set(model.meta["thresholds"]) == {
        "excess_offset",
        "excess_model_sigma",
        "bad_chi2_threshold",
        "bad_local_z_threshold",
    }
    pass1 = PCAModel.load(Path(ctx["model"]).with_name("pca-pass1.npz"))
    assert pass1.meta["n_excluded"] == 0
    assert model.meta["n_train"] == pass1.meta["n_train"] - model.meta["n_excluded"]


def test_reconstruction_residuals_consistent_with_noise(pca_cube) -> None:
    path, ctx = pca_cube
    ds = open_cube(path)
    quiet = (ctx["truth"]["ew"] == 0) & ~ctx["truth"]["corrupt"]
    chi2 = ds.pca_chi2.values[quiet]
    # the latent space has 3 dimensions: 12 components describe it, residuals are noise (+ model error)
    assert np.median(chi2) == pytest.approx(1.0, abs=0.15)
    assert np.percentile(chi2, 95) < 1.6
    # the PCA's erroneous-spectrum evidence (the refits drop these spectra; bad_spectrum_flag comes after the fit)
    limits = PCAModel.load(ctx["model"]).meta["thresholds"]
    chi2, local = ds.pca_chi2.values, ds.pca_local_z.values
    evidence = (chi2 > limits["bad_chi2_threshold"]) | (local > limits["bad_local_z_threshold"])
    np.testing.assert_array_equal(evidence, ctx["truth"]["corrupt"])
    # the reconstruction is close to the noiseless normalized truth, much closer than the noisy data
    model = PCAModel.load(ctx["model"])
    rec = project(model, ds.norm_flux.values[:50], ds.norm_ivar.values[:50])["recon_full"]
    noise = np.abs(ds.norm_flux.values[:50] - rec)[:, clean_window_mask(WAVE)].mean()
    assert noise < 0.03


def test_emission_flags_against_truth(pca_cube) -> None:
    path, ctx = pca_cube
    ds = open_cube(path)
    ew = ctx["truth"]["ew"]
    flag = ds.em_flag.values == 1
    strong = ew > 2
    assert flag[strong].mean() >= 0.95  # recall for EW > 2 Å
    assert flag[ew == 0].mean() <= 0.02  # false positives
    assert (ds.halpha_excess.values[strong] > ds.halpha_excess.values[ew == 0].max()).mean() > 0.9
    # emission spectra are reconstructed from the clean windows: pca_flux has no emission peak
    row = int(np.argmax(ew))
    core = np.argmin(np.abs(WAVE - HALPHA))
    assert ds.norm_flux.values[row, core] > 1.5 and ds.pca_flux.values[row, core] < 1.0


def test_rerun_is_skipped_and_a_new_model_reruns(pca_cube, client) -> None:
    path, ctx = pca_cube
    config = ctx["config"]
    mtime = Path(ctx["model"]).stat().st_mtime_ns
    assert build_pca_models(config, DaskEngine(path, client, progress=False)) == ctx["model"]
    assert Path(ctx["model"]).stat().st_mtime_ns == mtime  # not refitted
    stage = pca_stage(ctx["model"], config.pca, config.emission)
    assert run_stage(path, stage, client, progress=False).n_computed == 0
    changed = load_config(
        None,
        {
            **{k: v for k, v in {"cube.path": str(path)}.items()},
            "pca.n_components": 12,
            "pca.min_snr": 40.0,
            "pca.block_spectra": 128,
            "emission.n_sigma": 6.0,
        },
    )
    new_path = build_pca_models(changed, DaskEngine(path, client, progress=False))
    assert Path(new_path).stat().st_mtime_ns != mtime  # emission settings changed: the passes are refitted
    summary = run_stage(path, pca_stage(new_path, changed.pca, changed.emission), client, progress=False)
    assert summary.n_computed == summary.n_chunks == 3


def test_emission_figures_are_written(pca_cube, tmp_path: Path) -> None:
    from PIL import Image

    from survey_scale.products.figures.cube import plot_emission_diagram, plot_reconstructions

    path, ctx = pca_cube
    for figure in (
        plot_emission_diagram(path, ctx["model"], tmp_path / "em.png"),
        plot_reconstructions(path, tmp_path / "rec.png"),
    ):
        with Image.open(figure) as image:
            assert image.size[0] > 500 and image.size[1] > 400


def test_local_significance_finds_a_local_defect_that_chi2_misses() -> None:
    from survey_scale.science.emission import LOCAL_WINDOW_PIXELS, local_significance

    rng = np.random.default_rng(3)
    n, p = 200, 3000
    var = np.full((n, p), 0.01**2)
    resid = rng.normal(0.0, 0.01, (n, p))
    use = np.ones((n, p), bool)
    use[:, 1000:1100] = False  # a masked gap: no run there counts
    resid[0, 2000:2060] += 0.02  # a 2 σ offset over 60 pixels: χ² of the spectrum rises by only ~8 %
    resid[1, 1000:1100] += 1.0  # inside the masked gap: invisible
    z = local_significance(resid, var, use)
    # a pure-noise run has z ~ N(0, 1); its maximum over ~3,000 runs stays below ~5
    assert np.all(z[2:] < 5.5) and np.median(z[2:]) > 2.0
    assert z[0] > 2 * np.sqrt(LOCAL_WINDOW_PIXELS) * 0.9
    assert z[1] < 5.5
    chi2 = (resid**2 / var)[:, use[0]].mean(axis=1)
    assert chi2[0] < 1.15


def test_too_few_training_spectra_use_the_shipped_basis_then_the_kept_model(tmp_path: Path, client, caplog) -> None:
    """A handful of spectra: the shipped basis with a warning, never a failure (SPEC §4; issue 16)."""
    path = tmp_path / "cube.zarr"
    truth = synthetic_spectra(8, seed=3)
    create_cube(path, CubeConfig(shard_spectra=8, inner_chunk_spectra=8))
    resize_spec(path, 8)
    root = zarr.open_group(str(path), mode="r+")
    root["flux"][:], root["ivar"][:], root["pixmask"][:] = truth["flux"], truth["ivar"], 0
    write_column(root, "specid", np.array([f"S{i}" for i in range(8)]), {})
    write_column(root, "snr_g", truth["snr"].astype(np.float32), {})
    config = load_config(None, {"cube.path": str(path), "pca.n_components": 12})
    run_stage(path, normalize_stage(config.normalize), client, progress=False)
    engine = DaskEngine(path, client, progress=False)
    with caplog.at_level("WARNING", logger="survey_scale.stages.pca"):
        model_path = build_pca_models(config, engine)
    assert "using the basis the package ships" in caplog.text
    model = PCAModel.load(model_path)
    assert model.n_components == 12 and "fallback" in model.meta and "thresholds" in model.meta
    summary = run_stage(path, pca_stage(model_path, config.pca, config.emission), client, progress=False)
    assert summary.n_computed == 1
    ds = open_cube(path)
    assert ds.pca_coeff.shape == (8, 12) and np.isfinite(ds.pca_chi2.values).all()
    assert set(np.unique(ds.em_flag.values)) <= {0, 1}
    # a model trained on this cube's own spectra (a previous release) is kept rather than the shipped basis
    trained = PCAModel.load(model_path)
    trained.meta = {k: v for k, v in trained.meta.items() if k != "fallback"}
    trained.save(model_path)
    caplog.clear()
    with caplog.at_level("WARNING", logger="survey_scale.stages.pca"):
        assert build_pca_models(config, engine) == model_path
    assert "kept from an earlier run" in caplog.text and "fallback" not in PCAModel.load(model_path).meta


def test_resize_components_pads_with_silent_components_and_truncates() -> None:
    from survey_scale.science.pca import FALLBACK_PCA_FILE, resize_components

    model = PCAModel.load(FALLBACK_PCA_FILE)
    rng = np.random.default_rng(2)
    flux = (model.mean + 0.01 * rng.standard_normal((3, WAVE.size))).astype(np.float32)
    ivar = np.full_like(flux, 1e4)
    base = project(model, flux, ivar)
    padded = resize_components(model, model.n_components + 5)
    more = project(padded, flux, ivar)
    np.testing.assert_array_equal(more["coeff"][:, -5:], 0.0)
    np.testing.assert_allclose(more["coeff"][:, :-5], base["coeff"], rtol=1e-6)
    np.testing.assert_allclose(more["recon_clean"], base["recon_clean"], atol=1e-6)
    fewer = resize_components(model, 10)
    assert fewer.n_components == 10 and np.all(fewer.model_var_clean >= model.model_var_clean)
    np.testing.assert_allclose(project(fewer, flux, ivar)["coeff"], base["coeff"][:, :10], rtol=1e-5)


def test_as_float32_keeps_the_masks_and_the_meta(tmp_path) -> None:
    from survey_scale.science.pca import FALLBACK_PCA_FILE

    model = PCAModel.load(FALLBACK_PCA_FILE)
    model.mean = model.mean.astype(np.float64)
    small = model.as_float32()
    assert small.mean.dtype == np.float32 and small.clean.dtype == bool and small.meta == model.meta
    np.testing.assert_array_equal(small.mean, model.mean.astype(np.float32))
    reloaded = PCAModel.load(small.save(tmp_path / "small.npz"))
    assert reloaded.basis_clean.dtype == np.float32 and reloaded.n_components == model.n_components
