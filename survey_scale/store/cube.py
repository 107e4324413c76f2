"""The cube: one Zarr (format 3) store with every spectrum and every per-spectrum result (SPEC §1).

Layout
------
- dims ``spec`` (one entry per spectrum = per visit) and ``wave`` (the common grid of
  :mod:`survey_scale.core.wavelength`, a coordinate in Å), plus small extra dims added by later stages
  (``label``, ``label2``, ``pc``).
- spectra variables (``spec``, ``wave``): ``flux`` and ``ivar`` (float32), ``pixmask`` (uint8 bit flags,
  :data:`PIXMASK_BITS`); later stages add ``norm_flux``, ``norm_ivar``, ``pca_flux``, ``model_flux``.
  Each is stored as Zarr shards of ``cube.shard_spectra`` spectra (one Dask chunk = one shard, ~125 MB of
  float32 for 8,192 spectra) holding inner chunks of ``cube.inner_chunk_spectra`` spectra, compressed with
  Blosc-zstd and bit-shuffle.
- per-spectrum variables (``spec``): identifiers, observation, cross-match and results. Each is one
  chunk: it is rewritten whole by the runner's consolidation step, so reading a column is one request.
- ``rejects`` (a sub-group): every input or spectrum that could not be ingested or processed, with the
  stage and a reason (``survey_scale.cube.open_rejects``).
- ``_survey_scale`` (a sub-group): bookkeeping, owned by :mod:`survey_scale.store.bookkeeping` — done
  markers, per-chunk results, models, ingest plans, logs, the writer lock. Users never need it.

The grid is recorded in the root attributes and checked on every open; a store with another grid is
refused. Every metadata change ends with a re-consolidation, so plain ``xarray.open_zarr(path)`` always
sees the current layout.

Replacing a variable (write, then swap)
---------------------------------------
A whole variable or group that is rewritten — a per-spectrum column (:func:`write_column`), the ``rejects``
group (:func:`write_rejects`), a spectra array whose shape changed — is never deleted before its new version
exists: :func:`replacing` builds the new one in ``_survey_scale/swap/new-<name>/`` (a Zarr array or group is a
folder of the LocalStore), syncs it, moves the old folder aside to ``_survey_scale/swap/old-<name>``, renames the
new one into place, and only then deletes the old one. A failure while writing (a full disk) keeps the old
version and removes the staged one; a kill between the two renames is repaired by :func:`recover_swaps` (the
old version is put back; the interrupted step rewrites it). A new cube is built the same way
(:func:`create_cube`): in the swap folder, then moved in, its root ``zarr.json`` last, so a folder is a cube
only once its creation is complete. A file system full while a run writes gives :class:`CubeFullError`
(:func:`named_when_full`): a typed error naming the cube; finished results are kept.

Reading while a run writes (one writer at a time holds the lock; readers take none): a reader sees the
layout of the last consolidation. Every spectra shard file is replaced atomically, so a shard read gives
its rows either from before or from after the stage that is rewriting them, never a torn mix; rows of a
stage still running can be at their fill value (NaN) until their shard is written. A per-spectrum column
is rewritten whole when a stage consolidates (written beside, then swapped in by two renames), and a read that
falls between those renames fails or sees fill values: read it again, or read after the run.
``ds.attrs["stages"]`` says which stages have finished.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.storage import LocalStore

from survey_scale._version import __version__
from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import fsync_dir, fsync_file, fsync_tree
from survey_scale.core.wavelength import N_WAVE, PIXMASK_BITS, check_grid_attrs, grid_attrs, wavelength_grid
from survey_scale.store.settings import CubeConfig

META_GROUP = "_survey_scale"
SWAP_DIR = "swap"
"""The folder of ``_survey_scale/`` where replacements are staged (``new-<name>``) and old versions wait for
their deletion (``old-<name>``)."""
REJECTS_GROUP = "rejects"
SPECTRA_VARS = ("flux", "ivar", "pixmask")

REJECT_COLUMNS = ("stage", "source", "specid", "code", "reason", "batch")


class CubeError(SurveyScaleError, ValueError):
    """The store is not a survey_scale cube, or not one this code can use."""


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""``errno`` values of a full file system: no space left, or the user's quota exceeded."""


