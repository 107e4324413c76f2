"""Catalog files streamed from the cube: Parquet, FITS and HATS (SPEC §11, §13). No science here.

:func:`write_catalog` maps a block function over row ranges of the cube on the Dask cluster: each task
reads its rows of the variables it needs, turns them into table columns (``block``, the science) and
writes one Parquet part. Then, reading one part at a time (memory: one part, whatever the number of rows):

- ``parquet``: the parts become the row groups of ``<name>.parquet``, with each column's unit and
  description in its field metadata and the producer, version and cube in the file's metadata;
- ``fits``: ``<name>.fits``, a primary HDU naming the producer, version and cube, and a binary table whose
  header is written first (its row count and string widths are known from the parts) and whose rows are
  appended part by part in FITS's big-endian record layout — units as TUNIT (one the FITS standard lacks,
  such as dex, opens the column's TCOMM description instead), descriptions as TCOMM;
- ``hats``: ``<name>_hats/``, HATS-partitioned Parquet made by ``hats-import`` from the parts on the same
  Dask client (``lsdb.open_catalog`` opens it).

A manifest (``.<name>.json``) records the key of the inputs: a later call with the same key and formats
finds the files in place and does nothing.

Every file is written beside its final name (``<file>.tmp``, a HATS catalog in ``.<name>-hats-new/``), synced
and then renamed over the old one, so a failure (a full disk) leaves the previous file whole and no temporary
file behind; the manifest is removed before and written after, so a catalog is up to date only when complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from survey_scale._version import __version__
from survey_scale.core.files import atomic_write_json, fsync_dir, fsync_file, fsync_tree
from survey_scale.store.cube import open_group, python_strings

log = logging.getLogger(__name__)

FORMATS = ("fits", "parquet", "hats")
PRODUCER = "survey_scale"


def read_rows(cube: str, variables: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows [start, stop) of the cube's ``variables`` that exist (strings as object arrays)."""
    root = open_group(cube)
    return {name: python_strings(root[name][start:stop]) for name in variables if name in root}


def _arrow_table(columns: Mapping[str, np.ndarray], meta: Mapping[str, Mapping[str, str]]) -> pa.Table:
    fields, arrays = [], []
    for name, values in columns.items():
        values = np.asarray(values)
        array = pa.array(values.astype(str).tolist(), pa.string()) if values.dtype.kind in "OUST" else pa.array(values)
        field_meta = {k: v for k, v in meta.get(name, {}).items() if v}
        fields.append(pa.field(name, array.type, metadata=field_meta or None))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_part(
    cube: str,
    variables: Sequence[str],
    start: int,
    stop: int,
    block: Callable[[dict[str, np.ndarray], Mapping[str, Any]], Mapping[str, np.ndarray]],
    params: Mapping[str, Any],
    meta: Mapping[str, Mapping[str, str]],
    path: str,
) -> dict[str, Any]:
    """Worker task: one Parquet part of the catalog; returns its row count and the longest string per column."""
    columns = block(read_rows(cube, variables, start, stop), params)
    table = _arrow_table(columns, meta)
    pq.write_table(table, path)
    # the longest UTF-8 string of each string column (the FITS column width), by pyarrow, not a Python loop
    widths = {
        field.name: int(pc.max(pc.binary_length(column)).as_py() or 1)
        for field, column in zip(table.schema, table.columns, strict=True)
        if pa.types.is_string(field.type)
    }
    return {"rows": table.num_rows, "widths": widths}


