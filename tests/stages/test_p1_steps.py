"""The P1 stages on plain numpy (SPEC §7–§9, §13): extinction, MKs inference, distances, the distances catalog."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.config import load_config
from survey_scale.engine.contracts import ChunkContext
from survey_scale.science import distance_catalog
from survey_scale.science.extinction import COLOR_ERROR_FLOOR
from survey_scale.science.mks import MKsModel
from survey_scale.science.photometry import EXTINCTION_COEFFS, intrinsic_colors
from survey_scale.stages.distances import distances_chunk, distances_stage
from survey_scale.stages.extinction import extinction_chunk, extinction_stage
from survey_scale.stages.mks import mks_chunk

BANDS = ["g", "BP", "r", "i", "RP", "J", "H"]
SPEC13_DISTANCES = (
    "specid fitsname ra dec uniqflag star_id snr_g rv rv_err mks mks_err mks_geo mks_geo_err dis dis_low dis_high "
    "logdis logdis_err ebv ebv_err aks aks_err snr_dparallax binary_flag em_flag gaia_id parallax parallax_error "
    "parallax_offset pmra pmra_error pmdec pmdec_error ruwe J J_err H H_err Ks Ks_err X Y Z"
).split()


def _photometry(teff: np.ndarray, ebv: np.ndarray, mks: np.ndarray, d_pc: np.ndarray) -> dict[str, np.ndarray]:
    own = intrinsic_colors(teff)
    dm = 5 * np.log10(d_pc / 10)
    out = {}
    for band in [*BANDS, "Ks", "G"]:
        out[band] = mks + own[band] + dm + EXTINCTION_COEFFS[band] * ebv
        out[f"{band}_err"] = np.full(teff.size, 0.01)
    return out


def test_extinction_chunk_recovers_ebv_and_geometric_mks() -> None:
    n = 6
    teff = np.array([8000.0, 12000.0, 20000.0, 30000.0, 15000.0, np.nan])
    ebv = np.array([0.1, 0.5, 1.0, 0.3, 0.0, 0.2])
    mks = np.array([1.0, 0.0, -1.5, -3.0, -0.5, 0.0])
    d_pc = np.full(n, 1000.0)
    inputs = _photometry(teff, ebv, mks, d_pc)
    labels = np.zeros((n, 11))
    labels[:, 0] = teff
    g_mag = np.full(n, 12.2)  # the Leung & Bovy correction is then its constant 0.0528 mas
    inputs |= {"labels": labels, "G": g_mag, "parallax": np.full(n, 1.0 - 0.0528), "parallax_error": np.full(n, 0.05)}
    inputs["r"][4] = np.nan  # a missing band: the star pairs g with BP and BP with i
    config = load_config(None, {"extinction.intrinsic_color_error": 0.0})  # the floor alone, as P1
    assert config.extinction.color_error_floor == COLOR_ERROR_FLOOR
    stage = extinction_stage(config.extinction, BANDS, 0)
    result = extinction_chunk(inputs, stage.params, ChunkContext(0, n, {}))
    out = result.outputs
    np.testing.assert_allclose(out["ebv"][:5], ebv[:5], atol=1e-9)
    np.testing.assert_allclose(out["aks"][:5], EXTINCTION_COEFFS["Ks"] * ebv[:5], atol=1e-9)
    assert out["ebv_n_colors"].tolist() == [6, 6, 6, 6, 5, 0]
    # the error: inverse-variance mean of colours with 0.014 mag floors
    assert 0.003 < out["ebv_err"][0] < COLOR_ERROR_FLOOR
    np.testing.assert_allclose(out["parallax_offset"], 0.0528)
    np.testing.assert_allclose(out["mks_geo"][:5], mks[:5], atol=1e-9)  # 1 mas after the correction = 1 kpc
    assert np.isnan(out["ebv"][5]) and np.isnan(out["mks_geo"][5])  # no Teff, no intrinsic colours
    assert [(r[0], r[1]) for r in result.rejects] == [(5, "no_extinction")]


def test_a_configured_band_without_coefficients_is_refused() -> None:
    with pytest.raises(ValueError, match="Ks is never used"):
        load_config(None, {"extinction.bands": ["g", "Ks"]})


def _distance_inputs() -> dict[str, np.ndarray]:
    # star 0: single, consistent; 1: an equal-mass binary (0.75 mag brighter than its spectrum says);
    # 2: no parallax; 3: no Ks; 4: no MKs (the parallax alone)
    d_pc = np.array([2000.0, 2000.0, 2000.0, 2000.0, 2000.0])
    mks = np.array([-1.0, -1.0, -1.0, -1.0, np.nan])
    ks = mks + 5 * np.log10(d_pc / 10) + 0.1
    ks[1] -= 0.75
    ks[3] = np.nan
    plx = 1000 / d_pc
    plx[2] = np.nan
    return {
        "mks": mks,
        "mks_err": np.full(5, 0.1),
        "Ks": ks,
        "Ks_err": np.full(5, 0.02),
        "aks": np.full(5, 0.1),
        "aks_err": np.full(5, 0.01),
        "parallax": plx,
        "parallax_error": np.full(5, 0.02),
        "parallax_offset": np.zeros(5),
        "ra": np.full(5, 83.8),
        "dec": np.full(5, -5.4),
    }


def test_distances_chunk_flags_binaries_and_uses_the_parallax_alone_for_them() -> None:
    inputs = _distance_inputs()
    stage = distances_stage(load_config(None).distance)
    result = distances_chunk(inputs, stage.params, ChunkContext(0, 5, {}))
    out = result.outputs
    assert out["binary_flag"].tolist() == [0, 1, -9, -9, -9]
    assert out["dis_parallax_only"].tolist() == [0, 1, -9, 1, 1]
    assert out["dis"][0] == pytest.approx(2000.0, rel=0.01)
    # the binary's distance comes from its parallax, not from its too-bright photometry
    assert out["dis"][1] == pytest.approx(2000.0, rel=0.02)
    assert np.isnan(out["dis"][2]) and [r[:2] for r in result.rejects] == [(2, "no_distance")]
    # photometry and parallax together are more precise than the parallax alone
    width = (out["dis_high"] - out["dis_low"]) / out["dis"]
    assert width[0] < width[1]
    # X, Y, Z: the Orion direction, 2 kpc from the Sun at X = -8.1 kpc
    assert np.hypot(out["X"][0] + 8.1, np.hypot(out["Y"][0], out["Z"][0])) == pytest.approx(2.0, rel=0.01)
    assert out["X"][0] < -8.1  # towards the anticentre


def test_mks_chunk_with_an_untrained_model_says_why() -> None:
    model = MKsModel(networks={}, error_model={}, meta={"untrained": "12 training and 3 test spectra"})
    inputs = {"pca_flux": np.ones((3, 10)), "em_flag": np.array([0, 1, 0]), "snr_g": np.full(3, 50.0)}
    inputs["star_id"] = np.array(["S1", "S2", "S3"])
    result = mks_chunk(inputs, {"snr_column": "snr_g"}, ChunkContext(0, 3, {"mks": model}))
    assert np.isnan(result.outputs["mks"]).all()
    assert len(result.rejects) == 3 and "12 training" in result.rejects[0][2]


def test_distances_catalog_columns_follow_spec13() -> None:
    n = 4
    data = {name: np.arange(n, dtype=np.float64) for name in distance_catalog.CUBE_INPUTS}
    data["specid"] = np.array([f"s{i}" for i in range(n)], dtype=object)
    del data["ruwe"], data["gaia_id"]  # absent from the cube: filled with the missing values
    out = distance_catalog.distances_catalog_block(data, {})
    assert list(out)[: len(SPEC13_DISTANCES)] == SPEC13_DISTANCES
    assert np.isnan(out["ruwe"]).all() and (out["gaia_id"] == -9999).all()
    assert out["binary_flag"].dtype == np.int16 and out["dis"].dtype == np.float64
    meta = distance_catalog.column_meta()
    assert meta["dis"]["unit"] == "pc" and meta["X"]["unit"] == "kpc" and meta["mks"]["unit"] == "mag"
