"""PCA reconstruction of normalized spectra (SPEC §4, P1 §3).

Fit
---
Training spectra (good S/N, no emission; chosen by :mod:`survey_scale.stages.pca`) are standardized per
pixel (training mean and standard deviation; masked pixels set to the mean). Their Gram matrix
G = Σ z zᵀ (P × P, P = 3,802) is accumulated block by block over the cube (a tree reduction of
``reduce_rows``: memory does not grow with the number of training spectra), then

- the clean-window covariance G_cc / M is diagonalized (its top K = 100 eigenpairs, see
  :func:`top_eigenpairs`); the eigenvectors ξ are the principal components (P1 Eq. 1–2), the coefficients
  of a spectrum are p = z_clean · ξ;
- B (K × P) solves P B = X̄ᵀ in the least-squares sense for the training set. With P = Z_c ξ the normal
  equations are exact and diagonal: PᵀP = M diag(λ), so B = diag(1/λ) ξᵀ G_c· / M — the least-squares
  solution without forming P, computed from the same Gram matrix;
- the full-range covariance G / M is diagonalized too (top K): non-emission spectra are reconstructed from
  all their pixels, emission spectra from the clean windows only (SPEC §4);
- the reconstruction error of each pixel, σ²_model, is the training residual variance (from G, λ and B)
  minus the training spectra's mean noise variance.

The model is a versioned artifact (``.npz`` without pickles, JSON metadata): its SHA-256 enters the
provenance of every chunk projected with it.

Iterated fit
------------
:func:`iterated_pca` refits without the candidates each pass flags (emission, erroneous, owning a component:
:func:`component_share`), with callbacks for the survey-wide passes (fit on rows; the statistics of the
candidates under a model); :func:`training_candidates` chooses the candidates.

Stage
-----
``pca`` (:mod:`survey_scale.stages.pca`) maps over the cube: coefficients ``pca_coeff`` (clean windows),
the denoised ``pca_flux``, and the emission and erroneous-spectrum diagnostics and flags of
:mod:`survey_scale.science.emission`.
"""

from __future__ import annotations

import json
import logging
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale._version import __version__
from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import atomic_write, file_sha256, save_npz
from survey_scale.science.emission import derive_thresholds, emission_flags, excess_window, residual_statistics

log = logging.getLogger(__name__)

PCA_MODEL_VERSION = "1"
PCA_STAGE_VERSION = "1"
FALLBACK_PCA_FILE = Path(__file__).resolve().parent / "data" / "pca_fallback.npz"
"""The basis shipped for cubes with too few training spectra (``benchmarks/make_fallback_pca.py``: the PCA
of noised spectra of the physics-based model grid of :mod:`survey_scale.synth.cannon_grid`, K = 40, float32,
with emission and erroneous-spectrum thresholds derived from the same spectra; 1.7 MB)."""


