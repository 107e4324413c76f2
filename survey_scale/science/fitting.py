"""Batched full-spectrum fit of emulator labels (SPEC §5.3, §12; P2 §4.2–§4.5).

:func:`fit_spectra` fits all labels of thousands of spectra at once by Levenberg–Marquardt in PyTorch:

- χ² = Σ ivar (f − model)² with masked pixels (``mask`` True, ``ivar`` = 0, non-finite values) excluded.
- The emulator runs in float32 (forward and Jacobian fused in one blockwise pass, :class:`_TorchNet`); the
  normal equations JᵀWJ, JᵀWr and χ² are accumulated in float64 and every solve is float64 (batched
  Cholesky of the L×L systems).
- Each spectrum has its own damping λ (Nielsen's update rule, Marquardt's diagonal scaling) and its own
  convergence test. Spectra in flight are kept in an active set of at most ``batch_size`` rows: a spectrum
  that converges leaves it and the next one enters, so a converged spectrum costs no more work and the
  matrix products stay large.
- Labels are bounded in scaled units (default the emulator's range, [−0.5, 0.5]); trial points are
  projected onto the box and labels held at a bound by the gradient are removed from the step (active
  set), so the solver does not push against a wall.
- A step is tried at the damped Gauss–Newton point. With a shared network χ² is evaluated there first and
  the Jacobian only if the step is accepted; after a short accepted step (less than 1 σ under JᵀWJ) JᵀWJ is
  kept and only χ² and the gradient are updated, ~1/8 of the cost. A rejected step taken with a kept JᵀWJ,
  and the end of every fit, get the true one, so the convergence test and the covariance never use a
  kept matrix. (The same iterations and 24–36 % less CPU for the full fit of 1,024 mock spectra.)
- Convergence: the Gauss–Newton decrement gᵀA⁻¹g (the χ² reduction a full undamped step would still give,
  over the free labels) falls below ``tol`` · max(1, χ²_red). With ``tol`` = 1e-3 the labels are within
  ~0.03 σ (Mahalanobis) of the optimum.
- Covariance: (JᵀWJ)⁻¹ at the optimum, in physical units (SPEC §5.3).
- Several starts per spectrum (``n_starts`` or an ``init`` of shape (k, n, L)); the lowest χ² wins.

Everything runs on ``device`` (``None``: CUDA if available, else CPU). The function never changes torch's
thread count; the caller decides (``torch.set_num_threads``; one thread per process when other work shares
the cores: OpenMP threads waiting on a descheduled sibling made a 2-thread fit 25× slower in a test).

Performance (``benchmarks/bench_fit.py``, 2000 spectra at S/N 50 from the grid centre, 2943 unmasked
pixels, 2-core AVX-512 VM shared with other jobs, so ±30 %): the P2 per-pixel (100, 100) network runs at
~58 % and the shared (300, 300) network at ~60 % of the fp32 matmul peak measured in the same run; per
spectrum-evaluation (model + Jacobian + normal equations) they cost 132 and 24 MFLOP. With an emulator
trained on the mock's model grid (11 labels, shared (300, 300, 300)) the fit runs 293 spectra/s on 1 thread
and 537 on 2, against 33.5 spectra/s for the per-spectrum ``curve_fit`` loop at its best (1 thread).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from survey_scale.science.emulator import Emulator, EmulatorKernel, resolve_device

STATUS_CONVERGED = 0
STATUS_MAX_ITER = 1
STATUS_STALLED = 2
STATUS_NO_DATA = 3
STATUS_NAMES = {
    STATUS_CONVERGED: "converged",
    STATUS_MAX_ITER: "max_iter reached",
    STATUS_STALLED: "stalled (damping overflow)",
    STATUS_NO_DATA: "no usable pixels",
}

_LAM_MAX = 1e12
_LAM_MIN = 1e-12
_NOISE = 3e-7
"""χ² comparison noise per unit of S (see :func:`_evaluate`): ~3× the measured scatter of the difference of
two float32 χ² evaluations (1e-7 S)."""


@dataclass
class FitResult:
    """Result of :func:`fit_spectra` for n spectra and L labels (numpy arrays).

    Attributes
    ----------
    labels
        (n, L) float64 best-fit labels, physical units (NaN where no usable pixels).
    cov
        (n, L, L) float64 covariance (JᵀWJ)⁻¹ at the optimum, physical units. A label without any
        information (zero gradient on every unmasked pixel) gets an infinite variance.
    errors
        (n, L) float64 formal errors, √diag(cov).
    chi2
        (n,) float64 χ² = Σ ivar (flux − model)² over the unmasked pixels.
    chi2_red
        (n,) float64 χ² / dof, dof = n_good − L.
    n_iter
        (n,) int32 Levenberg–Marquardt iterations (trial steps) of the winning start.
    converged
        (n,) bool, the convergence test passed.
    model_flux
        (n, P) float32 emulator flux at the best-fit labels (``None`` if not requested).
    status
        (n,) int8: 0 converged, 1 max_iter reached, 2 stalled, 3 no usable pixels (:data:`STATUS_NAMES`).
    n_good
        (n,) int32 unmasked pixels with ivar > 0.
    dof
        (n,) int32 degrees of freedom.
    labels_scaled
        (n, L) float64 labels in the emulator's scaled units.
    at_bound
        (n, L) bool, label at a bound of the box.
    start
        (n,) int16 index of the winning start.
    chi2_starts
        (n, k) float64 final χ² of every start.
    label_names
        Names of the L labels.
    info
        Run figures: ``rows_evaluated`` (model evaluations of one spectrum), ``jacobian_rows`` (evaluations
        with a Jacobian: every start and accepted step of a per-pixel network; with a shared network every
        start, long accepted step, retry of a rejected step taken with a kept JᵀWJ, and end of a fit),
        ``gradient_rows`` (χ² and the gradient alone, after a shared network's short accepted step),
        ``n_problems`` (spectra × starts), ``n_pixels_used``, ``seconds`` (whole call), ``seconds_lm`` (the
        Levenberg–Marquardt loop), ``flops`` (matmul FLOPs of the loop, see :func:`flops_per_evaluation`),
        ``steps_accepted`` (of the ``sum(n_iter)`` trial steps), ``device``, ``batch_size``, ``pixel_block``.
    """

    labels: np.ndarray
    cov: np.ndarray
    errors: np.ndarray
    chi2: np.ndarray
    chi2_red: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    model_flux: np.ndarray | None
    status: np.ndarray
    n_good: np.ndarray
    dof: np.ndarray
    labels_scaled: np.ndarray
    at_bound: np.ndarray
    start: np.ndarray
    chi2_starts: np.ndarray
    label_names: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


def set_threads(n: int) -> None:
    """Let torch use ``n`` threads in this process (the fit's per-worker share of the cores)."""
    torch.set_num_threads(n)


def flops_per_evaluation(em: Emulator, n_pixels: int | None = None) -> dict[str, float]:
    """Matmul FLOPs of one model + Jacobian + normal-equation evaluation of one spectrum.

    Counts 2 FLOPs per multiply–add of the matrix products only (activations and other element-wise
    work are not counted): forward layers, the Jacobian (per-pixel reverse mode, or the shared network's
    forward-mode tangent and J = W_out T), and JᵀWJ, JᵀWr; ``gradient`` is JᵀWr alone, as
    :func:`fit_spectra` computes it after a short step with a shared network.

    Parameters
    ----------
    em
        The emulator.
    n_pixels
        Pixels actually evaluated (default: all).
    """
    arch, sizes = em.architecture, [em.n_labels, *em.hidden]
    p = em.n_pixels if n_pixels is None else n_pixels
    n_lab = sizes[0]
    hidden_pairs = list(itertools.pairwise(sizes))
    if arch == "perpixel":
        forward = p * (sum(2 * a * b for a, b in hidden_pairs) + 2 * sizes[-1])
        # backward through the hidden-to-hidden layers, then the (H1 × L) first-layer product
        jac = p * (sum(2 * a * b for a, b in hidden_pairs[1:]) + 2 * sizes[1] * n_lab)
    else:
        forward = sum(2 * a * b for a, b in hidden_pairs) + 2 * sizes[-1] * p
        jac = sum(2 * a * b * n_lab for a, b in hidden_pairs[1:]) + 2 * sizes[-1] * n_lab * p
    normal = p * (2 * n_lab * n_lab + 2 * n_lab + 3)
    # the gradient alone (shared network): W_outᵀ W r over the pixels, then a forward and a reverse pass through
    # the hidden layers (the first layer's reverse product with the L labels)
    hidden = sum(2 * a * b for a, b in hidden_pairs)
    gradient = 2 * sizes[-1] * p + 2 * hidden if arch == "shared" else jac + p * (2 * n_lab + 3)
    return {
        "forward": float(forward),
        "jacobian": float(jac),
        "normal": float(normal),
        "gradient": float(gradient),
        "total": float(forward + jac + normal),
    }


# --------------------------------------------------------------------------------------------------------
# evaluation of χ², JᵀWJ, JᵀWr
# --------------------------------------------------------------------------------------------------------


_KEEP_NORMAL_MATRIX = True
"""After an accepted step shorter than :data:`_SHORT_STEP`, keep JᵀWJ and update only χ² and the gradient
(:func:`_evaluate_gradient`, ~1/8 of an evaluation with the Jacobian; shared networks). Off only in tests
comparing the two."""
_SHORT_STEP = 1.0
"""Step length stepᵀ JᵀWJ step (χ² units: 1 = a move of 1 σ) below which JᵀWJ is kept. Longer steps, a
rejected step taken with a kept JᵀWJ and the end of a fit get the true one, so the convergence test and the
covariance never use a kept matrix. On 1,024 mock spectra (full fit, synthesizer emulator): the same
iterations, 24–36 % less CPU in two measurements; longer thresholds change which minimum more fits reach."""
_LAZY_JACOBIAN = True
"""Evaluate a trial step's χ² first and its Jacobian only if the step is accepted (shared networks, whose
Jacobian costs ~L model evaluations; a per-pixel network's costs about one). Off only in tests comparing
the two."""


@torch.no_grad()
def _evaluate_chi2(
    kern: EmulatorKernel, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """χ² (m,) float64 and the model flux (m, P) float32 at x, without the Jacobian: a trial step's verdict
    needs only χ², and the Jacobian (~90 % of an evaluation's FLOPs) is then computed for the accepted steps
    alone, from this flux (:func:`_evaluate` with ``flux``)."""
    m = x.shape[0]
    xf = x.to(torch.float32)
    chi2 = torch.zeros(m, dtype=torch.float64, device=x.device)
    flux = torch.empty((m, kern.n_pixels), dtype=torch.float32, device=x.device)
    state = kern.hidden_state(xf, jac=False) if kern.architecture == "shared" else None
    for p0 in range(0, kern.n_pixels, block):
        p1 = min(p0 + block, kern.n_pixels)
        f = kern.block(xf, p0, p1, jac=False, state=state)[0]
        r = y[:, p0:p1] - f
        chi2 += (r * w[:, p0:p1] * r).sum(1, dtype=torch.float64)
        flux[:, p0:p1] = f
    return chi2, flux


@torch.no_grad()
def _evaluate(
    kern: EmulatorKernel,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    block: int,
    flux: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """χ² (m,), A = JᵀWJ (m, L, L), g = JᵀW(y − f) (m, L) and the χ² noise scale S (m,), float64.

    ``y``, ``w``: (m, P) float32 observed flux and weights on the kernel's pixels. Per pixel block the
    sums run over ``block`` pixels in float32 and are accumulated over blocks in float64.

    S = √Σ (w r f)² is the sensitivity of χ² to relative errors of the model flux: the float32 model
    makes χ² uncertain by ~1e-7 S (measured on trained networks), which limits how small a χ²
    difference between two evaluations can be trusted.

    ``flux``: the model flux (m, P) at x where already known (shared network only, from
    :func:`_evaluate_chi2`): only the label tangents are propagated to the pixels.
    """
    m, n_lab = x.shape
    dev = x.device
    xf = x.to(torch.float32)
    chi2 = torch.zeros(m, dtype=torch.float64, device=dev)
    a_mat = torch.zeros((m, n_lab, n_lab), dtype=torch.float64, device=dev)
    g = torch.zeros((m, n_lab), dtype=torch.float64, device=dev)
    s2 = torch.zeros(m, dtype=torch.float64, device=dev)
    state = kern.hidden_state(xf, jac=True) if kern.architecture == "shared" else None
    n_pix = kern.n_pixels
    tangent = state[m:] if flux is not None else None
    for p0 in range(0, n_pix, block):
        p1 = min(p0 + block, n_pix)
        if tangent is None:
            f, jlp = kern.block(xf, p0, p1, jac=True, state=state)  # (m, Pb), (m, L, Pb)
        else:
            f = flux[:, p0:p1]
            jlp = torch.mm(tangent, kern.ow[p0:p1].T).view(m, n_lab, p1 - p0)
        wb = w[:, p0:p1]
        r = y[:, p0:p1] - f
        wr = r * wb
        chi2 += (wr * r).sum(1, dtype=torch.float64)
        s2 += (wr * f).square_().sum(1, dtype=torch.float64)
        # as a row vector times Jᵀ: the same products, 4× faster than J times a column (batched GEMV) on CPU
        g += torch.bmm(wr.unsqueeze(1), jlp.transpose(1, 2)).squeeze(1)
        a_mat += torch.bmm(jlp * wb.unsqueeze(1), jlp.transpose(1, 2))
    return chi2, a_mat, g, s2.sqrt_()


@torch.no_grad()
def _evaluate_gradient(
    kern: EmulatorKernel, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, block: int, flux: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """χ² (m,), g = JᵀW(y − f) (m, L) and S (m,) at x, float64, for a shared network whose flux at x is known,
    without the Jacobian: u = W_outᵀ W (y − f) is one GEMM over the pixels (the Jacobian is L of them) and g is
    u pulled back through the hidden layers (:meth:`EmulatorKernel.label_pullback`)."""
    m = x.shape[0]
    dev = x.device
    chi2 = torch.zeros(m, dtype=torch.float64, device=dev)
    s2 = torch.zeros(m, dtype=torch.float64, device=dev)
    u = torch.zeros((m, kern.ow.shape[1]), dtype=torch.float64, device=dev)
    for p0 in range(0, kern.n_pixels, block):
        p1 = min(p0 + block, kern.n_pixels)
        f = flux[:, p0:p1]
        r = y[:, p0:p1] - f
        wr = r * w[:, p0:p1]
        chi2 += (wr * r).sum(1, dtype=torch.float64)
        s2 += (wr * f).square_().sum(1, dtype=torch.float64)
        u += torch.mm(wr, kern.ow[p0:p1])
    return chi2, kern.label_pullback(x, u), s2.sqrt_()


@torch.no_grad()
def _model_flux(kern: EmulatorKernel, x: torch.Tensor, batch: int) -> torch.Tensor:
    out = [kern.forward(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return torch.cat(out) if out else torch.empty((0, kern.n_pixels), dtype=torch.float32, device=x.device)


# --------------------------------------------------------------------------------------------------------
# small batched linear algebra (float64)
# --------------------------------------------------------------------------------------------------------


def _reduced_system(a_mat: torch.Tensor, g: torch.Tensor, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the rows/columns of fixed labels (unit diagonal there) so they do not move."""
    ff = free.to(a_mat.dtype)
    a_red = a_mat * ff.unsqueeze(2) * ff.unsqueeze(1)
    eye = torch.diag_embed(1.0 - ff)
    return a_red + eye, g * ff


def _solve_scaled(a_mat: torch.Tensor, g: torch.Tensor, lam: torch.Tensor, ridge: float = 1e-12) -> torch.Tensor:
    """Solve (A + λ D) δ = g with D = diag(A) (Marquardt), in the unit-diagonal scaling, batched.

    A label with zero curvature gets δ = 0 (its g is 0 too). Cholesky first; the rare failures (numerically
    indefinite A at λ ≈ 0) are solved by an eigen-decomposition with negative/zero modes dropped.
    """
    diag = torch.diagonal(a_mat, dim1=1, dim2=2)
    dmax = diag.amax(1, keepdim=True).clamp_min(1e-300)
    d = torch.maximum(diag, 1e-14 * dmax)
    s = d.rsqrt()
    a_s = a_mat * s.unsqueeze(2) * s.unsqueeze(1)
    n_lab = a_mat.shape[-1]
    eye = torch.eye(n_lab, dtype=a_mat.dtype, device=a_mat.device)
    m = a_s + (lam.unsqueeze(1).unsqueeze(2) + ridge) * eye
    rhs = (g * s).unsqueeze(2)
    chol, info = torch.linalg.cholesky_ex(m)
    z = torch.cholesky_solve(rhs, chol).squeeze(2)
    bad = info != 0
    if bool(bad.any()):
        evals, evecs = torch.linalg.eigh(m[bad])
        cut = evals.amax(1, keepdim=True) * 1e-13
        inv = torch.where(evals > cut, 1.0 / evals.clamp_min(1e-300), torch.zeros_like(evals))
        zb = evecs @ (inv.unsqueeze(2) * (evecs.transpose(1, 2) @ rhs[bad]))
        z[bad] = zb.squeeze(2)
    return z * s


def covariance_from_normal_matrix(a_mat: torch.Tensor, rcond: float = 1e-12) -> torch.Tensor:
    """(JᵀWJ)⁻¹ in scaled units, batched, float64.

    Inverted by an eigen-decomposition of the unit-diagonal scaled matrix (robust to the strong label
    correlations). A label without information (zero diagonal) or loading on a numerically null mode
    (eigenvalue < ``rcond`` × the largest) is undetermined: infinite variance, zero covariances.
    """
    diag = torch.diagonal(a_mat, dim1=1, dim2=2)
    informative = diag > 0
    s = torch.where(informative, diag.clamp_min(1e-300).rsqrt(), torch.zeros_like(diag))
    ff = informative.to(a_mat.dtype)
    a_s = a_mat * (s * ff).unsqueeze(2) * (s * ff).unsqueeze(1) + torch.diag_embed(1.0 - ff)
    evals, evecs = torch.linalg.eigh(a_s)
    good_mode = evals > rcond * evals.amax(1, keepdim=True)
    inv_e = torch.where(good_mode, 1.0 / evals.clamp_min(1e-300), torch.zeros_like(evals))
    inv = (evecs * inv_e.unsqueeze(1)) @ evecs.transpose(1, 2)
    undetermined = ~informative | (((evecs**2) * (~good_mode).to(a_mat.dtype).unsqueeze(1)).sum(2) > 1e-6)
    keep = (~undetermined).to(a_mat.dtype)
    cov = inv * (s * keep).unsqueeze(2) * (s * keep).unsqueeze(1)
    return cov + torch.diag_embed(torch.where(undetermined, torch.inf, 0.0).to(a_mat.dtype))


# --------------------------------------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------------------------------------


def scaled_bounds(bounds: Any, n_lab: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` fit box in scaled labels (scalars or per label), as two (n_lab,) float64 arrays."""
    lo, hi = bounds
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n_lab,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n_lab,)).copy()
    if np.any(~(hi > lo)):
        raise ValueError(f"bounds: upper {hi} must exceed lower {lo} for every label")
    return lo, hi


def fit_spectra(
    em: Emulator,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None = None,
    init: np.ndarray | None = None,
    device: str | torch.device | None = None,
    *,
    max_iter: int = 100,
    n_starts: int = 1,
    bounds: tuple[Any, Any] = (-0.5, 0.5),
    tol: float = 1e-3,
    lambda0: float = 0.1,
    batch_size: int | None = None,
    pixel_block: int | None = None,
    seed: int = 0,
    return_model_flux: bool = True,
) -> FitResult:
    """Fit emulator labels to a batch of normalized spectra (SPEC §5.3, §12).

    Parameters
    ----------
    em
        The emulator (any pixel grid, any number of labels L).
    flux, ivar
        (n, P) normalized flux and its inverse variance on the emulator's pixels (P = ``em.n_pixels``).
    mask
        (n, P) or (P,) bool, True = pixel excluded (same as ivar = 0). Non-finite flux or ivar and ivar ≤ 0
        are excluded too.
    init
        Starting labels in physical units: (n, L), or (k, n, L) for k explicit starts; NaN entries (or
        ``None``) start at the grid centre. Starts are clipped into ``bounds``.
    device
        Torch device; ``None``: CUDA if available, else CPU.
    max_iter
        Maximum Levenberg–Marquardt iterations per start.
    n_starts
        Total starts per spectrum: the given/central start plus ``n_starts − 1`` seeded uniform draws
        within the inner 80 % of the box (ignored when ``init`` has a leading start axis; then that axis
        counts). The lowest χ² wins.
    bounds
        (lower, upper) in **scaled** label units (−0.5 … 0.5 is the emulator's training range), scalars or
        (L,) arrays. E.g. (−0.55, 0.55) allows 5 % extrapolation.
    tol
        Convergence threshold on the Gauss–Newton decrement, in units of χ² (scaled by max(1, χ²_red)).
    lambda0
        Initial Marquardt damping (relative to diag JᵀWJ). 0.1 rather than the textbook 1e-3: cautious
        first steps from a distant start fell into fewer wrong local minima (on the synthesizer-trained
        emulator from the grid centre, S/N 50: 1.5 % instead of 2.4 % of 2000 fits) at the same cost.
    batch_size
        Spectra evaluated together (the active set). Default 512 on CPU, 8192 on CUDA.
    pixel_block
        Pixels per block of the blockwise evaluation (default: sized for cache on CPU).
    seed
        Seed of the extra starts.
    return_model_flux
        Evaluate the emulator at the solution for :attr:`FitResult.model_flux`.

    Returns
    -------
    FitResult
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float32))
    n_spec, n_pix = flux.shape
    n_lab = em.n_labels
    if n_pix != em.n_pixels or ivar.shape != flux.shape:
        raise ValueError(
            f"fit_spectra: flux {flux.shape} and ivar {ivar.shape} must be (n, {em.n_pixels}) (the emulator's pixels)"
        )
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape not in ((n_pix,), (n_spec, n_pix)):
            raise ValueError(f"fit_spectra: mask has shape {mask.shape}, expected ({n_pix},) or {flux.shape}")
        good &= ~mask
    weight = np.where(good, ivar, 0.0).astype(np.float32)
    yobs = np.where(good, flux, 0.0).astype(np.float32)
    n_good = good.sum(1).astype(np.int32)
    usable = n_good > n_lab
    lo, hi = scaled_bounds(bounds, n_lab)

    # starting points, scaled units, shape (k, n, L)
    if init is None:
        starts = np.full((1, n_spec, n_lab), np.nan)
    else:
        init = np.asarray(init, dtype=np.float64)
        if init.shape == (n_spec, n_lab):
            starts = init[None]
        elif init.ndim == 3 and init.shape[1:] == (n_spec, n_lab):
            starts = init
            n_starts = init.shape[0]
        else:
            raise ValueError(
                f"fit_spectra: init has shape {init.shape}, expected ({n_spec}, {n_lab}) or (k, {n_spec}, {n_lab})"
            )
        starts = em.scale(starts)
    starts = np.where(np.isfinite(starts), starts, 0.5 * (lo + hi))
    if n_starts > starts.shape[0]:
        rng = np.random.default_rng(seed)
        extra = lo + (hi - lo) * (0.1 + 0.8 * rng.random((n_starts - starts.shape[0], n_spec, n_lab)))
        starts = np.concatenate([starts, extra])
    starts = np.clip(starts, lo, hi)
    k = starts.shape[0]

    pix_used = np.flatnonzero((weight[usable] > 0).any(0)) if usable.any() else np.zeros(0, dtype=np.int64)
    idx_spec = np.flatnonzero(usable)
    n_use = idx_spec.size
    info: dict[str, Any] = {
        "device": str(dev),
        "n_pixels_used": int(pix_used.size),
        "rows_evaluated": 0,
        "n_problems": int(n_use * k),
        "flops": 0.0,
    }
    batch_size = batch_size or (8192 if dev.type == "cuda" else 512)
    info["batch_size"] = batch_size

    x_best = np.full((n_spec, n_lab), np.nan)
    cov_s = np.full((n_spec, n_lab, n_lab), np.nan)
    chi2 = np.full(n_spec, np.nan)
    n_iter = np.zeros(n_spec, dtype=np.int32)
    status = np.full(n_spec, STATUS_NO_DATA, dtype=np.int8)
    start_win = np.full(n_spec, -1, dtype=np.int16)
    chi2_starts = np.full((n_spec, k), np.nan)
    if n_use:
        kern = em.torch_net(dev).kernel(torch.as_tensor(pix_used, device=dev))
        y_d = torch.from_numpy(np.ascontiguousarray(yobs[idx_spec][:, pix_used])).to(dev)
        w_d = torch.from_numpy(np.ascontiguousarray(weight[idx_spec][:, pix_used])).to(dev)
        x0 = torch.from_numpy(starts[:, idx_spec].reshape(k * n_use, n_lab)).to(dev)
        spec_of = torch.arange(n_use, device=dev).repeat(k)
        block = pixel_block or kern.default_block(min(batch_size, k * n_use))
        info["pixel_block"] = block
        t_lm = time.perf_counter()
        res = _levenberg_marquardt(
            kern,
            y_d,
            w_d,
            spec_of,
            x0,
            torch.from_numpy(lo).to(dev),
            torch.from_numpy(hi).to(dev),
            n_good=torch.from_numpy(n_good[idx_spec]).to(dev),
            max_iter=max_iter,
            tol=tol,
            lambda0=lambda0,
            batch=batch_size,
            block=block,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        info["seconds_lm"] = time.perf_counter() - t_lm
        info["rows_evaluated"] = res["rows"]
        info["iterations_loop"] = res["loops"]
        info["steps_accepted"] = res["accepted"]
        info["jacobian_rows"] = res["jacobian_rows"]
        info["gradient_rows"] = res["gradient_rows"]
        cost = flops_per_evaluation(em, int(pix_used.size))
        info["flops"] = (
            res["rows"] * cost["forward"]
            + res["jacobian_rows"] * (cost["jacobian"] + cost["normal"])
            + res["gradient_rows"] * cost["gradient"]
        )
        c2 = res["chi2"].view(k, n_use)
        win = torch.argmin(torch.nan_to_num(c2, nan=torch.inf), dim=0)
        sel = win * n_use + torch.arange(n_use, device=dev)
        cov_u = covariance_from_normal_matrix(res["A"][sel])
        x_best[idx_spec] = np.where(
            np.isfinite(res["chi2"][sel].cpu().numpy())[:, None], res["x"][sel].cpu().numpy(), np.nan
        )
        cov_s[idx_spec] = cov_u.cpu().numpy()
        chi2[idx_spec] = res["chi2"][sel].cpu().numpy()
        n_iter[idx_spec] = res["n_iter"][sel].cpu().numpy()
        status[idx_spec] = res["status"][sel].cpu().numpy()
        start_win[idx_spec] = win.cpu().numpy().astype(np.int16)
        chi2_starts[idx_spec] = c2.T.cpu().numpy()

    span = em.x_max - em.x_min
    labels = em.unscale(x_best)
    with np.errstate(invalid="ignore"):
        cov = cov_s * span[:, None] * span[None, :]
        errors = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    dof = np.maximum(n_good - n_lab, 0).astype(np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2_red = np.where(dof > 0, chi2 / np.maximum(dof, 1), np.nan)
    at_bound = np.isfinite(x_best) & ((x_best <= lo + 1e-9) | (x_best >= hi - 1e-9))
    model_flux = None
    if return_model_flux:
        model_flux = np.full((n_spec, n_pix), np.nan, dtype=np.float32)
        if n_use:
            xt = torch.from_numpy(x_best[idx_spec]).to(dev)
            model_flux[idx_spec] = _model_flux(em.torch_net(dev).kernel(), xt, batch_size).cpu().numpy()
    info["seconds"] = time.perf_counter() - t0
    return FitResult(
        labels=labels,
        cov=cov,
        errors=errors,
        chi2=chi2,
        chi2_red=chi2_red,
        n_iter=n_iter,
        converged=status == STATUS_CONVERGED,
        model_flux=model_flux,
        status=status,
        n_good=n_good,
        dof=dof,
        labels_scaled=x_best,
        at_bound=at_bound,
        start=start_win,
        chi2_starts=chi2_starts,
        label_names=em.label_names,
        info=info,
    )


@torch.no_grad()
def _levenberg_marquardt(
    kern: EmulatorKernel,
    y: torch.Tensor,
    w: torch.Tensor,
    spec_of: torch.Tensor,
    x0: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    *,
    n_good: torch.Tensor,
    max_iter: int,
    tol: float,
    lambda0: float,
    batch: int,
    block: int,
) -> dict[str, Any]:
    """Levenberg–Marquardt on N problems (rows of ``x0``; problem i fits spectrum ``spec_of[i]``).

    At most ``batch`` problems are in flight; finished ones are replaced by new ones from the queue.
    """
    dev = x0.device
    n_prob, n_lab = x0.shape
    f64 = torch.float64
    x = x0.clone()
    chi2 = torch.full((n_prob,), torch.inf, dtype=f64, device=dev)
    a_mat = torch.zeros((n_prob, n_lab, n_lab), dtype=f64, device=dev)
    g = torch.zeros((n_prob, n_lab), dtype=f64, device=dev)
    lam = torch.full((n_prob,), lambda0, dtype=f64, device=dev)
    nu = torch.full((n_prob,), 2.0, dtype=f64, device=dev)
    pred = torch.zeros(n_prob, dtype=f64, device=dev)
    noise = torch.zeros(n_prob, dtype=f64, device=dev)
    n_iter = torch.zeros(n_prob, dtype=torch.int32, device=dev)
    status = torch.full((n_prob,), -1, dtype=torch.int8, device=dev)
    dof = (n_good - n_lab).clamp_min(1).to(f64)
    kept = torch.zeros(n_prob, dtype=torch.bool, device=dev)  # JᵀWJ is from an earlier point
    step_len = torch.zeros(n_prob, dtype=f64, device=dev)  # stepᵀ JᵀWJ step of the trial step (χ² units)
    grad_rows = 0
    eps_b = 1e-12

    def _update(upd: torch.Tensor, pts: torch.Tensor, known: torch.Tensor | None) -> int:
        """χ², JᵀWJ and g of problems ``upd`` at ``pts`` (flux ``known`` or evaluated); returns the rows."""
        cols = spec_of[upd]
        c_u, a_u, g_u, s_u = _evaluate(kern, pts, y[cols], w[cols], block, flux=known)
        x[upd], chi2[upd], a_mat[upd], g[upd], noise[upd], kept[upd] = pts, c_u, a_u, g_u, _NOISE * s_u, False
        return int(upd.numel())

    def _decrement(xc: torch.Tensor, ac: torch.Tensor, gc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The free labels' reduced system and the Gauss–Newton decrement gᵀA⁻¹g over them."""
        fixed = ((xc <= lo + eps_b) & (gc < 0)) | ((xc >= hi - eps_b) & (gc > 0))
        a_red, g_red = _reduced_system(ac, gc, ~fixed)
        delta0 = _solve_scaled(a_red, g_red, torch.zeros_like(gc[:, 0]))
        return a_red, g_red, (g_red * delta0).sum(1)

    running = torch.zeros(0, dtype=torch.long, device=dev)
    trial = torch.zeros((0, n_lab), dtype=f64, device=dev)
    next_new = 0
    rows = 0
    jac_rows = 0
    loops = 0
    accepted = 0
    lazy = _LAZY_JACOBIAN and kern.architecture == "shared"
    reuse = lazy and _KEEP_NORMAL_MATRIX
    while True:
        n_new = min(batch - running.numel(), n_prob - next_new)
        new = torch.arange(next_new, next_new + n_new, device=dev)
        next_new += n_new
        probs = torch.cat([running, new])
        if probs.numel() == 0:
            break
        nr = running.numel()
        rows += probs.numel()
        loops += 1
        if lazy and nr:
            # the trial steps' χ² first; the Jacobian below only where a step is accepted
            new_c, flux_r = _evaluate_chi2(kern, trial, y[spec_of[running]], w[spec_of[running]], block)
        else:
            pts = torch.cat([trial, x0[new]])
            cols = spec_of[probs]
            chi2_t, a_t, g_t, s_t = _evaluate(kern, pts, y[cols], w[cols], block)
            new_c = chi2_t[:nr]
        if nr:
            old = chi2[running]
            eta = noise[running]
            pr = pred[running]
            # a step whose predicted gain is below the χ² noise of the float32 model cannot be judged by
            # comparing two χ² values: it is accepted unless χ² got worse by more than that noise (the
            # quadratic model is accurate there; without this, noise-driven rejections blow λ up)
            below = pr < eta
            acc = torch.isfinite(new_c) & ((new_c < old) | (below & (new_c < old + eta)))
            rho = torch.where(below, torch.ones_like(pr), (old - new_c) / pr.clamp_min(1e-300))
            # Nielsen (1999): shrink λ smoothly on good steps, grow it geometrically on rejections
            shrink = torch.clamp(1.0 - (2.0 * rho - 1.0) ** 3, min=1.0 / 3.0)
            lam_r, nu_r = lam[running], nu[running]
            lam[running] = torch.where(acc, (lam_r * shrink).clamp_min(_LAM_MIN), lam_r * nu_r)
            nu[running] = torch.where(acc, torch.full_like(nu_r, 2.0), nu_r * 2.0)
            ia = running[acc]
            accepted += int(ia.numel())
            n_iter[running] += 1
        else:
            ia = running
        if lazy:
            # Jacobians of the accepted steps (from the flux just computed) and of the new problems; a short
            # accepted step keeps its JᵀWJ and updates only χ² and the gradient
            parts = []
            if ia.numel():
                short = (step_len[ia] < _SHORT_STEP) if reuse else torch.zeros_like(ia, dtype=torch.bool)
                pts, known = trial[acc], flux_r[acc]
                if bool(short.any()):
                    iu, cols = ia[short], spec_of[ia[short]]
                    c_u, g_u, s_u = _evaluate_gradient(kern, pts[short], y[cols], w[cols], block, known[short])
                    x[iu], chi2[iu], g[iu], noise[iu], kept[iu] = pts[short], c_u, g_u, _NOISE * s_u, True
                    grad_rows += iu.numel()
                if not bool(short.all()):
                    parts.append((ia[~short], pts[~short], known[~short]))
            if reuse and nr:
                # a rejected step taken with a kept JᵀWJ: the true one at x before damping further (without
                # it, 9 % instead of 6 % of fits ran out of iterations in a test)
                again = running[~acc & kept[running]]
                if again.numel():
                    parts.append((again, x[again], None))
            if n_new:
                parts.append((new, x0[new], None))
            for upd, pts, known in parts:
                jac_rows += _update(upd, pts, known)
        else:
            if n_new:
                x[new], chi2[new], a_mat[new], g[new] = pts[nr:], chi2_t[nr:], a_t[nr:], g_t[nr:]
                noise[new] = _NOISE * s_t[nr:]
            if nr:
                x[ia], chi2[ia], a_mat[ia], g[ia] = trial[acc], new_c[acc], a_t[:nr][acc], g_t[:nr][acc]
                noise[ia] = _NOISE * s_t[:nr][acc]
            jac_rows += probs.numel()

        # convergence test and next step for every problem in flight
        finite = torch.isfinite(chi2[probs]) & torch.isfinite(a_mat[probs]).flatten(1).all(1)
        finite &= torch.isfinite(g[probs]).all(1)
        if not bool(finite.all()):
            # a non-finite evaluation (an overflowing ivar, a NaN model) carries no information and cannot
            # improve: zero curvature (undetermined labels) and it stops below as stalled
            broken = probs[~finite]
            a_mat[broken], g[broken], chi2[broken] = 0.0, 0.0, torch.inf
        xc, ac, gc = x[probs], a_mat[probs], g[probs]
        a_red, g_red, dec = _decrement(xc, ac, gc)
        scale = torch.clamp(chi2[probs] / dof[spec_of[probs]], min=1.0)
        # converged when a full Gauss–Newton step would gain less than tol (or less than the χ² noise of
        # the float32 model, below which gains cannot be verified)
        conv = (dec <= torch.maximum(tol * scale, noise[probs])) & finite
        over = n_iter[probs] >= max_iter
        stall = (lam[probs] > _LAM_MAX) | ~finite
        ends = finite & kept[probs] & (conv | over | stall)
        if bool(ends.any()):
            # a fit ends with the true JᵀWJ at its labels: the convergence test and the covariance use it (a
            # fit it shows unconverged goes on)
            jac_rows += _update(probs[ends], x[probs[ends]], None)
            xc, ac, gc = x[probs], a_mat[probs], g[probs]
            a_red, g_red, dec = _decrement(xc, ac, gc)
            conv = (dec <= torch.maximum(tol * scale, noise[probs])) & finite
        done = conv | over | stall
        status[probs] = (
            torch.where(conv, STATUS_CONVERGED, torch.where(over, STATUS_MAX_ITER, STATUS_STALLED))
            .to(torch.int8)
            .where(done, status[probs])
        )
        keep = ~done
        running = probs[keep]
        if running.numel():
            a_k, g_k = a_red[keep], g_red[keep]
            delta = _solve_scaled(a_k, g_k, lam[running])
            trial = torch.minimum(torch.maximum(xc[keep] + delta, lo), hi)
            step = trial - xc[keep]
            # predicted χ² reduction of the projected step under the quadratic model
            step_len[running] = (step.unsqueeze(1) @ a_k @ step.unsqueeze(2)).view(-1)
            pred[running] = 2.0 * (g_k * step).sum(1) - step_len[running]
        else:
            trial = torch.zeros((0, n_lab), dtype=f64, device=dev)
    return {
        "x": x,
        "chi2": chi2,
        "A": a_mat,
        "n_iter": n_iter,
        "status": status,
        "rows": rows,
        "jacobian_rows": jac_rows,
        "gradient_rows": grad_rows,
        "loops": loops,
        "accepted": accepted,
    }
