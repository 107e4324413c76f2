"""Absolute magnitudes MKs from spectra: geometric MKs, the P1 networks and their uncertainty model (SPEC §8).

P1 §5 in four parts, each pure (numpy in, numpy out; torch only inside :func:`train_network`):

- :func:`geometric_mks`: MKs = Ks − A_Ks + 5 log10(ϖ_corr / mas) − 10 and its error, with the parallax
  zero point of :func:`corrected_parallax` (Leung & Bovy 2019 for Gaia DR2 by default).
- :func:`training_split`: stars with ϖ/σ_ϖ above a limit; 4/5 of those with S/N above ``min_snr`` train,
  the other 1/5 and the lower-S/N stars test. The fifth is chosen by a hash of ``star_id``, so a star keeps
  its side when the release grows and all its visits are on one side.
- :func:`train_network`: the network of P1 Eq. 6 — two hidden layers of 100 sigmoid neurons, dropout 0.2 —
  trained with PyTorch on the pixels a network uses (:func:`network_pixels`: the full range minus the
  telluric/interstellar bands for non-emission spectra, the clean windows only for emission spectra). The
  result is a :class:`MKsNetwork` of numpy weights, evaluated without torch (:meth:`MKsNetwork.predict`).
- :func:`sample_uncertainty_model`: P1 Eq. 7–14, the posterior of (ε, δ, σ_int, σ_s^100, κ) with flat priors
  sampled by ``emcee``; :func:`mks_error` is the per-spectrum MKs_err = √(σ_int² + (σ_s^100 / (S/N/100))² +
  (κ s)²).

The term κ s is not in P1. s is the standard deviation of the MKs of the cross-fitted networks
(:class:`CrossFitNetworks`, four networks each trained without one fifth of the stars): where they disagree the
spectrum is far from what they learned (a rare luminous star, the edge of the training set) and the MKs is
worse. On a mock release no one tuned on (seed 31), among the stars no network trained on, the error of MKs
grew with s from 0.60 mag (s < 0.1) to 1.85 mag (s > 0.4), and a global σ_int made such stars the false
binaries; κ is sampled with the rest, on the same test stars (issue 27). A star that trained has no such s (three
of the four networks fitted it) and its MKs comes from one network, not the mean of four: its spectra have their
own σ_int and σ_s^100 (no κ), fitted on the training stars' out-of-fold MKs once the binaries are out
(:func:`error_terms`).

:func:`train_mks_model` puts them together (the sets, the two networks, the binaries out and the networks
retrained, the MCMC or its fallback; :class:`TrainingSettings`), on numpy columns, with two callbacks for
what needs the survey's spectra: reading the training spectra and predicting over the test spectra.
"""

from __future__ import annotations

import json
import logging
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.masks import MKS_NETWORK_WINDOWS, clean_window_mask, window_mask
from survey_scale.science.distance import binary_flags, spectrophotometric_parallax

log = logging.getLogger(__name__)


class MKsModelError(SurveyScaleError, ValueError):
    """A file is not a readable MKs model (names the file and the cause)."""


class TooFewSpectra(ValueError):
    """Too few usable spectra to train a network or sample the uncertainty model."""


class TooFewStars(TooFewSpectra):
    """Too few stars with good parallaxes for the training and test sets (:func:`mks_sets`)."""


PARAMETERS = ("epsilon", "delta", "sigma_int", "sigma_s100", "kappa")
"""The parameters of P1's uncertainty model (Eq. 7–14), in the order of the MCMC samples."""

PRIOR_BOUNDS = {
    "epsilon": (-1.0, 1.0),
    "delta": (-5.0, 5.0),
    "sigma_int": (0.0, 3.0),
    "sigma_s100": (0.0, 3.0),
    "kappa": (0.0, 5.0),
}
"""Support of the flat priors."""


def network_pixels(wave: np.ndarray, emission: bool) -> np.ndarray:
    """Boolean mask of the pixels a network reads: the full range minus :data:`MKS_NETWORK_WINDOWS`
    (non-emission), or the PCA clean windows (emission; SPEC §4), on wavelengths ``wave`` (Å)."""
    wave = np.asarray(wave, dtype=np.float64)
    if emission:
        return clean_window_mask(wave)
    return ~window_mask(wave, MKS_NETWORK_WINDOWS)


# --- geometric MKs and the sets ---------------------------------------------------------------------------


def corrected_parallax(
    parallax: np.ndarray, g_mag: np.ndarray, offset_mas: float, slope_mas: float, g_ref: float
) -> tuple[np.ndarray, np.ndarray]:
    """ϖ_corr = ϖ + offset + slope (G − g_ref) (mas) and the correction added, both (n,).

    Without G the correction at G = g_ref is used (the relation's centre)."""
    g = np.asarray(g_mag, dtype=np.float64)
    correction = offset_mas + slope_mas * (np.where(np.isfinite(g), g, g_ref) - g_ref)
    return np.asarray(parallax, dtype=np.float64) + correction, correction


