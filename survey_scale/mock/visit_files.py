"""The spectrum files of a mock release (SPEC §10): one LAMOST FITS file per visit, headers key for key.

Each batch of visits is simulated (:mod:`survey_scale.mock.spectra`) and written (:mod:`survey_scale.mock.writer`)
with plan-level header values (spectrograph position, exposure, moon, night temperature, flux standards), a
fixed header DATE, and the damage of its invalid kind (:mod:`survey_scale.mock.invalid`); a duplicate is a copy
of a valid file under its other LAMOST name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.mock import contaminants as con
from survey_scale.mock import spectra as spx
from survey_scale.mock import writer as wr

EXPOSURE_S: dict[str, float] = {"B": 1800.0, "M": 3600.0, "F": 5400.0}
"""Total exposure (3 sub-exposures) of bright, medium and faint plans (s)."""

FOCAL_MM_PER_DEG: float = 212.9
"""LAMOST focal-plane scale (16.9″/mm)."""


_PER_VISIT_KEYS: tuple[str, ...] = ("snru", "snrg", "snrr", "snri", "snrz", "light_frac2_g", "corrupt_lo",
                                    "corrupt_hi", "corrupt_amount", "file_written")  # fmt: skip


def _write_spectra(
    spec_dir: Path,
    visits: pd.DataFrame,
    stars: pd.DataFrame,
    cvisits: pd.DataFrame,
    contam: pd.DataFrame,
    seed: int,
    release: str,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Simulate and write the file of every visit: the hot stars' (``visits``), then the contaminants'
    (``cvisits``); each table gets the per-visit values of :data:`_PER_VISIT_KEYS` (in place).

    The header DATE of every file is set by the hot stars' last night (:func:`_processing_date`).
    """
    date_card = _processing_date(int(visits["lmjd"].max()))
    n_total = len(visits) + len(cvisits)
    done = 0
    # The hot stars' visits first, in their own batches (the synthesizer's batched FFTs make the last bits of a
    # spectrum depend on its batch), then the contaminants'.
    for group, group_stars, flux_of in (
        (visits, stars, None),
        (cvisits, contam, lambda b, st: con.contaminant_flux_native(st, b["rv"].to_numpy(), int(seed))),
    ):
        if len(group) == 0:
            continue
        plan_info = _plan_info(group, group_stars, stream=9200 if flux_of is None else 9201)
        star_tab = group_stars.set_index("star_index")
        per_visit: dict[str, list] = {k: [] for k in _PER_VISIT_KEYS}
        for start in range(0, len(group), batch_size):
            batch = group.iloc[start : start + batch_size]
            inputs = spx.visit_inputs(batch, group_stars)
            stellar = None
            if flux_of is not None:
                rows = star_tab.loc[batch["star_index"].to_numpy()].reset_index()
                stellar = flux_of(batch, rows)
                inputs = replace(inputs, distance_pc=np.nan_to_num(inputs.distance_pc, nan=15000.0))
            obs = spx.observe(inputs, int(seed), stellar_flux=stellar)
            _write_batch(spec_dir, batch, obs, star_tab, plan_info, release, date_card, per_visit)
            done += len(batch)
            if progress is not None:
                progress(done, n_total)
        for key, values in per_visit.items():
            group[key] = values


def _write_batch(
    spec_dir: Path,
    batch: pd.DataFrame,
    obs: spx.ObservedBatch,
    star_tab: pd.DataFrame,
    plan_info: pd.DataFrame,
    release: str,
    date_card: str,
    per_visit: dict[str, list],
) -> None:
    """Write a batch's files and collect their per-visit values into ``per_visit``."""
    wave32 = spx.native_wavelength().astype(np.float32)
    for j, (idx, v) in enumerate(batch.iterrows()):
        star = star_tab.loc[int(v["star_index"])]
        snr_b = np.round(obs.snr_bands[j], 2)
        meta = _header_meta(v, star, plan_info.loc[idx], snr_b, release, date_card)
        arrays = {
            "FLUX": obs.flux[j], "IVAR": obs.ivar[j], "WAVELENGTH": wave32,
            "ANDMASK": obs.andmask[j], "ORMASK": obs.ormask[j], "NORMALIZATION": obs.normalization[j],
        }  # fmt: skip
        written = _write_visit(spec_dir, v, meta, arrays)
        for b, name in enumerate(("snru", "snrg", "snrr", "snri", "snrz")):
            per_visit[name].append(float(snr_b[b]))
        per_visit["light_frac2_g"].append(float(obs.light_frac2[j]))
        info = obs.corrupt_info[j]
        for key in ("corrupt_lo", "corrupt_hi", "corrupt_amount"):
            per_visit[key].append(float(info.get(key, np.nan)))
        per_visit["file_written"].append(written)


