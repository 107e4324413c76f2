"""The Payne spectral emulator's network in PyTorch: :class:`Emulator` and its evaluation kernel (SPEC §5.1; P2 §4.2).

An :class:`Emulator` maps L physical labels (for survey_scale the 11 labels of
:data:`survey_scale.core.labels.LABEL_NAMES`) to the continuum-normalized flux at P pixels. Labels enter the
networks scaled to [−0.5, 0.5] by the model grid's range, ``x = (l − x_min)/(x_max − x_min) − 0.5``.

Architectures
-------------
``perpixel`` (P2, public Payne of Ting et al. 2019)
    One small network per pixel: labels → hidden layer(s) of sigmoid units → flux. Evaluated batched over
    pixels with weights of shape (pixels, hidden_out, hidden_in). P2 uses two hidden layers of 100 units.
``shared``
    One network for all pixels: labels → hidden layers → all P pixels (the later public Payne layout, there
    with leaky-ReLU of slope 0.01). survey_scale's default is three hidden layers of 300 sigmoid units
    (sigmoid keeps χ² smooth for the fit). A fit iteration with the shared network is about 5× cheaper than
    with the per-pixel network of P2.

Jacobian
--------
The fit needs ∂f/∂x at every pixel. For the per-pixel network each pixel is a scalar function of the labels,
so reverse mode *per pixel* is one extra batched matmul of the size of the forward pass; autograd (one
backward pass per output pixel, or forward mode with L tangents) costs ~L times more. For the shared
network the Jacobian is forward mode, J = W_out · diag(σ′) · W · diag(σ′) · W_0, one large GEMM.
Both are written out by hand in :meth:`EmulatorKernel.block` and evaluated pixel block by pixel block so the
activations stay in cache. The analytic path is the one used (its timings against autograd:
``benchmarks/README.md``, "Emulator training measurements").

Notes
-----
Shapes and units: physical labels (n, L) in the units of :data:`survey_scale.core.labels.LABEL_UNITS`, in the
column order of ``label_names``; scaled labels x (n, L), dimensionless; flux (n, P), continuum-normalized,
float32; Jacobians (n, P, L); wavelengths (P,), vacuum Å. Weight matrices are (out, in), as
``torch.nn.Linear`` stores them and as the public Payne code multiplies them (``einsum('ij,j->i', w, x)``).
No function here calls ``torch.set_num_threads``; the caller (a Dask worker, a benchmark) decides.

See Also
--------
survey_scale.science.emulator_files : the file formats, ``load`` and the shipped emulators.
survey_scale.science.emulator_training : ``train`` on a model grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from survey_scale._version import __version__
from survey_scale.core.files import atomic_write, save_npz

FORMAT = "survey_scale.emulator/1"
ARCHITECTURES = ("perpixel", "shared")
ACTIVATIONS = ("sigmoid", "leaky_relu")
LEAKY_SLOPE = 0.01
DEFAULT_HIDDEN = {"perpixel": (100, 100), "shared": (300, 300, 300)}
DEFAULT_ACTIVATION = {"perpixel": "sigmoid", "shared": "sigmoid"}
"""Sigmoid for both: a leaky-ReLU network is piecewise linear, so χ² has kinks where a unit switches and the
Gauss–Newton model fails there (on a toy grid 1–12 % of Levenberg–Marquardt fits stalled at kinks, against
none with sigmoid units). Leaky-ReLU networks (the public Payne layout (b)) remain supported."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA if available, else CPU; strings and devices pass through."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------------------
# torch evaluation
# --------------------------------------------------------------------------------------------------------


