"""The deliberately invalid inputs of a mock release (SPEC §10, checked by the ingest of SPEC §2).

Which kinds there are (in the order ``n_invalid`` takes them), the reject the ingest should give each, those
:func:`survey_scale.io.read_lamost` itself refuses, and how they are placed: an extra visit of a random star
(its latest) carries each kind, in the layout and compression its damage needs. The damaged bytes are written
by :func:`survey_scale.mock.visit_files._write_visit`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

INVALID_KINDS: tuple[str, ...] = (
    "truncated_gz",
    "truncated_fits",
    "not_fits",
    "wrong_shape",
    "missing_column",
    "all_nan_flux",
    "negative_ivar",
    "wavelength_not_increasing",
    "header_out_of_range",
    "no_catalog_row",
    "catalog_row_without_file",
    "duplicate_specid",
)
"""The deliberately invalid inputs of a release, in the order ``n_invalid`` takes them."""

EXPECTED_REJECT: dict[str, str] = {
    # structural: the code survey_scale.io.read_lamost raises (LamostReadError.code)
    "truncated_gz": "truncated",
    "truncated_fits": "truncated",
    "not_fits": "not_fits",
    "wrong_shape": "wrong_shape",
    "missing_column": "missing_column",
    # content and bookkeeping: the reason the ingest should record (SPEC §2)
    "all_nan_flux": "all_nan_flux",
    "negative_ivar": "negative_ivar",
    "wavelength_not_increasing": "wavelength_not_increasing",
    "header_out_of_range": "header_out_of_range",
    "no_catalog_row": "no_catalog_row",
    "catalog_row_without_file": "catalog_row_without_file",
    "duplicate_specid": "duplicate_specid",
}
"""Reject code the ingest is expected to give for each invalid kind."""

STRUCTURAL_KINDS: frozenset[str] = frozenset(
    {"truncated_gz", "truncated_fits", "not_fits", "wrong_shape", "missing_column"}
)
"""Invalid kinds that :func:`survey_scale.io.read_lamost` itself refuses."""


_FORCED_LAYOUT: dict[str, tuple[str, bool | None]] = {
    "truncated_gz": ("coadd", True),
    "truncated_fits": ("image", False),
    "wrong_shape": ("image", None),
    "missing_column": ("coadd", None),
}
"""Layout and gzip (None: as drawn) of the kinds whose damage needs them."""


def _mark_invalid(visits: pd.DataFrame, stars: pd.DataFrame, extra_kinds: list[str], extra_rows: np.ndarray) -> None:
    """Each chosen star's latest visit becomes its invalid extra (``visits["invalid_kind"]``, in place)."""
    taken: set[int] = set()
    for kind, row in zip(extra_kinds, extra_rows, strict=True):
        sid = int(stars["star_index"].iloc[row])
        cand = visits.index[(visits["star_index"] == sid) & (visits["invalid_kind"] == "")]
        cand = [c for c in cand if c not in taken]
        chosen = max(cand, key=lambda c: (visits.at[c, "obs_mjd"], c))
        taken.add(chosen)
        visits.at[chosen, "invalid_kind"] = kind


def _force_layouts(visits: pd.DataFrame) -> None:
    """The layout and compression of the visits whose invalid kind needs them (:data:`_FORCED_LAYOUT`, in place)."""
    for kind, (layout, gz) in _FORCED_LAYOUT.items():
        sel = visits["invalid_kind"] == kind
        visits.loc[sel, "layout"] = layout
        if gz is not None:
            visits.loc[sel, "gzip"] = gz
