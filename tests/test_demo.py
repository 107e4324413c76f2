"""``survey-scale demo``: README's first command, whole (SPEC §12; issue 14)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from survey_scale.cli import main
from survey_scale.demo import DEMO_MARKER, DemoWorkdirError, claim_workdir, step_line
from survey_scale.stages.registry import default_registry
from survey_scale.store.cube import open_cube


def test_step_line_says_what_each_kind_of_step_did() -> None:
    stage = {"seconds": 12.34, "n_chunks": 8, "n_computed": 3, "n_rejects": 1}
    assert step_line("fit", stage) == "  fit           12.3 s  3 of 8 chunks, 1 rejects"
    ingest = {"seconds": 2.0, "batches": [{"n_new": 1550, "n_rejected": 4}]}
    assert step_line("ingest", ingest).endswith("1550 spectra ingested, 4 inputs rejected")
    assert step_line("emulator", {"seconds": 0.1, "model": "/x/models/emulator.npz"}).endswith("emulator.npz")
    assert step_line("export", {"seconds": 1.0, "outputs": {"parquet": 1, "fits": 2}}).endswith("fits, parquet")
    assert step_line("uniqflag", {"seconds": 1.0, "rewrote": True}).endswith("rewritten")


def test_the_demo_claims_a_new_or_empty_folder_and_keeps_its_own(tmp_path: Path) -> None:
    new = claim_workdir(tmp_path / "a" / "new")
    assert (new / DEMO_MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (claim_workdir(empty) / DEMO_MARKER).is_file()
    (new / "cube.zarr").mkdir()  # a folder the demo made, with its outputs: still its own
    assert claim_workdir(new) == new


@pytest.mark.parametrize("contents", [("thesis.tex", "report/"), ("mock/", "cube.zarr/", "config.yaml")])
def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path: Path, contents: tuple[str, ...], capsys) -> None:
    # a user's folder, and an older demo's (from before the marker): both refused, nothing touched
    workdir = tmp_path / "work"
    for name in contents:
        path = workdir / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if name.endswith("/") else path.write_text("mine")
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    with pytest.raises(DemoWorkdirError, match=rf"(?s){re.escape(str(workdir))} is not empty.*no {DEMO_MARKER}"):
        claim_workdir(workdir)
    assert main(["demo", "--workdir", str(workdir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "survey-scale demo: error:" in err and "Choose a new or empty folder with --workdir" in err
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


def test_the_demo_refuses_a_file_as_its_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DemoWorkdirError, match="is a file"):
        claim_workdir(tmp_path / "file")


@pytest.mark.slow
def test_demo_makes_cube_catalogs_and_report(tmp_path: Path, capsys) -> None:
    workdir = claim_workdir(tmp_path / "demo")  # as an earlier demo left it
    (workdir / "report").mkdir(parents=True)
    (workdir / "report" / "stale.png").write_bytes(b"old")  # a rerun starts from a fresh mock and cube
    assert main(["demo", "--workdir", str(workdir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    # one console line per step (the mock, every registry step, the report), nothing else but the summary
    lines = out.splitlines()
    names = ["mock", *default_registry().names(), "report"]
    step_lines = [line for line in lines if re.match(r"  \S+ +\d+\.\d s  ", line)]
    assert [line.split()[0] for line in step_lines] == names, out
    assert len(lines) == len(names) + 3, out
    assert not (workdir / "report" / "stale.png").exists()
    ds = open_cube(workdir / "cube.zarr")
    n = ds.sizes["spec"]
    assert n > 1000 and (ds.attrs["stages"].keys() >= {"fit", "bad_spectra", "distances"})
    html = (workdir / "report" / "report.html").read_text()
    assert "What is missing" not in html and "every figure is drawn" in html
    distances = pd.read_parquet(workdir / "catalogs" / "distances.parquet")
    labels = pd.read_parquet(workdir / "catalogs" / "labels.parquet")
    assert len(distances) == len(labels) == n
    assert distances.dis.notna().mean() > 0.9 and labels.teff.notna().mean() > 0.9
    log_files = list((workdir / "cube.zarr" / "_survey_scale" / "logs").glob("demo*"))
    assert log_files and "fit" in log_files[0].read_text()
