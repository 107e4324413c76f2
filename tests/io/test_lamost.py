"""Readers for every LAMOST layout (SPEC §2) on the real files in ../shared/data/lamost."""

from __future__ import annotations

import errno
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from survey_scale.io.lamost import LamostReadError, _read_astropy, _read_bytes, read_lamost, relabel_lamost_file
from tests.conftest import DR2_FLOAT64, DR7_101001, DR9_101001

ARRAYS = ("wavelength", "flux", "ivar", "andmask", "ormask")


def test_every_real_file_reads_and_matches_astropy(lamost_dir: Path) -> None:
    files = sorted(lamost_dir.iterdir())
    assert len(files) == 10
    layouts = set()
    for path in files:
        sp = read_lamost(path)
        reference = _read_astropy(path, _read_bytes(path))
        layouts.add((sp.layout, sp.flux.dtype.name))
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(sp, name), getattr(reference, name), err_msg=f"{path.name} {name}")
        assert sp.wavelength.size in (3908, 3909)
        assert np.all(np.diff(sp.wavelength) > 0)
        assert 3690 < sp.wavelength[0] < 3710 and 9090 < sp.wavelength[-1] < 9110
        assert sp.header["FILENAME"].startswith("spec-")
    assert {layout for layout, _ in layouts} == {"image", "coadd"}


def test_dr7_and_dr9_copies_of_101001_are_identical(lamost_dir: Path) -> None:
    dr9 = read_lamost(lamost_dir / DR9_101001)
    dr7 = read_lamost(lamost_dir / DR7_101001)
    assert (dr9.layout, dr7.layout) == ("coadd", "image")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(dr9, name), getattr(dr7, name))
    assert dr9.get("OBSID") == dr7.get("OBSID") == 101001


def test_float64_dr2_image_and_header_key_variants(lamost_dir: Path) -> None:
    sp = read_lamost(lamost_dir / DR2_FLOAT64)
    assert sp.layout == "image" and sp.wavelength_source == "data"
    with fits.open(lamost_dir / DR2_FLOAT64) as hdul:
        assert hdul[0].data.dtype.kind == "f" and hdul[0].data.dtype.itemsize == 8
        np.testing.assert_array_equal(sp.flux, hdul[0].data[0])
    assert sp.get("SNRG", "SN_G") == pytest.approx(3.71)
    assert sp.get("OBSID") is None  # DR2 files carry no OBSID
    assert sp.get("HELIO_RV") is None  # written as an empty string: counts as missing


def _v26_file(lamost_dir: Path, tmp_path: Path) -> Path:
    """An early-pipeline (v2.6.x) file: third row a normalized spectrum, EXTEN0 says so."""
    with fits.open(lamost_dir / DR2_FLOAT64) as hdul:
        data = hdul[0].data.astype(np.float32)
        header = hdul[0].header.copy()
    data[2] = data[0] / np.nanmedian(data[0])
    header["EXTEN0"] = "Flux Inverse Normalized Andmask Ormask"
    header["VERSPIPE"] = "2.6.4"
    target = tmp_path / "spec-55916-B5591606_sp01-001.fits"
    fits.PrimaryHDU(data, header).writeto(target)
    return target


def test_v26_row3_not_wavelength_uses_coeff(lamost_dir: Path, tmp_path: Path) -> None:
    sp = read_lamost(_v26_file(lamost_dir, tmp_path))
    assert sp.wavelength_source == "coeff"
    expected = 10.0 ** (3.5682 + 1e-4 * np.arange(3909))
    np.testing.assert_allclose(sp.wavelength, expected, rtol=1e-12)
    # the real DR2 wavelength row is this same log-linear solution
    np.testing.assert_allclose(read_lamost(lamost_dir / DR2_FLOAT64).wavelength, expected, rtol=1e-9)


def test_gzip_and_plain_read_the_same(lamost_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "spec-55859-F5902_sp01-001.fits"
    plain.write_bytes(gzip.decompress((lamost_dir / DR9_101001).read_bytes()))
    a, b = read_lamost(plain), read_lamost(lamost_dir / DR9_101001)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda src, p: p.write_bytes(b""), "empty_file"),
        (lambda src, p: p.write_text("SIMPLE? no, a text file\n" * 50), "not_fits"),
        (lambda src, p: p.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2]), "truncated"),
        (lambda src, p: p.write_bytes(gzip.decompress(src.read_bytes())[:20000]), "truncated"),
    ],
    ids=["empty", "not_fits", "truncated_gz", "truncated_plain"],
)
def test_structural_errors_have_codes(lamost_dir: Path, tmp_path: Path, make, code: str) -> None:
    target = tmp_path / "spec-1-X_sp01-001.fits"
    make(lamost_dir / DR9_101001, target)
    with pytest.raises(LamostReadError) as info:
        read_lamost(target)
    assert info.value.code == code
    assert str(target) in str(info.value)


