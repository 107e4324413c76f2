"""``extinction`` (SPEC §7, §8): E(B−V), A_Ks and the geometric MKs of every spectrum.

A per-spectrum stage over the cube. Each spectrum's intrinsic colours come from its fitted Teff through the
Pecaut & Mamajek (2013) table of :mod:`survey_scale.science.photometry` (interpolated in log Teff; see
that module for the table's source and extensions), the coefficients R_band from the F99 curve on a
12,000 K spectrum (:data:`~survey_scale.science.photometry.EXTINCTION_COEFFS`). The bands are those of
``extinction.bands``, with ``<band>_err``, in order of effective wavelength; Ks never.

The same stage writes the parallax correction (``parallax_offset``, mas, SPEC §8: Leung & Bovy 2019 by
default, ``extinction.parallax_*``) and the geometric MKs with its error, which the MKs step trains on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from survey_scale.core.settings import ConfigBase, Section
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    PipelineError,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
    per_spectrum,
)
from survey_scale.science.extinction import BAND_ORDER, ebv_from_colors, ks_extinction
from survey_scale.science.mks import corrected_parallax, geometric_mks
from survey_scale.science.photometry import EXTINCTION_COEFFS, intrinsic_colors
from survey_scale.stages.chi2ratio import label_index


class ExtinctionConfig(Section):
    """E(B−V) and A_Ks from adjacent-band colour excesses (SPEC §7, P1 §4)."""

    bands: list[str] = Field(
        ["g", "BP", "r", "i", "RP", "J", "H"],
        description="bands used where the cube has them, by effective wavelength (never Ks; no B, V passbands yet)",
    )
    color_error_floor: float = Field(0.014, ge=0, description="smallest colour uncertainty, mag (P1 §4)")
    intrinsic_color_error: float = Field(
        0.02, ge=0, description="uncertainty of a tabulated intrinsic colour, mag, added in quadrature (P1 §4: < 0.03)"
    )
    parallax_offset_mas: float = Field(
        0.0528,
        description="corrected parallax = parallax + offset + slope (G - g_ref), mas: Leung & Bovy (2019) for Gaia "
        "DR2, a zero point of -52.8 + 4.21 (G - 12.2) micro-arcsec (0 for parallaxes already corrected)",
    )
    parallax_slope_mas: float = Field(
        -0.00421, description="slope of the parallax correction, mas per mag of G (0 for parallaxes already corrected)"
    )
    parallax_g_ref: float = Field(12.2, description="g_ref, the G magnitude at which the correction is the offset")
    block_spectra: int = Field(65536, ge=1, description="spectra per Dask task")

    @field_validator("bands")
    @classmethod
    def _no_ks(cls, bands: list[str]) -> list[str]:
        if "Ks" in bands:
            raise ValueError("Ks is never used for E(B-V) (P1 §4: circumstellar emission brightens it)")
        return bands


EXTINCTION_VERSION = "1"
PHOTOMETRY_INPUTS = ("Ks", "Ks_err", "G", "parallax", "parallax_error")
"""Cube variables besides the colour bands (from the cross-match table, SPEC §2; in every cube)."""


def extinction_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: E(B−V), A_Ks, the parallax correction and the geometric MKs of a chunk."""
    teff = np.asarray(inputs["labels"], np.float64)[:, params["teff_index"]]
    bands = params["bands"]
    own = intrinsic_colors(np.where(np.isfinite(teff), teff, 1.0e4))
    intrinsic = {b: np.where(np.isfinite(teff), own[b], np.nan) for b in bands}
    ebv, ebv_err, n_colors = ebv_from_colors(
        {b: inputs[b] for b in bands},
        {b: inputs[f"{b}_err"] for b in bands},
        intrinsic,
        params["coefficients"],
        bands,
        params["floor"],
        params["model_error"],
    )
    aks, aks_err = ks_extinction(ebv, ebv_err, params["coefficients"]["Ks"])
    parallax, offset = corrected_parallax(inputs["parallax"], inputs["G"], **params["parallax_zero_point"])
    mks_geo, mks_geo_err = geometric_mks(
        inputs["Ks"], inputs["Ks_err"], aks, aks_err, parallax, np.asarray(inputs["parallax_error"], np.float64)
    )
    out = {
        "ebv": ebv,
        "ebv_err": ebv_err,
        "ebv_n_colors": n_colors,
        "aks": aks,
        "aks_err": aks_err,
        "parallax_offset": np.where(np.isfinite(inputs["parallax"]), offset, np.nan),
        "mks_geo": mks_geo,
        "mks_geo_err": mks_geo_err,
    }
    rejects = [
        (int(i), "no_extinction", "fewer than two of the colour bands, or no fitted Teff: E(B-V) undefined")
        for i in np.flatnonzero(n_colors == 0)
    ]
    return StageResult(out, rejects)


