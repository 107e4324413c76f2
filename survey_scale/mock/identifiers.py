"""Names of the mock stars (SPEC §10): P1 Table 1 star ids and LAMOST designations from RA/Dec.

Star ids have a 1″ resolution (the ingest's rule, so truth and cube agree); :func:`_unique_positions` nudges
stars whose ids would clash with another's, or with a reserved id of an earlier release.
"""

from __future__ import annotations

import numpy as np


def star_id_from_radec(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """P1 Table 1 star ids "Sdddmmss±ddmmss": RA and Dec in degrees, arcmin, arcsec, rounded to the
    arcsecond (the same rule as the ingest's star ids, so truth and cube agree)."""
    ra_s = np.rint(np.mod(np.asarray(ra, dtype=np.float64), 360.0) * 3600.0).astype(np.int64) % (360 * 3600)
    dec = np.asarray(dec, dtype=np.float64)
    dec_s = np.rint(np.abs(dec) * 3600.0).astype(np.int64)
    sign = np.where(dec < 0, "-", "+")
    return np.array(
        [
            f"S{r // 3600:03d}{r // 60 % 60:02d}{r % 60:02d}{s}{d // 3600:02d}{d // 60 % 60:02d}{d % 60:02d}"
            for r, d, s in zip(ra_s, dec_s, sign, strict=True)
        ]
    )


def lamost_designation(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """LAMOST DESIG strings "LAMOST Jhhmmss.ss±ddmmss.s" (truncated, as the pipeline writes them)."""
    out = []
    for a, d in zip(np.mod(np.asarray(ra, dtype=np.float64), 360.0), np.asarray(dec, dtype=np.float64), strict=True):
        cs = int(np.floor(a / 15.0 * 360000.0 + 1e-6))  # hundredths of a second of time
        h, rem = divmod(cs, 360000)
        m, rem = divmod(rem, 6000)
        ds_total = int(np.floor(abs(d) * 36000.0 + 1e-6))  # tenths of an arcsec
        dd, rem2 = divmod(ds_total, 36000)
        dm, dsec = divmod(rem2, 600)
        sign = "-" if d < 0 else "+"
        out.append(
            f"LAMOST J{h:02d}{m:02d}{rem // 100:02d}.{rem % 100:02d}"
            f"{sign}{dd:02d}{dm:02d}{dsec // 10:02d}.{dsec % 10:d}"
        )
    return np.array(out)


def _unique_positions(
    ra: np.ndarray, dec: np.ndarray, reserved: set[str] | frozenset[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nudge stars by 1.5″ in Dec until every ``star_id`` (1″ resolution) is unique and not reserved."""
    ra, dec = np.array(ra, dtype=np.float64), np.array(dec, dtype=np.float64)
    ids = star_id_from_radec(ra, dec)
    for _ in range(100):
        seen: set[str] = set(reserved)
        clash = np.zeros(ra.size, dtype=bool)
        for i, sid in enumerate(ids):
            if sid in seen:
                clash[i] = True
            else:
                seen.add(sid)
        if not clash.any():
            return ra, dec, ids
        dec[clash] = np.clip(dec[clash] + 1.5 / 3600.0, -89.99, 89.99)
        ids[clash] = star_id_from_radec(ra[clash], dec[clash])
    raise RuntimeError("could not make star ids unique")
