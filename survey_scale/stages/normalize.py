"""The §3 normalization as a stage: ``norm_flux``, ``norm_ivar``, ``clean_fraction`` per chunk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from survey_scale.core.masks import clean_window_mask
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.core.wavelength import PIXMASK_BITS, wavelength_grid
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
from survey_scale.science.normalize import normalize_continuum


class NormalizeConfig(Section):
    """Pseudo-continuum normalization (SPEC §3, P2 Eq. 1-2)."""

    length: float = Field(50.0, gt=0, description="L of the Gaussian kernel, Angstrom (P2 Eq. 2)")
    block_spectra: int = Field(2048, ge=1, description="spectra per Dask task")
    min_pixels: int = Field(500, ge=1, description="a spectrum with fewer usable normalized pixels is rejected")


NORMALIZE_VERSION = "1"


def normalize_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: ``norm_flux``, ``norm_ivar`` of a chunk (pixels flagged NO_COVERAGE/INTERPOLATED are
    already ivar = 0 and stay out of the continuum)."""
    bad_bits = PIXMASK_BITS["NO_COVERAGE"] | PIXMASK_BITS["INTERPOLATED"]
    norm_flux, norm_ivar, _ = normalize_continuum(
        inputs["flux"], inputs["ivar"], (inputs["pixmask"] & bad_bits) == 0, length=params["length"]
    )
    usable = (norm_ivar > 0).sum(axis=1)
    clean = clean_window_mask(wavelength_grid())
    clean_fraction = (norm_ivar[:, clean] > 0).mean(axis=1).astype(np.float32)
    rejects = [
        (int(i), "no_continuum", f"only {int(usable[i])} pixels have a defined pseudo-continuum and ivar > 0")
        for i in np.flatnonzero(usable < params["min_pixels"])
    ]
    return StageResult({"norm_flux": norm_flux, "norm_ivar": norm_ivar, "clean_fraction": clean_fraction}, rejects)


def normalize_stage(config: NormalizeConfig | None = None) -> Stage:
    """The §3 normalization as a runner stage (inputs ``flux``, ``ivar``, ``pixmask``)."""
    config = config or NormalizeConfig()
    return Stage(
        name="normalize",
        version=NORMALIZE_VERSION,
        func=normalize_chunk,
        inputs=("flux", "ivar", "pixmask"),
        outputs=(
            Output("norm_flux", "float32", ("spec", "wave"), {"long_name": "flux / pseudo-continuum (SPEC §3)"}),
            Output("norm_ivar", "float32", ("spec", "wave"), {"long_name": "ivar * pseudo-continuum**2"}),
            Output("clean_fraction", "float32", attrs={"long_name": "fraction of clean-window pixels usable"}),
        ),
        params={
            "length": float(config.length),
            "min_pixels": int(config.min_pixels),
            "windows": "masks.CONTINUUM_WINDOWS v1",
        },
        block_rows=config.block_spectra,
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``normalize``."""
    return engine.run_stage(normalize_stage(config.normalize))


STEPS = (
    Step(
        "normalize",
        run,
        requires=("flux", "ivar", "pixmask"),
        produces=output_names(normalize_stage().outputs),
        description="pseudo-continuum normalization (§3)",
        config={"normalize": NormalizeConfig},
    ),
)
