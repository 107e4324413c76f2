"""Emulators over adjoining T_eff ranges, fitted side by side (SPEC §5.1, §5.3; issue 23).

One network does not cover every star of a hot-star *candidate* list: the shipped ``physical`` model is a
cool-star network (3,500–9,000 K, thedoppler's cool-star Cannon model bridged to its hot dwarfs across
7,500–9,000 K; :func:`survey_scale.synth.cannon_grid.make_cool_model_grid`) and a hot-star network
(8,000–40,000 K, the hot dwarfs). An :class:`EmulatorSet` holds such components, with the same labels and
pixels, named (``"cool"``, ``"hot"``) and ordered by T_eff.

How it is used
    The fit (:func:`survey_scale.science.label_fit.fit_labels_set`) runs the whole §5.3 procedure with every
    component and keeps, per spectrum, the result of lowest reduced χ² over the same pixels; the index of the
    component is recorded (``fit_component``). :meth:`EmulatorSet.predict` evaluates the set as one model:
    the component whose range holds T_eff, and in the overlap of two ranges a blend linear in T_eff, so the
    set's spectrum is continuous in T_eff.

File format
    One uncompressed ``.npz``: ``header`` (JSON: ``format`` :data:`SET_FORMAT`, the component names, ``meta``)
    and each component's own-format arrays (:meth:`survey_scale.science.emulator.Emulator.save`) prefixed
    ``<name>/``. Read with ``numpy.load(allow_pickle=False)`` by :func:`survey_scale.science.emulator.load`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from survey_scale._version import __version__
from survey_scale.core.files import atomic_write, save_npz
from survey_scale.science.emulator_files import EmulatorFormatError, emulator_arrays, emulator_from_arrays
from survey_scale.science.emulator_network import Emulator

SET_FORMAT = "survey_scale.emulator_set/1"


class EmulatorSet:
    """Emulators of the same labels and pixels over adjoining T_eff ranges (module docstring).

    Parameters
    ----------
    components
        The emulators, in increasing T_eff range (each range's lower end above the previous one's).
    names
        One name per component (e.g. ``("cool", "hot")``).
    meta
        Provenance of the set (JSON-serializable).
    """

    def __init__(self, components: Sequence[Emulator], names: Sequence[str], meta: dict[str, Any] | None = None):
        self.components = tuple(components)
        self.names = tuple(str(n) for n in names)
        self.meta = dict(meta or {})
        if (
            len(self.components) < 1
            or len(self.names) != len(self.components)
            or len(set(self.names)) != len(self.names)
        ):
            raise ValueError("emulator set: one unique name per component, at least one component")
        first = self.components[0]
        for name, em in zip(self.names, self.components, strict=True):
            if em.label_names != first.label_names or not np.array_equal(em.wave, first.wave):
                raise ValueError(f"emulator set: component {name!r} has other labels or pixels than {self.names[0]!r}")
        if "teff" not in first.label_names:
            raise ValueError("emulator set: the components need a 'teff' label")
        lo = [em.x_min[self.teff_index] for em in self.components]
        hi = [em.x_max[self.teff_index] for em in self.components]
        if any(b <= a for a, b in itertools.pairwise(lo)) or any(b <= a for a, b in itertools.pairwise(hi)):
            raise ValueError(f"emulator set: components must be ordered by their Teff ranges, got {list(zip(lo, hi))}")

    # -- what an Emulator offers -----------------------------------------------------------------------
    @property
    def label_names(self) -> tuple[str, ...]:
        return self.components[0].label_names

    @property
    def wave(self) -> np.ndarray:
        return self.components[0].wave

    @property
    def n_pixels(self) -> int:
        return self.components[0].n_pixels

    @property
    def n_labels(self) -> int:
        return self.components[0].n_labels

    @property
    def x_min(self) -> np.ndarray:
        """Lowest value of each label over the components (physical units)."""
        return np.min([em.x_min for em in self.components], axis=0)

    @property
    def x_max(self) -> np.ndarray:
        return np.max([em.x_max for em in self.components], axis=0)

    @property
    def teff_index(self) -> int:
        return self.components[0].label_names.index("teff")

    def component(self, name: str) -> Emulator:
        """The component called ``name`` (KeyError naming the components otherwise)."""
        if name not in self.names:
            raise KeyError(f"emulator set has no component {name!r}; it has {', '.join(self.names)}")
        return self.components[self.names.index(name)]

    def teff_ranges(self) -> dict[str, tuple[float, float]]:
        """Each component's T_eff range (K)."""
        it = self.teff_index
        return {
            n: (float(em.x_min[it]), float(em.x_max[it])) for n, em in zip(self.names, self.components, strict=True)
        }

    def weights(self, teff: np.ndarray) -> np.ndarray:
        """(n, K) weight of each component at ``teff`` (K): 1 inside one range, linear across an overlap."""
        t = np.asarray(teff, dtype=np.float64)
        ranges = list(self.teff_ranges().values())
        w = np.zeros((t.size, len(ranges)))
        w[:, 0] = 1.0
        for k in range(1, len(ranges)):
            lo, hi = ranges[k][0], ranges[k - 1][1]  # the overlap of components k-1 and k
            up = np.clip((t - lo) / (hi - lo), 0.0, 1.0) if hi > lo else (t >= lo).astype(np.float64)
            w[:, k] = up
            w[:, :k] *= (1.0 - up)[:, None]
        return w

    def predict(self, labels: np.ndarray, device: str | torch.device | None = None, batch: int = 1024) -> np.ndarray:
        """Normalized flux (n, P) of physical labels (n, L): the components weighted by :meth:`weights`."""
        lab = np.asarray(labels, dtype=np.float64)
        one = lab.ndim == 1
        lab = np.atleast_2d(lab)
        w = self.weights(lab[:, self.teff_index])
        out = np.zeros((lab.shape[0], self.n_pixels), dtype=np.float32)
        for k, em in enumerate(self.components):
            rows = w[:, k] > 0
            if rows.any():
                out[rows] += (w[rows, k, None] * em.predict(lab[rows], device=device, batch=batch)).astype(np.float32)
        return out[0] if one else out

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {lo:.0f}-{hi:.0f} K" for n, (lo, hi) in self.teff_ranges().items())
        return f"EmulatorSet({parts}; labels={self.n_labels}, pixels={self.n_pixels})"

    # -- persistence ------------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {"format": SET_FORMAT, "components": list(self.names), "code_version": __version__, "meta": self.meta}

    def save(self, path: str | Path) -> Path:
        """Write the set as one ``.npz`` (module docstring) and return the path."""
        arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(self.header(), sort_keys=True))}
        for name, em in zip(self.names, self.components, strict=True):
            arrays.update({f"{name}/{key}": a for key, a in emulator_arrays(em).items()})
        return atomic_write(path, lambda tmp: save_npz(tmp, arrays))

    def content_hash(self) -> str:
        """SHA-256 over the components' :meth:`~survey_scale.science.emulator.Emulator.content_hash` and names."""
        h = hashlib.sha256()
        for name, em in zip(self.names, self.components, strict=True):
            h.update(f"{name}:{em.content_hash()}".encode())
        return h.hexdigest()


def set_from_arrays(path: Path, head: dict[str, Any], arrays: dict[str, np.ndarray]) -> EmulatorSet:
    """The :class:`EmulatorSet` of a file's arrays (``head``: its parsed header). Errors name the file."""
    names = head.get("components")
    if not isinstance(names, list) or not names:
        raise EmulatorFormatError(f"{path}: emulator set without a list of components in its header")
    components = []
    for name in names:
        prefix = f"{name}/"
        sub = {k[len(prefix) :]: a for k, a in arrays.items() if k.startswith(prefix)}
        if not sub:
            raise EmulatorFormatError(f"{path}: emulator set names component {name!r} but holds no arrays for it")
        components.append(emulator_from_arrays(Path(f"{path}[{name}]"), sub))
    try:
        return EmulatorSet(components, names, head.get("meta", {}))
    except ValueError as exc:
        raise EmulatorFormatError(f"{path}: {exc}") from exc
