"""Ingest (SPEC §2): real layouts, catalogs, bad input, idempotence, append, resume, lock."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from survey_scale.config import Config
from survey_scale.io.lamost import read_lamost, relabel_lamost_file
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.science.ingest import make_star_id
from survey_scale.science.resample import C_KMS
from survey_scale.store.cube import create_cube, open_cube, open_rejects
from survey_scale.store.lock import WriterLock
from tests.conftest import (
    DR2_FLOAT64,
    DR7_101001,
    DR9_101001,
    assert_same_arrays,
    cli_process,
    small_config,
    store_arrays,
)

QSO = "spec-60591-LN042429N340750BM01_sp01-005.fits.gz"


def run_ingest(config: Config, client):
    if not (Path(config.cube.path) / "zarr.json").exists():
        create_cube(config.cube.path, config.cube)
    return run_pipeline_with_client(config, client, progress=False, until="ingest").ingest


def header_catalog(folder: Path) -> pd.DataFrame:
    """A release catalog built from the files' headers (rv given 5 km/s above Z·c to see which is used)."""
    rows = []
    for path in sorted(folder.glob("*.fits*")):
        sp = read_lamost(path)
        rows.append(
            {
                "obsid": sp.get("OBSID") or -1,
                "lmjd": sp.get("LMJD"),
                "planid": sp.get("PLANID"),
                "spid": sp.get("SPID"),
                "fiberid": int(sp.get("FIBERID")),
                "ra": sp.get("RA"),
                "dec": sp.get("DEC"),
                "snrg": sp.get("SNRG", "SN_G"),
                "rv": sp.get("Z") * C_KMS + 5.0,
                "rv_err": 3.0,
            }
        )
    return pd.DataFrame(rows).drop_duplicates("obsid", keep="first").reset_index(drop=True)


# --- real files ------------------------------------------------------------------------------------------


def test_real_files_without_catalog(lamost_dir: Path, tmp_path: Path, client) -> None:
    config = small_config(tmp_path, **{"ingest.input": str(lamost_dir)})
    (summary,) = run_ingest(config, client)
    assert (summary.n_files, summary.n_new, summary.n_rejected) == (10, 9, 1)
    assert summary.n_files == summary.n_ingested + summary.n_rejected
    ds = open_cube(config.cube.path)
    assert ds.sizes == {"spec": 9, "wave": 3802}
    assert list(ds.specid.values) == sorted(ds.specid.values)  # rows in specid order
    row = int(np.flatnonzero(ds.specid.values == "55859-F5902-01-001")[0])
    sp = read_lamost(lamost_dir / DR9_101001)
    assert ds.obsid.values[row] == 101001 and ds.rv_source.values[row] == "header"
    assert ds.rv.values[row] == pytest.approx(sp.get("Z") * C_KMS, rel=1e-6)
    assert ds.snr_g.values[row] == pytest.approx(12.22) and ds.release.values[row] == "DR9"
    assert ds.star_id.values[row] == "S3321208-020324"  # RA 332.202274 = 332°12'08", Dec -2.056767 = -02°03'24"
    dr2 = int(np.flatnonzero(ds.specid.values == "55916-B5591606-01-001")[0])
    assert ds.obsid.values[dr2] == -1 and ds.snr_g.values[dr2] == pytest.approx(3.71)
    flux, ivar = ds.flux.values, ds.ivar.values
    assert np.all(np.isfinite(flux)) and (ivar > 0).mean() > 0.9
    rejects = open_rejects(config.cube.path).set_index("code")
    assert list(rejects.index) == ["duplicate_specid"]
    assert Path(rejects.loc["duplicate_specid", "source"]).name == DR7_101001
    # the QSO (DR13, z = 0.308) is kept, not shifted by its redshift, with no RV: flagged non-stellar later
    qso = int(np.flatnonzero(ds.fitsname.values == QSO)[0])
    assert ds["class"].values[qso] == "QSO" and ds.z.values[qso] == pytest.approx(0.308, abs=1e-3)
    assert np.isnan(ds.rv.values[qso]) and np.isnan(ds.rv_err.values[qso]) and ds.rv_source.values[qso] == ""
    assert ds.coverage.values[qso] > 0.5 and np.isfinite(ds.flux.values[qso]).all()


