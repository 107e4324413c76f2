"""Step ``export``: the catalogs of SPEC §13 written from the cube (``survey-scale export``, the last step of ``run``).

The ``labels`` catalog (P2 Table 5 and more, :mod:`survey_scale.science.label_catalog`) in the formats of
``export.formats`` — FITS with TUNIT, Parquet with the same metadata, HATS-partitioned Parquet — in
``export.out`` (default: ``catalogs`` beside the cube). Streamed from the cube ``export.block_spectra`` rows
at a time; rewritten only when its inputs (rows, their provenance, the catalog's version) change.
"""

from __future__ import annotations

from pathlib import Path

from survey_scale.config import Config
from survey_scale.engine.contracts import Engine, PipelineError
from survey_scale.science.label_catalog import (
    CATALOG_VERSION,
    COLUMN_DESCRIPTIONS,
    COLUMN_UNITS,
    CUBE_INPUTS,
    labels_catalog_block,
)


def catalog_dir(config: Config) -> Path:
    """Where the catalogs go: ``export.out``, or ``catalogs`` beside the cube."""
    return Path(config.export.out) if config.export.out is not None else Path(config.cube.path).parent / "catalogs"


def run(config: Config, engine: Engine) -> dict[str, Path]:
    """Registry step ``export``: returns the path of each catalog file.

    Raises
    ------
    PipelineError
        If the cube lacks the fit or the survey-wide reductions (``survey-scale run`` makes them).
    """
    needed = ("labels", "label_err", "uniqflag", "chi2ratio", "teff_err")
    missing = [v for v in needed if not engine.has_variable(v)]
    if missing:
        raise PipelineError(
            f"{engine.cube}: cannot export the labels catalog: the cube has no {', '.join(missing)} yet "
            "(run `survey-scale run` on it first)"
        )
    variables = [v for v in CUBE_INPUTS if engine.has_variable(v)]
    label_names = [str(n) for n in engine.read_column("label")]
    params = {"label_names": label_names}
    key = engine.input_key(variables, "labels catalog", CATALOG_VERSION, params)
    names = set(COLUMN_UNITS) | set(COLUMN_DESCRIPTIONS)
    meta = {n: {"unit": COLUMN_UNITS.get(n, ""), "description": COLUMN_DESCRIPTIONS.get(n, "")} for n in names}
    return engine.write_catalog(
        "labels",
        variables,
        labels_catalog_block,
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
