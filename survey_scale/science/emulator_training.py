"""Training an :class:`~survey_scale.science.emulator_network.Emulator` on a model grid (SPEC §5.1; P2 §4.2).

:func:`train` fits the network to a :class:`~survey_scale.science.model_grid.ModelGrid` (labels (n, L) in
physical units, flux (n, P) continuum-normalized) with Adam and early stopping on a seeded 90/10 split, with
the data-dependent initialization :func:`_scaled_init_` for shared networks and a choice of learning-rate
schedules; :func:`validation_precision` measures the result on held-out spectra (σ of emulator − model flux,
in units of normalized flux).

Notes
-----
Measured training times and precisions, and how the shipped emulators were trained: ``benchmarks/README.md``,
"Emulator training measurements". No function here calls ``torch.set_num_threads``; the caller decides.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from survey_scale._version import __version__
from survey_scale.science.emulator_network import (
    ACTIVATIONS,
    ARCHITECTURES,
    DEFAULT_ACTIVATION,
    DEFAULT_HIDDEN,
    Emulator,
    _activate_,
    _TorchNet,
    resolve_device,
)
from survey_scale.science.model_grid import ModelGrid


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
