"""Stages: the adapters between the science (:mod:`survey_scale.science`) and the engine.

Each module turns one part of the science into a :class:`~survey_scale.engine.contracts.Stage` (a chunk
function, its inputs, outputs and parameters from its typed configuration section) or a model step (a
reduction that builds and caches a model), and :mod:`.registry` lists them for the pipeline. A stage module
imports the engine's contracts only, never Dask or Zarr: its chunk functions run on plain numpy.
"""
