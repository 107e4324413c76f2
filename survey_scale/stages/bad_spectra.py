"""Erroneous spectra after the label fit: ``bad_spectrum_flag`` and ``bad_spectrum_reason`` (SPEC §4, P1 App. A).

Registry step ``bad_spectra`` (after ``chi2ratio``, before ``mks_model``, whose training set leaves these
spectra out) runs two stages and a reduction between them, like ``chi2ratio``:

1. stage ``fit_residuals`` (per chunk, needs the spectra and ``model_flux``): the label fit's evidence of
   :func:`survey_scale.science.bad_spectra.fit_residual_evidence` over the fitted pixels (the fit's mask:
   interstellar and telluric bands, dichroic, edges, flagged pixels), without the emission windows for
   ``em_flag = 1`` spectra;
2. the limits: every evidence column is read over the cube and its S/N-dependent limit derived
   (:func:`survey_scale.science.bad_spectra.limits_from_config`), recorded with provenance in
   ``attrs["reductions"]["bad_spectra"]`` (printed by ``survey-scale info``);
3. stage ``bad_spectra`` (per chunk, per-spectrum columns only): the rule.

After an append the limits are derived again and only the cheap stage 3 re-runs over the old spectra.

Outputs
-------
==========================  ========  =====================================================================
variable                    dtype     meaning
==========================  ========  =====================================================================
fit_local_z                 float32   worst ~50 Å misfit of the label fit (NaN without a fit)
wave_shift_z                float32   wrong-wavelength evidence of the worst segment (NaN without a fit)
wave_shift_pixels           int16     its best shift against the model, pixels of 1e-4 dex (69 km/s)
wave_shift_wave             float32   its central wavelength, Å
bad_spectrum_flag           int8      1 = erroneous spectrum (P1 App. A), 0 = not
bad_spectrum_reason         int16     the evidence that fired, a sum of bits (0 = none):
                                      1 pca_chi2, 2 pca_local, 4 fit_local, 8 chi2ratio, 16 wavelength,
                                      32 halpha (:data:`survey_scale.science.bad_spectra.REASON_BITS`)
==========================  ========  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from survey_scale.config import BadSpectraConfig, Config
from survey_scale.core.grid import wavelength_grid
from survey_scale.core.masks import EMISSION_WINDOWS, FIT_WINDOWS, window_mask
from survey_scale.engine.contracts import ChunkContext, Engine, Output, PipelineError, Stage, StageResult, StageSummary
from survey_scale.science.bad_spectra import (
    EVIDENCE,
    REASON_BITS,
    SEGMENT_PIXELS,
    SnrLimit,
    bad_spectrum_rule,
    fit_residual_evidence,
    limits_from_config,
)

FIT_RESIDUALS_VERSION = "1"
BAD_SPECTRA_VERSION = "1"
RULE = (
    "bad_spectrum_flag = 1 where any evidence exceeds its limit at the spectrum's S/N; limit = median + n_sigma x "
    "1.4826 MAD of log10(evidence) (chi2ratio, wave_shift_z: of the evidence) over equal-count log10 S/N bins of "
    "the survey, linear in log10 S/N between bin centres; chi2ratio and halpha_chi2 count only without em_flag; "
    "bad_spectrum_reason = sum of the bits of the evidence that fired"
)


def fit_residuals_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: the label fit's residual evidence of a chunk."""
    wave = wavelength_grid()
    flux = np.asarray(inputs["norm_flux"])
    emission = np.asarray(inputs["em_flag"]) == 1
    use = ~window_mask(wave, FIT_WINDOWS)[None, :] & (np.asarray(inputs["pixmask"]) == 0)
    use = use & ~(emission[:, None] & window_mask(wave, EMISSION_WINDOWS)[None, :])
    fitted = np.all(np.isfinite(inputs["model_flux"]), axis=1)
    out = fit_residual_evidence(
        flux,
        inputs["norm_ivar"],
        np.where(fitted[:, None], inputs["model_flux"], 1.0),
        use,
        max_shift=params["max_shift"],
        min_shift=params["min_shift"],
    )
    centre = wave[np.clip(out.pop("wave_shift_segment") + SEGMENT_PIXELS // 2, 0, wave.size - 1)]
    return StageResult(
        {
            "fit_local_z": np.where(fitted, out["fit_local_z"], np.nan).astype(np.float32),
            "wave_shift_z": np.where(fitted, out["wave_shift_z"], np.nan).astype(np.float32),
            "wave_shift_pixels": np.where(fitted, out["wave_shift_pixels"], 0).astype(np.int16),
            "wave_shift_wave": np.where(fitted, centre, np.nan).astype(np.float32),
        }
    )


def fit_residuals_stage(cfg: BadSpectraConfig) -> Stage:
    f4 = "float32"
    return Stage(
        name="fit_residuals",
        version=FIT_RESIDUALS_VERSION,
        func=fit_residuals_chunk,
        inputs=("norm_flux", "norm_ivar", "pixmask", "model_flux", "em_flag"),
        outputs=(
            Output("fit_local_z", f4, attrs={"long_name": "significance of the worst ~50 A misfit of the label fit"}),
            Output("wave_shift_z", f4, attrs={"long_name": "wrong-wavelength evidence of the worst segment"}),
            Output("wave_shift_pixels", "int16", attrs={"long_name": "its shift against the model", "units": "pixel"}),
            Output("wave_shift_wave", f4, attrs={"long_name": "its central wavelength", "units": "Angstrom"}),
        ),
        params={"max_shift": cfg.max_shift, "min_shift": cfg.min_shift},
        block_rows=cfg.block_spectra,
    )


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


def run(config: Config, engine: Engine) -> StageSummary:
    """Registry step ``bad_spectra``: the fit's evidence, the limits (recorded), the rule."""
    cfg, snr_column = config.bad_spectra, config.survey.snr_column
    engine.run_stage(fit_residuals_stage(cfg))
    evidence = {name: engine.read_column(name) for name in EVIDENCE if engine.has_variable(name)}
    snr, em_flag = engine.read_column(snr_column), engine.read_column("em_flag")
    try:
        limits = limits_from_config(
            evidence,
            snr,
            em_flag,
            cfg.n_sigma_of(),
            cfg.fixed_limits(),
            min_per_bin=cfg.min_per_bin,
            max_bins=cfg.max_bins,
        )
    except ValueError as exc:
        raise PipelineError(f"{engine.cube}: bad_spectra: {exc}") from None
    flag, reason = bad_spectrum_rule(evidence, snr, em_flag, limits)
    engine.record_reduction(
        "bad_spectra",
        {
            "rule": RULE,
            "n_sigma": {name: cfg.n_sigma_of()[name] for name in limits},
            "fixed": {name: v for name, v in cfg.fixed_limits().items() if name in limits and v is not None},
            "limits": {name: limit.to_dict() for name, limit in limits.items()},
            "snr_column": snr_column,
            "n_spectra": int(flag.size),
            "n_flagged": int(flag.sum()),
            "n_by_evidence": {REASON_BITS[bit].split(":")[0]: int(((reason & bit) != 0).sum()) for bit in REASON_BITS},
        },
    )
    return engine.run_stage(bad_spectra_stage(limits, snr_column))
