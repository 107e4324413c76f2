"""The emulator for the fit (SPEC §5.1): the shipped one, ``emulator.path``, or one trained on a model grid.

Step ``emulator`` puts the file in ``engine.models["emulator"]``:

- ``emulator.model_grid`` given, or ``emulator.train: true``: an emulator trained on that grid (or on one of
  ``grid_size`` spectra synthesized with ``grid_seed``), kept in the cube's models folder with a key of its
  grid and settings, and re-used while they do not change;
- else ``emulator.path``: a file, or the name of a shipped emulator
  (:data:`survey_scale.science.emulator.DEFAULT_EMULATORS`);
- else a shipped emulator chosen by the input (no training), from the cube's ``file_origin`` (the ingest
  notes for each spectrum whether its file was written by survey_scale's mock release): ``synthesizer``
  when every spectrum is a mock one (it was trained on the synthesizer that made them), else ``physical``,
  the one for real LAMOST spectra — with a WARNING when mock and real spectra are mixed, or when the cube
  does not say where some spectra came from (ingested before ``file_origin`` existed).

The step logs its choice and why at INFO and keeps it in the cube's models folder
(:data:`CHOICE_FILE`: the emulator, its file, how it was chosen, why, the counts), where
``survey-scale info`` shows it.

:func:`train_from_config` is also what ``survey-scale emulator train`` runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from survey_scale._version import __version__
from survey_scale.core.files import atomic_write_json, file_sha256, stable_hash
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.engine.contracts import Engine, ModelResult, PipelineError, Step
from survey_scale.science.ingest import ORIGIN_LAMOST, ORIGIN_MOCK
from survey_scale.science.model_grid import ModelGrid, load_model_grid, save_model_grid
from survey_scale.synth import make_model_grid

if TYPE_CHECKING:  # the emulator imports torch: loaded when the step runs, not when it is listed
    from survey_scale.science.emulator import Emulator


class EmulatorConfig(Section):
    """The spectral emulator (SPEC §5.1): the shipped one, a file, or one trained on a model grid.

    Which one: ``model_grid`` given or ``train: true`` → trained (on ``model_grid``, else on a grid of
    ``grid_size`` spectra synthesized with ``grid_seed``), with the training keys below; otherwise ``path``
    (a file, or the name of a shipped emulator), and when ``path`` is null a shipped one chosen by the input:
    ``synthesizer`` when every spectrum comes from survey_scale's mock release, else ``physical`` (for real
    LAMOST spectra; :mod:`survey_scale.stages.emulator`).
    """

    path: Path | None = Field(
        None,
        description="an emulator file (own format or public Payne .npz) or a shipped emulator's name: synthesizer "
        "(the mock's) or physical (real spectra: teff, logg, vsini, fe_h; the other labels NaN); null = chosen by "
        "the input, unless training: synthesizer when every spectrum comes from survey_scale's mock release "
        "(header TSOURCE = 'MOCK_HOT'), else physical (real LAMOST spectra)",
    )
    train: bool = Field(
        False, description="true = train one on model_grid, or on a grid synthesized with grid_size/grid_seed"
    )
    model_grid: Path | None = Field(
        None, description="model grid to train on (.npz, survey_scale.science.model_grid format); implies train"
    )
    grid_size: int = Field(10000, ge=20, description="training without model_grid: spectra in the synthesized grid")
    grid_seed: int = Field(0, description="training without model_grid: seed of the synthesized grid")
    architecture: Literal["shared", "perpixel"] = Field(
        "shared", description="shared (labels -> hidden -> all pixels, fast) | perpixel (P2's networks)"
    )
    hidden: list[int] | None = Field(
        None, description="hidden widths; null = (300, 300, 300) shared, (100, 100) perpixel"
    )
    epochs: int = Field(2000, ge=1, description="at most this many epochs (early stopping on the validation loss)")
    patience: int = Field(40, ge=1, description="stop after this many evaluations without improvement")
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate")
    schedule: Literal["plateau", "cosine", "anneal"] = Field(
        "plateau",
        description="plateau (halve the rate after patience/2 epochs without gain) | cosine (to 0 over epochs) | "
        "anneal (constant, then linearly to 0 over the last 20 % of epochs)",
    )
    batch_size: int = Field(
        64, ge=1, description="Adam minibatch (64 learns ~2x more per epoch than 256 on the synthesizer grids)"
    )
    device: str | None = Field(None, description="null = CUDA if available, else CPU")
    seed: int = Field(0, description="seed of the split, the initialization and the minibatches")

    @property
    def trains(self) -> bool:
        """Whether the emulator step trains one (``train`` or ``model_grid``)."""
        return self.train or self.model_grid is not None

    @model_validator(mode="after")
    def _path_or_training(self) -> EmulatorConfig:
        if self.path is not None and self.trains:
            given = "emulator.model_grid" if self.model_grid is not None else "emulator.train: true"
            raise ValueError(
                f"emulator.path ({self.path}) and {given} exclude each other: give a file to use, or a grid to train on"
            )
        return self


log = logging.getLogger(__name__)

MOCK_EMULATOR = "synthesizer"
"""The shipped emulator used when the configuration names none and every spectrum is a survey_scale mock."""
REAL_EMULATOR = "physical"
"""The shipped emulator used when the configuration names none and any spectrum is (or may be) a real one."""
DEFAULT_EMULATOR = MOCK_EMULATOR
"""The shipped emulator of ``survey-scale emulator info`` and the mock's (kept for callers of the old name)."""
CHOICE_FILE = "emulator_choice.json"
"""The emulator step's record of its choice, in the cube's models folder (``engine.model_path``)."""

