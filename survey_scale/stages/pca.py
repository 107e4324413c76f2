"""The §4 PCA: the iterated model fit (a row reduction, cached) and the ``pca`` stage (SPEC §4, P1 §3).

Step ``pca_model`` fits the PCA on the high-S/N candidates and refits it without the stars each pass flags;
step ``pca`` maps the final model over the cube: coefficients, ``pca_flux``, Hα diagnostics, ``em_flag`` and
the erroneous-spectrum evidence ``pca_chi2``, ``pca_local_z`` (``bad_spectrum_flag`` is decided after the
label fit, by :mod:`survey_scale.stages.bad_spectra`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from survey_scale.core.files import stable_hash
from survey_scale.core.masks import clean_window_mask
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    ModelRef,
    ModelResult,
    Output,
    PipelineError,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
)
from survey_scale.science.emission import emission_flags
from survey_scale.science.pca import (
    PCAModel,
    RefitSettings,
    add_results,
    diagnostics,
    diagnostics_block,
    fallback_pca,
    gram_block,
    iterated_pca,
    moments_block,
    moments_to_mean_std,
    pca_from_gram,
    training_candidates,
)


class PCAConfig(Section):
    """PCA reconstruction (SPEC §4, P1 §3)."""

    n_components: int = Field(100, ge=1, description="K, the number of principal components")
    snr_column: str = Field("snr_g", description="the S/N used to choose training spectra")
    min_snr: float = Field(
        50.0, ge=0, description="training spectra have S/N above this (pass 1); pass 2 also drops flagged ones"
    )
    max_train: int | None = Field(
        100_000, ge=100, description="at most this many training spectra (a seeded random subset); null = all"
    )
    min_clean_fraction: float = Field(
        0.95, ge=0, le=1, description="training spectra need this fraction of usable clean-window pixels"
    )
    seed: int = Field(0, description="seed of the subset")
    n_refits: int = Field(
        2, ge=0, description="refits without the stars the previous pass flagged (P1 used 1; see pipeline)"
    )
    max_component_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="refits also drop training spectra that carry more than this share of one component's variance "
        "(outliers such as flux jumps that would own a component)",
    )
    block_spectra: int = Field(2048, ge=1, description="spectra per Dask task")


class EmissionConfig(Section):
    """H-alpha emission flag, and the PCA's erroneous-spectrum evidence (SPEC §4, P1 §3 and Appendix A).

    The ``bad_*`` keys are the PCA's own evidence of an erroneous spectrum, which drops spectra from the refits'
    training set; ``bad_spectrum_flag`` itself is decided after the label fit (section ``bad_spectra``).
    """

    threshold: float | None = Field(
        None, description="fixed H-alpha excess threshold; null = derived, per spectrum (below)"
    )
    n_sigma: float = Field(
        2.75,
        gt=0,
        description="em_flag: excess > offset + sqrt((n_sigma x err)^2 + (model_n_sigma x s x model_sigma)^2)",
    )
    model_n_sigma: float = Field(
        4.0,
        gt=0,
        description="with s = sqrt(max(1, pca_chi2)): how much worse than typical the PCA describes the spectrum "
        "(stars at the population's edges are not called emitters); offset and model_sigma derived; two "
        "multipliers: the noise is Gaussian, the model term is not",
    )
    train_n_sigma: float = Field(
        2.5, gt=0, description="each PCA refit trains without the candidates the previous pass put above this"
    )
    bad_chi2_threshold: float | None = Field(
        None,
        description="reduced chi2 (clean windows) above which a candidate is erroneous (it leaves the refits' "
        "training set); null = derived",
    )
    bad_n_sigma: float = Field(20.0, gt=0, description="derived: 10**(median + bad_n_sigma x 1.4826 MAD of log10 chi2)")
    bad_local_z_threshold: float | None = Field(
        None,
        description="worst local (~50 A) misfit significance above which a candidate is erroneous; null = derived",
    )
    bad_local_n_sigma: float = Field(
        4.0, gt=0, description="derived: 10**(median + bad_local_n_sigma x 1.4826 MAD of log10 z)"
    )


log = logging.getLogger(__name__)

PCA_STAGE_VERSION = "2"
PCA_MODEL_FILE = "pca.npz"
"""The final PCA model in the cube's models folder (the passes are ``pca-passN.npz`` beside it)."""


