"""The physics-based model grid from a Cannon model (survey_scale.synth.cannon_grid; issue 16).

The real model file (27 MB, thedoppler's) is not needed: a small Cannon model of the same format with one
known absorption line tests the reading, the label scaling, air → vacuum, rotation and LSF, and the grid.
"""

from __future__ import annotations

import hashlib
import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.special

from survey_scale.core.wavelength import air_to_vacuum, wavelength_grid
from survey_scale.science.model_grid import ModelGrid
from survey_scale.science.normalize import normalize_continuum
from survey_scale.synth import cannon_grid as C
from survey_scale.synth.spectrum import OVERSAMPLE, broaden_fine, fine_grid, lsf_sigma_pixels, rotation_kernel

WAVE = wavelength_grid()
LINE_AIR = 5300.0
LINE_SIGMA = 0.8
TERMS = [[(0, 1)], [(1, 1)], [(2, 1)], [(0, 2.0)]]


def _training_labels() -> np.ndarray:
    teff = [8000.0, 12000.0, 20000.0, 30000.0, 40000.0]
    return np.array(list(itertools.product(teff, [2.5, 3.5, 4.5, 5.0], [-2.5, -1.0, 0.0, 0.5])), dtype=np.float32)


def _state(labels: np.ndarray) -> dict:
    """A Cannon model state: normalized flux 1 − (0.3 + 0.1 x_Teff) g(λ), x_Teff the scaled Teff; flat continuum."""
    disp = np.arange(3500.0, 9400.0, 0.1)
    g = np.exp(-0.5 * ((disp - LINE_AIR) / LINE_SIGMA) ** 2)
    theta = np.zeros((disp.size, len(TERMS) + 1))
    theta[:, 0] = 1.0 - 0.3 * g
    theta[:, 1] = -0.1 * g
    cont_disp = np.geomspace(3000.0, 18000.0, 200)
    vec = ("PolynomialVectorizer", {"label_names": ("TEFF", "LOGG", "FEH"), "terms": TERMS, "metadata": {}})
    continuum = {
        "theta": np.zeros((cont_disp.size, len(TERMS) + 1)),
        "dispersion": cont_disp,
        "vectorizer": vec,
        "training_set_labels": labels,
        "logflux": True,
        "wavevac": False,
    }
    return {
        "theta": theta,
        "dispersion": disp,
        "vectorizer": vec,
        "training_set_labels": labels,
        "continuum": continuum,
        "wavevac": False,
        "regularization": np.int64(0),
        "fwhm": 0.001,
    }


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cannon") / C.CANNON_MODEL_FILE
    path.write_bytes(pickle.dumps(_state(_training_labels())))
    return path


SIDE_EFFECTS: list[str] = []


def _record(text: str) -> None:
    SIDE_EFFECTS.append(text)


class _Payload:
    def __reduce__(self):
        return (_record, ("executed",))


def test_reads_the_model_and_scales_labels_as_thecannon(model_file: Path) -> None:
    model = C.read_cannon_model(model_file)
    assert model.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    labels = _training_labels().astype(np.float64)
    # thecannon: fiducial = median, scale = 2.5-97.5 percentile range of the training labels
    np.testing.assert_allclose(model.flux.fiducials, np.median(labels, axis=0))
    np.testing.assert_allclose(model.flux.scales, np.ptp(np.percentile(labels, [2.5, 97.5], axis=0), axis=0))
    x = (np.array([[20000.0, 4.0, -0.5]]) - model.flux.fiducials) / model.flux.scales
    np.testing.assert_allclose(model.flux.design(np.array([[20000.0, 4.0, -0.5]])), [[1, *x[0], x[0, 0] ** 2]])
    peak = np.argmin(np.abs(model.flux.dispersion - LINE_AIR))
    assert model.flux(np.array([[20000.0, 4.0, -0.5]]))[0, peak] == pytest.approx(1 - 0.3 - 0.1 * x[0, 0])


