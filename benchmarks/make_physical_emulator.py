"""Build the model grids and train the two networks of the shipped ``physical`` emulator set (SPEC §5.1; issues
16, 23), then assemble the set.

The set (:class:`survey_scale.science.emulator_set.EmulatorSet`, the package's
``survey_scale/science/data/emulators/physical.npz``, read by ``ss.emulator.load_default("physical")``) has two
components, each a shared 3 × 300 sigmoid network trained with :func:`survey_scale.science.emulator.train`:

``hot`` (``--component hot``)
    thedoppler's hot-dwarf Cannon model, T_eff 8,000–40,000 K, log g 2.5–5, v sin i 0–400 km s⁻¹
    (:func:`survey_scale.synth.cannon_grid.make_cannon_model_grid`).
``cool`` (``--component cool``)
    thedoppler's cool-star Cannon model bridged to the hot dwarfs across 7,500–9,000 K, T_eff 3,500–9,000 K, log g
    0–5, v sin i 0–250 km s⁻¹ (:func:`survey_scale.synth.cannon_grid.make_cool_model_grid`).

Each run writes the model grid to ``--grid-out`` (re-used when it is there), the network with its provenance
(model files and SHA-256, grid seed and size, label ranges, training settings, validation precision — P2 Fig. 6:
σ of emulator − model over all pixels and where flux < 0.95 —, code version) to ``--out`` (default
``benchmarks/out/physical_<component>.npz``), and prints the precision. ``--assemble COOL HOT`` writes the set.

Get the model files (MIT licence) with::

    pip download thedoppler==1.1.32 --no-deps -d /tmp/doppler && cd /tmp/doppler && \\
        unzip -j thedoppler-1.1.32-*.whl 'doppler/data/*.pkl'

The shipped set (run under ``nice`` on a shared machine)::

    D=/tmp/doppler/cannongrid_3000_18000
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/make_physical_emulator.py --component hot \\
        --model ${D}_hotdwarfs_norm_cubic_model.pkl --grid-out /tmp/physical_grid.npz --max-time 5400
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/make_physical_emulator.py --component cool \\
        --cool-model ${D}_coolstars_norm_cubic_model.pkl --model ${D}_hotdwarfs_norm_cubic_model.pkl \\
        --grid-out /tmp/cool_grid.npz --grid-size 40000 --epochs 300 --patience 40 --batch-size 64 --schedule anneal
    python benchmarks/make_physical_emulator.py --assemble benchmarks/out/physical_cool.npz \\
        benchmarks/out/physical_hot.npz --model ${D}_hotdwarfs_norm_cubic_model.pkl \\
        --cool-model ${D}_coolstars_norm_cubic_model.pkl   # with the models: the set's precision per Teff range
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from survey_scale.core.files import file_sha256
from survey_scale.science import emulator as E
from survey_scale.science.emulator_set import EmulatorSet
from survey_scale.science.model_grid import load_model_grid, save_model_grid
from survey_scale.synth.cannon_grid import (
    COOL_FLUX_RANGE,
    SEAM_TEFF,
    cannon_model_spectra,
    joined_model_spectra,
    make_cannon_model_grid,
    make_cool_model_grid,
    read_cannon_model,
    sample_cannon_labels,
    sample_joined_labels,
)

DEFAULT_SET = Path(__file__).resolve().parents[1] / "survey_scale/science/data/emulators/physical.npz"
DEFAULT_DIR = Path(__file__).resolve().parent / "out"
COMPONENT_FILES = {"hot": "physical_hot.npz", "cool": "physical_cool.npz"}
DESCRIPTIONS = {
    "hot": "shared network trained on a model grid of thedoppler's cubic Cannon model of hot dwarfs "
    "(survey_scale.synth.cannon_grid): labels teff, logg, vsini, fe_h; the hot component of 'physical'",
    "cool": "shared network trained on a model grid of thedoppler's cubic Cannon model of cool stars joined to "
    "the hot-dwarf model across 7500-9000 K (survey_scale.synth.cannon_grid.make_cool_model_grid): labels teff, "
    "logg, vsini, fe_h; the cool component of 'physical'",
}


def set_precision(em_set: EmulatorSet, cool_model: Path, hot_model: Path, n: int, seed: int) -> None:
    """Each network's precision on ``n`` fresh spectra of the models it emulates, below and above 8,000 K (P2
    Fig. 6's σ, all pixels and flux < 0.95): the cool network against its grid's spectra (the cool-star model
    below 7,500 K, the bridge to the hot-dwarf model up to 9,000 K), the hot network against the hot-dwarf model.
    The fit uses each network alone (:func:`survey_scale.science.label_fit.fit_labels_set`)."""
    cool, hot = read_cannon_model(cool_model), read_cannon_model(hot_model)
    rng = np.random.default_rng(seed)
    lab_cool = sample_joined_labels(cool, hot, n, rng)
    lab_hot = sample_cannon_labels(hot, n, rng)
    flux_cool = np.clip(joined_model_spectra(cool, hot, lab_cool), *COOL_FLUX_RANGE)
    flux_hot = cannon_model_spectra(hot, lab_hot)
    cases = {
        "cool network, 3,500-8,000 K": ("cool", lab_cool, flux_cool, lab_cool[:, 0] < 8000.0),
        f"cool network, 8,000-{SEAM_TEFF[1]:,.0f} K (bridge)": ("cool", lab_cool, flux_cool, lab_cool[:, 0] >= 8000.0),
        "hot network, 8,000-40,000 K": ("hot", lab_hot, flux_hot, np.ones(len(lab_hot), bool)),
    }
    for title, (name, lab, flux, sel) in cases.items():
        p = E.validation_precision(em_set.component(name), lab[sel], flux[sel], device="cpu")
        print(
            f"  fresh spectra, {title}: {int(sel.sum())}; sigma {100 * p['valid_sigma']:.3f} % overall, "
            f"{100 * p['valid_sigma_deep']:.3f} % where flux < 0.95; Gaussian core "
            f"{100 * p['valid_sigma_gauss']:.3f} % / {100 * p['valid_sigma_deep_gauss']:.3f} %"
        )


def assemble(cool_path: Path, hot_path: Path, out: Path) -> EmulatorSet:
    """Write the shipped ``physical`` set from its two component files and print its ranges and precision."""
    cool, hot = E.load(cool_path), E.load(hot_path)
    em_set = EmulatorSet(
        [cool, hot],
        ["cool", "hot"],
        {
            "name": "physical",
            "description": "thedoppler's cool-star and hot-dwarf Cannon models as two networks (cool 3500-9000 K, "
            "hot 8000-40000 K); the fit keeps the lower chi2 (survey_scale.science.label_fit.fit_labels_set)",
            "components": {"cool": cool_path.name, "hot": hot_path.name},
        },
    )
    em_set.save(out)
    print(f"physical emulator set: {em_set!r} -> {out} ({out.stat().st_size / 1e6:.2f} MB)")
    for name, em in zip(em_set.names, em_set.components, strict=True):
        m = em.meta
        print(
            f"  {name}: validation sigma {100 * m['valid_sigma']:.3f} % overall, {100 * m['valid_sigma_deep']:.3f} % "
            f"where flux < 0.95 ({m['n_valid']} held-out spectra)"
        )
    return em_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--assemble",
        nargs=2,
        type=Path,
        metavar=("COOL", "HOT"),
        help="only write the set (the package's physical.npz, or --out) from two component files",
    )
    ap.add_argument("--model", type=Path, help="cannongrid_3000_18000_hotdwarfs_norm_cubic_model.pkl")
    ap.add_argument("--check-spectra", type=int, default=1000, help="--assemble with both models: fresh spectra")
    ap.add_argument(
        "--component",
        choices=sorted(COMPONENT_FILES),
        default="hot",
        help="hot: the hot-dwarf model (8,000-40,000 K); cool: the cool-star model bridged to it (3,500-9,000 K)",
    )
    ap.add_argument("--cool-model", type=Path, help="cannongrid_3000_18000_coolstars_norm_cubic_model.pkl (for cool)")
    ap.add_argument("--schedule", choices=E.SCHEDULES, default="plateau")
    ap.add_argument("--grid-out", type=Path, help="where the model grid is (or is already) written")
    ap.add_argument("--grid-size", type=int, default=10000)
    ap.add_argument("--grid-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="default: the package's file of the component")
    ap.add_argument("--hidden", type=int, nargs="+", default=[300, 300, 300])
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--patience", type=int, default=80)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-time", type=float, default=None, help="seconds of training at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    if args.assemble:
        em_set = assemble(*args.assemble, args.out or DEFAULT_SET)
        if args.model and args.cool_model:
            set_precision(em_set, args.cool_model, args.model, args.check_spectra, args.seed + 1)
        return
    if args.model is None or args.grid_out is None:
        raise SystemExit("training a component needs --model and --grid-out")
    if args.component == "cool" and args.cool_model is None:
        raise SystemExit("--component cool needs --cool-model")
    args.out = args.out or DEFAULT_DIR / COMPONENT_FILES[args.component]
    if args.grid_out.exists():
        grid = load_model_grid(args.grid_out)
        if grid.n_spectra != args.grid_size or grid.meta.get("seed") != args.grid_seed:
            raise SystemExit(f"{args.grid_out}: made with another size or seed; remove it first")
        print(f"model grid: {args.grid_out} (existing, {grid.n_spectra} spectra)")
    else:
        t = time.perf_counter()
        if args.component == "cool":
            grid = make_cool_model_grid(args.cool_model, args.model, args.grid_size, args.grid_seed)
        else:
            grid = make_cannon_model_grid(args.model, args.grid_size, args.grid_seed)
        save_model_grid(grid, args.grid_out)
        print(f"model grid: {grid.n_spectra} spectra in {time.perf_counter() - t:.1f} s -> {args.grid_out}")

    em = E.train(
        grid,
        "shared",
        hidden=args.hidden,
        epochs=args.epochs,
        patience=args.patience,
        lr=args.lr,
        schedule=args.schedule,
        batch_size=args.batch_size,
        max_time=args.max_time,
        device="cpu",
        seed=args.seed,
        log=lambda line: logging.info(line),
    )
    em.meta.pop("history", None)  # per-epoch losses: not provenance, and half the header
    em.meta["name"] = "physical" if args.component == "hot" else "physical_cool"
    em.meta["component"] = args.component
    em.meta["model_grid_sha256"] = file_sha256(args.grid_out)
    em.meta["description"] = DESCRIPTIONS[args.component]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    em.save(args.out)
    m = em.meta
    print(
        f"physical emulator: hidden {list(em.hidden)}, {m['n_epochs']:.0f} epochs, {m['train_seconds']:.0f} s "
        f"({m['stop_reason']}), {args.threads} thread(s)"
    )
    print(
        f"validation precision ({m['n_valid']} held-out spectra): sigma {100 * m['valid_sigma']:.3f} % overall, "
        f"{100 * m['valid_sigma_deep']:.3f} % where flux < 0.95; Gaussian core {100 * m['valid_sigma_gauss']:.3f} % / "
        f"{100 * m['valid_sigma_deep_gauss']:.3f} % (P2: 0.165 % / 0.586 %)"
    )
    print(f"file: {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, float32 weights)")
    # a check that the file reads back to the same network
    back = E.load(args.out)
    x = grid.labels[:4]
    assert np.array_equal(back.predict(x, device="cpu"), em.predict(x, device="cpu"))


if __name__ == "__main__":
    main()