STALLED_EMULATOR_SIGMA = 0.01
"""A trained emulator less precise than this (1 % of the flux, ~6× P2's) gets a warning in the log."""


def precision_line(em: Emulator) -> str:
    """``validation precision X % overall, Y % where flux < 0.95 (P2: …)`` from the emulator's meta."""
    meta = getattr(em, "meta", None) or {}
    if "valid_sigma" not in meta or "valid_sigma_deep" not in meta:
        return "validation precision not recorded in the file"
    return (
        f"validation precision {100 * em.meta['valid_sigma']:.3f} % overall, "
        f"{100 * em.meta['valid_sigma_deep']:.3f} % where flux < 0.95 (P2: 0.165 %, 0.586 %)"
    )


def train_from_config(cfg: EmulatorConfig, grid: ModelGrid) -> Emulator:
    """Train an emulator on ``grid`` with the training keys of the ``emulator`` section.

    One line per evaluation (epoch) goes to the log at DEBUG, one summary line at INFO; an emulator that
    stopped far from the precision the fit needs gets a WARNING.
    """
    from survey_scale.science.emulator import train

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
    from survey_scale.science.emulator import load as load_emulator

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


@dataclass(frozen=True)
class EmulatorChoice:
    """Which emulator the step uses and why.

    ``emulator`` is a shipped emulator's name, the file of ``emulator.path`` or ``trained``; ``how`` is
    ``default`` (chosen by the input), ``emulator.path`` or ``trained``; ``counts`` (default only) are the
    cube's spectra by ``file_origin`` (``mock``, ``lamost``, ``unknown``).
    """

    emulator: str
    how: str
    reason: str
    counts: dict[str, int] = field(default_factory=dict)
    warning: str | None = None


def origin_counts(engine: Engine) -> dict[str, int]:
    """The cube's spectra by ``file_origin``: ``mock``, ``lamost`` and ``unknown`` (not recorded: a cube ingested
    before the ingest noted it)."""
    n = engine.n_spectra()
    counts = {ORIGIN_MOCK: 0, ORIGIN_LAMOST: 0, "unknown": n}
    if n and engine.has_variable("file_origin"):
        origin = np.asarray(engine.read_column("file_origin")).astype(str)
        counts[ORIGIN_MOCK] = int(np.count_nonzero(origin == ORIGIN_MOCK))
        counts[ORIGIN_LAMOST] = int(np.count_nonzero(origin == ORIGIN_LAMOST))
        counts["unknown"] = n - counts[ORIGIN_MOCK] - counts[ORIGIN_LAMOST]
    return counts


