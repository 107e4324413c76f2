"""Reductions over rows of the cube on Dask: fold, map, or group by star (SPEC §11).

Each task reads only its rows (:func:`_block_task`, on a worker), so memory does not grow with the cube:
:func:`reduce_rows` folds the blocks' results pairwise as they finish (:func:`fold`), :func:`map_rows`
concatenates per-row outputs, :func:`reduce_by_star` gives each task the visits of whole stars
(:func:`star_groups`). ``params`` (a model, say) are sent to every worker once (:func:`broadcast`), not with
every task. :class:`~survey_scale.engine.runner.DaskEngine` offers them to the pipeline's steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, as_completed

from survey_scale.engine.contracts import RowBlock, StarBlock
from survey_scale.store.cube import open_group, python_strings

READ_CHUNKS = 16
"""Inner chunks whose rows :func:`_read_rows` selects at once. Zarr decodes every chunk a selection touches
before it assembles the result: rows scattered over a cube (a random training subset) touched every chunk of
it at once, ~15x the result's memory; 16 chunks of 128 spectra × 3,802 pixels are 31 MB decoded."""


def _read_rows(cube: str, variables: tuple[str, ...], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``variables`` at ``rows`` (any order), read :data:`READ_CHUNKS` inner chunks' rows at a time; strings as
    object arrays of str, as read_column gives them."""
    root = open_group(cube)
    order = np.argsort(rows, kind="stable")
    ascending = np.asarray(rows)[order]
    out = {}
    for name in variables:
        array = root[name]
        group = array.chunks[0] * READ_CHUNKS
        bounds = [0, *(np.flatnonzero(np.diff(ascending // group)) + 1), ascending.size]
        values = None
        for a, b in itertools.pairwise(bounds):
            part = array.get_orthogonal_selection((ascending[a:b],))
            if values is None:
                values = np.empty((ascending.size, *part.shape[1:]), dtype=part.dtype)
            values[order[a:b]] = part
        out[name] = python_strings(values)
    return out


def _block_task(cube: str, variables: tuple[str, ...], rows: np.ndarray, block: Callable[..., Any], *args: Any) -> Any:
    """Read ``variables`` at ``rows`` and return ``block(data, *args)`` (runs on a worker)."""
    return block(_read_rows(cube, variables, rows), *args)


def row_blocks(rows: np.ndarray, block_rows: int) -> list[np.ndarray]:
    """``rows`` in groups of ``block_rows`` (one task each), in the order given."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError("no rows selected")
    return [rows[i : i + block_rows] for i in range(0, rows.size, block_rows)]


def star_groups(star_id: np.ndarray, block_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by star into blocks of about ``block_rows`` rows that never split a star.

    Returns ``(rows, star)`` per block: the rows in increasing order within each star, stars in order of
    their ``star_id``, and ``star`` numbering the block's stars 0..m-1. A block grows past ``block_rows``
    only to hold one star whole.
    """
    star_id = np.asarray(star_id).astype(str)
    order = np.argsort(star_id, kind="stable")
    sorted_ids = star_id[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], order.size]
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    first = 0
    while first < starts.size:
        last = first
        while last + 1 < starts.size and ends[last + 1] - starts[first] <= block_rows:
            last += 1
        rows = order[starts[first] : ends[last]]
        star = np.repeat(np.arange(last - first + 1), ends[first : last + 1] - starts[first : last + 1])
        blocks.append((rows, star))
        first = last + 1
    return blocks


def fold(client: Client, futures: Any, combine: Callable[[Any, Any], Any]) -> Any:
    """``combine`` the futures' results pairwise on the cluster, in the order they finish."""
    # Only as_completed holds the futures: a result is released as soon as it has been combined.
    finished = as_completed(futures)
    waiting = None
    for future in finished:
        if waiting is None:
            waiting = future
        else:
            finished.add(client.submit(combine, waiting, future, pure=False))
            waiting = None
    return waiting.result()


def broadcast(client: Client, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` scattered to every worker: name → future."""
    # One scatter per value: a scattered dict would use its keys as the futures' keys, and a later
    # broadcast of another model under the same name would find the old one.
    return {name: client.scatter(value, broadcast=True) for name, value in (params or {}).items()}


def reduce_rows(
    client: Client,
    cube: Path,
    variables: Sequence[str],
    rows: np.ndarray,
    block: RowBlock,
    combine: Callable[[Any, Any], Any],
    params: Mapping[str, Any] | None = None,
    block_rows: int = 2048,
) -> Any:
    """Map ``block`` over groups of the given rows and fold the results with ``combine`` as they finish.

    Each task reads only its rows of ``variables`` from the cube, and two finished results are combined
    as soon as both exist, so the number of partial results alive at once stays near the number of
    workers whatever the selection size. ``combine`` must be commutative and associative (a sum).
    ``params`` are sent to every worker once (a model, say), not with every task.
    """
    params = broadcast(client, params)
    futures = (
        client.submit(_block_task, str(cube), tuple(variables), group, block, params, pure=False)
        for group in row_blocks(rows, block_rows)
    )
    return fold(client, futures, combine)


def map_rows(
    client: Client,
    cube: Path,
    variables: Sequence[str],
    rows: np.ndarray,
    block: RowBlock,
    params: Mapping[str, Any] | None = None,
    block_rows: int = 2048,
) -> dict[str, np.ndarray]:
    """Map ``block`` over groups of the given rows and concatenate its (small) per-row outputs in row order."""
    params = broadcast(client, params)
    futures = [
        client.submit(_block_task, str(cube), tuple(variables), group, block, params, pure=False)
        for group in row_blocks(rows, block_rows)
    ]
    parts = client.gather(futures)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def reduce_by_star(
    client: Client,
    cube: Path,
    star_id: np.ndarray,
    variables: Sequence[str],
    block: StarBlock,
    params: Mapping[str, Any] | None = None,
    combine: Callable[[Any, Any], Any] | None = None,
    block_rows: int = 2048,
) -> Any:
    """``block(data, star, params)`` over all visits of each star, wherever their shards are.

    Rows are grouped by ``star_id`` (the cube's column; :func:`star_groups`); each task reads the rows of whole
    stars. With ``combine`` the task results are folded as in :func:`reduce_rows`; without, ``block`` returns
    per-row arrays (in the order of its rows), put back in the cube's row order: one array per output, length
    the number of spectra.
    """
    groups = star_groups(star_id, block_rows)
    params = broadcast(client, params)
    futures = [
        client.submit(_block_task, str(cube), tuple(variables), rows, block, star, params, pure=False)
        for rows, star in groups
    ]
    if combine is not None:
        return fold(client, futures, combine)
    parts = client.gather(futures)
    order = np.concatenate([rows for rows, _ in groups])
    out = {}
    for key in parts[0]:
        values = np.concatenate([part[key] for part in parts])
        full = np.empty((star_id.size, *values.shape[1:]), dtype=values.dtype)
        full[order] = values
        out[key] = full
    return out