class TooFewCandidates(PipelineError):
    """Fewer PCA training candidates than the PCA needs (:func:`fallback_pca_model` takes over)."""


# --- the model: an iterated row reduction ----------------------------------------------------------------


def fit_pca(engine: Engine, rows: np.ndarray, n_components: int, block_rows: int, meta: dict[str, Any]) -> PCAModel:
    """Fit the §4 PCA on the normalized spectra of ``rows`` (two passes over them: moments, Gram)."""
    variables = ("norm_flux", "norm_ivar")
    moments = engine.reduce_rows(variables, rows, moments_block, add_results, block_rows=block_rows)
    mean, std, noise = moments_to_mean_std(moments)
    gram = engine.reduce_rows(
        variables, rows, gram_block, add_results, {"mean": mean, "std": std}, block_rows=block_rows
    )
    clean = clean_window_mask(wavelength_grid())
    return pca_from_gram(gram["gram"], int(gram["rows"]), mean, std, noise, clean, n_components, meta)


def pca_candidates(engine: Engine, cfg: PCAConfig) -> np.ndarray:
    """Rows eligible for training: S/N above ``pca.min_snr`` and enough usable clean-window pixels."""
    try:
        snr = engine.read_column(cfg.snr_column).astype(np.float64)
    except PipelineError:  # name the configuration key that points at the missing variable
        raise PipelineError(f"{engine.cube}: pca.snr_column {cfg.snr_column!r} is not a variable of the cube") from None
    clean_fraction = engine.read_column("clean_fraction")
    rows = training_candidates(snr, clean_fraction, cfg.min_snr, cfg.min_clean_fraction, cfg.max_train, cfg.seed)
    if rows.size < 2 * cfg.n_components:
        raise TooFewCandidates(
            f"{engine.cube}: only {rows.size} spectra have {cfg.snr_column} > {cfg.min_snr} and clean_fraction >= "
            f"{cfg.min_clean_fraction}; the PCA needs at least {2 * cfg.n_components} (lower pca.min_snr or "
            "pca.n_components)"
        )
    return rows


