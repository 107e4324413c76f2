"""Spectroscopic MKs (SPEC §8, P1 §5): the model step ``mks_model`` and the inference stage ``mks``.

``mks_model``, with ``mks.*`` settings:

1. Sets (:func:`~survey_scale.science.mks.training_split`): hot-star candidates
   (:func:`survey_scale.science.final_sample.hot_star_candidates`) with a geometric MKs, ϖ/σ_ϖ >
   ``min_parallax_snr`` and no ``bad_spectrum_flag``; 4/5 of the stars above S/N ``min_snr`` train (at most
   ``max_train`` spectra, a seeded subset), the rest test.
2. Two networks on ``pca_flux``: ``non_emission`` (trained on the non-emission training spectra, full range
   minus the telluric/ISM bands) and ``emission`` (trained on all training spectra, clean windows only — P1
   trained it on both kinds, and applies it to emission spectra). With ``balance_mks``, loss weights even
   out the MKs distribution, so that the rare luminous stars are not pulled toward the mean. Each is
   cross-fitted (:class:`~survey_scale.science.mks.CrossFitNetworks`): one network per training fold, a
   training star's MKs from the one that never saw it, every other spectrum's the mean of all.
3. Binaries out, ``binary_iterations`` times: the uncertainty model at its maximum likelihood on the test
   singles, S/N_Δϖ of every training spectrum, those ≥ ``distance.binary_snr`` dropped, the networks retrained.
4. The uncertainty model of P1 Eq. 7–14 sampled with emcee on the test single stars of each network (the
   emission network's on emission spectra; with fewer than ``min_error_stars`` of them it takes the
   non-emission posterior, and says so). Posterior summaries go to ``attrs['reductions']['mks_model']``
   (``survey-scale info``), samples into the model file.

Steps 1–4 are :func:`survey_scale.science.mks.train_mks_model` (numpy in, numpy out); this module reads its
columns, gives it the training spectra and the test spectra's predictions by row maps, and keeps the file.

The model file (``models/mks.npz``) is kept with a key of the configuration and of its inputs' provenance,
not of the cube's rows: an append re-uses it (its new spectra only go through the ``mks`` stage);
``survey-scale run --refit`` (``runner.refit``) trains it again on the whole cube.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from survey_scale.core.files import stable_hash
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    ModelRef,
    ModelResult,
    Output,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
)
from survey_scale.science.final_sample import HOT_STAR_EVIDENCE
from survey_scale.science.mks import (
    SET_COLUMNS,
    CrossFitNetworks,
    MKsModel,
    MKsModelError,
    MKsNetwork,
    NetworkJob,
    NetworkSettings,
    TooFewSpectra,
    TooFewStars,
    TrainingSettings,
    predict_own_kind,
    train_job,
    train_mks_model,
)
from survey_scale.science.mks import summary_lines as mks_summary_lines
from survey_scale.stages.chi2ratio import hot_star_rows


class MKsConfig(Section):
    """Spectroscopic MKs: geometric MKs, the two networks, the MCMC uncertainty model (SPEC §8, P1 §5)."""

    min_parallax_snr: float = Field(10.0, gt=0, description="training and test stars: parallax / error above this")
    min_snr: float = Field(
        50.0, ge=0, description="training stars: S/N above this (4/5 of the stars train, the rest test)"
    )
    bright_mks: float | None = Field(
        -1.5, description="training also takes stars with geometric MKs below this... (null = none)"
    )
    bright_min_parallax_snr: float = Field(
        3.0, gt=0, description="...and parallax / error above this (P1's bright-end stars)"
    )
    balance_mks: bool = Field(
        True, description="loss weights evening out the MKs distribution (luminous stars are rare)"
    )
    max_train: int = Field(50_000, ge=20, description="at most this many training spectra (a seeded subset)")
    binary_iterations: int = Field(2, ge=0, description="retrainings without the binaries found (P1: 2)")
    warm_start: bool = Field(
        True,
        description="each retraining continues the networks of the iteration before (false: from new random "
        "weights; the same precision in more epochs)",
    )
    hidden: list[int] = Field([100, 100], description="hidden widths (P1 Eq. 6: two layers of 100 sigmoid neurons)")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout of the hidden layers (P1)")
    learning_rate: float = Field(0.001, gt=0, description="Adam's learning rate")
    batch_size: int = Field(128, ge=1, description="spectra per optimizer step")
    max_epochs: int = Field(
        600, ge=1, description="at most this many epochs (early stopping on a validation tenth of the stars)"
    )
    patience: int = Field(40, ge=1, description="stop after this many epochs without a better validation loss")
    seed: int = Field(0, description="seed of the networks, the subset and the MCMC")
    device: str | None = Field(None, description="null = CUDA if available, else CPU (training)")
    threads: int = Field(1, ge=1, description="torch threads of the training (the same count gives the same model)")
    min_error_stars: int = Field(
        30, ge=10, description="an emission network with fewer single test stars takes the other's errors"
    )
    max_error_stars: int = Field(
        20_000,
        ge=10,
        description="the uncertainty model's fits use at most this many test spectra (a seeded subset: its cost in "
        "the client stays bounded; 20,000 stars pin each sigma to ~0.5 %)",
    )
    mcmc_walkers: int = Field(
        32, ge=10, description="emcee walkers of the uncertainty model (P1 Eq. 7-14; at least twice its 5 parameters)"
    )
    mcmc_steps: int = Field(
        4000, ge=100, description="steps per walker (>= 50 autocorrelation times after the burn-in)"
    )
    mcmc_burn: int = Field(1000, ge=0, description="steps discarded as burn-in")
    block_spectra: int = Field(4096, ge=1, description="spectra per Dask task (inference)")


log = logging.getLogger(__name__)


# 5: a binary out of training takes its own kind's networks' disagreement (was the emission networks'); 4: fused
# Adam, retrainings warm-started; 3: the networks' disagreement in the errors; 2: cross-fitted networks, no
# in-sample MKs (issue 27)
MKS_VERSION = "5"
MKS_MODEL_FILE = "mks.npz"


def rows_block(data: dict[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Row block: the spectra of the rows (float32)."""
    return {"pca_flux": np.asarray(data["pca_flux"], np.float32)}