def geometric_mks(
    ks: np.ndarray,
    ks_err: np.ndarray,
    aks: np.ndarray,
    aks_err: np.ndarray,
    parallax: np.ndarray,
    parallax_error: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Geometric MKs = Ks − A_Ks + 5 log10(ϖ) − 10 and its error (mag), ϖ in mas, corrected (SPEC §8).

    The error is √(δKs² + δA_Ks² + (5/ln 10 · δϖ/ϖ)²) (P1 Eq. 12); NaN where ϖ ≤ 0 or an input is missing."""
    plx = np.asarray(parallax, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = plx > 0
        log_plx = np.log10(np.where(good, plx, np.nan))
        mks = np.asarray(ks, np.float64) - np.asarray(aks, np.float64) + 5.0 * log_plx - 10.0
        err = np.sqrt(
            np.asarray(ks_err, np.float64) ** 2
            + np.asarray(aks_err, np.float64) ** 2
            + (5.0 / np.log(10.0) * np.asarray(parallax_error, np.float64) / plx) ** 2
        )
    return mks, np.where(np.isfinite(mks), err, np.nan)


def star_ids(star_id: np.ndarray) -> np.ndarray:
    """``star_id`` (n,) as fixed-width unicode, whatever it was read as (zarr's variable-width ``StringDType``
    does not cast to it directly)."""
    return np.asarray(star_id).astype(object).astype(str)


def star_fold(star_id: np.ndarray, n_folds: int = 5) -> np.ndarray:
    """A stable fold 0..n_folds−1 per star: CRC-32 of the star_id (the same on every machine and release)."""
    ids = star_ids(star_id)
    return np.array([zlib.crc32(s.encode()) % n_folds for s in ids], dtype=np.int64)


def training_split(
    star_id: np.ndarray,
    parallax_over_error: np.ndarray,
    snr: np.ndarray,
    usable: np.ndarray,
    min_parallax_snr: float,
    min_snr: float,
    bright: np.ndarray | None = None,
    n_folds: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and test masks (SPEC §8, P1 §5.2), (n,) bool each.

    Both need ϖ/σ_ϖ > ``min_parallax_snr`` and ``usable`` (a geometric MKs, a spectrum). Of the spectra with
    S/N > ``min_snr``, those whose star is in folds 1…n_folds−1 (4/5) train; fold 0 and every lower-S/N
    spectrum test. ``bright`` marks more spectra allowed to train (in folds 1…n_folds−1, above ``min_snr``)
    though their parallax is poorer — P1 added ~200 stars with MKs < −1.5 to fill the bright end, where
    few stars are near enough for a 10σ parallax; they never enter the test set."""
    usable = np.asarray(usable, bool)
    good = usable & (np.nan_to_num(parallax_over_error, nan=-1.0) > min_parallax_snr)
    high = np.nan_to_num(np.asarray(snr, np.float64), nan=-1.0) > min_snr
    in_train_folds = star_fold(star_id, n_folds) != 0
    extra = usable & np.asarray(bright, bool) if bright is not None else np.zeros_like(good)
    train = (good | extra) & high & in_train_folds
    return train, good & ~train


# --- the network ---------------------------------------------------------------------------------------------


@dataclass
class MKsNetwork:
    """A trained P1 Eq. 6 network in numpy: standardized pixels → two sigmoid layers → MKs.

    ``pixels`` (P,) bool selects the cube's wavelength pixels; ``x_mean``, ``x_scale`` (n_in,) standardize
    them; ``weights``/``biases`` are the three linear layers (``(n_out, n_in)`` as torch stores them);
    ``y_mean``, ``y_scale`` undo the target's standardization. Dropout is off at prediction.
    """

    pixels: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    y_mean: float
    y_scale: float
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(self, flux: np.ndarray, rows: np.ndarray | None = None, block: int = 4096) -> np.ndarray:
        """MKs (mag, float64) of the (n, P) spectra ``flux`` on the cube's grid, or of those at the indices
        ``rows`` (m,) only (no copy of the rest); NaN where a used pixel is not finite."""
        flux = np.asarray(flux)
        rows = np.arange(flux.shape[0]) if rows is None else np.asarray(rows)
        out = np.full(rows.size, np.nan)
        for start in range(0, rows.size, block):
            x = (flux[rows[start : start + block]][:, self.pixels].astype(np.float64) - self.x_mean) / self.x_scale
            ok = np.isfinite(x).all(axis=1)
            h = np.where(ok[:, None], x, 0.0)
            for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = h @ w.T + b
                if k < len(self.weights) - 1:
                    h = 1.0 / (1.0 + np.exp(-h))
            out[start : start + block] = np.where(ok, h[:, 0] * self.y_scale + self.y_mean, np.nan)
        return out

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The network as named arrays (for one ``.npz`` holding several networks)."""
        out = {
            f"{prefix}pixels": self.pixels,
            f"{prefix}x_mean": self.x_mean,
            f"{prefix}x_scale": self.x_scale,
            f"{prefix}y": np.array([self.y_mean, self.y_scale]),
            f"{prefix}meta": np.array(json.dumps(self.meta)),
        }
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}w{k}"], out[f"{prefix}b{k}"] = w, b
        return out

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], prefix: str) -> MKsNetwork:
        n_layers = sum(1 for k in data if k.startswith(f"{prefix}w"))
        return cls(
            pixels=np.asarray(data[f"{prefix}pixels"], bool),
            x_mean=np.asarray(data[f"{prefix}x_mean"]),
            x_scale=np.asarray(data[f"{prefix}x_scale"]),
            weights=[np.asarray(data[f"{prefix}w{k}"]) for k in range(n_layers)],
            biases=[np.asarray(data[f"{prefix}b{k}"]) for k in range(n_layers)],
            y_mean=float(data[f"{prefix}y"][0]),
            y_scale=float(data[f"{prefix}y"][1]),
            meta=json.loads(str(data[f"{prefix}meta"])),
        )


FUSED = ("cpu", "cuda")
"""Devices where torch's Adam has a fused implementation."""


@dataclass(frozen=True)
class NetworkSettings:
    """How :func:`train_network` trains (defaults: P1 Eq. 6 and a standard Adam schedule)."""

    hidden: tuple[int, ...] = (100, 100)
    dropout: float = 0.2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    max_epochs: int = 600
    patience: int = 40
    validation_fraction: float = 0.1
    error_floor: float = 0.1
    seed: int = 0
    device: str = "cpu"


_BLOCK = 4096
"""Spectra per block where :func:`train_network` works through the training spectra (bounds its temporaries)."""


def _gathered(flux: np.ndarray, rows: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``flux[rows][:, pixels]`` as one new float32 array, gathered block by block (no wider temporary)."""
    out = np.empty((rows.size, int(np.count_nonzero(pixels))), dtype=np.float32)
    columns = np.flatnonzero(pixels)
    for start in range(0, rows.size, _BLOCK):
        out[start : start + _BLOCK] = flux[rows[start : start + _BLOCK]][:, columns]
    return out


def train_network(
    flux: np.ndarray,
    mks: np.ndarray,
    mks_err: np.ndarray,
    pixels: np.ndarray,
    settings: NetworkSettings,
    star_id: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    init: MKsNetwork | None = None,
    flux_rows: np.ndarray | None = None,
) -> MKsNetwork:
    """Train a P1 Eq. 6 network on (n, P) spectra and their geometric MKs (mag) with errors.

    The loss is the mean squared error weighted by 1 / (mks_err² + error_floor²) — a star with a poor
    parallax pulls less — times ``weights`` if given (e.g. :func:`balancing_weights`). A
    ``validation_fraction`` of the stars (by ``star_id`` hash) is held out for early stopping (``patience``
    epochs without improvement; the best weights are kept). Deterministic for a given
    ``seed`` and thread count; the caller sets torch's threads.

    ``init``: a network of the same pixels and layers to continue from (its weights and its standardization
    of the spectra and of MKs), e.g. the same fold's network before a few training stars were removed
    (:func:`train_mks_model`'s binary iterations): it starts near its optimum, so early stopping ends it in
    far fewer epochs.

    ``flux_rows``: the rows of ``flux`` that ``mks`` (and the other per-spectrum arguments) describe, when
    ``flux`` holds more (the shared training spectra of :func:`train_job`); default all of them. The network's
    pixels of those rows are the only copy of the spectra made (float32, standardized in place), so a
    training takes ~4 bytes per used pixel and spectrum besides ``flux``.
    """
    import torch

    x = _gathered(flux, np.arange(len(mks)) if flux_rows is None else np.asarray(flux_rows), pixels)
    rows = np.flatnonzero(np.isfinite(mks) & np.isfinite(mks_err) & np.isfinite(x).all(axis=1))
    if rows.size < 20:
        raise TooFewSpectra(f"train_network: {rows.size} usable training spectra; at least 20 are needed")
    x = x[rows] if rows.size < len(x) else x
    y = np.asarray(mks, np.float64)[rows]
    w = 1.0 / (np.asarray(mks_err, np.float64)[rows] ** 2 + settings.error_floor**2)
    if weights is not None:
        w = w * np.asarray(weights, np.float64)[rows]
    if init is None:
        x_mean = x.mean(axis=0, dtype=np.float64)
        squares = sum(((x[i : i + _BLOCK] - x_mean) ** 2).sum(axis=0) for i in range(0, len(x), _BLOCK))
        x_scale = np.maximum(np.sqrt(squares / len(x)), 1e-3)
        y_mean, y_scale = float(np.average(y, weights=w)), float(max(np.std(y), 1e-3))
    elif init.pixels.shape != np.shape(pixels) or not (init.pixels == pixels).all():
        raise ValueError(f"train_network: init uses {int(init.pixels.sum())} pixels, not these {int(pixels.sum())}")
    else:
        x_mean, x_scale, y_mean, y_scale = init.x_mean, init.x_scale, init.y_mean, init.y_scale
    ids = np.asarray(star_id)[rows] if star_id is not None else rows
    n_val_folds = max(2, round(1.0 / settings.validation_fraction))
    val = star_fold(ids, n_val_folds) == n_val_folds - 1
    if val.all() or not val.any():
        val = np.arange(rows.size) % n_val_folds == 0

    torch.manual_seed(settings.seed)
    device = torch.device(settings.device)
    layers: list[torch.nn.Module] = []
    n_in = int(pixels.sum())
    for width in settings.hidden:
        layers += [torch.nn.Linear(n_in, width), torch.nn.Sigmoid(), torch.nn.Dropout(settings.dropout)]
        n_in = width
    layers.append(torch.nn.Linear(n_in, 1))
    net = torch.nn.Sequential(*layers).to(device=device, dtype=torch.float32)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    if init is not None:
        if [tuple(m.weight.shape) for m in linears] != [w.shape for w in init.weights]:
            raise ValueError(
                f"train_network: init has layers {[w.shape for w in init.weights]}, the settings "
                f"{[tuple(m.weight.shape) for m in linears]}"
            )
        with torch.no_grad():
            for layer, weight, bias in zip(linears, init.weights, init.biases, strict=True):
                layer.weight.copy_(torch.as_tensor(weight)), layer.bias.copy_(torch.as_tensor(bias))

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    for start in range(0, len(x), _BLOCK):  # standardized in place (in float64, stored as float32)
        x[start : start + _BLOCK] = (x[start : start + _BLOCK] - x_mean) / x_scale
    xt, yt = torch.from_numpy(x).to(device), tensor((y - y_mean) / y_scale)
    wt = tensor(w / w.mean())
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    # fused: one kernel per step instead of a Python loop over the parameters (~15 % of the training's CPU)
    opt = torch.optim.Adam(
        net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=device.type in FUSED
    )
    gen = torch.Generator().manual_seed(settings.seed)
    best, best_state, since, epochs = np.inf, None, 0, 0
    vt = torch.as_tensor(val_idx, device=device)
    while epochs < settings.max_epochs and since < settings.patience:
        epochs += 1
        net.train()
        order = torch.as_tensor(train_idx)[torch.randperm(train_idx.size, generator=gen)].to(device)
        for start in range(0, order.numel(), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            opt.zero_grad()
            loss = (wt[batch] * (net(xt[batch])[:, 0] - yt[batch]) ** 2).mean()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_loss = float((wt[vt] * (net(xt[vt])[:, 0] - yt[vt]) ** 2).mean())
        if val_loss < best - 1e-6:
            best, since = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since += 1
    assert best_state is not None
    net.load_state_dict(best_state)
    return MKsNetwork(
        pixels=np.asarray(pixels, bool),
        x_mean=x_mean,
        x_scale=x_scale,
        weights=[m.weight.detach().cpu().double().numpy() for m in linears],
        biases=[m.bias.detach().cpu().double().numpy() for m in linears],
        y_mean=y_mean,
        y_scale=y_scale,
        meta={
            "n_train": int(train_idx.size),
            "n_validation": int(val_idx.size),
            "epochs": epochs,
            "warm_start": init is not None,
            "validation_loss": float(best),
            "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        },
    )


TRAINING_FOLDS = (1, 2, 3, 4)
"""The :func:`star_fold` values (of 5) whose stars may train (fold 0 only tests): one network per fold."""


@dataclass
class CrossFitNetworks:
    """The networks of one kind, one per training fold (:data:`TRAINING_FOLDS`): ``networks[k]`` trained on
    the training stars outside fold ``TRAINING_FOLDS[k]``.

    A spectrum of a star that trained (``trained_stars``) is predicted by the one network that never saw that
    star; every other spectrum by the mean of all of them. So no MKs is a network's in-sample prediction: one
    network predicting its own training stars is about twice as precise on them as on the rest of the survey,
    and the uncertainty model, fitted on test stars, made their errors ~2× too large (issue 27).
    """

    networks: list[MKsNetwork]
    trained_stars: np.ndarray
    """The star_id of every star some network trained on (sorted strings)."""

    def predict(
        self, flux: np.ndarray, star_id: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """MKs (mag, float64) of (n, P) spectra of the stars ``star_id`` (n,), or of those at the indices
        ``rows`` (m,) only, and the networks' disagreement: the standard deviation (ddof 1) of every network's
        MKs (0 with one network); NaN for a star that trained, which all networks but one fitted: their spread
        would measure its out-of-fold residual itself (a training binary, fitted bright by three networks and
        predicted faint by the fourth, looked uncertain instead of binary).

        Each network runs only on the spectra it predicts: a trained star's on its held-out network alone."""
        rows = np.arange(np.shape(flux)[0]) if rows is None else np.asarray(rows)
        ids = star_ids(np.asarray(star_id)[rows])
        trained = np.isin(ids, self.trained_stars)
        held_out = np.full(ids.size, -1)
        held_out[trained] = np.searchsorted(TRAINING_FOLDS, star_fold(ids[trained]))
        out = np.full(ids.size, np.nan)
        spread = np.full(ids.size, np.nan)
        for k, net in enumerate(self.networks):
            use = held_out == k
            out[use] = net.predict(flux, rows[use])
        if not trained.all():
            each = np.stack([net.predict(flux, rows[~trained]) for net in self.networks])
            out[~trained] = each.mean(axis=0)
            spread[~trained] = each.std(axis=0, ddof=1) if len(self.networks) > 1 else 0.0
        return out, spread

    @property
    def meta(self) -> list[dict[str, Any]]:
        return [net.meta for net in self.networks]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}trained_stars": self.trained_stars}
        for k, net in enumerate(self.networks):
            out.update(net.arrays(f"{prefix}{k}/"))
        return out

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], prefix: str) -> CrossFitNetworks:
        n = len({k[len(prefix) :].split("/")[0] for k in data if k.startswith(prefix) and k.count("/") == 2})
        return cls(
            networks=[MKsNetwork.from_arrays(data, f"{prefix}{k}/") for k in range(n)],
            trained_stars=star_ids(data[f"{prefix}trained_stars"]),
        )


