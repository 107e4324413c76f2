"""Emulator files: the own format, public Payne files and the shipped emulators (SPEC §5.1, §12).

Own format (:meth:`~survey_scale.science.emulator_network.Emulator.save`, :func:`emulator_arrays`): an
uncompressed ``.npz`` holding the public Payne arrays (``w_array_0``, ``b_array_0``, ``w_array_1``, …,
``x_min``, ``x_max``) plus ``wave`` (P,) float64 and ``header``, a JSON string with the label names,
architecture, activation, hidden sizes, training figures and the code version. No pickled objects: it is read
with ``numpy.load(allow_pickle=False)``.

Public Payne files (:func:`load`), detected from the array shapes:

(a) per-pixel sigmoid networks: ``w_array_0`` (P, H, L), ``b_array_0`` (P, H) and either ``w_array_1``
    (P, H), ``b_array_1`` (P,) (one hidden layer) or ``w_array_1`` (P, H2, H), ``b_array_1`` (P, H2),
    ``w_array_2`` (P, H2), ``b_array_2`` (P,) (two hidden layers; a (P, H, H2) ``w_array_1`` with H ≠ H2
    is transposed). The older Ting et al. (2018) variant with ``w_array_1`` (P, H), ``b_array_1`` (P,),
    ``w_array_2`` (P,), ``b_array_2`` (P,) (flux = w2·σ(w1·σ(h) + b1) + b2) is read as a second hidden layer
    of one unit.
(b) one network for all pixels with leaky-ReLU (slope 0.01): ``w_array_0`` (H, L), ``b_array_0`` (H,),
    ``w_array_1`` (H2, H), ``b_array_1`` (H2,), ``w_array_2`` (P, H2), ``b_array_2`` (P,).

Notes
-----
Weight matrices are (out, in); ``x_min``/``x_max`` (L,) are in physical label units; ``wave`` is in vacuum Å.
The shipped emulators (:data:`DEFAULT_EMULATORS`) carry their provenance and validation precision in their
``meta``; how they were trained and what they reach: ``benchmarks/README.md``, "Emulator training
measurements".
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.labels import LABEL_NAMES
from survey_scale.core.wavelength import N_WAVE, wavelength_grid
from survey_scale.science.emulator_network import FORMAT, Emulator

if TYPE_CHECKING:
    from survey_scale.science.emulator_set import EmulatorSet


class EmulatorFormatError(SurveyScaleError, ValueError):
    """A file is not a readable emulator (names the file and the offending array)."""


def emulator_arrays(em: Emulator) -> dict[str, np.ndarray]:
    """The arrays of the own file format (module docstring): ``header``, ``x_min``, ``x_max``, ``wave`` and the
    public Payne ``w_array_k`` / ``b_array_k``."""
    arrays: dict[str, np.ndarray] = {
        "header": np.array(json.dumps(em.header(), sort_keys=True)),
        "x_min": em.x_min,
        "x_max": em.x_max,
        "wave": em.wave,
    }
    for k, (w, b) in enumerate(zip(em.weights, em.biases, strict=True)):
        arrays[f"w_array_{k}"] = w
        arrays[f"b_array_{k}"] = b
    k = len(em.weights)
    arrays[f"w_array_{k}"] = em.out_weight
    arrays[f"b_array_{k}"] = em.out_bias
    return arrays


# --------------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------------


def _shape_error(path: Path, msg: str) -> EmulatorFormatError:
    return EmulatorFormatError(f"{path}: {msg}")


def load(
    path: str | Path, wave: np.ndarray | None = None, label_names: Sequence[str] | None = None
) -> Emulator | EmulatorSet:
    """Read an emulator: the own format, an emulator set or a public Payne ``.npz`` (SPEC §5.1, §12).

    An emulator set (:mod:`survey_scale.science.emulator_set`, e.g. the shipped ``physical``) is returned as
    an :class:`~survey_scale.science.emulator_set.EmulatorSet`, which offers the same ``label_names``,
    ``x_min``, ``x_max``, ``wave`` and ``predict``.

    Parameters
    ----------
    path
        ``.npz`` file. Never unpickled (``numpy.load(allow_pickle=False)``).
    wave
        (P,) wavelengths (vacuum Å) for a public Payne file, which carries none. Default: the array
        ``wave`` or ``wavelength`` if the file has one, else the common grid when P = 3802, else an error.
    label_names
        Label names for a public Payne file. Default: :data:`survey_scale.core.labels.LABEL_NAMES` when it
        has 11 labels, else ``label_0``, ``label_1``, …

    Returns
    -------
    Emulator

    Raises
    ------
    EmulatorFormatError
        Unreadable file, missing arrays, or array shapes matching no supported layout (the message names
        the file and the array).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise EmulatorFormatError(f"{path}: cannot read without unpickling ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # missing, truncated, corrupt
        raise EmulatorFormatError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    except TypeError as exc:  # a single .npy array, not an .npz archive
        raise EmulatorFormatError(f"{path}: not an .npz archive ({exc})") from exc
    if "header" in arrays:
        head = _header(path, arrays)
        if head.get("format") == "survey_scale.emulator_set/1":
            from survey_scale.science.emulator_set import set_from_arrays  # the set module builds on this one

            return set_from_arrays(path, head, arrays)
        return emulator_from_arrays(path, arrays)
    return _from_payne(path, arrays, wave, label_names)


DEFAULT_EMULATORS: dict[str, str] = {"synthesizer": "synthesizer.npz", "physical": "physical.npz"}
"""Emulators shipped with the package (SPEC §12): name → file in :data:`DEFAULT_EMULATOR_DIR`
(``emulator.path: <name>`` selects one). Each file carries its provenance and validation precision in its
``meta`` (header).

``synthesizer``: trained on the model grid of the built-in synthesizer (:func:`survey_scale.synth.make_model_grid`,
SPEC §10), the 11 labels — for the mock release.
``physical``: an :class:`~survey_scale.science.emulator_set.EmulatorSet` of two networks trained on model grids
of ``thedoppler``'s Cannon models (:mod:`survey_scale.synth.cannon_grid`): ``cool`` (T_eff 3,500–9,000 K, log g
0–5, v sin i 0–250 km s⁻¹: the cool-star model bridged to the hot dwarfs across 7,500–9,000 K) and ``hot``
(8,000–40,000 K, log g 2.5–5, v sin i 0–400 km s⁻¹), [Fe/H] −2.5…+0.5: 4 labels (teff, logg, vsini, fe_h; the
fit reports the others as NaN), for real LAMOST spectra, whose hot-star candidate lists hold many cool stars;
``benchmarks/make_physical_emulator.py`` rebuilds each network and the set."""
DEFAULT_EMULATOR_DIR = Path(__file__).parent / "data" / "emulators"


class ShippedEmulatorMissing(SurveyScaleError, FileNotFoundError):
    """A shipped emulator's file is not in the installed package (names the file)."""


def default_emulator_path(name: str = "synthesizer") -> Path:
    """The file of the shipped emulator ``name`` (a key of :data:`DEFAULT_EMULATORS`).

    Raises
    ------
    ValueError
        ``name`` is not a shipped emulator (the message lists them).
    ShippedEmulatorMissing
        The package was installed without the file (the message names it).
    """
    if name not in DEFAULT_EMULATORS:
        raise ValueError(f"no shipped emulator named {name!r}; shipped: {', '.join(sorted(DEFAULT_EMULATORS))}")
    path = DEFAULT_EMULATOR_DIR / DEFAULT_EMULATORS[name]
    if not path.is_file():
        raise ShippedEmulatorMissing(
            f"{path}: the shipped emulator {name!r} is missing from the installed package (package data "
            "survey_scale/science/data/emulators/); reinstall survey_scale, or give an emulator file"
        )
    return path


def load_default(name: str = "synthesizer") -> Emulator | EmulatorSet:
    """The emulator the package ships (SPEC §12), e.g. ``ss.emulator.load_default()``.

    Parameters
    ----------
    name
        A key of :data:`DEFAULT_EMULATORS`: ``"synthesizer"`` (trained on the §10 synthesizer's model grid; the
        mock release's spectra come from the same synthesizer) or ``"physical"`` (trained on a physics-based
        hot-star model grid, for real spectra).

    Returns
    -------
    Emulator
        With ``meta`` holding its provenance: the model grid (seed, size, producer), the training settings
        and time, the code version and the validation precision (``valid_sigma``, ``valid_sigma_deep``).
    """
    return load(default_emulator_path(name))


def _layer_arrays(path: Path, arrays: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ws, bs = [], []
    k = 0
    while f"w_array_{k}" in arrays:
        if f"b_array_{k}" not in arrays:
            raise _shape_error(path, f"has w_array_{k} but no b_array_{k}")
        ws.append(arrays[f"w_array_{k}"])
        bs.append(arrays[f"b_array_{k}"])
        k += 1
    if k < 2:
        raise _shape_error(path, f"not an emulator file: needs w_array_0, w_array_1, … (found {sorted(arrays)})")
    for name in ("x_min", "x_max"):
        if name not in arrays:
            raise _shape_error(path, f"missing array {name!r}")
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        for nm, a in ((f"w_array_{i}", w), (f"b_array_{i}", b)):
            if a.dtype.kind != "f":
                raise _shape_error(path, f"array {nm} has dtype {a.dtype}, expected floating point")
    return ws, bs


def _header(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    try:
        head = json.loads(str(arrays["header"]))
    except (KeyError, json.JSONDecodeError) as exc:
        raise _shape_error(path, f"header is not JSON ({exc})") from exc
    if not isinstance(head, dict):
        raise _shape_error(path, "header is not a JSON object")
    return head


def emulator_from_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Emulator:
    """The :class:`Emulator` of an own-format file's arrays (:func:`emulator_arrays`); errors name ``path``."""
    head = _header(path, arrays)
    if head.get("format") != FORMAT:
        raise _shape_error(path, f"unknown emulator format {head.get('format')!r} (expected {FORMAT!r})")
    ws, bs = _layer_arrays(path, arrays)
    if "wave" not in arrays:
        raise _shape_error(path, "missing array 'wave'")
    try:
        return Emulator(
            head["architecture"],
            head["activation"],
            ws[:-1],
            bs[:-1],
            ws[-1],
            bs[-1],
            arrays["x_min"],
            arrays["x_max"],
            head["label_names"],
            arrays["wave"],
            head.get("meta", {}),
        )
    except (KeyError, ValueError) as exc:
        raise _shape_error(path, f"inconsistent emulator file: {exc}") from exc


def _from_payne(
    path: Path, arrays: dict[str, np.ndarray], wave: np.ndarray | None, label_names: Sequence[str] | None
) -> Emulator:
    ws, bs = _layer_arrays(path, arrays)
    x_min = np.asarray(arrays["x_min"], dtype=np.float64).ravel()
    x_max = np.asarray(arrays["x_max"], dtype=np.float64).ravel()
    w0 = ws[0]
    n_lab = x_min.size
    if x_max.size != n_lab:
        raise _shape_error(path, f"x_min has {n_lab} entries but x_max has {x_max.size}")
    if w0.ndim == 3:
        architecture, activation = "perpixel", "sigmoid"
        n_pix, h1, nl = w0.shape
        if nl != n_lab:
            raise _shape_error(path, f"w_array_0 has shape {w0.shape}: last axis {nl} ≠ {n_lab} labels (x_min)")
        if bs[0].shape != (n_pix, h1):
            raise _shape_error(path, f"b_array_0 has shape {bs[0].shape}, expected ({n_pix}, {h1})")
        w1, b1 = ws[1], bs[1]
        if len(ws) == 2:
            # one hidden layer: flux = Σ_h w1[p,h] σ(…) + b1[p]
            if w1.shape != (n_pix, h1) or b1.shape != (n_pix,):
                raise _shape_error(
                    path,
                    f"per-pixel network with one hidden layer needs w_array_1 ({n_pix}, {h1}) and "
                    f"b_array_1 ({n_pix},); got {w1.shape} and {b1.shape}",
                )
            hidden_w, hidden_b, ow, ob = [w0], [bs[0]], w1, b1
        elif len(ws) == 3:
            w2, b2 = ws[2], bs[2]
            if w1.ndim == 2 and w1.shape == (n_pix, h1) and b1.shape == (n_pix,) and w2.shape == (n_pix,):
                # Ting et al. (2018): a second hidden layer of one sigmoid unit, flux = w2 σ(m) + b2
                w1, b1, w2 = w1[:, None, :], b1[:, None], w2[:, None]
            if w1.ndim != 3 or w1.shape[0] != n_pix:
                raise _shape_error(path, f"w_array_1 has shape {w1.shape}, expected ({n_pix}, H2, {h1})")
            if w2.ndim != 2 or w2.shape[0] != n_pix:
                raise _shape_error(path, f"w_array_2 has shape {w2.shape}, expected ({n_pix}, H2)")
            h2 = w2.shape[1]
            if w1.shape[1:] == (h2, h1):
                pass
            elif w1.shape[1:] == (h1, h2):
                w1 = np.transpose(w1, (0, 2, 1))
            else:
                raise _shape_error(
                    path,
                    f"w_array_1 has shape {w1.shape}, expected ({n_pix}, {h2}, {h1}) from w_array_0 "
                    f"{w0.shape} and w_array_2 {w2.shape}",
                )
            if b1.shape != (n_pix, h2) or b2.shape != (n_pix,):
                raise _shape_error(
                    path,
                    f"b_array_1 {b1.shape} / b_array_2 {b2.shape}, expected ({n_pix}, {h2}) / ({n_pix},)",
                )
            hidden_w, hidden_b, ow, ob = [w0, w1], [bs[0], b1], w2, b2
        else:
            raise _shape_error(path, f"per-pixel layout with {len(ws)} weight arrays is not supported (1 or 2 hidden)")
    elif w0.ndim == 2:
        architecture, activation = "shared", "leaky_relu"
        if w0.shape[1] != n_lab:
            raise _shape_error(path, f"w_array_0 has shape {w0.shape}: axis 1 ≠ {n_lab} labels (x_min)")
        n_in = w0.shape[0]
        for i in range(1, len(ws)):
            w, b = ws[i], bs[i]
            if w.ndim != 2 or w.shape[1] != n_in:
                raise _shape_error(path, f"w_array_{i} has shape {w.shape}, expected (*, {n_in})")
            if b.shape != (w.shape[0],):
                raise _shape_error(path, f"b_array_{i} has shape {b.shape}, expected ({w.shape[0]},)")
            n_in = w.shape[0]
        if bs[0].shape != (w0.shape[0],):
            raise _shape_error(path, f"b_array_0 has shape {bs[0].shape}, expected ({w0.shape[0]},)")
        hidden_w, hidden_b, ow, ob = ws[:-1], bs[:-1], ws[-1], bs[-1]
        n_pix = ow.shape[0]
    else:
        raise _shape_error(
            path, f"w_array_0 has shape {w0.shape}: expected (pixels, hidden, labels) or (hidden, labels)"
        )
    if wave is None:
        for key in ("wave", "wavelength"):
            if key in arrays:
                wave = arrays[key]
                break
    if wave is None:
        if n_pix != N_WAVE:
            raise _shape_error(
                path,
                f"public Payne network with {n_pix} pixels and no wavelength array: pass wave= "
                f"(only a {N_WAVE}-pixel network defaults to the common grid)",
            )
        wave = wavelength_grid()
    wave = np.asarray(wave, dtype=np.float64).ravel()
    if wave.size != n_pix:
        raise _shape_error(path, f"wave has {wave.size} entries but the network has {n_pix} pixels")
    if label_names is None:
        label_names = LABEL_NAMES if n_lab == len(LABEL_NAMES) else tuple(f"label_{i}" for i in range(n_lab))
    meta = {"source": f"public Payne npz {path.name}", "layout": f"{architecture}/{len(hidden_w)} hidden"}
    try:
        return Emulator(architecture, activation, hidden_w, hidden_b, ow, ob, x_min, x_max, label_names, wave, meta)
    except ValueError as exc:
        raise _shape_error(path, str(exc)) from exc
