"""A physics-based hot-star model grid from the cubic Cannon model of hot dwarfs in ``thedoppler`` (SPEC §5.1).

The built-in synthesizer (:mod:`survey_scale.synth`) has the information structure of hot-star spectra but is
not a stellar atmosphere model. For real spectra survey_scale builds a second model grid, in the model-grid
format of :mod:`survey_scale.science.model_grid`, from an independent model trained on synthetic spectra of
real model atmospheres:

Source
    ``cannongrid_3000_18000_hotdwarfs_norm_cubic_model.pkl`` of the package ``thedoppler`` (D. Nidever,
    https://github.com/dnidever/doppler, PyPI ``thedoppler``; MIT licence, © 2019 David Nidever). A cubic
    Cannon model (Ness et al. 2015; the ``thecannon``/AnniesLasso format of A. Casey, version 0.2.93) of
    continuum-normalized hot-dwarf spectra: labels T_eff (8,000–40,000 K), log g (2.5–5) and [Fe/H]
    (−2.5…+0.5), 3,000–18,000 Å at 0.1 Å, **air** wavelengths, plus a cubic model of the log10 continuum
    on 2,000 log-spaced wavelengths. The file is not shipped with survey_scale; get it with::

        pip download thedoppler==1.1.32 --no-deps -d . && unzip -j thedoppler-1.1.32-*.whl \\
            'doppler/data/cannongrid_3000_18000_hotdwarfs_norm_cubic_model.pkl'

    and pass its path to :func:`make_cannon_model_grid`; the ``doppler`` package itself is not needed.

Reading the file without executing code
    The file is a Python pickle. :func:`read_cannon_model` reads it with a restricted unpickler
    (:class:`NumpyOnlyUnpickler`) that resolves only the numpy globals that rebuild arrays, dtypes and
    scalars (``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray._reconstruct`` and ``.scalar``);
    dicts, lists, tuples, strings and numbers are pickle opcodes, not globals. Any other global — a class,
    a function such as ``os.system`` — is refused with :class:`CannonModelError` before anything is
    called, so no code from the file runs. Arrays of Python objects are refused too.

Evaluation (Casey's ``thecannon``, reproduced from the published format)
    Labels are scaled as x = (l − fiducial) / scale with fiducial = median of the 613 training labels and
    scale = the 2.5–97.5 percentile range; the flux is θ · v(x), with v = (1, the 19 monomials listed in
    the file's ``vectorizer`` ``terms``; e.g. ``[(0, 1), (1, 1)]`` = x₀x₁). As in ``doppler``, the
    normalized flux is capped at 1 (the model's occasional spikes above the continuum) and the continuum is
    10^(θ_c · v(x)).

From the model to the grid (:func:`cannon_model_spectra`)
    1. normalized flux on the model's 0.1 Å pixels (capped at 1) and continuum F_c, for each star;
    2. air → vacuum wavelengths with :func:`survey_scale.core.wavelength.air_to_vacuum` (the inverse of the IAU
       formula of Morton 2000, ApJS 130, 403; +1.1 Å at 4000 Å);
    3. averaged (flux-conserving) into the sub-pixels of the synthesizer's 3× oversampled working grid
       (:func:`survey_scale.synth.spectrum.fine_grid`);
    4. rotation (Gray's profile, limb darkening ε = 0.6 as P2) and the mean LAMOST LSF (Gaussian of
       constant R = 1800) by the synthesizer's own kernels (:func:`survey_scale.synth.spectrum.broaden_fine`),
       applied to the line depth F_c (1 − f) so that lines in the Balmer jump region are weighted by the
       continuum they sit on: F = F_c − K ⊗ [F_c (1 − f)];
    5. averaged into the 3,802 pixels of the common grid (:func:`survey_scale.core.wavelength.wavelength_grid`,
       vacuum) and normalized exactly as the pipeline normalizes observed spectra,
       :func:`survey_scale.science.normalize.normalize_continuum` with ivar = 1 (SPEC §3).

Labels (:func:`sample_cannon_labels`)
    T_eff log-uniform in 8,000–40,000 K, log g uniform in 2.5–5, [Fe/H] uniform in −2.5…+0.5, kept only
    inside the convex hull of the model's training labels (the training grid has no low-gravity O stars;
    a cubic polynomial extrapolated there is meaningless), and v sin i uniform in 0–400 km s⁻¹. The grid's
    labels are ``("teff", "logg", "vsini", "fe_h")`` — a subset of survey_scale's 11 (SPEC §5), in their
    canonical order; the fit reports the other seven as NaN.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from survey_scale._version import __version__
from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.wavelength import air_to_vacuum, wavelength_grid
from survey_scale.science.model_grid import ModelGrid
from survey_scale.science.normalize import CONTINUUM_LENGTH, normalize_continuum
from survey_scale.synth.core import DEFAULT_RESOLUTION
from survey_scale.synth.spectrum import LIMB_DARKENING, broaden_fine, fine_grid, fine_to_pixels

CANNON_MODEL_FILE = "cannongrid_3000_18000_hotdwarfs_norm_cubic_model.pkl"
"""Name of the model file in ``thedoppler``'s ``doppler/data/``."""
CANNON_MODEL_SOURCE = (
    "thedoppler 1.1.32 (PyPI; https://github.com/dnidever/doppler; MIT licence, (c) 2019 David Nidever), "
    "doppler/data/" + CANNON_MODEL_FILE
)
CANNON_LABELS = ("teff", "logg", "fe_h")
"""survey_scale names of the model's labels TEFF, LOGG, FEH."""
GRID_LABELS = ("teff", "logg", "vsini", "fe_h")
"""Labels of the grid, in survey_scale's canonical order (:data:`survey_scale.core.labels.LABEL_NAMES`)."""
GRID_RANGES: dict[str, tuple[float, float]] = {
    "teff": (8000.0, 40000.0),
    "logg": (2.5, 5.0),
    "vsini": (0.0, 400.0),
    "fe_h": (-2.5, 0.5),
}
"""The grid's label box: the Cannon model's training range, and v sin i up to 400 km s⁻¹."""

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}
"""The only globals a model file may name: what numpy's own pickles of arrays, dtypes and scalars use."""