def _processing_date(max_lmjd: int) -> str:
    """The header DATE ("file created"): 120 days after the last night at 00:00:00 UTC — fixed, so the bytes
    do not depend on when the release is generated."""
    from astropy.time import Time

    return Time(max_lmjd + 120, format="mjd", scale="utc").isot[:19]


def _local_iso(mjd: float) -> str:
    from astropy.time import Time

    return Time(mjd + 8.0 / 24.0, format="mjd", scale="utc").isot[:21]


def _plan_info(visits: pd.DataFrame, stars: pd.DataFrame, stream: int = 9200) -> pd.DataFrame:
    """Per-visit plan-level header values: spectrograph mean position, exposure, moon, focal-plane x/y.

    Night temperatures and flux standards come from ``SeedSequence([first LMJD, stream])`` (the contaminants'
    plans use a stream of their own)."""
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()]
    ra, dec = st["ra"].to_numpy(), st["dec"].to_numpy()
    df = pd.DataFrame({"ra": ra, "dec": dec}, index=visits.index)
    group = visits["lmjd"].astype(str) + "|" + visits["planid"] + "|" + visits["spid"].astype(str)
    df["spra"] = df.groupby(group.to_numpy())["ra"].transform("mean")
    df["spdec"] = df.groupby(group.to_numpy())["dec"].transform("mean")
    ra0, dec0 = st["field_ra"].to_numpy(), st["field_dec"].to_numpy()
    dra = (ra - ra0 + 180.0) % 360.0 - 180.0
    df["x_mm"] = dra * np.cos(np.radians(dec0)) * FOCAL_MM_PER_DEG
    df["y_mm"] = (dec - dec0) * FOCAL_MM_PER_DEG
    df["exptime"] = visits["plan_class"].map(EXPOSURE_S).to_numpy()
    # Moon age (days since new moon; mean synodic month from the new moon of 2000-01-06 18:14 UT).
    df["moonpha"] = np.mod(visits["obs_mjd"].to_numpy() - 51549.76, 29.530589)
    # Night temperature and the plan's flux standards: deterministic functions of the plan.
    codes = pd.factorize(visits["lmjd"].astype(str) + visits["planid"], sort=True)[0]
    rng = np.random.default_rng(np.random.SeedSequence([int(visits["lmjd"].min()), stream]))
    temp = rng.normal(0.0, 6.0, codes.max() + 1)
    fstar = [
        "-".join(str(x) for x in sorted(rng.choice(np.arange(1, 251), 4, replace=False)))
        for _ in range(codes.max() + 1)
    ]
    df["temp_air"] = temp[codes]
    df["fstar"] = np.array(fstar)[codes]
    return df


