"""Write a complete mock LAMOST release: spectra, catalog, cross-match and truth (SPEC §10).

:func:`make_release` orders the steps and their random streams; :mod:`.visit_files` writes the spectrum
files, :mod:`.tables` the truth, catalog and cross-match tables, :mod:`.invalid` defines the invalid inputs
(the names that moved there stay importable from here).

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
from survey_scale.mock import contaminants as con
from survey_scale.mock import photometry as ph
from survey_scale.mock import population as pop
from survey_scale.mock import schedule as sch
from survey_scale.mock import spectra as spx
from survey_scale.mock.invalid import EXPECTED_REJECT, INVALID_KINDS, STRUCTURAL_KINDS, _force_layouts, _mark_invalid
from survey_scale.mock.tables import (
    CATALOG_COLUMNS,
    CONTAMINANTS_TABLE,
    CROSSMATCH_COLUMNS,
    OUTPUT_TABLES,
    _write_tables,
)
from survey_scale.mock.visit_files import EXPOSURE_S, FOCAL_MM_PER_DEG, _write_duplicate, _write_spectra

__all__ = [  # names that moved out of this module stay importable from it
    "CATALOG_COLUMNS",
    "CONTAMINANTS_TABLE",
    "CROSSMATCH_COLUMNS",
    "EXPECTED_REJECT",
    "EXPOSURE_S",
    "FOCAL_MM_PER_DEG",
    "INVALID_KINDS",
    "OUTPUT_TABLES",
    "STRUCTURAL_KINDS",
    "ReleaseSummary",
    "make_release",
]


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
    _mark_invalid(visits, stars, extra_kinds, extra_rows)

    rng_lay = _rng(seed, 3)
    visits["layout"] = np.where(rng_lay.random(len(visits)) < image_fraction, "image", "coadd")
    visits["gzip"] = rng_lay.random(len(visits)) < gzip_fraction
    _force_layouts(visits)
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
    _write_spectra(spec_dir, visits, stars, cvisits, contam, seed, release, batch_size, progress)
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
    all_stars, truth, counts = _write_tables(outdir, visits, stars, contam, release, duplicates)
    files_written = int(truth["file_written"].sum())
    valid_files = int((truth["file_written"] & ~truth["invalid"]).sum())
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
