"""``final_sample`` (SPEC §13, P2 §5.1; issue 23): one flag column per final-sample rule, and ``final_sample``.

A per-spectrum stage over the cube: :func:`survey_scale.science.final_sample.final_sample_flags` of the fit's
flags and cool-star check (step ``fit``), chi2ratio (step ``chi2ratio``), E(B−V) (step ``extinction``), the Gaia
colours and LAMOST's class (ingest). Outputs: ``bp_rp0`` and, int16 0/1, the rules of
:data:`~survey_scale.science.final_sample.RULES` except ``flag_chi2ratio`` (step ``chi2ratio`` writes it), and
``final_sample``. The labels catalog reads them (SPEC §13).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from survey_scale.core.settings import ConfigBase
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    Stage,
    StageResult,
    StageSummary,
    Step,
    per_spectrum,
)
from survey_scale.science.final_sample import DESCRIPTIONS, RULES, final_sample_flags
from survey_scale.stages.chi2ratio import label_index

FINAL_SAMPLE_VERSION = "2"  # 2: the colour clause of flag_cool_star not for LAMOST class O/B
REQUIRES = ("fit_flags", "labels", "chi2ratio", "flag_chi2ratio", "teff_cool", "chi2_red_cool", "chi2_red_hot", "ebv")
INPUTS = (*REQUIRES, "BP", "RP", "class", "subclass")  # colours, classes: ingest writes them
OUTPUTS = ("bp_rp0", *(rule for rule in RULES if rule != "flag_chi2ratio"), "final_sample")  # chi2ratio writes its own


def final_sample_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: the rules' flags of a chunk."""
    columns = {name: inputs[name] for name in INPUTS if name not in ("labels", "class", "subclass")}
    columns["teff"] = np.asarray(inputs["labels"])[:, params["teff_index"]]
    columns["lasp_class"], columns["lasp_subclass"] = inputs["class"], inputs["subclass"]
    flags = final_sample_flags(columns)
    return StageResult({name: flags[name] for name in OUTPUTS})


def final_sample_stage(teff_index: int) -> Stage:
    return Stage(
        name="final_sample",
        version=FINAL_SAMPLE_VERSION,
        func=final_sample_chunk,
        inputs=INPUTS,
        outputs=tuple(
            per_spectrum(
                name, "float32" if name == "bp_rp0" else "int16", DESCRIPTIONS[name], "mag" if name == "bp_rp0" else ""
            )
            for name in OUTPUTS
        ),
        params={"teff_index": teff_index},
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``final_sample``."""
    return engine.run_stage(final_sample_stage(label_index(engine, "teff")))


STEPS = (
    Step(
        "final_sample",
        run,
        requires=REQUIRES,
        produces=OUTPUTS,
        description="P2 5.1's final-sample rules, one flag each, and final_sample (§13)",
    ),
)
