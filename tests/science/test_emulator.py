"""Emulator: formats (own and public Payne layouts), forward, Jacobian, training (SPEC §5.1)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.core.wavelength import N_WAVE, wavelength_grid
from survey_scale.science import emulator as E
from survey_scale.science.model_grid import ModelGrid
from survey_scale.synth import make_model_grid
from tests.toy_grid import toy_model_grid, toy_spectra


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def leaky(z):
    return np.where(z > 0, z, 0.01 * z)


def random_emulator(arch, n_pix=57, n_lab=4, hidden=(6, 5), activation="sigmoid", seed=0):
    rng = np.random.default_rng(seed)
    sizes = (n_lab, *hidden)
    ws, bs = [], []
    for fan_in, fan_out in itertools.pairwise(sizes):
        shape = (n_pix, fan_out, fan_in) if arch == "perpixel" else (fan_out, fan_in)
        ws.append(rng.normal(0, 1.0 / np.sqrt(fan_in), shape))
        bs.append(rng.normal(0, 0.3, shape[:-1]))
    ow = rng.normal(0, 0.2, (n_pix, hidden[-1]))
    ob = 1.0 + rng.normal(0, 0.05, n_pix)
    x_min = rng.uniform(-2, 0, n_lab)
    x_max = x_min + rng.uniform(0.5, 3, n_lab)
    names = [f"l{i}" for i in range(n_lab)]
    wave = np.linspace(4000.0, 4500.0, n_pix)
    return E.Emulator(arch, activation, ws, bs, ow, ob, x_min, x_max, names, wave, {"note": "test"})


# ------------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("arch", ["perpixel", "shared"])
def test_save_load_roundtrip_bit_identical(tmp_path, arch):
    em = random_emulator(arch)
    path = em.save(tmp_path / "em.npz")
    back = E.load(path)
    labels = em.unscale(np.random.default_rng(1).uniform(-0.5, 0.5, (9, em.n_labels)))
    assert np.array_equal(em.predict(labels), back.predict(labels))
    assert back.label_names == em.label_names and back.architecture == arch
    assert np.array_equal(back.x_min, em.x_min) and np.array_equal(back.x_max, em.x_max)
    assert np.array_equal(back.wave, em.wave) and back.meta == em.meta
    assert back.content_hash() == em.content_hash()
    # no pickled objects: the file reads with allow_pickle=False and has a JSON header
    with np.load(path, allow_pickle=False) as z:
        head = json.loads(str(z["header"]))
    assert head["format"] == E.FORMAT and head["architecture"] == arch and head["hidden"] == [6, 5]


def _payne_file(tmp_path, name, arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_public_payne_perpixel_one_hidden(tmp_path):
    rng = np.random.default_rng(2)
    P, H, L = N_WAVE, 3, 11
    w0, b0 = rng.normal(size=(P, H, L)), rng.normal(size=(P, H))
    w1, b1 = rng.normal(size=(P, H)), rng.normal(size=P)
    x_min, x_max = np.zeros(L), np.arange(1.0, L + 1)
    path = _payne_file(
        tmp_path,
        "pp1.npz",
        dict(w_array_0=w0, w_array_1=w1, b_array_0=b0, b_array_1=b1, x_min=x_min, x_max=x_max),
    )
    em = E.load(path)
    assert em.architecture == "perpixel" and em.hidden == (3,)
    assert em.label_names == LABEL_NAMES  # 11 labels: the P2 order
    assert np.array_equal(em.wave, wavelength_grid())  # 3802 pixels: the common grid by default
    lab = x_min + (x_max - x_min) * rng.random((3, L))
    for i in range(3):
        x = (lab[i] - x_min) / (x_max - x_min) - 0.5
        # the public Payne code, verbatim in spirit
        inside = np.einsum("ijk,k->ij", w0, x) + b0
        ref = np.einsum("ij,ij->i", w1, sigmoid(inside)) + b1
        np.testing.assert_allclose(em.predict(lab[i]), ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("transposed", [False, True])
def test_load_public_payne_perpixel_two_hidden(tmp_path, transposed):
    rng = np.random.default_rng(3)
    P, H1, H2, L = 40, 5, 4, 3
    w0, b0 = rng.normal(size=(P, H1, L)), rng.normal(size=(P, H1))
    w1, b1 = rng.normal(size=(P, H2, H1)), rng.normal(size=(P, H2))
    w2, b2 = rng.normal(size=(P, H2)), rng.normal(size=P)
    x_min, x_max = np.array([1.0, 2.0, 3.0]), np.array([2.0, 5.0, 4.0])
    wave = np.linspace(5000, 5100, P)
    stored = np.transpose(w1, (0, 2, 1)) if transposed else w1  # (P, H1, H2) is recognised from shapes
    path = _payne_file(
        tmp_path,
        "pp2.npz",
        dict(
            w_array_0=w0,
            w_array_1=stored,
            w_array_2=w2,
            b_array_0=b0,
            b_array_1=b1,
            b_array_2=b2,
            x_min=x_min,
            x_max=x_max,
        ),
    )
    em = E.load(path, wave=wave)
    assert em.hidden == (H1, H2) and em.label_names == ("label_0", "label_1", "label_2")
    lab = np.array([1.3, 4.1, 3.9])
    x = (lab - x_min) / (x_max - x_min) - 0.5
    a1 = sigmoid(np.einsum("phl,l->ph", w0, x) + b0)
    a2 = sigmoid(np.einsum("pjk,pk->pj", w1, a1) + b1)
    ref = np.einsum("pj,pj->p", w2, a2) + b2
    np.testing.assert_allclose(em.predict(lab), ref, rtol=2e-5, atol=2e-5)


def test_load_ting2018_variant(tmp_path):
    rng = np.random.default_rng(4)
    P, H, L = 30, 6, 2
    w0, b0, w1, b1 = (
        rng.normal(size=(P, H, L)),
        rng.normal(size=(P, H)),
        rng.normal(size=(P, H)),
        rng.normal(size=P),
    )
    w2, b2 = rng.normal(size=P), rng.normal(size=P)
    path = _payne_file(
        tmp_path,
        "t18.npz",
        dict(
            w_array_0=w0,
            w_array_1=w1,
            w_array_2=w2,
            b_array_0=b0,
            b_array_1=b1,
            b_array_2=b2,
            x_min=np.zeros(L),
            x_max=np.ones(L),
        ),
    )
    em = E.load(path, wave=np.arange(P) + 4000.0)
    x = np.array([0.2, -0.3])
    inside = np.einsum("ijk,k->ij", w0, x) + b0
    outside = np.einsum("ik,ik->i", w1, sigmoid(inside)) + b1
    ref = w2 * sigmoid(outside) + b2
    np.testing.assert_allclose(em.predict(x + 0.5), ref, rtol=2e-5, atol=2e-5)


def test_load_public_payne_shared_leaky_relu(tmp_path):
    rng = np.random.default_rng(5)
    P, H, L = N_WAVE, 7, 11
    w0, b0 = rng.normal(size=(H, L)), rng.normal(size=H)
    w1, b1 = rng.normal(size=(H, H)), rng.normal(size=H)
    w2, b2 = rng.normal(size=(P, H)) * 0.1, rng.normal(size=P)
    x_min, x_max = -np.ones(L), np.ones(L) * 3
    path = _payne_file(
        tmp_path,
        "shared.npz",
        dict(
            w_array_0=w0,
            w_array_1=w1,
            w_array_2=w2,
            b_array_0=b0,
            b_array_1=b1,
            b_array_2=b2,
            x_min=x_min,
            x_max=x_max,
        ),
    )
    em = E.load(path)
    assert em.architecture == "shared" and em.activation == "leaky_relu"
    lab = rng.uniform(-1, 3, (4, L))
    x = (lab - x_min) / (x_max - x_min) - 0.5
    ref = np.stack(
        [np.einsum("ij,j->i", w2, leaky(np.einsum("ij,j->i", w1, leaky(w0 @ xi + b0)) + b1)) + b2 for xi in x]
    )
    np.testing.assert_allclose(em.predict(lab), ref, rtol=2e-5, atol=2e-5)
    # the float64 numpy forward (reference model of the curve_fit loop) agrees too
    np.testing.assert_allclose(em.forward_numpy(x), ref, rtol=1e-6, atol=1e-6)


def test_layout_errors_name_file_and_array(tmp_path):
    rng = np.random.default_rng(6)
    P, H, L = 20, 3, 2
    good = dict(
        w_array_0=rng.normal(size=(P, H, L)),
        w_array_1=rng.normal(size=(P, H)),
        b_array_0=rng.normal(size=(P, H)),
        b_array_1=rng.normal(size=P),
        x_min=np.zeros(L),
        x_max=np.ones(L),
    )
    # no wavelength and not the common grid's pixel count
    p = _payne_file(tmp_path, "nowave.npz", good)
    with pytest.raises(E.EmulatorFormatError, match=r"nowave\.npz.*20 pixels"):
        E.load(p)
    assert E.load(p, wave=np.arange(P) + 4000.0).n_pixels == P
    cases = {
        "badb0.npz": dict(good, b_array_0=rng.normal(size=(P, H + 1))),
        "badw1.npz": dict(good, w_array_1=rng.normal(size=(P + 1, H))),
        "labels.npz": dict(good, x_min=np.zeros(L + 1), x_max=np.ones(L + 1)),
        "w0ndim.npz": dict(good, w_array_0=rng.normal(size=(P,))),
    }
    expected = {
        "badb0.npz": "b_array_0",
        "badw1.npz": "w_array_1",
        "labels.npz": "w_array_0",
        "w0ndim.npz": "w_array_0",
    }
    for name, arrays in cases.items():
        with pytest.raises(E.EmulatorFormatError, match=name.replace(".", r"\.") + ".*" + expected[name]):
            E.load(_payne_file(tmp_path, name, arrays), wave=np.arange(P) + 4000.0)
    missing = {k: v for k, v in good.items() if k != "x_max"}
    with pytest.raises(E.EmulatorFormatError, match="x_max"):
        E.load(_payne_file(tmp_path, "nox.npz", missing), wave=np.arange(P) + 4000.0)
    # object arrays would need unpickling: refused
    p = tmp_path / "pickle.npz"
    np.savez(p, w_array_0=np.array([{"a": 1}], dtype=object), x_min=np.zeros(1))
    with pytest.raises(E.EmulatorFormatError, match="unpickling"):
        E.load(p)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(E.EmulatorFormatError, match="junk"):
        E.load(tmp_path / "junk.npz")


# ------------------------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize(
    ("arch", "hidden", "activation"),
    [
        ("perpixel", (6, 5), "sigmoid"),
        ("perpixel", (7,), "sigmoid"),
        ("perpixel", (4, 3, 5), "sigmoid"),
        ("shared", (9, 8), "sigmoid"),
        ("shared", (9, 8), "leaky_relu"),
    ],
)
def test_jacobian_matches_finite_differences(arch, hidden, activation):
    em = random_emulator(arch, hidden=hidden, activation=activation, seed=7)
    rng = np.random.default_rng(8)
    x = rng.uniform(-0.4, 0.4, (5, em.n_labels))
    f, jac = em.jacobian_torch(torch.from_numpy(x))
    h = 1e-6
    for i in range(em.n_labels):
        dx = np.zeros(em.n_labels)
        dx[i] = h
        fd = (em.forward_numpy(x + dx) - em.forward_numpy(x - dx)) / (2 * h)  # float64 central difference
        np.testing.assert_allclose(jac[:, :, i].numpy(), fd, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(f.numpy(), em.forward_numpy(x), rtol=1e-5, atol=1e-5)
    _, jac2 = em.jacobian_torch(torch.from_numpy(x), method="autograd")
    np.testing.assert_allclose(jac.numpy(), jac2.numpy(), rtol=1e-5, atol=1e-5)
    # physical-unit Jacobian = scaled Jacobian / range
    _, jphys = em.jacobian(em.unscale(x))
    np.testing.assert_allclose(jphys, jac.numpy() / (em.x_max - em.x_min), rtol=1e-5, atol=1e-6)


def test_predict_torch_is_differentiable():
    em = random_emulator("shared", seed=9)
    lab = torch.tensor(em.unscale(np.zeros((2, em.n_labels))), requires_grad=True)
    em.predict_torch(lab).sum().backward()
    assert lab.grad is not None and torch.isfinite(lab.grad).all()
    with pytest.raises(ValueError, match="columns"):
        em.predict(np.zeros((2, em.n_labels + 1)))
    assert em.predict(em.unscale(np.zeros(em.n_labels))).shape == (em.n_pixels,)


# ---------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def small_grid():
    wave = wavelength_grid()[(wavelength_grid() > 4000) & (wavelength_grid() < 4500)]  # 511 pixels
    return toy_model_grid(700, seed=11, wave=wave)


def test_toy_grid(small_grid):
    g = small_grid
    assert g.labels.shape == (700, 11) and g.flux.shape == (700, g.wave.size)
    assert np.all((g.flux > 0) & (g.flux <= 1))
    assert np.all((g.labels >= g.label_min) & (g.labels <= g.label_max))
    again = toy_model_grid(700, seed=11, wave=g.wave)
    assert np.array_equal(again.flux, g.flux)
    # every label changes the spectrum
    base = np.tile(0.5 * (g.label_min + g.label_max), (11, 1))
    bumped = base + np.diag(0.2 * (g.label_max - g.label_min))
    diff = np.abs(toy_spectra(bumped, g.wave) - toy_spectra(base, g.wave)).max(1)
    assert np.all(diff > 1e-3)


@pytest.mark.parametrize(
    ("arch", "hidden", "epochs", "lr", "batch"),
    [("shared", (24, 24), 25, 5e-3, 64), ("perpixel", (5, 5), 6, 2e-2, 32)],
)
def test_training_reduces_validation_error_and_reports_precision(small_grid, arch, hidden, epochs, lr, batch, tmp_path):
    em = E.train(small_grid, arch, hidden=hidden, epochs=epochs, patience=50, lr=lr, batch_size=batch, seed=3)
    m = em.meta
    hist = [v for _, v in m["history"]]
    assert len(hist) == epochs and hist[-1] < 0.5 * hist[0]
    assert m["n_train"] == 630 and m["n_valid"] == 70  # 90/10 split
    for key in (
        "valid_sigma",
        "valid_sigma_deep",
        "valid_sigma_gauss",
        "valid_sigma_deep_gauss",
        "train_seconds",
    ):
        assert np.isfinite(m[key]) and m[key] > 0
    # the reported precision is the residual scatter on the held-out spectra (recomputed here)
    rng = np.random.default_rng(3)
    i_valid = np.sort(rng.permutation(700)[:70])
    res = em.predict(small_grid.labels[i_valid]) - small_grid.flux[i_valid]
    assert m["valid_sigma"] == pytest.approx(float(np.std(res.astype(np.float64))), rel=1e-6)
    # better than predicting the mean spectrum
    assert m["valid_sigma"] < 0.8 * np.std(small_grid.flux[i_valid] - small_grid.flux.mean(0))
    # saved and re-loaded with its training figures
    back = E.load(em.save(tmp_path / "trained.npz"))
    assert back.meta["valid_sigma"] == m["valid_sigma"] and back.architecture == arch
    assert m["settings"]["init"] == ("scaled" if arch == "shared" else "uniform")  # as applied


def test_training_is_seeded(small_grid):
    kw = dict(hidden=(8, 8), epochs=3, batch_size=128, seed=5)
    a, b = E.train(small_grid, "shared", **kw), E.train(small_grid, "shared", **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))
    assert np.array_equal(a.out_weight, b.out_weight)


# ----------------------------------------------------------------------------------- shipped emulators


def test_shipped_physical_emulator_loads_by_name_with_its_provenance() -> None:
    """``ss.emulator.load_default("physical")`` (issues 16, 23): a set of a cool and a hot network, their labels,
    grids, provenance and size; a sane A star and a sane K dwarf."""
    from survey_scale.science.emulator_set import EmulatorSet

    path = E.default_emulator_path("physical")
    assert path.stat().st_size < 12e6  # two networks of float32 weights
    em = E.load_default("physical")
    assert isinstance(em, EmulatorSet) and em.names == ("cool", "hot")
    assert em.label_names == ("teff", "logg", "vsini", "fe_h")
    assert em.teff_ranges() == {"cool": (3500.0, 9000.0), "hot": (8000.0, 40000.0)}
    np.testing.assert_array_equal(em.wave, wavelength_grid())
    assert json.loads(str(np.load(path)["header"]))["code_version"]
    for name, component in zip(em.names, em.components, strict=True):
        meta = component.meta
        grid = meta["grid_meta"]
        assert component.architecture == "shared"
        sources = grid["model_sha256"] if isinstance(grid["model_sha256"], list) else [grid["model_sha256"]]
        assert all(len(h) == 64 for h in sources) and "thedoppler" in grid["model_source"]
        assert "MIT" in grid["model_source"]
        assert grid["n_spectra"] == meta["n_train"] + meta["n_valid"] and isinstance(grid["seed"], int)
        assert {"hidden", "lr", "batch_size", "patience", "seed"} <= set(meta["settings"])
        assert 0 < meta["valid_sigma"] < 0.01 and meta["valid_sigma_deep"] < 0.02, name
    assert em.component("hot").meta["grid_meta"]["label_ranges"]["teff"] == [8000.0, 40000.0]
    assert em.component("cool").meta["grid_meta"]["label_ranges"]["teff"] == [3500.0, 9000.0]
    wave = em.wave
    # an A0 dwarf: deep Balmer lines, weak He I 4471
    flux = em.predict(np.array([[9700.0, 4.2, 50.0, 0.0]]))[0]
    assert flux[np.argmin(np.abs(wave - 4862.7))] < 0.6 and flux[np.argmin(np.abs(wave - 4472.7))] > 0.95
    # a K2 dwarf: Hbeta weak, the Mg b triplet and Na D deep
    flux = em.predict(np.array([[5000.0, 4.5, 5.0, 0.0]]))[0]
    assert flux[np.argmin(np.abs(wave - 4862.7))] > 0.7
    assert flux[np.argmin(np.abs(wave - 5185.0))] < 0.85 and flux[np.argmin(np.abs(wave - 5897.6))] < 0.8


def test_load_default_names_what_the_package_ships(monkeypatch, tmp_path) -> None:
    with pytest.raises(ValueError, match="no shipped emulator named 'kurucz'"):
        E.load_default("kurucz")
    monkeypatch.setitem(E.DEFAULT_EMULATORS, "gone", "gone.npz")
    with pytest.raises(E.ShippedEmulatorMissing, match=r"gone\.npz"):
        E.load_default("gone")


def test_shipped_physical_emulator_precision_on_fresh_model_spectra() -> None:
    """Each component's recorded validation precision holds on newly made model spectra (needs thedoppler's
    model files: SURVEY_SCALE_CANNON_MODEL = the hot-dwarf .pkl, SURVEY_SCALE_COOL_CANNON_MODEL = the cool-star
    .pkl; ``pip download thedoppler``)."""
    import os
    from pathlib import Path

    from survey_scale.science.emulator import validation_precision
    from survey_scale.synth import cannon_grid as C

    paths = [os.environ.get(k, "") for k in ("SURVEY_SCALE_CANNON_MODEL", "SURVEY_SCALE_COOL_CANNON_MODEL")]
    if not all(p and Path(p).is_file() for p in paths):
        pytest.skip(
            "SURVEY_SCALE_CANNON_MODEL / SURVEY_SCALE_COOL_CANNON_MODEL do not name thedoppler's hot-dwarf and "
            "cool-star Cannon models (pip download thedoppler)"
        )
    hot, cool = (C.read_cannon_model(p) for p in paths)
    em = E.load_default("physical")
    rng = np.random.default_rng(12345)
    labels = C.sample_cannon_labels(hot, 200, rng)
    cases = {
        "hot": (labels, C.cannon_model_spectra(hot, labels)),
    }
    labels = C.sample_joined_labels(cool, hot, 200, rng)
    flux = np.clip(C.joined_model_spectra(cool, hot, labels), *C.COOL_FLUX_RANGE)
    cases["cool"] = (labels, flux)
    for name, (lab, spectra) in cases.items():
        component = em.component(name)
        got = validation_precision(component, lab, spectra, device="cpu")
        assert got["valid_sigma"] < 1.3 * component.meta["valid_sigma"], name
        assert got["valid_sigma_deep"] < 1.3 * component.meta["valid_sigma_deep"], name


# ------------------------------------------------------------------------------------------------ plateau


def synth_grid(n: int, seed: int, step: int = 1) -> ModelGrid:
    """A model grid of the synthesizer (SPEC §10) on every ``step``-th pixel."""
    g = make_model_grid(n, seed)
    return ModelGrid(g.labels, g.label_names, g.label_min, g.label_max, g.wave[::step], g.flux[:, ::step], g.meta)


def mean_spectrum_sigma(grid: ModelGrid) -> float:
    return float(np.std(grid.flux - grid.flux.mean(0)))


@pytest.fixture(scope="module")
def synth_small() -> ModelGrid:
    """600 spectra of the synthesizer on every 4th pixel (951 pixels)."""
    return synth_grid(600, seed=3, step=4)


def test_scaled_initialization_removes_the_three_layer_plateau(synth_small):
    """Guards the plateau fix: three sigmoid layers with the uniform ±1/√fan_in initialization still predict
    the mean spectrum after 20 epochs on a small synthesizer grid (σ within 10 % of the mean spectrum's);
    initialized with ``init="scaled"`` they are below 0.7 of it in the same 20 epochs."""
    grid = synth_small
    ref = mean_spectrum_sigma(grid)
    kw = dict(hidden=(64, 64, 64), epochs=20, patience=100, batch_size=64, seed=0)
    before = E.train(grid, "shared", init="uniform", **kw).meta["valid_sigma"] / ref
    after = E.train(grid, "shared", **kw)
    assert after.meta["settings"]["init"] == "scaled"
    assert before > 0.9 and after.meta["valid_sigma"] / ref < 0.7, (before, after.meta["valid_sigma"] / ref)


def test_cosine_and_anneal_schedules_decay_to_zero_and_bad_options_are_refused(small_grid):
    em = E.train(small_grid, "shared", hidden=(8, 8), epochs=3, batch_size=128, schedule="cosine", seed=1)
    assert em.meta["settings"]["schedule"] == "cosine" and em.meta["stop_reason"] == "epochs"
    steps = em.meta["n_steps"]  # the last step ran at lr · (1 + cos(π (steps − 1) / steps)) / 2
    assert em.meta["final_lr"] == pytest.approx(0.5e-3 * (1 + np.cos(np.pi * (steps - 1) / steps)), rel=1e-6)
    em = E.train(small_grid, "shared", hidden=(8, 8), epochs=5, batch_size=128, schedule="anneal", seed=1)
    steps = em.meta["n_steps"]  # constant, then linearly to 0 over the last 20 % of the steps
    assert em.meta["final_lr"] == pytest.approx(1e-3 / (E.ANNEAL_FRACTION * steps), rel=1e-6)
    with pytest.raises(ValueError, match="schedule must be one of"):
        E.train(small_grid, "shared", hidden=(8, 8), epochs=1, schedule="step")
    with pytest.raises(ValueError, match="init must be one of"):
        E.train(small_grid, "shared", hidden=(8, 8), epochs=1, init="zeros")


# ------------------------------------------------------------------------------------------------ shipped


@pytest.fixture(scope="module")
def shipped() -> E.Emulator:
    return E.load_default()


def test_shipped_emulator_records_its_provenance(shipped):
    m = shipped.meta
    assert shipped.architecture == "shared" and shipped.activation == "sigmoid"
    assert shipped.label_names == LABEL_NAMES and np.array_equal(shipped.wave, wavelength_grid())
    grid = m["grid_meta"]
    assert grid["producer"].startswith("survey_scale.synth.make_model_grid") and grid["n_spectra"] >= 10_000
    assert isinstance(grid["seed"], int) and m["n_train"] + m["n_valid"] == grid["n_spectra"]
    assert m["settings"]["hidden"] == list(shipped.hidden) and m["settings"]["init"] == "scaled"
    assert m["command"].startswith("survey-scale emulator train") and m["code_commit"]
    assert m["train_seconds"] > 0 and m["trained_with"].startswith("survey_scale")
    # P2's interpolation precision (Fig. 6), on its 10 % held-out spectra
    assert m["valid_sigma"] <= 0.00165 and m["valid_sigma_deep"] <= 0.00586
    # float32 weights; the size it adds to the package
    assert all(w.dtype == np.float32 for w in (*shipped.weights, shipped.out_weight))
    assert E.default_emulator_path().stat().st_size < 6_000_000


def test_shipped_emulator_precision_on_a_freshly_synthesized_grid(shipped):
    """300 spectra of another seed than the training grid's: the precision recorded in the file holds
    (within 20 %, the scatter of a 300-spectrum estimate being a few %)."""
    m = shipped.meta
    seed = 20_260_101
    assert seed != m["grid_meta"]["seed"]
    grid = make_model_grid(300, seed)
    p = E.validation_precision(shipped, grid.labels, grid.flux, device="cpu")
    for key in ("valid_sigma", "valid_sigma_deep"):
        assert 0.8 * m[key] < p[key] < 1.2 * m[key], (key, p[key], m[key])


def test_the_recorded_settings_train_three_layers_without_a_plateau(shipped, synth_small):
    """Guards the recipe recorded in the shipped file (architecture, widths, initialization, learning rate and
    schedule, batch, seed). The full run (``meta["command"]``) reached the recorded precision in hours and is
    not repeated here; with the same settings on the small grid, 10 epochs take the network off the mean
    spectrum to below 0.65 of its σ, where the uniform initialization stays within 10 % of it (test above)."""
    s = shipped.meta["settings"]
    em = E.train(
        synth_small,
        shipped.architecture,
        hidden=s["hidden"],
        activation=s["activation"],
        epochs=10,
        patience=s["patience"],
        lr=s["lr"],
        lr_decay=s["lr_decay"],
        batch_size=s["batch_size"],
        loss=s["loss"],
        init=s["init"],
        schedule=s["schedule"],
        seed=s["seed"],
    )
    assert em.hidden == shipped.hidden
    assert em.meta["valid_sigma"] < 0.65 * mean_spectrum_sigma(synth_small), em.meta["valid_sigma"]
