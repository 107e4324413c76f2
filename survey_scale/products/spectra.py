"""Spectra of the cube that it may not keep (SPEC §2, issue 25: storage by choice).

``cube.keep_model_flux: false`` leaves the fit's ``model_flux`` (~9 kB per spectrum, ~12 % of a cube) out of the
cube; :func:`rebuild_model_flux` computes it again from what the cube keeps — the labels, ``vsini_raw``,
``fit_component`` — with the fit's emulator (the file the cube's emulator step recorded, checked by its SHA-256).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import file_sha256
from survey_scale.science.emulator import default_emulator_path, load
from survey_scale.science.label_fit import model_spectra
from survey_scale.stages.emulator import CHOICE_FILE
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_cube


def rebuild_model_flux(
    cube: str | Path, rows: np.ndarray | slice | None = None, *, emulator: str | Path | None = None
) -> np.ndarray:
    """The fit's ``model_flux`` (SPEC §5.3) of ``rows`` (default: all), rebuilt from the cube's ``labels``,
    ``vsini_raw`` and ``fit_component`` with the fit's emulator — for a cube written with
    ``cube.keep_model_flux: false``, or any other. Equal to the stored ``model_flux`` to ~1e-6 of the flux.

    ``emulator``: the emulator file (default: the one the cube's emulator step recorded; where that file has
    moved, the shipped emulator of the same name). Returns (n, P) float32, NaN for spectra without a fit.

    Raises
    ------
    SurveyScaleError
        The cube has no fit yet, or the emulator file is not the one the fit used (its SHA-256 differs).
    """
    ds = open_cube(cube)
    if "labels" not in ds or "fit_component" not in ds:
        raise SurveyScaleError(f"{cube}: no label fit in the cube yet (run the pipeline up to step fit)")
    choice_path = Bookkeeping(cube).model_path(CHOICE_FILE)
    choice = json.loads(choice_path.read_text()) if choice_path.exists() else {}
    path = Path(emulator) if emulator is not None else Path(choice.get("path", ""))
    if emulator is None and not path.is_file() and choice.get("emulator"):
        try:
            path = default_emulator_path(choice["emulator"])
        except ValueError:  # an emulator of the user's own, moved away
            pass
    if not path.is_file():
        what = f"the fit's emulator file {path}" if choice else f"no record of the fit's emulator ({choice_path})"
        raise SurveyScaleError(f"{cube}: {what} is not there; pass emulator=<its file>")
    if choice.get("sha256") and file_sha256(path) != choice["sha256"]:
        raise SurveyScaleError(
            f"{path}: not the emulator of this cube's fit (SHA-256 {file_sha256(path)[:12]}…, the fit used "
            f"{choice['sha256'][:12]}…)"
        )
    sel = slice(None) if rows is None else rows
    part = ds.isel(spec=sel)[["labels", "vsini_raw", "fit_component"]].compute()
    return model_spectra(
        load(path),
        part["labels"].values,
        [str(n) for n in ds["label"].values],
        part["vsini_raw"].values,
        part["fit_component"].values,
    )
