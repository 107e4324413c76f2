"""The survey-wide steps on a cube of synthetic fits (SPEC §6, §13): uniqflag, chi2ratio, repeats, export.

The fitted labels are written by a stand-in stage (no emulator), so the steps' bookkeeping — cached
reductions, recorded coefficients, re-use when nothing changed, refit after an append — is tested quickly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import CubeConfig, load_config
from survey_scale.core.labels import LABEL_NAMES, P2_TABLE5_CORRELATIONS
from survey_scale.engine.contracts import ChunkContext, Output, Stage, StageResult
from survey_scale.engine.runner import DaskEngine
from survey_scale.stages import chi2ratio, export, final_sample, repeats, uniqflag
from survey_scale.store.cube import create_cube, open_cube, open_group, resize_spec, write_column

N_STARS = 700
L = len(LABEL_NAMES)


def _visits(n_stars: int, seed: int, first_star: int = 0) -> pd.DataFrame:
    """Stars with 1–3 visits on different nights; some visits share a night."""
    rng = np.random.default_rng(seed)
    n_visits = rng.choice([1, 2, 3], n_stars, p=[0.3, 0.4, 0.3])
    star = np.repeat(np.arange(first_star, first_star + n_stars), n_visits)
    snr_star = 10 ** rng.uniform(1.0, 2.4, n_stars)
    teff_star = 10 ** rng.uniform(3.9, 4.4, n_stars)
    idx = star - first_star
    snr = snr_star[idx] * 10 ** rng.normal(0, 0.03, star.size)
    return pd.DataFrame(
        {
            "specid": [f"5{7000 + i:05d}-P-01-{s % 1000:03d}" for i, s in enumerate(star + 10 * first_star)],
            "star_id": [f"S{s:07d}+000000" for s in star],
            "snr_g": snr.astype(np.float32),
            "lmjd": (57000 + rng.integers(0, 6, star.size)).astype(np.int32),
            "teff_true": teff_star[idx],
            "ra": (star % 360).astype(float),
            "dec": ((star * 7) % 170 - 85).astype(float),
            # what step final_sample reads besides the fit: no Gaia colour, a few QSOs among the stars
            "BP": np.full(star.size, np.nan, np.float32),
            "RP": np.full(star.size, np.nan, np.float32),
            "ebv": np.full(star.size, np.nan, np.float32),
            "class": np.where(star % 101 == 0, "QSO", "STAR").astype(object),
            "subclass": np.where(star % 101 == 0, "", "B5").astype(object),
        }
    )


def fake_fit_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Labels with errors 2× too small (as the fit's are against repeat visits) and an S/N-dependent χ²."""
    rows = np.arange(ctx.start, ctx.stop)
    rng = np.random.default_rng(rows)  # one stream per chunk's rows: deterministic
    snr = inputs["snr_g"].astype(np.float64)
    err = np.outer(100.0 / snr, np.ones(L)) * np.linspace(1, 2, L)
    labels = np.outer(inputs["teff_true"], np.ones(L)) * 0 + 1.0
    labels[:, 0] = inputs["teff_true"]
    labels = labels + 2.0 * err * rng.normal(size=err.shape)
    chi2 = 1.0 + 0.3 * np.log10(snr) + 0.1 * rng.normal(size=snr.size)
    chi2[rows % 97 == 0] = 50.0  # a few bad fits
    flags = np.where(rows % 113 == 0, 4, 0).astype(np.uint8)  # a few non-converged
    out = {
        "labels": labels.astype(np.float32),
        "label_err": err.astype(np.float32),
        "chi2_red": chi2.astype(np.float32),
        "fit_flags": flags,
        # the cool-star check: hot stars, the cool-star model at the top of its range and a worse fit
        "teff_cool": np.full(snr.size, 8500.0, np.float32),
        "chi2_red_cool": (chi2 + 1.0).astype(np.float32),
        "chi2_red_hot": chi2.astype(np.float32),
        **{f"corr_{a}_{b}": np.zeros(snr.size, np.float32) for a, b in P2_TABLE5_CORRELATIONS},
    }
    return StageResult(out)


FAKE_FIT = Stage(
    "fit",
    "fake",
    fake_fit_chunk,
    inputs=("snr_g", "teff_true"),
    outputs=(
        Output("labels", "float32", ("spec", "label")),
        Output("label_err", "float32", ("spec", "label")),
        Output("chi2_red", "float32"),
        Output("fit_flags", "uint8"),
        *(Output(name, "float32") for name in ("teff_cool", "chi2_red_cool", "chi2_red_hot")),
        *(Output(f"corr_{a}_{b}", "float32") for a, b in P2_TABLE5_CORRELATIONS),
    ),
    dims={"label": LABEL_NAMES},
)