def _activate_(h: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply the activation in place (the pre-activation is not needed afterwards)."""
    if activation == "sigmoid":
        return torch.sigmoid_(h)
    return torch.nn.functional.leaky_relu_(h, LEAKY_SLOPE)


def _activation_grad(a: torch.Tensor, activation: str) -> torch.Tensor:
    """σ′ expressed through the activation output a (σ′ = a(1 − a) for the sigmoid), a new tensor."""
    if activation == "sigmoid":
        return torch.addcmul(a, a, a, value=-1.0)
    return torch.where(a > 0, 1.0, LEAKY_SLOPE).to(a.dtype)


def _activation_grad_(a: torch.Tensor, activation: str) -> torch.Tensor:
    """σ′ from the activation output, overwriting a (one fused pass: a − a·a for the sigmoid)."""
    if activation == "sigmoid":
        return a.addcmul_(a, a, value=-1.0)
    return a.gt_(0).mul_(1.0 - LEAKY_SLOPE).add_(LEAKY_SLOPE)


@dataclass
class _TorchNet:
    """Weights of an emulator as tensors on one device (plain layout, for autograd and training).

    ``hw[k]``: perpixel (P, H_out, H_in), shared (H_out, H_in); ``hb[k]``: perpixel (P, H_out), shared
    (H_out,); ``ow`` (P, H_last); ``ob`` (P,). :meth:`kernel` gives the evaluation layout.
    """

    architecture: str
    activation: str
    hw: list[torch.Tensor]
    hb: list[torch.Tensor]
    ow: torch.Tensor
    ob: torch.Tensor
    _kernel: EmulatorKernel | None = None

    @property
    def n_pixels(self) -> int:
        return int(self.ow.shape[0])

    @property
    def n_labels(self) -> int:
        return int(self.hw[0].shape[-1])

    @property
    def device(self) -> torch.device:
        return self.ow.device

    @torch.no_grad()
    def kernel(self, pixels: torch.Tensor | None = None) -> EmulatorKernel:
        """The evaluation layout for all pixels (cached) or a gathered copy for ``pixels`` (index tensor)."""
        if pixels is None:
            if self._kernel is None:
                self._kernel = EmulatorKernel(self, None)
            return self._kernel
        return EmulatorKernel(self, pixels)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flux (n, P) at scaled labels x (n, L), without autograd."""
        return self.kernel().forward(x)

    def forward_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """Flux (n, P) as a differentiable function of x (plain ops, no in-place activations)."""
        act = (
            torch.sigmoid
            if self.activation == "sigmoid"
            else (lambda z: torch.nn.functional.leaky_relu(z, LEAKY_SLOPE))
        )
        if self.architecture == "shared":
            a = x
            for w, b in zip(self.hw, self.hb, strict=True):
                a = act(a @ w.T + b)
            return a @ self.ow.T + self.ob
        a = act(torch.einsum("phl,nl->pnh", self.hw[0], x) + self.hb[0].unsqueeze(1))
        for w, b in zip(self.hw[1:], self.hb[1:], strict=True):
            a = act(torch.bmm(a, w.transpose(1, 2)) + b.unsqueeze(1))
        return (torch.einsum("pnh,ph->np", a, self.ow) + self.ob).contiguous()


class EmulatorKernel:
    """An emulator laid out for fast batched evaluation of flux and Jacobian, pixel block by pixel block.

    perpixel: the first layer as one flat GEMM (``w0f`` (P·H1, L)); later layers with pre-transposed,
    contiguous weights ``wt[k]`` (P, H_in, H_out) (batched GEMM without transposes is ~20 % faster on CPU);
    the reverse pass with ``back[k]`` (P, H_out, H_in), the last one with the output weights folded in
    (W′[p, j, k] = w_out[p, j] W[p, j, k]: one element-wise pass fewer); the Jacobian as Jᵀ = W0ᵀ dᵀ
    (``w0t`` (P, L, H1)), 3× faster than d W0 because the small L dimension becomes the GEMM's M.

    shared: the hidden state a (n, H) and its label tangent T (n·L, H) are computed once per batch; each
    pixel block is then one GEMM [a; T] W_outᵀ giving the flux and the Jacobian together.

    :meth:`block` returns the flux (n, Pb) and the Jacobian as an (n, L, Pb) view.
    """

    def __init__(self, net: _TorchNet, pixels: torch.Tensor | None) -> None:
        self.architecture = net.architecture
        self.activation = net.activation
        self.n_labels = net.n_labels
        self.device = net.device

        def take(t: torch.Tensor) -> torch.Tensor:
            return t if pixels is None else t[pixels]

        self.ow = take(net.ow).contiguous()
        self.ob = take(net.ob).contiguous()
        self.n_pixels = int(self.ow.shape[0])
        if self.architecture == "shared":
            self.hw, self.hb = net.hw, net.hb
            self.width = self.n_labels + 1
            return
        w0 = take(net.hw[0])
        n_pix, h1, n_lab = w0.shape
        self.h1 = h1
        self.w0f = w0.reshape(n_pix * h1, n_lab)
        self.b0f = take(net.hb[0]).reshape(n_pix * h1)
        self.wt = [take(w).transpose(1, 2).contiguous() for w in net.hw[1:]]
        self.b = [take(b).unsqueeze(1) for b in net.hb[1:]]
        back = [take(w) for w in net.hw[1:]]
        if back:
            back[-1] = back[-1] * self.ow.unsqueeze(2)
            self.w0t = w0.transpose(1, 2).contiguous()
        else:
            self.w0t = (w0 * self.ow.unsqueeze(2)).transpose(1, 2).contiguous()
        self.back = back
        self.width = max([h1, *[int(w.shape[2]) for w in self.wt]])

    def default_block(self, n_rows: int) -> int:
        """Pixels per block: one (block, n, H) activation of ~2 MB on CPU (cache-resident), ~256 MB on GPU."""
        target = 2**26 if self.device.type == "cuda" else 2**19 if self.architecture == "perpixel" else 2**20
        return int(max(4, min(self.n_pixels, target // max(1, n_rows * self.width))))

    @torch.no_grad()
    def hidden_state(self, x: torch.Tensor, jac: bool) -> torch.Tensor:
        """Shared network: [a; T] ((n + n·L), H) — last hidden activation and its label tangent ∂a/∂x."""
        n, n_lab = x.shape
        a = x
        tangent = None
        for k, (w, b) in enumerate(zip(self.hw, self.hb, strict=True)):
            a = _activate_(torch.addmm(b, a, w.T), self.activation)
            if jac:
                s = _activation_grad(a, self.activation).unsqueeze(1)  # (n, 1, H)
                if k == 0:
                    tangent = w.T.unsqueeze(0) * s  # (n, L, H)
                else:
                    tangent = (tangent.reshape(n * n_lab, -1) @ w.T).view(n, n_lab, -1).mul_(s)
        if not jac:
            return a
        return torch.cat([a, tangent.reshape(n * n_lab, -1)])

    @torch.no_grad()
    def label_pullback(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Shared network: (∂a/∂x)ᵀ u per row, (n, L) float64 — a vector u (n, H) on the last hidden layer pulled
        back to the labels in one reverse pass (the gradient of uᵀa, without the L label tangents)."""
        acts = []
        a = x.to(torch.float32)
        for w, b in zip(self.hw, self.hb, strict=True):
            a = _activate_(torch.addmm(b, a, w.T), self.activation)
            acts.append(a)
        d = u.to(torch.float64)
        for w, a in zip(reversed(self.hw), reversed(acts), strict=True):
            d = (d * _activation_grad_(a, self.activation)) @ w.to(torch.float64)
        return d

    @torch.no_grad()
    def block(
        self, x: torch.Tensor, p0: int, p1: int, jac: bool, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Flux (n, Pb) and optionally ∂f/∂x as an (n, L, Pb) view, for pixels p0:p1 at scaled x (n, L).

        ``state``: the shared network's :meth:`hidden_state` (computed once per batch).
        """
        n, n_lab = x.shape
        pb = p1 - p0
        if self.architecture == "shared":
            out = torch.mm(state, self.ow[p0:p1].T)  # (n [+ n·L], Pb)
            f = out[:n].add_(self.ob[p0:p1])
            if not jac:
                return f, None
            return f, out[n:].view(n, n_lab, pb)
        h1 = self.h1
        # first layer for every pixel of the block as one GEMM: (n, Pb·H1) → (Pb, n, H1) view
        a = torch.addmm(self.b0f[p0 * h1 : p1 * h1], x, self.w0f[p0 * h1 : p1 * h1].T)
        a = _activate_(a, self.activation).view(n, pb, h1).transpose(0, 1)
        acts = [a]
        for wt, b in zip(self.wt, self.b, strict=True):
            a = _activate_(torch.baddbmm(b[p0:p1], a, wt[p0:p1]), self.activation)
            acts.append(a)
        f = torch.linalg.vecdot(a, self.ow[p0:p1].unsqueeze(1)).add_(self.ob[p0:p1].unsqueeze(1)).T  # (n, Pb)
        if not jac:
            return f, None
        # reverse mode per pixel (each pixel is a scalar function of the labels); activations are
        # overwritten by their derivatives; w_out is folded into the last backward matrix
        d = _activation_grad_(acts[-1], self.activation)
        for k in range(len(self.back) - 1, -1, -1):
            d = torch.bmm(d, self.back[k][p0:p1]).mul_(_activation_grad_(acts[k], self.activation))
        jt = torch.bmm(self.w0t[p0:p1], d.transpose(1, 2))  # (Pb, L, n)
        return f, jt.permute(2, 0, 1).contiguous().transpose(1, 2)  # (n, L, Pb) view of (n, Pb, L)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, block: int | None = None) -> torch.Tensor:
        """Flux (n, P) at scaled labels x (n, L)."""
        x = x.to(torch.float32)
        n = x.shape[0]
        out = torch.empty((n, self.n_pixels), dtype=torch.float32, device=x.device)
        state = self.hidden_state(x, jac=False) if self.architecture == "shared" else None
        block = block or self.default_block(n)
        for p0 in range(0, self.n_pixels, block):
            p1 = min(p0 + block, self.n_pixels)
            out[:, p0:p1] = self.block(x, p0, p1, jac=False, state=state)[0]
        return out

    @torch.no_grad()
    def jacobian(self, x: torch.Tensor, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flux (n, P) and ∂f/∂x (n, P, L) at scaled labels x (n, L), float32."""
        x = x.to(torch.float32)
        n, n_lab = x.shape
        f = torch.empty((n, self.n_pixels), dtype=torch.float32, device=x.device)
        jac = torch.empty((n, self.n_pixels, n_lab), dtype=torch.float32, device=x.device)
        state = self.hidden_state(x, jac=True) if self.architecture == "shared" else None
        block = block or self.default_block(n)
        for p0 in range(0, self.n_pixels, block):
            p1 = min(p0 + block, self.n_pixels)
            fb, jb = self.block(x, p0, p1, jac=True, state=state)
            f[:, p0:p1] = fb
            jac[:, p0:p1] = jb.transpose(1, 2)
        return f, jac


# --------------------------------------------------------------------------------------------------------
# Emulator
# --------------------------------------------------------------------------------------------------------


def _sigmoid_np(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _leaky_np(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, LEAKY_SLOPE * z)


class Emulator:
    """A trained spectral emulator: L physical labels → normalized flux at P pixels (SPEC §5.1).

    Parameters
    ----------
    architecture
        ``"perpixel"`` or ``"shared"`` (see the module docstring).
    activation
        ``"sigmoid"`` or ``"leaky_relu"`` (slope 0.01).
    weights, biases
        Hidden layers in order. perpixel: weights (P, H_out, H_in) with H_in = L for the first, biases
        (P, H_out); shared: weights (H_out, H_in), biases (H_out,).
    out_weight, out_bias
        Output layer, (P, H_last) and (P,).
    x_min, x_max
        (L,) physical label range used for scaling.
    label_names
        L names, in the column order of the labels.
    wave
        (P,) pixel wavelengths, vacuum Å.
    meta
        Training figures and provenance (JSON-serializable).
    """

    def __init__(
        self,
        architecture: str,
        activation: str,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        out_weight: np.ndarray,
        out_bias: np.ndarray,
        x_min: np.ndarray,
        x_max: np.ndarray,
        label_names: Sequence[str],
        wave: np.ndarray,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.architecture = architecture
        self.activation = activation
        self.weights = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        self.biases = [np.ascontiguousarray(b, dtype=np.float32) for b in biases]
        self.out_weight = np.ascontiguousarray(out_weight, dtype=np.float32)
        self.out_bias = np.ascontiguousarray(out_bias, dtype=np.float32)
        self.x_min = np.asarray(x_min, dtype=np.float64).copy()
        self.x_max = np.asarray(x_max, dtype=np.float64).copy()
        self.label_names = tuple(str(n) for n in label_names)
        self.wave = np.asarray(wave, dtype=np.float64).copy()
        self.meta = dict(meta or {})
        self._check()
        self._nets: dict[str, _TorchNet] = {}
        self._np64: tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray] | None = None

    # -- structure ------------------------------------------------------------------------------------
    def _check(self) -> None:
        n_pix, n_lab = self.out_weight.shape[0], self.x_min.size
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError("emulator: need as many hidden weight arrays as bias arrays (at least one)")
        if self.x_max.shape != (n_lab,) or len(self.label_names) != n_lab:
            raise ValueError(
                f"emulator: x_min {self.x_min.shape}, x_max {self.x_max.shape} and {len(self.label_names)} "
                "label names must agree"
            )
        if np.any(~(self.x_max > self.x_min)):
            raise ValueError("emulator: x_max must exceed x_min for every label")
        if self.wave.shape != (n_pix,):
            raise ValueError(f"emulator: wave has shape {self.wave.shape}, expected ({n_pix},)")
        n_in = n_lab
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if self.architecture == "perpixel":
                ok = w.ndim == 3 and w.shape[0] == n_pix and w.shape[2] == n_in and b.shape == w.shape[:2]
            else:
                ok = w.ndim == 2 and w.shape[1] == n_in and b.shape == (w.shape[0],)
            if not ok:
                raise ValueError(
                    f"emulator: hidden layer {k} weight {w.shape} / bias {b.shape} inconsistent with "
                    f"{n_pix} pixels and {n_in} inputs ({self.architecture})"
                )
            n_in = w.shape[-2]
        if self.out_weight.shape != (n_pix, n_in) or self.out_bias.shape != (n_pix,):
            raise ValueError(
                f"emulator: output weight {self.out_weight.shape} / bias {self.out_bias.shape}, expected "
                f"({n_pix}, {n_in}) / ({n_pix},)"
            )

    @property
    def n_pixels(self) -> int:
        """Number of output pixels P."""
        return int(self.out_weight.shape[0])

    @property
    def n_labels(self) -> int:
        """Number of labels L."""
        return int(self.x_min.size)

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden layer widths."""
        return tuple(int(w.shape[-2]) for w in self.weights)

    def __repr__(self) -> str:
        return (
            f"Emulator({self.architecture}, {self.activation}, hidden={self.hidden}, "
            f"labels={self.n_labels}, pixels={self.n_pixels})"
        )

    # -- scaling --------------------------------------------------------------------------------------
    def scale(self, labels: np.ndarray) -> np.ndarray:
        """Physical labels (..., L) → scaled labels in [−0.5, 0.5] over the grid range."""
        return (np.asarray(labels, dtype=np.float64) - self.x_min) / (self.x_max - self.x_min) - 0.5

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """Scaled labels (..., L) → physical labels."""
        return (np.asarray(x, dtype=np.float64) + 0.5) * (self.x_max - self.x_min) + self.x_min

    # -- torch ----------------------------------------------------------------------------------------
    def torch_net(self, device: str | torch.device | None = None) -> _TorchNet:
        """The network as float32 tensors on ``device`` (cached; on CPU they share the numpy memory)."""
        dev = resolve_device(device)
        key = str(dev)
        if key not in self._nets:

            def t(a: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(a).to(dev)

            self._nets[key] = _TorchNet(
                self.architecture,
                self.activation,
                [t(w) for w in self.weights],
                [t(b) for b in self.biases],
                t(self.out_weight),
                t(self.out_bias),
            )
        return self._nets[key]

    def _scale_torch(self, labels: torch.Tensor) -> torch.Tensor:
        lo = torch.as_tensor(self.x_min, dtype=labels.dtype, device=labels.device)
        span = torch.as_tensor(self.x_max - self.x_min, dtype=labels.dtype, device=labels.device)
        return (labels - lo) / span - 0.5

    def predict_torch(self, labels: torch.Tensor) -> torch.Tensor:
        """Differentiable prediction: physical labels (n, L) tensor → flux (n, P) on the labels' device.

        Autograd flows through (use it for gradients w.r.t. labels, e.g. :func:`torch.func.jacfwd`); the
        network runs in float32 whatever the labels' dtype.
        """
        net = self.torch_net(labels.device)
        return net.forward_autograd(self._scale_torch(labels).to(torch.float32))

    def jacobian_torch(self, x: torch.Tensor, method: str = "analytic") -> tuple[torch.Tensor, torch.Tensor]:
        """Flux (n, P) and Jacobian ∂f/∂x (n, P, L) w.r.t. the **scaled** labels x (n, L), float32.

        ``method="analytic"`` (used by the fitter: reverse mode per pixel / forward mode for the shared
        network, blockwise) or ``"autograd"``: forward-mode automatic differentiation of the plain forward
        (:func:`torch.func.jvp`, one pass per label, the whole batch at once since rows are independent),
        kept for comparison and checks. (``vmap(jacfwd)`` would broadcast the per-pixel weights over the
        batch: ~100 GB for P2's network and 64 spectra.)
        """
        x = x.to(torch.float32)
        net = self.torch_net(x.device)
        if method == "autograd":
            cols = []
            with warnings.catch_warnings():
                # torch.func's first use triggers torch's own torch.jit.script deprecation warning
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                for i in range(x.shape[1]):
                    tangent = torch.zeros_like(x)
                    tangent[:, i] = 1.0
                    f, col = torch.func.jvp(net.forward_autograd, (x,), (tangent,))
                    cols.append(col)
            return f.detach(), torch.stack(cols, dim=2).detach()
        if method != "analytic":
            raise ValueError(f"method must be 'analytic' or 'autograd', got {method!r}")
        return net.kernel().jacobian(x)

    # -- numpy interface ------------------------------------------------------------------------------
    def predict(self, labels: np.ndarray, device: str | torch.device | None = None, batch: int = 1024) -> np.ndarray:
        """Normalized flux for physical labels (SPEC §12).

        Parameters
        ----------
        labels
            (n, L) or (L,) physical labels, in the order of :attr:`label_names`.
        device
            Torch device (default: CUDA if available, else CPU).
        batch
            Spectra per evaluation (bounds memory).

        Returns
        -------
        numpy.ndarray
            (n, P) or (P,) float32 normalized flux.
        """
        lab = np.asarray(labels, dtype=np.float64)
        one = lab.ndim == 1
        lab = np.atleast_2d(lab)
        if lab.shape[1] != self.n_labels:
            raise ValueError(f"predict: labels have {lab.shape[1]} columns, the emulator takes {self.n_labels}")
        net = self.torch_net(device)
        out = np.empty((lab.shape[0], self.n_pixels), dtype=np.float32)
        x = self.scale(lab).astype(np.float32)
        with torch.no_grad():
            for i in range(0, lab.shape[0], batch):
                xt = torch.from_numpy(x[i : i + batch]).to(net.device)
                out[i : i + batch] = net.forward(xt).cpu().numpy()
        return out[0] if one else out

    def jacobian(self, labels: np.ndarray, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Flux (n, P) and ∂f/∂label (n, P, L) per **physical** unit of each label, float32 numpy."""
        lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
        net = self.torch_net(device)
        x = torch.from_numpy(self.scale(lab).astype(np.float32)).to(net.device)
        f, jac = self.jacobian_torch(x)
        span = (self.x_max - self.x_min).astype(np.float32)
        return f.cpu().numpy(), jac.cpu().numpy() / span

    def _weights64(self) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
        if self._np64 is None:
            self._np64 = (
                [w.astype(np.float64) for w in self.weights],
                [b.astype(np.float64) for b in self.biases],
                self.out_weight.astype(np.float64),
                self.out_bias.astype(np.float64),
            )
        return self._np64

    def forward_numpy(self, x: np.ndarray) -> np.ndarray:
        """Plain numpy forward in float64 at **scaled** labels, as the public Payne code evaluates it.

        Used as the reference per-spectrum model (``scipy.optimize.curve_fit`` loop of the benchmarks and
        tests). x (L,) → (P,), or (n, L) → (n, P).
        """
        ws, bs, ow, ob = self._weights64()
        act = _sigmoid_np if self.activation == "sigmoid" else _leaky_np
        x = np.asarray(x, dtype=np.float64)
        if self.architecture == "shared":
            a = x
            for w, b in zip(ws, bs, strict=True):
                a = act(a @ w.T + b)
            return a @ ow.T + ob
        if x.ndim == 1:
            a = act(np.einsum("ijk,k->ij", ws[0], x) + bs[0])
            for w, b in zip(ws[1:], bs[1:], strict=True):
                a = act(np.einsum("ijk,ik->ij", w, a) + b)
            return np.einsum("ij,ij->i", ow, a) + ob
        return np.stack([self.forward_numpy(xi) for xi in x])

    # -- persistence ----------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """The JSON header written by :meth:`save`."""
        return {
            "format": FORMAT,
            "architecture": self.architecture,
            "activation": self.activation,
            "hidden": list(self.hidden),
            "label_names": list(self.label_names),
            "n_pixels": self.n_pixels,
            "code_version": __version__,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the emulator in the own format (:mod:`survey_scale.science.emulator_files`) and return the path."""
        from survey_scale.science.emulator_files import emulator_arrays  # the files module builds on this one

        arrays = emulator_arrays(self)
        return atomic_write(path, lambda tmp: save_npz(tmp, arrays))

    def content_hash(self) -> str:
        """SHA-256 of the weights, scaling and wavelengths (provenance of stages that use the emulator)."""
        import hashlib

        h = hashlib.sha256()
        for a in (
            *self.weights,
            *self.biases,
            self.out_weight,
            self.out_bias,
            self.x_min,
            self.x_max,
            self.wave,
        ):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(f"{self.architecture}/{self.activation}/{self.label_names}".encode())
        return h.hexdigest()
