"""The emulator step (SPEC §5.1): a shipped emulator chosen by the input by default (the synthesizer for
survey_scale's mock, physical for real LAMOST spectra), a file or a shipped name, or one trained."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from survey_scale.config import ConfigError, EmulatorConfig, load_config
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.contracts import PipelineError
from survey_scale.science import emulator as E
from survey_scale.science import emulator_files
from survey_scale.science.model_grid import save_model_grid
from survey_scale.stages.emulator import CHOICE_FILE, build_emulator, run
from tests.toy_grid import toy_model_grid


class _Engine:
    """The part of the engine the step uses: where models go, what the steps so far produced and the cube's
    ``file_origin`` (``None``: a cube without that variable, ingested before it existed)."""

    def __init__(self, root: Path, origin: list[str] | None = ("mock",) * 3) -> None:
        self.root = root
        self.models: dict[str, Path] = {}
        self.origin = None if origin is None else np.array(origin, dtype=object)
        self.n = 3 if origin is None else len(origin)

    def model_path(self, name: str) -> Path:
        return self.root / name

    def n_spectra(self) -> int:
        return self.n

    def has_variable(self, name: str) -> bool:
        return name == "file_origin" and self.origin is not None

    def read_column(self, name: str) -> np.ndarray:
        assert name == "file_origin" and self.origin is not None
        return self.origin


def _choice(engine: _Engine) -> dict:
    return json.loads(engine.model_path(CHOICE_FILE).read_text())


def test_default_for_a_mock_release_is_the_synthesizer_without_training(tmp_path: Path, caplog) -> None:
    engine = _Engine(tmp_path)
    with caplog.at_level(logging.INFO, logger="survey_scale.stages.emulator"):
        path = run(load_config(None), engine).path
    assert path == E.default_emulator_path("synthesizer") and engine.models["emulator"] == path
    assert [p.name for p in tmp_path.iterdir()] == [CHOICE_FILE]  # no grid synthesized, nothing trained
    assert "the shipped 'synthesizer' emulator" in caplog.text and "validation precision" in caplog.text
    assert "because all 3 spectra come from survey_scale's mock release" in caplog.text
    assert "training" not in caplog.text and "WARNING" not in caplog.text
    choice = _choice(engine)
    assert (choice["emulator"], choice["how"], choice["path"]) == ("synthesizer", "default", str(path))
    assert choice["counts"] == {"mock": 3, "lamost": 0, "unknown": 0} and choice["warning"] is None
    assert build_emulator(EmulatorConfig(path="synthesizer"), engine) == path  # by its name


@pytest.mark.parametrize(
    ("origin", "warned"),
    [
        (["lamost"] * 4, None),
        (["mock", "lamost", "mock"], "mixes 2 survey_scale mock spectra with 1 real"),
        (None, "does not record"),
    ],
)
def test_default_for_real_spectra_is_physical(tmp_path: Path, caplog, origin, warned) -> None:
    """Any real LAMOST spectrum (or a cube that does not say) gets the physical emulator; a mix is warned about."""
    engine = _Engine(tmp_path, origin)
    with caplog.at_level(logging.INFO, logger="survey_scale.stages.emulator"):
        path = run(load_config(None), engine).path
    assert path == E.default_emulator_path("physical") and engine.models["emulator"] == path
    assert "no emulator.path given: the shipped 'physical' emulator, because" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    choice = _choice(engine)
    assert (choice["emulator"], choice["how"]) == ("physical", "default")
    if warned is None:
        assert not warnings and choice["warning"] is None
        assert choice["reason"] == "all 4 of the 4 spectra are real LAMOST files"
    else:
        assert len(warnings) == 1 and warned in warnings[0] and warned in choice["warning"]


def test_an_explicit_emulator_path_overrides_the_choice(tmp_path: Path, caplog) -> None:
    own = E.load_default().save(tmp_path / "mine.npz")
    for origin, given, expected in (
        (["lamost"], "synthesizer", E.default_emulator_path("synthesizer")),
        (["mock"], "physical", E.default_emulator_path("physical")),
        (["lamost", "mock"], own, own),
    ):
        engine = _Engine(tmp_path, origin)
        engine.read_column = None  # the cube is not read when the configuration names the emulator
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="survey_scale.stages.emulator"):
            assert run(load_config(None, {"emulator.path": str(given)}), engine).path == expected
        assert "WARNING" not in caplog.text and f"emulator.path names it ({given})" in caplog.text
        choice = _choice(engine)
        assert (choice["emulator"], choice["how"], choice["counts"]) == (str(given), "emulator.path", {})


def test_a_given_file_or_an_error_naming_it(tmp_path: Path) -> None:
    engine = _Engine(tmp_path)
    own = E.load_default().save(tmp_path / "mine.npz")
    assert build_emulator(EmulatorConfig(path=own), engine) == own
    with pytest.raises(PipelineError, match=r"emulator\.path .*absent\.npz: file not found"):
        build_emulator(EmulatorConfig(path=tmp_path / "absent.npz"), engine)
    with pytest.raises(PipelineError, match=r"emulator\.model_grid .*nogrid\.npz: file not found"):
        build_emulator(EmulatorConfig(model_grid=tmp_path / "nogrid.npz"), engine)


def test_a_missing_shipped_file_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(emulator_files, "DEFAULT_EMULATOR_DIR", tmp_path / "emulators")
    with pytest.raises(E.ShippedEmulatorMissing, match=r"emulators/synthesizer\.npz: the shipped emulator"):
        E.load_default()
    with pytest.raises(PipelineError, match=r"emulators/synthesizer\.npz"):
        build_emulator(EmulatorConfig(), _Engine(tmp_path))  # a mock cube: the synthesizer's file
    with pytest.raises(ValueError, match="no shipped emulator named 'nope'; shipped: physical, synthesizer"):
        E.load_default("nope")


def test_a_file_and_training_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match=r"emulator\.path \(em\.npz\) and emulator\.train: true exclude"):
        load_config(None, {"emulator.path": "em.npz", "emulator.train": True})
    with pytest.raises(ConfigError, match=r"emulator\.path \(synthesizer\) and emulator\.model_grid exclude"):
        load_config(None, {"emulator.path": "synthesizer", "emulator.model_grid": "grid.npz"})
    assert EmulatorConfig(model_grid=Path("g.npz")).trains and EmulatorConfig(train=True).trains
    assert not EmulatorConfig().trains


def test_training_on_a_grid_logs_epochs_at_debug_one_line_at_info_and_is_kept(tmp_path: Path, caplog) -> None:
    grid = toy_model_grid(120, seed=2, wave=wavelength_grid()[:300])
    grid_path = save_model_grid(grid, tmp_path / "grid.npz")
    cfg = EmulatorConfig(model_grid=grid_path, hidden=[8, 8], epochs=4, batch_size=32)
    engine = _Engine(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="survey_scale.stages.emulator"):
        path = build_emulator(cfg, engine)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(debug) == 4 and all("epoch" in r.getMessage() for r in debug)  # one per epoch
    assert len(info) == 2 and info[0].startswith("emulator: training the shared architecture on 120 spectra")
    assert "8×8 shared trained in" in info[1] and "validation precision" in info[1]
    em = E.load(path)
    assert em.hidden == (8, 8) and em.meta["model_grid"] == str(grid_path)
    assert em.meta["settings"]["init"] == "scaled" and em.meta["settings"]["schedule"] == "plateau"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="survey_scale.stages.emulator"):
        assert build_emulator(cfg, engine) == path  # kept: same grid and settings
    assert "training" not in caplog.text