def default_choice(counts: dict[str, int]) -> EmulatorChoice:
    """The shipped emulator for a cube with these ``file_origin`` counts (:func:`origin_counts`): the synthesizer
    only when every spectrum is a survey_scale mock, else ``physical``."""
    n_mock, n_real, n_unknown = counts[ORIGIN_MOCK], counts[ORIGIN_LAMOST], counts["unknown"]
    n = n_mock + n_real + n_unknown
    keep = f"set emulator.path to {MOCK_EMULATOR!r} or {REAL_EMULATOR!r} to choose yourself"
    if n and n_mock == n:
        return EmulatorChoice(
            MOCK_EMULATOR,
            "default",
            f"all {n:,} spectra come from survey_scale's mock release (header TSOURCE = 'MOCK_HOT'), whose "
            "synthesizer this emulator was trained on",
            counts,
        )
    if n_real and n_mock:
        reason = (
            f"{n_real:,} of the {n:,} spectra are real LAMOST files (and {n_mock:,} survey_scale mock ones): the "
            "synthesizer emulator is wrong for real spectra"
        )
        warning = (
            f"the cube mixes {n_mock:,} survey_scale mock spectra with {n_real:,} real LAMOST ones; the "
            f"{REAL_EMULATOR!r} emulator fits both, but the mock ones are best fitted with {MOCK_EMULATOR!r} "
            f"(keep mock and real releases in separate cubes, or {keep})"
        )
        return EmulatorChoice(REAL_EMULATOR, "default", reason, counts, warning)
    if n_real:
        reason = f"{'all ' if n_real == n else ''}{n_real:,} of the {n:,} spectra are real LAMOST files"
        if n_unknown:
            reason += f" ({n_unknown:,} of unknown origin)"
        return EmulatorChoice(REAL_EMULATOR, "default", reason, counts)
    if n_unknown:
        warning = (
            f"the cube does not record whether {n_unknown:,} of its {n:,} spectra are survey_scale mock files "
            f"(they were ingested before the ingest noted file_origin): taken as real LAMOST spectra, so the "
            f"{REAL_EMULATOR!r} emulator; if they are a mock release, {keep}"
        )
        reason = f"{n_unknown:,} of the {n:,} spectra are of unknown origin: taken as real LAMOST spectra"
        return EmulatorChoice(REAL_EMULATOR, "default", reason, counts, warning)
    return EmulatorChoice(
        REAL_EMULATOR, "default", "the cube holds no spectra yet: real LAMOST spectra assumed", counts
    )


def choose_emulator(cfg: EmulatorConfig, engine: Engine | None) -> EmulatorChoice:
    """Which emulator the step uses (module docstring); the cube is read only when the configuration names
    none."""
    if cfg.trains:
        grid = f"the model grid {cfg.model_grid}" if cfg.model_grid is not None else "a synthesized model grid"
        return EmulatorChoice("trained", "trained", f"emulator.train / emulator.model_grid: trained on {grid}")
    if cfg.path is not None:
        return EmulatorChoice(str(cfg.path), "emulator.path", f"emulator.path names it ({cfg.path})")
    if engine is None:
        raise PipelineError("emulator: no emulator.path, and no cube to choose the default emulator from")
    return default_choice(origin_counts(engine))


def _shipped_or_file(name: str) -> Path:
    from survey_scale.science.emulator import DEFAULT_EMULATORS, ShippedEmulatorMissing, default_emulator_path
    from survey_scale.science.emulator import load as load_emulator

    if name in DEFAULT_EMULATORS:
        try:
            path = default_emulator_path(name)
        except ShippedEmulatorMissing as exc:
            raise PipelineError(f"emulator: {exc}") from exc
        log.info("emulator: the shipped %r emulator (%s); %s", name, path, precision_line(load_emulator(path)))
        return path
    if not Path(name).is_file():
        raise PipelineError(
            f"emulator.path {name}: file not found (nor the name of a shipped emulator: "
            f"{', '.join(sorted(DEFAULT_EMULATORS))})"
        )
    return Path(name)


def resolve_emulator(cfg: EmulatorConfig, engine: Engine | None) -> tuple[Path, EmulatorChoice]:
    """The emulator file for the fit and the choice it comes from (logged at INFO; a WARNING if the input
    mixes mock and real spectra or does not say)."""
    choice = choose_emulator(cfg, engine)
    if choice.warning:
        log.warning("emulator: %s", choice.warning)
    if choice.how == "default":
        log.info(
            "emulator: no emulator.path given: the shipped %r emulator, because %s", choice.emulator, choice.reason
        )
    elif choice.how == "emulator.path":
        log.info("emulator: %s", choice.reason)
    if cfg.trains:  # training logs its own lines
        return _trained(cfg, engine), choice
    return _shipped_or_file(choice.emulator), choice


def build_emulator(cfg: EmulatorConfig, engine: Engine | None) -> Path:
    """The emulator file for the fit (module docstring: trained, ``emulator.path`` or the shipped one)."""
    return resolve_emulator(cfg, engine)[0]


