"""The emulator for the fit (SPEC §5.1): the shipped one, ``emulator.path``, or one trained on a model grid.

Step ``emulator`` puts the file in ``engine.models["emulator"]``:

- ``emulator.model_grid`` given, or ``emulator.train: true``: an emulator trained on that grid (or on one of
  ``grid_size`` spectra synthesized with ``grid_seed``), kept in the cube's models folder with a key of its
  grid and settings, and re-used while they do not change;
- else ``emulator.path``: a file, or the name of a shipped emulator
  (:data:`survey_scale.science.emulator.DEFAULT_EMULATORS`);
- else the shipped ``synthesizer`` emulator (no training).

:func:`train_from_config` is also what ``survey-scale emulator train`` runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from survey_scale.config import Config, EmulatorConfig
from survey_scale.core.files import file_sha256, stable_hash
from survey_scale.engine.contracts import Engine, PipelineError
from survey_scale.science.emulator import (
    DEFAULT_EMULATORS,
    Emulator,
    ShippedEmulatorMissing,
    default_emulator_path,
    train,
)
from survey_scale.science.emulator import load as load_emulator
from survey_scale.science.model_grid import ModelGrid, load_model_grid, save_model_grid
from survey_scale.synth import make_model_grid

log = logging.getLogger(__name__)

DEFAULT_EMULATOR = "synthesizer"
"""The shipped emulator used when the configuration names none."""

STALLED_EMULATOR_SIGMA = 0.01
"""A trained emulator less precise than this (1 % of the flux, ~6× P2's) gets a warning in the log."""


def precision_line(em: Emulator) -> str:
    """``validation precision X % overall, Y % where flux < 0.95 (P2: …)`` from the emulator's meta."""
    return (
        f"validation precision {100 * em.meta['valid_sigma']:.3f} % overall, "
        f"{100 * em.meta['valid_sigma_deep']:.3f} % where flux < 0.95 (P2: 0.165 %, 0.586 %)"
    )


def train_from_config(cfg: EmulatorConfig, grid: ModelGrid) -> Emulator:
    """Train an emulator on ``grid`` with the training keys of the ``emulator`` section.

    One line per evaluation (epoch) goes to the log at DEBUG, one summary line at INFO; an emulator that
    stopped far from the precision the fit needs gets a WARNING.
    """
    log.info("emulator: training the %s architecture on %d spectra", cfg.architecture, grid.n_spectra)
    em = train(
        grid,
        cfg.architecture,
        hidden=cfg.hidden,
        epochs=cfg.epochs,
        patience=cfg.patience,
        lr=cfg.learning_rate,
        schedule=cfg.schedule,
        batch_size=cfg.batch_size,
        device=cfg.device,
        seed=cfg.seed,
        log=lambda line: log.debug("emulator: %s", line),
    )
    m = em.meta
    log.info(
        "emulator: %s %s trained in %.0f s (%.0f epochs, stopped: %s); %s",
        "×".join(str(h) for h in em.hidden),
        em.architecture,
        m["train_seconds"],
        m["n_epochs"],
        m["stop_reason"],
        precision_line(em),
    )
    if m["valid_sigma"] > STALLED_EMULATOR_SIGMA:
        log.warning(
            "emulator: validation precision %.2f %% is far from what the fit needs (P2: 0.165 %%); training "
            "stopped (%s) before the network learnt the spectra — raise emulator.patience or emulator.epochs, "
            "or use the shipped emulator (leave emulator.path, emulator.model_grid and emulator.train unset)",
            100 * m["valid_sigma"],
            m["stop_reason"],
        )
    return em


def _trained(cfg: EmulatorConfig, engine: Engine) -> Path:
    if cfg.model_grid is not None:
        grid_path = Path(cfg.model_grid)
        if not grid_path.is_file():
            raise PipelineError(f"emulator.model_grid {grid_path}: file not found")
    else:
        grid_path = engine.model_path(f"model_grid-{cfg.grid_size}-{cfg.grid_seed}.npz")
        if not grid_path.exists():
            log.info("emulator: synthesizing a model grid of %d spectra (seed %d)", cfg.grid_size, cfg.grid_seed)
            save_model_grid(make_model_grid(cfg.grid_size, cfg.grid_seed), grid_path)
    key = stable_hash(file_sha256(grid_path), cfg.model_dump_json(exclude={"path", "device"}))
    path = engine.model_path(f"emulator-{cfg.architecture}.npz")
    if path.exists() and load_emulator(path).meta.get("training_key") == key:
        return path
    em = train_from_config(cfg, load_model_grid(grid_path))
    em.meta["training_key"] = key
    em.meta["model_grid"] = str(grid_path)
    return em.save(path)


def build_emulator(cfg: EmulatorConfig, engine: Engine) -> Path:
    """The emulator file for the fit (module docstring: trained, ``emulator.path`` or the shipped one)."""
    if cfg.trains:
        return _trained(cfg, engine)
    name = DEFAULT_EMULATOR if cfg.path is None else str(cfg.path)
    if name in DEFAULT_EMULATORS:
        try:
            path = default_emulator_path(name)
        except ShippedEmulatorMissing as exc:
            raise PipelineError(f"emulator: {exc}") from exc
        log.info("emulator: the shipped %r emulator (%s); %s", name, path, precision_line(load_emulator(path)))
        return path
    if not Path(cfg.path).is_file():
        raise PipelineError(
            f"emulator.path {cfg.path}: file not found (nor the name of a shipped emulator: "
            f"{', '.join(sorted(DEFAULT_EMULATORS))})"
        )
    return Path(cfg.path)


def run(config: Config, engine: Engine) -> Path:
    """Registry step ``emulator``."""
    engine.models["emulator"] = build_emulator(config.emulator, engine)
    return engine.models["emulator"]