def build_pca_models(config: ConfigBase, engine: Engine) -> Path:
    """The iterated PCA of SPEC §4; returns the final model's path (refitting only what changed).

    The iteration is :func:`survey_scale.science.pca.iterated_pca`; this function gives it the candidates
    (:func:`pca_candidates`), each pass's fit (:func:`fit_pca`, or the pass's file when its training set is
    unchanged) and the candidates' statistics under a model (a row map), and keeps the files.

    Pass 1 trains on every candidate (S/N above ``pca.min_snr``); each refit trains on the candidates that
    the previous pass did not flag (emission beyond ``emission.train_n_sigma``, erroneous, or carrying more
    than ``pca.max_component_share`` of one component's variance — a defect the PCA learnt to reconstruct,
    see :func:`survey_scale.science.pca.component_share`), and stops early when that set no longer changes.
    P1 found one refit enough on real spectra; on the mock, whose pass 1 is trained by 13 % emission stars
    with EW up to 50 Å, a second refit halves the scatter of the Hα prediction, hence ``pca.n_refits: 2``.
    The final model carries the flag thresholds derived from its unflagged candidates. Every pass is saved
    (``pca-passN.npz``) and reused while its inputs are unchanged.

    Once made, the final model is kept across appends (SPEC §11: trained models are re-used for the new
    spectra, which alone then go through the ``pca`` stage) while the PCA and emission settings and the
    normalization are unchanged; ``runner.refit`` (``survey-scale run --refit``) trains it again on the
    whole cube, and then every spectrum is reconstructed again with it.
    """
    cfg, em_cfg = config.pca, config.emission
    norm_hash = engine.variable_attrs("norm_flux").get("provenance_config_hash", "")
    settings_key = stable_hash(PCA_STAGE_VERSION, cfg.science_json(), em_cfg.science_json(), norm_hash)
    final = engine.model_path(PCA_MODEL_FILE)
    if final.exists() and not config.runner.refit:
        kept = PCAModel.load(final)
        if kept.meta.get("settings_key") == settings_key:
            log.info(
                "PCA: the model trained on %d spectra is kept (runner.refit / run --refit trains it again on the "
                "whole cube)",
                kept.meta.get("n_train", -1),
            )
            return final
    try:
        rows = pca_candidates(engine, cfg)
    except TooFewCandidates as exc:
        return fallback_pca_model(config, engine, str(exc))
    specids = engine.read_column("specid")[rows].astype(str)
    key = stable_hash(specids, settings_key)

    def fit(n: int, train: np.ndarray) -> PCAModel:
        # pass n's model: the file kept while its training set (and every earlier one) is unchanged
        nonlocal key
        key = stable_hash(f"pass{n}", key, specids[np.isin(rows, train)])
        path = engine.model_path(f"pca-pass{n}.npz")
        model = PCAModel.load(path) if path.exists() else None
        if model is None or model.meta.get("training_key") != key:
            log.info(
                "PCA pass %d: fitting on %d of %d candidates (%s > %s)",
                n,
                train.size,
                rows.size,
                cfg.snr_column,
                cfg.min_snr,
            )
            model = fit_pca(
                engine,
                train,
                cfg.n_components,
                cfg.block_spectra,
                {"pass": n, "training_key": key, "n_excluded": int(rows.size - train.size)},
            )
            model.save(path)
        return model

    def statistics(model: PCAModel) -> dict[str, np.ndarray]:
        variables = ("norm_flux", "norm_ivar")
        return engine.map_rows(variables, rows, diagnostics_block, {"model": model}, block_rows=cfg.block_spectra)

    settings = RefitSettings(
        n_refits=cfg.n_refits,
        max_component_share=cfg.max_component_share,
        train_n_sigma=em_cfg.train_n_sigma,
        threshold=em_cfg.threshold,
        bad_chi2_threshold=em_cfg.bad_chi2_threshold,
        bad_local_z_threshold=em_cfg.bad_local_z_threshold,
        bad_n_sigma=em_cfg.bad_n_sigma,
        bad_local_n_sigma=em_cfg.bad_local_n_sigma,
    )
    model = iterated_pca(rows, fit, statistics, settings)
    model.meta["settings_key"] = settings_key
    if not final.exists() or PCAModel.load(final).meta != model.meta:
        model.save(final)
    return final


def fallback_pca_model(config: ConfigBase, engine: Engine, reason: str) -> Path:
    """The PCA model of a cube with too few training spectra: never fail for want of training data (SPEC §4).

    The model kept from an earlier run of this cube (``pca.npz`` trained on the cube's own spectra, e.g. the
    previous release's) if there is one; else the basis the package ships
    (:func:`survey_scale.science.pca.fallback_pca`), brought to ``pca.n_components`` components, with its own
    thresholds. Logs a warning either way; the model's ``meta["fallback"]``
    records why.
    """
    final = engine.model_path(PCA_MODEL_FILE)
    kept = PCAModel.load(final) if final.exists() else None
    if kept is not None and "fallback" not in kept.meta and kept.n_components == config.pca.n_components:
        log.warning("PCA: %s; using the model kept from an earlier run of this cube (%s)", reason, final)
        return final
    model = fallback_pca(config.pca.n_components, reason)
    log.warning(
        "PCA: %s; using the basis the package ships (%d components of noised physical-model spectra): emission "
        "and erroneous-spectrum flags are indicative only",
        reason,
        model.meta["n_components_fitted"],
    )
    if kept is None or kept.meta != model.meta:
        model.save(final)
    return final


