"""The distance posterior (SPEC §9, §12) against P1's 0.1 pc grid."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import survey_scale as ss
from survey_scale.science.distance import D_MAX_PC, example_stars, grid_posterior, posterior


def test_posterior_matches_a_01_pc_grid_to_01_percent() -> None:
    stars = example_stars(25, 0)
    stars["parallax"][-1], stars["binary"][-1] = -0.2, True  # parallax alone, ϖ < 0: the mode is the prior's edge
    got = ss.distance.posterior(**stars)
    for i in range(25):
        ref = grid_posterior(*(stars[k][i] for k in stars))
        for key in ("dis", "dis_low", "dis_high"):
            # the grid itself is quantized at 0.1 pc
            assert got[key][i] == pytest.approx(ref[key], rel=1e-3, abs=0.1), (i, key)
        assert got["logdis"][i] == pytest.approx(ref["logdis"], abs=4e-4), i
        assert got["logdis_err"][i] == pytest.approx(ref["logdis_err"], rel=1e-3, abs=1e-4), i
    assert got.dis[-1] == pytest.approx(D_MAX_PC)


def test_posterior_in_blocks_is_the_same_with_a_fraction_of_the_memory() -> None:
    stars = example_stars(3000, 4)

    def run(block: int) -> tuple[object, int]:
        tracemalloc.start()
        try:
            return posterior(**stars, block=block), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole, peak_whole = run(10**9)
    blocked, peak_blocked = run(500)
    for key in ("dis", "dis_low", "dis_high", "logdis", "logdis_err"):
        np.testing.assert_array_equal(getattr(blocked, key), getattr(whole, key), err_msg=key)
    # the grids (~100 kB per star) are held for 500 stars at a time, not 3,000
    assert peak_blocked < peak_whole / 3, (peak_blocked, peak_whole)


def test_binaries_use_the_parallax_alone_and_bad_inputs_give_nan() -> None:
    # a photometric distance far from the parallax one: the binary ignores it
    kw = dict(parallax_error=0.2, mks=-1.0, mks_err=0.2, ks=11.0, ks_err=0.02, aks=0.1, aks_err=0.01)
    single, binary = posterior(np.array([1.0, 1.0]), binary=np.array([False, True]), **kw).dis
    assert binary == pytest.approx(1000.0, rel=1e-3)  # parallax 1 mas: mode at 1 kpc
    assert single > 1100.0  # pulled towards the photometric 10^((11 + 1 + 5 - 0.1)/5) = 2.4 kpc
    bad = posterior(
        np.array([1.0, np.nan, 1.0, 1.0]),
        np.array([0.1, 0.1, 0.0, 0.1]),
        np.array([0.0, 0.0, 0.0, np.nan]),
        0.2,
        10.0,
        0.02,
        0.1,
        0.01,
        binary=np.array([False, False, False, True]),
    )
    assert np.isfinite(bad.dis[0]) and np.isnan(bad.dis[1:3]).all() and np.isfinite(bad.dis[3])
    assert np.isnan(posterior(np.array([1.0]), 0.1, np.nan, 0.2, 10.0, 0.02, 0.1, 0.01).logdis).all()


def test_spectrophotometric_parallax_and_binary_flags() -> None:
    from survey_scale.science.distance import binary_flags, spectrophotometric_parallax

    # MKs = -1, A_Ks = 0.1, m_Ks = 9.1: d = 10^((9.1 + 1 + 5 - 0.1)/5) = 1 kpc, ϖ_s = 1 mas
    plx_s, err = spectrophotometric_parallax(9.1, -1.0, 0.1, 0.1, 0.2, 0.0, 0.0)
    assert plx_s == pytest.approx(1.0) and err == pytest.approx(0.2 * np.log(10) * np.sqrt(0.05))
    snr, flag = binary_flags(
        np.array([1.0, 0.5, np.nan, 1.0]), 0.05, np.array([1.0, 1.0, 1.0, np.nan]), np.array([0.1, 0.1, 0.1, 0.1])
    )
    assert flag.tolist() == [0, 1, -9, -9] and flag.dtype == np.int8
    assert snr[1] == pytest.approx(0.5 / np.sqrt(0.1**2 + 0.05**2))


def test_galactocentric_xyz_puts_the_sun_at_minus_8_1_kpc() -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from survey_scale.science.distance import galactocentric_xyz

    l_b = SkyCoord(l=[0.0, 90.0, 180.0, 0.0] * u.deg, b=[0.0, 0.0, 0.0, 90.0] * u.deg, frame="galactic").icrs
    x, y, z = galactocentric_xyz(l_b.ra.deg, l_b.dec.deg, np.array([1000.0, 1000.0, 1000.0, 1000.0]))
    np.testing.assert_allclose(x, [-7.1, -8.1, -9.1, -8.1], atol=0.02)
    np.testing.assert_allclose(y, [0.0, 1.0, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(z, [0.0, 0.0, 0.0, 1.0], atol=0.02)
    assert np.isnan(galactocentric_xyz(np.array([10.0]), np.array([5.0]), np.array([np.nan]))[0]).all()
