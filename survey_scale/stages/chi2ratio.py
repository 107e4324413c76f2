"""``chi2ratio`` (SPEC §6, P2 §5.2): the survey's χ² model (a reduction) and the per-spectrum score (a stage).

The reduction sums the (log Teff, log S/N, log χ²_red) histogram of every fitted spectrum
(:func:`survey_scale.science.chi2ratio.chi2_histogram_block`) and is cached under a key of its inputs; the
median and dispersion per (Teff, S/N) cell read off it (resistant, sparse cells pooled with their neighbours:
:func:`survey_scale.science.chi2ratio.fit_chi2_model`) are recorded in the cube's attributes
(``attrs['reductions']['chi2ratio']``, with the chi2ratio of the fitted spectra per (Teff, S/N) region, shown by
``survey-scale info`` and the report) and are the parameters of the stage, which reads only per-spectrum
columns. After an append the model is refitted and, if it changed, only this cheap stage re-runs over the
cube — not the fit.

Outputs: ``chi2ratio`` (float32; NaN where the fit or the S/N is unusable) and ``flag_chi2ratio`` (int8:
1 = chi2ratio > ``chi2ratio.flag``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from survey_scale.core.settings import ConfigBase, Section
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    Output,
    PipelineError,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
)
from survey_scale.science.chi2ratio import CLIP, Chi2Model, chi2_histogram_block, fit_chi2_model
from survey_scale.science.chi2ratio import summary_lines as chi2ratio_summary_lines
from survey_scale.science.final_sample import HOT_STAR_EVIDENCE, hot_star_candidates

CHI2RATIO_VERSION = "2"  # 2: per-cell median and dispersion, clipped, sparse cells pooled (was: polynomials)


class Chi2RatioConfig(Section):
    """The survey's χ² model and chi2ratio (SPEC §6, P2 §5.2; step ``chi2ratio``)."""

    min_count: int = Field(
        20,
        ge=1,
        description="a (Teff, S/N) cell with fewer fitted spectra takes its chi2 median and dispersion from its "
        "neighbours too, pooled until this many",
    )
    clip: float = Field(
        CLIP,
        gt=0,
        description="the chi2 median and dispersion of a cell leave out chi2 above median + clip * dispersion "
        "(iterated): emission-line stars, binaries and damaged spectra only raise chi2",
    )
    flag: float = Field(10.0, gt=0, description="flag_chi2ratio = chi2ratio > this (P2 §5.2)")


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


def chi2ratio_outputs(flag: float) -> tuple[Output, ...]:
    """The stage's outputs for the cut ``flag``."""
    return (
        Output(
            "chi2ratio",
            "float32",
            attrs={"long_name": "(chisq_red - median) / dispersion at the spectrum's Teff and S/N (P2 §5.2)"},
        ),
        Output("flag_chi2ratio", "int8", attrs={"long_name": f"1 = chi2ratio > {flag:g}"}),
    )


def chi2ratio_stage(model: Chi2Model, teff_index: int, snr_column: str, flag: float) -> Stage:
    return Stage(
        name="chi2ratio",
        version=CHI2RATIO_VERSION,
        func=chi2ratio_chunk,
        inputs=("labels", "chi2_red", snr_column),
        outputs=chi2ratio_outputs(flag),
        params={"model": model.to_dict(), "teff_index": teff_index, "snr_column": snr_column, "flag": flag},
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``chi2ratio``: the χ² model over the cube, then the per-spectrum stage."""
    cfg, survey = config.chi2ratio, config.survey
    teff_index = label_index(engine, "teff")
    variables = ("labels", "chi2_red", survey.snr_column)
    params = {"teff_index": teff_index, "snr_column": survey.snr_column}
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
            block_rows=survey.block_spectra,
        ),
    )["counts"]
    try:
        model = fit_chi2_model(counts, cfg.min_count, cfg.clip, cfg.flag)
    except ValueError as exc:
        raise PipelineError(f"{engine.cube}: chi2ratio: {exc}") from None
    engine.record_reduction("chi2ratio", {**model.to_dict(), "histogram_key": key})
    return engine.run_stage(chi2ratio_stage(model, teff_index, survey.snr_column, cfg.flag))


STEPS = (
    Step(
        "chi2ratio",
        run,
        requires=("labels", "chi2_red", "snr_g"),
        produces=output_names(chi2ratio_outputs(Chi2RatioConfig().flag)),
        description="the survey's chi2 model and chi2ratio (§6, P2 §5.2)",
        config={"chi2ratio": Chi2RatioConfig},
        renamed_keys={"survey.chi2ratio_min_count": "chi2ratio.min_count", "survey.chi2ratio_flag": "chi2ratio.flag"},
        summary=chi2ratio_summary_lines,
    ),
)
