"""FITS cards, the two LAMOST layouts, determinism and the structural invalid files."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits

from survey_scale.io.lamost import LamostReadError, read_lamost
from survey_scale.mock import spectra as spx
from survey_scale.mock import writer as wr

from .conftest import MOCK_HEADER as META
from .conftest import SHARED_LAMOST


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = spx.NATIVE_NPIX
    return {
        "FLUX": rng.normal(100, 5, n).astype(np.float32),
        "IVAR": np.full(n, 0.04, np.float32),
        "WAVELENGTH": spx.native_wavelength().astype(np.float32),
        "ANDMASK": np.zeros(n, np.float32),
        "ORMASK": np.zeros(n, np.float32),
        "NORMALIZATION": np.ones(n, np.float32),
    }


@pytest.mark.parametrize(
    ("key", "value", "fmt"),
    [
        ("OBSID", 12345, None),
        ("RA", 84.123456, ".6f"),
        ("Z", -1.234e-4, ".8f"),
        ("Z_ERR", 1.2e-5, None),
        ("DESIG", "LAMOST J0000+00", None),
        ("TCOMMENT", "it's", None),
        ("HELIO", True, None),
        ("OFFSET", False, None),
        ("DUST", None, None),
    ],
)
def test_cards_parse_back(key: str, value, fmt: str | None) -> None:
    image = wr.format_card(key, value, "a comment", fmt)
    assert len(image) == 80 and image.isascii()
    card = fits.Card.fromstring(image)
    card.verify("exception")
    expected = "" if value is None else value
    assert card.value == (pytest.approx(expected) if isinstance(value, float) else expected)


@pytest.mark.parametrize("layout", ["image", "coadd"])
@pytest.mark.parametrize("compress", [False, True])
def test_layouts_read_back(tmp_path, layout: str, compress: bool) -> None:
    arrays = _arrays()
    data = wr.spectrum_bytes(layout, wr.lamost_header_entries(META, layout), arrays)
    path = wr.write_bytes(tmp_path / META["FILENAME"], data, compress=compress)
    assert path.name.endswith(".fits.gz" if compress else ".fits")
    sp = read_lamost(path)
    assert sp.layout == layout
    for name, attr in (("FLUX", "flux"), ("IVAR", "ivar"), ("WAVELENGTH", "wavelength")):
        np.testing.assert_array_equal(getattr(sp, attr), arrays[name].astype(np.float64))
    h = sp.header
    for key in (
        "OBSID",
        "DESIG",
        "RA",
        "DEC",
        "RA_OBS",
        "DEC_OBS",
        "MJD",
        "LMJD",
        "PLANID",
        "SPID",
        "FIBERID",
        "Z",
        "Z_ERR",
        "SNRU",
        "SNRG",
        "SNRR",
        "SNRI",
        "SNRZ",
        "CLASS",
        "SUBCLASS",
        "COEFF0",
        "COEFF1",
        "VERSPIPE",
        "DATA_V",
        "FILENAME",
        "DATE-OBS",
        "HELIO_RV",
    ):
        assert key in h, key
    assert h["OBSID"] == 500000001 and h["PLANID"] == "GAC084N24B1" and h["Z"] == pytest.approx(1e-4)
    if layout == "image":
        assert h["EXTEN0"] == wr.EXTEN0
    with fits.open(path) as hdul:  # astropy reads it too
        assert ("COADD" in hdul) == (layout == "coadd")


@pytest.mark.parametrize(
    ("layout", "real"),
    [("image", "spec-55859-F5902_sp01-001_dr7.fits.gz"), ("coadd", "spec-55859-F5902_sp01-001.fits.gz")],
)
def test_header_keys_as_the_real_files(layout: str, real: str) -> None:
    if not (SHARED_LAMOST / real).is_file():
        pytest.skip(f"real LAMOST file {real} not found in {SHARED_LAMOST}")
    data = wr.spectrum_bytes(layout, wr.lamost_header_entries(META, layout), _arrays())
    with fits.open(io.BytesIO(data)) as mine:
        keys = list(mine[0].header.keys())
        if layout == "coadd":
            assert mine["COADD"].columns.names == list(wr.COADD_COLUMNS)
    assert keys == list(fits.getheader(SHARED_LAMOST / real).keys())


def test_bytes_are_deterministic(tmp_path) -> None:
    a = wr.spectrum_bytes("coadd", wr.lamost_header_entries(META, "coadd"), _arrays())
    b = wr.spectrum_bytes("coadd", wr.lamost_header_entries(META, "coadd"), _arrays())
    assert a == b and len(a) % 2880 == 0
    p1 = wr.write_bytes(tmp_path / "x1.fits", a, compress=True).read_bytes()
    p2 = wr.write_bytes(tmp_path / "x2.fits", a, compress=True).read_bytes()
    assert p1 == p2 and p1[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert gzip.decompress(p1) == a


def test_structural_invalid_files_fail_with_their_codes(tmp_path) -> None:
    arrays = _arrays()
    image = wr.spectrum_bytes("image", wr.lamost_header_entries(META, "image"), arrays)
    coadd = wr.spectrum_bytes("coadd", wr.lamost_header_entries(META, "coadd"), arrays)
    cases = {
        "truncated_gz.fits.gz": (wr.truncate(gzip.compress(coadd, 6, mtime=0)), "truncated"),
        "truncated.fits": (wr.truncate(image, 0.6), "truncated"),
        "html.fits": (wr.not_fits_bytes("html.fits"), "not_fits"),
        "three_rows.fits": (
            wr.image_hdu_bytes(
                wr.lamost_header_entries(META, "image"),
                [arrays["FLUX"], arrays["IVAR"], arrays["WAVELENGTH"]],
            ),
            "wrong_shape",
        ),
        "no_ivar.fits": (
            wr.coadd_bytes(wr.lamost_header_entries(META, "coadd"), {k: v for k, v in arrays.items() if k != "IVAR"}),
            "missing_column",
        ),
    }
    for name, (data, code) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(LamostReadError) as err:
            read_lamost(tmp_path / name)
        assert err.value.code == code, name
