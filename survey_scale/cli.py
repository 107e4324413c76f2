"""The ``survey-scale`` command line (SPEC §11, §12).

Every sub-command reads the YAML configuration (``--config``; the defaults otherwise), validated at start;
command-line options override single keys. Long steps show a progress bar and the Dask dashboard link, and
everything is logged to stderr and to ``<cube>/_survey_scale/logs/``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from survey_scale._version import __version__
from survey_scale.config import Config, ConfigError, default_yaml, load_config
from survey_scale.core.errors import SurveyScaleError
from survey_scale.stages.registry import default_registry

log = logging.getLogger("survey_scale")


def _setup_logging(level: str, cube: Path | None, command: str) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("survey_scale").setLevel(level)
    for noisy in ("distributed", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if cube is not None and cube.exists():
        from survey_scale.store.bookkeeping import Bookkeeping

        file_handler = logging.FileHandler(Bookkeeping(cube).log_path(command))
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)


def _config(args: argparse.Namespace, overrides: dict[str, Any]) -> Config:
    return load_config(getattr(args, "config", None), overrides)


# --- commands ------------------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    from survey_scale.pipeline import run_pipeline
    from survey_scale.store.cube import create_cube

    config = _config(
        args,
        {
            "cube.path": args.cube,
            "ingest.input": args.input,
            "ingest.catalog": args.catalog,
            "ingest.crossmatch": args.crossmatch,
            "ingest.release": args.release,
            "cluster.local.n_workers": args.workers,
        },
    )
    cube = Path(config.cube.path)
    if config.ingest.input is None:
        raise ConfigError("ingest: give the input folder (--input DIR or ingest.input in the configuration)")
    if not Path(config.ingest.input).is_dir():
        raise FileNotFoundError(f"{config.ingest.input}: input folder not found")
    if not (cube / "zarr.json").exists():
        create_cube(cube, config.cube)
    _setup_logging(config.log_level, cube, "ingest")
    summary = run_pipeline(config, progress=not args.no_progress, until="ingest", require_spectra=False)
    print("\n".join(summary.lines()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from survey_scale.pipeline import run_pipeline

    config = _config(
        args,
        {
            "cube.path": args.cube,
            "ingest.input": args.input,
            "cluster.local.n_workers": args.workers,
            "runner.refit": True if args.refit else None,
        },
    )
    _setup_logging(config.log_level, Path(config.cube.path), "run")
    summary = run_pipeline(config, progress=not args.no_progress, until=args.until)
    print("\n".join(summary.lines()))
    return 0


def _fraction(upper_open: bool):
    """An argparse type: a float within [0, 1) (``upper_open``) or [0, 1]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
            raise argparse.ArgumentTypeError(f"{text} is not within [0, {'1)' if upper_open else '1]'}")
        return value

    return parse