@contextlib.contextmanager
def _written_beside(path: Path) -> Iterator[Path]:
    """Yield ``<path>.tmp`` to write; on a normal exit it is synced and renamed to ``path``, on an exception
    removed (the previous ``path`` stays as it was)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _swap_folder(new: Path, path: Path) -> None:
    """Put the complete folder ``new`` at ``path``: the old folder renamed aside first, deleted last."""
    fsync_tree(new)
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.rename(old, path)
        raise
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


# --- FITS ------------------------------------------------------------------------------------------------

_FITS_FORMATS = {"f4": "E", "f8": "D", "i1": "I", "i2": "I", "i4": "J", "i8": "K", "u1": "B", "b1": "L"}
_RECORD_TYPES = {"E": ">f4", "D": ">f8", "I": ">i2", "J": ">i4", "K": ">i8", "B": "u1", "L": "i1"}


def _fits_format(arrow_type: pa.DataType, width: int) -> str:
    if pa.types.is_string(arrow_type):
        return f"{max(width, 1)}A"
    code = np.dtype(arrow_type.to_pandas_dtype()).str[1:]
    if code not in _FITS_FORMATS:
        raise TypeError(f"no FITS column format for {arrow_type}")
    return _FITS_FORMATS[code]


def _fits_unit(unit: str) -> bool:
    import astropy.units as u

    try:
        u.Unit(unit, format="fits")
    except ValueError:
        return False
    return True


def write_fits(
    path: Path, parts: Sequence[Path], widths: Mapping[str, int], n_rows: int, header: Mapping[str, Any], name: str
) -> None:
    """The parts as one FITS binary table, streamed (see the module docstring)."""
    from astropy.io import fits

    schema = pq.read_schema(parts[0])
    columns, record, comments = [], [], []
    for field in schema:
        fmt = _fits_format(field.type, widths.get(field.name, 1))
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        unit, comment = meta.get("unit") or None, meta.get("description", "")
        if unit is not None and not _fits_unit(unit):
            unit, comment = None, f"[{unit}] {comment}".strip()  # e.g. dex: not a FITS unit
        columns.append(fits.Column(name=field.name, format=fmt, unit=unit))
        record.append((field.name, f"S{fmt[:-1]}" if fmt.endswith("A") else _RECORD_TYPES[fmt]))
        comments.append(comment)
    table = fits.BinTableHDU.from_columns(columns, nrows=0, name=name.upper())
    table.header["NAXIS2"] = n_rows
    for k, comment in enumerate(comments, start=1):
        if comment:
            table.header[f"TCOMM{k}"] = comment[:68]
    primary = fits.PrimaryHDU()
    for key, value in header.items():
        primary.header[key] = value
        table.header[key] = value
    with _written_beside(path) as tmp, open(tmp, "wb") as f:
        f.write(primary.header.tostring().encode("ascii"))
        f.write(table.header.tostring().encode("ascii"))
        written = 0
        for part in parts:
            data = pq.read_table(part)
            rows = np.zeros(data.num_rows, dtype=record)
            for (col, dtype), column in zip(record, data.columns, strict=True):
                if dtype.startswith("S"):
                    rows[col] = column.cast(pa.binary()).to_numpy(zero_copy_only=False).astype(dtype)
                else:
                    rows[col] = column.to_numpy(zero_copy_only=False).astype(np.dtype(dtype).newbyteorder("="))
            f.write(rows.tobytes())
            written += rows.nbytes
        f.write(b"\0" * (-written % 2880))


# --- the whole catalog -----------------------------------------------------------------------------------


def write_catalog(
    engine: Any,
    name: str,
    variables: Sequence[str],
    block: Callable[[dict[str, np.ndarray], Mapping[str, Any]], Mapping[str, np.ndarray]],
    params: Mapping[str, Any],
    out: Path,
    formats: Sequence[str],
    meta: Mapping[str, Mapping[str, str]],
    key: str,
    block_rows: int,
    hats: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write catalog ``name`` of the cube in ``formats`` to folder ``out``; see the module docstring.

    ``hats`` are extra arguments of hats-import's ``ImportArguments`` (``pixel_threshold``,
    ``highest_healpix_order``). Returns the path of each format's file (or folder). Skipped when ``out``'s
    manifest has ``key``.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown catalog format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"fits": out / f"{name}.fits", "parquet": out / f"{name}.parquet", "hats": out / f"{name}_hats"}
    paths = {f: paths[f] for f in FORMATS if f in formats}
    manifest_path = out / f".{name}.json"
    manifest = {"key": key, "formats": sorted(paths), "hats": dict(hats or {}), "code_version": __version__}
    if manifest_path.exists() and all(p.exists() for p in paths.values()):
        old = json.loads(manifest_path.read_text())
        if {k: old.get(k) for k in manifest} == manifest:
            log.info("export %s: up to date in %s", name, out)
            return paths
    manifest_path.unlink(missing_ok=True)
    parts_dir = out / f".{name}-parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir()
    try:
        n = engine.n_spectra()
        ranges = [(a, min(a + block_rows, n)) for a in range(0, n, block_rows)]
        parts = [parts_dir / f"part-{k:05d}.parquet" for k in range(len(ranges))]
        items = [
            (str(engine.cube), tuple(variables), a, b, block, params, meta, str(p)) for (a, b), p in zip(ranges, parts)
        ]
        results = engine.map_tasks(f"export {name}", write_part, items, sizes=[b - a for a, b in ranges], unit="row")
        n_rows = sum(r["rows"] for r in results)
        widths: dict[str, int] = {}
        for r in results:
            for col, w in r["widths"].items():
                widths[col] = max(widths.get(col, 1), w)
        file_meta = {"producer": PRODUCER, "version": __version__, "cube": str(Path(engine.cube).resolve()), "key": key}
        if "parquet" in paths:
            schema = pq.read_schema(parts[0]).with_metadata({PRODUCER: json.dumps(file_meta)})
            with _written_beside(paths["parquet"]) as tmp, pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part).cast(schema))
        if "fits" in paths:
            header = {
                "CREATOR": (PRODUCER, "software that wrote this file"),
                "SS_VERS": (__version__, "survey_scale version"),
                "SS_CUBE": (Path(engine.cube).name, "the cube the catalog was exported from"),
                "SS_KEY": (key[:60], "key of the cube inputs of the catalog"),
                "CATALOG": (name, "SPEC 13 catalog"),
            }
            write_fits(paths["fits"], parts, widths, n_rows, header, name)
        if "hats" in paths:
            _write_hats(engine, name, parts, paths["hats"], out, n_rows, hats or {})
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    atomic_write_json(manifest_path, {**manifest, "rows": n_rows, "metadata": file_meta})
    log.info("export %s: %d rows, %s in %s", name, n_rows, ", ".join(sorted(paths)), out)
    return paths


def _write_hats(
    engine: Any, name: str, parts: Sequence[Path], path: Path, out: Path, n_rows: int, options: Mapping[str, Any]
) -> None:
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline_with_client

    # built in a folder of its own under its final name (hats-import records the name), then swapped in
    new = out / f".{name}-hats-new"
    tmp = out / f".{name}-hats-tmp"
    for folder in (new, tmp):
        shutil.rmtree(folder, ignore_errors=True)
    new.mkdir()
    args = ImportArguments(
        output_path=new,
        output_artifact_name=path.name,
        input_file_list=[str(p) for p in parts],
        file_reader="parquet",
        ra_column="ra",
        dec_column="dec",
        sort_columns="specid",
        expected_total_rows=n_rows,
        tmp_dir=tmp,
        resume=False,
        progress_bar=False,
        **options,
    )
    try:
        pipeline_with_client(args, engine.client)
        _swap_folder(new / path.name, path)
    finally:
        for folder in (new, tmp):
            shutil.rmtree(folder, ignore_errors=True)
