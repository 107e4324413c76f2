"""Every stage's chunk function called directly on small numpy arrays: no Dask client, no Zarr cube.

The stage contract (:mod:`survey_scale.engine.contracts`) promises that a chunk function is a pure function
of ``(inputs, params, ctx)``; these tests hold each stage to it (shapes, dtypes, rejects, a little science),
and check that importing the stage modules pulls in neither ``distributed`` nor ``zarr``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import EmissionConfig, FitConfig, NormalizeConfig, PCAConfig
from survey_scale.core.fit_flags import FLAG_NO_DATA
from survey_scale.core.masks import BALMER_LINES, clean_window_mask
from survey_scale.core.wavelength import N_WAVE, PIXMASK_BITS, wavelength_grid
from survey_scale.engine.contracts import ChunkContext, StageResult
from survey_scale.io.lamost import read_lamost
from survey_scale.science import emulator as E
from survey_scale.science.emission import derive_thresholds
from survey_scale.science.ingest import METADATA
from survey_scale.science.pca import (
    PCAModel,
    add_results,
    diagnostics,
    gram_block,
    moments_block,
    moments_to_mean_std,
    pca_from_gram,
)
from survey_scale.science.resample import C_KMS, rest_frame
from survey_scale.stages.fit import fit_chunk, fit_stage
from survey_scale.stages.ingest import resample_chunk
from survey_scale.stages.normalize import normalize_chunk, normalize_stage
from survey_scale.stages.pca import pca_chunk, pca_stage
from tests.toy_grid import toy_model_grid

WAVE = wavelength_grid()
# real files of ../shared/data/lamost (the ``lamost_dir`` fixture); not imported from conftest, which imports Dask
REAL_FILES = (
    "spec-55859-F5902_sp01-001.fits.gz",
    "spec-55859-F5902_sp01-002.fits.gz",
    "spec-55916-B5591606_sp01-001.fits",
)
H_ALPHA = BALMER_LINES["H_alpha"]


def gaussian(center: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((WAVE - center) / sigma) ** 2)


def ctx(n: int, **models) -> ChunkContext:
    return ChunkContext(start=0, stop=n, models=models)


# --- normalize ---------------------------------------------------------------------------------------------


def test_normalize_chunk_recovers_lines_on_a_flat_continuum() -> None:
    stage = normalize_stage(NormalizeConfig())
    # lines on the masked Balmer windows: the pseudo-continuum of a flat spectrum stays exactly flat
    lines = 1.0 - 0.6 * gaussian(BALMER_LINES["H_beta"], 3.0) - 0.5 * gaussian(H_ALPHA, 3.0)
    level = np.array([100.0, 7.5, 2000.0, 100.0, 100.0])
    n = level.size
    flux = (level[:, None] * lines[None, :]).astype(np.float32)
    sigma = 0.01 * level[:, None] * np.ones((1, N_WAVE))
    ivar = (1.0 / sigma**2).astype(np.float32)
    pixmask = np.zeros((n, N_WAVE), np.uint8)
    ivar[3] = 0.0  # no usable pixel at all
    # only the 300 bluest pixels are covered: the pixmask alone (ivar kept > 0) must take the others out
    pixmask[4, 300:] = PIXMASK_BITS["NO_COVERAGE"]

    result = normalize_chunk({"flux": flux, "ivar": ivar, "pixmask": pixmask}, stage.params, ctx(n))

    assert isinstance(result, StageResult)
    assert {o.name for o in stage.outputs} == set(result.outputs)
    for out in stage.outputs:
        value = result.outputs[out.name]
        assert value.dtype == np.dtype(out.dtype), out.name
        assert value.shape == ((n, N_WAVE) if out.dims == ("spec", "wave") else (n,)), out.name
    norm_flux, norm_ivar = result.outputs["norm_flux"], result.outputs["norm_ivar"]
    good = slice(0, 3)
    # the lines come back whatever the flux level, and norm_flux is 1 away from them
    np.testing.assert_allclose(norm_flux[good], np.broadcast_to(lines, (3, N_WAVE)), atol=1e-5)
    far = np.abs(WAVE - BALMER_LINES["H_beta"]) > 30
    far &= np.abs(WAVE - H_ALPHA) > 30
    np.testing.assert_allclose(norm_flux[good][:, far], 1.0, atol=1e-5)
    near = np.abs(WAVE - H_ALPHA) < 5
    assert norm_flux[0, near].min() == pytest.approx(0.5, abs=0.01)  # the deepest pixel is 0.5 Å off centre
    # norm_ivar = ivar * continuum**2: 1 / 0.01**2 for every level
    np.testing.assert_allclose(norm_ivar[good], 1e4, rtol=1e-4)

    rejected = {row: (code, reason) for row, code, reason in result.rejects}
    assert set(rejected) == {3, 4}
    assert all(code == "no_continuum" for code, _ in rejected.values())
    assert all("pixels" in reason for _, reason in rejected.values())
    assert np.all(norm_ivar[3] == 0) and np.all(norm_ivar[4, 300:] == 0)
    assert (norm_ivar[4] > 0).sum() < stage.params["min_pixels"]

    clean_fraction = result.outputs["clean_fraction"]
    assert np.all((clean_fraction >= 0) & (clean_fraction <= 1))
    np.testing.assert_allclose(clean_fraction[good], 1.0)
    assert clean_fraction[3] == 0.0 and 0.0 <= clean_fraction[4] < 0.1


# --- pca ---------------------------------------------------------------------------------------------------

PCA_K = 8
PCA_SNR = 100.0
PCA_TRAIN = 1000  # enough rows that the components are not fitted to the training noise (3,802 pixels)


def _line_mix() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 absorption lines in the clean windows plus Hα; their depths are linear in three latent factors."""
    rng = np.random.default_rng(11)
    clean = WAVE[clean_window_mask(WAVE) & (WAVE > 3900) & (WAVE < 8800)]
    centres = np.append(np.sort(rng.choice(clean, 40, replace=False)), H_ALPHA)
    base = rng.uniform(0.2, 0.4, centres.size)
    weights = rng.normal(0.0, 0.15, (3, centres.size))
    return base, weights, np.stack([gaussian(c, 5.0) for c in centres])


