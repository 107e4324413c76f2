"""Model grids: labelled noiseless normalized spectra for training an emulator (SPEC §5.1, §10).

File format (``.npz``, read with ``allow_pickle=False``; no Python objects inside):

=================  ==================  =====================================================================
key                shape, dtype        meaning
=================  ==================  =====================================================================
``labels``         (n, L) float64      physical label values, one row per spectrum
``label_names``    (L,) unicode        label names, in the column order of ``labels``
``label_min``      (L,) float64        lower end of each label's range (the emulator's scaling)
``label_max``      (L,) float64        upper end of each label's range
``wave``           (P,) float64        pixel-centre wavelengths, vacuum Å, rest frame
``flux``           (n, P) float32      continuum-normalized flux (§3 pseudo-continuum or true continuum)
``meta``           () unicode          JSON: producer, seed, line-spread function, normalization, notes
=================  ==================  =====================================================================

Any grid a user has (e.g. from Kurucz/SYNTHE) can be converted to this layout and used to train the
emulator; the pixel grid need not be survey_scale's common grid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale.core.files import atomic_write, save_npz

_KEYS = ("labels", "label_names", "label_min", "label_max", "wave", "flux", "meta")


@dataclass
class ModelGrid:
    """Labelled model spectra (see the module docstring for the on-disk layout)."""

    labels: np.ndarray
    label_names: tuple[str, ...]
    label_min: np.ndarray
    label_max: np.ndarray
    wave: np.ndarray
    flux: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.float64)
        self.label_names = tuple(str(n) for n in self.label_names)
        self.label_min = np.asarray(self.label_min, dtype=np.float64)
        self.label_max = np.asarray(self.label_max, dtype=np.float64)
        self.wave = np.asarray(self.wave, dtype=np.float64)
        self.flux = np.asarray(self.flux, dtype=np.float32)
        n, n_labels = self.labels.shape
        if len(self.label_names) != n_labels:
            raise ValueError(f"model grid: {n_labels} label columns but {len(self.label_names)} label names")
        if self.label_min.shape != (n_labels,) or self.label_max.shape != (n_labels,):
            raise ValueError("model grid: label_min/label_max must have one entry per label")
        if np.any(self.label_max <= self.label_min):
            bad = [nm for nm, lo, hi in zip(self.label_names, self.label_min, self.label_max) if hi <= lo]
            raise ValueError(f"model grid: empty label range for {bad}")
        if self.flux.shape != (n, self.wave.size):
            raise ValueError(
                f"model grid: flux has shape {self.flux.shape}, expected ({n}, {self.wave.size}) "
                "(one row per label row, one column per wavelength)"
            )
        if not np.all(np.diff(self.wave) > 0):
            raise ValueError("model grid: wavelengths must increase")

    @property
    def n_spectra(self) -> int:
        return self.labels.shape[0]

    def subset(self, index: Sequence[int] | np.ndarray) -> ModelGrid:
        """A grid with the rows ``index`` (same ranges, wavelengths and metadata)."""
        return ModelGrid(
            self.labels[index],
            self.label_names,
            self.label_min,
            self.label_max,
            self.wave,
            self.flux[index],
            dict(self.meta),
        )


def save_model_grid(grid: ModelGrid, path: str | Path) -> Path:
    """Write ``grid`` to ``path`` (``.npz``, uncompressed) and return the path."""

    arrays = {
        "labels": grid.labels,
        "label_names": np.array(grid.label_names, dtype=str),
        "label_min": grid.label_min,
        "label_max": grid.label_max,
        "wave": grid.wave,
        "flux": grid.flux,
        "meta": np.array(json.dumps(grid.meta, sort_keys=True)),
    }
    return atomic_write(path, lambda tmp: save_npz(tmp, arrays))


def load_model_grid(path: str | Path) -> ModelGrid:
    """Read a model grid written by :func:`save_model_grid` (or converted by a user to that layout)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files and k != "meta"]
            if missing:
                raise ValueError(f"{path}: not a model grid, missing arrays {missing}")
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            return ModelGrid(
                z["labels"],
                tuple(z["label_names"].tolist()),
                z["label_min"],
                z["label_max"],
                z["wave"],
                z["flux"],
                meta,
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read model grid: {exc}") from exc
