"""Write a complete mock LAMOST release: spectra, catalog, cross-match and truth (SPEC §10).

Layout of ``OUTDIR``::

    spectra/spec-<LMJD>-<PLANID>_sp<SS>-<FFF>.fits[.gz]   LAMOST files, DR7 image or DR8+ COADD layout
    catalog.csv                                          release catalog, one row per spectrum (LAMOST names)
    crossmatch.parquet                                   Gaia DR2 / 2MASS / g,r,i per spectrum (by obsid)
    truth.parquet                                        per spectrum: every true value and defect
    truth_stars.parquet                                  per star: the population table (hot stars)
    truth_contaminants.parquet                           per contaminant: cool stars and QSOs (if any)
    release.json                                         seed, counts, options, code version

The same arguments give byte-identical files: every random draw comes from ``numpy.random.SeedSequence``
streams of the seed, headers carry a fixed DATE, gzip is written with mtime 0, and nothing records the
time of the run. Like a real hot-star candidate list, a release also holds contaminants — cool F/G/K stars
(``cool_fraction`` of all stars, default 0.3) and a few QSOs — drawn from streams of their own and observed
on plans of their own after the hot stars, so that the hot stars' files and truth rows are the same with or
without them (:mod:`survey_scale.mock.contaminants`). A second release can extend the first
(``previous=``): some of its (hot) stars are observed again (same star_index, star_id, RA/Dec and truths,
new visits) next to new stars, on later nights, so specids and obsids never collide.

Truth columns that say what each spectrum is: ``population`` ("hot", "cool_contaminant", "qso"),
``lamost_class`` (CLASS: "STAR" or "QSO"), ``lamost_subclass`` (SUBCLASS as written), ``true_subclass``
(that of the true Teff), ``misclassified`` (a cool star given an A-type subclass) and ``redshift`` (QSOs).
Cool contaminants carry their true teff, logg, vsini and fe_h (the other labels NaN: not modelled).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale._version import __version__
from survey_scale.core.labels import LABEL_NAMES
from survey_scale.mock import contaminants as con
from survey_scale.mock import photometry as ph
from survey_scale.mock import population as pop
from survey_scale.mock import schedule as sch
from survey_scale.mock import spectra as spx
from survey_scale.mock import writer as wr

INVALID_KINDS: tuple[str, ...] = (
    "truncated_gz",
    "truncated_fits",
    "not_fits",
    "wrong_shape",
    "missing_column",
    "all_nan_flux",
    "negative_ivar",
    "wavelength_not_increasing",
    "header_out_of_range",
    "no_catalog_row",
    "catalog_row_without_file",
    "duplicate_specid",
)
"""The deliberately invalid inputs of a release, in the order ``n_invalid`` takes them."""

EXPECTED_REJECT: dict[str, str] = {
    # structural: the code survey_scale.io.read_lamost raises (LamostReadError.code)
    "truncated_gz": "truncated",
    "truncated_fits": "truncated",
    "not_fits": "not_fits",
    "wrong_shape": "wrong_shape",
    "missing_column": "missing_column",
    # content and bookkeeping: the reason the ingest should record (SPEC §2)
    "all_nan_flux": "all_nan_flux",
    "negative_ivar": "negative_ivar",
    "wavelength_not_increasing": "wavelength_not_increasing",
    "header_out_of_range": "header_out_of_range",
    "no_catalog_row": "no_catalog_row",
    "catalog_row_without_file": "catalog_row_without_file",
    "duplicate_specid": "duplicate_specid",
}
"""Reject code the ingest is expected to give for each invalid kind."""

STRUCTURAL_KINDS: frozenset[str] = frozenset(
    {"truncated_gz", "truncated_fits", "not_fits", "wrong_shape", "missing_column"}
)
"""Invalid kinds that :func:`survey_scale.io.read_lamost` itself refuses."""

CATALOG_COLUMNS: tuple[str, ...] = (
    "obsid", "designation", "obsdate", "lmjd", "mjd", "planid", "spid", "fiberid", "ra", "dec",
    "snru", "snrg", "snrr", "snri", "snrz", "objtype", "class", "subclass", "z", "z_err", "rv", "rv_err",
)  # fmt: skip
"""Columns of ``catalog.csv`` (LAMOST release-catalog names, read by ``io.catalog.read_catalog``)."""

CROSSMATCH_COLUMNS: tuple[str, ...] = (
    "obsid", "gaia_source_id", "ra", "dec", "parallax", "parallax_error", "pmra", "pmra_error", "pmdec",
    "pmdec_error", "ruwe", "phot_g_mean_mag", "phot_g_mean_mag_error", "phot_bp_mean_mag",
    "phot_bp_mean_mag_error", "phot_rp_mean_mag", "phot_rp_mean_mag_error", "j_m", "j_msigcom", "h_m",
    "h_msigcom", "ks_m", "ks_msigcom", "g_mag", "g_mag_err", "r_mag", "r_mag_err", "i_mag", "i_mag_err",
)  # fmt: skip
"""Columns of ``crossmatch.parquet`` (Gaia, 2MASS and survey names; ``io.catalog.read_crossmatch``)."""

_XMATCH_SOURCE: dict[str, str] = {
    "parallax": "parallax", "parallax_error": "parallax_error", "pmra": "pmra", "pmra_error": "pmra_error",
    "pmdec": "pmdec", "pmdec_error": "pmdec_error", "ruwe": "ruwe",
    "phot_g_mean_mag": "G", "phot_g_mean_mag_error": "G_err", "phot_bp_mean_mag": "BP",
    "phot_bp_mean_mag_error": "BP_err", "phot_rp_mean_mag": "RP", "phot_rp_mean_mag_error": "RP_err",
    "j_m": "J", "j_msigcom": "J_err", "h_m": "H", "h_msigcom": "H_err", "ks_m": "Ks", "ks_msigcom": "Ks_err",
    "g_mag": "g", "g_mag_err": "g_err", "r_mag": "r", "r_mag_err": "r_err",
    "i_mag": "i", "i_mag_err": "i_err",
}  # fmt: skip

EXPOSURE_S: dict[str, float] = {"B": 1800.0, "M": 3600.0, "F": 5400.0}
"""Total exposure (3 sub-exposures) of bright, medium and faint plans (s)."""

FOCAL_MM_PER_DEG: float = 212.9
"""LAMOST focal-plane scale (16.9″/mm)."""


@dataclass
class ReleaseSummary:
    """What :func:`make_release` wrote.

    Attributes
    ----------
    outdir
        The release directory.
    release
        Release name (DATA_V of the files).
    seed
        The seed.
    n_stars
        Stars observed in this release (new and revisited).
    n_new_stars, n_revisited_stars
        New stars; stars of the previous release observed again.
    n_visits
        Simulated visits (valid spectra plus the invalid extra ones).
    n_files
        Files written under ``spectra/`` (including invalid and duplicate files).
    n_valid_files
        Files that are valid, catalogued spectra.
    n_invalid
        Invalid inputs (files or catalog rows), by kind in ``invalid_kinds``.
    n_contaminants
        Contaminant objects (cool stars and QSOs) observed in this release; not counted in ``n_stars``.
    counts
        Other counts (layouts, gzip, binaries, emission, corrupted, multi-visit stars).
    timings
        Wall-clock seconds per stage (population, schedule, spectra, tables); not written to disk.
    """

    outdir: Path
    release: str
    seed: int
    n_stars: int
    n_new_stars: int
    n_revisited_stars: int
    n_visits: int
    n_files: int
    n_valid_files: int
    n_invalid: int
    n_contaminants: int = 0
    invalid_kinds: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 9000 + stream]))


def _read_previous(previous: str | Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, frozenset[str]]:
    prev = Path(previous)
    meta = json.loads((prev / "release.json").read_text())
    stars = pd.read_parquet(prev / "truth_stars.parquet")
    truth = pd.read_parquet(prev / "truth.parquet", columns=["star_index", "visit"])
    ids = set(stars["star_id"].tolist())
    if (prev / CONTAMINANTS_TABLE).is_file():
        ids |= set(pd.read_parquet(prev / CONTAMINANTS_TABLE, columns=["star_id"])["star_id"].tolist())
    return meta, stars, truth, frozenset(ids)


def make_release(
    outdir: str | Path,
    n_stars: int,
    seed: int,
    release: str = "MOCK1",
    *,
    previous: str | Path | None = None,
    image_fraction: float = 0.3,
    gzip_fraction: float = 0.5,
    n_invalid: int | None = None,
    revisit_fraction: float = 0.3,
    batch_size: int = 256,
    population_config: pop.PopulationConfig | None = None,
    schedule_config: sch.ScheduleConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    cool_fraction: float = con.COOL_FRACTION,
    qso_fraction: float = con.QSO_FRACTION,
    contaminant_config: con.ContaminantConfig | None = None,
) -> ReleaseSummary:
    """Generate and write a mock LAMOST release (SPEC §10).

    Parameters
    ----------
    outdir
        Output directory (created). A folder holding an earlier mock release is replaced; one holding
        other spectra is refused (``FileExistsError``).
    n_stars
        Number of new stars (≥ 1). Each has 1 visit, or 2–5 for ~30 % of them.
    seed
        Seed of everything random in the release.
    release
        Release name, written as DATA_V in the headers and into ``release.json``.
    previous
        Directory of an earlier mock release to extend: ``revisit_fraction`` of its stars get 1–2 new visits
        (same star_index, star_id, RA/Dec and truths); nights start after its last night and obsids after
        its largest, so specids and obsids stay unique across releases; the Galaxy (dust clouds) is the same.
    image_fraction
        Fraction of valid spectra written in the DR7 primary-image layout (the rest as DR8+ COADD tables).
    gzip_fraction
        Fraction of files gzipped.
    n_invalid
        Number of invalid inputs, taking :data:`INVALID_KINDS` in order (cycling); None writes each kind once;
        0 none.
    revisit_fraction
        With ``previous``: fraction of its stars observed again.
    batch_size
        Spectra simulated per batch (memory ≈ batch_size × 0.4 MB).
    population_config, schedule_config
        Overrides of the population and schedule defaults.
    progress
        Optional callback ``progress(done, total)`` after each batch.
    cool_fraction
        Fraction of cool contaminants (F/G/K stars) among all stars of the release, as in a real hot-star
        candidate list (:mod:`survey_scale.mock.contaminants`): n_cool = round(n_hot f / (1 − f)) next to the
        ``n_stars`` hot stars. Default 0.3; 0 disables every contaminant (cool stars and QSOs) and gives the
        hot-star-only release. The hot stars (population, spectra, files, truth rows) are the same for any
        value.
    qso_fraction
        With contaminants on: fraction of the release's spectra that are QSOs (CLASS = "QSO"), at least one
        (0 none). Default 0.003.
    contaminant_config
        Overrides of the contaminants' defaults (:class:`survey_scale.mock.contaminants.ContaminantConfig`).

    Returns
    -------
    ReleaseSummary
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    outdir = Path(outdir)
    spec_dir = outdir / "spectra"
    _prepare_outdir(outdir, previous)
    spec_dir.mkdir(parents=True, exist_ok=True)
    if not 0.0 <= image_fraction <= 1.0 or not 0.0 <= gzip_fraction <= 1.0:
        raise ValueError("image_fraction and gzip_fraction must be within [0, 1]")
    if not 0.0 <= qso_fraction <= 1.0:
        raise ValueError(f"qso_fraction must be within [0, 1], got {qso_fraction}")
    con.contaminant_counts(1, cool_fraction)  # validates cool_fraction

    # --- stars: new ones, plus revisits of an earlier release ---------------------------------------------
    galaxy_seed, star_index_start, lmjd_start, obsid_start = int(seed), 0, 57300, 500_000_001
    old_stars = pd.DataFrame()
    first_visit_old = np.zeros(0, dtype=np.int64)
    reserved: frozenset[str] = frozenset()
    prev_meta: dict[str, Any] | None = None
    if previous is not None:
        prev_meta, prev_stars, prev_truth, prev_ids = _read_previous(previous)
        galaxy_seed = int(prev_meta["galaxy_seed"])
        star_index_start = int(prev_meta["max_star_index"]) + 1
        lmjd_start = int(prev_meta["max_lmjd"]) + 30
        obsid_start = int(prev_meta["max_obsid"]) + 1
        # New stars avoid the predecessor's star ids (a longer chain is checked against its last link only).
        reserved = prev_ids
        rng_re = _rng(seed, 1)
        n_re = max(1, round(revisit_fraction * len(prev_stars))) if len(prev_stars) else 0
        pick = np.sort(rng_re.choice(len(prev_stars), size=n_re, replace=False)) if n_re else np.zeros(0, int)
        old_stars = prev_stars.iloc[pick].reset_index(drop=True)
        last = prev_truth.groupby("star_index")["visit"].max()
        first_visit_old = last.reindex(old_stars["star_index"]).fillna(0).to_numpy(dtype=np.int64) + 1
        old_stars["n_visits"] = 1 + (rng_re.random(len(old_stars)) < 0.3)

    t0 = time.perf_counter()
    new_stars = pop.make_population(
        n_stars,
        seed,
        config=population_config,
        galaxy_seed=galaxy_seed,
        star_index_start=star_index_start,
        reserved_star_ids=reserved,
    )
    timings["population"] = time.perf_counter() - t0
    stars = pd.concat([old_stars, new_stars], ignore_index=True) if len(old_stars) else new_stars
    first_visit = np.concatenate([first_visit_old, np.ones(len(new_stars), dtype=np.int64)])

    # --- invalid inputs: extra visits of random stars (all but the duplicate, which copies a valid file) --
    kinds = (
        list(INVALID_KINDS) if n_invalid is None else [INVALID_KINDS[i % len(INVALID_KINDS)] for i in range(n_invalid)]
    )
    extra_kinds = [k for k in kinds if k != "duplicate_specid"]
    rng_inv = _rng(seed, 2)
    extra_rows = rng_inv.choice(len(stars), size=len(extra_kinds), replace=len(extra_kinds) > len(stars))
    n_sched = stars["n_visits"].to_numpy().copy()
    np.add.at(n_sched, extra_rows, 1)

    t0 = time.perf_counter()
    visits = sch.make_visits(
        stars,
        np.random.SeedSequence([int(seed), 9100]),
        n_visits=n_sched,
        lmjd_start=lmjd_start,
        obsid_start=obsid_start,
        first_visit_number=first_visit,
        config=schedule_config,
    )
    timings["schedule"] = time.perf_counter() - t0
    visits["visit_seed"] = np.arange(len(visits), dtype=np.int64)
    visits["invalid_kind"] = ""
    # Each chosen star's latest visit becomes its invalid extra.
    taken: set[int] = set()
    for kind, row in zip(extra_kinds, extra_rows, strict=True):
        sid = int(stars["star_index"].iloc[row])
        cand = visits.index[(visits["star_index"] == sid) & (visits["invalid_kind"] == "")]
        cand = [c for c in cand if c not in taken]
        chosen = max(cand, key=lambda c: (visits.at[c, "obs_mjd"], c))
        taken.add(chosen)
        visits.at[chosen, "invalid_kind"] = kind

    rng_lay = _rng(seed, 3)
    visits["layout"] = np.where(rng_lay.random(len(visits)) < image_fraction, "image", "coadd")
    visits["gzip"] = rng_lay.random(len(visits)) < gzip_fraction
    forced = {
        "truncated_gz": ("coadd", True),
        "truncated_fits": ("image", False),
        "wrong_shape": ("image", None),
        "missing_column": ("coadd", None),
    }
    for kind, (layout, gz) in forced.items():
        sel = visits["invalid_kind"] == kind
        visits.loc[sel, "layout"] = layout
        if gz is not None:
            visits.loc[sel, "gzip"] = gz
    visits["fitsname_written"] = visits["fitsname"] + np.where(visits["gzip"], ".gz", "")

    # --- contaminants: cool stars and QSOs, on streams and plans of their own ----------------------------
    t0 = time.perf_counter()
    contam, cvisits = _contaminants(
        stars, visits, seed, galaxy_seed, reserved, n_stars, lmjd_start, cool_fraction, qso_fraction,
        population_config, schedule_config, contaminant_config, image_fraction, gzip_fraction,
    )  # fmt: skip
    timings["contaminants"] = time.perf_counter() - t0

    # --- spectra -------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
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
    timings["spectra"] = time.perf_counter() - t0

    # --- duplicate: the same spectrum under a second file name ---------------------------------------------
    t0 = time.perf_counter()
    duplicates = []
    if "duplicate_specid" in kinds:
        # The copy is a gzipped twin of an uncompressed file: both names are LAMOST's own, and the copy sorts
        # after the original, so an ingest that keeps the first canonical path rejects the copy.
        rng_dup = _rng(seed, 4)
        ok = np.flatnonzero(((visits["invalid_kind"] == "") & ~visits["gzip"]).to_numpy())
        if ok.size == 0:
            ok = np.flatnonzero((visits["invalid_kind"] == "").to_numpy())
        picks = rng_dup.choice(ok, size=kinds.count("duplicate_specid"), replace=False)
        for pick in np.sort(picks):
            duplicates.append(_write_duplicate(spec_dir, visits.iloc[int(pick)]))

    # --- tables -----------------------------------------------------------------------------------------
    # Hot visits first (their row numbers are the duplicates' source indices), then the contaminants'.
    visits = pd.concat([visits, cvisits], ignore_index=True) if len(cvisits) else visits
    all_stars = _with_population(stars, contam)
    truth = _truth_table(visits, all_stars, release, duplicates)
    catalog_visits = visits[visits["invalid_kind"] != "no_catalog_row"]
    catalog = _catalog_table(catalog_visits, all_stars)
    crossmatch = _crossmatch_table(catalog_visits, all_stars)
    catalog.to_csv(outdir / "catalog.csv", index=False)
    _write_parquet(crossmatch, outdir / "crossmatch.parquet")
    _write_parquet(truth, outdir / "truth.parquet")
    stars_out = stars.copy()
    valid_counts = truth[~truth["invalid"]].groupby("star_index").size()
    stars_out["n_visits"] = valid_counts.reindex(stars_out["star_index"]).fillna(0).to_numpy(dtype=np.int64)
    _write_parquet(stars_out, outdir / "truth_stars.parquet")
    if len(contam):
        contam_out = contam.copy()
        contam_out["n_visits"] = valid_counts.reindex(contam_out["star_index"]).fillna(0).to_numpy(dtype=np.int64)
        _write_parquet(contam_out, outdir / CONTAMINANTS_TABLE)

    files_written = int(truth["file_written"].sum())
    valid_files = int((truth["file_written"] & ~truth["invalid"]).sum())
    population = truth["population"]
    counts = {
        "image_files": int((truth["file_written"] & (truth["layout"] == "image")).sum()),
        "coadd_files": int((truth["file_written"] & (truth["layout"] == "coadd")).sum()),
        "gzip_files": int((truth["file_written"] & truth["gzip"]).sum()),
        "valid_spectra": valid_files,
        "binary_stars": int(stars["binary"].sum()),
        "emission_stars": int(stars["emission"].sum()),
        "multi_visit_stars": int((stars_out["n_visits"] > 1).sum()),
        "corrupted_spectra": int((truth["corrupted"] & ~truth["invalid"]).sum()),
        "catalog_rows": len(catalog),
        "cool_contaminant_stars": int((contam["population"] == con.POPULATION_COOL).sum()),
        "misclassified_a_stars": int(contam["misclassified"].sum()),
        "qso_objects": int((contam["population"] == con.POPULATION_QSO).sum()),
        "cool_contaminant_spectra": int((population == con.POPULATION_COOL).sum()),
        "misclassified_a_spectra": int(truth["misclassified"].sum()),
        "qso_spectra": int((population == con.POPULATION_QSO).sum()),
    }
    meta = {
        "release": release,
        "seed": int(seed),
        "galaxy_seed": galaxy_seed,
        "code_version": __version__,
        "generator": "survey_scale.mock.make_release",
        "previous_release": prev_meta["release"] if prev_meta else None,
        "n_stars": len(stars),
        "n_new_stars": len(new_stars),
        "n_revisited_stars": len(old_stars),
        "n_contaminants": len(contam),
        "n_visits": len(visits),
        "n_files": files_written,
        "n_valid_files": valid_files,
        "n_invalid": len(kinds),
        "invalid": {k: EXPECTED_REJECT[k] for k in kinds},
        "invalid_counts": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
        "counts": counts,
        "options": {
            "image_fraction": image_fraction,
            "gzip_fraction": gzip_fraction,
            "n_invalid": n_invalid,
            "revisit_fraction": revisit_fraction,
            "batch_size": batch_size,
            "cool_fraction": cool_fraction,
            "qso_fraction": qso_fraction,
            "population_config": asdict(population_config or pop.PopulationConfig()),
            "schedule_config": asdict(schedule_config or sch.ScheduleConfig()),
            "contaminant_config": asdict(contaminant_config or con.ContaminantConfig()),
        },
        "native_grid": {"coeff0": spx.NATIVE_COEFF0, "coeff1": spx.NATIVE_COEFF1, "n_pix": spx.NATIVE_NPIX},
        "extinction_coeffs": ph.EXTINCTION_COEFFS,
        "lmjd_range": [int(visits["lmjd"].min()), int(visits["lmjd"].max())],
        "max_lmjd": max(int(visits["lmjd"].max()), int(prev_meta["max_lmjd"]) if prev_meta else 0),
        "max_obsid": max(int(visits["obsid"].max()), int(prev_meta["max_obsid"]) if prev_meta else 0),
        "max_star_index": max(int(all_stars["star_index"].max()), int(prev_meta["max_star_index"]) if prev_meta else 0),
    }
    (outdir / "release.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    timings["tables"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return ReleaseSummary(
        outdir=outdir,
        release=release,
        seed=int(seed),
        n_stars=len(stars),
        n_new_stars=len(new_stars),
        n_revisited_stars=len(old_stars),
        n_visits=len(visits),
        n_files=files_written,
        n_valid_files=valid_files,
        n_invalid=len(kinds),
        n_contaminants=len(contam),
        invalid_kinds={k: EXPECTED_REJECT[k] for k in kinds},
        counts=counts,
        timings=timings,
    )


