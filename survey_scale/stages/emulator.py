"""The emulator for the fit (SPEC §5.1): ``emulator.path``, or one trained on a model grid and cached.

``emulator.path`` is a file, or the name of an emulator the package ships
(:data:`survey_scale.science.emulator.DEFAULT_EMULATORS`: ``synthesizer``, ``physical``).

Step ``emulator`` puts the file in ``engine.models["emulator"]``. A trained emulator is kept in the cube's
models folder with a key of its grid and settings, and re-used while they do not change.
"""

from __future__ import annotations

import logging
from pathlib import Path

from survey_scale.config import Config, EmulatorConfig
from survey_scale.core.files import file_sha256, stable_hash
from survey_scale.engine.contracts import Engine, PipelineError
from survey_scale.science.emulator import DEFAULT_EMULATORS, EmulatorFormatError, default_emulator_path, train
from survey_scale.science.emulator import load as load_emulator
from survey_scale.science.model_grid import load_model_grid, save_model_grid
from survey_scale.synth import make_model_grid

log = logging.getLogger(__name__)

STALLED_EMULATOR_SIGMA = 0.01
"""A trained emulator less precise than this (1 % of the flux, ~6× P2's) gets a warning in the log."""


def build_emulator(cfg: EmulatorConfig, engine: Engine) -> Path:
    """The emulator file for the fit: ``emulator.path``, or one trained on the model grid (cached)."""
    if cfg.path is not None:
        if str(cfg.path) in DEFAULT_EMULATORS:  # a bare name: a shipped emulator
            try:
                return default_emulator_path(str(cfg.path))
            except EmulatorFormatError as exc:
                raise PipelineError(f"emulator.path {cfg.path}: {exc}") from None
        if not Path(cfg.path).is_file():
            raise PipelineError(
                f"emulator.path {cfg.path}: file not found (shipped emulators: {', '.join(DEFAULT_EMULATORS)})"
            )
        return Path(cfg.path)
    if cfg.model_grid is not None:
        grid_path = Path(cfg.model_grid)
    else:
        grid_path = engine.model_path(f"model_grid-{cfg.grid_size}-{cfg.grid_seed}.npz")
        if not grid_path.exists():
            log.info("emulator: synthesizing a model grid of %d spectra (seed %d)", cfg.grid_size, cfg.grid_seed)
            save_model_grid(make_model_grid(cfg.grid_size, cfg.grid_seed), grid_path)
    key = stable_hash(file_sha256(grid_path), cfg.model_dump_json(exclude={"path", "device"}))
    path = engine.model_path(f"emulator-{cfg.architecture}.npz")
    if path.exists() and load_emulator(path).meta.get("training_key") == key:
        return path
    grid = load_model_grid(grid_path)
    log.info("emulator: training the %s architecture on %d spectra", cfg.architecture, grid.n_spectra)
    em = train(
        grid,
        cfg.architecture,
        hidden=cfg.hidden,
        epochs=cfg.epochs,
        patience=cfg.patience,
        lr=cfg.learning_rate,
        batch_size=cfg.batch_size,
        device=cfg.device,
        seed=cfg.seed,
        log=lambda line: log.info("emulator: %s", line),
    )
    em.meta["training_key"] = key
    em.meta["model_grid"] = str(grid_path)
    em.save(path)
    log.info(
        "emulator: validation precision %.3f %% overall, %.3f %% where flux < 0.95 (P2: 0.165 %%, 0.586 %%)",
        100 * em.meta["valid_sigma"],
        100 * em.meta["valid_sigma_deep"],
    )
    if em.meta["valid_sigma"] > STALLED_EMULATOR_SIGMA:
        log.warning(
            "emulator %s: validation precision %.2f %% is far from what the fit needs (P2: 0.165 %%); training "
            "stopped (%s) before the network learnt the spectra — raise emulator.patience or emulator.epochs, "
            "or give a trained emulator in emulator.path",
            path,
            100 * em.meta["valid_sigma"],
            em.meta["stop_reason"],
        )
    return path


def run(config: Config, engine: Engine) -> Path:
    """Registry step ``emulator``."""
    engine.models["emulator"] = build_emulator(config.emulator, engine)
    return engine.models["emulator"]
