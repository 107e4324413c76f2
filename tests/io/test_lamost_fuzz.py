"""Fuzzing ``read_lamost`` with seeded mutations of real and mock LAMOST files (issue "Untrusted input never
stops a run", SPEC §2).

Every case must either return a usable :class:`LamostSpectrum` or raise :class:`LamostReadError` — nothing
else — and a compression bomb must be refused with code ``too_large``. The mutation code lives here only:
``benchmarks/fuzz_reader.py`` imports it for longer runs.

Cases are reproducible: case ``i`` of seed ``s`` draws everything from ``numpy.random.default_rng([s, i])``,
so a failure message's ``case=`` and ``seed=`` rebuild it with :func:`make_case`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import pickle
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from survey_scale.io.lamost import (
    BLOCK,
    CARD,
    COADD_COLUMNS,
    DEFAULT_MAX_BYTES,
    LamostReadError,
    LamostSpectrum,
    read_lamost,
)
from survey_scale.mock import spectra as spx
from survey_scale.mock import writer as wr
from tests.mock.conftest import MOCK_HEADER as MOCK_META

FUZZ_SEED = 20240611
"""The fixed seed of the CI cases."""

KINDS = (
    "bit_flip",
    "truncate",
    "card_edit",
    "card_insert",
    "block_dup",
    "block_zero",
    "nan_data",
    "gz_stream",
)
"""Mutation kinds; case ``i`` uses ``KINDS[i % len(KINDS)]``."""

N_CASES_PER_KIND = 400
"""CI cases per kind (3,200 in all)."""

# cards whose values steer the reader: the card edits hit these most of the time
STRUCTURAL_KEYS = (
    "SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS",
    "TTYPE1", "TTYPE2", "TTYPE3", "TFORM1", "TFORM2", "TFORM3", "TFORM4", "TFORM5", "TFORM6", "EXTNAME",
    "EXTEN0", "COEFF0", "COEFF1", "BZERO", "BSCALE", "THEAP",
)  # fmt: skip

GARBAGE_VALUES = (
    "'x", "9999999996", "-5", "7", "abc", "0", "-1", "1", "2", "5", "1e400", "-1e400", "nan", "NaN", "T", "F",
    "''", "'", "(1, 2)", "99999999999999999999999999999", "3.5", "-9999", "'3908E'", "'99999999999E'",
    "'1PE(3908)'", "'3908J'", "'E'", "'0E'", "'BINTABLE'", "'IMAGE'", "'COADD'", "'Flux Inverse Normalized'",
    "'Flux, Inverse'", "1.0E-4", "3.5682", "-32", "-64", "8", "16", "64", "999", "1000", "2880", "93792",
)  # fmt: skip
"""Values a card edit writes: the known crashers (``'x``, ``9999999996``, ``-5``, ``7``, ``abc``) and more."""

INSERTED_CARDS = (
    "BZERO   = 32768", "BSCALE  = 2.0", "BZERO   = 'abc'", "THEAP   = 5", "THEAP   = 999999999",
    "GROUPS  = T", "TDIM1   = '(99999,99999)'", "TDIM1   = '(2,1954)'", "TSCAL1  = 2.0", "TZERO1  = 1.5",
    "PCOUNT  = 1000000000", "PCOUNT  = 16", "GCOUNT  = 0", "GCOUNT  = 3", "EXTEND  = F", "EXTNAME = 'COADD'",
    "XTENSION= 'BINTABLE'", "XTENSION= 'IMAGE   '", "TFORM1  = '1PE(3908)'", "TFORM1  = '1QD(10)'",
    "TFORM1  = '3908J'", "TFORM2  = '3908I'", "TFORM1  = '31264X'", "NAXIS   = 3", "NAXIS3  = 2", "END",
    "CONTINUE  'abc'", "COEFF1  = abc", "COEFF0  = 'x'", "EXTEN0  = 'Flux Inverse Normalized Andmask Ormask'",
)  # fmt: skip
"""Whole cards a card insertion writes over an existing card."""

# big-endian non-finite patterns for the NaN-data mutation
_NONFINITE = {
    4: [b"\x7f\xc0\x00\x00", b"\x7f\x80\x00\x01", b"\xff\xc0\x00\x00", b"\x7f\x80\x00\x00", b"\xff\x80\x00\x00"],
    8: [
        b"\x7f\xf8\x00\x00\x00\x00\x00\x00",
        b"\x7f\xf0\x00\x00\x00\x00\x00\x01",
        b"\xff\xf8\x00\x00\x00\x00\x00\x00",
        b"\x7f\xf0\x00\x00\x00\x00\x00\x00",
        b"\xff\xf0\x00\x00\x00\x00\x00\x00",
    ],
}

ARRAYS = ("wavelength", "flux", "ivar", "andmask", "ormask")


# --- seeds -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A valid file to mutate: its decompressed bytes and where its headers and float data lie."""

    name: str
    data: bytes
    headers: tuple[tuple[int, int], ...]  # (start, end) of each header, END card included
    regions: tuple[tuple[int, int, int], ...]  # (start, n_bytes, itemsize) of each float data array


def make_seed(name: str, data: bytes) -> Seed:
    """Describe a valid FITS file (parsed once with astropy) for the mutations."""
    headers, regions = [], []
    with fits.open(io.BytesIO(data)) as hdul:
        for i, hdu in enumerate(hdul):
            info = hdul.fileinfo(i)
            headers.append((info["hdrLoc"], info["datLoc"]))
            if isinstance(hdu, fits.BinTableHDU):  # the float vector columns of the one-row table
                row = hdu.columns.dtype
                for column in row.names:
                    dtype, offset = row.fields[column][:2]
                    if dtype.base.kind == "f":
                        regions.append((info["datLoc"] + offset, dtype.itemsize, dtype.base.itemsize))
            elif hdu.header.get("NAXIS", 0) and hdu.header["BITPIX"] < 0:  # the float image, row by row
                itemsize = abs(hdu.header["BITPIX"]) // 8
                row_bytes = hdu.header["NAXIS1"] * itemsize
                for r in range(hdu.header["NAXIS2"]):
                    regions.append((info["datLoc"] + r * row_bytes, row_bytes, itemsize))
    return Seed(name, data, tuple(headers), tuple(regions))


def real_seeds(lamost_dir: Path) -> list[Seed]:
    """The real LAMOST files of ``lamost_dir``, decompressed."""
    seeds = []
    for path in sorted(lamost_dir.iterdir()):
        raw = path.read_bytes()
        seeds.append(make_seed(path.name, gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw))
    return seeds


def mock_seeds() -> list[Seed]:
    """Files written by :mod:`survey_scale.mock.writer`: a float32 and a float64 image, a COADD table."""
    rng = np.random.default_rng(0)
    n = spx.NATIVE_NPIX
    arrays = {
        "FLUX": rng.normal(100, 5, n).astype(np.float32),
        "IVAR": np.full(n, 0.04, np.float32),
        "WAVELENGTH": spx.native_wavelength().astype(np.float32),
        "ANDMASK": np.zeros(n, np.float32),
        "ORMASK": (rng.random(n) < 0.01).astype(np.float32) * 8,
        "NORMALIZATION": np.ones(n, np.float32),
    }
    image = wr.lamost_header_entries(MOCK_META, "image")
    coadd = wr.lamost_header_entries(MOCK_META, "coadd")
    rows64 = [arrays[name].astype(np.float64) for name in wr.IMAGE_ROWS]
    return [
        make_seed("mock_image_f32", wr.spectrum_bytes("image", image, arrays)),
        make_seed("mock_image_f64", wr.image_hdu_bytes(image, rows64, bitpix=-64)),
        make_seed("mock_coadd", wr.spectrum_bytes("coadd", coadd, arrays)),
    ]


# --- mutations -------------------------------------------------------------------------------------------


def _card_positions(seed: Seed, data: bytes, keys: Sequence[str] | None) -> list[int]:
    """Byte offsets of the header cards of ``seed`` (those named ``keys``, or all but END)."""
    wanted = None if keys is None else {k.encode() for k in keys}
    positions = []
    for start, end in seed.headers:
        for pos in range(start, min(end, len(data)) - CARD + 1, CARD):
            key = data[pos : pos + 8].rstrip()
            if key == b"END" or (wanted is not None and key not in wanted):
                continue
            positions.append(pos)
    return positions


def card_image(text: str) -> bytes:
    """An 80-byte card from ``text`` (``KEY = value``): cut or padded with blanks."""
    return text.encode("latin-1")[:CARD].ljust(CARD)


def set_card(data: bytes, key: str, value: str) -> bytes:
    """``data`` with the value of every ``key`` card replaced by the raw text ``value`` (tests use it too)."""
    out = bytearray(data)
    needle = f"{key:<8}".encode()
    found = False
    for pos in range(0, len(data) - CARD + 1, CARD):
        if data[pos : pos + 8] == needle and data[pos + 8 : pos + 10] == b"= ":
            out[pos : pos + CARD] = card_image(
                f"{key:<8}= {value:>20}" if not value.startswith("'") else f"{key:<8}= {value}"
            )
            found = True
    if not found:
        raise KeyError(key)
    return bytes(out)


def _random_text(rng: np.random.Generator, n: int) -> bytes:
    """Random bytes, mostly printable ASCII, sometimes not."""
    if rng.random() < 0.2:
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return rng.integers(32, 127, n, dtype=np.uint8).tobytes()


def _bit_flip(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    n = int(min(1 + rng.geometric(0.3), 64))
    in_header = rng.random() < 0.6  # header flips reach more code than flux flips
    spans = seed.headers if in_header else [(0, len(data))]
    for _ in range(n):
        start, end = spans[rng.integers(len(spans))]
        pos = int(rng.integers(start, end))
        out[pos] ^= 1 << int(rng.integers(8))
    return bytes(out), f"{n} bit flip(s) in {'headers' if in_header else 'the file'}"


def _truncate(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    if rng.random() < 0.4:  # near a block boundary, where the structure changes
        cut = int(BLOCK * rng.integers(0, len(data) // BLOCK + 1) + rng.integers(-CARD, CARD + 1))
    else:
        cut = int(rng.integers(0, len(data)))
    cut = min(max(cut, 0), len(data) - 1)
    return data[:cut], f"truncated at byte {cut} of {len(data)}"


def _card_edit(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    keys = STRUCTURAL_KEYS if rng.random() < 0.7 else None
    positions = _card_positions(seed, data, keys) or _card_positions(seed, data, None)
    out = bytearray(data)
    what = []
    for _ in range(1 if rng.random() < 0.8 else int(rng.integers(2, 5))):
        pos = positions[rng.integers(len(positions))]
        key = data[pos : pos + 8].decode("latin-1")
        roll = rng.random()
        if roll < 0.7:
            value = GARBAGE_VALUES[rng.integers(len(GARBAGE_VALUES))]
            text = f"{key}= {value}" if value.startswith("'") else f"{key}= {value:>20}"
            out[pos : pos + CARD] = card_image(text)
            what.append(f"{key.strip()} = {value}")
        elif roll < 0.85:  # random value field
            out[pos + 10 : pos + CARD] = _random_text(rng, CARD - 10)
            what.append(f"{key.strip()} = <random>")
        elif roll < 0.95:  # the value indicator or keyword damaged
            out[pos + int(rng.integers(0, 10))] = int(rng.integers(0, 256))
            what.append(f"{key.strip()} keyword/indicator byte")
        else:  # blanked: the card disappears
            out[pos : pos + CARD] = b" " * CARD
            what.append(f"{key.strip()} blanked")
    return bytes(out), "card edit: " + "; ".join(what)


def _card_insert(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    positions = _card_positions(seed, data, None)
    pos = positions[rng.integers(len(positions))]
    card = INSERTED_CARDS[rng.integers(len(INSERTED_CARDS))]
    out = bytearray(data)
    out[pos : pos + CARD] = card_image(card)
    return bytes(out), f"card {card!r} written over {data[pos : pos + 8].decode('latin-1').strip()!r}"


def _block_dup(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    n_blocks = -(-len(data) // BLOCK)
    i, j = int(rng.integers(n_blocks)), int(rng.integers(n_blocks + 1))
    block = data[i * BLOCK : (i + 1) * BLOCK]
    if rng.random() < 0.7:  # duplicated: inserted again at block j
        return data[: j * BLOCK] + block + data[j * BLOCK :], f"block {i} duplicated at block {j}"
    # moved: swapped with block j
    j = min(j, n_blocks - 1)
    blocks = [data[k * BLOCK : (k + 1) * BLOCK] for k in range(n_blocks)]
    blocks[i], blocks[j] = blocks[j], blocks[i]
    return b"".join(blocks), f"blocks {i} and {j} swapped"


def _block_zero(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    n_blocks = -(-len(data) // BLOCK)
    i = int(rng.integers(n_blocks))
    roll = rng.random()
    if roll < 0.2:
        return data[: i * BLOCK] + data[(i + 1) * BLOCK :], f"block {i} deleted"
    fill = b"\x00" if roll < 0.7 else b" "
    end = min((i + 1) * BLOCK, len(data))
    return data[: i * BLOCK] + fill * (end - i * BLOCK) + data[end:], f"block {i} filled with {fill!r}"


def _nan_data(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    start, n_bytes, itemsize = seed.regions[rng.integers(len(seed.regions))]
    n_items = n_bytes // itemsize
    pattern = _NONFINITE[itemsize][rng.integers(len(_NONFINITE[itemsize]))]
    roll = rng.random()
    if roll < 0.4:
        first, count = 0, n_items  # the whole array (a whole row or column)
    elif roll < 0.8:
        count = int(rng.integers(1, n_items + 1))
        first = int(rng.integers(0, n_items - count + 1))
    else:
        first, count = -1, int(rng.integers(1, 50))  # scattered pixels
    if first >= 0:
        out[start + first * itemsize : start + (first + count) * itemsize] = pattern * count
    else:
        for k in rng.integers(0, n_items, count):
            out[start + int(k) * itemsize : start + (int(k) + 1) * itemsize] = pattern
    return bytes(out), f"{count} value(s) set to {pattern.hex()} at {start}"


def _gzip(data: bytes, level: int = 1) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def _gz_stream(seed: Seed, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Compress (gzip, sometimes bzip2), then damage the compressed stream itself."""
    use_bz2 = rng.random() < 0.15
    packed = bz2.compress(data, 1) if use_bz2 else _gzip(data, int(rng.integers(1, 10)))
    name = "bz2" if use_bz2 else "gz"
    out = bytearray(packed)
    roll = rng.random()
    if roll < 0.35:
        n = int(min(1 + rng.geometric(0.4), 16))
        for _ in range(n):
            pos = int(rng.integers(0, 12)) if rng.random() < 0.2 else int(rng.integers(len(out)))
            out[pos] ^= 1 << int(rng.integers(8))
        return bytes(out), f"{name}: {n} bit flip(s)"
    if roll < 0.6:
        cut = int(rng.integers(1, len(out)))
        return bytes(out[:cut]), f"{name}: cut at {cut} of {len(out)}"
    if roll < 0.75:
        tail = [b"\x00" * int(rng.integers(1, 3000)), _random_text(rng, int(rng.integers(1, 300))), packed]
        pick = int(rng.integers(len(tail)))
        return bytes(out) + tail[pick], f"{name}: {['zeros', 'garbage', 'a second copy'][pick]} appended"
    if roll < 0.85 and not use_bz2:
        out[-8:] = _random_text(rng, 8)  # CRC32 and ISIZE trailer
        return bytes(out), "gz: trailer replaced"
    if not use_bz2:  # a second member of garbage-like FITS, or a cut one
        extra = _gzip(_random_text(rng, int(rng.integers(1, 5000))))
        return bytes(out) + extra[: int(rng.integers(1, len(extra) + 1))], "gz: a second (random) member appended"
    return bytes(out[:4]) + _random_text(rng, len(out) - 4), "bz2: body replaced"


_MUTATORS = {
    "bit_flip": _bit_flip,
    "truncate": _truncate,
    "card_edit": _card_edit,
    "card_insert": _card_insert,
    "block_dup": _block_dup,
    "block_zero": _block_zero,
    "nan_data": _nan_data,
    "gz_stream": _gz_stream,
}


@dataclass(frozen=True)
class Case:
    """One fuzz case: the file's bytes and how they were made."""

    index: int
    kind: str
    seed_name: str
    data: bytes
    description: str

    def label(self, fuzz_seed: int) -> str:
        return f"case={self.index} seed={fuzz_seed} kind={self.kind} file={self.seed_name}: {self.description}"


def make_case(seeds: Sequence[Seed], index: int, fuzz_seed: int = FUZZ_SEED, kind: str | None = None) -> Case:
    """Case ``index``: a seed file, mutated by ``kind`` (default ``KINDS[index % len(KINDS)]``)."""
    rng = np.random.default_rng([fuzz_seed, index])
    kind = kind or KINDS[index % len(KINDS)]
    seed = seeds[int(rng.integers(len(seeds)))]
    data = seed.data
    if kind == "gz_stream" and rng.random() < 0.5:  # a damaged stream of a damaged file
        data, first = _MUTATORS[KINDS[int(rng.integers(len(KINDS) - 1))]](seed, data, rng)
        data, what = _MUTATORS[kind](seed, data, rng)
        description = f"{first}, then {what}"
    else:
        data, description = _MUTATORS[kind](seed, data, rng)
    if kind != "gz_stream":
        roll = rng.random()
        if roll < 0.3:  # mutated, then compressed (an intact stream of a damaged file)
            data, description = _gzip(data), description + ", gzipped"
        elif roll < 0.35:
            data, description = bz2.compress(data, 1), description + ", bzip2-compressed"
    return Case(index, kind, seed.name, data, description)


def read_outcome(path: Path, **kwargs) -> str:
    """``"spectrum"`` or ``"error:<code>"``; anything but a LamostReadError propagates.

    A returned spectrum must also be safe to use: its arrays 1-D and aligned, its header dict and ``get``
    free of exceptions.
    """
    try:
        sp = read_lamost(path, **kwargs)
    except LamostReadError as exc:
        assert exc.code and exc.message and str(path) in str(exc)
        return f"error:{exc.code}"
    assert isinstance(sp, LamostSpectrum)
    shapes = {getattr(sp, name).shape for name in ARRAYS}
    assert len(shapes) == 1 and len(next(iter(shapes))) == 1, shapes
    assert sp.flux.dtype == np.float64 and sp.andmask.dtype == np.uint32
    sp.header  # noqa: B018 - must not raise
    sp.get("OBSID", "FILENAME", "RA", "DEC", "COEFF1", "SNRG", "Z")
    return "spectrum"


def bomb_bytes(kind: str, n_bytes: int = 200 * 10**6) -> bytes:
    """A compression bomb: ``n_bytes`` of zeros behind a FITS-looking start, compressed.

    ``gzip``: one gzip member; ``gzip_members``: many small members; ``bzip2``: concatenated bzip2 streams.
    """
    head = card_image("SIMPLE  =                    T") + card_image("BITPIX  =                  -32")
    chunk = 2**20
    if kind == "gzip":
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [comp.compress(head)]
        zeros = bytes(chunk)
        for _ in range(n_bytes // chunk):
            parts.append(comp.compress(zeros))
        parts.append(comp.flush())
        return b"".join(parts)
    member = (gzip.compress if kind == "gzip_members" else bz2.compress)(bytes(chunk))
    first = (gzip.compress if kind == "gzip_members" else bz2.compress)(head)
    return first + member * (n_bytes // chunk)


# --- tests -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds(lamost_dir: Path) -> list[Seed]:
    """The real files (the fixture skips when ../shared/data/lamost is absent) and the mock files."""
    return real_seeds(lamost_dir) + mock_seeds()


@pytest.fixture(scope="module")
def mock_only() -> list[Seed]:
    return mock_seeds()


def _run_cases(seeds: Sequence[Seed], kind: str, n: int, folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    path = folder / "spec-1-FUZZ_sp01-001.fits"
    kind_index = KINDS.index(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about every odd card; the outcome is what counts
        for k in range(n):
            case = make_case(seeds, kind_index + k * len(KINDS))
            path.write_bytes(case.data)
            try:
                outcome = read_outcome(path)
            except Exception as exc:
                pytest.fail(f"untyped {type(exc).__name__}: {exc}\n  {case.label(FUZZ_SEED)}")
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_real_and_mock_files(seeds: list[Seed], kind: str, tmp_path: Path) -> None:
    counts = _run_cases(seeds, kind, N_CASES_PER_KIND, tmp_path)
    assert sum(counts.values()) == N_CASES_PER_KIND
    if kind in ("truncate", "gz_stream", "card_edit", "card_insert"):
        assert any(k.startswith("error:") for k in counts), counts  # the mutations do reach the checks
    if kind == "nan_data":
        assert counts.get("spectrum", 0) > N_CASES_PER_KIND // 2, counts  # NaN values are data, not errors


def test_fuzz_mock_files_without_real_data(mock_only: list[Seed], tmp_path: Path) -> None:
    """A short run on the mock files alone: runs where ../shared/data/lamost is absent."""
    for kind in KINDS:
        counts = _run_cases(mock_only, kind, 10, tmp_path)
        assert sum(counts.values()) == 10


@pytest.mark.parametrize("kind", ["gzip", "gzip_members", "bzip2"])
def test_bombs_are_refused_before_inflating(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"spec-1-BOMB_sp01-001.fits.{'bz2' if kind == 'bzip2' else 'gz'}"
    path.write_bytes(bomb_bytes(kind))
    assert path.stat().st_size < 2 * 10**6
    tracemalloc.start()
    try:
        t = time.perf_counter()
        with pytest.raises(LamostReadError) as info:
            read_lamost(path)
        seconds = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "too_large", info.value
    assert peak < 2.5 * DEFAULT_MAX_BYTES, f"peak {peak / 2**20:.0f} MiB while refusing a bomb"
    assert seconds < 10
    # a smaller cap stops it sooner, and smaller
    tracemalloc.start()
    try:
        with pytest.raises(LamostReadError) as info:
            read_lamost(path, max_bytes=2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "too_large" and peak < 20 * 2**20


# the failures found by mutating the real files before the reader checked its input (SPEC §2)
KNOWN_CRASHERS = [
    ("image", "EXTEN0", "'x", "bad_header", "card EXTEN0"),
    ("coadd", "TFIELDS", "9999999996", "bad_header", "card TFIELDS"),
    ("image", "NAXIS1", "-5", "bad_header", "card NAXIS1"),
    ("coadd", "NAXIS1", "-5", "bad_header", "card NAXIS1"),
    ("image", "BITPIX", "7", "bad_header", "card BITPIX"),
    ("coadd", "BITPIX", "7", "bad_header", "card BITPIX"),
    ("image", "NAXIS2", "abc", "bad_header", "card NAXIS2"),
    ("coadd", "NAXIS2", "99999999", "truncated", "declares"),
    ("image", "NAXIS1", "99999", "truncated", "declares"),
    ("coadd", "TFORM1", "'99999999999E'", "bad_header", "card NAXIS1"),
    ("coadd", "TFORM2", "'3908Z'", "bad_header", "card TFORM2"),
    ("image", "NAXIS2", "1e400", "bad_header", "card NAXIS2"),  # an OverflowError before
    ("coadd", "TFORM1", "''", "bad_header", "card TFORM1"),
]


@pytest.mark.parametrize(("layout", "key", "value", "code", "words"), KNOWN_CRASHERS)
def test_known_crashers_are_typed(
    mock_only: list[Seed], tmp_path: Path, layout: str, key: str, value: str, code: str, words: str
) -> None:
    seed = next(s for s in mock_only if s.name == ("mock_image_f32" if layout == "image" else "mock_coadd"))
    for compress in (False, True):
        data = set_card(seed.data, key, value)
        path = tmp_path / ("spec.fits.gz" if compress else "spec.fits")
        path.write_bytes(_gzip(data) if compress else data)
        with pytest.raises(LamostReadError) as info:
            read_lamost(path)
        assert info.value.code == code and words in info.value.message, info.value


def test_missing_naxis2_and_unparsable_coeff(mock_only: list[Seed], tmp_path: Path) -> None:
    image = next(s for s in mock_only if s.name == "mock_image_f32").data
    pos = image.index(b"NAXIS2  =")
    path = tmp_path / "spec.fits"
    path.write_bytes(image[:pos] + b" " * CARD + image[pos + CARD :])  # the card blanked (a KeyError before)
    with pytest.raises(LamostReadError) as info:
        read_lamost(path)
    assert info.value.code == "bad_header" and "card NAXIS2: missing" in info.value.message

    # GCOUNT = 0 declares no data: the image the reader views must still be in the file
    pos = image.index(b"EXTEND  =")
    gcount0 = image[:pos] + card_image("GCOUNT  = 0") + image[pos + CARD :]
    path.write_bytes(gcount0)
    assert read_lamost(path).flux.size == spx.NATIVE_NPIX
    path.write_bytes(gcount0[:20000])
    with pytest.raises(LamostReadError) as info:
        read_lamost(path)
    assert info.value.code == "truncated"

    # COEFF1 unparsable: fine while the wavelength row is used (and get() treats the card as absent) ...
    path.write_bytes(set_card(image, "COEFF1", "abc"))
    sp = read_lamost(path)
    assert sp.wavelength_source == "data" and sp.get("COEFF1") is None and "COEFF1" not in sp.header
    # ... a typed error naming it when the wavelength must be rebuilt from it
    v26 = set_card(image, "EXTEN0", "'Flux Inverse Normalized Andmask Ormask'")
    path.write_bytes(set_card(v26, "COEFF1", "abc"))
    with pytest.raises(LamostReadError) as info:
        read_lamost(path)
    assert info.value.code == "bad_header" and "card COEFF1" in info.value.message
    path.write_bytes(set_card(v26, "COEFF1", "'abc'"))  # a parsable string, not a number
    with pytest.raises(LamostReadError) as info:
        read_lamost(path)
    assert info.value.code == "bad_header" and "COEFF1: 'abc' is not a number" in info.value.message


def test_nan_data_reads(mock_only: list[Seed], tmp_path: Path) -> None:
    for seed in mock_only:
        data = bytearray(seed.data)
        start, n_bytes, itemsize = seed.regions[0]  # flux
        data[start : start + n_bytes] = _NONFINITE[itemsize][0] * (n_bytes // itemsize)
        path = tmp_path / "spec.fits"
        path.write_bytes(bytes(data))
        sp = read_lamost(path)
        assert np.all(np.isnan(sp.flux)) and np.all(np.isfinite(sp.wavelength)), seed.name


def test_variable_length_descriptors_outside_the_heap(tmp_path: Path) -> None:
    """A COADD table with a P column: astropy follows the descriptor only after it was checked."""
    n = 16
    col = fits.Column(name="FLUX", format="PE()", array=np.array([np.arange(n, dtype=np.float32)], dtype=object))
    rest = [fits.Column(name=c, format=f"{n}E", array=np.zeros((1, n), np.float32)) for c in COADD_COLUMNS[1:]]
    table = fits.BinTableHDU.from_columns([col, *rest], name="COADD")
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    good = buf.getvalue()
    path = tmp_path / "spec.fits"
    path.write_bytes(good)
    sp = read_lamost(path)  # read by the astropy fallback
    np.testing.assert_array_equal(sp.flux, np.arange(n))
    with fits.open(io.BytesIO(good)) as hdul:
        start = hdul.fileinfo(1)["datLoc"]
    for count, offset in ((10**9, 0), (n, 10**6), (-1, 0)):
        bad = bytearray(good)
        bad[start : start + 8] = np.array([count, offset], ">i4").tobytes()
        path.write_bytes(bytes(bad))
        with pytest.raises(LamostReadError) as info:
            read_lamost(path)
        assert info.value.code == "bad_fits" and "outside the heap" in info.value.message


def test_time_limit_and_size_cap(lamost_dir: Path, tmp_path: Path) -> None:
    real = lamost_dir / "spec-55916-B5591606_sp01-001.fits"  # plain, 170 kB
    assert read_lamost(real, time_limit_s=None).flux.size == 3909
    with pytest.raises(LamostReadError) as info:
        read_lamost(real, time_limit_s=0.0)
    assert info.value.code == "too_slow" and "time_limit_s" in info.value.message
    with pytest.raises(LamostReadError) as info:
        read_lamost(real, max_bytes=100_000)
    assert info.value.code == "too_large"
    gz = lamost_dir / "spec-55859-F5902_sp01-001.fits.gz"  # 59 kB, 109 kB inflated
    with pytest.raises(LamostReadError) as info:
        read_lamost(gz, max_bytes=100_000)
    assert info.value.code == "too_large"
    assert read_lamost(gz, max_bytes=109_440).flux.size == 3908  # exactly its size is fine
    with pytest.raises(ValueError, match="max_bytes"):
        read_lamost(gz, max_bytes=0)


def test_read_error_pickles() -> None:
    err = LamostReadError("/x/spec.fits", "bad_header", "card EXTEN0: unparsable")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.code, back.message, str(back)) == (err.path, err.code, err.message, str(err))


def test_a_failing_case_can_be_rebuilt(mock_only: list[Seed]) -> None:
    a, b = make_case(mock_only, 123), make_case(mock_only, 123)
    assert a == b and a.kind == KINDS[123 % len(KINDS)]