def test_ingest_classes_selects_lamost_classes_and_the_default_emulator_is_physical(
    lamost_dir: Path, tmp_path: Path, client
) -> None:
    """``ingest.classes`` rejects the other classes (``class_not_selected``, counted by ``survey-scale info``);
    real files are ``file_origin`` lamost, so the emulator step chooses ``physical`` and info says why."""
    from survey_scale.engine.runner import DaskEngine
    from survey_scale.products.info import cube_info
    from survey_scale.stages import emulator

    config = small_config(tmp_path, **{"ingest.input": str(lamost_dir), "ingest.classes": ["A", "M"]})
    (summary,) = run_ingest(config, client)
    assert (summary.n_files, summary.n_new, summary.n_rejected) == (10, 2, 8)
    ds = open_cube(config.cube.path)
    assert list(ds.subclass.values) == ["A2", "dM5"] and list(ds["class"].values) == ["STAR", "STAR"]
    assert list(ds.file_origin.values) == ["lamost", "lamost"] and np.isnan(ds.lasp_teff.values).all()
    rejects = open_rejects(config.cube.path)
    assert list(rejects["code"]) == ["class_not_selected"] * 8  # the QSO and the duplicate too: class comes first
    reasons = dict(zip((Path(p).name for p in rejects["source"]), rejects["reason"]))
    assert reasons[QSO].startswith("LAMOST class QSO, subclass Non is not among ingest.classes [A, M]")
    assert "class STAR, subclass K7" in reasons["spec-55859-F5902_sp01-002.fits.gz"]

    path = emulator.run(config, DaskEngine(Path(config.cube.path), client, progress=False)).path
    assert path.name == "physical.npz"
    text = cube_info(config.cube.path)
    assert "class_not_selected" in text and "      8  e.g." in text
    assert "  emulator: physical (chosen by the input), file physical.npz" in text
    assert "why: all 2 of the 2 spectra are real LAMOST files" in text
    assert "spectra by file origin: mock 0, lamost 2, unknown 0" in text


def test_dr7_and_dr9_copies_give_identical_rows(lamost_dir: Path, tmp_path: Path, client) -> None:
    rows = {}
    for name in (DR7_101001, DR9_101001):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        shutil.copy(lamost_dir / name, folder)
        config = small_config(folder, **{"ingest.input": str(folder), "ingest.release": "DR9"})
        run_ingest(config, client)
        rows[name] = open_cube(config.cube.path).isel(spec=0).compute()
    a, b = rows[DR7_101001], rows[DR9_101001]
    differ = {"fitsname", "source_path", "layout"}
    for name in a.data_vars:
        if name not in differ:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert (a.layout.item(), b.layout.item()) == ("image", "coadd")


def test_star_id_format() -> None:
    ids = make_star_id(np.array([0.0, 359.99999, 66.43298, 148.203411]), np.array([0.0, -89.5, 32.625089, 29.1691]))
    assert list(ids) == ["S0000000+000000", "S0000000-893000", "S0662559+323730", "S1481212+291009"]


