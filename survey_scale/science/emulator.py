"""The Payne spectral emulator (SPEC §5.1, §12; P2 §4.2): L physical labels → normalized flux at P pixels.

The public names of the emulator, gathered from the modules that hold them:

- :mod:`survey_scale.science.emulator_network`: :class:`Emulator` (labels (n, L) in physical units → flux
  (n, P), continuum-normalized float32; Jacobians (n, P, L)), :class:`EmulatorKernel`, the architectures
  and activations, :func:`resolve_device`;
- :mod:`survey_scale.science.emulator_files`: :func:`load` (the own format, public Payne files, emulator
  sets), :func:`load_default` and :data:`DEFAULT_EMULATORS` (the shipped emulators), :func:`emulator_arrays`;
- :mod:`survey_scale.science.emulator_training`: :func:`train` on a model grid, :func:`validation_precision`.

Training measurements (times, precisions, the shipped emulator's recipe) and the Jacobian timings:
``benchmarks/README.md``, "Emulator training measurements".
"""

from __future__ import annotations

from survey_scale.science.emulator_files import (
    DEFAULT_EMULATOR_DIR,
    DEFAULT_EMULATORS,
    EmulatorFormatError,
    ShippedEmulatorMissing,
    default_emulator_path,
    emulator_arrays,
    emulator_from_arrays,
    load,
    load_default,
)
from survey_scale.science.emulator_network import (
    ACTIVATIONS,
    ARCHITECTURES,
    DEFAULT_ACTIVATION,
    DEFAULT_HIDDEN,
    FORMAT,
    LEAKY_SLOPE,
    Emulator,
    EmulatorKernel,
    resolve_device,
)
from survey_scale.science.emulator_training import (
    ANNEAL_FRACTION,
    INIT_PREACT_STD,
    INIT_ROWS,
    INITS,
    SCHEDULES,
    train,
    validation_precision,
)
from survey_scale.science.model_grid import ModelGrid  # importable from here before the split

__all__ = [
    "ACTIVATIONS",
    "ANNEAL_FRACTION",
    "ARCHITECTURES",
    "DEFAULT_ACTIVATION",
    "DEFAULT_EMULATORS",
    "DEFAULT_EMULATOR_DIR",
    "DEFAULT_HIDDEN",
    "FORMAT",
    "INITS",
    "INIT_PREACT_STD",
    "INIT_ROWS",
    "LEAKY_SLOPE",
    "SCHEDULES",
    "Emulator",
    "EmulatorFormatError",
    "EmulatorKernel",
    "ModelGrid",
    "ShippedEmulatorMissing",
    "default_emulator_path",
    "emulator_arrays",
    "emulator_from_arrays",
    "load",
    "load_default",
    "resolve_device",
    "train",
    "validation_precision",
]