class CannonModelError(SurveyScaleError, ValueError):
    """A file is not a readable Cannon model (names the file and what is wrong)."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that admits only the numpy globals of :data:`_ALLOWED_GLOBALS`.

    Everything else a pickle can name (classes, functions, ``__reduce__`` targets) raises
    :class:`pickle.UnpicklingError` at the moment the global is looked up, before it could be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays are read)")
        import numpy._core.multiarray as multiarray  # numpy ≥ 2 moved numpy.core to numpy._core

        if name in ("_reconstruct", "scalar"):
            return getattr(multiarray, name)
        return getattr(np, name)


def safe_load_pickle(data: bytes) -> Any:
    """Unpickle ``data`` admitting only numpy arrays, dtypes and scalars (see :class:`NumpyOnlyUnpickler`)."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


@dataclass(frozen=True)
class CannonPolynomial:
    """One trained Cannon polynomial model: flux(λ) = θ(λ) · v((l − fiducial) / scale)."""

    theta: np.ndarray
    """(P, T) coefficients, T = 1 + number of terms."""
    dispersion: np.ndarray
    """(P,) wavelengths (Å, air)."""
    terms: tuple[tuple[tuple[int, float], ...], ...]
    """The T − 1 monomials: each a tuple of (label index, power)."""
    fiducials: np.ndarray
    scales: np.ndarray

    def design(self, labels: np.ndarray) -> np.ndarray:
        """(n, T) label vectors of (n, 3) physical labels."""
        x = (np.atleast_2d(np.asarray(labels, dtype=np.float64)) - self.fiducials) / self.scales
        cols = [np.ones(x.shape[0])]
        for term in self.terms:
            col = np.ones(x.shape[0])
            for index, power in term:
                col = col * x[:, index] ** power
            cols.append(col)
        return np.stack(cols, axis=1)

    def __call__(self, labels: np.ndarray, pixels: slice = slice(None)) -> np.ndarray:
        """(n, P) model values at (n, 3) physical labels (for the pixels ``pixels``)."""
        return self.design(labels) @ self.theta[pixels].T