@dataclass
class PCAModel:
    """A fitted PCA (see the module docstring). Arrays are float64; P pixels, K components."""

    mean: np.ndarray  # (P,) training mean of the normalized flux
    std: np.ndarray  # (P,) training standard deviation (1 where undefined)
    clean: np.ndarray  # (P,) bool, clean-window pixels
    basis_clean: np.ndarray  # (P_clean, K) eigenvectors of the clean-window covariance
    eig_clean: np.ndarray  # (K,)
    reconstruction: np.ndarray  # (K, P) B: full spectra from clean-window coefficients
    basis_full: np.ndarray  # (P, K) eigenvectors of the full-range covariance
    eig_full: np.ndarray  # (K,)
    model_var_clean: np.ndarray  # (P,) reconstruction error variance, clean-coefficient reconstruction
    model_var_full: np.ndarray  # (P,) same for the full-range reconstruction
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        return self.eig_clean.size

    def as_float32(self) -> PCAModel:
        """A copy with its float arrays in float32 (half the file; the shipped fallback basis)."""
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        return PCAModel(
            **{k: a.astype(np.float32) if a.dtype.kind == "f" else a for k, a in arrays.items()}, meta=self.meta
        )

    def save(self, path: str | Path) -> Path:
        """Write the model (``.npz``, no pickles; ``meta`` as JSON)."""
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        meta = np.array(json.dumps(self.meta, sort_keys=True))
        return atomic_write(path, lambda tmp: save_npz(tmp, {"meta": meta, **arrays}))

    @classmethod
    def load(cls, path: str | Path) -> PCAModel:
        """Read a model written by :meth:`save`.

        Raises
        ------
        PCAModelError
            If the file is not a readable PCA model (corrupt, truncated, missing arrays).
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in (*_ARRAYS, "meta") if k not in z.files]
                if missing:
                    raise PCAModelError(f"{path}: not a survey_scale PCA model (missing {missing})")
                return cls(**{k: z[k] for k in _ARRAYS}, meta=json.loads(str(z["meta"])))
        except (EOFError, ValueError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            if isinstance(exc, PCAModelError):
                raise
            raise PCAModelError(
                f"{path}: not a readable PCA model file ({type(exc).__name__}: {exc}); delete it to refit it"
            ) from exc


class PCAModelError(SurveyScaleError, ValueError):
    """A file is not a readable PCA model (names the file and the cause)."""


_ARRAYS = (
    "mean",
    "std",
    "clean",
    "basis_clean",
    "eig_clean",
    "reconstruction",
    "basis_full",
    "eig_full",
    "model_var_clean",
    "model_var_full",
)


# --- fit: block functions of a row reduction, then the decomposition --------------------------------


def _usable(flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    return (ivar > 0) & np.isfinite(flux) & np.isfinite(ivar)


def moments_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per-pixel counts, sums, sums of squares and noise variance of a block of training spectra."""
    flux = data["norm_flux"].astype(np.float64)
    ivar = data["norm_ivar"].astype(np.float64)
    good = _usable(flux, ivar)
    f = np.where(good, flux, 0.0)
    return {
        "n": good.sum(axis=0).astype(np.float64),
        "sum": f.sum(axis=0),
        "sumsq": (f * f).sum(axis=0),
        "noise": np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0).sum(axis=0),
        "rows": np.array(float(flux.shape[0])),
    }


def gram_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Gram matrix Σ z zᵀ of a block of standardized training spectra (masked pixels at the mean)."""
    z = standardize(data["norm_flux"], data["norm_ivar"], params["mean"], params["std"])
    return {"gram": (z.T @ z).astype(np.float64), "rows": np.array(float(z.shape[0]))}


def add_results(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Combine two block results by summing each entry."""
    return {k: a[k] + b[k] for k in a}