class CubeFullError(SurveyScaleError, OSError):
    """The file system holding the cube is full (``ENOSPC``) or over quota (``EDQUOT``).

    Nothing finished is lost: a chunk is marked done only once its results are written and synced, and a
    replaced variable keeps its old version until the new one is complete. Free some space and run the command
    again: it resumes. An ``OSError`` (``errno``, ``filename`` = the cube), so code that handles a full disk
    by its ``errno`` keeps working; :meth:`of` makes one from the error that the write raised.
    """

    def __init__(self, code: int, strerror: str, filename: str | None = None) -> None:  # OSError's: it pickles
        super().__init__(code, strerror, filename)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"

    @classmethod
    def of(cls, cube: str | Path, doing: str, exc: OSError) -> CubeFullError:
        """The error of a full file system met while ``doing`` (e.g. "writing rows 0:32 of stage ingest")."""
        what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        at = f" at {exc.filename}" if exc.filename else ""
        return cls(
            exc.errno,
            f"{what} while {doing}{at}; every finished result is kept: free some space, then run the command "
            "again to resume",
            str(cube),
        )


@contextlib.contextmanager
def named_when_full(cube: str | Path, doing: str) -> Iterator[None]:
    """Turn an ``OSError`` of a full file system raised inside into a :class:`CubeFullError` naming ``cube``
    and what was being done; any other error passes unchanged."""
    try:
        yield
    except CubeFullError:
        raise
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise CubeFullError.of(cube, doing, exc) from exc
        raise


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    # Bookkeeping folders under _survey_scale are plain files, not Zarr nodes; zarr warns when it walks
    # them, and consolidated metadata for format 3 is flagged as not yet in the spec. Both are expected.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def spectra_codec(cname: str = "zstd", clevel: int = 3, shuffle: str = "bitshuffle", typesize: int = 4) -> BloscCodec:
    """The Blosc codec for spectra variables."""
    return BloscCodec(cname=cname, clevel=clevel, shuffle=BloscShuffle[shuffle], typesize=typesize)