@dataclass(frozen=True)
class CannonModel:
    """The hot-dwarf Cannon model: normalized flux and log10 continuum, with its provenance."""

    flux: CannonPolynomial
    continuum: CannonPolynomial
    training_labels: np.ndarray
    """(613, 3) T_eff, log g, [Fe/H] of the model's training spectra."""
    sha256: str
    path: str

    @property
    def label_min(self) -> np.ndarray:
        return self.training_labels.min(0)

    @property
    def label_max(self) -> np.ndarray:
        return self.training_labels.max(0)

    def in_hull(self, labels: np.ndarray) -> np.ndarray:
        """True for (n, 3) labels inside the convex hull of the training labels (scaled by their ranges)."""
        from scipy.spatial import Delaunay

        span = self.label_max - self.label_min
        hull = Delaunay((self.training_labels - self.label_min) / span)
        return hull.find_simplex((np.atleast_2d(labels) - self.label_min) / span) >= 0


def _polynomial(state: dict[str, Any], where: str) -> CannonPolynomial:
    try:
        theta = np.asarray(state["theta"], dtype=np.float64)
        dispersion = np.asarray(state["dispersion"], dtype=np.float64)
        vec_name, vec = state["vectorizer"]
        labels = np.asarray(state["training_set_labels"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise CannonModelError(f"{where}: not a Cannon model state ({exc!r})") from exc
    if vec_name != "PolynomialVectorizer":
        raise CannonModelError(f"{where}: vectorizer {vec_name!r}, expected 'PolynomialVectorizer'")
    terms = tuple(tuple((int(i), float(p)) for i, p in term) for term in vec["terms"])
    names = tuple(vec["label_names"])
    if names != ("TEFF", "LOGG", "FEH"):
        raise CannonModelError(f"{where}: labels {names}, expected ('TEFF', 'LOGG', 'FEH')")
    if theta.ndim != 2 or theta.shape != (dispersion.size, len(terms) + 1) or labels.shape[1:] != (3,):
        raise CannonModelError(
            f"{where}: theta {theta.shape}, dispersion {dispersion.shape}, {len(terms)} terms and training labels "
            f"{labels.shape} are inconsistent"
        )
    # thecannon.CannonModel.__init__: scales = ptp of the 2.5/97.5 percentiles, fiducials = median
    scales = np.ptp(np.percentile(labels, [2.5, 97.5], axis=0), axis=0)
    fiducials = np.percentile(labels, 50, axis=0)
    return CannonPolynomial(theta, dispersion, terms, fiducials, scales)


def read_cannon_model(path: str | Path) -> CannonModel:
    """Read ``thedoppler``'s hot-dwarf Cannon model without executing code from it (module docstring).

    Parameters
    ----------
    path
        The ``.pkl`` file (:data:`CANNON_MODEL_FILE`).

    Raises
    ------
    CannonModelError
        The file is missing, names a global other than numpy's array builders, holds object arrays, or
        is not a Cannon model of T_eff, log g and [Fe/H] with a continuum model.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CannonModelError(
            f"{path}: cannot read the Cannon model ({exc.strerror}); get it with `pip download thedoppler` "
            f"(doppler/data/{CANNON_MODEL_FILE} in the wheel)"
        ) from exc
    try:
        state = safe_load_pickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CannonModelError(f"{path}: refused or unreadable pickle: {exc}") from exc
    if not isinstance(state, dict) or "continuum" not in state:
        raise CannonModelError(f"{path}: not a Cannon model with a continuum model (a dict with 'continuum')")
    for key, value in (*state.items(), *dict(state["continuum"]).items()):
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise CannonModelError(f"{path}: array {key!r} holds Python objects")
    flux = _polynomial(state, f"{path} (flux model)")
    cont = _polynomial(state["continuum"], f"{path} (continuum model)")
    if state.get("wavevac", False) or not state["continuum"].get("logflux", False):
        raise CannonModelError(f"{path}: expected air wavelengths and a log10 continuum (wavevac False, logflux True)")
    return CannonModel(
        flux=flux,
        continuum=cont,
        training_labels=np.asarray(state["training_set_labels"], dtype=np.float64),
        sha256=hashlib.sha256(data).hexdigest(),
        path=str(path),
    )


# ---------------------------------------------------------------------------------------------------------
# spectra
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rebin:
    """The model's pixels inside the working grid and the matrix averaging them into its sub-pixels."""

    pixels: slice
    matrix: scipy.sparse.csr_matrix
    """(Nf, P_used) overlap fractions / sub-pixel width (rows sum to 1)."""


def _edges(centres: np.ndarray) -> np.ndarray:
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _rebin_matrix(model_wave_vac: np.ndarray) -> _Rebin:
    """Flux-conserving average of the model's pixels (constant over each) into the fine grid's sub-pixels."""
    fine = fine_grid().wave
    out_edges = _edges(np.log(fine))
    lo = int(np.searchsorted(model_wave_vac, np.exp(out_edges[0]))) - 2
    hi = int(np.searchsorted(model_wave_vac, np.exp(out_edges[-1]))) + 2
    if lo < 0 or hi > model_wave_vac.size:
        raise CannonModelError("the Cannon model does not cover the working grid (3716-9082 Å vacuum)")
    in_edges = _edges(np.log(model_wave_vac[lo:hi]))
    # overlap of input pixel k with output pixel j, by the merged list of edges
    rows, cols, vals = [], [], []
    first = np.searchsorted(in_edges, out_edges[:-1], side="right") - 1
    last = np.searchsorted(in_edges, out_edges[1:], side="left") - 1
    for m in range(int((last - first).max()) + 1):
        k = first + m
        valid = k <= last
        kk = np.minimum(k, in_edges.size - 2)
        overlap = np.minimum(out_edges[1:], in_edges[kk + 1]) - np.maximum(out_edges[:-1], in_edges[kk])
        w = np.where(valid, np.clip(overlap, 0.0, None), 0.0) / np.diff(out_edges)
        j = np.flatnonzero(w > 0)
        rows.append(j)
        cols.append(kk[j])
        vals.append(w[j])
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(fine.size, hi - lo)
    )
    return _Rebin(slice(lo, hi), matrix)


def cannon_model_spectra(
    model: CannonModel,
    labels: np.ndarray,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    chunk_size: int = 256,
) -> np.ndarray:
    """§3-normalized spectra of the Cannon model on the common grid (steps 1–5 of the module docstring).

    Parameters
    ----------
    model
        :func:`read_cannon_model`.
    labels
        (n, 4) or (4,) T_eff (K), log g (dex), v sin i (km s⁻¹), [Fe/H] (dex) — :data:`GRID_LABELS` order.
    resolution
        Resolving power of the Gaussian LSF (default 1800, the mean LAMOST LSF).
    chunk_size
        Spectra per batch (bounds memory: ~chunk_size × 0.5 MB).

    Returns
    -------
    numpy.ndarray
        (n, 3802) float32, vacuum rest-frame common grid, normalized by the pipeline's pseudo-continuum.
    """
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    if lab.shape[1] != len(GRID_LABELS) or not np.all(np.isfinite(lab)):
        raise ValueError(f"cannon_model_spectra: labels must be finite, shape (n, 4) in the order {GRID_LABELS}")
    if np.any(lab[:, 2] < 0):
        raise ValueError("cannon_model_spectra: vsini must be >= 0")
    wave_vac = air_to_vacuum(model.flux.dispersion)
    rebin = _rebin_matrix(wave_vac)
    fine = fine_grid().wave
    cont_wave_vac = air_to_vacuum(model.continuum.dispersion)
    out = np.empty((lab.shape[0], wavelength_grid().size), dtype=np.float32)
    for a in range(0, lab.shape[0], max(1, int(chunk_size))):
        c = lab[a : a + max(1, int(chunk_size))]
        cannon_labels = c[:, [0, 1, 3]]
        norm = np.clip(model.flux(cannon_labels, rebin.pixels), 0.0, 1.0)
        norm_fine = (rebin.matrix @ norm.T).T
        log_cont = model.continuum(cannon_labels)
        cont_fine = np.stack([np.interp(fine, cont_wave_vac, 10.0**row) for row in log_cont])
        cont_fine /= cont_fine.mean(axis=1, keepdims=True)  # overall scale is irrelevant to the normalization
        depth = (cont_fine * (1.0 - norm_fine)).astype(np.float32)
        flux_fine = cont_fine - broaden_fine(depth, c[:, 2], np.full(c.shape[0], float(resolution)))
        flux = fine_to_pixels(flux_fine)
        out[a : a + c.shape[0]] = normalize_continuum(flux, np.ones_like(flux))[0]
    return out


def _sample_labels(
    in_hull: Callable[[np.ndarray], np.ndarray],
    ranges: dict[str, tuple[float, float]],
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` label vectors (n, 4) in :data:`GRID_LABELS` order: T_eff log-uniform, the others uniform in
    ``ranges``, kept where ``in_hull`` of the (m, 3) T_eff, log g, [Fe/H] is True."""
    out = np.empty((0, len(GRID_LABELS)))
    lo = {k: v[0] for k, v in ranges.items()}
    hi = {k: v[1] for k, v in ranges.items()}
    while out.shape[0] < n:
        m = 2 * (n - out.shape[0]) + 16
        teff = 10.0 ** rng.uniform(np.log10(lo["teff"]), np.log10(hi["teff"]), m)
        logg = rng.uniform(lo["logg"], hi["logg"], m)
        fe_h = rng.uniform(lo["fe_h"], hi["fe_h"], m)
        vsini = rng.uniform(lo["vsini"], hi["vsini"], m)
        keep = in_hull(np.stack([teff, logg, fe_h], axis=1))
        out = np.concatenate([out, np.stack([teff, logg, vsini, fe_h], axis=1)[keep]])
    return out[:n]


def sample_cannon_labels(model: CannonModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` label vectors (n, 4) in :data:`GRID_LABELS` order inside the model's training hull (module docstring)."""
    return _sample_labels(model.in_hull, GRID_RANGES, n, rng)


def make_cannon_model_grid(
    model_path: str | Path,
    n: int,
    seed: int,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    chunk_size: int = 256,
) -> ModelGrid:
    """A model grid of ``n`` spectra of ``thedoppler``'s hot-dwarf Cannon model (module docstring; SPEC §5.1).

    Parameters
    ----------
    model_path
        Path of :data:`CANNON_MODEL_FILE` (see the module docstring for where to get it).
    n, seed
        Number of spectra; seed of ``np.random.default_rng`` for the labels. The same inputs give
        bit-identical grids.
    resolution
        Resolving power of the LSF (default the mean LAMOST LSF, R = 1800).
    chunk_size
        Spectra per batch.

    Returns
    -------
    survey_scale.science.model_grid.ModelGrid
        Labels (n, 4) ``("teff", "logg", "vsini", "fe_h")``, ranges :data:`GRID_RANGES`, the common grid,
        §3-normalized float32 flux and ``meta`` recording the source file and its SHA-256, seed, LSF,
        rotation, wavelength conversion and normalization.
    """
    if n < 1:
        raise ValueError("make_cannon_model_grid: n must be >= 1")
    model = read_cannon_model(model_path)
    labels = sample_cannon_labels(model, n, np.random.default_rng(seed))
    flux = cannon_model_spectra(model, labels, resolution=resolution, chunk_size=chunk_size)
    return _model_grid(
        labels,
        flux,
        GRID_RANGES,
        resolution,
        {
            "producer": f"survey_scale.synth.cannon_grid.make_cannon_model_grid (survey_scale {__version__})",
            "model_source": CANNON_MODEL_SOURCE,
            "model_file": Path(model_path).name,
            "model_sha256": model.sha256,
            "model": "cubic Cannon model of hot-dwarf synthetic spectra (Teff 8000-40000 K, logg 2.5-5, "
            "[Fe/H] -2.5..0.5; 3000-18000 A at 0.1 A, air, continuum-normalized, with a log10 continuum model)",
            "seed": int(seed),
            "sampling": "Teff log-uniform, logg, [Fe/H], vsini uniform in the label box, inside the convex hull of "
            "the model's training labels",
        },
    )


def _model_grid(
    labels: np.ndarray,
    flux: np.ndarray,
    ranges: dict[str, tuple[float, float]],
    resolution: float,
    meta: dict[str, Any],
    normalization_note: str = "",
) -> ModelGrid:
    """The :class:`ModelGrid` of spectra made here, with the provenance every such grid records."""
    meta = {
        **meta,
        "read_with": "restricted unpickler admitting only numpy arrays, dtypes and scalars (no code executed)",
        "n_spectra": int(labels.shape[0]),
        "resolution": float(resolution),
        "lsf": f"Gaussian, constant resolving power R = {float(resolution):g} (mean LAMOST LSF)",
        "rotation": f"Gray's profile, linear limb darkening {LIMB_DARKENING:g} (survey_scale.synth.spectrum)",
        "wavelengths": "air -> vacuum by survey_scale.core.wavelength.air_to_vacuum (inverse of Morton 2000)",
        "normalization": f"survey_scale.science.normalize.normalize_continuum (SPEC §3, L = {CONTINUUM_LENGTH:g} A) "
        f"of continuum x normalized flux, ivar = 1{normalization_note}",
        "label_ranges": {k: list(v) for k, v in ranges.items()},
        "noise": "none",
        "rv_km_s": 0.0,
    }
    lo = np.array([ranges[k][0] for k in GRID_LABELS])
    hi = np.array([ranges[k][1] for k in GRID_LABELS])
    return ModelGrid(labels, GRID_LABELS, lo, hi, wavelength_grid(), flux, meta)


# ---------------------------------------------------------------------------------------------------------
# the cool-star component, bridged to the hot dwarfs across the seam (issue 23)
# ---------------------------------------------------------------------------------------------------------

COOL_MODEL_FILE = "cannongrid_3000_18000_coolstars_norm_cubic_model.pkl"
"""thedoppler's cubic Cannon model of cool stars (T_eff 3,500–8,000 K, log g 0–5, [Fe/H] −2.5…+0.5), same format."""
SEAM_TEFF = (7500.0, 9000.0)
"""T_eff (K) of the bridge from the cool-star model to the hot-dwarf model (:func:`joined_model_spectra`): a
training node of each model one node in from the 8,000 K edge they share (the cool model's nodes near it are
7,000, 7,500 and 8,000 K; the hot model's 8,000 and 9,000 K).

Why not at 8,000 K: there both cubic models put the Balmer lines at their strongest (Hβ equivalent width 17–18 Å
at log g 4, against 12.8 Å at the cool model's 7,500 K and 16.1 Å at the hot model's 9,000 K), where physics puts
the Balmer maximum of dwarfs near 9,000–9,500 K (as the package's own synthesizer has it). Joined at 8,000 K,
real A4–A6 stars were fitted ~500 K cooler than a photometric T_eff scale (header g − r against Pecaut & Mamajek,
``benchmarks/eval_real.py``); bridged between the inner nodes, +65 K by brute force over the Cannon models and
−70 K from the pipeline with the network trained on this grid (16 real A stars; F stars unchanged)."""
COOL_GRID_RANGES: dict[str, tuple[float, float]] = {
    "teff": (3500.0, SEAM_TEFF[1]),
    "logg": (0.0, 5.0),
    "vsini": (0.0, 250.0),
    "fe_h": (-2.5, 0.5),
}
"""The cool component's label box: the cool model's training range, up to the seam's hot end; v sin i to
250 km s⁻¹ (F stars rotate up to ~200; cooler stars far less)."""


COOL_FLUX_RANGE = (0.0, 2.0)
"""The cool grid's normalized flux is clipped to this range. Below ~4,500 Å in K and M stars the 50 Å
pseudo-continuum (SPEC §3) nearly vanishes between deep bands, and flux / continuum reaches 10–1,000 there; an
observed spectrum's normalized inverse variance (ivar × continuum²) is as small in those pixels, so they carry
no weight in a fit, but unclipped they would dominate the emulator's training loss (0.02 % of the pixels of
3,500–4,000 K stars exceed 2)."""


def seam_weight(teff: np.ndarray) -> np.ndarray:
    """Weight of the hot-dwarf model at ``teff`` (K): 0 below 7,500 K, 1 above 9,000 K, linear between."""
    lo, hi = SEAM_TEFF
    return np.clip((np.asarray(teff, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _model_labels(labels: np.ndarray, teff_min: float, teff_max: float) -> np.ndarray:
    """Labels with T_eff held inside one model's range (each model is evaluated only where it was trained)."""
    out = np.array(labels, dtype=np.float64, copy=True)
    out[:, 0] = np.clip(out[:, 0], teff_min, teff_max)
    return out


def joined_model_spectra(
    cool: CannonModel,
    hot: CannonModel,
    labels: np.ndarray,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    chunk_size: int = 256,
) -> np.ndarray:
    """§3-normalized spectra of the cool-star and hot-dwarf models joined across :data:`SEAM_TEFF`.

    F = (1 − w) F_cool(min(T_eff, 7,500 K)) + w F_hot(max(T_eff, 9,000 K)) with w = :func:`seam_weight`: the
    pure cool model below 7,500 K, the pure hot model above 9,000 K, and in between a bridge linear in T_eff
    between the two models' spectra at those training nodes (log g, [Fe/H], v sin i as given), continuous in
    T_eff. Neither model is used within 1,000 K of the 8,000 K edge where both are least constrained
    (:data:`SEAM_TEFF` says why).

    Parameters and returns as :func:`cannon_model_spectra` (labels (n, 4) in :data:`GRID_LABELS` order).
    """
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    w = seam_weight(lab[:, 0]).astype(np.float32)
    out = np.zeros((lab.shape[0], wavelength_grid().size), dtype=np.float32)
    for model, rows, weight, lo, hi in (
        (cool, w < 1, 1.0 - w, -np.inf, SEAM_TEFF[0]),
        (hot, w > 0, w, SEAM_TEFF[1], np.inf),
    ):
        if rows.any():
            spectra = cannon_model_spectra(
                model, _model_labels(lab[rows], lo, hi), resolution=resolution, chunk_size=chunk_size
            )
            out[rows] += weight[rows, None] * spectra
    return out


def sample_joined_labels(cool: CannonModel, hot: CannonModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels (n, 4) in :data:`COOL_GRID_RANGES`, inside the training hull of each model that contributes."""

    def in_hull(tgf: np.ndarray) -> np.ndarray:
        w = seam_weight(tgf[:, 0])
        keep = np.ones(tgf.shape[0], dtype=bool)
        keep[w < 1] &= cool.in_hull(_model_labels(tgf[w < 1], -np.inf, SEAM_TEFF[0]))
        keep[w > 0] &= hot.in_hull(_model_labels(tgf[w > 0], SEAM_TEFF[1], np.inf))
        return keep

    return _sample_labels(in_hull, COOL_GRID_RANGES, n, rng)


def make_cool_model_grid(
    cool_path: str | Path,
    hot_path: str | Path,
    n: int,
    seed: int,
    *,
    resolution: float = DEFAULT_RESOLUTION,
    chunk_size: int = 256,
) -> ModelGrid:
    """A model grid of ``n`` spectra of the cool-star component (3,500–9,000 K; issue 23).

    Spectra of :func:`joined_model_spectra` (thedoppler's cool-star model, handing over to the hot-dwarf model
    across :data:`SEAM_TEFF`) at labels of :func:`sample_joined_labels`; otherwise as
    :func:`make_cannon_model_grid` (rotation, the mean LAMOST LSF, vacuum wavelengths, SPEC §3 normalization).

    Parameters
    ----------
    cool_path, hot_path
        :data:`COOL_MODEL_FILE` and :data:`CANNON_MODEL_FILE` (both in thedoppler's wheel, ``doppler/data/``).
    n, seed, resolution, chunk_size
        As :func:`make_cannon_model_grid`.
    """
    if n < 1:
        raise ValueError("make_cool_model_grid: n must be >= 1")
    cool, hot = read_cannon_model(cool_path), read_cannon_model(hot_path)
    labels = sample_joined_labels(cool, hot, n, np.random.default_rng(seed))
    flux = joined_model_spectra(cool, hot, labels, resolution=resolution, chunk_size=chunk_size)
    np.clip(flux, *COOL_FLUX_RANGE, out=flux)
    return _model_grid(
        labels,
        flux,
        COOL_GRID_RANGES,
        resolution,
        {
            "producer": f"survey_scale.synth.cannon_grid.make_cool_model_grid (survey_scale {__version__})",
            "model_source": CANNON_MODEL_SOURCE.replace(
                CANNON_MODEL_FILE, f"{{{COOL_MODEL_FILE}, {CANNON_MODEL_FILE}}}"
            ),
            "model_file": [Path(cool_path).name, Path(hot_path).name],
            "model_sha256": [cool.sha256, hot.sha256],
            "model": "cubic Cannon model of cool-star synthetic spectra (Teff 3500-8000 K, logg 0-5, [Fe/H] "
            "-2.5..0.5), bridged to the hot-dwarf model (Teff 8000-40000 K) linearly in Teff between their nodes at "
            f"{SEAM_TEFF[0]:.0f}-{SEAM_TEFF[1]:.0f} K (survey_scale.synth.cannon_grid.joined_model_spectra)",
            "seam_teff": list(SEAM_TEFF),
            "seed": int(seed),
            "sampling": "Teff log-uniform, logg, [Fe/H], vsini uniform in the label box, inside the convex hull of "
            "the training labels of each model that contributes",
        },
        f"; clipped to [{COOL_FLUX_RANGE[0]:g}, {COOL_FLUX_RANGE[1]:g}]",
    )