# --- helpers ------------------------------------------------------------------------------------------------


CONTAMINANTS_TABLE: str = "truth_contaminants.parquet"
"""Per-contaminant truth table (cool stars and QSOs): STAR_COLUMNS + contaminants.CONTAMINANT_COLUMNS."""

_PER_VISIT_KEYS: tuple[str, ...] = ("snru", "snrg", "snrr", "snri", "snrz", "light_frac2_g", "corrupt_lo",
                                    "corrupt_hi", "corrupt_amount", "file_written")  # fmt: skip


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


def _contaminants(
    stars: pd.DataFrame,
    visits: pd.DataFrame,
    seed: int,
    galaxy_seed: int,
    reserved: frozenset[str],
    n_stars: int,
    lmjd_start: int,
    cool_fraction: float,
    qso_fraction: float,
    population_config: pop.PopulationConfig | None,
    schedule_config: sch.ScheduleConfig | None,
    contaminant_config: con.ContaminantConfig | None,
    image_fraction: float,
    gzip_fraction: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The release's contaminant stars and their visits (empty tables when ``cool_fraction`` is 0).

    Cool stars and QSOs sit on the hot stars' plates (the same fields), star indices after the hot stars';
    their schedule is :func:`survey_scale.mock.schedule.make_visits` on its own stream, with plan ranks above
    the hot plans' (so no specid or plan is shared), nights within the hot stars' season (so the files'
    DATE, set by the last hot night, is unchanged), obsids after the hot ones.
    """
    empty = con.make_cool_population(0, seed, pd.DataFrame(), galaxy_seed=galaxy_seed, star_index_start=0)
    n_cool = con.contaminant_counts(len(stars), cool_fraction)
    if n_cool == 0:
        return empty, visits.iloc[:0].copy()
    fields = pop.population_fields(n_stars, seed, population_config)
    taken = set(reserved) | set(stars["star_id"].tolist())
    first_index = int(stars["star_index"].max()) + 1
    cool = con.make_cool_population(
        n_cool, seed, fields, galaxy_seed=galaxy_seed, star_index_start=first_index, reserved_star_ids=taken,
        population_config=population_config, config=contaminant_config,
    )  # fmt: skip
    n_spectra = len(visits) * (1.0 + n_cool / max(len(stars), 1))
    n_qso = max(1, round(qso_fraction * n_spectra)) if qso_fraction > 0 else 0
    qso = con.make_qso_population(
        n_qso, seed, fields, galaxy_seed=galaxy_seed, star_index_start=first_index + n_cool,
        reserved_star_ids=taken | set(cool["star_id"].tolist()), population_config=population_config,
    )  # fmt: skip
    contam = pd.concat([cool, qso], ignore_index=True) if n_qso else cool
    cfg = schedule_config or sch.ScheduleConfig()
    season = int(visits["lmjd"].max()) - lmjd_start + 1
    if season >= int(contam["n_visits"].max()) + 1:
        cfg = replace(cfg, season_days=min(season, cfg.season_days))
    rank = visits["planid"].str.slice(10).astype(int).max()
    cvisits = sch.make_visits(
        contam, np.random.SeedSequence([int(seed), 9300]), lmjd_start=lmjd_start,
        obsid_start=int(visits["obsid"].max()) + 1, config=cfg, plan_rank_offset=int(rank),
    )  # fmt: skip
    cvisits["visit_seed"] = con.CONTAMINANT_SEED_OFFSET + np.arange(len(cvisits), dtype=np.int64)
    cvisits["invalid_kind"] = ""
    rng_lay = _rng(seed, 5)
    cvisits["layout"] = np.where(rng_lay.random(len(cvisits)) < image_fraction, "image", "coadd")
    cvisits["gzip"] = rng_lay.random(len(cvisits)) < gzip_fraction
    cvisits["fitsname_written"] = cvisits["fitsname"] + np.where(cvisits["gzip"], ".gz", "")
    return contam, cvisits


def _with_population(stars: pd.DataFrame, contam: pd.DataFrame) -> pd.DataFrame:
    """Hot stars (with the contaminant columns filled: population "hot", class STAR, their subclass) and the
    contaminants in one star table."""
    hot = stars.copy()
    hot["population"] = con.POPULATION_HOT
    hot["lamost_class"] = "STAR"
    hot["true_subclass"] = hot["subclass"]
    hot["misclassified"] = False
    hot["cool_class"] = ""
    hot["redshift"] = np.nan
    return pd.concat([hot, contam], ignore_index=True) if len(contam) else hot


OUTPUT_TABLES: tuple[str, ...] = (
    "catalog.csv", "crossmatch.parquet", "truth.parquet", "truth_stars.parquet", CONTAMINANTS_TABLE, "release.json",
)  # fmt: skip


def _prepare_outdir(outdir: Path, previous: str | Path | None) -> None:
    """Refuse to write into a folder holding anything but an earlier mock release; clear such a release.

    A folder whose ``spectra/`` has files is replaced only if its ``release.json`` says this generator wrote
    it (so a folder of real LAMOST files is never touched).
    """
    if previous is not None and Path(previous).resolve() == outdir.resolve():
        raise ValueError(f"{outdir}: a release cannot extend itself (previous= is the output folder)")
    spec_dir = outdir / "spectra"
    if not spec_dir.is_dir() or not any(spec_dir.iterdir()):
        return
    meta_path = outdir / "release.json"
    try:
        generator = json.loads(meta_path.read_text()).get("generator")
    except (OSError, ValueError):
        generator = None
    if generator != "survey_scale.mock.make_release":
        raise FileExistsError(
            f"{spec_dir} already holds files and {meta_path} does not describe a mock release: "
            "write the mock release to an empty or new folder"
        )
    for path in spec_dir.iterdir():
        if path.is_file() and path.name.startswith("spec-"):
            path.unlink()
    for name in OUTPUT_TABLES:
        (outdir / name).unlink(missing_ok=True)


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


def _truth_table(
    visits: pd.DataFrame, stars: pd.DataFrame, release: str, duplicates: list[dict[str, Any]]
) -> pd.DataFrame:
    """One row per input: every visit (valid, invalid, or catalog-only) and every duplicate file."""
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()].reset_index()
    t = pd.DataFrame(
        {
            "specid": visits["specid"].to_numpy(),
            "obsid": visits["obsid"].to_numpy(),
            "fitsname": visits["fitsname_written"].to_numpy(),
            "release": release,
            "star_index": visits["star_index"].to_numpy(),
            "star_id": visits["star_id"].to_numpy(),
            "visit": visits["visit"].to_numpy(),
            "lmjd": visits["lmjd"].to_numpy(),
            "mjd": visits["mjd"].to_numpy(),
            "obs_mjd": visits["obs_mjd"].to_numpy(),
            "planid": visits["planid"].to_numpy(),
            "spid": visits["spid"].to_numpy(),
            "fiberid": visits["fiberid"].to_numpy(),
            "layout": visits["layout"].to_numpy(),
            "gzip": visits["gzip"].to_numpy(dtype=bool),
            "file_written": visits["file_written"].to_numpy(dtype=bool),
        }
    )
    for name in LABEL_NAMES:
        t[name] = st[name].to_numpy()
    t["rv"] = visits["rv"].to_numpy()
    t["rv2"] = visits["rv2"].to_numpy()
    t["rv_meas"] = visits["rv_meas"].to_numpy()
    t["rv_err"] = visits["rv_err"].to_numpy()
    t["snr"] = visits["snr"].to_numpy()
    for b in ("snru", "snrg", "snrr", "snri", "snrz"):
        t[b] = visits[b].to_numpy()
    t["resolution"] = visits["resolution"].to_numpy()
    t["helio_rv"] = visits["helio_rv"].to_numpy()
    t["airmass"] = visits["airmass"].to_numpy()
    t["pwv_mm"] = visits["pwv_mm"].to_numpy()
    for name in ("ra", "dec", "ebv", "distance_pc", "mks", "mks_system", "G_true", "Ks_true"):
        t[name] = st[name].to_numpy()
    t["binary"] = st["binary"].to_numpy(dtype=bool)
    for name in ("q", *(f"{label}2" for label in LABEL_NAMES), "mass", "mass2", "radius", "radius2"):
        t[name] = st[name].to_numpy()
    t["light_frac2_g"] = visits["light_frac2_g"].to_numpy()
    t["emission"] = st["emission"].to_numpy(dtype=bool)
    for name in ("ha_ew", "hb_ew", "pa_ew"):
        t[name] = visits[name].to_numpy()
    t["corrupted"] = visits["corrupted"].to_numpy(dtype=bool)
    t["corrupt_kind"] = visits["corrupt_kind"].to_numpy()
    for name in ("corrupt_lo", "corrupt_hi", "corrupt_amount"):
        t[name] = visits[name].to_numpy()
    kind = visits["invalid_kind"].to_numpy()
    t["invalid"] = kind != ""
    t["invalid_kind"] = kind
    t["expected_reject"] = np.array([EXPECTED_REJECT.get(k, "") for k in kind])
    t["structural"] = np.isin(kind, list(STRUCTURAL_KINDS))
    t["in_catalog"] = kind != "no_catalog_row"
    t["duplicate_of"] = ""
    # What kind of object (hot star, cool contaminant, QSO) and how LAMOST classes it (contaminants module).
    defaults = {"population": con.POPULATION_HOT, "lamost_class": "STAR", "misclassified": False, "redshift": np.nan}
    for name, default in defaults.items():
        t[name] = st[name].to_numpy() if name in st else default
    t["misclassified"] = t["misclassified"].astype(bool)
    t["lamost_subclass"] = st["subclass"].to_numpy()
    t["true_subclass"] = st["true_subclass"].to_numpy() if "true_subclass" in st else st["subclass"].to_numpy()
    rows = []
    for dup in duplicates:
        # Two names, one spectrum: the ingest keeps the name that sorts first (".fits" before ".fits.gz");
        # the other is the expected duplicate_specid reject (normally the copy).
        src = int(dup["source_index"])
        original = t.loc[src].copy()
        copy = original.copy()
        copy["fitsname"], copy["gzip"] = dup["fitsname_written"], dup["gzip"]
        keep, reject = (original, copy) if original["fitsname"] < copy["fitsname"] else (copy, original)
        reject = reject.copy()
        reject["duplicate_of"] = keep["fitsname"]
        reject["invalid"], reject["structural"] = True, False
        reject["invalid_kind"] = reject["expected_reject"] = "duplicate_specid"
        t.loc[src] = keep
        rows.append(reject)
    if rows:
        t = pd.concat([t, pd.DataFrame(rows)], ignore_index=True)
    return t


def _catalog_table(visits: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """The release catalog (LAMOST column names), one row per catalogued spectrum.

    The spectrum with an out-of-range RA in its header has it in its catalog row too (LAMOST builds the
    catalog from the headers), so an ingest that prefers catalog values still sees it.
    """
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()]
    ra = np.round(st["ra"].to_numpy(), 6)
    ra = np.where((visits["invalid_kind"] == "header_out_of_range").to_numpy(), 400.0, ra)
    return pd.DataFrame(
        {
            "obsid": visits["obsid"].to_numpy(),
            "designation": st["designation"].str.replace("LAMOST ", "", regex=False).to_numpy(),
            "obsdate": visits["date_obs"].str.slice(0, 10).to_numpy(),
            "lmjd": visits["lmjd"].to_numpy(),
            "mjd": visits["mjd"].to_numpy(),
            "planid": visits["planid"].to_numpy(),
            "spid": visits["spid"].to_numpy(),
            "fiberid": visits["fiberid"].to_numpy(),
            "ra": ra,
            "dec": np.round(st["dec"].to_numpy(), 6),
            "snru": visits["snru"].to_numpy(),
            "snrg": visits["snrg"].to_numpy(),
            "snrr": visits["snrr"].to_numpy(),
            "snri": visits["snri"].to_numpy(),
            "snrz": visits["snrz"].to_numpy(),
            "objtype": "Star",
            "class": st["lamost_class"].to_numpy() if "lamost_class" in st else "STAR",
            "subclass": st["subclass"].to_numpy(),
            "z": np.round(visits["rv_meas"].to_numpy() / spx.C_KMS, 8),
            "z_err": np.round(visits["rv_err"].to_numpy() / spx.C_KMS, 8),
            "rv": np.round(visits["rv_meas"].to_numpy(), 2),
            "rv_err": np.round(visits["rv_err"].to_numpy(), 2),
        },
        columns=list(CATALOG_COLUMNS),
    )


def _crossmatch_table(visits: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """Gaia DR2 / 2MASS / g,r,i values of each catalogued spectrum's star (NaN where missing)."""
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()]
    out = pd.DataFrame({"obsid": visits["obsid"].to_numpy(), "gaia_source_id": st["gaia_source_id"].to_numpy()})
    out["ra"] = st["ra"].to_numpy()
    out["dec"] = st["dec"].to_numpy()
    for name, source in _XMATCH_SOURCE.items():
        out[name] = st[source].to_numpy(dtype=np.float64)
    return out[list(CROSSMATCH_COLUMNS)]


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Parquet without the pandas index, deterministic for a given pyarrow version."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, path, compression="zstd")