def predict_block(data: dict[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Row block: ``mks`` and ``mks_spread`` of the rows, each by its own kind's networks
    (:func:`~survey_scale.science.mks.predict_own_kind`)."""
    mks, spread = predict_own_kind(params["networks"], data["pca_flux"], data["star_id"], data["em_flag"] == 1)
    return {"mks": mks, "mks_spread": spread}


def train_network_task(flux: np.ndarray, threads: int, *job: Any) -> MKsNetwork:
    """Task: one :data:`~survey_scale.science.mks.NetworkJob` on ``flux`` with ``threads`` torch threads (the
    same count gives the same network wherever it trains)."""
    from survey_scale.science.fitting import set_threads

    set_threads(threads)
    return train_job(flux, *job)


def select_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def training_settings(config: ConfigBase) -> TrainingSettings:
    """The science's settings from ``mks.*`` and ``distance.binary_snr`` (the training device chosen here)."""
    cfg = config.mks
    network = NetworkSettings(
        hidden=tuple(cfg.hidden),
        dropout=cfg.dropout,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        seed=cfg.seed,
        device=select_device(cfg.device),
    )
    return TrainingSettings(
        network=network,
        min_parallax_snr=cfg.min_parallax_snr,
        min_snr=cfg.min_snr,
        bright_mks=cfg.bright_mks,
        bright_min_parallax_snr=cfg.bright_min_parallax_snr,
        balance_mks=cfg.balance_mks,
        max_train=cfg.max_train,
        binary_iterations=cfg.binary_iterations,
        warm_start=cfg.warm_start,
        binary_snr=config.distance.binary_snr,
        min_error_stars=cfg.min_error_stars,
        max_error_stars=cfg.max_error_stars,
        mcmc_walkers=cfg.mcmc_walkers,
        mcmc_steps=cfg.mcmc_steps,
        mcmc_burn=cfg.mcmc_burn,
        seed=cfg.seed,
    )


def train_model(config: ConfigBase, engine: Engine, key: str) -> tuple[MKsModel, dict[str, Any]]:
    """Steps 1–4 of the module docstring (:func:`survey_scale.science.mks.train_mks_model` on the cube's
    columns; the spectra read and the test spectra predicted by row maps); returns the model and its summary
    for the cube's attributes."""
    cfg, snr_column = config.mks, config.survey.snr_column
    cols = {name: engine.read_column(name) for name in SET_COLUMNS}
    snr = engine.read_column(snr_column)
    hot = np.zeros(snr.size, dtype=bool)
    hot[hot_star_rows(engine)[0]] = True  # P1 trains on OB stars: a candidate list's cool stars stay out

    def read_flux(rows: np.ndarray) -> np.ndarray:
        return engine.map_rows(("pca_flux",), rows, rows_block, block_rows=cfg.block_spectra)["pca_flux"]

    def predict(networks: Mapping[str, CrossFitNetworks], rows: np.ndarray) -> dict[str, np.ndarray]:
        params = {"networks": networks}
        return engine.map_rows(
            ("pca_flux", "star_id", "em_flag"), rows, predict_block, params, block_rows=cfg.block_spectra
        )

    def train(flux: np.ndarray, jobs: list[NetworkJob]) -> list[MKsNetwork]:
        # the training spectra go to the workers once, not with each of the jobs
        items = [(cfg.threads, *job) for job in jobs]
        return engine.map_tasks("MKs networks", train_network_task, items, unit="network", shared=(flux,))

    settings = training_settings(config)
    model = train_mks_model(cols, snr, hot, wavelength_grid(), settings, read_flux, predict, train)
    summary = {
        "key": key,
        **model.meta,
        "selection": (
            f"parallax/error > {cfg.min_parallax_snr:g} (training also: > {cfg.bright_min_parallax_snr:g} where "
            f"mks_geo < {cfg.bright_mks}), no bad_spectrum_flag; training {snr_column} > {cfg.min_snr:g} and "
            f"star_id fold 1-4 of 5; binaries: S/N_dparallax >= {config.distance.binary_snr:g}"
        ),
    }
    model.meta = summary
    return model, summary


def model_key(config: ConfigBase, engine: Engine) -> str:
    """The MKs model's key: its settings and the provenance of what it trains on — not the cube's rows (an
    append re-uses the model)."""
    # The PCA model is in (its hash): it is kept across appends and changes only when retrained (new settings,
    # --refit), which changes every pca_flux. Not the rows, nor when they were written.
    kept = ("provenance_stage_version", "provenance_config_hash", "provenance_params", "provenance_model_hashes")
    evidence = tuple(name for name in HOT_STAR_EVIDENCE if engine.has_variable(name))  # the training set's hot stars
    stamps = {
        name: {k: v for k, v in engine.variable_attrs(name).items() if k in kept}
        for name in ("pca_flux", "mks_geo", "em_flag", *evidence)
    }
    settings = (config.mks.science_json(), config.survey.snr_column, config.distance.binary_snr)
    return stable_hash(MKS_VERSION, settings, stamps)


def run_model(config: ConfigBase, engine: Engine) -> ModelResult:
    """Registry step ``mks_model``: the trained model in ``engine.models["mks"]`` (re-used when its key matches,
    unless ``runner.refit``)."""
    return ModelResult("mks", kept_or_trained_model(config, engine))


def kept_or_trained_model(config: ConfigBase, engine: Engine) -> Path:
    """The MKs model file: the kept one when its key matches (and not ``runner.refit``), else trained now."""
    from survey_scale.science.fitting import set_threads

    path = engine.model_path(MKS_MODEL_FILE)
    key = model_key(config, engine)
    if path.exists() and not config.runner.refit:
        try:
            old = MKsModel.load(path)
        except MKsModelError as exc:  # a model of an older format, or a broken file: trained again
            log.warning("%s; training a new one", exc)
        else:
            if old.meta.get("key") == key and "untrained" not in old.meta:
                engine.models["mks"] = path
                return path
    set_threads(config.mks.threads)
    start = time.perf_counter()
    try:
        model, summary = train_model(config, engine, key)
        summary["seconds"] = round(time.perf_counter() - start, 1)
    except (TooFewStars, TooFewSpectra) as exc:
        # The rest of the run goes on: every MKs is NaN with this reason, distances use the parallax alone.
        log.warning("%s: no MKs model: %s", engine.cube, exc)
        summary = {"key": key, "untrained": str(exc)}
        model = MKsModel(networks={}, error_model={}, meta=summary)
    model.save(path)
    engine.record_reduction("mks_model", summary)
    engine.models["mks"] = path
    return path


# --- the stage --------------------------------------------------------------------------------------------


def load_mks_model(path: str) -> MKsModel:
    """Loader of the runner's worker plugin."""
    return MKsModel.load(path)


def mks_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: MKs, its error and the network used for each spectrum of a chunk."""
    model: MKsModel = ctx.models["mks"]
    out = model.predict(inputs["pca_flux"], inputs["em_flag"], inputs[params["snr_column"]], inputs["star_id"])
    reason = (
        f"no MKs model ({model.meta['untrained']})"
        if "untrained" in model.meta
        else "the PCA spectrum has non-finite pixels where the network reads: MKs undefined"
    )
    rejects = [(int(i), "no_mks", reason) for i in np.flatnonzero(~np.isfinite(out["mks"]))]
    return StageResult(out, rejects)


def mks_stage(model_path: Path, snr_column: str, block: int) -> Stage:
    return Stage(
        name="mks",
        version=MKS_VERSION,
        func=mks_chunk,
        inputs=("pca_flux", "em_flag", snr_column, "star_id"),
        outputs=(
            Output(
                "mks", "float32", attrs={"long_name": "spectroscopic absolute Ks magnitude (P1 §5)", "units": "mag"}
            ),
            Output(
                "mks_err",
                "float32",
                attrs={
                    "long_name": "sqrt(sigma_int^2 + (sigma_s100 / (S/N/100))^2 + (kappa mks_spread)^2) (P1 Eq. 10 "
                    "and the networks' disagreement)",
                    "units": "mag",
                },
            ),
            Output(
                "mks_spread",
                "float32",
                attrs={
                    "long_name": "standard deviation of the cross-fitted networks' MKs (NaN for a training star: "
                    "three of them fitted it)",
                    "units": "mag",
                },
            ),
            Output("mks_network", "int8", attrs={"long_name": "0 = non-emission network, 1 = emission network"}),
        ),
        params={"snr_column": snr_column},
        models={"mks": ModelRef(str(model_path), load_mks_model)},
        block_rows=block,
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``mks``: inference over the whole cube with the model of step ``mks_model``."""
    return engine.run_stage(mks_stage(engine.models["mks"], config.survey.snr_column, config.mks.block_spectra))


STEPS = (
    Step(
        "mks_model",
        run_model,
        requires=("pca_flux", "em_flag", "bad_spectrum_flag", "mks_geo", "mks_geo_err", "aks"),
        produces=("model:mks",),
        description="the MKs networks and their MCMC uncertainty model (§8)",
        config={"mks": MKsConfig},
        summary=mks_summary_lines,
    ),
    Step(
        "mks",
        run,
        requires=("pca_flux", "em_flag", "model:mks"),
        produces=output_names(mks_stage(Path("mks.npz"), "snr_g", 1).outputs),
        description="spectroscopic MKs of every spectrum (§8)",
        config={"mks": MKsConfig},
    ),
)
