"""survey_scale: reprocess a LAMOST low-resolution release of hot stars into science catalogs.

Public interface (SPEC §12)::

    import survey_scale as ss
    ds = ss.open_cube(path)                 # the cube as a lazy xarray.Dataset
    sp = ss.io.read_lamost(path)            # one LAMOST file
    em = ss.emulator.load(path)             # a spectral emulator
    res = ss.fitting.fit_spectra(em, flux, ivar)
    d = ss.distance.posterior(parallax, parallax_error, mks, mks_err, ks, ks_err, aks, aks_err, binary)

Sub-modules are imported on first use, so ``import survey_scale`` stays light (no torch, no dask client).
Every error a user can meet is a :class:`SurveyScaleError`.

Layers (each imports only the layers above it in this list; ``tests/test_layers.py`` checks it):

- ``core``: the wavelength grid and pixel-mask bits, label names, spectral windows, errors, hashes and atomic
  writes; ``config`` (the typed YAML configuration) sits beside it;
- ``io`` (LAMOST FITS, catalogs), ``science`` (pure numpy/torch: resampling, normalization, PCA, emission,
  emulator, fit), ``synth`` and ``mock`` (the built-in mock release): no Dask, no Zarr, no engine;
- ``store``: the Zarr cube, its bookkeeping (``_survey_scale/``) and the writer lock;
- ``engine``: the stage, reduction and step contracts, the Dask runner, the cluster kinds — no science, no torch;
- ``stages``: adapters from the science to the engine, and the registry of pipeline steps;
- ``products``: figures and ``info`` (later catalogs and the report);
- ``pipeline``, ``cli``, ``demo``: the application.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from survey_scale._version import __version__
from survey_scale.core.errors import SurveyScaleError

if TYPE_CHECKING:  # pragma: no cover
    from survey_scale.store.cube import open_cube as open_cube

_SUBMODULES: dict[str, str] = {
    # the public names of SPEC §12 and the packages of each layer
    "io": "survey_scale.io",
    "emulator": "survey_scale.science.emulator",
    "fitting": "survey_scale.science.fitting",
    "distance": "survey_scale.science.distance",
    "cube": "survey_scale.store.cube",
    "config": "survey_scale.config",
    "pipeline": "survey_scale.pipeline",
    "synth": "survey_scale.synth",
    "mock": "survey_scale.mock",
    "core": "survey_scale.core",
    "store": "survey_scale.store",
    "engine": "survey_scale.engine",
    "science": "survey_scale.science",
    "stages": "survey_scale.stages",
    "products": "survey_scale.products",
}
"""``ss.<name>`` → the module it opens (imported on first use)."""

__all__ = ["SurveyScaleError", "__version__", "open_cube", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name == "open_cube":
        from survey_scale.store.cube import open_cube

        return open_cube
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'survey_scale' has no attribute {name!r}")