def _append(path: Path, visits: pd.DataFrame) -> None:
    root = open_group(path)
    old = {c: root[c][:] for c in visits.columns} if "specid" in root else None
    start = 0 if old is None else old["specid"].shape[0]
    resize_spec(path, start + len(visits))
    root = open_group(path, mode="r+")
    for col in visits.columns:
        values = visits[col].to_numpy()
        if old is not None:
            values = np.concatenate([np.asarray(old[col]).astype(values.dtype), values])
        write_column(root, col, values, {})


@pytest.fixture
def fitted(tmp_path: Path, client) -> tuple[Any, DaskEngine]:
    path = tmp_path / "cube.zarr"
    create_cube(path, CubeConfig(shard_spectra=512, inner_chunk_spectra=64))
    _append(path, _visits(N_STARS, 1))
    engine = DaskEngine(path, client, progress=False)
    engine.run_stage(FAKE_FIT)
    config = load_config(None, {"cube.path": path, "export.out": tmp_path / "catalogs"})
    return config, engine


def _run_all(config, engine) -> dict[str, Any]:
    return {
        "uniqflag": uniqflag.run(config, engine),
        "chi2ratio": chi2ratio.run(config, engine),
        "repeats": repeats.run(config, engine),
        "final_sample": final_sample.run(config, engine),
        "export": export.run(config, engine),
    }


def test_survey_steps_write_columns_coefficients_and_catalogs(fitted) -> None:
    config, engine = fitted
    results = _run_all(config, engine)
    ds = open_cube(engine.cube)
    n = ds.sizes["spec"]
    # uniqflag: each star has exactly one 1, and its S/N is the star's highest
    table = pd.DataFrame({"star": ds["star_id"].values, "snr": ds["snr_g"].values, "u": ds["uniqflag"].values})
    assert (table.groupby("star")["u"].apply(lambda u: sorted(u) == list(range(1, len(u) + 1)))).all()
    best = table.loc[table.groupby("star")["snr"].idxmax()]
    assert (best["u"] == 1).all()
    # chi2ratio ≈ N(0, 1) for good fits; the bad ones flagged
    ratio = ds["chi2ratio"].values
    bad = np.arange(n) % 97 == 0
    assert abs(np.median(ratio[~bad])) < 0.15
    assert 0.8 < 1.4826 * np.median(np.abs(ratio[~bad] - np.median(ratio[~bad]))) < 1.25
    assert ds["flag_chi2ratio"].values[bad].all() and ds["flag_chi2ratio"].values[~bad].mean() < 0.01
    # calibrated errors ≈ 2× formal (the stand-in's errors are 2× too small)
    scale = ds["teff_err"].values / ds["label_err"].sel(label="teff").values
    assert np.nanmedian(scale) == pytest.approx(2.0, rel=0.15)
    attrs = ds.attrs["reductions"]
    assert set(attrs) >= {"chi2ratio", "repeat_precision", "error_calibration"}
    assert attrs["repeat_precision"]["pull_sigma"]["teff"]["calibrated"] == pytest.approx(1.0, abs=0.1)
    assert attrs["repeat_precision"]["pull_sigma"]["teff"]["formal"] == pytest.approx(2.0, rel=0.15)
    assert ds["chi2ratio"].attrs["provenance_stage"] == "chi2ratio"
    # catalogs: the same rows in FITS and Parquet, with units
    from astropy.table import Table

    fits_table = Table.read(results["export"].paths["fits"])
    parquet = pd.read_parquet(results["export"].paths["parquet"])
    assert len(fits_table) == len(parquet) == n
    assert list(fits_table.colnames) == list(parquet.columns)
    assert str(fits_table["teff"].unit) == "K" and str(fits_table["pmra"].unit) == "mas / yr"
    assert np.array_equal(fits_table["specid"].astype(str), parquet["specid"].to_numpy().astype(str))
    assert np.allclose(fits_table["teff_err"], parquet["teff_err"], equal_nan=True)
    assert fits_table.meta["CREATOR"] == "survey_scale"
    import pyarrow.parquet as pq

    meta = pq.read_schema(results["export"].paths["parquet"])
    assert json.loads(meta.metadata[b"survey_scale"])["producer"] == "survey_scale"
    assert meta.field("teff").metadata[b"unit"] == b"K"
    assert set(parquet["final_sample"]) <= {0, 1} and parquet["final_sample"].sum() > 0.8 * n
    assert (parquet.loc[parquet["flag_chi2ratio"] == 1, "final_sample"] == 0).all()
    qso = parquet["lasp_class"] == "QSO"
    assert (
        qso.any()
        and (parquet.loc[qso, "flag_non_stellar"] == 1).all()
        and (parquet.loc[qso, "final_sample"] == 0).all()
    )
    assert (parquet["flag_cool_star"] == 0).all() and (parquet.loc[~qso, "flag_non_stellar"] == 0).all()


