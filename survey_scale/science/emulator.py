"""The Payne spectral emulator in PyTorch (SPEC §5.1; P2 §4.2).

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

Training and the shipped emulator
---------------------------------
Measured on the synthesizer's model grids (:func:`survey_scale.synth.make_model_grid`, seed 0), 2 shared CPU
cores. Earlier, with weights uniform in ±1/√fan_in: two layers of 300 reached a validation σ of 0.211 %
(0.417 % where flux < 0.95) on 10,000 spectra in 1,124 s; two layers of 600 0.219 % / 0.435 %, two
leaky-ReLU layers of 300 0.300 % / 0.652 % (P2's per-pixel networks: 0.165 % / 0.586 %); three layers of
300 0.149 % / 0.287 % in 954 s, but only after a plateau at the mean spectrum. The plateau comes from the
initialization: a sigmoid layer passes on ~1/10 of the label signal (slope ≤ 1/4, outputs offset by 0.5),
so three layers start as a constant and the gradients carry almost nothing. Same network, Adam 1e-3, batch
256 (``benchmarks/eval_emulator_plateau.py``): with ``init="uniform"`` it sat at the mean spectrum (σ 3.43 %)
for the first 40 epochs on 10,000 spectra and 106 epochs on the demo's 4,000 (longer than the
early-stopping patience), and reached 2.02 % after 60 and 1.50 % after 200 epochs; with the data-dependent
``init="scaled"`` (:func:`_scaled_init_`, the default) it never sits there: 0.578 % after 60 epochs (10 k),
0.590 % after 200 (4 k). A batch of 64 halves the epochs needed again (0.447 % after 200 epochs on 4 k); a
cosine schedule (batch 256) was worse than a constant rate at these budgets (0.753 % after 200 epochs on
4 k), and annealing the last 20 % of the epochs gains little this far from convergence (0.442 %).

The shipped emulator (:func:`load_default`, ``data/emulators/synthesizer.npz``, 5.4 MB of float32 weights)
is this network trained on 40,000 spectra (seed 0) with batch 64 and Adam at 1e-3 for 160 epochs, then
annealed linearly to 0 over 40 more (``schedule="anneal"``; ``configs/emulator_synthesizer.yaml``), in
2,100 s on one thread of 2 shared cores: 0.094 % overall and 0.180 % where flux < 0.95 on its 4,000
held-out spectra (0.096 % / 0.187 % on 2,000 freshly synthesized ones; Gaussian cores, 1.4826 × MAD,
0.026 % / 0.100 %; per-spectrum rms 0.079 % at the median, 0.22 % at the 99th percentile). The largest
residuals, up to 8 % in single pixels, sit at the grid's corners: 7,000 K stars of log g < 1.5 in Ca II H
and K, the hottest dwarfs at He II 4686 Å. Here the anneal matters: over its 40 epochs the validation loss
fell 1.8× (from 1.56e-6 at epoch 160); the same run at a constant rate stopped at 0.133 % / 0.261 % after
150 epochs. Its ``meta`` records the grid, the settings, the precision, the time, the code and the command.

Jacobian
--------
The fit needs ∂f/∂x at every pixel. For the per-pixel network each pixel is a scalar function of the labels,
so reverse mode *per pixel* is one extra batched matmul of the size of the forward pass; autograd (one
backward pass per output pixel, or forward mode with L tangents) costs ~L times more. For the shared
network the Jacobian is forward mode, J = W_out · diag(σ′) · W · diag(σ′) · W_0, one large GEMM.
Both are written out by hand in :meth:`EmulatorKernel.block` and evaluated pixel block by pixel block so the
activations stay in cache. Measured with ``benchmarks/bench_emulator.py`` (1 CPU thread, 64 spectra,
3802 pixels): per-pixel (100, 100) 3.1 ms per spectrum analytic vs 119 ms by forward-mode autograd (38×);
shared (300, 300) 0.54 vs 1.43 ms (2.6×); shared (300, 300, 300), 2 threads, 0.20 vs 0.84 ms (4.3×). The
analytic path is the one used.

File formats
------------
Own format (:meth:`Emulator.save`): an uncompressed ``.npz`` holding the public Payne arrays
(``w_array_0``, ``b_array_0``, ``w_array_1``, …, ``x_min``, ``x_max``) plus ``wave`` (P,) float64 and
``header``, a JSON string with the label names, architecture, activation, hidden sizes, training figures
and the code version. No pickled objects: it is read with ``numpy.load(allow_pickle=False)``.

Public Payne files (:func:`load`), detected from the array shapes:

(a) per-pixel sigmoid networks: ``w_array_0`` (P, H, L), ``b_array_0`` (P, H) and either ``w_array_1``
    (P, H), ``b_array_1`` (P,) (one hidden layer) or ``w_array_1`` (P, H2, H), ``b_array_1`` (P, H2),
    ``w_array_2`` (P, H2), ``b_array_2`` (P,) (two hidden layers; a (P, H, H2) ``w_array_1`` with H ≠ H2
    is transposed). The older Ting et al. (2018) variant with ``w_array_1`` (P, H), ``b_array_1`` (P,),
    ``w_array_2`` (P,), ``b_array_2`` (P,) (flux = w2·σ(w1·σ(h) + b1) + b2) is read as a second hidden layer
    of one unit.
(b) one network for all pixels with leaky-ReLU (slope 0.01): ``w_array_0`` (H, L), ``b_array_0`` (H,),
    ``w_array_1`` (H2, H), ``b_array_1`` (H2,), ``w_array_2`` (P, H2), ``b_array_2`` (P,).

Weight matrices are (out, in), as ``torch.nn.Linear`` stores them and as the public code multiplies them
(``einsum('ij,j->i', w, x)``).

Threads: no function here calls ``torch.set_num_threads``; the caller (a Dask worker, a benchmark) decides.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from survey_scale._version import __version__
from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import atomic_write, save_npz
from survey_scale.core.grid import N_WAVE, wavelength_grid
from survey_scale.core.labels import LABEL_NAMES
from survey_scale.science.model_grid import ModelGrid

if TYPE_CHECKING:
    from survey_scale.science.emulator_set import EmulatorSet

FORMAT = "survey_scale.emulator/1"
ARCHITECTURES = ("perpixel", "shared")
ACTIVATIONS = ("sigmoid", "leaky_relu")
LEAKY_SLOPE = 0.01
DEFAULT_HIDDEN = {"perpixel": (100, 100), "shared": (300, 300, 300)}
DEFAULT_ACTIVATION = {"perpixel": "sigmoid", "shared": "sigmoid"}
"""Sigmoid for both: a leaky-ReLU network is piecewise linear, so χ² has kinks where a unit switches and the
Gauss–Newton model fails there (on a toy grid 1–12 % of Levenberg–Marquardt fits stalled at kinks, against
none with sigmoid units). Leaky-ReLU networks (the public Payne layout (b)) remain supported."""


class EmulatorFormatError(SurveyScaleError, ValueError):
    """A file is not a readable emulator (names the file and the offending array)."""


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
        """Write the emulator in the own format (module docstring) and return the path."""
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
of ``thedoppler``'s Cannon models (:mod:`survey_scale.synth.cannon_grid`): ``cool`` (T_eff 3,500–8,500 K, log g
0–5, v sin i 0–250 km s⁻¹: the cool-star model joined to the hot dwarfs across 7,500–8,500 K) and ``hot``
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


# --------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------


class _PerPixelParams(torch.nn.Module):
    """Per-pixel network weights as one parameter set per pixel chunk (chunks train independently)."""

    def __init__(self, sizes: Sequence[int], n_pix: int, chunk: int, gen: torch.Generator, mean_flux: torch.Tensor):
        super().__init__()
        self.bounds = [(p0, min(p0 + chunk, n_pix)) for p0 in range(0, n_pix, chunk)]
        self.chunks = torch.nn.ModuleList()
        for p0, p1 in self.bounds:
            m = torch.nn.ParameterList()
            n = p1 - p0
            for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
                bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default initialization, per pixel
                last = k == len(sizes) - 2  # the output layer is stored (n, H) / (n,)
                shape_w = (n, fan_in) if last else (n, fan_out, fan_in)
                shape_b = (n,) if last else (n, fan_out)
                m.append(torch.nn.Parameter((torch.rand(shape_w, generator=gen) * 2 - 1) * bound))
                m.append(torch.nn.Parameter((torch.rand(shape_b, generator=gen) * 2 - 1) * bound))
            with torch.no_grad():
                m[-1].copy_(mean_flux[p0:p1])  # start the output at the mean training spectrum
            self.chunks.append(m)

    def net(self, c: int, activation: str) -> _TorchNet:
        m = list(self.chunks[c])
        return _TorchNet("perpixel", activation, m[0:-2:2], m[1:-2:2], m[-2], m[-1])


INITS = ("scaled", "uniform")
SCHEDULES = ("plateau", "cosine", "anneal")
ANNEAL_FRACTION = 0.2
"""``schedule="anneal"``: the fraction of the steps, at the end, over which the rate falls linearly to 0."""
INIT_ROWS = 4096
"""Training spectra used by the data-dependent initialization (the first ones of the seeded split)."""
INIT_PREACT_STD = 1.0
"""Standard deviation of each hidden unit's pre-activation over the training labels after ``init="scaled"``."""


