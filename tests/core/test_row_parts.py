"""Row-part tables: a row range is read from the parts that hold it only (the ingest plan, issue 25)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pytest

from survey_scale.core.row_parts import part_path, read_row_parts, write_row_parts


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"f{i}.fits" for i in range(n)], "rv": np.arange(n, dtype=np.float64) / 2})


@pytest.mark.parametrize("start, stop", [(0, 10), (1000, 1030), (1024, 2048), (2040, 2500), (2499, 2500), (7, 7)])
def test_any_row_range_reads_back_as_the_table_slice(tmp_path: Path, start: int, stop: int) -> None:
    table = _table(2500)
    write_row_parts(tmp_path / "plan", table, 1024)
    assert sorted(p.name for p in (tmp_path / "plan").iterdir()) == [f"part-00000{k}.parquet" for k in range(3)]
    pdt.assert_frame_equal(read_row_parts(tmp_path / "plan", start, stop), table.iloc[start:stop])


def test_a_range_reads_only_the_parts_that_hold_it(tmp_path: Path) -> None:
    table = _table(3000)
    write_row_parts(tmp_path / "plan", table, 1000)
    part_path(tmp_path / "plan", 2).write_bytes(b"not parquet")  # not opened for rows 1000:2000
    pdt.assert_frame_equal(read_row_parts(tmp_path / "plan", 1000, 2000), table.iloc[1000:2000])
    with pytest.raises(pa.ArrowInvalid):
        read_row_parts(tmp_path / "plan", 1990, 2010)


def test_a_table_shorter_than_a_part_and_an_empty_table(tmp_path: Path) -> None:
    write_row_parts(tmp_path / "short", _table(5), 1024)
    pdt.assert_frame_equal(read_row_parts(tmp_path / "short", 2, 5), _table(5).iloc[2:5])
    write_row_parts(tmp_path / "empty", _table(0), 1024)
    empty = read_row_parts(tmp_path / "empty", 0, 0)
    assert empty.empty and list(empty.columns) == ["path", "rv"]


def test_a_table_in_one_file_is_read_whole_and_sliced(tmp_path: Path) -> None:
    _table(30).to_parquet(tmp_path / "plan.parquet", index=False)
    pdt.assert_frame_equal(read_row_parts(tmp_path / "plan.parquet", 10, 20), _table(30).iloc[10:20])