def cmd_mock(args: argparse.Namespace) -> int:
    from survey_scale.mock import make_release

    out = Path(args.outdir)
    # None: make_release's own defaults (survey_scale.mock.contaminants.COOL_FRACTION, QSO_FRACTION)
    fractions = {
        name: value
        for name, value in (("cool_fraction", args.cool_fraction), ("qso_fraction", args.qso_fraction))
        if value is not None
    }
    summary = make_release(
        out,
        args.n_stars,
        args.seed,
        release=args.release,
        previous=args.previous,
        image_fraction=args.image_fraction,
        gzip_fraction=args.gzip_fraction,
        n_invalid=0 if args.no_invalid else None,
        **fractions,
    )
    counts = summary.counts
    n_cool, n_qso = counts.get("cool_contaminant_stars", 0), counts.get("qso_objects", 0)
    contaminants = (
        f"{summary.n_contaminants} contaminants: {n_cool} cool stars ({counts.get('cool_contaminant_spectra', 0)} "
        f"spectra, {counts.get('misclassified_a_spectra', 0)} classed A) and {n_qso} QSOs "
        f"({counts.get('qso_spectra', 0)} spectra)"
    )
    print(
        f"mock release {summary.release} (seed {summary.seed}) in {out}: {summary.n_files} files "
        f"({summary.n_valid_files} valid spectra of {summary.n_stars} hot stars and {contaminants}; "
        f"{summary.n_invalid} invalid inputs); ingest with: survey-scale ingest --input {out / 'spectra'} "
        f"--catalog {out / 'catalog.csv'} --crossmatch {out / 'crossmatch.parquet'} --cube CUBE"
    )
    if args.model_grid:
        from survey_scale.science.model_grid import save_model_grid
        from survey_scale.synth import make_model_grid

        path = save_model_grid(make_model_grid(args.model_grid, args.seed), out / "model_grid.npz")
        print(f"model grid of {args.model_grid} spectra: {path}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from survey_scale.products.figures import write_figures

    for path in write_figures(args.kind, args.source, args.out, args.truth):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from survey_scale.pipeline import run_pipeline
    from survey_scale.stages.registry import Registry

    formats = [f.strip() for f in args.format.split(",") if f.strip()] if args.format else None
    config = _config(
        args,
        {
            "cube.path": args.cube,
            "export.out": args.out,
            "export.formats": formats,
            "cluster.local.n_workers": args.workers,
        },
    )
    cube = Path(config.cube.path)
    if not (cube / "zarr.json").exists():
        raise FileNotFoundError(f"{cube}: no cube there")
    _setup_logging(config.log_level, cube, "export")
    registry = Registry(s for s in default_registry().ordered() if s.name == "export")
    summary = run_pipeline(config, progress=not args.no_progress, registry=registry)
    print("\n".join(summary.results["export"].lines()))
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    """``survey-scale <step>``: one registry step alone (:func:`survey_scale.pipeline.run_step`)."""
    from survey_scale.pipeline import run_step

    config = _config(args, {"cube.path": args.cube, "cluster.local.n_workers": args.workers})
    cube = Path(config.cube.path)
    _setup_logging(config.log_level, cube, args.step)
    result = run_step(config, args.step, progress=not args.no_progress, registry=default_registry())
    print("\n".join(result.lines()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from survey_scale.products.report import write_report

    print(write_report(args.cube, args.out, truth=args.truth))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from survey_scale.products.info import cube_info

    print(cube_info(args.cube))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    if args.action == "defaults":
        print(default_yaml(), end="")
        return 0
    config = load_config(args.file)
    if args.action == "check":
        print(f"{args.file or '<defaults>'}: valid")
    elif args.action == "cluster":
        from survey_scale.engine.cluster import preview

        print(preview(config.cluster), end="")
    else:
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from survey_scale.stages.emulator import emulator_info, emulator_summary, train_to_file

    if args.action is None:  # the pipeline's emulator step, as for every other step
        return cmd_step(args)
    if args.action == "info":
        print(emulator_info(args.source))
        return 0
    if args.source is not None:
        raise ConfigError(f"emulator train: unexpected argument {args.source!r} (give the grid with --grid)")
    if args.out is None:
        raise ConfigError("emulator train: give the output file (--out FILE.npz)")
    config = _config(
        args,
        {
            "emulator.grid_size": args.grid_size,
            "emulator.grid_seed": args.grid_seed,
            "emulator.hidden": args.hidden,
            "emulator.epochs": args.epochs,
            "emulator.device": args.device,
        },
    )
    # this command trains whatever emulator.path says (it is for the pipeline, not for training)
    cfg = config.emulator.model_copy(update={"path": None, "train": True, "model_grid": args.grid})
    _setup_logging(config.log_level, None, "emulator")
    path, em = train_to_file(cfg, args.out, shlex.join(["survey-scale", *args.argv]), args.threads)
    print(emulator_summary(path, em))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from survey_scale.demo import run_demo

    _setup_logging("INFO", None, "demo")
    run_demo(args.workdir, n_stars=args.n_stars, seed=args.seed, progress=not args.no_progress)
    return 0


# --- parser --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="survey-scale",
        description="Reprocess a LAMOST low-resolution release of hot stars into science catalogs.",
    )
    parser.add_argument("--version", action="version", version=f"survey_scale {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="ingest a folder of LAMOST FITS files into the cube (SPEC §2)")
    p.add_argument("--config", type=Path, help="YAML configuration (default: built-in defaults)")
    p.add_argument("--input", type=Path, help="folder of LAMOST spectra (searched recursively)")
    p.add_argument("--cube", type=Path, help="the cube's Zarr store (created if missing)")
    p.add_argument("--catalog", type=Path, help="release catalog (CSV, FITS or Parquet)")
    p.add_argument("--crossmatch", type=Path, help="cross-match table: Gaia, 2MASS, photometry")
    p.add_argument("--release", help="release name (default: from the FITS header DATA_V)")
    p.add_argument("--workers", type=int, help="Dask workers of the local cluster")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("mock", help="write a mock LAMOST release: spectra, catalog, cross-match, truth (SPEC §10)")
    p.add_argument("outdir", type=Path, help="output folder (an earlier mock release there is replaced)")
    p.add_argument("--n-stars", type=int, required=True, help="number of new stars (~1.5 visits each)")
    p.add_argument("--seed", type=int, required=True, help="seed: the same seed gives byte-identical files")
    p.add_argument("--release", default="MOCK1", help="release name (DATA_V of the files)")
    p.add_argument("--previous", type=Path, help="an earlier mock release whose stars get new visits")
    p.add_argument("--image-fraction", type=float, default=0.3, help="fraction in the DR1-DR7 image layout")
    p.add_argument("--gzip-fraction", type=float, default=0.5, help="fraction of files gzipped")
    p.add_argument("--no-invalid", action="store_true", help="write no deliberately invalid inputs")
    p.add_argument(
        "--cool-fraction",
        type=_fraction(upper_open=True),
        metavar="F",
        help="fraction of cool F/G/K contaminants among all stars, as in a real hot-star candidate list, next to "
        "the --n-stars hot stars (default 0.3, make_release's; 0 = hot stars only: no contaminants, no QSOs)",
    )
    p.add_argument(
        "--qso-fraction",
        type=_fraction(upper_open=False),
        metavar="F",
        help="with contaminants: fraction of the spectra that are QSOs, at least one (default 0.003, "
        "make_release's; 0 = none)",
    )
    p.add_argument(
        "--model-grid",
        type=int,
        default=0,
        metavar="N",
        help="also write OUTDIR/model_grid.npz with N noiseless spectra for the emulator",
    )
    p.set_defaults(func=cmd_mock)

    p = sub.add_parser(
        "figures",
        help="write PNG figures: synth; mock SOURCE=release; emission|fits|survey|distances SOURCE=cube; "
        "emulator SOURCE=file",
    )
    kinds = ["synth", "mock", "emission", "fits", "survey", "distances", "emulator"]  # FIGURE_KINDS (no import)
    p.add_argument("kind", choices=kinds, help="what to draw")
    p.add_argument("source", type=Path, nargs="?", help="the mock release, cube or emulator file to plot")
    p.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG files")
    p.add_argument("--truth", type=Path, help="distances: the mock release whose truth E(B-V) is compared")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("run", help="every step that is not done yet: " + ", ".join(default_registry().names()))
    p.add_argument("--config", type=Path, help="YAML configuration (default: built-in defaults)")
    p.add_argument("--cube", type=Path, help="the cube (overrides cube.path)")
    p.add_argument("--input", type=Path, help="ingest this folder first (overrides ingest.input)")
    p.add_argument("--workers", type=int, help="Dask workers of the local cluster")
    steps = default_registry().names()
    p.add_argument("--until", choices=steps, help=f"last step to run (default: {steps[-1]}, all of them)")
    p.add_argument(
        "--refit", action="store_true", help="retrain the kept models (PCA, MKs) on the whole cube, and what they feed"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="mock release -> ingest -> pipeline -> report, in a work folder")
    p.add_argument("--workdir", type=Path, default=Path("survey_scale_demo"), help="folder for everything")
    p.add_argument("--n-stars", type=int, default=1000, help="stars in the mock release")
    p.add_argument("--seed", type=int, default=1, help="seed of the mock release")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "emulator",
        help="step emulator alone (no action), train an emulator on a model grid (train), or show an emulator's "
        "provenance and precision (info)",
    )
    p.add_argument("action", nargs="?", choices=["train", "info"], help="none: run the pipeline's emulator step")
    p.add_argument("source", nargs="?", help="info: an emulator file or a shipped name (default: synthesizer)")
    p.add_argument("--grid", type=Path, help="train: model grid .npz (default: synthesize one)")
    p.add_argument("--grid-size", type=int, help="train: spectra of the synthesized grid (emulator.grid_size)")
    p.add_argument("--grid-seed", type=int, help="train: seed of the synthesized grid (emulator.grid_seed)")
    p.add_argument("--out", type=Path, help="train: the emulator file to write (.npz)")
    p.add_argument("--config", type=Path, help="YAML configuration: the emulator section's training keys")
    p.add_argument("--hidden", type=int, nargs="+", help="train: hidden widths (emulator.hidden)")
    p.add_argument("--epochs", type=int, help="train: at most this many epochs (emulator.epochs)")
    p.add_argument("--device", help="train: torch device (emulator.device; default CUDA if available, else CPU)")
    p.add_argument("--threads", type=int, help="train: torch CPU threads (default: torch's choice)")
    p.add_argument("--cube", type=Path, help="step: the cube (overrides cube.path)")
    p.add_argument("--workers", type=int, help="step: Dask workers of the local cluster")
    p.add_argument("--no-progress", action="store_true", help="step: no progress bars")
    p.set_defaults(func=cmd_emulator, step="emulator")

    p = sub.add_parser("export", help="write the catalogs of SPEC §13 from a cube: FITS, Parquet, HATS")
    p.add_argument("cube", type=Path, help="the cube's Zarr store")
    p.add_argument("--out", type=Path, help="catalog folder (default: export.out, or 'catalogs' beside the cube)")
    p.add_argument("--format", help="comma-separated: fits,parquet,hats (default: export.formats, all three)")
    p.add_argument("--config", type=Path, help="YAML configuration (default: built-in defaults)")
    p.add_argument("--workers", type=int, help="Dask workers of the local cluster")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "config",
        help="check a configuration file, show the effective configuration, what its cluster kind would submit "
        "(cluster: the SLURM job script or the Kubernetes DaskCluster), or the defaults with every key's description "
        "(defaults: configs/default.yaml)",
    )
    p.add_argument(
        "action",
        choices=["check", "show", "cluster", "defaults"],
        help="check: validate FILE; show: the effective configuration; cluster: what its cluster kind would submit; "
        "defaults: every key with its default and description",
    )
    p.add_argument("file", type=Path, nargs="?", help="YAML configuration (default: built-in defaults)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("info", help="counts per release, stages done, rejects by reason")
    p.add_argument("cube", type=Path, help="the cube's Zarr store")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("report", help="an HTML report of a cube: run summary and the papers' figures (DIR/report.html)")
    p.add_argument("cube", type=Path, help="the cube's Zarr store")
    p.add_argument("--out", type=Path, required=True, help="folder of report.html and its PNG figures")
    p.add_argument("--truth", type=Path, help="the mock release the cube was made from: adds mock-vs-truth figures")
    p.set_defaults(func=cmd_report)

    add_step_commands(sub)
    return parser


def add_step_commands(sub: Any) -> None:
    """One sub-command per step of the registry that has no command of its own (ingest and export do): a new
    step gets its ``survey-scale <step>`` here."""
    for step in default_registry().ordered():
        if step.name in sub.choices:
            continue
        needs = [r[6:] + " model" if r.startswith("model:") else r for r in step.requires]
        p = sub.add_parser(
            step.name,
            help=f"step {step.name} alone: {step.description}",
            description=f"Run step {step.name} of the pipeline alone: {step.description}. "
            + (f"It needs {', '.join(needs)} in the cube" if needs else "It needs nothing from earlier steps")
            + "; models of earlier steps are those recorded in the cube's bookkeeping. "
            "What is up to date is skipped.",
        )
        p.add_argument("--config", type=Path, help="YAML configuration (default: built-in defaults)")
        p.add_argument("--cube", type=Path, help="the cube (overrides cube.path)")
        p.add_argument("--workers", type=int, help="Dask workers of the local cluster")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_step, step=step.name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``survey-scale``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        _setup_logging("INFO", None, args.command)
    try:
        return int(args.func(args) or 0)
    except SurveyScaleError as exc:
        print(f"survey-scale {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unwritable path, a full disk, a storage error: one line, no traceback
        log.debug("survey-scale %s: %s", args.command, exc, exc_info=True)  # the traceback at log level DEBUG
        if exc.strerror and exc.filename is not None:
            where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
            message = f"{where}: {exc.strerror}"
        else:
            message = str(exc) or type(exc).__name__
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message += " (free some space, then run the command again)"
        print(f"survey-scale {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