def test_refuses_a_pickle_naming_any_other_global(tmp_path: Path) -> None:
    state = _state(_training_labels())
    state["theta"] = _Payload()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(state))
    with pytest.raises(C.CannonModelError, match="is not allowed"):
        C.read_cannon_model(path)
    assert SIDE_EFFECTS == []  # refused before the callable could run
    for payload in (pickle.dumps(eval), pickle.dumps(np.load), pickle.dumps(Path("x"))):
        with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
            C.safe_load_pickle(payload)
    # arrays, dtypes and numpy scalars are what the unpickler admits
    back = C.safe_load_pickle(pickle.dumps({"a": np.arange(3.0), "s": np.float32(2.5), "t": ("x", 1)}))
    assert back["s"] == np.float32(2.5) and back["a"].tolist() == [0.0, 1.0, 2.0]


def test_refuses_object_arrays_and_unreadable_files(tmp_path: Path) -> None:
    state = _state(_training_labels())
    state["fwhm"] = np.array([1, "a"], dtype=object)
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps(state))
    with pytest.raises(C.CannonModelError, match="Python objects"):
        C.read_cannon_model(path)
    with pytest.raises(C.CannonModelError, match="pip download thedoppler"):
        C.read_cannon_model(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(C.CannonModelError, match=r"junk\.pkl"):
        C.read_cannon_model(tmp_path / "junk.pkl")


def test_spectra_are_in_vacuum_broadened_and_normalized_like_observed_ones(model_file: Path) -> None:
    model = C.read_cannon_model(model_file)
    labels = np.array([[20000.0, 4.0, 0.0, -0.5], [20000.0, 4.0, 200.0, -0.5]])
    flux = C.cannon_model_spectra(model, labels)
    assert flux.shape == (2, WAVE.size) and flux.dtype == np.float32
    # reference: the line at its vacuum wavelength (+1.47 Å), Gaussian LSF of R = 1800 in quadrature (R of
    # the returned pixels, pixel integration included, as the synthesizer's), then the pipeline's §3
    # normalization
    x = (20000.0 - model.flux.fiducials[0]) / model.flux.scales[0]
    ew = (0.3 + 0.1 * x) * LINE_SIGMA * np.sqrt(2 * np.pi)
    centre = float(air_to_vacuum(LINE_AIR))
    pixel = centre * np.log(10) * 1e-4
    sigma = np.sqrt(LINE_SIGMA**2 + (centre / 1800.0 / (2 * np.sqrt(2 * np.log(2)))) ** 2 - pixel**2 / 12)
    edges = 10.0 ** (np.log10(WAVE[0]) + 1e-4 * (np.arange(WAVE.size + 1) - 0.5))
    cdf = 0.5 * (1 + scipy.special.erf((edges - centre) / (sigma * np.sqrt(2))))
    line = 1.0 - ew * np.diff(cdf) / np.diff(edges)
    reference = normalize_continuum(line[None, :], np.ones((1, WAVE.size)))[0][0]
    np.testing.assert_allclose(flux[0], reference, atol=1.5e-3)
    # rotation spreads the line: shallower, same area relative to the same pseudo-continuum treatment
    near = np.abs(WAVE - centre) < 30
    assert flux[1][near].min() > flux[0][near].min() + 0.05
    np.testing.assert_allclose((1 - flux[1][near]).sum(), (1 - flux[0][near]).sum(), rtol=0.1)
    with pytest.raises(ValueError, match="vsini"):
        C.cannon_model_spectra(model, [[20000.0, 4.0, -1.0, 0.0]])


def test_broaden_fine_conserves_area_and_adds_the_kernel_variances() -> None:
    fg = fine_grid()
    k = np.arange(fg.wave.size)
    depth = np.zeros((2, fg.wave.size), np.float32)
    depth[:, 6000] = 1.0  # a delta in one sub-pixel
    out = broaden_fine(depth, np.array([0.0, 150.0]), np.array([1800.0, 1800.0]))
    area = out.sum(axis=1)
    np.testing.assert_allclose(area, 1.0, rtol=1e-4)
    near = np.abs(k - 6000) < 60  # beyond, float32 FFT round-off (1e-8) times a large lever arm
    var = (out[:, near] * (k[near] - 6000.0) ** 2).sum(axis=1) / area
    # the LSF variance minus the pixel box (added back by fine_to_pixels) and the sub-pixel box
    lsf = OVERSAMPLE**2 * (lsf_sigma_pixels(np.array([1800.0])) ** 2 - 1 / 12) - 1 / 12
    rot = rotation_kernel(np.array([150.0]), fg.n_fft)[0]
    off = np.where(np.arange(fg.n_fft) < fg.n_fft // 2, np.arange(fg.n_fft), np.arange(fg.n_fft) - fg.n_fft)
    rot_var = float((rot * off**2).sum() / rot.sum())
    np.testing.assert_allclose(var, [lsf[0], lsf[0] + rot_var], rtol=2e-3)


def test_grid_in_the_model_grid_format_and_deterministic(model_file: Path) -> None:
    model = C.read_cannon_model(model_file)
    labels = C.sample_cannon_labels(model, 50, np.random.default_rng(1))
    assert model.in_hull(labels[:, [0, 1, 3]]).all()
    grid = C.make_cannon_model_grid(model_file, 12, seed=3)
    again = C.make_cannon_model_grid(model_file, 12, seed=3)
    assert isinstance(grid, ModelGrid) and grid.label_names == C.GRID_LABELS
    np.testing.assert_array_equal(grid.flux, again.flux)
    np.testing.assert_array_equal(grid.wave, WAVE)
    assert grid.meta["model_sha256"] == model.sha256 and grid.meta["seed"] == 3
    assert np.all((grid.labels >= grid.label_min) & (grid.labels <= grid.label_max))


def test_joined_spectra_bridge_the_models_between_their_inner_nodes(model_file: Path, tmp_path: Path) -> None:
    """Issue 23: below 7,500 K the cool model, above 9,000 K the hot one; in between a blend linear in T_eff of the
    two models at those nodes — neither model at the 8,000 K edge they share (SEAM_TEFF says why)."""
    cool_labels = _training_labels().copy()
    cool_labels[:, 0] = np.repeat([3500.0, 5000.0, 7000.0, 7500.0, 8000.0], cool_labels.shape[0] // 5)
    cool_path = tmp_path / C.COOL_MODEL_FILE
    cool_path.write_bytes(pickle.dumps(_state(cool_labels)))
    cool, hot = C.read_cannon_model(cool_path), C.read_cannon_model(model_file)
    lo, hi = C.SEAM_TEFF
    assert (lo, hi) == (7500.0, 9000.0)

    def spectra(model, teff: float) -> np.ndarray:
        return C.cannon_model_spectra(model, np.array([[teff, 4.0, 50.0, 0.0]]))[0]

    teffs = [7000.0, lo, 8000.0, 8250.0, hi, 9500.0]
    joined = C.joined_model_spectra(cool, hot, np.array([[t, 4.0, 50.0, 0.0] for t in teffs]))
    np.testing.assert_allclose(C.seam_weight(np.array(teffs)), [0, 0, 1 / 3, 0.5, 1, 1])
    np.testing.assert_allclose(joined[0], spectra(cool, 7000.0), atol=1e-6)
    np.testing.assert_allclose(joined[1], spectra(cool, lo), atol=1e-6)
    np.testing.assert_allclose(joined[2], (2 * spectra(cool, lo) + spectra(hot, hi)) / 3, atol=1e-6)
    np.testing.assert_allclose(joined[3], 0.5 * (spectra(cool, lo) + spectra(hot, hi)), atol=1e-6)
    np.testing.assert_allclose(joined[4], spectra(hot, hi), atol=1e-6)
    np.testing.assert_allclose(joined[5], spectra(hot, 9500.0), atol=1e-6)
    # the two models differ at the bridge's ends, so the bridge is not a copy of either
    assert np.abs(spectra(cool, lo) - spectra(hot, hi)).max() > 1e-3