def parallax_zero_point(m: ExtinctionConfig) -> dict[str, float]:
    """The parallax correction's parameters (``extinction.parallax_*``) as :func:`corrected_parallax` takes them."""
    return {"offset_mas": m.parallax_offset_mas, "slope_mas": m.parallax_slope_mas, "g_ref": m.parallax_g_ref}


def extinction_stage(cfg: ExtinctionConfig, bands: list[str], teff_index: int) -> Stage:
    """The stage for ``bands`` (in order of wavelength) with the ``extinction`` settings."""
    f4 = "float32"
    return Stage(
        name="extinction",
        version=EXTINCTION_VERSION,
        func=extinction_chunk,
        inputs=("labels", *bands, *(f"{b}_err" for b in bands), *PHOTOMETRY_INPUTS),
        outputs=(
            per_spectrum("ebv", f4, "E(B-V) from adjacent-band colour excesses (P1 §4)", "mag"),
            per_spectrum("ebv_err", f4, "propagated uncertainty of ebv", "mag"),
            per_spectrum("ebv_n_colors", "int16", "colours in the weighted mean: " + ", ".join(bands)),
            per_spectrum("aks", f4, "A_Ks = R_Ks E(B-V)", "mag"),
            per_spectrum("aks_err", f4, "uncertainty of aks", "mag"),
            per_spectrum("parallax_offset", f4, "correction added to the Gaia parallax (SPEC §8)", "mas"),
            per_spectrum("mks_geo", f4, "geometric MKs = Ks - A_Ks + 5 log10(parallax / mas) - 10", "mag"),
            per_spectrum("mks_geo_err", f4, "uncertainty of mks_geo (P1 Eq. 12)", "mag"),
        ),
        params={
            "bands": bands,
            "teff_index": teff_index,
            "floor": cfg.color_error_floor,
            "model_error": cfg.intrinsic_color_error,
            "coefficients": {b: EXTINCTION_COEFFS[b] for b in (*bands, "Ks")},
            "parallax_zero_point": parallax_zero_point(cfg),
        },
        block_rows=cfg.block_spectra,
    )


def usable_bands(config: ConfigBase) -> list[str]:
    """The configured bands in order of effective wavelength (the ingest writes every cross-match band and its
    error into every cube, NaN where unknown).

    Raises
    ------
    PipelineError
        If a configured band has no extinction coefficient.
    """
    unknown = [b for b in config.extinction.bands if b not in BAND_ORDER or b not in EXTINCTION_COEFFS]
    if unknown:
        known = ", ".join(b for b in BAND_ORDER if b in EXTINCTION_COEFFS)
        raise PipelineError(f"extinction.bands: no extinction coefficient for {', '.join(unknown)} (known: {known})")
    return sorted(config.extinction.bands, key=BAND_ORDER.index)


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``extinction``."""
    return engine.run_stage(extinction_stage(config.extinction, usable_bands(config), label_index(engine, "teff")))


STEPS = (
    Step(
        "extinction",
        run,
        requires=("labels",),
        produces=output_names(extinction_stage(ExtinctionConfig(), [], 0).outputs),
        description="E(B-V), A_Ks and the geometric MKs (§7, §8)",
        config={"extinction": ExtinctionConfig},
        renamed_keys={f"mks.parallax_{k}": f"extinction.parallax_{k}" for k in ("offset_mas", "slope_mas", "g_ref")},
    ),
)
