"""Erroneous spectra after the label fit: ``bad_spectrum_flag`` and ``bad_spectrum_reason`` (SPEC §4, P1 App. A).

Registry step ``bad_spectra`` (after ``chi2ratio``, before ``mks_model``, whose training set leaves these
spectra out) runs, like ``chi2ratio``, reductions and two stages:

1. the survey references, from the fitted S/N > ``bad_spectra.reference_min_snr`` spectra without emission
   of hot-star candidates (:func:`survey_scale.science.final_sample.hot_star_candidates`: not the cool stars of
   a candidate list),
   model files kept across appends like the MKs model (``run --refit`` remakes them): the telluric
   transmission, the mean of flux / model in the observed frame
   (:func:`survey_scale.science.bad_spectra.telluric_template`, ``telluric.npz``), and the continuum steps,
   their median and scatter per pixel (:func:`survey_scale.science.bad_spectra.step_reference`,
   ``continuum_steps.npz``);
2. stage ``fit_residuals`` (per chunk; the spectra, ``model_flux``, ``rv``): ``flux_step_z`` and the label
   fit's evidence of
   :func:`survey_scale.science.bad_spectra.fit_residual_evidence` over the fitted pixels (the fit's mask:
   interstellar bands, dichroic, edges, flagged pixels; the telluric bands count for the wavelength test,
   with the transmission in each spectrum's frame), without the cores of the emission lines (±20 Å for
   hydrogen, the emission windows otherwise) for ``em_flag = 1`` spectra
   (:func:`survey_scale.science.bad_spectra.fit_residual_columns`);
3. the limits: every evidence column is read over the cube and its S/N-dependent limit derived from the
   hot-star candidates
   (:func:`survey_scale.science.bad_spectra.limits_from_config`), recorded with the counts per evidence in
   ``attrs["reductions"]["bad_spectra"]`` (printed by ``survey-scale info``);
4. stage ``bad_spectra`` (per chunk, per-spectrum columns only): the rule.

After an append the limits are derived again and only the cheap stage 4 re-runs over the old spectra.

Outputs
-------
==========================  ========  =====================================================================
variable                    dtype     meaning
==========================  ========  =====================================================================
fit_local_z                 float32   worst ~50 Å misfit of the label fit against its own misfit (NaN: no fit)
wave_shift_z                float32   wrong-wavelength evidence of the worst segment (NaN without a fit)
wave_shift_pixels           int16     its shift against the model, pixels of 1e-4 dex (69 km/s); 0: none
wave_shift_lo, wave_shift_hi float32  its wavelength range, Å (rest frame)
flux_step_z                 float32   largest continuum step against the survey's, in its scatter (NaN: none)
bad_spectrum_flag           int8      1 = erroneous spectrum (P1 App. A), 0 = not
bad_spectrum_reason         int16     the evidence that fired, a sum of bits (0 = none):
                                      1 pca_chi2, 2 pca_local, 4 fit_local, 8 chi2ratio, 16 wavelength,
                                      32 halpha, 64 flux_step
                                      (:data:`survey_scale.science.bad_spectra.REASON_BITS`)
==========================  ========  =====================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from survey_scale.core.files import atomic_write, save_npz
from survey_scale.core.labels import output_label_names
from survey_scale.core.masks import TELLURIC_BANDS, window_mask
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    ModelRef,
    Output,
    PipelineError,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
)
from survey_scale.science.bad_spectra import (
    EVIDENCE,
    MIN_SPECTRA_FOR_LIMIT,
    REASON_BITS,
    SnrLimit,
    bad_spectrum_rule,
    fit_residual_columns,
    limits_from_config,
    reason_counts,
    step_histogram_block,
    step_reference,
    telluric_sums_block,
    telluric_template,
)
from survey_scale.science.bad_spectra import emission_cores as emission_cores  # re-exported: benchmarks/eval_flags.py
from survey_scale.science.bad_spectra import reference_rows as survey_reference_rows
from survey_scale.science.bad_spectra import summary_lines as bad_spectra_summary_lines
from survey_scale.stages.chi2ratio import hot_star_rows
from survey_scale.stages.fit import load_emulator_model

EVIDENCE_NAMES = ("pca_chi2", "pca_local_z", "fit_local_z", "chi2ratio", "wave_shift_z", "halpha_chi2", "flux_step_z")
"""The evidence of ``bad_spectrum_flag`` (:mod:`survey_scale.science.bad_spectra`), in the order of their bits."""
_EVIDENCE_KEYS = ("pca_chi2", "pca_local", "fit_local", "chi2ratio", "wavelength", "halpha", "flux_step")


class BadSpectraConfig(Section):
    """Erroneous spectra from all the evidence, after the label fit (SPEC §4, P1 App. A; step ``bad_spectra``).

    Each limit is median + n_sigma × max(1.4826 MAD, (90th percentile − median) / 1.2816) of the evidence
    (log10 of it, or the value itself for ``chi2ratio`` and ``wave_shift_z``) per equal-count S/N bin of the
    survey.

    ``bad_spectrum_flag`` = 1 when any evidence exceeds its limit at the spectrum's S/N;
    ``bad_spectrum_reason`` is the sum of the bits of the evidence that fired: 1 ``pca_chi2`` (PCA reconstruction
    chi2, clean windows), 2 ``pca_local`` (worst ~50 A PCA misfit), 4 ``fit_local`` (worst ~50 A misfit of the label
    fit), 8 ``chi2ratio`` (fit chi2 for its Teff and S/N; no emission), 16 ``wavelength`` (a segment shifted against
    the fit's model, times the telluric transmission), 32 ``halpha`` (H-alpha region chi2; no emission), 64
    ``flux_step`` (a continuum step unlike the survey's).
    """

    pca_chi2_n_sigma: float = Field(
        8.0, gt=0, description="n_sigma of the PCA reconstruction chi2, clean windows (bit 1)"
    )
    pca_local_n_sigma: float = Field(
        6.0, gt=0, description="n_sigma of pca_local_z, the worst ~50 A misfit of the PCA (bit 2)"
    )
    fit_local_n_sigma: float = Field(
        6.0, gt=0, description="n_sigma of fit_local_z, the worst ~50 A misfit of the label fit (bit 4)"
    )
    chi2ratio_n_sigma: float = Field(
        30.0, gt=0, description="n_sigma of chi2ratio (bit 8; binaries and peculiar stars make its tail heavy)"
    )
    wavelength_n_sigma: float = Field(
        8.0, gt=0, description="n_sigma of wave_shift_z, the wrong-wavelength evidence (bit 16)"
    )
    halpha_n_sigma: float = Field(12.0, gt=0, description="n_sigma of halpha_chi2, the H-alpha region chi2 (bit 32)")
    flux_step_n_sigma: float = Field(
        3.5, gt=0, description="n_sigma of flux_step_z (bit 64; a flux jump between parts of the spectrum)"
    )
    pca_chi2_limit: float | None = Field(
        None, description="a fixed limit of the PCA chi2 instead of the derived one (null = derived)"
    )
    pca_local_limit: float | None = Field(None, description="a fixed limit of pca_local_z (null = derived)")
    fit_local_limit: float | None = Field(None, description="a fixed limit of fit_local_z (null = derived)")
    chi2ratio_limit: float | None = Field(
        None, description="a fixed limit of chi2ratio (null = derived; P2 §5.2 flags chi2ratio > 10)"
    )
    wavelength_limit: float | None = Field(None, description="a fixed limit of wave_shift_z (null = derived)")
    halpha_limit: float | None = Field(None, description="a fixed limit of halpha_chi2 (null = derived)")
    flux_step_limit: float | None = Field(None, description="a fixed limit of flux_step_z (null = derived)")
    min_per_bin: int = Field(500, ge=10, description="S/N bins of the limits: at least this many spectra each...")
    max_bins: int = Field(10, ge=1, description="...and at most this many bins")
    max_shift: int = Field(
        20, ge=2, description="wrong wavelength: shifts of the model scanned, pixels (1e-4 dex = 69 km/s)"
    )
    min_shift: int = Field(
        3, ge=2, description="wrong wavelength: smallest shift, against the spectrum's own, that counts"
    )
    reference_min_snr: float = Field(
        50.0,
        ge=0,
        description="the survey references (kept models: the telluric transmission and the continuum steps) come "
        "from fitted spectra without emission above this S/N",
    )
    block_spectra: int = Field(1024, ge=1, description="spectra per Dask task (the fit's residual evidence)")

    @model_validator(mode="after")
    def _shifts(self) -> BadSpectraConfig:
        if self.min_shift > self.max_shift:
            raise ValueError(f"min_shift ({self.min_shift}) must not exceed max_shift ({self.max_shift})")
        return self

    def n_sigma_of(self) -> dict[str, float]:
        """n_sigma of each evidence, by its name (:data:`EVIDENCE_NAMES`)."""
        return {name: getattr(self, f"{key}_n_sigma") for name, key in zip(EVIDENCE_NAMES, _EVIDENCE_KEYS, strict=True)}

    def fixed_limits(self) -> dict[str, float | None]:
        """The fixed limit of each evidence (None: derived), by its name."""
        return {name: getattr(self, f"{key}_limit") for name, key in zip(EVIDENCE_NAMES, _EVIDENCE_KEYS, strict=True)}


log = logging.getLogger(__name__)

FIT_RESIDUALS_VERSION = "3"
BAD_SPECTRA_VERSION = "1"
TELLURIC_FILE = "telluric.npz"
"""The observed-frame telluric transmission in the cube's models folder."""
STEPS_FILE = "continuum_steps.npz"
"""The survey's continuum steps per pixel (median and scale) in the cube's models folder."""
RULE = (
    "bad_spectrum_flag = 1 where any evidence exceeds its limit at the spectrum's S/N; limit = median + n_sigma x "
    "max(1.4826 MAD, (90th percentile - median) / 1.2816) of log10(evidence) (chi2ratio, wave_shift_z: of the "
    "evidence) over equal-count log10 S/N bins of the survey, linear in log10 S/N between bin centres; chi2ratio "
    "and halpha_chi2 count only without em_flag; bad_spectrum_reason = sum of the bits of the evidence that fired"
)


MODEL_INPUTS = ("labels", "vsini_raw", "fit_component")
"""What the fit's model spectra are rebuilt from where the cube does not keep ``model_flux``."""


@dataclass(frozen=True)
class FitModel:
    """The fit's emulator and the cube's label names: what rebuilds a block's model spectra (one object, so
    that a reduction sends it to every worker once)."""

    emulator: Any
    label_names: tuple[str, ...]


Rebuild = tuple[Path, FitModel]
"""The fit's emulator file and what rebuilds the model spectra from it, where the cube keeps no ``model_flux``."""


def model_source(config: ConfigBase, engine: Engine) -> Rebuild | None:
    """Where this step takes the fit's model spectra from: None, the cube's ``model_flux`` (kept), else what
    rebuilds them from :data:`MODEL_INPUTS` (``cube.keep_model_flux: false``)."""
    if config.cube.keep_model_flux:
        return None
    path = Path(engine.models["emulator"])
    emulator = load_emulator_model(str(path))
    return path, FitModel(emulator, output_label_names(tuple(emulator.label_names)))


def model_variables(source: Rebuild | None) -> tuple[str, ...]:
    """The variables a block reads for its model spectra."""
    return ("model_flux",) if source is None else MODEL_INPUTS


def block_model_flux(data: Mapping[str, np.ndarray], fit_model: FitModel | None) -> np.ndarray:
    """The fit's model spectra (n, P) of a block: its ``model_flux``, or rebuilt from :data:`MODEL_INPUTS`."""
    if "model_flux" in data:
        return np.asarray(data["model_flux"])
    from survey_scale.science.label_fit import model_spectra

    em, names = fit_model.emulator, fit_model.label_names
    return model_spectra(em, data["labels"], names, data["vsini_raw"], data["fit_component"])


def fit_residuals_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: the label fit's residual evidence of a chunk
    (:func:`survey_scale.science.bad_spectra.fit_residual_columns`)."""
    median, scale = ctx.models["continuum_steps"]
    rebuilt = "label_names" in params  # cube.keep_model_flux: false
    columns = fit_residual_columns(
        inputs["flux"],
        inputs["norm_flux"],
        inputs["norm_ivar"],
        inputs["pixmask"],
        block_model_flux(inputs, FitModel(ctx.models["emulator"], params["label_names"]) if rebuilt else None),
        inputs["em_flag"],
        inputs["rv"],
        wave=wavelength_grid(),
        telluric_template=ctx.models["telluric"],
        step_median=median,
        step_scale=scale,
        max_shift=params["max_shift"],
        min_shift=params["min_shift"],
    )
    return StageResult(columns)


def load_telluric(path: str) -> np.ndarray:
    """Loader of the runner's worker plugin: the observed-frame transmission (P,)."""
    with np.load(path, allow_pickle=False) as z:
        return z["transmission"]


def load_step_reference(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Loader of the runner's worker plugin: the survey's median continuum step and its scale (P,), dex."""
    with np.load(path, allow_pickle=False) as z:
        return z["median"], z["scale"]


def fit_residuals_stage(
    cfg: BadSpectraConfig,
    telluric_path: Path,
    steps_path: Path,
    source: Rebuild | None = None,
) -> Stage:
    """The fit's residual evidence; ``source``: where the model spectra come from (:func:`model_source`)."""
    f4 = "float32"
    return Stage(
        name="fit_residuals",
        version=FIT_RESIDUALS_VERSION,
        func=fit_residuals_chunk,
        inputs=("flux", "norm_flux", "norm_ivar", "pixmask", *model_variables(source), "em_flag", "rv"),
        outputs=(
            Output("fit_local_z", f4, attrs={"long_name": "worst ~50 A misfit of the label fit / its own misfit"}),
            Output("wave_shift_z", f4, attrs={"long_name": "wrong-wavelength evidence of the worst segment"}),
            Output("wave_shift_pixels", "int16", attrs={"long_name": "its shift against the model", "units": "pixel"}),
            Output("wave_shift_lo", f4, attrs={"long_name": "its first wavelength (rest frame)", "units": "Angstrom"}),
            Output("wave_shift_hi", f4, attrs={"long_name": "its last wavelength (rest frame)", "units": "Angstrom"}),
            Output("flux_step_z", f4, attrs={"long_name": "largest continuum step against the survey's / its scale"}),
        ),
        params={
            "max_shift": cfg.max_shift,
            "min_shift": cfg.min_shift,
            **({"label_names": source[1].label_names} if source else {}),
        },
        models={
            "telluric": ModelRef(str(telluric_path), load_telluric),
            "continuum_steps": ModelRef(str(steps_path), load_step_reference),
            **({"emulator": ModelRef(str(source[0]), load_emulator_model)} if source else {}),
        },
        block_rows=cfg.block_spectra,
    )


def reference_rows(config: ConfigBase, engine: Engine, hot: np.ndarray) -> np.ndarray:
    """Rows of the survey references (the telluric transmission, the continuum steps): fitted hot-star spectra
    (``hot``, a bool per row) without emission above ``bad_spectra.reference_min_snr``."""
    snr, chi2 = engine.read_column(config.survey.snr_column), engine.read_column("chi2_red")
    em_flag = engine.read_column("em_flag")
    return survey_reference_rows(snr, chi2, em_flag, hot, config.bad_spectra.reference_min_snr)


def telluric_sums_rows(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Reduction block: :func:`survey_scale.science.bad_spectra.telluric_sums_block` with the block's model
    spectra (:func:`block_model_flux`; ``params``: the :class:`FitModel` ``fit_model`` where rebuilt)."""
    model = block_model_flux(data, params.get("fit_model"))
    return telluric_sums_block({**data, "model_flux": model}, params)


def build_telluric(
    config: ConfigBase,
    engine: Engine,
    rows: np.ndarray,
    source: Rebuild | None,
) -> Path:
    """The observed-frame telluric transmission (module docstring, step 1); kept unless ``runner.refit``."""
    path = engine.model_path(TELLURIC_FILE)
    if path.exists() and not config.runner.refit:
        return path
    telluric = window_mask(wavelength_grid(), TELLURIC_BANDS)
    if rows.size:
        variables = ("norm_flux", "norm_ivar", *model_variables(source), "rv")
        block_rows = config.bad_spectra.block_spectra
        params = {"fit_model": source[1]} if source else {}
        sums = engine.reduce_rows(variables, rows, telluric_sums_rows, add_sums, params, block_rows=block_rows)
        transmission = telluric_template(sums, telluric)
    else:
        transmission = np.ones(telluric.size)
    log.info("bad_spectra: telluric transmission from %d spectra", rows.size)
    arrays = {"transmission": transmission, "n_spectra": np.array(rows.size)}
    atomic_write(path, lambda tmp: save_npz(tmp, arrays))
    return path


def build_step_reference(config: ConfigBase, engine: Engine, rows: np.ndarray) -> Path:
    """The survey's continuum steps per pixel, median and scale (module docstring, step 1); kept unless
    ``runner.refit``."""
    path = engine.model_path(STEPS_FILE)
    if path.exists() and not config.runner.refit:
        return path
    n_pixels = wavelength_grid().size
    if rows.size:
        variables = ("flux", "norm_flux", "norm_ivar")
        block_rows = config.bad_spectra.block_spectra
        sums = engine.reduce_rows(variables, rows, step_histogram_block, add_sums, block_rows=block_rows)
        median, scale = step_reference(sums["step_histogram"])
    else:
        median, scale = np.full(n_pixels, np.nan), np.full(n_pixels, np.nan)
    log.info("bad_spectra: continuum steps from %d spectra", rows.size)
    arrays = {"median": median, "scale": scale, "n_spectra": np.array(rows.size)}
    atomic_write(path, lambda tmp: save_npz(tmp, arrays))
    return path


def add_sums(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: a[k] + b[k] for k in a}


def bad_spectra_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: ``bad_spectrum_flag`` and ``bad_spectrum_reason`` from the evidence and the limits."""
    limits = {name: SnrLimit.from_dict(d) for name, d in params["limits"].items()}
    flag, reason = bad_spectrum_rule(inputs, inputs[params["snr_column"]], inputs["em_flag"], limits)
    return StageResult({"bad_spectrum_flag": flag, "bad_spectrum_reason": reason})


def bad_spectra_stage(limits: Mapping[str, SnrLimit], snr_column: str) -> Stage:
    meanings = "; ".join(f"{bit}: {text}" for bit, text in REASON_BITS.items())
    return Stage(
        name="bad_spectra",
        version=BAD_SPECTRA_VERSION,
        func=bad_spectra_chunk,
        inputs=(snr_column, "em_flag", *sorted(limits)),
        outputs=(
            Output("bad_spectrum_flag", "int8", attrs={"long_name": "1 = erroneous spectrum (P1 App. A)"}),
            Output(
                "bad_spectrum_reason",
                "int16",
                attrs={"long_name": "evidence that flagged the spectrum (sum of bits)", "flag_meanings": meanings},
            ),
        ),
        params={"limits": {k: v.to_dict() for k, v in sorted(limits.items())}, "snr_column": snr_column},
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``bad_spectra``: the fit's evidence, the limits (recorded), the rule."""
    cfg, snr_column = config.bad_spectra, config.survey.snr_column
    hot = np.zeros(engine.n_spectra(), dtype=bool)
    hot[hot_star_rows(engine)[0]] = True  # the survey's hot stars set the references and the limits
    rows = reference_rows(config, engine, hot)
    source = model_source(config, engine)
    engine.models["telluric"] = build_telluric(config, engine, rows, source)
    engine.models["continuum_steps"] = build_step_reference(config, engine, rows)
    telluric, steps = engine.models["telluric"], engine.models["continuum_steps"]
    engine.run_stage(fit_residuals_stage(cfg, telluric, steps, source))
    evidence = {name: engine.read_column(name) for name in EVIDENCE if engine.has_variable(name)}
    snr, em_flag = engine.read_column(snr_column), engine.read_column("em_flag")
    try:
        limits = limits_from_config(
            {name: np.where(hot, values, np.nan) for name, values in evidence.items()},
            snr,
            em_flag,
            cfg.n_sigma_of(),
            cfg.fixed_limits(),
            min_per_bin=cfg.min_per_bin,
            max_bins=cfg.max_bins,
        )
    except ValueError as exc:
        raise PipelineError(f"{engine.cube}: bad_spectra: {exc}") from None
    not_derived = sorted(set(evidence) - set(limits))
    if not_derived:
        log.warning(
            "bad_spectra: %s: fewer than %d spectra with a finite value, no limit derived; this evidence does not "
            "flag spectra (set bad_spectra.<name>_limit for a fixed one)",
            ", ".join(not_derived),
            MIN_SPECTRA_FOR_LIMIT,
        )
    flag, reason = bad_spectrum_rule(evidence, snr, em_flag, limits)
    engine.record_reduction(
        "bad_spectra",
        {
            "rule": RULE,
            "n_sigma": {name: cfg.n_sigma_of()[name] for name in limits},
            "fixed": {name: v for name, v in cfg.fixed_limits().items() if name in limits and v is not None},
            "limits": {name: limit.to_dict() for name, limit in limits.items()},
            "not_derived": not_derived,
            "snr_column": snr_column,
            "n_spectra": int(flag.size),
            "n_flagged": int(flag.sum()),
            "n_by_evidence": reason_counts(reason),
        },
    )
    return engine.run_stage(bad_spectra_stage(limits, snr_column))


STEPS = (
    Step(
        "bad_spectra",
        run,
        requires=(
            *("flux", "norm_flux", "norm_ivar", "pixmask", *MODEL_INPUTS, "snr_g", "em_flag", "pca_chi2"),
            *("pca_local_z", "halpha_chi2", "chi2ratio", "chi2_red", "rv", "model:emulator"),
        ),
        produces=(
            *output_names(fit_residuals_stage(BadSpectraConfig(), Path("telluric"), Path("steps")).outputs),
            "model:telluric",
            "model:continuum_steps",
            *output_names(bad_spectra_stage({}, "snr_g").outputs),
        ),
        description="erroneous spectra from the PCA, the fit, chi2ratio and H-alpha (§4, P1 App. A)",
        config={"bad_spectra": BadSpectraConfig},
        summary=bad_spectra_summary_lines,
    ),
)