def predict_own_kind(
    networks: Mapping[str, CrossFitNetworks], flux: np.ndarray, star_id: np.ndarray, emission: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """MKs (mag) and the networks' disagreement (:meth:`CrossFitNetworks.predict`) of (n, P) spectra of the stars
    ``star_id`` (n,), each by the networks of its own kind: ``emission`` (n,) bool takes ``networks["emission"]``,
    the rest ``networks["non_emission"]``; NaN where its kind has no networks."""
    emission = np.asarray(emission, bool)
    mks = np.full(emission.size, np.nan)
    spread = np.full(emission.size, np.nan)
    for name, use in (("non_emission", ~emission), ("emission", emission)):
        if use.any() and name in networks:
            mks[use], spread[use] = networks[name].predict(flux, star_id, np.flatnonzero(use))
    return mks, spread


NetworkJob = tuple
"""One network to train on rows of a shared (n, P) flux array: ``(rows, mks, mks_err, pixels, settings,
star_id, weights, init)`` — ``rows`` (m,) indexes the flux, the rest are :func:`train_network`'s arguments for
them."""


def train_job(flux: np.ndarray, rows: np.ndarray, *args: Any) -> MKsNetwork:
    """:func:`train_network` on the job's rows of ``flux`` (a :data:`NetworkJob` after the flux)."""
    return train_network(flux, *args, flux_rows=rows)


def train_serially(flux: np.ndarray, jobs: list[NetworkJob]) -> list[MKsNetwork]:
    """Each job in turn, in this process (the default of :func:`train_mks_model`)."""
    return [train_job(flux, *job) for job in jobs]


def cross_fit_jobs(
    rows: np.ndarray,
    mks: np.ndarray,
    mks_err: np.ndarray,
    pixels: np.ndarray,
    settings: NetworkSettings,
    star_id: np.ndarray,
    weights: np.ndarray | None = None,
    init: CrossFitNetworks | None = None,
) -> list[NetworkJob]:
    """The jobs of a :class:`CrossFitNetworks`, one per training fold, each on the stars outside it (seeds
    ``seed + k``): ``rows`` (n,) index the training flux, the other arguments as :func:`train_network`'s for
    those rows, every star in a training fold; ``init``: networks of the same folds to continue from (fold by
    fold). The jobs are independent: a caller may train them in parallel."""
    ids = star_ids(star_id)
    fold = star_fold(ids)
    jobs = []
    for k, held_out in enumerate(TRAINING_FOLDS):
        use = fold != held_out
        w = None if weights is None else weights[use]
        start = None if init is None else init.networks[k]
        jobs.append(
            (rows[use], mks[use], mks_err[use], pixels, replace(settings, seed=settings.seed + k), ids[use], w, start)
        )
    return jobs


def balancing_weights(mks: np.ndarray, bin_width: float = 0.5, limits: tuple[float, float] = (0.3, 5.0)) -> np.ndarray:
    """Loss weights that even out the MKs distribution of a training set: the median occupancy of the
    ``bin_width`` bins over each star's bin, clipped to ``limits``. Without them the few luminous stars
    (those near enough for a good parallax are rare) weigh little and the network pulls them toward the
    mean MKs — too faint, and then flagged as binaries."""
    mks = np.asarray(mks, np.float64)
    finite = np.isfinite(mks)
    out = np.ones(mks.size)
    if not finite.any():
        return out
    edges = np.arange(np.floor(mks[finite].min()), mks[finite].max() + bin_width, bin_width)
    counts, edges = np.histogram(mks[finite], bins=edges)
    occupancy = counts[np.clip(np.digitize(mks[finite], edges) - 1, 0, counts.size - 1)]
    out[finite] = np.clip(np.median(counts[counts > 0]) / np.maximum(occupancy, 1), *limits)
    return out


# --- the uncertainty model (P1 Eq. 7-14) -----------------------------------------------------------------------


def log_likelihood(
    theta: np.ndarray,
    mks_spec: np.ndarray,
    mks_geo: np.ndarray,
    mks_geo_err: np.ndarray,
    snr: np.ndarray,
    spread: np.ndarray,
) -> np.ndarray:
    """ln P of P1 Eq. 14 summed over stars, for (k, 5) parameter vectors (ε, δ, σ_int, σ_s^100, κ); −inf outside
    the flat priors (:data:`PRIOR_BOUNDS`). ``mks_geo`` = m0 + 5 log ϖ − 10, ``mks_geo_err`` = σ_ϖ,m0,
    ``spread`` the networks' disagreement s (mag; the variance gains (κ s)², module docstring)."""
    theta = np.atleast_2d(theta)
    eps, delta, s_int, s100, kappa = (theta[:, k : k + 1] for k in range(len(PARAMETERS)))
    var = s_int**2 + (s100 / (snr / 100.0)) ** 2 + (kappa * spread) ** 2 + mks_geo_err**2
    resid = mks_spec - ((1.0 + eps) * mks_geo + delta)
    ll = -0.5 * np.sum(resid**2 / var + np.log(2.0 * np.pi * var), axis=1)
    inside = np.ones(theta.shape[0], bool)
    for k, name in enumerate(PARAMETERS):
        lo, hi = PRIOR_BOUNDS[name]
        inside &= (theta[:, k] > lo) & (theta[:, k] < hi)
    return np.where(inside, ll, -np.inf)


def max_likelihood(
    mks_spec: np.ndarray, mks_geo: np.ndarray, mks_geo_err: np.ndarray, snr: np.ndarray, spread: np.ndarray
) -> np.ndarray:
    """The (ε, δ, σ_int, σ_s^100, κ) maximizing :func:`log_likelihood` (Nelder–Mead from (0, 0, 0.2, 0.1, 0.5);
    the likelihood is even in the two σ and κ, so they are searched as absolute values)."""
    from scipy.optimize import minimize

    args = tuple(np.asarray(a, np.float64) for a in (mks_spec, mks_geo, mks_geo_err, snr, spread))
    sign = np.array([1.0, 1.0, 0.0, 0.0, 0.0])

    def positive(t: np.ndarray) -> np.ndarray:
        return t * sign + np.abs(t) * (1.0 - sign)

    res = minimize(
        lambda t: -float(log_likelihood(positive(t), *args)[0]),
        np.array([0.0, 0.0, 0.2, 0.1, 0.5]),
        method="Nelder-Mead",
        options={"xatol": 1e-5, "fatol": 1e-6, "maxiter": 6000},
    )
    return positive(res.x)


def sample_uncertainty_model(
    mks_spec: np.ndarray,
    mks_geo: np.ndarray,
    mks_geo_err: np.ndarray,
    snr: np.ndarray,
    spread: np.ndarray,
    n_walkers: int = 32,
    n_steps: int = 3000,
    n_burn: int = 1000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Sample P1 Eq. 13 with ``emcee`` (flat priors) for the stars given, (n,) each (``spread``: the networks'
    disagreement, :func:`log_likelihood`).

    Returns
    -------
    samples : numpy.ndarray
        (n_walkers · (n_steps − n_burn), 5) posterior samples of :data:`PARAMETERS`.
    summary : dict
        Per parameter: ``mean``, ``median``, ``p16``, ``p84``, ``p2_5``, ``p97_5``; with ``n_stars``,
        ``acceptance_fraction``, ``autocorr_time`` (steps; NaN when the chain is too short to tell) and the
        sampler settings.
    """
    import emcee

    args = tuple(np.asarray(a, np.float64) for a in (mks_spec, mks_geo, mks_geo_err, snr, spread))
    if args[0].size < 10:
        raise TooFewSpectra(f"sample_uncertainty_model: {args[0].size} stars; at least 10 are needed")
    start = max_likelihood(*args)
    rng = np.random.default_rng(seed)
    n_dim = len(PARAMETERS)
    p0 = start + 1e-3 * rng.standard_normal((n_walkers, n_dim)) * np.maximum(np.abs(start), 0.05)
    p0[:, 2:] = np.abs(p0[:, 2:])
    sampler = emcee.EnsembleSampler(n_walkers, n_dim, lambda t: log_likelihood(t, *args), vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(p0, n_steps, progress=False)
    samples = sampler.get_chain(discard=n_burn, flat=True)
    try:
        tau = sampler.get_autocorr_time(discard=n_burn, quiet=True)
    except Exception:  # emcee raises when the chain is far too short to estimate it
        tau = np.full(n_dim, np.nan)
    summary: dict[str, Any] = {
        "n_stars": int(args[0].size),
        "n_walkers": n_walkers,
        "n_steps": n_steps,
        "n_burn": n_burn,
        "seed": seed,
        "acceptance_fraction": float(np.mean(sampler.acceptance_fraction)),
        "max_likelihood": {p: float(v) for p, v in zip(PARAMETERS, start, strict=True)},
    }
    for k, name in enumerate(PARAMETERS):
        s = samples[:, k]
        q = np.percentile(s, [2.5, 16, 50, 84, 97.5])
        summary[name] = {
            "mean": float(s.mean()),
            "median": float(q[2]),
            "p16": float(q[1]),
            "p84": float(q[3]),
            "p2_5": float(q[0]),
            "p97_5": float(q[4]),
            "autocorr_time": float(tau[k]),
        }
    return samples, summary


def mks_error(
    sigma_int: float | np.ndarray,
    sigma_s100: float | np.ndarray,
    snr: np.ndarray,
    kappa: float = 0.0,
    spread: np.ndarray | float = 0.0,
) -> np.ndarray:
    """MKs_err = √(σ_int² + (σ_s^100 / (S/N/100))² + (κ s)²) (mag) per spectrum (SPEC §8; ``spread`` s the
    networks' disagreement, module docstring); NaN where S/N ≤ 0."""
    snr = np.asarray(snr, np.float64)
    var = np.asarray(sigma_int, np.float64) ** 2 + (kappa * np.asarray(spread, np.float64)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(snr > 0, np.sqrt(var + (np.asarray(sigma_s100) * 100.0 / snr) ** 2), np.nan)


def error_terms(model: Mapping[str, float], snr: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per spectrum (σ_int, σ_s) of an error ``model`` (:attr:`MKsModel.error_model`); MKs_err = √(σ_int² + σ_s²).

    A spectrum with a networks' disagreement s: the test stars' model, σ_s = √((σ_s^100 / (S/N/100))² + (κ s)²).
    A training star's spectrum (s NaN: the one network that never saw the star predicts it): the training stars'
    own model, ``sigma_int_trained`` and ``sigma_s100_trained`` (the test stars' where a model has none).
    """
    spread = np.asarray(spread, np.float64)
    trained = np.isnan(spread)
    sigma_int = np.where(trained, model.get("sigma_int_trained", model["sigma_int"]), model["sigma_int"])
    sigma_s100 = np.where(trained, model.get("sigma_s100_trained", model["sigma_s100"]), model["sigma_s100"])
    sigma_s = mks_error(0.0, sigma_s100, snr, model.get("kappa", 0.0), np.where(trained, 0.0, spread))
    return sigma_int, sigma_s


# --- the whole model: two networks and their posteriors ------------------------------------------------------


@dataclass
class MKsModel:
    """The two networks of P1 §5 (each cross-fitted: :class:`CrossFitNetworks`) and the means of their
    uncertainty posteriors (what inference needs)."""

    networks: dict[str, CrossFitNetworks]
    """``"non_emission"`` and ``"emission"``; none when the cube had too few training stars (``meta["untrained"]``
    says why): every MKs is then NaN."""
    error_model: dict[str, dict[str, float]]
    """Per network: ``sigma_int``, ``sigma_s100`` (mag) and ``kappa`` (posterior means; a model without ``kappa``
    has κ = 0), and ``sigma_int_trained``, ``sigma_s100_trained`` (mag, maximum likelihood) for the training stars'
    spectra (:func:`error_terms`)."""
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    """Per network: (m, 5) MCMC samples of :data:`PARAMETERS` (for the corner figure)."""
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(
        self, flux: np.ndarray, em_flag: np.ndarray, snr: np.ndarray, star_id: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``mks``, ``mks_err``, ``mks_spread`` (the networks' disagreement; mag) and ``mks_network`` (0
        non-emission, 1 emission) for (n, P) spectra of the stars ``star_id`` (n,)."""
        emission = np.asarray(em_flag) == 1
        mks, spread = predict_own_kind(self.networks, flux, star_id, emission)
        err = np.full(emission.size, np.nan)
        for name, use in (("non_emission", ~emission), ("emission", emission)):
            if use.any() and name in self.networks:
                sigma_int, sigma_s = error_terms(self.error_model[name], np.asarray(snr)[use], spread[use])
                err[use] = np.hypot(sigma_int, sigma_s)
        finite = np.isfinite(mks)
        return {
            "mks": mks,
            "mks_err": np.where(finite, err, np.nan),
            "mks_spread": spread,
            "mks_network": emission.astype(np.int8),
        }

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        for name, net in self.networks.items():
            arrays.update(net.arrays(f"{name}/"))
        for name, s in self.samples.items():
            arrays[f"{name}/samples"] = s
        arrays["error_model"] = np.array(json.dumps(self.error_model))
        arrays["meta"] = np.array(json.dumps(self.meta))
        tmp = Path(f"{path}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> MKsModel:
        """Read a model written by :meth:`save`.

        Raises
        ------
        MKsModelError
            If the file is not a readable MKs model (corrupt, truncated, missing arrays).
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                data = dict(data)
            names = sorted({k.split("/")[0] for k in data if "/" in k})
            return cls(
                networks={n: CrossFitNetworks.from_arrays(data, f"{n}/") for n in names},
                error_model=json.loads(str(data["error_model"])),
                samples={n: data[f"{n}/samples"] for n in names if f"{n}/samples" in data},
                meta=json.loads(str(data["meta"])),
            )
        except (EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            raise MKsModelError(
                f"{path}: not a readable MKs model file ({type(exc).__name__}: {exc}); delete it to retrain it"
            ) from exc


# --- the training: sets, networks, binaries out, uncertainty model (P1 §5) ----------------------------------


NETWORKS = ("non_emission", "emission")
"""The two networks, in the order they are trained."""
SET_COLUMNS = ("star_id", "em_flag", "bad_spectrum_flag", "mks_geo", "mks_geo_err", "parallax", "parallax_error")
SET_COLUMNS += ("parallax_offset", "Ks", "Ks_err", "aks", "aks_err")
"""The per-spectrum columns :func:`train_mks_model` reads (besides the S/N)."""


@dataclass(frozen=True)
class TrainingSettings:
    """How :func:`train_mks_model` chooses its sets, trains, removes binaries and samples (the ``mks.*``
    settings, and ``distance.binary_snr``; defaults as theirs)."""

    network: NetworkSettings = field(default_factory=NetworkSettings)
    min_parallax_snr: float = 10.0
    """Training and test stars: ϖ/σ_ϖ above this."""
    min_snr: float = 50.0
    """Training stars: S/N above this (the others test)."""
    bright_mks: float | None = -1.5
    """Training also takes stars with geometric MKs below this (None: no such supplement)…"""
    bright_min_parallax_snr: float = 3.0
    """…and ϖ/σ_ϖ above this (P1's bright-end stars)."""
    balance_mks: bool = True
    """Loss weights evening out the training set's MKs distribution (:func:`balancing_weights`)."""
    max_train: int = 50_000
    """At most this many training spectra (a subset drawn with ``seed``)."""
    binary_iterations: int = 2
    """Retrainings without the binaries found (P1: 2)."""
    warm_start: bool = True
    """Each retraining continues the previous iteration's networks (False: from new random weights)."""
    binary_snr: float = 2.0
    """Binaries: S/N_Δϖ at or above this."""
    min_error_stars: int = 30
    """An emission network with fewer single test stars takes the non-emission uncertainty model."""
    max_error_stars: int = 20_000
    """The error model's fits (maximum likelihood, MCMC) use at most this many spectra (:func:`at_most`)."""
    mcmc_walkers: int = 32
    mcmc_steps: int = 4000
    mcmc_burn: int = 1000
    seed: int = 0
    """Seed of the training subset and of the MCMC."""


def mks_sets(
    cols: Mapping[str, np.ndarray], snr: np.ndarray, hot: np.ndarray, settings: TrainingSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training and test sets (sorted), with :func:`training_split`: ``usable`` spectra have a
    geometric MKs, no ``bad_spectrum_flag`` and are hot-star candidates (``hot``: P1 trains on OB stars);
    ``bright`` are the ones with ϖ/σ_ϖ > ``bright_min_parallax_snr`` and geometric MKs < ``bright_mks``.
    More than ``max_train`` training spectra: a seeded subset.

    ``cols`` holds :data:`SET_COLUMNS` as float64 (``star_id`` as it is), ``snr`` the S/N (float64).

    Raises
    ------
    TooFewStars
        With fewer than 50 training or 10 test spectra.
    """
    usable = np.isfinite(cols["mks_geo"]) & np.isfinite(cols["mks_geo_err"]) & (cols["bad_spectrum_flag"] != 1) & hot
    with np.errstate(invalid="ignore", divide="ignore"):
        plx_snr = (cols["parallax"] + cols["parallax_offset"]) / cols["parallax_error"]
    bright = None
    if settings.bright_mks is not None:
        bright = (np.nan_to_num(plx_snr) > settings.bright_min_parallax_snr) & (cols["mks_geo"] < settings.bright_mks)
    train, test = training_split(
        cols["star_id"], plx_snr, snr, usable, settings.min_parallax_snr, settings.min_snr, bright
    )
    train_rows = np.flatnonzero(train)
    if train_rows.size > settings.max_train:
        rng = np.random.default_rng(settings.seed)
        train_rows = np.sort(rng.choice(train_rows, settings.max_train, replace=False))
    test_rows = np.flatnonzero(test)
    if train_rows.size < 50 or test_rows.size < 10:
        raise TooFewStars(
            f"{train_rows.size} training and {test_rows.size} test spectra (ϖ/σ > "
            f"{settings.min_parallax_snr:g}, training S/N > {settings.min_snr:g}); at least 50 and 10 are needed "
            "(lower mks.min_parallax_snr or mks.min_snr)"
        )
    return train_rows, test_rows


def snr_dparallax(
    cols: Mapping[str, np.ndarray], mks: np.ndarray, sigma: Mapping[str, float], snr: np.ndarray, spread: np.ndarray
) -> np.ndarray:
    """S/N_Δϖ (P1 Eq. 15–17) of spectra with a predicted MKs and its networks' disagreement ``spread``, under the
    uncertainty model ``sigma`` (:func:`error_terms`); ``cols`` as in :func:`mks_sets`, restricted to the spectra."""
    sigma_int, sigma_s = error_terms(sigma, snr, spread)
    plx_s, plx_s_err = spectrophotometric_parallax(
        cols["Ks"], mks, cols["aks"], sigma_s, sigma_int, cols["Ks_err"], cols["aks_err"]
    )
    parallax = cols["parallax"] + cols["parallax_offset"]
    return binary_flags(parallax, cols["parallax_error"], plx_s, plx_s_err)[0]


def at_most(use: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """The (n,) bool mask ``use`` with at most ``cap`` rows: a seeded subset where it has more. The error model's
    fits run in the client at O(rows) per likelihood evaluation; a posterior from 20,000 stars is already ~0.5 %
    wide in σ (``mks.max_error_stars``), so more rows cost time and change nothing."""
    rows = np.flatnonzero(use)
    if rows.size <= cap:
        return use
    out = np.zeros_like(use, dtype=bool)
    out[np.random.default_rng(seed).choice(rows, cap, replace=False)] = True
    return out


def _error_fit(
    predicted: np.ndarray,
    spread: np.ndarray,
    cols: Mapping[str, np.ndarray],
    snr: np.ndarray,
    use: np.ndarray,
    settings: TrainingSettings,
) -> dict[str, float]:
    """The test stars' model at its maximum likelihood, on the ``use`` spectra with a networks' disagreement (at
    most ``settings.max_error_stars``: :func:`at_most`)."""
    use = at_most(use & np.isfinite(predicted) & np.isfinite(spread), settings.max_error_stars, settings.seed)
    theta = max_likelihood(predicted[use], cols["mks_geo"][use], cols["mks_geo_err"][use], snr[use], spread[use])
    return dict(zip(PARAMETERS, (float(t) for t in theta), strict=True))


TRAINED_ERRORS = ("sigma_int_trained", "sigma_s100_trained")
"""The error model's terms for the training stars' spectra (:func:`error_terms`)."""


def _trained_error_fit(
    settings: TrainingSettings,
    *parts: tuple[np.ndarray, Mapping[str, np.ndarray], np.ndarray, np.ndarray],
) -> tuple[dict[str, float], int]:
    """``sigma_int_trained``, ``sigma_s100_trained``: P1's model (no κ) at its maximum likelihood on the spectra of
    training stars, each predicted by the one network that never saw its star.
    ``parts``: (predicted MKs, columns, S/N, rows to use), joined (the training spectra, and the test spectra of
    stars that trained: their visits below the training S/N), at most ``settings.max_error_stars`` of them
    (:func:`at_most`). Returns the two and the number of spectra."""
    rows = [(p, c, s, u & np.isfinite(p)) for p, c, s, u in parts]
    mks = np.concatenate([p[u] for p, _, _, u in rows])
    geo = np.concatenate([c["mks_geo"][u] for _, c, _, u in rows])
    geo_err = np.concatenate([c["mks_geo_err"][u] for _, c, _, u in rows])
    snr = np.concatenate([s[u] for _, _, s, u in rows])
    subset = at_most(np.ones(mks.size, bool), settings.max_error_stars, settings.seed)
    mks, geo, geo_err, snr = mks[subset], geo[subset], geo_err[subset], snr[subset]
    if mks.size < 10:
        raise TooFewSpectra(f"MKs error model of the training stars: {mks.size} spectra; at least 10 are needed")
    theta = max_likelihood(mks, geo, geo_err, snr, np.zeros(mks.size))
    # once more without the > 3σ outliers (the binaries the cut missed: a Gaussian likelihood lets a few 1-mag
    # outliers inflate σ_int)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(theta[2] ** 2 + (theta[3] * 100.0 / snr) ** 2 + geo_err**2)
    inlier = np.abs(mks - ((1.0 + theta[0]) * geo + theta[1])) <= 3.0 * sigma
    if 10 <= inlier.sum() < mks.size:
        theta = max_likelihood(mks[inlier], geo[inlier], geo_err[inlier], snr[inlier], np.zeros(int(inlier.sum())))
    return {"sigma_int_trained": float(theta[2]), "sigma_s100_trained": float(theta[3])}, int(mks.size)


def train_mks_model(
    cols: Mapping[str, np.ndarray],
    snr: np.ndarray,
    hot: np.ndarray,
    wave: np.ndarray,
    settings: TrainingSettings,
    read_flux: Callable[[np.ndarray], np.ndarray],
    predict: Callable[[Mapping[str, CrossFitNetworks], np.ndarray], Mapping[str, np.ndarray]],
    train: Callable[[np.ndarray, list[NetworkJob]], list[MKsNetwork]] = train_serially,
) -> MKsModel:
    """The MKs model of P1 §5 from the survey's columns (one value per spectrum).

    1. The sets (:func:`mks_sets`); ``read_flux(train_rows)`` gives the training spectra (n_train, P) on
       the wavelengths ``wave`` (Å).
    2. Two networks, each cross-fitted (:class:`CrossFitNetworks`): ``non_emission`` on the non-emission
       training spectra, ``emission`` on all of them (:func:`network_pixels`), with :func:`balancing_weights`
       if ``balance_mks``. ``train(flux, jobs)`` trains the :func:`cross_fit_jobs` of both on the training
       spectra (default: one after the other here; the step trains them in parallel on the cluster).
    3. ``binary_iterations`` times: the uncertainty model at its maximum likelihood on the single
       non-emission test spectra (``predict(networks, test_rows)`` gives the test spectra's ``mks`` and
       ``mks_spread``: :func:`predict_own_kind`), S/N_Δϖ (:func:`snr_dparallax`) of every training and
       test spectrum, those at or above ``binary_snr`` out of training (and of the single test stars), the
       networks retrained (with ``warm_start``, each from its fold's network of the iteration before).
    4. The uncertainty model sampled (:func:`sample_uncertainty_model`) on the single test spectra of each
       network; with fewer than ``min_error_stars`` emission ones the emission network takes the non-emission
       posterior (``posterior["emission"]["uses"]``).

    ``cols`` holds :data:`SET_COLUMNS`; ``hot`` (n,) bool marks the hot-star candidates. The model's ``meta``
    has the counts (``n_train``, ``n_train_before_binary_cuts``, ``n_train_emission``, ``n_test``,
    ``n_test_single``), ``binary_iterations`` (per iteration: the binaries found, the maximum-likelihood
    model), ``posterior`` and each network's ``meta`` under ``networks``.

    Raises
    ------
    TooFewSpectra
        :class:`TooFewStars` for the sets, or too few spectra for a network or the MCMC.
    """
    cols = {k: (v if k == "star_id" else np.asarray(v, np.float64)) for k, v in cols.items()}
    snr = np.asarray(snr, np.float64)
    emission = cols["em_flag"] == 1
    train_rows, test_rows = mks_sets(cols, snr, np.asarray(hot, bool), settings)
    log.info("MKs: %d training spectra, %d test spectra", train_rows.size, test_rows.size)
    flux = read_flux(train_rows)
    sub = {k: v[train_rows] for k, v in cols.items()}
    members = {"non_emission": ~emission[train_rows], "emission": np.ones(train_rows.size, bool)}
    keep = np.ones(train_rows.size, bool)
    test_cols = {k: v[test_rows] for k, v in cols.items()}
    single_test = np.ones(test_rows.size, bool)
    history: list[dict[str, Any]] = []
    networks: dict[str, CrossFitNetworks] = {}
    for iteration in range(settings.binary_iterations + 1):
        jobs = {}
        for name in NETWORKS:
            use = members[name] & keep
            jobs[name] = cross_fit_jobs(
                np.flatnonzero(use),
                sub["mks_geo"][use],
                sub["mks_geo_err"][use],
                network_pixels(wave, emission=name == "emission"),
                settings.network,
                star_id=sub["star_id"][use],
                weights=balancing_weights(sub["mks_geo"][use]) if settings.balance_mks else None,
                init=networks.get(name) if settings.warm_start else None,
            )
        trained = iter(train(flux, [job for name in NETWORKS for job in jobs[name]]))  # both kinds' folds at once
        networks = {
            name: CrossFitNetworks(
                [next(trained) for _ in jobs[name]], np.unique(star_ids(sub["star_id"][members[name] & keep]))
            )
            for name in NETWORKS
        }
        predicted_test = predict(networks, test_rows)
        test_mks, test_spread = predicted_test["mks"], predicted_test["mks_spread"]
        # out-of-fold: each training spectrum by the network of its kind that never saw its star (no spread:
        # NaN); a binary out of training by all of them
        own, own_spread = predict_own_kind(networks, flux, sub["star_id"], emission[train_rows])
        # the test stars' model; a training star's spectrum takes it without κ here (P1's binary cut): its own
        # model is fitted once the binaries are out of the training set (below)
        sigma = _error_fit(
            test_mks, test_spread, test_cols, snr[test_rows], single_test & ~emission[test_rows], settings
        )
        if iteration == settings.binary_iterations:
            break
        train_binary = snr_dparallax(sub, own, sigma, snr[train_rows], own_spread) >= settings.binary_snr
        test_snr_d = snr_dparallax(test_cols, test_mks, sigma, snr[test_rows], test_spread)
        single_test = ~(test_snr_d >= settings.binary_snr)
        history.append(
            {
                "iteration": iteration + 1,
                "training_binaries_removed": int(train_binary.sum()),
                "test_binaries": int((~single_test).sum()),
                "max_likelihood": sigma,
            }
        )
        log.info(
            "MKs iteration %d: sigma_int %.3f, sigma_s100 %.3f mag, kappa %.3f; %d training and %d test spectra "
            "look binary",
            iteration + 1,
            sigma["sigma_int"],
            sigma["sigma_s100"],
            sigma["kappa"],
            int(train_binary.sum()),
            int((~single_test).sum()),
        )
        keep = ~train_binary

    samples: dict[str, np.ndarray] = {}
    posteriors: dict[str, Any] = {}
    error_model: dict[str, dict[str, float]] = {}
    for name, use in (
        ("non_emission", single_test & ~emission[test_rows]),
        ("emission", single_test & emission[test_rows]),
    ):
        use = use & np.isfinite(test_mks)
        with_spread = use & np.isfinite(test_spread)
        if name == "emission" and with_spread.sum() < settings.min_error_stars:
            log.warning(
                "MKs: %d single emission test spectra (< mks.min_error_stars = %d): the emission network takes "
                "the non-emission uncertainty model",
                int(use.sum()),
                settings.min_error_stars,
            )
            posteriors[name] = {"n_stars": int(with_spread.sum()), "uses": "non_emission"}
            error_model[name] = dict(error_model["non_emission"])
            continue
        sampled = at_most(with_spread, settings.max_error_stars, settings.seed)
        samples[name], posteriors[name] = sample_uncertainty_model(
            test_mks[sampled],
            test_cols["mks_geo"][sampled],
            test_cols["mks_geo_err"][sampled],
            snr[test_rows][sampled],
            test_spread[sampled],
            settings.mcmc_walkers,
            settings.mcmc_steps,
            settings.mcmc_burn,
            settings.seed,
        )
        error_model[name] = {p: posteriors[name][p]["mean"] for p in ("sigma_int", "sigma_s100", "kappa")}
        # the training stars' spectra, each predicted by one network, have their own (larger) errors
        kind = emission[train_rows] == (name == "emission")
        try:
            trained_fit, n_trained = _trained_error_fit(
                settings,
                (own, sub, snr[train_rows], keep & kind),
                (test_mks, test_cols, snr[test_rows], use & ~with_spread),
            )
        except TooFewSpectra:
            trained_fit, n_trained = {k: error_model["non_emission"][k] for k in TRAINED_ERRORS}, 0
        error_model[name].update(trained_fit)
        posteriors[name]["trained"] = {**trained_fit, "n_spectra": n_trained}
    meta = {
        "n_train": int(keep.sum()),
        "n_train_before_binary_cuts": int(train_rows.size),
        "n_train_emission": int((keep & emission[train_rows]).sum()),
        "n_test": int(test_rows.size),
        "n_test_single": int(single_test.sum()),
        "binary_iterations": history,
        "posterior": posteriors,
        "networks": {name: net.meta for name, net in networks.items()},
    }
    return MKsModel(networks=networks, error_model=error_model, samples=samples, meta=meta)


def summary_lines(reductions: Mapping[str, Any]) -> list[str]:
    """``survey-scale info`` lines of the MKs model (SPEC §8; ``reductions['mks_model']``): the sets and the MCMC
    posterior per network; none before step ``mks_model``."""
    mks = reductions.get("mks_model")
    if not mks:
        return []
    if "untrained" in mks:
        return [f"    MKs model: none ({mks['untrained']}); mks is NaN, distances use the parallax alone"]
    lines = [
        f"    MKs model: {mks['n_train']:,} training spectra ({mks['n_train_emission']:,} with emission; "
        f"{mks['n_train_before_binary_cuts'] - mks['n_train']:,} binaries removed in "
        f"{len(mks['binary_iterations'])} iterations), {mks['n_test']:,} test spectra; {mks['selection']}; "
        f"updated {mks.get('updated')}"
    ]
    for network, post in mks["posterior"].items():
        if "uses" in post:
            lines.append(f"      {network}: {post['n_stars']} single test stars: the {post['uses']} model's errors")
            continue
        values = ", ".join(
            f"{name} {post[name]['mean']:+.3f} [{post[name]['p16']:+.3f}, {post[name]['p84']:+.3f}]"
            for name in PARAMETERS
            if name in post  # a model trained before κ has four
        )
        lines.append(
            f"      {network}: MCMC on {post['n_stars']:,} single test stars, mean [16 %, 84 %]: {values} "
            f"(acceptance {post['acceptance_fraction']:.2f})"
        )
        if "trained" in post:
            t = post["trained"]
            lines.append(
                f"        the training stars' spectra (one network each): sigma_int {t['sigma_int_trained']:.3f}, "
                f"sigma_s100 {t['sigma_s100_trained']:.3f} (maximum likelihood on {t['n_spectra']:,} spectra)"
            )
    return lines
