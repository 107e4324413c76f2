"""The whole pipeline: every stage that is not done yet, in order (SPEC §11).

``run_pipeline(config)`` takes the writer lock, starts the cluster of ``config.cluster`` and calls
``run_pipeline_with_client(config, client)`` (the pair mirrors hats-import's ``pipeline`` /
``pipeline_with_client``). Steps:

1. ingest ``ingest.input`` if configured (an unfinished batch is completed first);
2. ``normalize`` (§3) over all chunks not done;
3. the PCA models (§4): pass 1 on the high-S/N candidates, then refits without the stars each pass flags
   as emission or erroneous — each model file is reused while its training set and settings are unchanged;
4. ``pca`` (§4): coefficients, ``pca_flux``, Hα diagnostics and flags over all chunks not done;
5. the emulator (§5.1): ``emulator.path``, or one trained on a model grid (cached while unchanged);
6. ``fit`` (§5.3): labels, errors, covariances, χ², flags and ``model_flux`` over all chunks not done.

Each step is skipped when up to date (chunk markers carry the stage version, configuration hash and model
hashes), so ``survey-scale run`` after an append processes only the new spectra, and a killed run resumes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client

from survey_scale.cluster import thread_budget
from survey_scale.config import Config
from survey_scale.cube import create_cube, meta_dir, open_group, read_column, spec_length
from survey_scale.emission import derive_thresholds, emission_flags
from survey_scale.emulator import load as load_emulator
from survey_scale.emulator import train
from survey_scale.grid import wavelength_grid
from survey_scale.ingest import IngestSummary, ingest_with_client
from survey_scale.labels_stage import fit_stage
from survey_scale.masks import clean_window_mask
from survey_scale.model_grid import load_model_grid, save_model_grid
from survey_scale.normalize import normalize_stage
from survey_scale.pca import (
    PCAModel,
    add_results,
    diagnostics_block,
    gram_block,
    moments_block,
    moments_to_mean_std,
    pca_from_gram,
    pca_stage,
)
from survey_scale.runner import StageSummary, file_sha256, map_rows, reduce_rows, run_stage
from survey_scale.synth import make_model_grid

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """A step cannot run (e.g. too few training spectra); the message says what to change."""


@dataclass
class PipelineSummary:
    """What a pipeline run did."""

    ingest: list[IngestSummary] = field(default_factory=list)
    stages: list[StageSummary] = field(default_factory=list)
    models: dict[str, Path] = field(default_factory=dict)


def _hash(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.asarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return digest.hexdigest()[:16]


def fit_pca(
    cube: Path, rows: np.ndarray, n_components: int, client: Client, block_rows: int, meta: dict[str, Any]
) -> PCAModel:
    """Fit the §4 PCA on the normalized spectra of ``rows`` (two passes over them: moments, Gram)."""
    variables = ("norm_flux", "norm_ivar")
    moments = reduce_rows(cube, variables, rows, moments_block, add_results, client, block_rows=block_rows)
    mean, std, noise = moments_to_mean_std(moments)
    gram = reduce_rows(
        cube, variables, rows, gram_block, add_results, client, {"mean": mean, "std": std}, block_rows=block_rows
    )
    clean = clean_window_mask(wavelength_grid())
    return pca_from_gram(gram["gram"], int(gram["rows"]), mean, std, noise, clean, n_components, meta)


def _diagnostics(cube: Path, rows: np.ndarray, model: PCAModel, client: Client, block_rows: int) -> dict:
    scattered = client.scatter(model, broadcast=True)
    return map_rows(
        cube,
        ("norm_flux", "norm_ivar"),
        rows,
        diagnostics_block,
        client,
        {"model": scattered},
        block_rows=block_rows,
    )


def pca_candidates(cube: Path, config: Config) -> np.ndarray:
    """Rows eligible for training: S/N above ``pca.min_snr`` and enough usable clean-window pixels."""
    cfg = config.pca
    root = open_group(cube)
    if cfg.snr_column not in root:
        raise PipelineError(f"{cube}: pca.snr_column {cfg.snr_column!r} is not a variable of the cube")
    snr = read_column(root, cfg.snr_column).astype(np.float64)
    clean_fraction = read_column(root, "clean_fraction")
    rows = np.flatnonzero((snr > cfg.min_snr) & (clean_fraction >= cfg.min_clean_fraction))
    if cfg.max_train is not None and rows.size > cfg.max_train:
        rng = np.random.default_rng(cfg.seed)
        rows = np.sort(rng.choice(rows, cfg.max_train, replace=False))
    if rows.size < 2 * cfg.n_components:
        raise PipelineError(
            f"{cube}: only {rows.size} spectra have {cfg.snr_column} > {cfg.min_snr} and clean_fraction >= "
            f"{cfg.min_clean_fraction}; the PCA needs at least {2 * cfg.n_components} (lower pca.min_snr or "
            "pca.n_components)"
        )
    return rows


def build_pca_models(cube: Path, config: Config, client: Client) -> Path:
    """The iterated PCA of SPEC §4; returns the final model's path (refitting only what changed).

    Pass 1 trains on every candidate (S/N above ``pca.min_snr``); each refit trains on the candidates that
    the previous pass did not flag (emission beyond ``emission.train_n_sigma``, erroneous, or carrying more
    than ``pca.max_component_share`` of one component's variance — a defect the PCA learnt to reconstruct,
    see :func:`survey_scale.pca.component_share`), and stops early when that set no longer changes. P1
    found one refit enough on real spectra; on the mock, whose pass 1 is trained by 13 % emission stars
    with EW up to 50 Å, a second refit halves the scatter of the Hα prediction, hence ``pca.n_refits: 2``.
    The final model carries the flag thresholds derived from its unflagged candidates. Every pass is saved
    (``pca-passN.npz``) and reused while its inputs are unchanged.
    """
    cfg, em_cfg = config.pca, config.emission
    rows = pca_candidates(cube, config)
    specids = read_column(open_group(cube), "specid")[rows].astype(str)
    norm_hash = open_group(cube)["norm_flux"].attrs.get("provenance_config_hash", "")
    folder = meta_dir(cube) / "models"
    key = _hash(specids, cfg.model_dump_json(), em_cfg.model_dump_json(), norm_hash)
    train = rows
    for n in range(1, cfg.n_refits + 2):
        key = _hash(f"pass{n}", key, specids[np.isin(rows, train)])
        path = folder / f"pca-pass{n}.npz"
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
                cube,
                train,
                cfg.n_components,
                client,
                cfg.block_spectra,
                {"pass": n, "training_key": key, "n_excluded": int(rows.size - train.size)},
            )
            model.save(path)
        stats = _diagnostics(cube, rows, model, client, cfg.block_spectra)
        em, bad = emission_flags(
            stats,
            derive_thresholds(stats, em_cfg.bad_n_sigma, em_cfg.bad_local_n_sigma),
            em_cfg.train_n_sigma,
            em_cfg.threshold,
            em_cfg.bad_chi2_threshold,
            em_cfg.bad_local_z_threshold,
        )
        outlier = stats.pop("component_share") > cfg.max_component_share
        unflagged = rows[(em == 0) & (bad == 0) & ~outlier]
        log.info(
            "PCA pass %d: %d candidates flagged (emission %d, erroneous %d, owning a component %d)",
            n,
            rows.size - unflagged.size,
            int(em.sum()),
            int(bad.sum()),
            int(outlier.sum()),
        )
        if n == cfg.n_refits + 1 or np.array_equal(unflagged, train):
            break
        train = unflagged
    final = folder / "pca.npz"
    keep = np.isin(rows, unflagged)
    model.meta["thresholds"] = derive_thresholds(
        {k: v[keep] for k, v in stats.items()}, em_cfg.bad_n_sigma, em_cfg.bad_local_n_sigma
    )
    model.meta["threshold_rule"] = (
        "em_flag: halpha_excess > excess_offset + n_sigma x sqrt(halpha_excess_err^2 + excess_model_sigma^2); "
        f"offset, model sigma and the limits below measured on the {int(keep.sum())} candidates the final pass "
        f"did not flag; bad_spectrum_flag: pca_chi2 > 10**(median + {em_cfg.bad_n_sigma} x 1.4826 MAD of log10 "
        f"chi2) or pca_local_z > 10**(median + {em_cfg.bad_local_n_sigma} x 1.4826 MAD of log10 z)"
    )
    model.meta["final_pass"] = n
    if not final.exists() or PCAModel.load(final).meta != model.meta:
        model.save(final)
    return final


STALLED_EMULATOR_SIGMA = 0.01
"""A trained emulator less precise than this (1 % of the flux, ~6× P2's) gets a warning in the log."""


def build_emulator(cube: Path, config: Config) -> Path:
    """The emulator file for the fit: ``emulator.path``, or one trained on the model grid (SPEC §5.1).

    A trained emulator is cached in the cube's models folder with a key of its grid and settings, and
    reused while they do not change.
    """
    cfg = config.emulator
    if cfg.path is not None:
        if not Path(cfg.path).is_file():
            raise PipelineError(f"emulator.path {cfg.path}: file not found")
        return Path(cfg.path)
    folder = meta_dir(cube) / "models"
    if cfg.model_grid is not None:
        grid_path = Path(cfg.model_grid)
    else:
        grid_path = folder / f"model_grid-{cfg.grid_size}-{cfg.grid_seed}.npz"
        if not grid_path.exists():
            log.info("emulator: synthesizing a model grid of %d spectra (seed %d)", cfg.grid_size, cfg.grid_seed)
            save_model_grid(make_model_grid(cfg.grid_size, cfg.grid_seed), grid_path)
    key = _hash(file_sha256(grid_path), cfg.model_dump_json(exclude={"path", "device"}))
    path = folder / f"emulator-{cfg.architecture}.npz"
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


STEPS = ("ingest", "normalize", "pca", "fit")
"""The pipeline's steps in order (``until`` of :func:`run_pipeline`)."""


def run_pipeline_with_client(
    config: Config, client: Client, *, progress: bool = True, until: str = "fit"
) -> PipelineSummary:
    """Run every step up to ``until`` that is not done yet on ``client`` (the caller holds the writer lock)."""
    if until not in STEPS:
        raise PipelineError(f"until must be one of {', '.join(STEPS)}, got {until!r}")
    cube = Path(config.cube.path)
    summary = PipelineSummary()
    summary.ingest = ingest_with_client(config, client, progress=progress)
    if spec_length(open_group(cube)) == 0:
        raise PipelineError(f"{cube}: the cube holds no spectra; ingest some first (ingest.input or --input)")
    if until == "ingest":
        return summary
    norm = config.normalize
    summary.stages.append(
        run_stage(cube, normalize_stage(norm.length, norm.block_spectra, norm.min_pixels), client, progress=progress)
    )
    if until == "normalize":
        return summary
    model_path = build_pca_models(cube, config, client)
    summary.models["pca"] = model_path
    summary.stages.append(
        run_stage(
            cube,
            pca_stage(model_path, config.pca.n_components, config.emission.model_dump(), config.pca.block_spectra),
            client,
            progress=progress,
        )
    )
    if until == "pca":
        return summary
    emulator_path = build_emulator(cube, config)
    summary.models["emulator"] = emulator_path
    label_names = tuple(load_emulator(emulator_path).label_names)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    summary.stages.append(
        run_stage(
            cube,
            fit_stage(emulator_path, label_names, config.fit.model_dump()),
            client,
            progress=progress,
            thread_budget=thread_budget(n_workers, config.cluster.threads_per_worker),
        )
    )
    return summary


def run_pipeline(config: Config, *, progress: bool = True, until: str = "fit") -> PipelineSummary:
    """Run the pipeline up to the step ``until`` (:data:`STEPS`) with the cluster of ``config.cluster``, under
    the cube's writer lock."""
    from survey_scale.cluster import dask_client
    from survey_scale.lock import WriterLock

    cube = Path(config.cube.path)
    if not (cube / "zarr.json").exists():
        create_cube(cube, config.cube)
    with WriterLock(cube, config.runner.lock_stale_after_s), dask_client(config.cluster) as client:
        return run_pipeline_with_client(config, client, progress=progress, until=until)