_BASE, _WEIGHTS, _PROFILES = _line_mix()


def synthetic_normalized(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized spectra (flux, ivar) at S/N 100 and their noise-free truth: a smooth random line mix."""
    rng = np.random.default_rng(seed)
    latent = rng.uniform(-1.0, 1.0, (n, 3))
    truth = 1.0 - (_BASE + latent @ _WEIGHTS) @ _PROFILES
    flux = truth + rng.standard_normal(truth.shape) / PCA_SNR
    ivar = np.full(truth.shape, PCA_SNR**2)
    return flux.astype(np.float32), ivar.astype(np.float32), truth.astype(np.float32)


@pytest.fixture(scope="module")
def pca_model() -> PCAModel:
    """A small PCA fitted as :func:`survey_scale.stages.pca.fit_pca` does, on two blocks without the engine."""
    flux, ivar, _ = synthetic_normalized(PCA_TRAIN, seed=1)
    half = PCA_TRAIN // 2
    blocks = [
        {"norm_flux": flux[:half], "norm_ivar": ivar[:half]},
        {"norm_flux": flux[half:], "norm_ivar": ivar[half:]},
    ]
    moments = add_results(*(moments_block(b, {}) for b in blocks))
    mean, std, noise = moments_to_mean_std(moments)
    gram = add_results(*(gram_block(b, {"mean": mean, "std": std}) for b in blocks))
    clean = clean_window_mask(WAVE)
    model = pca_from_gram(gram["gram"], int(gram["rows"]), mean, std, noise, clean, PCA_K, {"pass": 1})
    _, stats = diagnostics(model, flux, ivar)
    model.meta["thresholds"] = derive_thresholds(stats, 20.0, 4.0)
    return model


def test_pca_chunk_outputs_flags_and_rejects(pca_model: PCAModel) -> None:
    stage = pca_stage("unused-model.npz", PCAConfig(n_components=PCA_K), EmissionConfig())
    flux, ivar, truth = synthetic_normalized(8, seed=2)
    emission = 4  # a strong Hα emission line on top of the absorption
    flux[emission] += gaussian(H_ALPHA, 3.0).astype(np.float32)
    no_data = 6
    ivar[no_data] = 0.0
    defect = 7  # a 5 % flux jump over 150 clean-window pixels (an erroneous spectrum, P1 App. A)
    jump = np.flatnonzero(clean_window_mask(WAVE) & (WAVE > 5100))[:150]
    flux[defect, jump] *= 1.05
    n = flux.shape[0]

    result = pca_chunk({"norm_flux": flux, "norm_ivar": ivar}, stage.params, ctx(n, pca=pca_model))

    out = result.outputs
    assert {o.name for o in stage.outputs} == set(out)
    assert out["pca_coeff"].shape == (n, PCA_K) and out["pca_flux"].shape == (n, N_WAVE)
    for o in stage.outputs:
        assert out[o.name].dtype == np.dtype(o.dtype), o.name
        assert out[o.name].shape[0] == n, o.name
        if o.per_spectrum:
            assert out[o.name].shape == (n,), o.name
    assert out["em_flag"].dtype == np.int8 and set(np.unique(out["em_flag"])) <= {0, 1}
    assert "bad_spectrum_flag" not in out  # combined with the fit's evidence after the fit (stage bad_spectra)

    plain = np.array([i for i in range(n) if i not in (emission, no_data, defect)])
    assert out["em_flag"][emission] == 1
    assert np.all(out["em_flag"][plain] == 0)
    limits = pca_model.meta["thresholds"]
    assert np.all(out["pca_local_z"][plain] < limits["bad_local_z_threshold"])
    assert np.all(out["pca_chi2"][plain] < limits["bad_chi2_threshold"])
    assert out["pca_local_z"][defect] > limits["bad_local_z_threshold"] and out["em_flag"][defect] == 0
    assert out["halpha_excess"][emission] > 0.3 > np.abs(out["halpha_excess"][plain]).max()
    # plain spectra: the denoised spectrum follows the noise-free truth much better than the noise
    assert np.abs(out["pca_flux"][plain] - truth[plain]).std() < 0.5 / PCA_SNR
    np.testing.assert_allclose(np.nanmedian(out["pca_chi2"][plain]), 1.0, atol=0.2)
    # the emission star is reconstructed from the clean windows: no emission line in its pca_flux
    peak = np.argmin(np.abs(WAVE - H_ALPHA))
    assert flux[emission, peak] - out["pca_flux"][emission, peak] > 0.8
    assert abs(out["pca_flux"][emission, peak] - truth[emission, peak]) < 0.05

    assert [(row, code) for row, code, _ in result.rejects] == [(no_data, "no_pca_diagnostics")]
    assert np.isnan(out["halpha_excess"][no_data])


# --- fit ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_emulator() -> E.Emulator:
    """A small 11-label emulator on the whole common grid (the toy hot-star grid, as ``test_fit.py`` builds it)."""
    grid = toy_model_grid(800, seed=5, wave=WAVE)
    return E.train(grid, "shared", hidden=(24, 24), epochs=25, patience=10, lr=5e-3, batch_size=32, seed=0)


def test_fit_chunk_outputs_and_no_fit_reject(toy_emulator: E.Emulator) -> None:
    em = toy_emulator
    stage = fit_stage(Path("unused-emulator.npz"), tuple(em.label_names), FitConfig(device="cpu", max_iter=30))
    rng = np.random.default_rng(8)
    n, snr, no_data = 6, 80.0, 2
    truth = em.unscale(rng.uniform(-0.3, 0.3, (n, em.n_labels)))
    flux = (em.predict(truth) + rng.standard_normal((n, N_WAVE)) / snr).astype(np.float32)
    ivar = np.full_like(flux, snr**2)
    ivar[no_data] = 0.0
    inputs = {
        "norm_flux": flux,
        "norm_ivar": ivar,
        "pixmask": np.zeros(flux.shape, np.uint8),
        "snr_g": np.full(n, snr, np.float32),
    }

    result = fit_chunk(inputs, stage.params, ctx(n, emulator=em))

    out = result.outputs
    assert {o.name for o in stage.outputs} == set(out)
    sizes = {"spec": n, "wave": N_WAVE, "label": em.n_labels, "label2": em.n_labels}
    for o in stage.outputs:
        assert out[o.name].shape == tuple(sizes[d] for d in o.dims), o.name
        # the runner casts to the declared dtype; the kind must already match
        assert out[o.name].dtype.kind == np.dtype(o.dtype).kind, o.name

    good = np.arange(n) != no_data
    for name in ("labels", "label_err", "labels_full", "chi2_red", "model_flux"):
        assert np.all(np.isfinite(out[name][good])), name
    assert np.all(out["label_err"][good] >= 0)
    np.testing.assert_allclose(out["label_cov"][good], np.swapaxes(out["label_cov"][good], 1, 2), rtol=1e-5)
    for name in (o.name for o in stage.outputs if o.name.startswith("corr_")):
        assert np.all(np.abs(out[name][good]) <= 1.0 + 1e-6), name

    # the fit reaches the optimum: its model spectrum fits the data at least as well as the truth does
    def rms(model: np.ndarray) -> np.ndarray:
        return np.sqrt(np.mean(((model - flux[good]) * snr) ** 2, axis=1))

    assert np.all(rms(out["model_flux"][good]) <= rms(em.predict(truth[good])) + 0.01)
    # and recovers teff and logg (the toy grid's best-measured labels) within a few formal errors
    pulls = (out["labels"][good] - truth[good]) / out["label_err"][good]
    assert np.median(np.abs(pulls[:, :2])) < 2.0
    assert np.all(out["fit_n_iter"][good] >= 1)

    assert [(row, code) for row, code, _ in result.rejects] == [(no_data, "no_fit")]
    assert np.all(np.isnan(out["labels"][no_data]))
    assert out["fit_flags"][no_data] & FLAG_NO_DATA
    assert not np.any(out["fit_flags"][good] & FLAG_NO_DATA)


# --- ingest (resample) ---------------------------------------------------------------------------------------


def _plan(spectra: list) -> pd.DataFrame:
    """A plan with every metadata column ("x" / 1 in the plan's dtypes) and the header's radial velocity."""
    n = len(spectra)
    plan = pd.DataFrame(
        {c.name: (["x"] * n if c.dtype == "str" else np.ones(n, dtype=c.dtype)) for c in METADATA}, index=range(n)
    )
    plan["specid"] = [f"S{i:03d}" for i in range(n)]
    plan["obsid"] = np.arange(100, 100 + n, dtype=np.int64)
    plan["rv"] = np.array([sp.get("Z") * C_KMS for sp in spectra], dtype=np.float32)
    plan.index = range(40, 40 + n)  # as sliced from a larger plan: the chunk must not rely on the index
    return plan


def test_resample_chunk_on_real_files(lamost_dir: Path) -> None:
    names = REAL_FILES  # DR9 coadd, DR9 coadd, DR2 float64 image
    spectra = [read_lamost(lamost_dir / name) for name in names]
    plan = _plan(spectra)
    n = len(spectra)

    result = resample_chunk(
        {"plan": plan, "spectra": spectra}, {"min_good_fraction": 0.5, "mask_andmask": True}, ctx(n)
    )

    out = result.outputs
    assert result.rejects == []
    assert out["flux"].shape == out["ivar"].shape == out["pixmask"].shape == (n, N_WAVE)
    assert (out["flux"].dtype, out["ivar"].dtype, out["pixmask"].dtype) == (np.float32, np.float32, np.uint8)
    assert np.all(np.isfinite(out["flux"])) and np.all(out["ivar"] >= 0)
    assert np.all((out["ivar"] > 0).mean(axis=1) > 0.7)
    coverage = out["coverage"]
    assert coverage.shape == (n,) and np.all((coverage > 0) & (coverage <= 1))
    # coverage is the fraction of grid pixels not flagged NO_COVERAGE (not the plan's placeholder 1)
    covered = (out["pixmask"] & PIXMASK_BITS["NO_COVERAGE"]) == 0
    np.testing.assert_allclose(coverage, covered.mean(axis=1), rtol=1e-6)
    assert np.all(out["ivar"][~covered] == 0)
    # the resampled flux is the input shifted to the rest frame by the plan's rv (rv = 0 would be off by 2-4 %)
    for i, (sp, rv) in enumerate(zip(spectra, plan["rv"])):
        ok = (out["ivar"][i] > 0) & (np.abs(WAVE - H_ALPHA) > 20)
        expected = np.interp(WAVE[ok], rest_frame(sp.wavelength, float(rv)), sp.flux)
        assert np.median(np.abs(out["flux"][i, ok] - expected)) < 1e-3 * np.median(np.abs(expected)), names[i]
    # every metadata column is passed through from the plan (coverage computed)
    for col in METADATA:
        assert col.name in out, col.name
        assert len(out[col.name]) == n, col.name
        if col.name != "coverage":
            np.testing.assert_array_equal(out[col.name], plan[col.name].to_numpy(), err_msg=col.name)
    assert list(out["specid"]) == ["S000", "S001", "S002"]


def test_resample_chunk_keeps_a_qso_in_the_observed_frame(lamost_dir: Path) -> None:
    """A QSO (rv NaN in the plan, issue 23) is resampled unshifted, not rejected and not all NaN."""
    qso = read_lamost(lamost_dir / "spec-60591-LN042429N340750BM01_sp01-005.fits.gz")
    assert qso.get("CLASS") == "QSO"
    plan = _plan([qso])
    plan["rv"] = np.float32(np.nan)

    result = resample_chunk({"plan": plan, "spectra": [qso]}, {"min_good_fraction": 0.5, "mask_andmask": True}, ctx(1))

    out = result.outputs
    assert result.rejects == [] and np.isnan(out["rv"][0]) and out["coverage"][0] > 0.5
    ok = out["ivar"][0] > 0
    assert ok.mean() > 0.5
    expected = np.interp(WAVE[ok], qso.wavelength, qso.flux)  # observed frame: rv taken as 0
    assert np.median(np.abs(out["flux"][0, ok] - expected)) < 1e-3 * np.median(np.abs(expected))


# --- imports ---------------------------------------------------------------------------------------------------


def test_stage_modules_import_neither_distributed_nor_zarr() -> None:
    code = (
        "import sys\n"
        "import survey_scale.stages.normalize, survey_scale.stages.pca, survey_scale.stages.fit\n"
        "import survey_scale.stages.ingest\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('distributed', 'zarr')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
