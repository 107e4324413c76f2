"""``distances`` (SPEC §9, P1 §6–§7): spectro-photometric parallax, binary flags, distances, X, Y, Z.

A per-spectrum stage over the cube. The spectroscopic term's error is ``mks_err`` (σ_s at the spectrum's
S/N and σ_int, SPEC §8), so δϖ_s/ϖ_s = 0.2 ln 10 √(mks_err² + σ_mKs² + σ_AKs²). Binaries
(``binary_flag`` = 1), and spectra whose photometric term cannot be formed (no MKs, Ks or A_Ks), take the
parallax term alone (``dis_parallax_only`` = 1); without a parallax there is no distance. The parallax is
the corrected one (``parallax + parallax_offset``).
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
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
    per_spectrum,
)
from survey_scale.science.distance import binary_flags, galactocentric_xyz, posterior, spectrophotometric_parallax


class DistanceConfig(Section):
    """Binaries and distances (SPEC §9, P1 §6–§7)."""

    binary_snr: float = Field(
        2.0, gt=0, description="binary_flag = 1 where S/N_dparallax >= this (also drops MKs training stars)"
    )
    d_min_pc: float = Field(1.0, gt=0, description="the flat distance prior's lower edge, pc")
    d_max_pc: float = Field(50_000.0, gt=0, description="the flat distance prior's upper edge, pc")
    block_spectra: int = Field(65536, ge=1, description="spectra per Dask task")


DISTANCES_VERSION = "1"
INPUTS = ("mks", "mks_err", "Ks", "Ks_err", "aks", "aks_err", "parallax", "parallax_error", "parallax_offset")
INPUTS += ("ra", "dec")


def distances_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: ϖ_s, S/N_Δϖ, ``binary_flag``, the distance posterior and X, Y, Z of a chunk."""
    f = {k: np.asarray(inputs[k], np.float64) for k in INPUTS}
    parallax = f["parallax"] + np.nan_to_num(f["parallax_offset"])
    plx_s, plx_s_err = spectrophotometric_parallax(
        f["Ks"], f["mks"], f["aks"], f["mks_err"], 0.0, f["Ks_err"], f["aks_err"]
    )
    snr_dparallax, flag = binary_flags(parallax, f["parallax_error"], plx_s, plx_s_err, params["binary_snr"])
    photometric = np.isfinite(f["mks"]) & np.isfinite(f["mks_err"]) & np.isfinite(f["Ks"]) & np.isfinite(f["aks"])
    parallax_only = (flag == 1) | ~photometric
    post = posterior(
        parallax,
        f["parallax_error"],
        f["mks"],
        f["mks_err"],
        f["Ks"],
        f["Ks_err"],
        f["aks"],
        f["aks_err"],
        binary=parallax_only,
        d_min=params["d_min_pc"],
        d_max=params["d_max_pc"],
    )
    x, y, z = galactocentric_xyz(f["ra"], f["dec"], post.dis)
    out = {
        "parallax_s": plx_s,
        "parallax_s_err": plx_s_err,
        "snr_dparallax": snr_dparallax,
        "binary_flag": flag,
        "dis": post.dis,
        "dis_low": post.dis_low,
        "dis_high": post.dis_high,
        "logdis": post.logdis,
        "logdis_err": post.logdis_err,
        "dis_parallax_only": np.where(np.isfinite(post.dis), parallax_only, -9).astype(np.int8),
        "X": x,
        "Y": y,
        "Z": z,
    }
    rejects = [
        (int(i), "no_distance", "no usable Gaia parallax (missing, or its error not positive): distance undefined")
        for i in np.flatnonzero(~np.isfinite(post.dis))
    ]
    return StageResult(out, rejects)


def distances_stage(d: DistanceConfig) -> Stage:
    """The stage with the ``distance`` settings."""
    f4, f8 = "float32", "float64"

    return Stage(
        name="distances",
        version=DISTANCES_VERSION,
        func=distances_chunk,
        inputs=INPUTS,
        outputs=(
            per_spectrum("parallax_s", f4, "spectro-photometric parallax (P1 Eq. 15)", "mas"),
            per_spectrum("parallax_s_err", f4, "uncertainty of parallax_s (P1 Eq. 17)", "mas"),
            per_spectrum("snr_dparallax", f4, "(parallax_s - parallax) / combined error (P1 Eq. 16)"),
            per_spectrum(
                "binary_flag", "int8", f"1 = snr_dparallax >= {d.binary_snr:g}, 0 below, -9 = no parallax or Ks"
            ),
            per_spectrum("dis", f8, "mode of the distance posterior (P1 Eq. 18-24)", "pc"),
            per_spectrum("dis_low", f8, "16th percentile of the distance posterior", "pc"),
            per_spectrum("dis_high", f8, "84th percentile of the distance posterior", "pc"),
            per_spectrum("logdis", f4, "posterior mean of log10(d / pc)"),
            per_spectrum("logdis_err", f4, "posterior standard deviation of log10(d / pc)"),
            per_spectrum("dis_parallax_only", "int8", "1 = parallax alone (binary; no MKs, Ks or A_Ks), -9 = none"),
            per_spectrum("X", f4, "Galactic X, Sun at -8.1 kpc (towards the Galactic centre)", "kpc"),
            per_spectrum("Y", f4, "Galactic Y (towards l = 90 deg)", "kpc"),
            per_spectrum("Z", f4, "Galactic Z (towards the North Galactic Pole)", "kpc"),
        ),
        params={"binary_snr": d.binary_snr, "d_min_pc": d.d_min_pc, "d_max_pc": d.d_max_pc},
        block_rows=d.block_spectra,
    )


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``distances``."""
    return engine.run_stage(distances_stage(config.distance))


STEPS = (
    Step(
        "distances",
        run,
        requires=("mks", "mks_err", "aks", "aks_err", "parallax_offset"),
        produces=output_names(distances_stage(DistanceConfig()).outputs),
        description="binary flags, distances, X, Y, Z (§9)",
        config={"distance": DistanceConfig},
    ),
)
