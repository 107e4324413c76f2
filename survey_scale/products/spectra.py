"""Spectra of the cube that it may not keep (SPEC §2, issue 25: storage by choice).

``cube.keep_model_flux: false`` leaves the fit's ``model_flux`` (~9 kB per spectrum, ~12 % of a cube) out of the
cube; :func:`rebuild_model_flux` computes it again from what the cube keeps — the labels, ``vsini_raw``,
``fit_component`` — with the fit's emulator (the model the cube's emulator step recorded, checked by its SHA-256).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import file_sha256
from survey_scale.science.emulator import DEFAULT_EMULATORS, default_emulator_path, load
from survey_scale.science.label_fit import model_spectra
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_cube


def fit_emulator_file(cube: str | Path, record: dict) -> Path:
    """The emulator file of the cube's fit: the recorded one, or where it has moved, a shipped emulator with the
    recorded SHA-256 (a cube copied to another machine)."""
    path = Path(record.get("path", ""))
    if path.is_file():
        return path
    for name in DEFAULT_EMULATORS:
        try:
            shipped = default_emulator_path(name)
        except SurveyScaleError:  # a shipped file missing from this installation
            continue
        if record.get("sha256") == file_sha256(shipped):
            return shipped
    what = f"the fit's emulator file {path}" if record else "no record of the fit's emulator"
    raise SurveyScaleError(f"{cube}: {what} is not there; pass emulator=<its file>")


def rebuild_model_flux(
    cube: str | Path, rows: np.ndarray | slice | None = None, *, emulator: str | Path | None = None
) -> np.ndarray:
    """The fit's ``model_flux`` (SPEC §5.3) of ``rows`` (default: all), rebuilt from the cube's ``labels``,
    ``vsini_raw`` and ``fit_component`` with the fit's emulator — for a cube written with
    ``cube.keep_model_flux: false``, or any other. Equal to the stored ``model_flux`` to ~1e-6 of the flux.

    ``emulator``: the emulator file (default: the one the cube's emulator step recorded,
    :func:`fit_emulator_file`). Returns (n, P) float32, NaN for spectra without a fit.

    Raises
    ------
    SurveyScaleError
        The cube has no fit yet, or the emulator file is not the one the fit used (its SHA-256 differs).
    """
    ds = open_cube(cube)
    if "labels" not in ds or "fit_component" not in ds:
        raise SurveyScaleError(f"{cube}: no label fit in the cube yet (run the pipeline up to step fit)")
    record = Bookkeeping(cube).recorded_models().get("emulator", {})
    path = Path(emulator) if emulator is not None else fit_emulator_file(cube, record)
    if record.get("sha256") and file_sha256(path) != record["sha256"]:
        raise SurveyScaleError(f"{path}: not the emulator of this cube's fit (its SHA-256 is not the one recorded)")
    sel = slice(None) if rows is None else rows
    part = ds.isel(spec=sel)[["labels", "vsini_raw", "fit_component"]].compute()
    return model_spectra(
        load(path),
        part["labels"].values,
        [str(n) for n in ds["label"].values],
        part["vsini_raw"].values,
        part["fit_component"].values,
    )
