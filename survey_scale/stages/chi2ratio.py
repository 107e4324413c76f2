"""``chi2ratio`` (SPEC §6, P2 §5.2): the survey's χ² model (a reduction) and the per-spectrum score (a stage).

The reduction sums the (log Teff, log S/N, log χ²_red) histogram of every fitted spectrum
(:func:`survey_scale.science.chi2ratio.chi2_histogram_block`) and is cached under a key of its inputs; the
median and dispersion polynomials fitted from it are recorded in the cube's attributes
(``attrs['reductions']['chi2ratio']``, shown by ``survey-scale info``) and are the parameters of the stage,
which reads only per-spectrum columns. After an append the model is refitted and, if it changed, only
this cheap stage re-runs over the cube — not the fit.

Outputs: ``chi2ratio`` (float32; NaN where the fit or the S/N is unusable) and ``flag_chi2ratio`` (int8:
1 = chi2ratio > ``survey.chi2ratio_flag``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from survey_scale.config import Config
from survey_scale.engine.contracts import ChunkContext, Engine, Output, PipelineError, Stage, StageResult, StageSummary
from survey_scale.science.chi2ratio import Chi2Model, chi2_histogram_block, fit_chi2_model
from survey_scale.science.final_sample import HOT_STAR_EVIDENCE, hot_star_candidates

CHI2RATIO_VERSION = "1"


def label_index(engine: Engine, name: str) -> int:
    """Position of label ``name`` in the cube's ``label`` dimension."""
    names = [str(n) for n in engine.read_column("label")]
    if name not in names:
        raise PipelineError(f"{engine.cube}: the fitted labels ({', '.join(names)}) do not include {name!r}")
    return names.index(name)


def hot_star_rows(engine: Engine) -> tuple[np.ndarray, tuple[str, ...]]:
    """Rows the survey-wide models of hot stars learn from (:func:`survey_scale.science.final_sample.
    hot_star_candidates`) and the variables that decided it (for the reductions' keys)."""
    names = tuple(name for name in HOT_STAR_EVIDENCE if engine.has_variable(name))
    if "fit_flags" not in names:  # a cube without a label fit: nothing tells a hot star from a cool one
        return np.arange(engine.n_spectra()), ()
    return np.flatnonzero(hot_star_candidates({name: engine.read_column(name) for name in names})), names


def add_counts(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: a[k] + b[k] for k in a}


def chi2ratio_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: chi2ratio and its flag from the recorded χ² model."""
    model = Chi2Model.from_dict(params["model"])
    teff = np.asarray(inputs["labels"])[:, params["teff_index"]]
    ratio = model.chi2ratio(inputs["chi2_red"], teff, inputs[params["snr_column"]])
    return StageResult({"chi2ratio": ratio, "flag_chi2ratio": (ratio > params["flag"]).astype(np.int8)})


def chi2ratio_stage(model: Chi2Model, teff_index: int, snr_column: str, flag: float) -> Stage:
    return Stage(
        name="chi2ratio",
        version=CHI2RATIO_VERSION,
        func=chi2ratio_chunk,
        inputs=("labels", "chi2_red", snr_column),
        outputs=(
            Output(
                "chi2ratio",
                "float32",
                attrs={"long_name": "(chisq_red - median) / dispersion at the spectrum's Teff and S/N (P2 §5.2)"},
            ),
            Output("flag_chi2ratio", "int8", attrs={"long_name": f"1 = chi2ratio > {flag:g}"}),
        ),
        params={"model": model.to_dict(), "teff_index": teff_index, "snr_column": snr_column, "flag": flag},
    )


def run(config: Config, engine: Engine) -> StageSummary:
    """Registry step ``chi2ratio``: the χ² model over the cube, then the per-spectrum stage."""
    cfg = config.survey
    teff_index = label_index(engine, "teff")
    variables = ("labels", "chi2_red", cfg.snr_column)
    params = {"teff_index": teff_index, "snr_column": cfg.snr_column}
    rows, evidence = hot_star_rows(engine)  # the χ² scale of hot stars, not of a candidate list's cool ones
    key = engine.input_key((*variables, *evidence), "chi2ratio histogram", CHI2RATIO_VERSION, params)
    counts = engine.cached(
        "chi2ratio_histogram",
        key,
        lambda: engine.reduce_rows(
            variables,
            rows,
            chi2_histogram_block,
            add_counts,
            params,
            block_rows=cfg.block_spectra,
        ),
    )["counts"]
    try:
        model = fit_chi2_model(counts, cfg.chi2ratio_min_count)
    except ValueError as exc:
        raise PipelineError(f"{engine.cube}: chi2ratio: {exc}") from None
    engine.record_reduction("chi2ratio", {**model.to_dict(), "histogram_key": key})
    return engine.run_stage(chi2ratio_stage(model, teff_index, cfg.snr_column, cfg.chi2ratio_flag))
