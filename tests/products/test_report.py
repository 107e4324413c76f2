"""``survey-scale report``: the HTML page and its figures on a small pipeline cube, partial here and whole in
tests/test_pipeline.py (:func:`check_whole_report`, on the cube that test makes)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import numpy as np

from survey_scale.cli import main
from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.products.report import FIGURES, write_report
from survey_scale.stages.registry import default_registry
from survey_scale.store.cube import create_cube, open_cube

PAPER_FIGURES = ("P1 Fig. 2", "P1 Fig. 3", "P1 Fig. 4", "P1 Fig. 5", "P1 Fig. 8", "P1 Fig. 10", "P1 Fig. 11",
                 "P1 Fig. 12", "P2 Fig. 3", "P2 Figs. 4–5", "P2 Fig. 8", "P2 Fig. 10", "P2 Fig. 13", "P2 Fig. 16",
                 "P2 Fig. 17")  # fmt: skip
"""The figures issue 14 asks of the report (P2 Fig. 4 comes with its Fig. 5)."""


def _drawn(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _assert_real_png(path: Path) -> None:
    """A PNG that decodes, is large and is not one flat colour."""
    assert path.stat().st_size > 15_000, path
    pixels = matplotlib.image.imread(path)
    assert min(pixels.shape[:2]) > 300 and float(np.std(pixels[..., :3])) > 0.05, path


def test_a_partial_cube_gets_a_report_that_names_the_missing_steps(tmp_path: Path, client) -> None:
    release = make_release(tmp_path / "mock", 40, seed=7, release="MOCK1").outdir
    config = load_config(
        None,
        {
            "cube.path": str(tmp_path / "cube.zarr"),
            "cube.shard_spectra": 32,
            "cube.inner_chunk_spectra": 16,
            "ingest.input": str(release / "spectra"),
            "ingest.catalog": str(release / "catalog.csv"),
            "ingest.crossmatch": str(release / "crossmatch.parquet"),
            "runner.progress": False,
            "pca.n_components": 5,
            "pca.min_snr": 10.0,
            "pca.block_spectra": 32,
            "pca.n_refits": 0,
        },
    )
    create_cube(config.cube.path, config.cube)
    run_pipeline_with_client(config, client, progress=False, until="pca")
    html = write_report(config.cube.path, tmp_path / "partial").read_text()
    missing = html[html.index('id="missing"') : html.index('id="rejects"')]
    for step in ("emulator", "fit", "chi2ratio", "repeats", "extinction", "mks_model", "mks", "distances", "export"):
        assert f"<b>{step}</b> (not run)" in missing
    for step in ("ingest", "normalize", "pca_model", "pca"):
        assert f"<b>{step}</b>" not in missing
    assert 'Fig. 5, Example label fits (<span class="paper">P2 Fig. 8</span>): needs step fit' in missing
    assert _drawn(html) == ["pca_reconstructions.png", "emission_diagram.png"]
    for name in _drawn(html):
        _assert_real_png(tmp_path / "partial" / name)
    assert "No emulator file yet" in html and "None yet" in html  # the sections say what is not there
    assert "<p>Not computed yet (steps fit, chi2ratio and final_sample make it).</p>" in html


def check_whole_report(cube: Path, truth: Path, out: Path) -> None:
    """``survey-scale report`` of a cube on which every step ran, made from the mock release ``truth``: every
    figure drawn and real, the papers' figures named, the run summary complete. tests/test_pipeline.py calls
    it on its cube (a second pipeline run only for the report would double the test's time)."""
    assert main(["report", str(cube), "--out", str(out), "--truth", str(truth)]) == 0
    html = (out / "report.html").read_text()
    assert _drawn(html) == [f"{spec.name}.png" for spec in FIGURES]  # the truth figures included
    for name in _drawn(html):
        _assert_real_png(out / name)
    assert "What is missing" not in html and "every figure is drawn" in html
    for paper in PAPER_FIGURES:
        assert f'<span class="paper">{paper} analogue.</span>' in html, paper
    # the run summary: counts, every step done with its timings and provenance, rejects, emulator, reductions
    ds = open_cube(cube)
    assert f'{ds.sizes["spec"]:,}</div><div class="label">spectra' in html
    assert f'{len(set(ds.star_id.values))}</div><div class="label">stars' in html
    steps = html[html.index('id="steps"') : html.index('id="rejects"')]
    assert steps.count('<span class="state state-done">done</span>') == len(default_registry().names())
    assert "no run recorded" not in steps and "catalog:labels" in steps
    # the stage steps: normalize, pca, fit, chi2ratio, bad_spectra, calibrate_errors, extinction, final_sample,
    # mks, distances
    assert len(re.findall(r"\d+ of \d+ chunks computed, \d+ rejects", steps)) == 10
    # the fit's models: the cool-star check's emulator (fit.cool_star_emulator, on by default) and the emulator
    assert re.search(r"stage fit v\d+, config [0-9a-f]{12}, cool_star [0-9a-f]{12}, emulator [0-9a-f]{12}", steps)
    assert re.search(r"pca model pca\.npz, sha256 [0-9a-f]{12}", steps)
    assert "<td>ingest</td><td><code>" in html  # the mock's invalid files are among the rejects
    precision = r'overall \(standard deviation\)</td><td class="num">\d+\.\d{3} %</td><td class="num">0\.165 %'
    assert re.search(precision, html)
    assert "chi2ratio of the fitted spectra per Teff and S/N region" in html and "S/N &lt; 50" in html
    assert re.search(r'<td>&lt; 10,000</td>(<td class="num">[^<]+</td>){4}', html)  # chi2ratio per Teff, S/N
    assert re.search(r'<td class="num">[+-]\d\.\d\d / \d\.\d\d / \d+\.\d% \([\d,]+\)</td>', html)
    assert re.search(r"<td>non_emission</td><td class=\"num\">\d+</td>\s*<td class=\"num\">[+-]\d", html)
    # P2 §5.1's final sample: its size, the spectra per rule and per emulator component, and against the truth
    final = html[html.index('id="final-sample"') : html.index('id="emulator"')]
    n_in = int((ds.final_sample.values == 1).sum())
    assert f'{n_in:,}</div><div class="label">in the final sample' in html
    assert f"<b>{n_in:,}</b> of {ds.sizes['spec']:,} spectra" in final and "not computed yet" not in final
    assert final.count("<tr><td><code>flag_") == 12  # the six rules, in the counts and in the truth's table
    assert "Spectra per emulator component" in final
    assert "Contaminants in the final sample:" in final and "hot stars removed:" in final
