"""LAMOST file names, and copies of a file under new identifiers (SPEC §2; tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path

from astropy.io import fits


def lamost_filename(lmjd: int, planid: str, spid: int, fiberid: int, suffix: str = ".fits.gz") -> str:
    """LAMOST's file name for a spectrum: ``spec-<LMJD>-<PLANID>_sp<SS>-<FFF>.fits[.gz]``."""
    return f"spec-{int(lmjd)}-{planid}_sp{int(spid):02d}-{int(fiberid):03d}{suffix}"


def relabel_lamost_file(
    src: str | Path,
    folder: str | Path,
    *,
    obsid: int,
    fiberid: int,
    planid: str | None = None,
    spid: int | None = None,
    lmjd: int | None = None,
    suffix: str = ".fits.gz",
) -> Path:
    """Copy a LAMOST file under new identifiers (OBSID, PLANID, SPID, FIBERID, LMJD and FILENAME).

    The data are unchanged. Tests and benchmarks use it to build large inputs from the real files.

    Returns
    -------
    pathlib.Path
        The new file, named by :func:`lamost_filename` in ``folder``.
    """
    with fits.open(src) as hdul:
        header = hdul[0].header
        planid = planid or str(header["PLANID"]).strip()
        spid = int(header["SPID"]) if spid is None else spid
        lmjd = int(header["LMJD"]) if lmjd is None else lmjd
        name = lamost_filename(lmjd, planid, spid, fiberid, suffix)
        header["OBSID"] = obsid
        header["PLANID"] = planid
        header["SPID"] = spid
        header["FIBERID"] = fiberid
        header["LMJD"] = lmjd
        header["FILENAME"] = name.removesuffix(".gz")
        target = Path(folder) / name
        hdul.writeto(target, overwrite=True, output_verify="silentfix")
    return target