@pytest.mark.parametrize("fmt", ["csv", "fits", "parquet"])
def test_catalog_and_crossmatch_join(lamost_copy: Path, tmp_path: Path, client, fmt: str) -> None:
    (lamost_copy / DR7_101001).unlink()
    catalog = header_catalog(lamost_copy)
    orphan = catalog.iloc[[0]].assign(obsid=999999, fiberid=250)
    no_row = "spec-55859-F5902_sp01-013_dr8.fits.gz"
    catalog = pd.concat([catalog[catalog.obsid != 101013], orphan], ignore_index=True)
    cat_path = tmp_path / f"catalog.{fmt}"
    if fmt == "csv":
        catalog.to_csv(cat_path, index=False)
    elif fmt == "parquet":
        catalog.to_parquet(cat_path, index=False)
    else:
        from astropy.table import Table

        Table.from_pandas(catalog).write(cat_path)
    xmatch = pd.DataFrame(
        {
            "obsid": [101001, 101002],
            "source_id": [7, 8],
            "parallax": [1.5, 0.2],
            "phot_g_mean_mag": [12.0, 13.0],
            "ks_m": [10.0, 11.0],
        }
    )
    xmatch.to_parquet(tmp_path / "xm.parquet")
    config = small_config(
        tmp_path,
        **{
            "ingest.input": str(lamost_copy),
            "ingest.catalog": str(cat_path),
            "ingest.crossmatch": str(tmp_path / "xm.parquet"),
        },
    )
    (summary,) = run_ingest(config, client)
    assert (summary.n_files, summary.n_new, summary.n_rejected, summary.n_catalog_rejected) == (9, 8, 1, 1)
    ds = open_cube(config.cube.path)
    by_obsid = {int(o): i for i, o in enumerate(ds.obsid.values)}
    qso = int(np.flatnonzero(ds.fitsname.values == QSO)[0])  # the catalog's rv (c·z + 5) is no stellar RV
    assert np.isnan(ds.rv.values[qso]) and np.isnan(ds.rv_err.values[qso]) and ds.rv_source.values[qso] == ""
    row = by_obsid[101001]
    assert ds.rv_source.values[row] == "catalog"
    assert ds.rv.values[row] == pytest.approx(read_lamost(lamost_copy / DR9_101001).get("Z") * C_KMS + 5, rel=1e-5)
    assert ds.gaia_id.values[row] == 7 and ds.parallax.values[row] == pytest.approx(1.5)
    assert ds.G.values[row] == 12.0 and ds.Ks.values[row] == 10.0 and np.isnan(ds.J.values[row])
    assert ds.gaia_id.values[by_obsid[101005]] == -1 and np.isnan(ds.parallax.values[by_obsid[101005]])
    dr2 = int(np.flatnonzero(ds.specid.values == "55916-B5591606-01-001")[0])
    assert ds.rv_source.values[dr2] == "catalog"  # joined by specid (the file has no OBSID)
    codes = open_rejects(config.cube.path).groupby("code")["source"].apply(list).to_dict()
    assert [Path(p).name for p in codes["no_catalog_row"]] == [no_row]
    assert codes["catalog_row_without_file"] == [f"{cat_path}#row={len(catalog) - 1}"]


# --- bad input --------------------------------------------------------------------------------------------


def _edit_coadd(src: Path, dst: Path, edit) -> None:
    with fits.open(src) as hdul:
        table = hdul["COADD"].data
        arrays = {n: np.array(table[n][0]) for n in table.columns.names}
        header = hdul[0].header.copy()
    edit(arrays, header)
    cols = [fits.Column(name=n, format=f"{a.size}E", array=a[None, :]) for n, a in arrays.items()]
    hdul = fits.HDUList([fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(cols, name="COADD")])
    hdul.writeto(dst, output_verify="silentfix")