def test_survey_steps_do_nothing_when_up_to_date_and_refit_after_an_append(fitted) -> None:
    config, engine = fitted
    _run_all(config, engine)
    before = open_cube(engine.cube).attrs["reductions"]
    again = _run_all(config, engine)
    assert again["uniqflag"].rewrote is False
    assert again["chi2ratio"].n_computed == 0 and again["repeats"].n_computed == 0
    assert again["final_sample"].n_computed == 0
    assert open_cube(engine.cube).attrs["reductions"] == before
    # an append: new stars and new visits; the fit runs on the new rows only, the survey fits are redone
    _append(engine.cube, _visits(300, 2, first_star=N_STARS))
    fit = engine.run_stage(FAKE_FIT)
    assert fit.n_done_before >= 1
    after = _run_all(config, engine)
    assert after["uniqflag"].rewrote is True
    assert after["chi2ratio"].n_computed == after["chi2ratio"].n_chunks  # the coefficients changed
    reductions = open_cube(engine.cube).attrs["reductions"]
    assert reductions["chi2ratio"]["n_spectra"] > before["chi2ratio"]["n_spectra"]
    assert reductions["repeat_precision"]["n_pairs"] > before["repeat_precision"]["n_pairs"]


def test_export_opens_in_lsdb(fitted) -> None:
    lsdb = pytest.importorskip("lsdb")
    config, engine = fitted
    _run_all(config, engine)
    catalog = lsdb.open_catalog(config.export.out / "labels_hats")
    frame = catalog.compute()
    assert len(frame) == engine.n_spectra()
    assert {"specid", "teff", "teff_err", "chi2ratio", "uniqflag"} <= set(frame.columns)


def test_export_and_info_from_the_command_line(fitted, tmp_path: Path, capsys) -> None:
    from survey_scale import cli
    from survey_scale.store.cube import create_cube as make_cube

    config, engine = fitted
    out = tmp_path / "cli_catalogs"
    assert cli.main(["export", str(engine.cube), "--out", str(out), "--format", "parquet", "--workers", "1"]) == 2
    assert "run `survey-scale run` on it first" in capsys.readouterr().err  # no reductions yet
    for step in (uniqflag, chi2ratio, repeats):
        step.run(config, engine)
    assert cli.main(["info", str(engine.cube)]) == 0
    text = capsys.readouterr().out
    assert "chi2ratio: median and dispersion of chisq_red per (log10 Teff, log10 S/N) cell" in text
    assert "chi2ratio of the fitted spectra: median / robust sigma (5-sigma clip) / % > 10 (n)" in text
    assert "repeat precision:" in text and "error calibration:" in text and "teff     order" in text
    args = ["export", str(engine.cube), "--out", str(out), "--format", "parquet,fits", "--workers", "1"]
    assert cli.main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"catalog (parquet): {out / 'labels.parquet'}" in printed and (out / "labels.fits").exists()
    assert not (out / "labels_hats").exists() and not list(out.glob(".labels-parts"))
    empty = tmp_path / "empty.zarr"
    make_cube(empty, CubeConfig())
    assert cli.main(["export", str(empty), "--workers", "1"]) == 2


def test_survey_figures(fitted, tmp_path: Path) -> None:
    from survey_scale.products.figures import write_figures

    config, engine = fitted
    with pytest.raises(FileNotFoundError, match="no repeat_precision reduction yet"):
        write_figures("survey", engine.cube, tmp_path / "figs")
    _run_all(config, engine)
    paths = write_figures("survey", engine.cube, tmp_path / "figs")
    assert [p.name for p in paths] == ["repeat_precision.png", "chi2ratio.png"]
    assert all(p.stat().st_size > 20_000 for p in paths)
