"""A table kept as Parquet parts of a fixed number of rows, so that a task reads only the rows it needs.

Part k of a folder written by :func:`write_row_parts` (``part-NNNNNN.parquet``) holds rows k·m … (k+1)·m − 1,
m being the rows of part 0. :func:`read_row_parts` reads a row range from the one or two parts that hold it, at a
cost that does not grow with the table (the ingest plan of a release: SPEC §2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from survey_scale.core.files import atomic_write


def part_path(folder: Path, k: int) -> Path:
    """Part ``k`` of a row-parts folder."""
    return folder / f"part-{k:06d}.parquet"


def write_row_parts(
    folder: Path,
    table: pd.DataFrame,
    rows_per_part: int,
    write: Callable[[Path, Callable[[Path], Any]], Any] = atomic_write,
) -> None:
    """Write ``table`` into ``folder`` (created) as parts of ``rows_per_part`` rows; an empty table is one empty
    part, which keeps its columns. ``write(path, writer)`` writes one file (default :func:`atomic_write`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, max(len(table), 1), rows_per_part)):
        part = table.iloc[start : start + rows_per_part]
        write(part_path(folder, k), lambda tmp, part=part: part.to_parquet(tmp, index=False))


def read_row_parts(folder: Path, start: int, stop: int) -> pd.DataFrame:
    """Rows ``start:stop`` of a table written by :func:`write_row_parts`, read from the parts that hold them;
    the index is ``start … stop − 1``. ``folder`` may also be one Parquet file, read whole (a table written
    before it had parts)."""
    if folder.is_file():
        return pd.read_parquet(folder).iloc[start:stop]
    rows_per_part = max(pq.read_metadata(part_path(folder, 0)).num_rows, 1)
    first, last = start // rows_per_part, max(start, stop - 1) // rows_per_part
    parts = [pd.read_parquet(part_path(folder, k)) for k in range(first, last + 1)]
    offset = start - first * rows_per_part
    rows = pd.concat(parts, ignore_index=True).iloc[offset : offset + max(stop - start, 0)]
    return rows.set_axis(pd.RangeIndex(start, start + len(rows)))
