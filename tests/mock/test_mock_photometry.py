"""Extinction curve, extinction coefficients, intrinsic colours and the MKs relation of the mock."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.mock import photometry as ph
from survey_scale.mock import population as pop


@pytest.mark.parametrize("band", ph.BANDS)
def test_extinction_coefficients_are_reproducible(band: str) -> None:
    assert ph.band_extinction_coefficient(band) == pytest.approx(ph.EXTINCTION_COEFFS[band], abs=0.002)


def test_extinction_coefficients_ordered_and_ks_as_p1() -> None:
    r = ph.EXTINCTION_COEFFS
    assert r["BP"] > r["G"] > r["RP"] > r["J"] > r["H"] > r["Ks"] > 0
    assert r["g"] > r["r"] > r["i"]
    assert 0.28 < r["Ks"] < 0.40  # P1 §4: E(B-V) = 1 gives ~0.3 mag in Ks
    # broad bands lose efficiency at large extinction (the hot-star G band: 2.91 -> ~2.73 at E = 0.5)
    assert ph.band_extinction_coefficient("G", ebv=0.5) < r["G"]


def test_f99_anchors_and_normalisation() -> None:
    k = ph.fitzpatrick99(np.array([26500.0, 12200.0, 6000.0, 5470.0, 4670.0, 4110.0]))
    expected = [0.265, 0.829, -0.426 + 1.0044 * 3.1, -0.050 + 1.0016 * 3.1, 0.701 + 1.0016 * 3.1,
                1.208 + 1.0032 * 3.1 - 0.00033 * 3.1**2]  # fmt: skip
    np.testing.assert_allclose(k, expected, atol=2e-3)  # dust_extinction's F99 (its spline, its anchors)
    # A(B) - A(V) per unit E(B-V) is ~1 at the effective wavelengths of B and V
    kb, kv = ph.fitzpatrick99(np.array([4400.0, 5500.0]))
    assert 0.95 < kb - kv < 1.1
    with pytest.raises(ValueError):
        ph.fitzpatrick99(np.array([500.0]))


def test_reddening_transmission() -> None:
    wave = np.array([4000.0, 6000.0, 9000.0])
    t = ph.reddening_transmission(wave, np.array([0.0, 1.0]))
    assert t.shape == (2, 3)
    np.testing.assert_allclose(t[0], 1.0)
    assert np.all(np.diff(t[1]) > 0)  # redder light is less extinguished


def test_intrinsic_colours_of_an_a0_dwarf_are_near_zero() -> None:
    c = ph.intrinsic_colors(np.array([9700.0]))
    assert c["V"][0] == pytest.approx(0.041, abs=0.005)  # V - Ks of A0V in the table
    assert (c["BP"] - c["RP"])[0] == pytest.approx(-0.037, abs=0.02)
    assert (c["g"] - c["r"])[0] == pytest.approx(-0.24, abs=0.03)
    assert (c["J"] - c["H"])[0] == pytest.approx(-0.032, abs=0.005)


def test_colours_get_bluer_with_temperature() -> None:
    teff = np.geomspace(7000.0, 45000.0, 40)
    c = ph.intrinsic_colors(teff)
    for blue, red in (("BP", "RP"), ("g", "r"), ("V", "Ks"), ("J", "Ks")):
        colour = c[blue] - c[red]
        assert np.all(np.diff(colour) < 1e-9), f"{blue}-{red} not monotonic"
    assert (c["BP"] - c["RP"])[-1] < -0.45  # O stars approach the Rayleigh-Jeans limit


def test_mks_relation_reproduces_the_dwarf_table() -> None:
    t = ph.dwarf_sequence()
    sel = (t["Teff"] >= 7000) & (t["Teff"] <= 34000) & np.isfinite(t["M_Ks"])
    teff = t["Teff"][sel]
    logg = 4.438 + np.log10(t["Msun"][sel]) - 2 * np.log10(t["R_Rsun"][sel])
    mks = pop.absolute_mag_ks(teff, logg)
    resid = mks - t["M_Ks"][sel]
    assert np.sqrt(np.mean(resid**2)) < 0.12
    assert np.max(np.abs(resid)) < 0.3


def test_mks_relation_is_smooth_and_brightens_with_lower_gravity() -> None:
    teff = np.full(50, 15000.0)
    logg = np.linspace(4.3, 2.0, 50)
    mks = pop.absolute_mag_ks(teff, logg)
    assert np.all(np.diff(mks) < 0)
    assert np.max(np.abs(np.diff(mks, 2))) < 0.02  # no kinks where the dwarf and FGLR branches blend


def test_parallax_zero_point_matches_spec_section_8() -> None:
    assert ph.parallax_zero_point(np.array([12.2]))[0] == pytest.approx(-0.0528)
    assert ph.parallax_zero_point(np.array([17.2]))[0] == pytest.approx(-0.0528 + 0.00421 * 5)


def test_errors_grow_with_magnitude() -> None:
    mags = np.linspace(8, 20, 50)
    for band in ph.BANDS:
        err = ph.photometric_error(band, mags)
        assert np.all(np.diff(err) > 0)
    assert ph.gaia_parallax_error(np.array([17.0]))[0] == pytest.approx(0.108, abs=0.005)
