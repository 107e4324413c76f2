"""The survey-scale command line (SPEC §12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from survey_scale.cli import build_parser, main
from survey_scale.config import CubeConfig
from survey_scale.store.cube import create_cube

COMMANDS = ("ingest", "info", "run", "demo", "config", "export")


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
    assert "n_files = n_ingested + n_rejected: 10 = 8 + 2" in done.stdout
    assert "dashboard" in done.stderr  # the Dask dashboard link is logged
    assert list((cube / "_survey_scale" / "logs").glob("ingest-*.log"))
    info = subprocess.run(
        [sys.executable, "-m", "survey_scale.cli", "info", str(cube)], capture_output=True, text=True, timeout=120
    )
    assert info.returncode == 0, info.stderr
    for text in (
        "spectra: 8",
        "DR9",
        "ingest",
        "8 / 8 rows done",
        "duplicate_specid",
        "rv_out_of_range",
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
    assert "dask_worker <scheduler address>" in script and "--nworkers 32 --nanny" in script
    assert "--tls-ca-file /project/lamost/.survey-scale-tls/" in script  # the configured shared folder
    assert main(["config", "cluster", str(configs / "kubernetes.yaml")]) == 0
    spec = capsys.readouterr().out
    assert "kind: DaskCluster" in spec and "secretName: survey-scale-tls" in spec
