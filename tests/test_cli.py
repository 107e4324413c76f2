"""The survey-scale command line (SPEC §12)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from survey_scale.cli import build_parser, main
from survey_scale.config import CubeConfig
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.emulator import load as load_emulator
from survey_scale.science.model_grid import save_model_grid
from survey_scale.store.cube import create_cube, open_group, spec_length
from tests.toy_grid import toy_model_grid

COMMANDS = ("ingest", "info", "run", "demo", "config", "export", "emulator")


def test_help_everywhere(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage: survey-scale " + command in capsys.readouterr().out
    assert set(build_parser()._subparsers._group_actions[0].choices) >= set(COMMANDS)


def test_ingest_then_info_end_to_end(lamost_dir: Path, tmp_path: Path) -> None:
    cube = tmp_path / "cube.zarr"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "survey_scale.cli",
            "ingest",
            "--input",
            str(lamost_dir),
            "--cube",
            str(cube),
            "--workers",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "n_files = n_ingested + n_rejected: 10 = 9 + 1" in done.stdout
    assert "dashboard" in done.stderr  # the Dask dashboard link is logged
    assert list((cube / "_survey_scale" / "logs").glob("ingest-*.log"))
    info = subprocess.run(
        [sys.executable, "-m", "survey_scale.cli", "info", str(cube)], capture_output=True, text=True, timeout=120
    )
    assert info.returncode == 0, info.stderr
    for text in (
        "spectra: 9",
        "DR9",
        "ingest",
        "9 / 9 rows done",
        "duplicate_specid",
        "bytes/spectrum",
    ):
        assert text in info.stdout


def test_errors_exit_2_with_a_message(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cube:\n  shard_spectra: lots\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "cube.shard_spectra: Input should be a valid integer" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nothing.zarr")]) == 2
    assert "no survey_scale cube here" in capsys.readouterr().err
    assert main(["ingest", "--input", str(tmp_path / "absent"), "--cube", str(tmp_path / "c.zarr")]) == 2
    assert "input folder not found" in capsys.readouterr().err
    assert not (tmp_path / "c.zarr").exists()
    assert main(["export", str(tmp_path / "nothing.zarr")]) == 2
    assert "no cube there" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing.zarr"), "--format", "fits,votable"]) == 2
    assert "export.formats" in capsys.readouterr().err
    assert main(["config", "check", str(Path(__file__).parents[1] / "configs" / "default.yaml")]) == 0
    assert main(["report", str(tmp_path / "nothing.zarr"), "--out", str(tmp_path / "report")]) == 2
    assert "no survey_scale cube here" in capsys.readouterr().err and not (tmp_path / "report").exists()
    assert main(["fit", "--cube", str(tmp_path / "nothing.zarr")]) == 2
    assert "nothing.zarr: no cube there (survey-scale ingest makes one)" in capsys.readouterr().err


def test_a_store_with_another_grid_is_refused(tmp_path: Path, capsys) -> None:
    cube = tmp_path / "cube.zarr"
    create_cube(cube, CubeConfig())
    zarr.open_group(str(cube), mode="r+").attrs["grid_log10_wave_step"] = 2e-4
    assert main(["info", str(cube)]) == 2
    assert "grid_log10_wave_step" in capsys.readouterr().err


def test_figures_are_written_and_a_missing_source_is_an_error(tmp_path: Path, capsys) -> None:
    assert main(["figures", "synth", "--out", str(tmp_path / "new" / "figs")]) == 0  # folders are made
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["synth_example_spectra.png", "synth_gradient_spectra.png"]
    assert all(Path(p).stat().st_size > 10_000 for p in written)
    assert main(["figures", "fits", "--out", str(tmp_path)]) == 2
    assert "figures fits: no source given" in capsys.readouterr().err
    assert main(["figures", "emission", str(tmp_path / "absent.zarr"), "--out", str(tmp_path)]) == 2
    assert "absent.zarr not found" in capsys.readouterr().err


def test_config_cluster_shows_what_each_kind_would_submit(capsys) -> None:
    configs = Path(__file__).parents[1] / "configs"
    assert main(["config", "cluster", str(configs / "slurm.yaml")]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH -p cpu" in script and "#SBATCH --cpus-per-task=32" in script and "#SBATCH --mem=120G" in script
    assert "\npython -m distributed.cli.dask_worker <scheduler address>" in script  # the venv's python
    assert "--nworkers 32 --nanny" in script
    assert "--tls-ca-file /project/lamost/.survey-scale-tls/" in script  # the configured shared folder
    assert main(["config", "cluster", str(configs / "kubernetes.yaml")]) == 0
    spec = capsys.readouterr().out
    assert "kind: DaskCluster" in spec and "secretName: survey-scale-tls" in spec


def test_every_registry_step_has_a_sub_command_and_a_new_step_gets_one(monkeypatch, capsys) -> None:
    from survey_scale import cli
    from survey_scale.engine.contracts import Step
    from survey_scale.stages.registry import default_registry

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in default_registry().names():
        assert re.search(rf"^\s+{name}\s", out, re.M), name
    assert build_parser().parse_args(["chi2ratio", "--cube", "c.zarr"]).step == "chi2ratio"
    assert build_parser().parse_args(["export", "c.zarr", "--format", "fits"]).format == "fits"  # its own options
    toy = Step("line_depth", "m:f", requires=("norm_flux",), produces=("line_depth",), description="toy")
    registry = default_registry().add(toy)
    monkeypatch.setattr(cli, "default_registry", lambda: registry)
    assert cli.build_parser().parse_args(["line_depth", "--config", "x.yaml"]).step == "line_depth"


def test_step_commands_check_what_they_need_and_use_the_recorded_models(tmp_path: Path, capsys) -> None:
    from survey_scale.mock import make_release
    from survey_scale.store.bookkeeping import Bookkeeping

    mock = make_release(tmp_path / "mock", 30, seed=5, n_invalid=0).outdir
    cube = tmp_path / "cube.zarr"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cube: {{path: {cube}, shard_spectra: 16, inner_chunk_spectra: 8}}\n"
        "cluster: {local: {n_workers: 1, processes: false, dashboard_address: null}}\n"
        "runner: {progress: false}\n"
        "pca: {n_components: 4, min_snr: 5.0, block_spectra: 16, n_refits: 0}\n"
    )
    files = ["--input", str(mock / "spectra"), "--catalog", str(mock / "catalog.csv")]
    assert main(["ingest", "--config", str(config), *files, "--crossmatch", str(mock / "crossmatch.parquet")]) == 0
    capsys.readouterr()
    assert main(["pca", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        "step pca cannot run yet" in err and "the cube has no variable 'norm_flux' (run `survey-scale normalize`" in err
    )
    assert "no pca model is recorded in the cube's bookkeeping (run `survey-scale pca_model` first)" in err
    assert main(["normalize", "--config", str(config)]) == 0
    n_chunks = -(-spec_length(open_group(cube)) // 16)
    assert f"normalize: {n_chunks} of {n_chunks} chunks computed (0 up to date)" in capsys.readouterr().out
    assert main(["pca_model", "--config", str(config)]) == 0
    assert main(["pca", "--config", str(config)]) == 0  # with the model pca_model recorded
    assert f"pca: {n_chunks} of {n_chunks} chunks computed" in capsys.readouterr().out
    assert main(["fit", "--cube", str(cube), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no emulator model is recorded in the cube's bookkeeping (run `survey-scale emulator` first)" in err
    assert main(["normalize", "--config", str(config)]) == 0  # up to date: nothing recomputed
    assert f"normalize: 0 of {n_chunks} chunks computed ({n_chunks} up to date)" in capsys.readouterr().out
    books = Bookkeeping(cube)
    assert [run["n_computed"] for run in books.step_history("normalize")] == [n_chunks, 0]
    assert books.recorded_models()["pca"]["step"] == "pca_model"
    assert all(m["compute_seconds"] > 0 for m in books.chunk_markers("pca"))
    assert list((cube / "_survey_scale" / "logs").glob("pca-*.log"))


def test_emulator_train_on_a_grid_file_and_info(tmp_path: Path, capsys) -> None:
    """``survey-scale emulator train`` trains on a user's grid with the configuration's training keys;
    ``emulator info`` prints a file's (or the shipped emulator's) provenance and precision."""
    grid = save_model_grid(toy_model_grid(100, seed=1, wave=wavelength_grid()[:200]), tmp_path / "grid.npz")
    config = tmp_path / "config.yaml"
    config.write_text("emulator:\n  path: synthesizer\n  batch_size: 32\n  learning_rate: 0.003\n")
    out = tmp_path / "em.npz"
    args = ["emulator", "train", "--grid", str(grid), "--out", str(out), "--config", str(config)]
    assert main([*args, "--hidden", "6", "6", "--epochs", "3", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert f"{out}: Emulator(shared, sigmoid, hidden=(6, 6), labels=11, pixels=200)" in text
    assert "validation precision:" in text and "3 epochs" in text
    em = load_emulator(out)
    assert em.meta["settings"]["batch_size"] == 32 and em.meta["settings"]["lr"] == 0.003
    assert em.meta["model_grid"] == str(grid) and em.meta["grid_meta"]["producer"] == "toy_model_grid"
    assert main(["emulator", "info"]) == 0  # the shipped one
    assert "synthesizer.npz: Emulator(shared" in capsys.readouterr().out
    assert main(["emulator", "info", str(tmp_path / "absent.npz")]) == 2
    assert "absent.npz: no emulator file there" in capsys.readouterr().err
    assert main(["emulator", "train", "--grid", str(tmp_path / "nogrid.npz"), "--out", str(out)]) == 2
    assert "nogrid.npz: model grid not found" in capsys.readouterr().err


def test_mock_cool_and_qso_fractions(tmp_path: Path, capsys) -> None:
    """``survey-scale mock --cool-fraction/--qso-fraction`` reach make_release, the summary line counts the
    contaminants, and 0 gives the hot-star-only release (issue 23)."""
    import json

    import pandas as pd

    from survey_scale.mock import contaminants as con

    def mock(name: str, *options: str) -> tuple[str, pd.DataFrame, dict]:
        out = tmp_path / name
        assert main(["mock", str(out), "--n-stars", "12", "--seed", "3", "--no-invalid", *options]) == 0
        meta = json.loads((out / "release.json").read_text())
        return capsys.readouterr().out, pd.read_parquet(out / "truth.parquet"), meta

    text, truth, meta = mock("default")  # make_release's defaults: 0.3 cool stars and QSOs
    assert meta["options"]["cool_fraction"] == con.COOL_FRACTION
    assert meta["options"]["qso_fraction"] == con.QSO_FRACTION
    n_cool, n_qso = meta["counts"]["cool_contaminant_stars"], meta["counts"]["qso_objects"]
    assert n_cool == con.contaminant_counts(12, con.COOL_FRACTION) > 0 and n_qso >= 1
    assert f"of 12 hot stars and {n_cool + n_qso} contaminants: {n_cool} cool stars (" in text
    assert f"and {n_qso} QSOs ({(truth['population'] == 'qso').sum()} spectra)" in text
    assert f"{(truth['population'] == 'cool_contaminant').sum()} spectra, " in text

    text, truth, meta = mock("more", "--cool-fraction", "0.5", "--qso-fraction", "0.1")
    assert meta["options"]["cool_fraction"] == 0.5 and meta["options"]["qso_fraction"] == 0.1
    assert meta["counts"]["cool_contaminant_stars"] == 12
    n_qso_spectra = int((truth["population"] == "qso").sum())
    assert n_qso_spectra == meta["counts"]["qso_spectra"] >= 0.1 * len(truth) - 1
    assert f"({n_qso_spectra} spectra)" in text

    text, truth, meta = mock("hot_only", "--cool-fraction", "0")
    assert meta["counts"]["cool_contaminant_stars"] == meta["counts"]["qso_objects"] == 0
    assert set(truth["population"]) == {"hot"}
    assert "of 12 hot stars and 0 contaminants: 0 cool stars (0 spectra, 0 classed A) and 0 QSOs (0 spectra)" in text

    for option, value in (("--cool-fraction", "1"), ("--cool-fraction", "-0.1"), ("--qso-fraction", "x")):
        with pytest.raises(SystemExit) as info:
            main(["mock", str(tmp_path / "bad"), "--n-stars", "5", "--seed", "1", option, value])
        assert info.value.code == 2
        assert f"argument {option}" in capsys.readouterr().err
    # the help states make_release's defaults
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["mock"].format_help().split())
    assert f"default {con.COOL_FRACTION}" in help_text and f"default {con.QSO_FRACTION}" in help_text


def test_corrupt_files_a_bad_encoding_and_os_errors_are_one_line_messages(tmp_path: Path, capsys, monkeypatch) -> None:
    import errno
    import os

    import numpy as np

    import survey_scale.cli as cli

    def one_error_line(code: int, *needles: str) -> None:
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert all(needle in err for needle in needles), err

    np_file = tmp_path / "emulator.npz"
    np.savez(np_file, w_array_0=np.arange(500.0))  # any .npz, then a byte flipped: a bad CRC
    data = bytearray(np_file.read_bytes())
    data[300] ^= 0xFF
    np_file.write_bytes(bytes(data))
    one_error_line(main(["emulator", "info", str(np_file)]), "emulator.npz: not a readable .npz file", "BadZipFile")
    out = tmp_path / "figs"
    one_error_line(main(["figures", "emulator", str(np_file), "--out", str(out)]), "emulator.npz")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("cube:\n  path: été.zarr\n".encode("latin-1"))
    one_error_line(main(["config", "check", str(latin1)]), "latin1.yaml: not UTF-8 text")
    # an OSError: a path through a file, then a full disk
    one_error_line(main(["figures", "synth", "--out", str(np_file / "figs")]), f"{np_file / 'figs'}: Not a directory")
    full = str(tmp_path / "cube.zarr" / "flux" / "c" / "0" / "0")

    def disk_full(args) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), full)

    monkeypatch.setattr(cli, "cmd_info", disk_full)
    one_error_line(main(["info", str(tmp_path / "cube.zarr")]), f"{full}: No space left on device (free some space")