def make_bad_inputs(src: Path, folder: Path) -> dict[str, str]:
    """Bad files next to good ones: file name -> expected reject code (15 kinds)."""
    good = src / DR9_101001
    bad: dict[str, str] = {}

    def name(i: int) -> str:
        return f"spec-55859-BAD_sp02-{i:03d}.fits"

    def relabel(i: int, **kw) -> Path:
        return relabel_lamost_file(
            good, folder, obsid=800000 + i, fiberid=i, planid="BAD", spid=2, suffix=".fits", **kw
        )

    (folder / name(1)).write_bytes(b"")
    bad[name(1)] = "empty_file"
    (folder / name(2)).write_text("this is a text file, not FITS\n" * 40)
    bad[name(2)] = "not_fits"
    raw = good.read_bytes()
    (folder / (name(3) + ".gz")).write_bytes(raw[: len(raw) // 2])
    bad[name(3) + ".gz"] = "truncated"
    (folder / name(4)).write_bytes(gzip.decompress(raw)[:15000])
    bad[name(4)] = "truncated"

    def drop_ivar(a, h):
        a.pop("IVAR")

    _edit_coadd(good, folder / name(5), drop_ivar)
    bad[name(5)] = "missing_column"
    with fits.open(src / DR7_101001) as hdul:
        fits.PrimaryHDU(hdul[0].data[:3], hdul[0].header).writeto(folder / name(6))
    bad[name(6)] = "wrong_shape"
    fits.PrimaryHDU().writeto(folder / name(7))
    bad[name(7)] = "missing_hdu"

    def edit_and_relabel(i: int, edit) -> None:
        tmp = relabel(i)
        _edit_coadd(tmp, tmp.with_name("tmp.fits"), edit)
        os.replace(tmp.with_name("tmp.fits"), tmp)

    edit_and_relabel(8, lambda a, h: a["FLUX"].fill(np.nan))
    bad[name(8)] = "all_nan_flux"
    edit_and_relabel(9, lambda a, h: a["IVAR"].__setitem__(slice(100, 110), -1.0))
    bad[name(9)] = "negative_ivar"
    edit_and_relabel(10, lambda a, h: a["WAVELENGTH"].__setitem__(slice(500, 502), [5000.0, 4000.0]))
    bad[name(10)] = "wavelength_not_increasing"
    edit_and_relabel(11, lambda a, h: h.__setitem__("RA", 999.0))
    bad[name(11)] = "header_out_of_range"
    edit_and_relabel(12, lambda a, h: a["WAVELENGTH"].__imul__(3.0))
    bad[name(12)] = "no_overlap"
    edit_and_relabel(13, lambda a, h: a["IVAR"].fill(0.0))
    bad[name(13)] = "no_valid_pixels"
    shutil.copy(good, folder / "renamed-copy-of-101001.fits.gz")
    bad["renamed-copy-of-101001.fits.gz"] = "duplicate_specid"
    edit_and_relabel(14, lambda a, h: h.__setitem__("Z", 0.308))  # a STAR at a QSO's redshift
    bad[name(14)] = "rv_out_of_range"
    return bad


def test_bad_inputs_are_rejected_with_reasons(lamost_dir: Path, tmp_path: Path, client) -> None:
    folder = tmp_path / "input"
    folder.mkdir()
    for name in (DR9_101001, DR2_FLOAT64, "spec-55859-F5902_sp01-002.fits.gz", QSO):  # a QSO is no bad input
        shutil.copy(lamost_dir / name, folder)
    bad = make_bad_inputs(lamost_dir, folder)
    assert len(set(bad.values())) >= 14
    config = small_config(tmp_path, **{"ingest.input": str(folder)})
    (summary,) = run_ingest(config, client)
    assert summary.n_files == 4 + len(bad)
    assert summary.n_files == summary.n_ingested + summary.n_rejected
    assert (summary.n_new, summary.n_rejected) == (4, len(bad))
    rejects = open_rejects(config.cube.path)
    got = {Path(s).name: c for s, c in zip(rejects["source"], rejects["code"])}
    assert got == bad
    assert all(str(folder) in s for s in rejects["source"])
    assert all(len(r) > 15 for r in rejects["reason"])  # a reason a person can act on, not just a code


# --- idempotence, append, resume, lock ----------------------------------------------------------------------


def _copies(lamost_dir: Path, folder: Path, n: int, first_obsid: int, planid: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = [lamost_dir / DR9_101001, lamost_dir / "spec-55859-F5902_sp01-002.fits.gz", lamost_dir / DR2_FLOAT64]
    return [
        relabel_lamost_file(
            sources[i % 3],
            folder,
            obsid=first_obsid + i,
            fiberid=1 + i % 250,
            spid=1 + i // 250,
            planid=planid,
            suffix=".fits.gz" if i % 2 else ".fits",
        )
        for i in range(n)
    ]


def test_reingest_is_a_noop_and_append_adds_only_new(lamost_dir: Path, tmp_path: Path, client) -> None:
    first = tmp_path / "release1"
    _copies(lamost_dir, first, 10, 5_000_000, "RELA")
    config = small_config(tmp_path, **{"ingest.input": str(first), "ingest.release": "R1"})
    (s1,) = run_ingest(config, client)
    assert (s1.n_new, s1.rows) == (10, (0, 10))
    before = store_arrays(config.cube.path)
    (s2,) = run_ingest(config, client)
    assert (s2.n_files, s2.n_new, s2.n_already, s2.n_rejected) == (10, 0, 10, 0)
    after = store_arrays(config.cube.path)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)

    second = tmp_path / "release2"
    _copies(lamost_dir, second, 7, 6_000_000, "RELB")
    for path in sorted(first.iterdir())[:3]:  # three spectra of release 1 come again in release 2
        shutil.copy(path, second)
    config2 = small_config(tmp_path, **{"ingest.input": str(second), "ingest.release": "R2"})
    (s3,) = run_ingest(config2, client)
    assert (s3.n_files, s3.n_new, s3.n_already, s3.rows) == (10, 7, 3, (10, 17))
    ds = open_cube(config.cube.path)
    assert ds.sizes["spec"] == 17 and len(set(ds.specid.values)) == 17
    assert list(ds.release.values) == ["R1"] * 10 + ["R2"] * 7 and list(ds.batch.values) == [1] * 10 + [3] * 7
    np.testing.assert_array_equal(ds.flux.values[:10], before["flux"])  # old rows untouched


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["inspect", "write"])
def test_resume_after_kill_equals_uninterrupted(lamost_dir: Path, tmp_path: Path, phase: str) -> None:
    folder = tmp_path / "input"
    _copies(lamost_dir, folder, 400, 7_000_000, "KILL")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "cube:\n  shard_spectra: 8\n  inner_chunk_spectra: 4\ningest:\n  files_per_task: 8\n"
        "cluster:\n  n_workers: 2\nrunner:\n  lock_stale_after_s: 600\n"
    )
    args = ("ingest", "--config", str(cfg), "--input", str(folder), "--no-progress")
    reference = tmp_path / "reference.zarr"
    done = subprocess.run(
        [sys.executable, "-m", "survey_scale.cli", *args, "--cube", str(reference)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    cube = tmp_path / "killed.zarr"
    proc = cli_process(*args, "--cube", str(cube))
    watch = cube / "_survey_scale" / ("ingest/batch-0001/inspect" if phase == "inspect" else "markers/ingest")
    deadline = time.time() + 300
    while time.time() < deadline and not (
        watch.is_dir() and any(watch.glob("*.parquet" if phase == "inspect" else "*.json"))
    ):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its worker processes, mid-run
    proc.wait()
    n_marked = len(list((cube / "_survey_scale/markers/ingest").glob("*.json"))) if phase == "write" else 0
    assert n_marked < 50, "the ingest finished before it could be killed"
    assert (cube / "_survey_scale/writer.lock").exists()  # left behind by the killed process: stale

    again = subprocess.run(
        [sys.executable, "-m", "survey_scale.cli", *args, "--cube", str(cube)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "broke a stale writer lock" in again.stderr
    assert_same_arrays(reference, cube, skip=())
    # the compressed shards themselves are byte-identical too
    shards = sorted(p for p in (reference / "flux" / "c").rglob("*") if p.is_file())
    assert len(shards) == 50
    for shard in shards:
        assert shard.read_bytes() == (cube / shard.relative_to(reference)).read_bytes()


def test_writer_lock_refuses_a_second_writer(lamost_dir: Path, tmp_path: Path) -> None:
    config = small_config(tmp_path)
    create_cube(config.cube.path, config.cube)
    with WriterLock(config.cube.path):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "survey_scale.cli",
                "ingest",
                "--input",
                str(lamost_dir),
                "--cube",
                str(config.cube.path),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 2
    assert "another process is writing this cube" in done.stderr and f"pid {os.getpid()}" in done.stderr


def test_stale_lock_of_a_dead_process_is_broken(tmp_path: Path, caplog) -> None:
    config = small_config(tmp_path)
    create_cube(config.cube.path, config.cube)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = Path(config.cube.path) / "_survey_scale" / "writer.lock"
    lock.write_text(f'{{"host": "{os.uname().nodename}", "pid": {dead.pid}, "started": "x", "command": "old"}}')
    with WriterLock(config.cube.path) as held:
        assert held._owner()["pid"] == os.getpid()
    assert "broke a stale writer lock" in caplog.text and not lock.exists()
    # a lock from another host whose heartbeat stopped long ago is stale too
    lock.write_text('{"host": "elsewhere", "pid": 1, "started": "x", "command": "old"}')
    os.utime(lock, (time.time() - 1000, time.time() - 1000))
    with WriterLock(config.cube.path, stale_after_s=120):
        pass
    # but a fresh one from another host is respected
    lock.write_text('{"host": "elsewhere", "pid": 1, "started": "x", "command": "old"}')
    from survey_scale.store.lock import StoreLockedError

    with pytest.raises(StoreLockedError, match="pid 1 on elsewhere"):
        WriterLock(config.cube.path).acquire()


# --- the mock release through the real ingest ------------------------------------------------------------


def test_mock_releases_through_the_ingest(tmp_path: Path, client) -> None:
    from survey_scale.mock import make_release

    first = make_release(tmp_path / "mock1", 60, seed=4, release="MOCK1")
    second = make_release(tmp_path / "mock2", 30, seed=5, release="MOCK2", previous=first.outdir, n_invalid=0)
    summaries = []
    for rel in (first, second):
        config = small_config(
            tmp_path,
            **{
                "cube.shard_spectra": 64,
                "cube.inner_chunk_spectra": 16,
                "ingest.input": str(rel.outdir / "spectra"),
                "ingest.catalog": str(rel.outdir / "catalog.csv"),
                "ingest.crossmatch": str(rel.outdir / "crossmatch.parquet"),
            },
        )
        (summary,) = run_ingest(config, client)
        summaries.append(summary)
    truth = pd.concat([pd.read_parquet(r.outdir / "truth.parquet") for r in (first, second)], ignore_index=True)
    ds = open_cube(small_config(tmp_path).cube.path)
    rejects = open_rejects(small_config(tmp_path).cube.path)

    # exactly the invalid inputs are rejected, each with the code the truth expects
    expected = truth[truth["invalid"]]
    got = dict(zip((Path(s).name if "#row=" not in s else "catalog-row" for s in rejects["source"]), rejects["code"]))
    assert sorted(rejects["code"]) == sorted(expected["expected_reject"])
    for name, code in zip(expected["fitsname"], expected["expected_reject"]):
        if code != "catalog_row_without_file":
            assert got[name] == code
    # every ingested spectrum joins the truth, with its star, release and RV
    joined = pd.DataFrame(
        {
            "specid": ds.specid.values.astype(str),
            "star_id": ds.star_id.values.astype(str),
            "release": ds.release.values.astype(str),
            "rv": ds.rv.values,
        }
    ).merge(truth[~truth["invalid"]], on="specid", how="left", suffixes=("", "_truth"), validate="one_to_one")
    assert joined["star_index"].notna().all() and not joined["invalid"].any()
    assert (joined["star_id"] == joined["star_id_truth"]).all()
    assert (joined["release"] == joined["release_truth"]).all()
    # stars (hot and cool contaminants) take the catalog's RV; QSOs are kept too (not rv_out_of_range), with
    # rv NaN: not shifted by their redshift, flagged non-stellar downstream (issue 23)
    qso = (joined["population"] == "qso").to_numpy()
    valid = truth[~truth["invalid"] & truth["file_written"]]  # what the ingest must keep: every valid file
    assert len(joined) == len(valid) and set(joined["population"]) == {"hot", "cool_contaminant", "qso"}
    assert qso.sum() == (valid["population"] == "qso").sum() >= 2  # at least one per release
    np.testing.assert_allclose(joined["rv"][~qso], joined["rv_meas"][~qso], atol=0.006)  # catalog: 2 decimals
    assert np.isnan(joined["rv"][qso]).all()
    # the second release added only its own spectra, some of them new visits of release-1 stars
    assert summaries[0].n_new == first.n_valid_files and summaries[1].n_new == second.n_valid_files
    assert summaries[1].rows[0] == summaries[0].rows[1]
    revisited = set(joined.loc[joined["release"] == "MOCK2", "star_id"]) & set(
        joined.loc[joined["release"] == "MOCK1", "star_id"]
    )
    assert len(revisited) == second.n_revisited_stars > 0
    for s in summaries:
        assert s.n_files == s.n_ingested + s.n_rejected
    # the mock's header TSOURCE marks its files: the default emulator is the synthesizer that made them
    assert set(ds.file_origin.values) == {"mock"}
    from survey_scale.engine.runner import DaskEngine
    from survey_scale.stages import emulator

    engine = DaskEngine(Path(small_config(tmp_path).cube.path), client, progress=False)
    assert emulator.run(small_config(tmp_path), engine).path.name == "synthesizer.npz"
