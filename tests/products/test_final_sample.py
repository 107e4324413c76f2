"""P2 §5.1's final sample in ``survey-scale info`` (issue 23): counts per rule, the final sample, the spectra per
emulator component — on small cubes written here column by column (no pipeline run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from survey_scale.config import CubeConfig
from survey_scale.products.info import FINAL_SAMPLE_RULES, cube_info, final_sample_counts, final_sample_lines
from survey_scale.store.cube import (
    consolidate,
    create_cube,
    create_spectra_array,
    open_group,
    resize_spec,
    write_column,
)

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


def test_the_rules_are_the_final_sample_steps() -> None:
    from survey_scale.science.final_sample import RULES

    assert FINAL_SAMPLE_RULES == RULES


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
