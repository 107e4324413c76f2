"""Step ``export``: the catalogs of SPEC §13 written from the cube (``survey-scale export``, the last step of ``run``).

The ``labels`` catalog (P2 Table 5 and more, :mod:`survey_scale.science.label_catalog`) and the ``distances``
catalog (P1 Table 1 and more, :mod:`survey_scale.science.distance_catalog`) in the formats of
``export.formats`` — FITS with TUNIT, Parquet with the same metadata, HATS-partitioned Parquet — in
``export.out`` (default: ``catalogs`` beside the cube). Streamed from the cube ``export.block_spectra`` rows
at a time; rewritten only when its inputs (rows, their provenance, the catalog's version) change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from survey_scale.core.settings import ConfigBase, Section
from survey_scale.engine.contracts import CatalogResult, Engine, PipelineError, RowBlock, Step
from survey_scale.science.distance_catalog import CUBE_INPUTS as DISTANCE_INPUTS
from survey_scale.science.distance_catalog import DISTANCE_CATALOG_VERSION, distances_catalog_block
from survey_scale.science.distance_catalog import column_meta as distance_meta
from survey_scale.science.label_catalog import (
    CATALOG_VERSION,
    COLUMN_DESCRIPTIONS,
    COLUMN_UNITS,
    CUBE_INPUTS,
    labels_catalog_block,
)
from survey_scale.stages import distances, final_sample, repeats


class ExportConfig(Section):
    """The catalogs of SPEC §13 (``survey-scale export``; the ``export`` step of ``run``)."""

    out: Path | None = Field(None, description="folder of the catalogs; null = 'catalogs' beside the cube")
    formats: list[Literal["fits", "parquet", "hats"]] = Field(
        ["fits", "parquet", "hats"],
        description="any of fits, parquet, hats (HATS-partitioned Parquet that lsdb opens)",
    )
    block_spectra: int = Field(131072, ge=1, description="rows read from the cube at a time (memory of the export)")
    hats_pixel_threshold: int = Field(
        250_000, ge=1, description="HATS: at most this many rows per partition (hats-import's pixel_threshold)"
    )
    hats_highest_order: int = Field(
        7, ge=0, le=19, description="HATS: the finest HEALPix order of a partition (order 7: ~0.2 deg^2)"
    )


log = logging.getLogger(__name__)


def catalog_dir(config: ConfigBase) -> Path:
    """Where the catalogs go: ``export.out``, or ``catalogs`` beside the cube."""
    return Path(config.export.out) if config.export.out is not None else Path(config.cube.path).parent / "catalogs"


def write_catalog(
    config: ConfigBase,
    engine: Engine,
    name: str,
    variables: list[str],
    block: RowBlock,
    params: dict[str, Any],
    version: str,
    meta: dict[str, dict[str, str]],
) -> dict[str, Path]:
    """One catalog in ``export.formats``, streamed; rewritten only when its inputs change."""
    key = engine.input_key(variables, f"{name} catalog", version, params)
    return engine.write_catalog(
        name,
        variables,
        block,
        params,
        catalog_dir(config),
        config.export.formats,
        meta,
        key,
        config.export.block_spectra,
        {
            "pixel_threshold": config.export.hats_pixel_threshold,
            "highest_healpix_order": config.export.hats_highest_order,
        },
    )


def _missing(engine: Engine, needed: tuple[str, ...]) -> list[str]:
    return [v for v in needed if not engine.has_variable(v)]


def run(config: ConfigBase, engine: Engine) -> CatalogResult:
    """Registry step ``export``: the ``labels`` and ``distances`` catalogs; returns each file's path, keyed
    ``<format>`` for the labels and ``distances_<format>`` for the distances.

    A cube without the distances yet (``survey-scale run --until repeats``) gets the labels catalog alone,
    with a warning.

    Raises
    ------
    PipelineError
        If the cube lacks the fit or the survey-wide reductions (``survey-scale run`` makes them).
    """
    missing = _missing(engine, ("labels", "label_err", "uniqflag", "chi2ratio", "teff_err"))
    if missing:
        raise PipelineError(
            f"{engine.cube}: cannot export the labels catalog: the cube has no {', '.join(missing)} yet "
            "(run `survey-scale run` on it first)"
        )
    label_names = [str(n) for n in engine.read_column("label")]
    names = set(COLUMN_UNITS) | set(COLUMN_DESCRIPTIONS)
    labels_meta = {n: {"unit": COLUMN_UNITS.get(n, ""), "description": COLUMN_DESCRIPTIONS.get(n, "")} for n in names}
    paths = write_catalog(
        config,
        engine,
        "labels",
        [v for v in CUBE_INPUTS if engine.has_variable(v)],
        labels_catalog_block,
        {"label_names": label_names},
        CATALOG_VERSION,
        labels_meta,
    )
    missing = _missing(engine, ("mks", "dis", "ebv", "binary_flag"))
    if missing:
        log.warning(
            "%s: no distances catalog: the cube has no %s yet (survey-scale run)", engine.cube, ", ".join(missing)
        )
        return CatalogResult(paths)
    distances = write_catalog(
        config,
        engine,
        "distances",
        [v for v in DISTANCE_INPUTS if engine.has_variable(v)],
        distances_catalog_block,
        {},
        DISTANCE_CATALOG_VERSION,
        distance_meta(),
    )
    return CatalogResult({**paths, **{f"distances_{fmt}": path for fmt, path in distances.items()}})


STEPS = (
    Step(
        "export",
        run,
        requires=(
            *("uniqflag", "chi2ratio", "flag_chi2ratio", "bad_spectrum_flag", "bad_spectrum_reason"),
            *final_sample.OUTPUTS,
            *repeats.STEPS[0].produces,
            *distances.STEPS[0].produces,
        ),
        produces=("catalog:labels", "catalog:distances"),
        description="the catalogs of §13: FITS, Parquet, HATS",
        config={"export": ExportConfig},
    ),
)
