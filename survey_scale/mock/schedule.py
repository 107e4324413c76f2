"""Observations of the mock stars: plans, nights, fibres, S/N, LSF, radial velocities (SPEC §2, §10).

:func:`make_visits` turns the star table into one row per spectrum (visit). LAMOST observes a *plan*
(a plate of 4000 fibres on 16 spectrographs × 250 fibres) on a night; a spectrum is identified by
``specid = "<LMJD>-<PLANID>-<SPID:02d>-<FIBERID:03d>"`` (P1 Table 1) and its file is
``spec-<LMJD>-<PLANID>_sp<SPID:02d>-<FIBERID:03d>.fits``. Here each field (plate centre) of the population
is observed on a few nights; a star with k visits is observed on k different nights of its field, on the
bright (B, G < 14), medium (M, G < 16.3) or faint (F) plan of that night.

Times follow the real headers: LMJD is the local (Beijing) MJD of the night, MJD = LMJD − 1 the UT day,
DATE-OBS the UT mid-exposure between 12:30 and 20:30 UT. ``helio_rv`` is the header's HELIO_RV (LAMOST
writes minus astropy's heliocentric ``radial_velocity_correction``; checked on the shared real files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

C_KMS: float = 299792.458
LAMOST_LON_DEG: float = 117.58
LAMOST_LAT_DEG: float = 40.39
LAMOST_HEIGHT_M: float = 960.0
RV_EPOCH_MJD: float = 55000.0
"""Reference epoch (MJD) of the binary orbital phases ``phase0``."""


@dataclass(frozen=True)
class ScheduleConfig:
    """Knobs of the observing simulation.

    Attributes
    ----------
    corrupted_fraction
        Fraction of spectra damaged by the (mock) pipeline (P1 Appendix A, Fig. 15).
    snr_scatter_dex, snr_loss_dex
        Per-visit S/N: snr_base × 10^(N(0, σ) − Exp(λ)); the exponential term is the loss to clouds, seeing,
        moon and fibre positioning, and gives the low-S/N tail of P2 Fig. 2.
    resolution_mean, resolution_scatter
        Per-visit (fibre, exposure) resolving power R of the Gaussian LSF, drawn by
        ``synth.draw_resolution`` (log-normal about the mean with this fractional scatter) — the same
        distribution as the synthesizer's model grids.
    season_days
        Length of the period (days) over which one release's nights are spread.
    """

    corrupted_fraction: float = 0.01
    snr_scatter_dex: float = 0.08
    snr_loss_dex: float = 0.32
    snr_min: float = 2.0
    resolution_mean: float = 1800.0
    resolution_scatter: float = 0.08
    season_days: int = 600


CORRUPTION_KINDS: tuple[str, ...] = ("flux_jump", "artifact", "wrong_wavelength")
"""Kinds of corrupted spectra (P1 Fig. 15: problematic fluxes over a range, artefacts, bad wavelength
calibration over a segment)."""


def plan_class(g_mag: np.ndarray) -> np.ndarray:
    """LAMOST plate brightness class: "B" (G < 14), "M" (G < 16.3), "F" (fainter)."""
    g_mag = np.asarray(g_mag, dtype=np.float64)
    return np.where(g_mag < 14.0, "B", np.where(g_mag < 16.3, "M", "F"))


def plan_id(field_ra: np.ndarray, field_dec: np.ndarray, cls: np.ndarray, night_rank: np.ndarray) -> np.ndarray:
    """LSS-GAC-style plan ids "GAC<RA:03d><N|S><|Dec|:02d><class><k>", e.g. "GAC086N28B1"."""
    out = []
    for ra, dec, c, k in zip(field_ra, field_dec, cls, night_rank, strict=True):
        hemi = "N" if dec >= 0 else "S"
        out.append(f"GAC{round(ra) % 360:03d}{hemi}{round(abs(dec)):02d}{c}{int(k)}")
    return np.array(out)


def make_specid(lmjd: np.ndarray, planid: np.ndarray, spid: np.ndarray, fiberid: np.ndarray) -> np.ndarray:
    """``"<LMJD>-<PLANID>-<SPID:02d>-<FIBERID:03d>"`` (P1 Table 1, SPEC §1)."""
    return np.array([f"{a}-{b}-{c:02d}-{d:03d}" for a, b, c, d in zip(lmjd, planid, spid, fiberid, strict=True)])


def make_fitsname(lmjd: np.ndarray, planid: np.ndarray, spid: np.ndarray, fiberid: np.ndarray) -> np.ndarray:
    """LAMOST file names without compression suffix: ``spec-<LMJD>-<PLANID>_sp<SS>-<FFF>.fits``."""
    return np.array(
        [f"spec-{a}-{b}_sp{c:02d}-{d:03d}.fits" for a, b, c, d in zip(lmjd, planid, spid, fiberid, strict=True)]
    )


def airmass(dec_deg: np.ndarray, hour_angle_h: np.ndarray) -> np.ndarray:
    """Plane-parallel airmass sec z at LAMOST (latitude 40.39°) for a declination and an hour angle."""
    phi, dec = np.radians(LAMOST_LAT_DEG), np.radians(np.asarray(dec_deg, dtype=np.float64))
    h = np.radians(15.0 * np.asarray(hour_angle_h, dtype=np.float64))
    cos_z = np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(h)
    return 1.0 / np.clip(cos_z, 0.2, 1.0)


def heliocentric_correction(ra: np.ndarray, dec: np.ndarray, mjd: np.ndarray) -> np.ndarray:
    """astropy's heliocentric radial-velocity correction (km/s) at LAMOST for ICRS positions and UT MJDs.

    Computed offline (no IERS download: the built-in tables are accurate far beyond what matters here).
    """
    import astropy.units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    if len(ra) == 0:
        return np.zeros(0)
    loc = EarthLocation.from_geodetic(LAMOST_LON_DEG * u.deg, LAMOST_LAT_DEG * u.deg, LAMOST_HEIGHT_M * u.m)
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        coord = SkyCoord(ra=np.asarray(ra) * u.deg, dec=np.asarray(dec) * u.deg)
        corr = coord.radial_velocity_correction(
            kind="heliocentric", obstime=Time(np.asarray(mjd), format="mjd", scale="utc"), location=loc
        )
    return corr.to_value(u.km / u.s)


def component_rvs(stars: pd.DataFrame, mjd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radial velocities (km/s) of the primary and the secondary at the given MJDs.

    Circular orbits: v1 = γ + K1 sin 2π((t − t0)/P + φ0), v2 = γ − K2 sin(...), t0 = :data:`RV_EPOCH_MJD`.
    Single stars: v1 = γ, v2 = NaN. ``stars`` rows align with ``mjd``.
    """
    gamma = stars["rv_sys"].to_numpy()
    binary = stars["binary"].to_numpy(dtype=bool)
    period = np.where(binary, stars["period_d"].to_numpy(), 1.0)
    arg = 2 * np.pi * ((np.asarray(mjd) - RV_EPOCH_MJD) / period + np.nan_to_num(stars["phase0"].to_numpy()))
    s = np.sin(arg)
    v1 = gamma + np.where(binary, stars["k1"].to_numpy() * s, 0.0)
    v2 = np.where(binary, gamma - stars["k2"].to_numpy() * s, np.nan)
    return v1, v2