def choice_record(path: Path, choice: EmulatorChoice) -> dict[str, Any]:
    """What :data:`CHOICE_FILE` keeps of a choice (with the file's SHA-256, the code version and the time)."""
    return {
        "emulator": choice.emulator,
        "path": str(Path(path).resolve()),
        "sha256": file_sha256(path),
        "how": choice.how,
        "reason": choice.reason,
        "counts": dict(choice.counts),
        "warning": choice.warning,
        "code_version": __version__,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(config: ConfigBase, engine: Engine) -> ModelResult:
    """Registry step ``emulator``: the emulator file in ``engine.models``, the choice in :data:`CHOICE_FILE`."""
    path, choice = resolve_emulator(config.emulator, engine)
    atomic_write_json(engine.model_path(CHOICE_FILE), choice_record(path, choice))
    engine.models["emulator"] = path
    return ModelResult("emulator", path)


STEPS = (
    Step(
        "emulator",
        run,
        produces=("model:emulator",),
        description="the spectral emulator: given, or trained on a model grid (§5.1)",
        config={"emulator": EmulatorConfig},
    ),
)


# --- the ``survey-scale emulator`` command: info and train ----------------------------------------------


def emulator_summary(path: Path, em: Any) -> str:
    """What ``survey-scale emulator info`` and ``train`` print about the emulator (or emulator set) ``em`` of
    ``path``: its layout, label ranges, model grid, validation precision, training and provenance, from its
    ``meta``."""
    if hasattr(em, "components"):  # an emulator set: each component in turn
        lines = [
            f"{path}: {em!r}",
            "  the fit keeps, per spectrum, the component whose full-spectrum fit has the lowest chi2 (fit_component)",
        ]
        for name, component in zip(em.names, em.components, strict=True):
            lines.append(f"component {name!r}:")
            lines += ["  " + line for line in emulator_summary(path, component).splitlines()[1:]]
        return "\n".join(lines)
    m = em.meta
    ranges = ", ".join(f"{n} {lo:g}..{hi:g}" for n, lo, hi in zip(em.label_names, em.x_min, em.x_max, strict=True))
    lines = [f"{path}: {em!r}", f"  label ranges: {ranges}"]
    grid = m.get("grid_meta") or {}
    if grid:
        n, seed = grid.get("n_spectra", "?"), grid.get("seed", "?")
        lines.append(f"  model grid: {n} spectra, seed {seed} ({grid.get('producer', '?')})")
    if "valid_sigma" in m:
        lines.append(
            f"  validation precision: {100 * m['valid_sigma']:.3f} % overall, {100 * m['valid_sigma_deep']:.3f} % "
            f"where flux < 0.95 (P2: 0.165 %, 0.586 %), on {m.get('n_valid', '?')} held-out spectra"
        )
    if "train_seconds" in m:
        lines.append(
            f"  trained: {m['train_seconds']:.0f} s, {m.get('n_epochs', 0):.0f} epochs ({m.get('stop_reason')}), "
            f"{m.get('torch_threads')} torch threads on {m.get('device')}; {m.get('trained_with')}"
        )
        lines.append(f"  settings: {m.get('settings')}")
    for key in ("source", "command", "code_commit"):
        if key in m:
            lines.append(f"  {key}: {m[key]}")
    return "\n".join(lines)


def emulator_info(source: str | None) -> str:
    """``survey-scale emulator info [SOURCE]``: :func:`emulator_summary` of an emulator file or a shipped
    emulator's name (default :data:`DEFAULT_EMULATOR`).

    Raises
    ------
    FileNotFoundError
        ``source`` is neither a file nor a shipped emulator's name.
    """
    from survey_scale.science.emulator import DEFAULT_EMULATORS, default_emulator_path
    from survey_scale.science.emulator import load as load_emulator

    source = source or DEFAULT_EMULATOR
    path = default_emulator_path(source) if source in DEFAULT_EMULATORS else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no emulator file there (nor a shipped emulator's name)")
    return emulator_summary(path, load_emulator(path))


def train_to_file(cfg: EmulatorConfig, out: Path, command: str, threads: int | None = None) -> tuple[Path, Emulator]:
    """``survey-scale emulator train``: an emulator trained with :func:`train_from_config`, written to ``out``.

    Parameters
    ----------
    cfg
        The ``emulator`` section: the model grid is ``cfg.model_grid`` (a file), or else one of ``grid_size``
        spectra synthesized with ``grid_seed``; the training keys as for the step.
    out
        The emulator file to write (``.npz``).
    command
        The command line, kept in the emulator's ``meta["command"]`` (with the grid in ``meta["model_grid"]``).
    threads
        Torch CPU threads (``None`` or 0: torch's choice).

    Returns
    -------
    tuple
        The file written and the emulator.

    Raises
    ------
    FileNotFoundError
        ``cfg.model_grid`` is not a file.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    if cfg.model_grid is not None:
        if not cfg.model_grid.is_file():
            raise FileNotFoundError(f"{cfg.model_grid}: model grid not found")
        grid = load_model_grid(cfg.model_grid)
    else:
        # under the command's logger name, as when the command line logged it
        logging.getLogger("survey_scale").info(
            "emulator: synthesizing a model grid of %d spectra (seed %d)", cfg.grid_size, cfg.grid_seed
        )
        grid = make_model_grid(cfg.grid_size, cfg.grid_seed)
    em = train_from_config(cfg, grid)
    em.meta["command"] = command
    synthesized = f"make_model_grid({cfg.grid_size}, {cfg.grid_seed})"
    em.meta["model_grid"] = str(cfg.model_grid) if cfg.model_grid is not None else synthesized
    return em.save(out), em