def run_model(config: ConfigBase, engine: Engine) -> ModelResult:
    """Registry step ``pca_model``: the final PCA model, in ``engine.models["pca"]``."""
    engine.models["pca"] = build_pca_models(config, engine)
    return ModelResult("pca", engine.models["pca"])


# --- the stage -------------------------------------------------------------------------------------------


def load_pca_model(path: str) -> PCAModel:
    """Loader of the runner's worker plugin."""
    return PCAModel.load(path)


def pca_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: PCA coefficients, ``pca_flux``, Hα diagnostics and flags of a chunk (SPEC §4)."""
    model: PCAModel = ctx.models["pca"]
    rec, stats = diagnostics(model, inputs["norm_flux"], inputs["norm_ivar"])
    # the PCA's erroneous-spectrum evidence (pca_chi2, pca_local_z) enters bad_spectrum_flag after the fit
    em, _ = emission_flags(
        stats, model.meta["thresholds"], params["n_sigma"], params["threshold"], model_n_sigma=params["model_n_sigma"]
    )
    pca_flux = np.where(em[:, None] == 1, rec["recon_clean"], rec["recon_full"])
    rejects = [
        (int(i), "no_pca_diagnostics", "no usable pixel in the Hα or clean windows: emission and χ² undefined")
        for i in np.flatnonzero(~np.isfinite(stats["halpha_excess"]) | ~np.isfinite(stats["pca_chi2"]))
    ]
    outputs = {"pca_coeff": rec["coeff"], "pca_flux": pca_flux, "em_flag": em, **stats}
    return StageResult(outputs, rejects)


def pca_stage(model_path: Path, pca: PCAConfig, emission: EmissionConfig) -> Stage:
    """The §4 stage: inputs ``norm_flux``, ``norm_ivar``; the model file is loaded once per worker."""
    f4 = "float32"
    return Stage(
        name="pca",
        version=PCA_STAGE_VERSION,
        func=pca_chunk,
        inputs=("norm_flux", "norm_ivar"),
        outputs=(
            Output("pca_coeff", f4, ("spec", "pc"), {"long_name": "PCA coefficients from the clean windows"}),
            Output("pca_flux", f4, ("spec", "wave"), {"long_name": "PCA-denoised normalized spectrum (SPEC §4)"}),
            Output("halpha_excess", f4, attrs={"long_name": "mean(observed - reconstruction), 6557-6571 A"}),
            Output("halpha_excess_err", f4, attrs={"long_name": "uncertainty of halpha_excess"}),
            Output("halpha_chi2", f4, attrs={"long_name": "reduced chi2, 6400-6550 and 6590-6690 A"}),
            Output("pca_chi2", f4, attrs={"long_name": "reduced chi2 over the clean windows"}),
            Output("pca_local_z", f4, attrs={"long_name": "significance of the worst ~50 A clean-window misfit"}),
            Output("em_flag", "int8", attrs={"long_name": "1 = H-alpha emission (P1 Sect. 3)"}),
        ),
        params={"threshold": emission.threshold, "n_sigma": emission.n_sigma, "model_n_sigma": emission.model_n_sigma},
        models={"pca": ModelRef(str(model_path), load_pca_model)},
        dims={"pc": pca.n_components},
        block_rows=pca.block_spectra,
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``pca``: the stage with the model of step ``pca_model``."""
    return engine.run_stage(pca_stage(engine.models["pca"], config.pca, config.emission))


STEPS = (
    Step(
        "pca_model",
        run_model,
        requires=("norm_flux", "norm_ivar", "clean_fraction", "snr_g"),
        produces=("model:pca",),
        description="the iterated PCA fit (§4)",
        config={"pca": PCAConfig, "emission": EmissionConfig},
    ),
    Step(
        "pca",
        run,
        requires=("norm_flux", "norm_ivar", "model:pca"),
        produces=output_names(pca_stage(Path("pca.npz"), PCAConfig(), EmissionConfig()).outputs),
        description="PCA reconstruction, emission and erroneous-spectrum flags (§4)",
        config={"pca": PCAConfig, "emission": EmissionConfig},
    ),
)
