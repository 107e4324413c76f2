"""Model grids for the emulator: sampling of P2 Table 1, normalization of SPEC §3, file round trip."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.model_grid import load_model_grid, save_model_grid
from survey_scale.science.normalize import normalize_continuum
from survey_scale.synth import make_model_grid, sample_labels, synthesize
from survey_scale.synth.synthetic_grid import logg_min, logg_tams, logg_zams


@pytest.fixture(scope="module")
def grid():
    return make_model_grid(24, seed=5)


def test_grid_is_normalized_like_observed_spectra(grid):
    flux = synthesize(grid.labels, kind="flux")
    expected = normalize_continuum(flux, np.ones_like(flux))[0]
    np.testing.assert_allclose(grid.flux, expected, rtol=0, atol=1e-6)
    # and it is not the true-continuum normalization
    assert np.abs(grid.flux - synthesize(grid.labels)).max() > 0.01


def test_grid_metadata_and_ranges(grid):
    assert grid.label_names == LABEL_NAMES
    np.testing.assert_array_equal(grid.label_min, [LABEL_RANGES[k][0] for k in LABEL_NAMES])
    np.testing.assert_array_equal(grid.label_max, [LABEL_RANGES[k][1] for k in LABEL_NAMES])
    np.testing.assert_array_equal(grid.wave, wavelength_grid())
    assert grid.flux.shape == (24, 3802) and grid.flux.dtype == np.float32
    assert {"producer", "seed", "resolution", "normalization", "sampling", "lsf"} <= set(grid.meta)
    assert grid.meta["seed"] == 5 and grid.meta["resolution"] == 1800.0
    assert "normalize_continuum" in grid.meta["normalization"]


def test_grid_round_trips_through_the_file_format(grid, tmp_path):
    loaded = load_model_grid(save_model_grid(grid, tmp_path / "grid.npz"))
    for key in ("labels", "label_min", "label_max", "wave", "flux"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(grid, key))
    assert loaded.label_names == grid.label_names
    assert loaded.meta == grid.meta


def test_grid_is_reproducible_from_its_seed(grid):
    np.testing.assert_array_equal(make_model_grid(24, seed=5).flux, grid.flux)
    again = make_model_grid(24, seed=5, chunk_size=10)
    np.testing.assert_array_equal(again.labels, grid.labels)
    # the BLAS products of the normalization may round differently for another batch size
    np.testing.assert_allclose(again.flux, grid.flux, rtol=0, atol=1e-5)
    assert not np.array_equal(make_model_grid(3, seed=6).labels, grid.labels[:3])


def test_label_sampling_follows_a_main_sequence_to_supergiant_distribution():
    labels = sample_labels(20000, np.random.default_rng(0))
    col = {k: i for i, k in enumerate(LABEL_NAMES)}
    for name, (lo, hi) in LABEL_RANGES.items():
        assert lo <= labels[:, col[name]].min() and labels[:, col[name]].max() <= hi, name
    teff, logg = labels[:, col["teff"]], labels[:, col["logg"]]
    assert np.mean((logg > 3.4) & (logg < 4.5)) > 0.6
    assert np.all(logg >= logg_min(teff) - 1e-12)
    assert np.mean(logg < 2.5) > 0.05
    # the lower limit of log g rises with T_eff: no O-star below log g 2.5
    hot = teff > 30000
    assert logg[hot].min() > 2.5 and logg[teff < 9000].min() < 1.0
    assert np.all(np.diff(logg_min(np.array([7000.0, 10000.0, 20000.0, 45000.0]))) > 0)
    assert np.all(logg_tams(teff) < logg_zams(teff))
    # log-uniform T_eff: as many stars per decade at the hot and cool ends
    lt = np.log10(teff)
    assert abs(np.mean(lt < np.log10(7000 * 2)) - np.log10(2) / np.log10(45000 / 7000)) < 0.02