def standardize(flux: np.ndarray, ivar: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(flux − mean) / std as float32, 0 (the mean) on unusable pixels."""
    flux = np.asarray(flux, dtype=np.float32)
    good = _usable(flux, np.asarray(ivar))
    return np.where(good, (flux - mean.astype(np.float32)) / std.astype(np.float32), 0.0).astype(np.float32)


def moments_to_mean_std(moments: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and mean noise variance per pixel from :func:`moments_block` sums."""
    n = moments["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, moments["sum"] / n, 1.0)
        var = np.where(n > 1, moments["sumsq"] / n - mean**2, 0.0)
        noise = np.where(n > 0, moments["noise"] / n, 0.0)
    std = np.sqrt(np.clip(var, 0.0, None))
    std = np.where(std > 1e-6, std, 1.0)  # a constant or never-observed pixel carries no information
    return mean, std, noise


def top_eigenpairs(matrix: np.ndarray, k: int, *, n_iter: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and eigenvectors of a symmetric PSD matrix.

    Randomized block subspace iteration with Rayleigh–Ritz (Halko, Martinsson & Tropp 2011, Alg. 4.4 and
    5.3) with k oversampling vectors and ``n_iter`` power steps: all BLAS-3 products, several times faster
    than a full LAPACK eigendecomposition of a 3,802² matrix, and on survey spectra the eigenvalues agree
    with it to ~1e-8 (relative) and the leading eigenvectors to machine precision. Seeded: deterministic.
    """
    n = matrix.shape[0]
    width = min(n, 2 * k)
    q = np.random.default_rng(seed).standard_normal((n, width))
    for _ in range(n_iter):
        q, _ = np.linalg.qr(matrix @ q)
    values, vectors = np.linalg.eigh(q.T @ matrix @ q)
    order = np.argsort(values)[::-1][:k]
    return values[order], q @ vectors[:, order]


def pca_from_gram(
    gram: np.ndarray,
    n_rows: int,
    mean: np.ndarray,
    std: np.ndarray,
    noise_var: np.ndarray,
    clean: np.ndarray,
    n_components: int,
    meta: Mapping[str, Any] | None = None,
) -> PCAModel:
    """Decompose the training Gram matrix into the clean-window and full-range PCA (module docstring)."""
    cov = gram / n_rows
    k = n_components
    idx = np.flatnonzero(clean)
    p = cov.shape[0]

    def top(matrix: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        values, vectors = top_eigenpairs(matrix, k, seed=seed)
        # a deterministic sign: the largest-|component| of each eigenvector is positive
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
        return np.clip(values, 1e-12, None), vectors * signs

    eig_c, basis_c = top(cov[np.ix_(idx, idx)], seed=1)
    recon = (basis_c.T @ cov[idx, :]) / eig_c[:, None]  # B = diag(1/λ) ξᵀ G_c· / M
    eig_f, basis_f = top(cov, seed=2)
    diag = np.diag(cov)
    resid_c = diag - np.einsum("k,kp->p", eig_c, recon**2)
    resid_f = diag - np.einsum("k,pk->p", eig_f, basis_f**2)
    to_flux = std**2
    model_var_c = np.clip(resid_c * to_flux - noise_var, 0.0, None)
    model_var_f = np.clip(resid_f * to_flux - noise_var, 0.0, None)
    info = {
        "version": PCA_MODEL_VERSION,
        "code_version": __version__,
        "n_train": int(n_rows),
        "n_components": k,
        "n_pixels": p,
        "n_clean": int(idx.size),
        "explained_clean": float(eig_c.sum() / np.trace(cov[np.ix_(idx, idx)])),
        "explained_full": float(eig_f.sum() / np.trace(cov)),
        **dict(meta or {}),
    }
    return PCAModel(mean, std, clean, basis_c, eig_c, recon, basis_f, eig_f, model_var_c, model_var_f, info)


def fit_pca_arrays(
    norm_flux: np.ndarray, norm_ivar: np.ndarray, clean: np.ndarray, n_components: int, meta: Mapping[str, Any]
) -> PCAModel:
    """The PCA of in-memory spectra (n, P): the cube's two row passes (moments, Gram) on one block."""
    data = {"norm_flux": np.asarray(norm_flux), "norm_ivar": np.asarray(norm_ivar)}
    mean, std, noise = moments_to_mean_std(moments_block(data, {}))
    gram = gram_block(data, {"mean": mean, "std": std})
    return pca_from_gram(gram["gram"], int(gram["rows"]), mean, std, noise, clean, n_components, meta)


def resize_components(model: PCAModel, n_components: int) -> PCAModel:
    """``model`` with exactly ``n_components`` components, so that ``pca_coeff`` has the configured K columns.

    More than the model has: zero-variance components are appended (zero eigenvector, eigenvalue 1e-12);
    their Wiener-filtered coefficient, variance, reconstruction and share are exactly 0 and every other
    output is unchanged. Fewer: the leading components are kept and the variance the dropped ones explained
    in the training set, Σ_k λ_k B_k² std² (clean) and Σ_k λ_k ξ_k² std² (full), moves into the model
    variances.
    """
    k = model.n_components
    if n_components == k:
        return model
    f = model.basis_clean.dtype
    meta = {
        **model.meta,
        "n_components": n_components,
        "n_components_fitted": min(k, model.meta.get("n_components_fitted", k)),
    }
    if n_components < k:
        keep, drop = slice(0, n_components), slice(n_components, k)
        to_flux = model.std.astype(np.float64) ** 2
        extra_c = np.einsum("k,kp->p", model.eig_clean[drop], model.reconstruction[drop].astype(np.float64) ** 2)
        extra_f = np.einsum("k,pk->p", model.eig_full[drop], model.basis_full[:, drop].astype(np.float64) ** 2)
        return PCAModel(
            model.mean,
            model.std,
            model.clean,
            model.basis_clean[:, keep],
            model.eig_clean[keep],
            model.reconstruction[keep],
            model.basis_full[:, keep],
            model.eig_full[keep],
            (model.model_var_clean + extra_c * to_flux).astype(model.model_var_clean.dtype),
            (model.model_var_full + extra_f * to_flux).astype(model.model_var_full.dtype),
            meta,
        )
    extra = n_components - k

    def cols(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros((a.shape[0], extra), f)], axis=1)

    eig = np.full(extra, 1e-12, dtype=model.eig_clean.dtype)
    return PCAModel(
        model.mean,
        model.std,
        model.clean,
        cols(model.basis_clean),
        np.concatenate([model.eig_clean, eig]),
        np.concatenate([model.reconstruction, np.zeros((extra, model.reconstruction.shape[1]), f)]),
        cols(model.basis_full),
        np.concatenate([model.eig_full, eig]),
        model.model_var_clean,
        model.model_var_full,
        meta,
    )


def fallback_pca(n_components: int, reason: str) -> PCAModel:
    """The shipped basis (:data:`FALLBACK_PCA_FILE`) with ``n_components`` components (:func:`resize_components`),
    its ``meta["fallback"]`` saying ``reason`` and the file's SHA-256."""
    model = resize_components(PCAModel.load(FALLBACK_PCA_FILE), n_components)
    model.meta["fallback"] = (
        f"{reason}; shipped basis {FALLBACK_PCA_FILE.name} (sha256 {file_sha256(FALLBACK_PCA_FILE)})"
    )
    return model


# --- projection (pure, on a chunk) ------------------------------------------------------------------------


def project(model: PCAModel, norm_flux: np.ndarray, norm_ivar: np.ndarray) -> dict[str, np.ndarray]:
    """Coefficients and reconstructions of a batch of normalized spectra.

    The coefficients are Wiener-filtered projections: with z the standardized spectrum (masked pixels at
    the mean), σ²_k = Σ_i ξ_ik² var(z_i) the noise of the plain projection ξ_kᵀz (P1) and λ_k the
    component's variance over the training set, p_k = λ_k / (λ_k + σ²_k) · ξ_kᵀz — the posterior mean under
    the PCA's own Gaussian prior. At high S/N it is P1's projection; at low S/N it keeps noise out of the
    reconstruction instead of amplifying it, and ``coeff_var`` = λ_k σ²_k / (λ_k + σ²_k) is its posterior
    variance (propagated into the Hα excess error).

    Returns
    -------
    dict
        ``coeff`` (n, K) and ``coeff_var`` (n, K) clean-window coefficients and their variance;
        ``recon_clean`` (n, P) the full spectrum from them (X″ᵀ = P′B); ``recon_full`` (n, P) the
        reconstruction from all pixels (full-range components, same filter); all float32.
    """
    z = standardize(norm_flux, norm_ivar, model.mean, model.std)
    good = _usable(np.asarray(norm_flux), np.asarray(norm_ivar))
    with np.errstate(divide="ignore"):
        z_var = np.where(good, 1.0 / (np.where(good, norm_ivar, 1.0) * model.std**2), 0.0).astype(np.float32)

    def wiener(zz: np.ndarray, vv: np.ndarray, basis: np.ndarray, eig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        basis = basis.astype(np.float32)
        raw, noise = zz @ basis, vv @ (basis * basis)
        prior = eig.astype(np.float32)
        return raw * (prior / (prior + noise)), prior * noise / (prior + noise)

    coeff, coeff_var = wiener(z[:, model.clean], z_var[:, model.clean], model.basis_clean, model.eig_clean)
    full, _ = wiener(z, z_var, model.basis_full, model.eig_full)
    scale, mean = model.std.astype(np.float32), model.mean.astype(np.float32)
    return {
        "coeff": coeff,
        "coeff_var": coeff_var,
        "recon_clean": mean + scale * (coeff @ model.reconstruction.astype(np.float32)),
        "recon_full": mean + scale * (full @ model.basis_full.T.astype(np.float32)),
    }


def excess_loadings(model: PCAModel) -> np.ndarray:
    """(K,) a_k = d(mean reconstruction over the Hα excess window) / d(coefficient k) = mean_W(std · B_k)."""
    window = excess_window()
    return (model.reconstruction[:, window] * model.std[window]).mean(axis=1)


def diagnostics(model: PCAModel, norm_flux: np.ndarray, norm_ivar: np.ndarray) -> tuple[dict, dict]:
    """Projection (:func:`project`) and residual statistics (:mod:`survey_scale.science.emission`) of a batch."""
    rec = project(model, norm_flux, norm_ivar)
    stats = residual_statistics(
        norm_flux,
        norm_ivar,
        rec["recon_clean"],
        model.model_var_clean,
        model.clean,
        model.n_components,
        rec["coeff_var"] @ excess_loadings(model).astype(np.float32) ** 2,
    )
    return rec, stats


def component_share(model: PCAModel, coeff: np.ndarray) -> np.ndarray:
    """(n,) the largest share of one component's training variance that each spectrum carries.

    max_k p_k² / (N λ_k), with p the clean-window coefficients, λ_k the component's variance over the N
    training spectra. Least squares lets one outlier among the training spectra (a flux jump, a ripple, a
    wrong-wavelength segment) own a component of its own, which then reconstructs that defect in every
    spectrum that has it, hiding it from ``pca_chi2``; on the mock such spectra carry 10–70 % of a
    component's variance, a good spectrum at most a few per cent.
    """
    n_train = float(model.meta.get("n_train", 1))
    return (np.asarray(coeff, dtype=np.float64) ** 2 / (n_train * model.eig_clean)).max(axis=1).astype(np.float32)


def diagnostics_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Residual statistics and :func:`component_share` of a block of spectra (for the passes of the fit)."""
    rec, stats = diagnostics(params["model"], data["norm_flux"], data["norm_ivar"])
    return {**stats, "component_share": component_share(params["model"], rec["coeff"])}


# --- the iterated fit (SPEC §4: refits without the flagged candidates) -----------------------------------------


def training_candidates(
    snr: np.ndarray,
    clean_fraction: np.ndarray,
    min_snr: float,
    min_clean_fraction: float,
    max_train: int | None,
    seed: int,
) -> np.ndarray:
    """Rows eligible for training (sorted): S/N above ``min_snr`` and at least ``min_clean_fraction`` usable
    clean-window pixels; more than ``max_train``: a subset drawn with ``seed``."""
    rows = np.flatnonzero((np.asarray(snr, np.float64) > min_snr) & (np.asarray(clean_fraction) >= min_clean_fraction))
    if max_train is not None and rows.size > max_train:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, max_train, replace=False))
    return rows


@dataclass(frozen=True)
class RefitSettings:
    """How :func:`iterated_pca` flags the candidates after each pass (``pca.n_refits``,
    ``pca.max_component_share`` and the ``emission.*`` settings; defaults as theirs)."""

    n_refits: int = 2
    """Refits without the candidates the previous pass flagged (P1: 1)."""
    max_component_share: float = 0.1
    """Candidates carrying more of one component's training variance are flagged (:func:`component_share`)."""
    train_n_sigma: float = 2.5
    """Emission: candidates above this n-sigma (:func:`survey_scale.science.emission.emission_flags`)."""
    threshold: float | None = None
    """A fixed Hα excess threshold (None: derived per spectrum)."""
    bad_chi2_threshold: float | None = None
    """A fixed ``pca_chi2`` threshold of an erroneous spectrum (None: derived)."""
    bad_local_z_threshold: float | None = None
    """A fixed ``pca_local_z`` threshold (None: derived)."""
    bad_n_sigma: float = 20.0
    """Derived ``pca_chi2`` threshold: median + bad_n_sigma × MAD of log10 χ²."""
    bad_local_n_sigma: float = 4.0
    """Derived ``pca_local_z`` threshold: median + bad_local_n_sigma × MAD of log10 z."""


def iterated_pca(
    rows: np.ndarray,
    fit: Callable[[int, np.ndarray], PCAModel],
    statistics: Callable[[PCAModel], Mapping[str, np.ndarray]],
    settings: RefitSettings,
) -> PCAModel:
    """The iterated PCA of SPEC §4 on the candidates ``rows`` (sorted row numbers).

    Pass 1 trains on every candidate; each refit trains on the candidates the previous pass did not flag:
    emission beyond ``train_n_sigma``, erroneous (``pca_chi2``, ``pca_local_z`` beyond the thresholds derived
    from that pass, or the fixed ones), or carrying more than ``max_component_share`` of one component's
    variance (a defect the PCA learnt to reconstruct, see :func:`component_share`). It stops after
    ``n_refits`` refits, or earlier when the training set no longer changes.

    ``fit(n, train_rows)`` gives pass ``n``'s model trained on ``train_rows``; ``statistics(model)`` the
    residual statistics of every candidate under it, in the order of ``rows``, with ``component_share``
    (:func:`diagnostics_block`). The final model is returned with, in its ``meta``, the flag thresholds
    derived from the candidates its pass did not flag (``thresholds``), their rule (``threshold_rule``) and
    ``final_pass``.
    """
    train = rows
    for n in range(1, settings.n_refits + 2):
        model = fit(n, train)
        stats = dict(statistics(model))
        em, bad = emission_flags(
            stats,
            derive_thresholds(stats, settings.bad_n_sigma, settings.bad_local_n_sigma),
            settings.train_n_sigma,
            settings.threshold,
            settings.bad_chi2_threshold,
            settings.bad_local_z_threshold,
        )
        outlier = stats.pop("component_share") > settings.max_component_share
        unflagged = rows[(em == 0) & (bad == 0) & ~outlier]
        log.info(
            "PCA pass %d: %d candidates flagged (emission %d, erroneous %d, owning a component %d)",
            n,
            rows.size - unflagged.size,
            int(em.sum()),
            int(bad.sum()),
            int(outlier.sum()),
        )
        if n == settings.n_refits + 1 or np.array_equal(unflagged, train):
            break
        train = unflagged
    keep = np.isin(rows, unflagged)
    model.meta["thresholds"] = derive_thresholds(
        {k: v[keep] for k, v in stats.items()}, settings.bad_n_sigma, settings.bad_local_n_sigma
    )
    model.meta["threshold_rule"] = (
        "em_flag: halpha_excess > excess_offset + sqrt((n_sigma x halpha_excess_err)^2 + model_n_sigma^2 x "
        "max(1, pca_chi2) x excess_model_sigma^2); "
        f"offset, model sigma and the limits below measured on the {int(keep.sum())} candidates the final pass "
        f"did not flag; erroneous (PCA evidence): pca_chi2 > 10**(median + {settings.bad_n_sigma} x 1.4826 MAD of "
        f"log10 chi2) or pca_local_z > 10**(median + {settings.bad_local_n_sigma} x 1.4826 MAD of log10 z)"
    )
    model.meta["final_pass"] = n
    return model
