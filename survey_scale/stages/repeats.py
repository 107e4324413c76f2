"""Repeat visits (SPEC §6, P2 §4.6, §5.6): the pairs (a reduction by star), precision, and calibrated errors.

1. The repeat pairs of every star (:func:`survey_scale.science.repeats.repeat_pairs_block`) wherever its
   visits are, cached under a key of the fits, S/N and nights.
2. The precision table (P2 §4.6: S/N < 50, 50–100, > 100, pairs with Teff > ``repeats.precision_teff_min``)
   and a finer curve (P2 Fig. 10), for those pairs and for all of them, recorded in the cube's attributes
   (``attrs['reductions']['repeat_precision']``) with the pulls of the pairs before and after calibration.
3. The error calibration (P2 §5.6), recorded as ``attrs['reductions']['error_calibration']``, and the stage
   ``calibrate_errors`` writing ``<label>_err`` (calibrated, SPEC §13) for every label — the formal errors
   stay in ``label_err``. After an append the pairs and the calibration are redone; only this cheap stage
   re-runs over the cube.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from survey_scale.core.fit_flags import FLAG_NO_DATA, FLAG_NOT_CONVERGED
from survey_scale.core.labels import LABEL_NAMES, LABEL_UNITS
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    Output,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
)
from survey_scale.science.final_sample import HOT_STAR_EVIDENCE
from survey_scale.science.poly2d import robust_sigma
from survey_scale.science.repeats import (
    PRECISION_BINS,
    PRECISION_CURVE_BINS,
    ErrorCalibration,
    concat_pairs,
    fit_error_calibration,
    pair_pulls,
    precision_table,
    repeat_pairs_block,
    sort_pairs,
)
from survey_scale.science.repeats import summary_lines as repeats_summary_lines
from survey_scale.stages.chi2ratio import label_index

log = logging.getLogger(__name__)

REPEATS_VERSION = "2"
BAD_FIT_FLAGS = FLAG_NO_DATA | FLAG_NOT_CONVERGED
"""A visit with one of these fit flags enters no repeat pair."""


class RepeatsConfig(Section):
    """Repeat-visit precision and the calibrated errors (SPEC §6, P2 §4.6, §5.6; step ``repeats``)."""

    snr_tolerance: float = Field(
        0.2, gt=0, le=1, description="repeat pairs: different nights and |S/N1 - S/N2| < this x mean S/N (P2 §4.6)"
    )
    precision_teff_min: float = Field(
        10000.0, ge=0, description="the precision table of P2 Fig. 10 uses pairs with Teff above this (all: 0)"
    )
    calibration_min_per_cell: int = Field(
        25, ge=3, description="error calibration: repeat pairs per (Teff, S/N) cell of equal counts"
    )
    calibration_max_bins: int = Field(6, ge=1, description="error calibration: at most this many cells per axis")
    calibration_min_pairs: int = Field(
        50, ge=1, description="a label with fewer usable pairs keeps its formal errors (with a warning)"
    )


def calibrated_error_names(label_names: Sequence[str]) -> list[str]:
    """Cube variables (and catalog columns, SPEC §13) of the calibrated errors: ``<label>_err``."""
    return [f"{name}_err" for name in label_names]


def calibrate_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: formal errors × the recorded scale at each spectrum's Teff and S/N."""
    calibration = ErrorCalibration.from_dict(params["calibration"])
    teff = np.asarray(inputs["labels"])[:, params["teff_index"]]
    err = calibration.calibrate(inputs["label_err"], teff, inputs[params["snr_column"]])
    names = calibrated_error_names(calibration.label_names)
    return StageResult({name: err[:, k] for k, name in enumerate(names)})


def calibrated_error_outputs(label_names: Sequence[str]) -> tuple[Output, ...]:
    """``<label>_err`` of every label in ``label_names``."""
    return tuple(
        Output(
            name,
            "float32",
            attrs={
                "long_name": f"{label} uncertainty calibrated on repeat visits (P2 §5.6); formal: label_err",
                "units": LABEL_UNITS.get(label, ""),
            },
        )
        for label, name in zip(label_names, calibrated_error_names(label_names), strict=True)
    )


def calibrate_stage(calibration: ErrorCalibration, teff_index: int, snr_column: str) -> Stage:
    outputs = calibrated_error_outputs(calibration.label_names)
    return Stage(
        name="calibrate_errors",
        version=REPEATS_VERSION,
        func=calibrate_chunk,
        inputs=("labels", "label_err", snr_column),
        outputs=outputs,
        params={"calibration": calibration.to_dict(), "teff_index": teff_index, "snr_column": snr_column},
    )


