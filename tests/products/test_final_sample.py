"""P2 §5.1's final sample in ``survey-scale info`` and the report (issue 23): counts per rule, the final sample,
the spectra per emulator component, the Teff-against-class and rules figures, and the mock-truth table — on
small cubes written here column by column (no pipeline run)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import CubeConfig
from survey_scale.products.figures.final_sample import (
    plot_final_sample_rules,
    plot_teff_against_class,
    subclass_position,
)
from survey_scale.products.info import FINAL_SAMPLE_RULES, cube_info, final_sample_counts, final_sample_lines
from survey_scale.products.report import write_report
from survey_scale.store.cube import (
    consolidate,
    create_cube,
    create_spectra_array,
    open_group,
    read_column,
    resize_spec,
    write_column,
)
from tests.products.test_report import _assert_real_png, _drawn

CONFIG = CubeConfig(shard_spectra=64, inner_chunk_spectra=32)
LABELS = ("teff", "logg", "fe_h")


def build_cube(path: Path, columns: dict[str, np.ndarray], teff: np.ndarray | None = None) -> Path:
    """A cube of ``len`` spectra holding ``columns`` (per spectrum; ``fit_component`` gets the ``physical``
    set's flag_meanings) and, with ``teff``, the labels (teff, logg 4, [Fe/H] 0)."""
    n = len(next(iter(columns.values())))
    create_cube(path, CONFIG)
    resize_spec(path, n)
    root = open_group(path, mode="r+")
    write_column(root, "specid", np.array([f"60000-MOCK-01-{i:03d}" for i in range(n)]), {})
    for name, values in columns.items():
        attrs = {"long_name": f"{name} of the test"}
        if name == "fit_component":
            attrs["flag_meanings"] = "0: cool; 1: hot"
        write_column(root, name, np.asarray(values), attrs)
    if teff is not None:
        label = root.create_array("label", shape=(len(LABELS),), dtype=str, dimension_names=("label",), fill_value="")
        label[:] = np.array(LABELS, dtype=object)
        labels = create_spectra_array(root, "labels", "f4", CONFIG, {}, extra_dims=(("label", len(LABELS)),))
        labels[:] = np.column_stack([teff, np.full(n, 4.0), np.zeros(n)]).astype(np.float32)
    consolidate(path)
    return path


def _flags(**rows: list[int]) -> dict[str, np.ndarray]:
    return {name: np.array(values, dtype=np.int16) for name, values in rows.items()}


TEN = _flags(
    flag_teff_lt_7000=[1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    flag_snr_lt_5=[0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    flag_not_converged=[0] * 10,
    flag_chi2ratio=[0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    flag_cool_star=[1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    flag_non_stellar=[0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
    final_sample=[0, 0, 0, 0, 0, 0, 1, 1, 1, 1],
)
"""Ten spectra: rows 0–4 flagged (0 and 1 by two rules each), row 5 out without a rule (no labels), 6–9 in."""


def test_info_counts_each_rule_the_final_sample_and_the_components(tmp_path: Path) -> None:
    component = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, -1], dtype=np.int8)
    cube = build_cube(tmp_path / "cube.zarr", {**TEN, "bp_rp0": np.zeros(10, np.float32), "fit_component": component})
    lines = final_sample_lines(open_group(cube))
    assert lines == [
        "  final sample (P2 5.1): 4 of 10 spectra (40.0 %)",
        "    rule                   flagged            by it alone",
        "    flag_teff_lt_7000            2  (20.0 %)            0",
        "    flag_snr_lt_5                2  (20.0 %)            1",
        "    flag_not_converged           0   (0.0 %)            0",
        "    flag_chi2ratio               1  (10.0 %)            1",
        "    flag_cool_star               1  (10.0 %)            0",
        "    flag_non_stellar             1  (10.0 %)            1",
        "    any rule: 5 (2 by several rules); out without a rule (no fit labels): 1",
        "  fit components (fit_component): cool 2, hot 7, not fitted 1",
    ]
    text = cube_info(cube)
    assert "\n".join(lines) in text and text.index("final sample") < text.index("rejects:")


def test_info_says_not_computed_yet_on_older_cubes(tmp_path: Path) -> None:
    # before the fit: nothing of the final sample
    bare = build_cube(tmp_path / "bare.zarr", {"snr_g": np.ones(3)})
    assert final_sample_counts(open_group(bare)) is None
    assert final_sample_lines(open_group(bare)) == [
        "  final sample: not computed yet (steps fit, chi2ratio and final_sample make it)",
        "  fit components: not computed yet (step fit)",
    ]
    # a cube from before issue 23: chi2ratio ran (its flag is there), final_sample and fit_component are not
    old = build_cube(tmp_path / "old.zarr", {"flag_chi2ratio": np.array([1, 0, 0], np.int16)})
    lines = final_sample_lines(open_group(old))
    assert lines[0] == "  final sample: not computed yet (step final_sample)"
    assert "    flag_chi2ratio               1  (33.3 %)            1" in lines
    assert "    flag_cool_star       not computed yet" in lines
    assert lines[-1] == "  fit components: not computed yet (step fit)"
    assert "not computed yet" in cube_info(old)
    # an append the step has not reached: its rows hold the fill value -1
    partial = {name: np.r_[values[:8], -1, -1].astype(np.int16) for name, values in TEN.items()}
    appended = build_cube(tmp_path / "appended.zarr", partial)
    first = final_sample_lines(open_group(appended))[0]
    assert first == "  final sample (P2 5.1): 2 of 10 spectra (20.0 %); 2 rows not computed yet (step final_sample)"
    # an empty cube says nothing
    create_cube(tmp_path / "empty.zarr", CONFIG)
    assert final_sample_lines(open_group(tmp_path / "empty.zarr")) == []


def test_subclass_positions_order_o_to_m() -> None:
    order = ["O", "OB", "B0", "B2.5", "B9", "A0V", "A2", "A9V", "F0", "F5", "G2", "K5", "dM0", "gM2", "sdM5"]
    xs = [subclass_position(s)[0] for s in order]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert subclass_position("dM2") == subclass_position("M2") == (6.25, True)
    assert subclass_position("B") == (1.5, False) and subclass_position("OB") == (1.0, True)
    for other in ("", "Non", "WD", "DA", "Carbon", "EM", "QSO"):
        assert math.isnan(subclass_position(other)[0]), other


def survey_like(n_hot: int = 240, n_cool: int = 90, seed: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray, list]:
    """A hot-star candidate list in miniature: hot stars with their subclass, cool contaminants (fitted hot or
    cool; a sixth of them classed A by LAMOST), QSOs, spectra without a subclass and white dwarfs. Returns the
    columns, the fitted Teff and each spectrum's true population."""
    from survey_scale.mock.population import spectral_subclass

    rng = np.random.default_rng(seed)
    hot_teff = 10 ** rng.uniform(np.log10(7600), np.log10(30000), n_hot)
    cool_teff = rng.uniform(4300, 6900, n_cool)
    cool_sub = spectral_subclass(cool_teff)
    cool_sub[: n_cool // 6] = "A7V"
    fitted_hot = rng.random(n_cool) < 0.4
    n_q, n_none, n_wd = 4, 5, 3
    population = ["hot"] * n_hot + ["cool_contaminant"] * n_cool + ["qso"] * n_q + ["hot"] * (n_none + n_wd)
    teff = np.r_[
        hot_teff * rng.normal(1, 0.03, n_hot),
        np.where(fitted_hot, rng.uniform(7200, 9500, n_cool), cool_teff * rng.normal(1, 0.02, n_cool)),
        rng.uniform(8000, 20000, n_q),
        rng.uniform(9000, 15000, n_none),
        rng.uniform(20000, 40000, n_wd),
    ]
    n = teff.size
    teff[n_hot] = np.nan  # a fit that failed
    teff_cool = np.r_[np.full(n_hot, 8400.0), cool_teff, np.full(n - n_hot - n_cool, 8400.0)]
    subclass = np.r_[spectral_subclass(hot_teff), cool_sub, [""] * n_q, [""] * n_none, ["WD"] * n_wd]
    lamost_class = np.r_[["STAR"] * (n_hot + n_cool), ["QSO"] * n_q, ["STAR"] * (n_none + n_wd)]
    is_cool = np.r_[np.zeros(n_hot, bool), np.ones(n_cool, bool), np.zeros(n - n_hot - n_cool, bool)]
    flags = {
        "flag_teff_lt_7000": teff < 7000,
        "flag_snr_lt_5": rng.random(n) < 0.05,
        "flag_not_converged": rng.random(n) < 0.02,
        "flag_chi2ratio": rng.random(n) < 0.04,
        "flag_cool_star": is_cool & (rng.random(n) < 0.8),
        "flag_non_stellar": lamost_class == "QSO",
    }
    any_rule = np.logical_or.reduce(list(flags.values()))
    columns = {name: values.astype(np.int16) for name, values in flags.items()}
    columns["final_sample"] = (~any_rule & np.isfinite(teff)).astype(np.int16)
    columns["bp_rp0"] = np.where(is_cool, 0.7, -0.1).astype(np.float32)
    columns["teff_cool"] = teff_cool.astype(np.float32)
    columns["fit_component"] = (teff > 8000).astype(np.int8)
    columns["class"] = lamost_class
    columns["subclass"] = subclass
    return columns, teff, population


def test_the_final_sample_figures(tmp_path: Path) -> None:
    columns, teff, _ = survey_like()
    cube = build_cube(tmp_path / "cube.zarr", columns, teff)
    for path in (
        plot_teff_against_class(cube, tmp_path / "teff_vs_class.png"),
        plot_final_sample_rules(cube, tmp_path / "final_sample_rules.png"),
    ):
        _assert_real_png(path)
    # a cube without the step: the figures say what is missing
    old = build_cube(tmp_path / "old.zarr", {"flag_chi2ratio": np.zeros(4, np.int16)}, np.full(4, 9000.0))
    with pytest.raises(FileNotFoundError, match="no final_sample"):
        plot_final_sample_rules(old, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="no final_sample, subclass yet"):
        plot_teff_against_class(old, tmp_path / "y.png")


def test_the_report_shows_the_final_sample_and_what_it_keeps_of_the_truth(tmp_path: Path) -> None:
    columns, teff, population = survey_like()
    cube = build_cube(tmp_path / "cube.zarr", columns, teff)
    n = teff.size
    truth = tmp_path / "mock"
    truth.mkdir()
    specid = read_column(open_group(cube), "specid").astype(str)
    invalid = np.zeros(n + 1, bool)
    invalid[-1] = True  # a file the ingest rejected: in the truth, not in the cube
    pd.DataFrame(
        {"specid": np.r_[specid, ["60000-MOCK-01-999"]], "population": [*population, "hot"], "invalid": invalid}
    ).to_parquet(truth / "truth.parquet")
    html = write_report(cube, tmp_path / "report", truth=truth).read_text()
    drawn = _drawn(html)
    assert "teff_vs_class.png" in drawn and "final_sample_rules.png" in drawn
    final = columns["final_sample"] == 1
    n_in = int(final.sum())
    assert f'{n_in:,}</div><div class="label">in the final sample' in html
    section = html[html.index('id="final-sample"') : html.index('id="emulator"')]
    assert f"<b>{n_in:,}</b> of {n:,} spectra ({100 * n_in / n:.1f} %) are in the final sample" in section
    for name in FINAL_SAMPLE_RULES:
        k = int(np.sum(columns[name] == 1))
        assert re.search(
            rf"<code>{name}</code></td><td class=\"small\">[^<]*</td><td class=\"num\">{k:,}</td>", section
        )
    components = (columns["fit_component"] == 0).sum(), (columns["fit_component"] == 1).sum()
    assert f"cool {components[0]:,}; hot {components[1]:,}." in section
    # against the truth: per population, and the sentence
    pop = np.array(population)
    hot, cool, qso = (pop == "hot"), (pop == "cool_contaminant"), (pop == "qso")
    assert f"cool contaminants ({cool.sum():,})" in section and f"QSOs ({qso.sum():,})" in section
    k = int(np.sum(final & cool))
    assert f"Contaminants in the final sample: {k:,} of {int((cool | qso).sum()):,}" in section
    assert f"cool contaminants {k:,} of {cool.sum():,}, QSOs 0 of {qso.sum():,}" in section
    lost = int(np.sum(~final & hot))
    assert f"hot stars removed: {lost:,} of {hot.sum():,} ({100 * lost / hot.sum():.1f} %)" in section
    row = section[section.index('<code>flag_cool_star</code></td><td class="num">') :].split("</tr>")[0]
    flagged = columns["flag_cool_star"] == 1
    expect = [int(np.sum(flagged & hot)), int(np.sum(flagged & cool)), 0]
    assert re.findall(r'<td class="num">([\d,]+) \(', row) == [f"{v:,}" for v in expect]
    # without the truth: no truth table; an older cube: "not computed yet" and no figure
    assert "Against the mock" not in write_report(cube, tmp_path / "plain").read_text().split('id="emulator"')[0]
    old = build_cube(tmp_path / "old.zarr", {"flag_chi2ratio": np.zeros(4, np.int16)})
    html = write_report(old, tmp_path / "old").read_text()
    section = html[html.index('id="final-sample"') : html.index('id="emulator"')]
    assert "Not computed yet (step final_sample)." in section and "not computed yet (step fit)" in section
    assert "teff_vs_class.png" not in _drawn(html)