def _header_meta(
    v: pd.Series, star: pd.Series, plan: pd.Series, snr_bands: np.ndarray, release: str, date_card: str
) -> dict[str, Any]:
    """Header values of one visit (keys as in the files)."""
    exptime = float(plan["exptime"])
    sub = exptime / 3.0
    mid_local_min = (float(v["obs_mjd"]) + 8.0 / 24.0) * 1440.0
    starts = [int(np.floor(mid_local_min - 1.5 * sub / 60.0 - 1.0 + k * (sub / 60.0 + 1.0))) for k in range(3)]
    begin = float(v["obs_mjd"]) - (1.5 * sub + 60.0) / 86400.0
    end = float(v["obs_mjd"]) + (1.5 * sub + 60.0) / 86400.0
    mags = [star.get(b) for b in ("g", "r", "i")]
    return {
        "FILENAME": v["fitsname"],
        "OBSID": int(v["obsid"]),
        "DATA_V": release,
        "DATE": date_card,
        "DATE-OBS": v["date_obs"],
        "DATE-BEG": _local_iso(begin),
        "DATE-END": _local_iso(end),
        "LMJD": int(v["lmjd"]),
        "MJD": int(v["mjd"]),
        "LMJMLIST": "-".join(str(s) for s in starts),
        "PLANID": v["planid"],
        "RA": float(star["ra"]),
        "DEC": float(star["dec"]),
        "DESIG": star["designation"],
        "FIBERID": int(v["fiberid"]),
        "CELL_ID": f"F{(int(v['spid']) - 1) * 250 + int(v['fiberid']):04d}",
        "X_VALUE": f"{plan['x_mm']:.10f}",
        "Y_VALUE": f"{plan['y_mm']:.10f}",
        "OBJNAME": str(int(star["gaia_source_id"])),
        "MAG1": float(mags[0]) if np.isfinite(mags[0]) else 99.0,
        "MAG2": float(mags[1]) if np.isfinite(mags[1]) else 99.0,
        "MAG3": float(mags[2]) if np.isfinite(mags[2]) else 99.0,
        "NEXP": 3,
        "EXPTIME": exptime,
        "BESTEXP": starts[1],
        "SPID": int(v["spid"]),
        "SPRA": float(plan["spra"]),
        "SPDEC": float(plan["spdec"]),
        "SEEING": float(v["seeing"]),
        "MOONPHA": float(plan["moonpha"]),
        "TEMP_AIR": float(plan["temp_air"]),
        "FSTAR": plan["fstar"],
        "HELIO_RV": float(v["helio_rv"]),
        "COEFF0": spx.NATIVE_COEFF0,
        "COEFF1": spx.NATIVE_COEFF1,
        "CLASS": star.get("lamost_class", "STAR"),
        "SUBCLASS": star["subclass"],
        "Z": float(v["rv_meas"]) / spx.C_KMS,
        "Z_ERR": float(v["rv_err"]) / spx.C_KMS,
        "SNRU": float(snr_bands[0]),
        "SNRG": float(snr_bands[1]),
        "SNRR": float(snr_bands[2]),
        "SNRI": float(snr_bands[3]),
        "SNRZ": float(snr_bands[4]),
    }


def _write_visit(spec_dir: Path, v: pd.Series, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bool:
    """Write one visit's file (damaged if it is an invalid extra); return whether a file was written."""
    kind = v["invalid_kind"]
    path = spec_dir / v["fitsname"]
    layout = v["layout"]
    if kind == "catalog_row_without_file":
        return False
    if kind == "all_nan_flux":
        arrays["FLUX"] = np.full_like(arrays["FLUX"], np.nan)
    elif kind == "negative_ivar":
        arrays["IVAR"] = arrays["IVAR"].copy()
        arrays["IVAR"][1000:1040] *= -1.0
    elif kind == "wavelength_not_increasing":
        arrays["WAVELENGTH"] = arrays["WAVELENGTH"].copy()
        arrays["WAVELENGTH"][2000:2100] = arrays["WAVELENGTH"][2000:2100][::-1]
    elif kind == "header_out_of_range":
        meta = {**meta, "RA": 400.0, "RA_OBS": 400.0}
    entries = wr.lamost_header_entries(meta, layout)
    if kind == "not_fits":
        data = wr.not_fits_bytes(v["fitsname"])
    elif kind == "wrong_shape":
        data = wr.image_hdu_bytes(entries, [arrays["FLUX"], arrays["IVAR"], arrays["WAVELENGTH"]])
    elif kind == "missing_column":
        cols = {k: arrays[k] for k in wr.COADD_COLUMNS if k != "IVAR"}
        data = wr.coadd_bytes(entries, cols, n_pix_header=arrays["FLUX"].size)
    else:
        data = wr.spectrum_bytes(layout, entries, arrays)
    if kind == "truncated_fits":
        data = wr.truncate(data, 0.6)
    if kind == "truncated_gz":
        import gzip

        wr.write_bytes(
            path.with_name(path.name + ".gz"),
            wr.truncate(gzip.compress(data, 6, mtime=0), 0.5),
            compress=False,
        )
        return True
    wr.write_bytes(path, data, compress=bool(v["gzip"]))
    return True


def _write_duplicate(spec_dir: Path, src: pd.Series) -> dict[str, Any]:
    """Copy a valid file under its other LAMOST name (``.fits`` → ``.fits.gz``, or the reverse when every
    file is gzipped): one spectrum, two file names, one specid."""
    import gzip

    raw = (spec_dir / src["fitsname_written"]).read_bytes()
    if src["gzip"]:
        data, name, gz = gzip.decompress(raw), src["fitsname"], False
    else:
        data, name, gz = gzip.compress(raw, 6, mtime=0), src["fitsname"] + ".gz", True
    wr.write_bytes(spec_dir / name, data, compress=False)
    return {"source_index": int(src.name), "fitsname_written": name, "gzip": gz}