@torch.no_grad()
def _scaled_init_(layers: Sequence[torch.nn.Linear], x: torch.Tensor, activation: str) -> None:
    """Data-dependent initialization of a shared network, in place (``init="scaled"``).

    With the default uniform ±1/√fan_in weights a sigmoid layer passes on ~1/10 of the label signal (its
    slope is at most 1/4 and its outputs are offset by 0.5): after three layers the output varies by ~1e-3
    of the spectra's variation, the gradients carry as little, and training sits at the mean spectrum until
    Adam has grown the weights (the plateau). Here each hidden unit keeps its random direction but is
    rescaled and shifted so that its pre-activation has zero mean and standard deviation
    :data:`INIT_PREACT_STD` over the training labels ``x`` (n, L) — a sigmoid network so initialized is a
    properly scaled tanh network — and the output weights start at zero (the output bias holds the mean
    spectrum), so the first steps fit the spectra with the hidden features as they are instead of
    propagating noise through random output weights.
    """
    a = x
    for lin in layers[:-1]:
        z = a @ lin.weight.T
        scale = INIT_PREACT_STD / z.std(0).clamp_min(1e-12)
        lin.weight.mul_(scale.unsqueeze(1))
        lin.bias.copy_(-z.mean(0) * scale)
        a = _activate_(torch.addmm(lin.bias, a, lin.weight.T), activation)
    layers[-1].weight.zero_()