def _table(table: Mapping[str, np.ndarray], label_names: Sequence[str]) -> dict[str, Any]:
    # JSON form of a precision table: S/N edges, pair counts and, per label, one value per bin.
    def values(a: np.ndarray) -> dict[str, list[float | None]]:
        return {n: [None if not np.isfinite(v) else float(v) for v in a[:, k]] for k, n in enumerate(label_names)}

    return {
        "snr_edges": [float(e) for e in table["snr_edges"]],
        "n_pairs": [int(n) for n in table["n_pairs"]],
        "precision": values(table["precision"]),
        "std": values(table["std"]),
        "median_delta": values(table["median_delta"]),
    }


def pull_summary(pairs: Mapping[str, np.ndarray], calibration: ErrorCalibration) -> dict[str, Any]:
    """Robust σ of the pairs' pulls per label, with formal and with calibrated errors (≈ 1 when calibrated)."""
    out = {}
    for k, name in enumerate(calibration.label_names):  # a label at a time: memory of a column of pairs
        s1 = calibration.scale(pairs["teff1"], pairs["snr1"], label=k)
        s2 = calibration.scale(pairs["teff2"], pairs["snr2"], label=k)
        out[name] = {
            "formal": robust_sigma(pair_pulls(pairs, label=k)),
            "calibrated": robust_sigma(pair_pulls(pairs, s1, s2, label=k)),
        }
    return out


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``repeats``: pairs, precision, calibration, then the ``calibrate_errors`` stage."""
    cfg, survey = config.repeats, config.survey
    label_names = [str(n) for n in engine.read_column("label")]
    teff_index = label_index(engine, "teff")
    evidence = tuple(name for name in HOT_STAR_EVIDENCE[1:] if engine.has_variable(name))  # the cool-star check
    variables = ("lmjd", "labels", "label_err", "fit_flags", survey.snr_column, *evidence)
    params = {
        "snr_column": survey.snr_column,
        "teff_index": teff_index,
        "snr_tolerance": cfg.snr_tolerance,
        "bad_flags": BAD_FIT_FLAGS,
    }
    key = engine.input_key(variables[1:], "repeat pairs", REPEATS_VERSION, params)

    def compute() -> dict[str, np.ndarray]:
        pairs = engine.reduce_by_star(
            variables, repeat_pairs_block, params, combine=concat_pairs, block_rows=survey.block_spectra
        )
        return sort_pairs(pairs)

    pairs = engine.cached("repeat_pairs", key, compute)
    n_pairs = int(pairs["delta"].shape[0])
    calibration = fit_error_calibration(
        pairs,
        label_names,
        cfg.calibration_min_per_cell,
        cfg.calibration_max_bins,
        min_pairs=cfg.calibration_min_pairs,
    )
    uncalibrated = [n for n, p in zip(label_names, calibration.log_scale, strict=True) if p is None]
    if uncalibrated:
        log.warning(
            "error calibration: %d repeat pairs; %s keep their formal errors (fewer than %d usable pairs)",
            n_pairs,
            ", ".join(uncalibrated),
            cfg.calibration_min_pairs,
        )

    def table(bins: tuple[float, ...], teff_min: float | None) -> dict[str, Any]:
        return _table(precision_table(pairs, label_names, bins, teff_min), label_names)

    engine.record_reduction(
        "repeat_precision",
        {
            "n_pairs": n_pairs,
            "selection": f"different nights, |dS/N| < {cfg.snr_tolerance:g} x mean S/N, converged fits",
            "teff_min": cfg.precision_teff_min,
            "table": table(PRECISION_BINS, cfg.precision_teff_min),
            "table_all_teff": table(PRECISION_BINS, None),
            "curve": table(PRECISION_CURVE_BINS, cfg.precision_teff_min),
            "pull_sigma": pull_summary(pairs, calibration),
            "pairs_key": key,
        },
    )
    engine.record_reduction("error_calibration", {**calibration.to_dict(), "pairs_key": key})
    return engine.run_stage(calibrate_stage(calibration, teff_index, survey.snr_column))


STEPS = (
    Step(
        "repeats",
        run,
        requires=("labels", "label_err", "fit_flags", "snr_g"),
        produces=output_names(calibrated_error_outputs(LABEL_NAMES)),
        description="repeat-visit precision and calibrated errors (§6, P2 §4.6, §5.6)",
        config={"repeats": RepeatsConfig},
        renamed_keys={
            "survey.repeat_snr_tolerance": "repeats.snr_tolerance",
            "survey.precision_teff_min": "repeats.precision_teff_min",
            "survey.calibration_min_per_cell": "repeats.calibration_min_per_cell",
            "survey.calibration_max_bins": "repeats.calibration_max_bins",
            "survey.calibration_min_pairs": "repeats.calibration_min_pairs",
        },
        summary=repeats_summary_lines,
    ),
)