def make_visits(
    stars: pd.DataFrame,
    seed: int | np.random.SeedSequence,
    *,
    n_visits: np.ndarray | None = None,
    lmjd_start: int = 57300,
    obsid_start: int = 500_000_001,
    first_visit_number: np.ndarray | None = None,
    config: ScheduleConfig | None = None,
    plan_rank_offset: int = 0,
) -> pd.DataFrame:
    """One row per spectrum: where, when and how each star is observed.

    Parameters
    ----------
    stars
        The star table (:func:`survey_scale.mock.population.make_population` columns).
    seed
        Seed (a ``SeedSequence`` or int) of this schedule.
    n_visits
        (n_stars,) number of visits per star in this release; default ``stars["n_visits"]``.
    lmjd_start
        First possible LMJD of the release's nights.
    obsid_start
        First obsid; obsids are assigned consecutively in (LMJD, PLANID, SPID, FIBERID) order.
    first_visit_number
        (n_stars,) number of the first visit of each star in this release (1 for new stars; an earlier
        release's count + 1 for stars observed again).
    config
        :class:`ScheduleConfig`.
    plan_rank_offset
        Added to the night rank in the plan ids (``GAC...B<k>``): a second schedule of the same fields
        (the release's contaminants) with an offset above the first's ranks uses plans of its own, so its
        specids and plan-level values never collide with the first's.

    Returns
    -------
    pandas.DataFrame
        Sorted by (lmjd, planid, spid, fiberid); columns: ``star_index``, ``visit``, ``lmjd``, ``mjd``,
        ``obs_mjd`` (UT mid-exposure), ``date_obs``, ``planid``, ``plan_class``, ``spid``, ``fiberid``,
        ``specid``, ``obsid``, ``fitsname``, ``hour_angle``, ``airmass``, ``pwv_mm``, ``seeing``,
        ``helio_rv``, ``v_helio_corr``, ``snr``, ``resolution``, ``rv`` (primary), ``rv2``, ``rv_meas``,
        ``rv_err``, ``ha_ew``, ``hb_ew``, ``pa_ew``, ``corrupted``, ``corrupt_kind``.
    """
    from survey_scale.synth import draw_resolution

    config = config or ScheduleConfig()
    base = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng = np.random.default_rng(base)
    n_visits = stars["n_visits"].to_numpy() if n_visits is None else np.asarray(n_visits)
    first = np.ones(len(stars), dtype=np.int64) if first_visit_number is None else np.asarray(first_visit_number)
    g_mag = stars["G_true"].to_numpy()

    # Fields: stars sharing a plate centre. Each field gets max(visits) + 1 nights in the season.
    key = np.round(stars["field_ra"].to_numpy(), 6) * 1000.0 + np.round(stars["field_dec"].to_numpy(), 6)
    _, field_of_star = np.unique(key, return_inverse=True)
    n_fields = field_of_star.max() + 1 if len(stars) else 0
    rows: dict[str, list] = {k: [] for k in ("star", "night_lmjd", "night_rank", "field")}
    field_nights: list[np.ndarray] = []
    field_hour_angle: list[np.ndarray] = []
    for f in range(n_fields):
        members = np.flatnonzero(field_of_star == f)
        n_nights = int(n_visits[members].max()) + 1 if members.size else 1
        nights = np.sort(rng.choice(config.season_days, size=n_nights, replace=False)) + lmjd_start
        field_nights.append(nights)
        field_hour_angle.append(rng.uniform(-1.5, 1.5, n_nights))
        for star in members:
            k = int(n_visits[star])
            if k == 0:
                continue
            chosen = np.sort(rng.choice(n_nights, size=k, replace=False))
            rows["star"].extend([star] * k)
            rows["night_lmjd"].extend(nights[chosen].tolist())
            rows["night_rank"].extend((chosen + 1).tolist())
            rows["field"].extend([f] * k)
    star = np.asarray(rows["star"], dtype=np.int64)
    m = star.size
    lmjd = np.asarray(rows["night_lmjd"], dtype=np.int64)
    rank = np.asarray(rows["night_rank"], dtype=np.int64)
    field = np.asarray(rows["field"], dtype=np.int64)
    st = stars.iloc[star].reset_index(drop=True)
    cls = plan_class(g_mag[star])
    planid = plan_id(st["field_ra"].to_numpy(), st["field_dec"].to_numpy(), cls, rank + int(plan_rank_offset))

    # Fibres: distinct (spid, fiberid) slots within each (LMJD, PLANID) plan.
    spid = np.empty(m, dtype=np.int64)
    fiberid = np.empty(m, dtype=np.int64)
    plan_key = pd.Series([f"{a}|{b}" for a, b in zip(lmjd, planid, strict=True)])
    for _, idx in plan_key.groupby(plan_key, sort=True).indices.items():
        if idx.size > 4000:
            raise ValueError("more than 4000 spectra in one plan")
        slots = rng.choice(4000, size=idx.size, replace=False)
        spid[idx] = slots // 250 + 1
        fiberid[idx] = slots % 250 + 1

    # One exposure time per plan (all fibres of a plate are exposed together).
    plan_codes, plan_index = np.unique(plan_key.to_numpy(), return_inverse=True)
    ut_hours = rng.uniform(12.5, 20.5, plan_codes.size)[plan_index]
    pwv = np.exp(rng.normal(np.log(6.0), 0.5, plan_codes.size))[plan_index]
    seeing = np.clip(rng.normal(3.0, 0.6, plan_codes.size), 1.5, 5.5)[plan_index]
    hour_angle = np.array([field_hour_angle[f][r - 1] for f, r in zip(field, rank, strict=True)])
    mjd = lmjd - 1
    obs_mjd = mjd + ut_hours / 24.0
    am = airmass(st["field_dec"].to_numpy(), hour_angle)
    v_corr = heliocentric_correction(st["ra"].to_numpy(), st["dec"].to_numpy(), obs_mjd)

    base_snr = st["snr_base"].to_numpy()
    snr = base_snr * 10.0 ** (rng.normal(0.0, config.snr_scatter_dex, m) - rng.exponential(config.snr_loss_dex, m))
    # LAMOST releases few spectra below S/N ~ 2: redraw the condition losses there (a truncated
    # distribution, not a pile-up at the limit); the faintest stars that cannot reach it keep S/N = 2.
    for _ in range(20):
        low = snr < config.snr_min
        if not low.any():
            break
        snr[low] = base_snr[low] * 10.0 ** (
            rng.normal(0.0, config.snr_scatter_dex, low.sum()) - rng.exponential(config.snr_loss_dex, low.sum())
        )
    snr = np.maximum(snr, config.snr_min)
    resolution = draw_resolution(m, rng, mean=config.resolution_mean, scatter=config.resolution_scatter)

    rv1, rv2 = component_rvs(st, obs_mjd)
    # The LAMOST pipeline measures one velocity per spectrum: for a composite it is pulled toward the
    # secondary by its optical light fraction. Errors grow with noise and line width (hot, fast rotators).
    binary = st["binary"].to_numpy(dtype=bool)
    light2 = np.where(binary, 1.0 / (1.0 + 10.0 ** (-0.4 * (st["abs_G_2"].to_numpy() - st["abs_G_1"].to_numpy()))), 0.0)
    light2 = np.nan_to_num(light2)
    rv_true_blend = np.where(binary, (1 - light2) * rv1 + light2 * np.nan_to_num(rv2), rv1)
    rv_err = np.sqrt(3.0**2 + (150.0 / snr) ** 2) * (1.0 + st["vsini"].to_numpy() / 200.0)
    rv_meas = rv_true_blend + rng.normal(0.0, 1.0, m) * rv_err

    var = np.exp(rng.normal(0.0, 0.1, m))  # emission-line variability between visits
    corrupted = rng.random(m) < config.corrupted_fraction
    kind = np.where(corrupted, rng.choice(np.array(CORRUPTION_KINDS), size=m, p=[0.4, 0.3, 0.3]), "")

    visits = pd.DataFrame(
        {
            "star_index": st["star_index"].to_numpy(),
            "star_id": st["star_id"].to_numpy(),
            "lmjd": lmjd,
            "mjd": mjd,
            "obs_mjd": obs_mjd,
            "planid": planid,
            "plan_class": cls,
            "spid": spid,
            "fiberid": fiberid,
            "hour_angle": hour_angle,
            "airmass": am,
            "pwv_mm": pwv,
            "seeing": seeing,
            "v_helio_corr": v_corr,
            "helio_rv": -v_corr,
            "snr": snr,
            "resolution": resolution,
            "rv": rv1,
            "rv2": rv2,
            "rv_meas": rv_meas,
            "rv_err": rv_err,
            "light_frac2_g": light2,
            "ha_ew": st["ha_ew"].to_numpy() * var,
            "hb_ew": st["hb_ew"].to_numpy() * var,
            "pa_ew": st["pa_ew"].to_numpy() * var,
            "corrupted": corrupted,
            "corrupt_kind": kind,
            "_star_row": star,
        }
    )
    visits = visits.sort_values(["lmjd", "planid", "spid", "fiberid"], kind="stable").reset_index(drop=True)
    # Visit numbers per star in time order, continuing an earlier release's count.
    order = np.lexsort((visits["obs_mjd"].to_numpy(), visits["star_index"].to_numpy()))
    vis_no = np.empty(len(visits), dtype=np.int64)
    sorted_star = visits["star_index"].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_star)) + 1]
    counter = np.arange(len(visits)) - np.repeat(starts, np.diff(np.r_[starts, len(visits)]))
    vis_no[order] = counter + first[visits["_star_row"].to_numpy()[order]]
    visits.insert(2, "visit", vis_no)
    visits["obsid"] = np.arange(obsid_start, obsid_start + len(visits), dtype=np.int64)
    visits["specid"] = make_specid(visits["lmjd"], visits["planid"], visits["spid"], visits["fiberid"])
    visits["fitsname"] = make_fitsname(visits["lmjd"], visits["planid"], visits["spid"], visits["fiberid"])
    visits["date_obs"] = _date_obs(visits["obs_mjd"].to_numpy())
    return visits.drop(columns=["_star_row"])


def _date_obs(obs_mjd: np.ndarray) -> np.ndarray:
    """ISO UT date strings with 0.1 s precision, as the DR9 headers write them."""
    from astropy.time import Time

    if len(obs_mjd) == 0:
        return np.array([], dtype=str)
    iso = Time(obs_mjd, format="mjd", scale="utc").isot  # 'YYYY-MM-DDTHH:MM:SS.sss'
    return np.array([s[:21] for s in iso])