def train(
    grid: ModelGrid,
    architecture: str = "perpixel",
    *,
    hidden: Sequence[int] | None = None,
    activation: str | None = None,
    epochs: int = 2000,
    max_steps: int | None = None,
    max_time: float | None = None,
    patience: int = 40,
    lr: float = 1e-3,
    lr_decay: float = 0.5,
    batch_size: int = 256,
    valid_fraction: float = 0.1,
    eval_every: int | None = None,
    loss: str = "mse",
    device: str | torch.device | None = None,
    seed: int = 0,
    pixel_chunk: int | None = None,
    init: str = "scaled",
    schedule: str = "plateau",
    log: Callable[[str], None] | None = None,
) -> Emulator:
    """Train an emulator on a model grid with Adam and early stopping (SPEC §5.1, P2 §4.2).

    The grid is split 90/10 (``valid_fraction``) into training and validation sets with a seeded
    permutation. Every ``eval_every`` steps (default: one epoch) the validation loss is computed; the best
    weights are kept; the learning rate follows ``schedule``, and training stops after ``patience``
    evaluations without improvement, or at ``epochs``, ``max_steps`` or ``max_time`` seconds (whichever
    first; ``max_time`` makes the result depend on the machine's speed).

    Parameters
    ----------
    grid
        Labels (n, L) and normalized flux (n, P) (:class:`survey_scale.science.model_grid.ModelGrid`); its
        ``label_min``/``label_max`` become the emulator's ``x_min``/``x_max``.
    architecture
        ``"perpixel"`` (P2: per-pixel networks, default hidden (100, 100)) or ``"shared"`` (one network,
        default hidden (300, 300, 300)); both default to sigmoid units (:data:`DEFAULT_ACTIVATION`).
    hidden, activation
        Hidden widths and activation (``"sigmoid"`` or ``"leaky_relu"``).
    loss
        ``"mse"`` or ``"l1"`` (the public Payne trains with L1).
    device
        ``None``: CUDA if available, else CPU.
    seed
        Seeds the split, the initialization and the minibatch order (bit-identical results on one CPU
        with the same thread count, unless ``max_time`` stops the run).
    pixel_chunk
        Per-pixel networks are trained in chunks of pixels (independent parameter tensors, bounded memory).
    init
        ``"scaled"`` (default; shared networks): the data-dependent initialization of :func:`_scaled_init_`,
        which removes the plateau at the mean spectrum of deep sigmoid networks; ``"uniform"``: weights and
        biases uniform in ±1/√fan_in (torch's default; the output bias at the mean spectrum), as before.
        Per-pixel networks always start uniform.
    schedule
        ``"plateau"``: the learning rate is multiplied by ``lr_decay`` after ``patience // 2`` evaluations
        without improvement; ``"cosine"``: it falls from ``lr`` to 0 along half a cosine over ``epochs`` (or
        ``max_steps``); ``"anneal"``: it stays at ``lr``, then falls linearly to 0 over the last
        :data:`ANNEAL_FRACTION` of the steps. With the last two a run's length is set in advance; early
        stopping applies to all three.
    log
        Optional callable receiving one line per evaluation (step, epoch, validation loss, best so far).

    Returns
    -------
    Emulator
        ``meta`` holds the training figures: ``train_seconds``, ``n_steps``, ``n_epochs``, ``n_train``,
        ``n_valid``, ``valid_sigma`` (std of all validation residuals, in flux units; P2: 0.165 %),
        ``valid_sigma_deep`` (std where the true flux < 0.95; P2: 0.586 %), their robust Gaussian-core
        versions ``valid_sigma_gauss`` / ``valid_sigma_deep_gauss`` (1.4826 × MAD, as P2's Gaussian fits),
        ``valid_max_abs``, the loss history and the settings.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    hidden = tuple(int(h) for h in (hidden or DEFAULT_HIDDEN[architecture]))
    activation = activation or DEFAULT_ACTIVATION[architecture]
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if architecture == "perpixel":
        init = "uniform"  # recorded as applied: the data-dependent initialization is for shared networks
    if loss not in ("mse", "l1"):
        raise ValueError(f"loss must be 'mse' or 'l1', got {loss!r}")
    dev = resolve_device(device)
    t_start = time.perf_counter()
    n, n_lab = grid.labels.shape
    n_pix = grid.wave.size
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_valid = max(1, round(valid_fraction * n))
    if n - n_valid < 1:
        raise ValueError(f"train: a grid of {n} spectra is too small for a {valid_fraction:.0%} validation split")
    i_valid, i_train = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
    x_min, x_max = grid.label_min, grid.label_max
    x_all = ((grid.labels - x_min) / (x_max - x_min) - 0.5).astype(np.float32)
    x_tr = torch.from_numpy(x_all[i_train]).to(dev)
    x_va = torch.from_numpy(x_all[i_valid]).to(dev)
    y_tr = torch.from_numpy(np.ascontiguousarray(grid.flux[i_train])).to(dev)
    y_va = torch.from_numpy(np.ascontiguousarray(grid.flux[i_valid])).to(dev)
    gen = torch.Generator().manual_seed(seed)
    mean_flux = y_tr.mean(0).cpu()
    sizes = (n_lab, *hidden, 1)

    if architecture == "perpixel":
        chunk = pixel_chunk or max(1, min(n_pix, 2**21 // max(1, batch_size * max(hidden))))
        model: torch.nn.Module = _PerPixelParams(sizes, n_pix, chunk, gen, mean_flux).to(dev)
        nets = [model.net(c, activation) for c in range(len(model.bounds))]
        bounds = model.bounds
    else:
        layers = []
        for fan_in, fan_out in zip((n_lab, *hidden), (*hidden, n_pix), strict=True):
            lin = torch.nn.Linear(fan_in, fan_out)
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=gen) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=gen) * 2 - 1) * bound)
            layers.append(lin)
        with torch.no_grad():
            layers[-1].bias.copy_(mean_flux)
        model = torch.nn.ModuleList(layers).to(dev)
        if init == "scaled":
            _scaled_init_(layers, x_tr[:INIT_ROWS], activation)
        nets = [
            _TorchNet(
                "shared",
                activation,
                [lin.weight for lin in layers[:-1]],
                [lin.bias for lin in layers[:-1]],
                layers[-1].weight,
                layers[-1].bias,
            )
        ]
        bounds = [(0, n_pix)]

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.functional.mse_loss if loss == "mse" else torch.nn.functional.l1_loss
    n_train = x_tr.shape[0]
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    eval_every = eval_every or steps_per_epoch
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)

    def validate() -> float:
        with torch.no_grad():
            tot = 0.0
            for net, (p0, p1) in zip(nets, bounds, strict=True):
                for i in range(0, x_va.shape[0], 1024):
                    pred = net.forward_autograd(x_va[i : i + 1024])
                    tot += float(loss_fn(pred, y_va[i : i + 1024, p0:p1], reduction="sum"))
            return tot / (x_va.shape[0] * n_pix)

    best = math.inf
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    since_best, step, history = 0, 0, []
    order = torch.randperm(n_train, generator=gen)
    pos = 0
    stop_reason = "epochs"
    while step < total_steps:
        if pos + batch_size > n_train:
            order = torch.randperm(n_train, generator=gen)
            pos = 0
        idx = order[pos : pos + batch_size].to(dev)
        pos += batch_size
        xb, yb = x_tr[idx], y_tr[idx]
        if schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total_steps))
        elif schedule == "anneal":
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (total_steps - step) / (ANNEAL_FRACTION * total_steps))
        opt.zero_grad(set_to_none=True)
        for net, (p0, p1) in zip(nets, bounds, strict=True):
            pred = net.forward_autograd(xb)
            # sum over chunks of the per-chunk losses = the loss over all pixels (mean over batch × pixels)
            (loss_fn(pred, yb[:, p0:p1], reduction="sum") / (xb.shape[0] * n_pix)).backward()
        opt.step()
        step += 1
        if step % eval_every == 0 or step == total_steps:
            v = validate()
            history.append((step, v))
            if v < best * (1 - 1e-4):
                best, since_best = v, 0
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            else:
                since_best += 1
                if schedule == "plateau" and since_best % max(1, patience // 2) == 0:
                    for group in opt.param_groups:
                        group["lr"] *= lr_decay
            if log is not None:
                log(f"step {step} epoch {step / steps_per_epoch:.1f} valid {v:.3e} best {best:.3e}")
            if since_best >= patience:
                stop_reason = "early_stopping"
                break
            if max_time is not None and time.perf_counter() - t_start > max_time:
                stop_reason = "max_time"
                break
    else:
        stop_reason = "max_steps" if max_steps is not None and step >= max_steps else "epochs"
    model.load_state_dict(best_state)
    train_seconds = time.perf_counter() - t_start

    # export to numpy in the canonical layout
    with torch.no_grad():
        if architecture == "perpixel":
            per_chunk = [[p.detach().cpu().numpy() for p in m] for m in model.chunks]
            n_layers = len(hidden)
            ws, bs = [], []
            for k in range(n_layers):
                ws.append(np.concatenate([c[2 * k] for c in per_chunk]))
                bs.append(np.concatenate([c[2 * k + 1] for c in per_chunk]))
            ow = np.concatenate([c[2 * n_layers] for c in per_chunk])
            ob = np.concatenate([c[2 * n_layers + 1] for c in per_chunk])
        else:
            ws = [lin.weight.detach().cpu().numpy() for lin in layers[:-1]]
            bs = [lin.bias.detach().cpu().numpy() for lin in layers[:-1]]
            ow = layers[-1].weight.detach().cpu().numpy()
            ob = layers[-1].bias.detach().cpu().numpy()
    meta: dict[str, Any] = {
        "trained_with": f"survey_scale {__version__}, torch {torch.__version__}",
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "train_seconds": train_seconds,
        "n_steps": step,
        "n_epochs": step / steps_per_epoch,
        "stop_reason": stop_reason,
        "final_lr": float(opt.param_groups[0]["lr"]),
        "n_train": int(n_train),
        "n_valid": int(n_valid),
        "settings": {
            "hidden": list(hidden),
            "activation": activation,
            "lr": lr,
            "lr_decay": lr_decay,
            "batch_size": batch_size,
            "patience": patience,
            "loss": loss,
            "seed": seed,
            "valid_fraction": valid_fraction,
            "epochs": epochs,
            "max_steps": max_steps,
            "max_time": max_time,
            "init": init,
            "schedule": schedule,
        },
        "grid_meta": grid.meta,
        "history": history,
    }
    em = Emulator(architecture, activation, ws, bs, ow, ob, x_min, x_max, grid.label_names, grid.wave, meta)
    em.meta.update(validation_precision(em, grid.labels[i_valid], grid.flux[i_valid], device=dev))
    return em


def validation_precision(
    em: Emulator, labels: np.ndarray, flux: np.ndarray, device: str | torch.device | None = None
) -> dict[str, float]:
    """Interpolation precision of ``em`` on held-out model spectra (P2 Fig. 6).

    Returns
    -------
    dict
        ``valid_sigma`` / ``valid_sigma_deep``: standard deviation of (emulator − model) flux over all pixels
        / over pixels with model flux < 0.95; ``valid_sigma_gauss`` / ``valid_sigma_deep_gauss``: 1.4826 ×
        median absolute deviation (the σ of a Gaussian fitted to the core, as P2 reports); ``valid_max_abs``;
        ``valid_bias`` (mean residual). All in units of normalized flux (multiply by 100 for %).
    """
    pred = em.predict(labels, device=device)
    res = (pred.astype(np.float64) - flux).ravel()
    deep = (np.asarray(flux) < 0.95).ravel()

    def mad(r: np.ndarray) -> float:
        return float(1.4826 * np.median(np.abs(r - np.median(r)))) if r.size else float("nan")

    return {
        "valid_sigma": float(np.std(res)),
        "valid_sigma_deep": float(np.std(res[deep])) if deep.any() else float("nan"),
        "valid_sigma_gauss": mad(res),
        "valid_sigma_deep_gauss": mad(res[deep]),
        "valid_max_abs": float(np.max(np.abs(res))),
        "valid_bias": float(np.mean(res)),
        "valid_frac_deep": float(deep.mean()),
    }