def create_cube(path: str | Path, config: CubeConfig) -> zarr.Group:
    """Create an empty cube (zero spectra) with the common grid and the spectra variables.

    ``path`` may be missing, an empty folder, or a folder holding only the bookkeeping folder
    ``_survey_scale/`` (the writer lock is taken there before the cube is created: it is kept) and what an
    interrupted creation left. The cube is built in ``_survey_scale/swap/new-cube`` and moved in, its root
    ``zarr.json`` last: a kill or a full disk during the creation leaves no cube (no ``zarr.json``), and the next
    creation starts again. Nothing is ever written with Zarr's overwriting mode ``"w"``.

    Raises
    ------
    CubeError
        If ``path`` holds a cube already, or anything else than the above.
    """
    path = Path(path)
    if (path / "zarr.json").exists():
        raise CubeError(f"{path}: cannot create a cube here: a Zarr store (zarr.json) exists already")
    leftovers = _creation_leftovers(path)
    staging = path / META_GROUP / SWAP_DIR / "new-cube"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        with named_when_full(path, "creating the cube"):
            _build_cube(staging, config)
            consolidate(staging)
            fsync_tree(staging)
            for leftover in leftovers:  # arrays an interrupted creation moved in (no root zarr.json: no cube yet)
                shutil.rmtree(leftover)
            for child in sorted(staging.iterdir()):
                if child.name not in ("zarr.json", META_GROUP):
                    os.rename(child, path / child.name)
            os.replace(staging / META_GROUP / "zarr.json", path / META_GROUP / "zarr.json")
            fsync_dir(path / META_GROUP)
            fsync_dir(path)
            os.replace(staging / "zarr.json", path / "zarr.json")  # last: now the folder is a cube
            fsync_dir(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with _quiet_zarr():
        return zarr.open_group(str(path), mode="r+", zarr_format=3, use_consolidated=False)


CUBE_NODES = ("wave", *SPECTRA_VARS)
"""The nodes a new cube holds besides the bookkeeping group (:func:`create_cube`)."""


def _creation_leftovers(path: Path) -> list[Path]:
    """What may be in ``path`` before a cube is created there (no root ``zarr.json``): ``_survey_scale/`` (the
    lock, an interrupted creation's staging) and arrays of :data:`CUBE_NODES` that an interrupted creation
    moved in (returned: they are replaced). Anything else is refused."""
    if not path.exists():
        return []
    if not path.is_dir():
        raise CubeError(f"{path}: cannot create a cube here: it is a file, not a folder")
    leftovers, other = [], []
    for child in sorted(path.iterdir()):
        if child.name == META_GROUP and child.is_dir():
            continue
        if child.name in CUBE_NODES and (child / "zarr.json").is_file():
            leftovers.append(child)
        else:
            other.append(child.name)
    if other:
        raise CubeError(
            f"{path}: cannot create a cube here: the folder exists and is not empty ({', '.join(other[:5])}"
            + (", ..." if len(other) > 5 else "")
            + ")"
        )
    return leftovers


def _build_cube(path: Path, config: CubeConfig) -> None:
    """The new cube's nodes in the empty folder ``path`` (then moved in by :func:`create_cube`)."""
    with _quiet_zarr():
        root = zarr.open_group(str(path), mode="w-", zarr_format=3)
        root.attrs.update(
            {
                **grid_attrs(),
                "title": "survey_scale cube of LAMOST low-resolution spectra",
                "survey_scale_version": __version__,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "shard_spectra": config.shard_spectra,
                "inner_chunk_spectra": config.inner_chunk_spectra,
                "compression": config.compression.model_dump(),
                "stages": {},
            }
        )
        wave = root.create_array(
            "wave", shape=(N_WAVE,), dtype="f8", chunks=(N_WAVE,), dimension_names=("wave",), fill_value=np.nan
        )
        wave[:] = wavelength_grid()
        wave.attrs.update({"units": "Angstrom", "long_name": "vacuum rest-frame wavelength"})
        for name, dtype, attrs in (
            ("flux", "f4", {"units": "LAMOST relative flux", "long_name": "flux on the common grid"}),
            ("ivar", "f4", {"units": "flux**-2", "long_name": "inverse variance of flux"}),
            (
                "pixmask",
                "u1",
                {
                    "long_name": "pixel bit mask",
                    "flag_masks": list(PIXMASK_BITS.values()),
                    "flag_meanings": " ".join(PIXMASK_BITS),
                },
            ),
        ):
            create_spectra_array(root, name, dtype, config, attrs)
        root.create_group(META_GROUP).attrs["description"] = "survey_scale bookkeeping (markers, plans, lock)"


def create_spectra_array(
    root: zarr.Group,
    name: str,
    dtype: str,
    config: CubeConfig | Mapping[str, Any],
    attrs: Mapping[str, Any],
    extra_dims: tuple[tuple[str, int], ...] = (("wave", N_WAVE),),
    n_spec: int | None = None,
) -> zarr.Array:
    """Create a (spec, ...) array sharded along ``spec`` (SPEC §1 chunking).

    A (spec, wave) array is sharded: one shard = ``shard_spectra`` spectra, inner chunks of
    ``inner_chunk_spectra``. Arrays with small trailing dims (labels, covariances, PCA coefficients) use plain
    chunks of ``shard_spectra`` spectra (a few MB each).
    """
    if isinstance(config, CubeConfig):
        shard, inner, comp = config.shard_spectra, config.inner_chunk_spectra, config.compression.model_dump()
    else:
        shard, inner, comp = config["shard_spectra"], config["inner_chunk_spectra"], config["compression"]
    n = n_spec if n_spec is not None else spec_length(root)
    tail = tuple(size for _, size in extra_dims)
    itemsize = np.dtype(dtype).itemsize
    codec = spectra_codec(comp["cname"], comp["clevel"], comp["shuffle"], itemsize)
    fill = np.nan if np.dtype(dtype).kind == "f" else 0
    sharded = any(d == "wave" for d, _ in extra_dims)
    array = root.create_array(
        name,
        shape=(n, *tail),
        dtype=dtype,
        chunks=(inner if sharded else shard, *tail),
        shards=(shard, *tail) if sharded else None,
        compressors=[codec],
        dimension_names=("spec", *(d for d, _ in extra_dims)),
        fill_value=fill,
    )
    array.attrs.update(dict(attrs))
    return array


# --- replacing a node: write, then swap ------------------------------------------------------------------


def _swap_folder(cube: Path) -> Path:
    return cube / META_GROUP / SWAP_DIR


@contextlib.contextmanager
def replacing(cube: str | Path, name: str) -> Iterator[zarr.Group]:
    """Replace the root node ``name`` of the cube (an array or a group) by one built beside it.

    Yields a staging group (a standalone Zarr group in ``_survey_scale/swap/new-<name>/``) in which the caller
    creates the new node ``name``; on a normal exit it is synced and swapped in (see the module docstring:
    the old folder aside, the new one renamed into place, the old one deleted). On an exception the staged
    node is deleted and the old one kept. The caller holds the writer lock and re-consolidates afterwards.
    """
    cube = Path(cube)
    staging = _swap_folder(cube) / f"new-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_zarr():
            group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
        yield group
        if not (staging / name).is_dir():
            raise CubeError(f"{cube}: nothing named {name!r} was written to replace the cube's {name!r}")
        _swap_in(cube, staging / name, name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(cube: Path, new: Path, name: str) -> None:
    """Rename the complete folder ``new`` to ``<cube>/<name>``: the old one aside first, deleted last."""
    target, old = cube / name, _swap_folder(cube) / f"old-{name}"
    _recover_one(cube, name)
    fsync_tree(new)
    if target.exists():
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old.exists() and not target.exists():
            os.rename(old, target)  # put the old version back
        raise
    fsync_dir(cube)
    fsync_dir(old.parent)
    shutil.rmtree(old, ignore_errors=True)


def _recover_one(cube: Path, name: str) -> None:
    old = _swap_folder(cube) / f"old-{name}"
    if not old.exists():
        return
    if (cube / name).exists():
        shutil.rmtree(old)  # the swap finished; only the deletion of the old version was left
    else:
        os.rename(old, cube / name)  # killed between the two renames: the old version comes back
        fsync_dir(cube)


def recover_swaps(cube: str | Path) -> list[str]:
    """Repair what a killed replacement left (the writer holding the lock calls it before writing): an old
    version moved aside whose new one never arrived is put back, a finished swap's old version and a staged
    version that was never swapped in are deleted. Returns the names put back."""
    cube = Path(cube)
    folder = _swap_folder(cube)
    if not folder.is_dir():
        return []
    restored = []
    for old in sorted(folder.glob("old-*")):
        name = old.name[4:]
        if not (cube / name).exists():
            restored.append(name)
        _recover_one(cube, name)
    for new in sorted(folder.glob("new-*")):
        shutil.rmtree(new, ignore_errors=True)
    return restored


def _group_folder(root: zarr.Group) -> Path | None:
    """The folder of a cube's root group on a local store, else None."""
    store = root.store
    if isinstance(store, LocalStore) and root.path in ("", "/"):
        return Path(store.root)
    return None


def is_url(path: str | Path) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://bucket/cube.zarr``, ``file:///...``), not a local path."""
    return "://" in str(path)


def open_group(path: str | Path, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> zarr.Group:
    """Open a cube's root Zarr group after checking that it is a cube on the common grid.

    ``path`` is a folder, or for reading (``mode="r"``) also an fsspec URL (object storage such as
    ``s3://``, ``gs://``, ``https://``; ``storage_options`` go to fsspec). Writing needs a POSIX file
    system, local or shared (NFS, Lustre, GPFS): the runner's atomic renames, done markers and writer lock
    rely on it (``deploy/README.md``, "Storage").

    Raises
    ------
    CubeError
        If there is no cube at ``path``, or a URL is opened for writing.
    survey_scale.core.wavelength.GridMismatchError
        If the store records another wavelength grid.
    """
    if is_url(path):
        if mode != "r":
            raise CubeError(
                f"{path}: cubes are written on a POSIX file system (local or shared); an fsspec URL is read-only "
                "here — run the pipeline on a shared file system and copy the finished cube to object storage"
            )
        try:
            with _quiet_zarr():
                root = zarr.open_group(
                    str(path), mode="r", zarr_format=3, use_consolidated=False, storage_options=storage_options
                )
        except FileNotFoundError:
            raise CubeError(f"{path}: no survey_scale cube here (no zarr.json)") from None
    else:
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise CubeError(f"{path}: no survey_scale cube here (no zarr.json); create one with `survey-scale ingest`")
        with _quiet_zarr():
            root = zarr.open_group(str(path), mode=mode, zarr_format=3, use_consolidated=False)
    check_grid_attrs(root.attrs, str(path))
    if "wave" not in root or root["wave"].shape != (N_WAVE,):
        raise CubeError(f"{path}: the cube has no 'wave' coordinate of {N_WAVE} pixels")
    return root


def spec_length(root: zarr.Group) -> int:
    """Number of spectra in the cube (length of the ``spec`` dim of ``flux``)."""
    return int(root["flux"].shape[0]) if "flux" in root else 0


def shard_spectra(root: zarr.Group) -> int:
    """Spectra per shard (= per Dask chunk) of this cube."""
    return int(root.attrs["shard_spectra"])


def spec_arrays(root: zarr.Group) -> list[zarr.Array]:
    """All arrays of the root group whose first dimension is ``spec``."""
    return [a for _, a in root.arrays() if (a.metadata.dimension_names or (None,))[0] == "spec"]


def resize_spec(path: str | Path, n: int) -> None:
    """Set the length of the ``spec`` dim of every per-spectrum array to ``n`` (then re-consolidate).

    Growing keeps the data and leaves the new rows at the fill value (NaN, 0 or "") until a stage writes
    them; this is the allocation step before region writes.
    """
    with named_when_full(path, f"resizing the cube to {n} spectra"):
        root = open_group(path, mode="r+")
        for array in spec_arrays(root):
            if array.shape[0] != n:
                array.resize((n, *array.shape[1:]))
        consolidate(path)


def write_column(root: zarr.Group, name: str, values: np.ndarray, attrs: Mapping[str, Any]) -> None:
    """(Re)write a whole per-spectrum variable as one chunk.

    Strings are stored as variable-length UTF-8; the fill value is NaN for floats, −1 for signed and 0 for
    unsigned integers, and "" for strings. An existing variable is replaced by write-then-swap
    (:func:`replacing`): a failure while writing keeps it whole. The caller re-consolidates.
    """
    values = np.asarray(values)
    folder = _group_folder(root)
    if folder is None:  # not a cube's root on a local folder (a test's memory store): in place
        if name in root:
            del root[name]
        _create_column(root, name, values, attrs)
        return
    with named_when_full(folder, f"writing {name}"), replacing(folder, name) as staging:
        _create_column(staging, name, values, attrs)


def _create_column(root: zarr.Group, name: str, values: np.ndarray, attrs: Mapping[str, Any]) -> None:
    n = values.shape[0]
    if values.dtype.kind in "USO":
        dtype, fill, values = str, "", values.astype(object)
    elif values.dtype.kind == "f":
        dtype, fill = values.dtype, np.nan
    elif values.dtype.kind == "b":
        dtype, fill = values.dtype, False
    elif values.dtype.kind == "u":
        dtype, fill = values.dtype, 0
    else:
        dtype, fill = values.dtype, -1
    array = root.create_array(
        name,
        shape=(n,),
        dtype=dtype,
        chunks=(max(n, 1),),
        dimension_names=("spec",),
        fill_value=fill,
        attributes=dict(attrs),
    )
    if n:
        array[:] = values


def python_strings(values: np.ndarray) -> np.ndarray:
    """``values`` with any string dtype (Zarr's variable-length ``StringDType`` included) as an object array
    of ``str``, the one form of strings the stages and reductions see; other dtypes unchanged."""
    values = np.asarray(values)
    return values.astype(object) if values.dtype.kind in "TUSO" else values


def read_column(root: zarr.Group, name: str) -> np.ndarray:
    """A whole per-spectrum variable as numpy (strings as an object array of ``str``)."""
    return python_strings(root[name][:])


def consolidate(path: str | Path) -> None:
    """Re-write the store's consolidated metadata (after any change of arrays or attributes), synced: Zarr
    replaces the root ``zarr.json`` atomically, and the file and its folder are flushed after it."""
    with named_when_full(path, "consolidating the metadata"):
        with _quiet_zarr():
            zarr.consolidate_metadata(str(path))
        if not is_url(path):
            fsync_file(Path(path) / "zarr.json")
            fsync_dir(path)


def open_cube(
    path: str | Path,
    *,
    chunks: Mapping[str, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Open a cube as a lazy, Dask-backed :class:`xarray.Dataset` (SPEC §12).

    Parameters
    ----------
    path
        The cube's Zarr store: a folder, or an fsspec URL of a copy on object storage (``s3://...``).
    chunks
        Dask chunks; default one chunk per shard along ``spec`` (and the whole ``wave`` axis).
    storage_options
        For a URL: fsspec options (credentials, endpoint), e.g. ``{"anon": True}``.

    Returns
    -------
    xarray.Dataset
        Dims ``spec``, ``wave`` (and ``label``, ... once later stages ran); per-spectrum metadata and
        results are data variables; ``wave`` is the wavelength coordinate in Å.

    Examples
    --------
    >>> ds = ss.open_cube("work/cube.zarr")
    >>> visits = ds.isel(spec=np.flatnonzero(ds.star_id.values == "S0661558+323730"))
    >>> dr9 = ds.where(ds.release == "DR9", drop=True)
    """
    root = open_group(path, storage_options=storage_options)
    options = {"consolidated": True, "storage_options": dict(storage_options or {}) if is_url(path) else None}
    if chunks is None:
        # Spectra variables: one Dask chunk per shard. Per-spectrum variables: their one stored chunk.
        by_shard = {name for name, a in root.arrays() if "wave" in (a.metadata.dimension_names or ())[1:]}
        others = {name for name, _ in root.arrays()} - by_shard - {"wave"}
        with _quiet_zarr():
            spectra = xr.open_zarr(
                str(path), chunks={"spec": shard_spectra(root)}, drop_variables=sorted(others), **options
            )
            rest = xr.open_zarr(str(path), chunks={}, drop_variables=sorted(by_shard), **options)
        ds = xr.merge([spectra, rest], combine_attrs="override", compat="override", join="exact")
    else:
        with _quiet_zarr():
            ds = xr.open_zarr(str(path), chunks=dict(chunks), **options)
    # Variable-length strings decode as numpy's StringDType, which many tools (``astype(str)``, pandas
    # < 3) do not take yet; object arrays of str work everywhere.
    for name, var in ds.variables.items():
        if var.dtype.kind == "T":
            ds[name] = var.astype(object)
    return ds


def open_rejects(path: str | Path) -> pd.DataFrame:
    """Every input or spectrum that could not be ingested or processed, one row each.

    Columns: ``stage`` (``ingest``, ``normalize``, ...), ``source`` (the input file, or the specid),
    ``specid`` (when known), ``code`` (short reason for grouping), ``reason`` (what is wrong and what to do),
    ``batch`` (the ingest batch, or -1).
    """
    root = open_group(path)
    if REJECTS_GROUP not in root:
        return pd.DataFrame({c: pd.Series(dtype=int if c == "batch" else object) for c in REJECT_COLUMNS})
    group = root[REJECTS_GROUP]
    return pd.DataFrame({c: np.asarray(group[c][:]) if group[c].shape[0] else [] for c in REJECT_COLUMNS})


def write_rejects(path: str | Path, rejects: pd.DataFrame) -> None:
    """Replace the cube's rejects table with ``rejects`` (columns :data:`REJECT_COLUMNS`), by write-then-swap
    (:func:`replacing`): a failure while writing keeps the old table whole. The caller re-consolidates."""
    open_group(path, mode="r+")  # a cube on the common grid
    rejects = rejects.sort_values(["stage", "batch", "source"], kind="stable").reset_index(drop=True)
    with named_when_full(path, "writing the rejects table"), replacing(path, REJECTS_GROUP) as staging:
        group = staging.create_group(REJECTS_GROUP)
        group.attrs["description"] = "inputs and spectra that could not be ingested or processed (SPEC §1)"
        for col in REJECT_COLUMNS:
            values = rejects[col].to_numpy(dtype=np.int64 if col == "batch" else object)
            n = len(values)
            arr = group.create_array(
                col,
                shape=(n,),
                chunks=(max(n, 1),),
                dtype=np.int64 if col == "batch" else str,
                dimension_names=("reject",),
                fill_value=-1 if col == "batch" else "",
            )
            if n:
                arr[:] = values


def update_stage_attrs(path: str | Path, stage: str, provenance: Mapping[str, Any]) -> None:
    """Record a stage's provenance in the root attributes (``attrs['stages'][stage]``)."""
    root = open_group(path, mode="r+")
    stages = dict(root.attrs.get("stages", {}))
    stages[stage] = dict(provenance)
    with named_when_full(path, f"recording stage {stage}"):
        root.attrs["stages"] = stages