def test_missing_column_and_wrong_shape(lamost_dir: Path, tmp_path: Path) -> None:
    with fits.open(lamost_dir / DR9_101001) as hdul:
        table = hdul["COADD"].data
        cols = [
            fits.Column(name=n, format="3908E", array=table[n]) for n in ("FLUX", "WAVELENGTH", "ANDMASK", "ORMASK")
        ]
        no_ivar = fits.HDUList(
            [fits.PrimaryHDU(header=hdul[0].header), fits.BinTableHDU.from_columns(cols, name="COADD")]
        )
        no_ivar.writeto(tmp_path / "noivar.fits", output_verify="silentfix")
    with pytest.raises(LamostReadError) as info:
        read_lamost(tmp_path / "noivar.fits")
    assert info.value.code == "missing_column" and "IVAR" in info.value.message

    with fits.open(lamost_dir / DR7_101001) as hdul:
        fits.PrimaryHDU(hdul[0].data[:3], hdul[0].header).writeto(tmp_path / "three_rows.fits")
    with pytest.raises(LamostReadError) as info:
        read_lamost(tmp_path / "three_rows.fits")
    assert info.value.code == "wrong_shape" and "3 rows" in info.value.message

    fits.PrimaryHDU().writeto(tmp_path / "empty_hdu.fits")
    with pytest.raises(LamostReadError) as info:
        read_lamost(tmp_path / "empty_hdu.fits")
    assert info.value.code == "missing_hdu"


def test_relabel_copies_data_with_new_ids(lamost_dir: Path, tmp_path: Path) -> None:
    target = relabel_lamost_file(lamost_dir / DR9_101001, tmp_path, obsid=9000001, fiberid=77, planid="COPY01")
    assert target.name == "spec-55859-COPY01_sp01-077.fits.gz"
    a, b = read_lamost(target), read_lamost(lamost_dir / DR9_101001)
    np.testing.assert_array_equal(a.flux, b.flux)
    assert (a.get("OBSID"), a.get("FIBERID"), a.get("PLANID")) == (9000001, 77, "COPY01")


@pytest.mark.parametrize(
    "exc", [RuntimeError("a bug"), KeyError("NAXIS2"), OverflowError("big"), OSError("astropy: Header missing END")]
)
def test_unexpected_exceptions_become_unreadable(
    lamost_dir: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    """The one catch-all at the top of read_lamost: whatever escapes the reader is typed, cause kept."""
    import survey_scale.io.lamost as lamost

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(lamost, "_assemble", broken)
    with pytest.raises(LamostReadError) as info:
        read_lamost(lamost_dir / DR9_101001)
    assert info.value.code == "unreadable" and type(exc).__name__ in info.value.message
    assert info.value.__cause__ is exc


TORCH_OOM = type("OutOfMemoryError", (RuntimeError,), {"__module__": "torch.cuda"})


@pytest.mark.parametrize(
    "exc",
    [MemoryError(), OSError(errno.EIO, "Input/output error"), OSError(errno.ENOSPC, "No space"), TORCH_OOM("gpu")],
)
def test_system_errors_are_raised_not_made_the_files_fault(
    lamost_dir: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    """Out of memory or an OS error is the machine's fault: raised as it is (the ingest retries the file on a
    rerun), not a LamostReadError that would reject the file for good (issue 26)."""
    import survey_scale.io.lamost as lamost

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(lamost, "_assemble", broken)
    with pytest.raises(type(exc)) as info:
        read_lamost(lamost_dir / DR9_101001)
    assert not isinstance(info.value, LamostReadError)
    assert info.value is exc or (info.value.errno == exc.errno and info.value.__cause__ is exc)


def test_an_io_error_reading_the_file_is_raised_a_forbidden_file_is_rejected(
    lamost_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import survey_scale.io.lamost_bytes as lamost_bytes

    path = lamost_dir / DR9_101001
    code = errno.EIO

    def failing_open(file, mode="r", *args, **kwargs):
        raise OSError(code, os.strerror(code), str(file))

    monkeypatch.setattr(lamost_bytes, "open", failing_open, raising=False)
    with pytest.raises(OSError) as info:  # a disk or network error: the machine's
        read_lamost(path)
    assert not isinstance(info.value, LamostReadError) and info.value.errno == errno.EIO
    assert str(path) in str(info.value)
    code = errno.EACCES  # not permitted: that file's own state, a reject
    with pytest.raises(LamostReadError) as rejected:
        read_lamost(path)
    assert rejected.value.code == "unreadable" and "Permission denied" in rejected.value.message
    monkeypatch.undo()
    with pytest.raises(LamostReadError) as missing:
        read_lamost(tmp_path / "missing.fits")
    assert missing.value.code == "missing_file"
    corrupt = tmp_path / "corrupt.fits.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"\0" * 200)  # gzip's own OSError (BadGzipFile, no errno): the file's
    with pytest.raises(LamostReadError) as bad:
        read_lamost(corrupt)
    assert bad.value.code == "truncated"


def test_bzip2_and_concatenated_gzip_members(lamost_dir: Path, tmp_path: Path) -> None:
    import bz2

    plain = gzip.decompress((lamost_dir / DR9_101001).read_bytes())
    reference = read_lamost(lamost_dir / DR9_101001)
    (tmp_path / "a.fits.bz2").write_bytes(bz2.compress(plain))
    half = len(plain) // 2
    (tmp_path / "b.fits.gz").write_bytes(gzip.compress(plain[:half]) + gzip.compress(plain[half:]))
    (tmp_path / "c.fits.gz").write_bytes(gzip.compress(plain) + b"\0" * 100)  # zero padding after the member
    for name in ("a.fits.bz2", "b.fits.gz", "c.fits.gz"):
        sp = read_lamost(tmp_path / name)
        for array in ARRAYS:
            np.testing.assert_array_equal(getattr(sp, array), getattr(reference, array), err_msg=name)
    (tmp_path / "d.fits.gz").write_bytes(gzip.compress(plain)[:-9])
    with pytest.raises(LamostReadError) as info:
        read_lamost(tmp_path / "d.fits.gz")
    assert info.value.code == "truncated"
