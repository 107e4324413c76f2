"""The labels catalog carries LAMOST's own classification and LASP parameters (SPEC §13): lasp_class,
lasp_subclass, lasp_teff, lasp_logg, right after star_id."""

from __future__ import annotations

import numpy as np

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.science.label_catalog import (
    COLUMN_DESCRIPTIONS,
    COLUMN_UNITS,
    CUBE_INPUTS,
    labels_catalog_block,
)

LASP = ["lasp_class", "lasp_subclass", "lasp_teff", "lasp_logg"]


def _block(n: int = 3) -> dict[str, np.ndarray]:
    return {
        "specid": np.array([f"S{i}" for i in range(n)], dtype=object),
        "star_id": np.array([f"star{i}" for i in range(n)], dtype=object),
        "labels": np.full((n, len(LABEL_NAMES)), 9000.0),
        "label_err": np.full((n, len(LABEL_NAMES)), 10.0),
        "fit_flags": np.zeros(n, np.uint8),
    }


def test_lasp_columns_follow_star_id_with_the_cube_values() -> None:
    block = {
        **_block(),
        "class": np.array(["STAR", "QSO", ""], dtype=object),
        "subclass": np.array(["A2V", "Non", ""], dtype=object),
        "lasp_teff": np.array([9100.0, np.nan, 5600.0], np.float32),
        "lasp_logg": np.array([4.0, np.nan, 4.4], np.float32),
    }
    cat = labels_catalog_block(block, {"label_names": list(LABEL_NAMES)})
    names = list(cat)
    assert names[names.index("star_id") + 1 : names.index("star_id") + 5] == LASP
    assert list(cat["lasp_class"]) == ["STAR", "QSO", ""] and list(cat["lasp_subclass"]) == ["A2V", "Non", ""]
    np.testing.assert_array_equal(cat["lasp_teff"], [9100.0, np.nan, 5600.0])
    np.testing.assert_allclose(cat["lasp_logg"], [4.0, np.nan, 4.4], rtol=1e-6)
    assert all(len(cat[name]) == 3 for name in LASP)


def test_lasp_columns_of_a_cube_without_them_are_empty_or_nan() -> None:
    cat = labels_catalog_block(_block(2), {"label_names": list(LABEL_NAMES)})
    assert list(cat["lasp_class"]) == ["", ""] and list(cat["lasp_subclass"]) == ["", ""]
    assert np.isnan(cat["lasp_teff"]).all() and np.isnan(cat["lasp_logg"]).all()
    assert cat["lasp_teff"].dtype.kind == "f" and cat["lasp_logg"].dtype.kind == "f"


def test_lasp_columns_are_read_described_and_have_units() -> None:
    assert {"class", "subclass", "lasp_teff", "lasp_logg"} <= set(CUBE_INPUTS)
    assert COLUMN_UNITS["lasp_teff"] == "K" and COLUMN_UNITS["lasp_logg"] == "dex"
    assert all(COLUMN_DESCRIPTIONS.get(name) for name in LASP)
