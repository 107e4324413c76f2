"""The binary recall table of the report (issue 27): cells by true brightening × parallax precision."""

from __future__ import annotations

import numpy as np
import pandas as pd

from survey_scale.products.figures.truth import BRIGHTENING_BINS, PARALLAX_SNR_BINS, binary_recall


def test_recall_per_cell_counts_each_star_once_and_the_false_positives_of_precise_singles() -> None:
    rows = []
    # binaries brightened by 0.6 mag at parallax/error 30: 3 of 4 flagged; their second visits do not count
    for k in range(4):
        rows.append(dict(uniqflag=1, binary_flag=int(k < 3), binary=True, mks_true=0.0, mks_system=-0.6, plx=30.0))
        rows.append(dict(uniqflag=2, binary_flag=0, binary=True, mks_true=0.0, mks_system=-0.6, plx=30.0))
    # binaries brightened by 0.05 mag at parallax/error 7: none of 2 flagged; one without a flag (-9) left out
    rows += [dict(uniqflag=1, binary_flag=0, binary=True, mks_true=1.0, mks_system=0.95, plx=7.0)] * 2
    rows.append(dict(uniqflag=1, binary_flag=-9, binary=True, mks_true=1.0, mks_system=0.95, plx=7.0))
    # singles: 1 of 5 with parallax/error > 10 flagged; the flagged one at parallax/error 4 is not counted
    rows += [dict(uniqflag=1, binary_flag=int(k == 0), binary=False, mks_true=0.0, mks_system=0.0, plx=12.0)
             for k in range(5)]  # fmt: skip
    rows.append(dict(uniqflag=1, binary_flag=1, binary=False, mks_true=0.0, mks_system=0.0, plx=4.0))
    d = pd.DataFrame(rows)
    d["parallax_error"] = 0.1
    d["parallax_offset"] = 0.02
    d["parallax"] = d.pop("plx") * 0.1 - 0.02

    table, false = binary_recall(d)
    assert len(table) == (len(BRIGHTENING_BINS) - 1) * (len(PARALLAX_SNR_BINS) - 1)
    twins = table[(table.brightening_lo == 0.5) & (table.plx_snr_lo == 20.0)].iloc[0]
    assert (twins.n, twins.recall) == (4, 0.75)
    faint = table[(table.brightening_lo == 0.0) & (table.plx_snr_lo == 5.0)].iloc[0]
    assert (faint.n, faint.recall) == (2, 0.0)
    assert table["n"].sum() == 6 and np.isnan(table.loc[table.n == 0, "recall"]).all()
    assert false == {"rate": 0.2, "n_singles": 5, "n_flagged": 1}
