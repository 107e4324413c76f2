"""Emulator sets over adjoining Teff ranges and the fit that chooses among them (issue 23)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science import emulator as E
from survey_scale.science import label_fit as Pr
from survey_scale.science.emulator_set import EmulatorSet
from tests.toy_grid import toy_spectra

WAVE = wavelength_grid()
SUBSET = ("teff", "logg", "vsini", "fe_h")
RANGES = {"cool": (4000.0, 9000.0), "hot": (8000.0, 30000.0)}


def truth_spectra(labels: np.ndarray) -> np.ndarray:
    """The toy model of the 4 labels (the others at the centre of their ranges) on the common grid."""
    centre = np.array([0.5 * sum(LABEL_RANGES[n]) for n in LABEL_NAMES])
    full = np.tile(centre, (labels.shape[0], 1))
    full[:, [LABEL_NAMES.index(n) for n in SUBSET]] = labels
    return toy_spectra(full, WAVE)


def component(name: str, seed: int) -> E.Emulator:
    rng = np.random.default_rng(seed)
    lo = np.array([RANGES[name][0], 3.0, 0.0, -1.0])
    hi = np.array([RANGES[name][1], 5.0, 200.0, 0.5])
    labels = lo + (hi - lo) * rng.random((600, 4))
    grid = E.ModelGrid(labels, SUBSET, lo, hi, WAVE, truth_spectra(labels))
    return E.train(grid, "shared", hidden=(32, 32), epochs=25, patience=25, lr=5e-3, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def em_set() -> EmulatorSet:
    return EmulatorSet([component("cool", 1), component("hot", 2)], ["cool", "hot"], {"name": "toy"})


def test_set_is_one_model_continuous_across_the_overlap_and_round_trips(em_set: EmulatorSet, tmp_path: Path) -> None:
    assert em_set.label_names == SUBSET and em_set.n_pixels == WAVE.size
    np.testing.assert_array_equal(em_set.x_min[[0]], [4000.0])
    np.testing.assert_array_equal(em_set.x_max[[0]], [30000.0])
    assert em_set.teff_ranges() == {"cool": (4000.0, 9000.0), "hot": (8000.0, 30000.0)}
    np.testing.assert_allclose(
        em_set.weights(np.array([5000.0, 8000.0, 8500.0, 9000.0, 20000.0])),
        [[1, 0], [1, 0], [0.5, 0.5], [0, 1], [0, 1]],
    )
    lab = np.array([[6000.0, 4.0, 50.0, 0.0], [8500.0, 4.0, 50.0, 0.0], [15000.0, 4.0, 50.0, 0.0]])
    f = em_set.predict(lab)
    # (float32 matmuls of other batch shapes round differently: 1e-7)
    np.testing.assert_allclose(f[0], em_set.component("cool").predict(lab[:1])[0], atol=1e-6)
    np.testing.assert_allclose(f[2], em_set.component("hot").predict(lab[2:])[0], atol=1e-6)
    both = 0.5 * (em_set.component("cool").predict(lab[1:2]) + em_set.component("hot").predict(lab[1:2]))
    np.testing.assert_allclose(f[1], both[0], atol=1e-6)
    # continuous in Teff across the overlap: a small step in Teff, a small change of the spectrum
    steps = np.tile(lab[1], (3, 1))
    steps[:, 0] = [7999.0, 8000.0, 8001.0]
    assert np.abs(np.diff(em_set.predict(steps), axis=0)).max() < 5e-3
    path = em_set.save(tmp_path / "set.npz")
    back = E.load(path)
    assert isinstance(back, EmulatorSet) and back.names == ("cool", "hot") and back.meta == {"name": "toy"}
    np.testing.assert_array_equal(back.predict(lab), f)
    assert back.content_hash() == em_set.content_hash()
    with pytest.raises(KeyError, match="has cool, hot"):
        em_set.component("warm")


def test_set_refuses_components_that_do_not_fit_together(em_set: EmulatorSet, tmp_path: Path) -> None:
    cool, hot = em_set.components
    with pytest.raises(ValueError, match="ordered by their Teff"):
        EmulatorSet([hot, cool], ["hot", "cool"])
    with pytest.raises(ValueError, match="unique name"):
        EmulatorSet([cool, hot], ["a", "a"])
    # a file naming a component it does not hold: the error names the file and the component
    path = em_set.save(tmp_path / "set.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("hot/")}
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(E.EmulatorFormatError, match=r"broken.npz.*'hot'"):
        E.load(tmp_path / "broken.npz")


def test_fit_keeps_the_component_of_lowest_full_spectrum_chi2_and_reports_the_cool_star_check(
    em_set: EmulatorSet,
) -> None:
    rng = np.random.default_rng(3)
    truth = np.array(
        [[5000.0, 4.5, 20.0, 0.0], [6500.0, 4.0, 30.0, -0.5], [14000.0, 4.0, 80.0, 0.0], [20000.0, 3.8, 100.0, 0.2]]
    )
    snr = 80.0
    flux = (truth_spectra(truth) + rng.standard_normal((4, WAVE.size)) / snr).astype(np.float32)
    ivar = np.full_like(flux, snr**2)
    out = Pr.fit_labels_set(em_set, flux, ivar, WAVE, snr=np.full(4, snr))
    np.testing.assert_array_equal(out["component"], [0, 0, 1, 1])
    teff = out["labels"][:, 0]
    assert np.all(np.abs(teff - truth[:, 0]) < 0.1 * truth[:, 0])
    # each kept result is that component's own fit_labels result
    alone = Pr.fit_labels(
        em_set.component("hot"),
        flux,
        ivar,
        WAVE,
        snr=np.full(4, snr),
        bounds=(np.array([-0.5, -0.55, -0.55, -0.55]), 0.55),
    )
    np.testing.assert_array_equal(out["labels"][2:], alone["labels"][2:])
    # the cool-star check: the cool component's full fit; the hot model's chi2 is worse for cool stars
    np.testing.assert_allclose(out["teff_cool"][:2], out["full_labels"][:2, 0])
    assert np.all(out["chi2_red_cool"][:2] < out["chi2_red_hot"][:2])
    assert np.all(out["chi2_red_cool"][2:] > out["chi2_red_hot"][2:])
    assert np.all(out["teff_cool"][:2] < 7000.0)
    # the choice is by the components' full-spectrum fits (the same pixels), not the Eq. 5 combination
    np.testing.assert_array_equal(out["component"], (out["chi2_red_hot"] < out["chi2_red_cool"]).astype(np.int8))

    # one emulator and a separate cool-star emulator: the same check, by a full-spectrum fit
    single = Pr.fit_labels_set(
        em_set.component("hot"), flux, ivar, WAVE, snr=np.full(4, snr), cool_star=em_set.component("cool")
    )
    assert (single["component"] == 0).all()
    teff_cool, chi2_cool = Pr.fit_cool_star(em_set.component("cool"), flux, ivar, WAVE)
    np.testing.assert_array_equal(single["teff_cool"], teff_cool)
    np.testing.assert_array_equal(single["chi2_red_cool"], chi2_cool)
    np.testing.assert_array_equal(single["chi2_red_hot"], single["full_chi2_red"])
    none = Pr.fit_labels_set(em_set.component("hot"), flux[:1], ivar[:1], WAVE)
    assert np.isnan(none["teff_cool"]).all() and np.isnan(none["chi2_red_cool"]).all()

    # the model spectra rebuilt from the catalog's labels (11, the unfitted NaN; v sin i clipped at 0) with the
    # raw v sin i and the kept component: the fit's model_flux (cube.keep_model_flux: false)
    names = list(LABEL_NAMES)
    cube_labels = Pr.to_label_order(out, SUBSET, names)["labels"]
    rebuilt = Pr.model_spectra(em_set, cube_labels, names, out["vsini_raw"], out["component"])
    np.testing.assert_allclose(rebuilt, out["model_flux"], atol=1e-6)
    nan_row = cube_labels.copy()
    nan_row[1, 0] = np.nan  # no fit: no model
    assert np.isnan(Pr.model_spectra(em_set, nan_row, names, out["vsini_raw"], out["component"])[1]).all()
