"""survey_scale: reprocess a LAMOST low-resolution release of hot stars into science catalogs.

Public interface (SPEC §12)::

    import survey_scale as ss
    ds = ss.open_cube(path)                 # the cube as a lazy xarray.Dataset
    sp = ss.io.read_lamost(path)            # one LAMOST file
    em = ss.emulator.load(path)             # a spectral emulator
    res = ss.fitting.fit_spectra(em, flux, ivar)

Sub-modules are imported on first use, so ``import survey_scale`` stays light (no torch, no dask client).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from survey_scale._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from survey_scale.cube import open_cube as open_cube

_SUBMODULES = {
    "io",
    "cube",
    "grid",
    "labels",
    "masks",
    "config",
    "runner",
    "ingest",
    "synth",
    "mock",
    "normalize",
    "pca",
    "emission",
    "emulator",
    "fitting",
    "information",
    "distance",
    "model_grid",
    "procedure",
    "labels_stage",
    "pipeline",
    "plots",
}

__all__ = ["__version__", "open_cube", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name == "open_cube":
        from survey_scale.cube import open_cube

        return open_cube
    if name in _SUBMODULES:
        return importlib.import_module(f"survey_scale.{name}")
    raise AttributeError(f"module 'survey_scale' has no attribute {name!r}")
