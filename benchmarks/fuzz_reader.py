"""Long fuzz run of the LAMOST reader: seeded mutations of the real and mock files (SPEC §2).

Uses the mutation code of ``tests/io/test_lamost_fuzz.py`` (one copy of it) on more cases than CI runs, and
prints per mutation kind how many cases returned a spectrum and which ``LamostReadError`` codes were raised,
the number of untyped exceptions (must be 0; the first few are listed with the case that rebuilds them), the
process's peak RSS (``ru_maxrss``) after the cases and after the compression bombs, and the slowest single
read. Exits with status 1 when any exception other than ``LamostReadError`` escaped, or a bomb was not
refused with ``too_large``.

    python benchmarks/fuzz_reader.py --n-cases 20000
    python benchmarks/fuzz_reader.py --n-cases 3000 --seed 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the mutation helpers live in the test suite (tests/io/test_lamost_fuzz.py)

from survey_scale.io.lamost import DEFAULT_MAX_BYTES, LamostReadError, read_lamost  # noqa: E402
from tests.io.test_lamost_fuzz import (  # noqa: E402
    FUZZ_SEED,
    KINDS,
    bomb_bytes,
    make_case,
    mock_seeds,
    read_outcome,
    real_seeds,
)

REAL = ROOT.parent / "shared" / "data" / "lamost"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cases", type=int, default=20000, help="fuzz cases (default 20000)")
    ap.add_argument("--seed", type=int, default=FUZZ_SEED, help=f"fuzz seed (default {FUZZ_SEED}, the CI one)")
    ap.add_argument("--lamost-dir", type=Path, default=REAL, help="real LAMOST files (default %(default)s)")
    ap.add_argument("--no-bombs", action="store_true", help="skip the three compression bombs")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    seeds = mock_seeds()
    if args.lamost_dir.is_dir():
        seeds = real_seeds(args.lamost_dir) + seeds
    else:
        print(f"note: {args.lamost_dir} not found: mutating the mock files only")
    print(f"{len(seeds)} seed files, {args.n_cases} cases, seed {args.seed}")
    rss_start = peak_rss_mib()

    outcomes: dict[str, Counter] = defaultdict(Counter)
    untyped: list[str] = []
    slowest = (0.0, "")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about odd cards; the outcome is what counts
        path = Path(tmp) / "spec-1-FUZZ_sp01-001.fits"
        for i in range(args.n_cases):
            case = make_case(seeds, i, args.seed)
            path.write_bytes(case.data)
            t = time.perf_counter()
            try:
                outcome = read_outcome(path)
            except Exception as exc:  # what the reader must never let out
                outcome = f"UNTYPED:{type(exc).__name__}"
                untyped.append(f"{type(exc).__name__}: {str(exc)[:200]}\n    {case.label(args.seed)}")
            seconds = time.perf_counter() - t
            if seconds > slowest[0]:
                slowest = (seconds, case.label(args.seed))
            outcomes[case.kind][outcome] += 1
    elapsed = time.perf_counter() - t_start
    rss_cases = peak_rss_mib()

    print(f"\n{'kind':<12} {'cases':>6} {'spectrum':>9}  errors by code")
    for kind in KINDS:
        c = outcomes[kind]
        errors = ", ".join(
            f"{k.split(':', 1)[1]} {n}" for k, n in sorted(c.items(), key=lambda kv: -kv[1]) if k != "spectrum"
        )
        print(f"{kind:<12} {sum(c.values()):>6} {c['spectrum']:>9}  {errors}")
    total = Counter()
    for c in outcomes.values():
        total.update(c)
    codes = {k: n for k, n in sorted(total.items(), key=lambda kv: -kv[1])}
    print(f"{'all':<12} {sum(total.values()):>6} {total['spectrum']:>9}")
    print(f"\nuntyped exceptions: {len(untyped)}")
    for line in untyped[:10]:
        print("  " + line)
    print(f"time: {elapsed:.1f} s ({args.n_cases / elapsed:.0f} cases/s); slowest read {slowest[0] * 1e3:.1f} ms")
    print(f"  slowest: {slowest[1][:300]}")
    print(f"peak RSS: {rss_start:.0f} MiB before the cases, {rss_cases:.0f} MiB after them")

    bombs = {}
    if not args.no_bombs:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("gzip", "gzip_members", "bzip2"):
                path = Path(tmp) / "bomb.fits.gz"
                path.write_bytes(bomb_bytes(kind))
                t = time.perf_counter()
                try:
                    read_lamost(path)
                    code = "READ (not refused!)"
                except LamostReadError as exc:
                    code = exc.code
                bombs[kind] = {
                    "code": code,
                    "seconds": time.perf_counter() - t,
                    "compressed_bytes": path.stat().st_size,
                }
                print(
                    f"bomb {kind:<13} ({path.stat().st_size / 1e3:.0f} kB → 200 MB): {code} in "
                    f"{bombs[kind]['seconds'] * 1e3:.0f} ms"
                )
        print(f"peak RSS after the bombs: {peak_rss_mib():.0f} MiB (max_bytes = {DEFAULT_MAX_BYTES / 2**20:.0f} MiB)")

    if args.json:
        result = {
            "n_cases": args.n_cases,
            "seed": args.seed,
            "per_kind": {k: dict(outcomes[k]) for k in KINDS},
            "outcomes": codes,
            "untyped": untyped,
            "seconds": elapsed,
            "slowest_read_s": slowest[0],
            "slowest_case": slowest[1],
            "peak_rss_mib_cases": rss_cases,
            "peak_rss_mib_end": peak_rss_mib(),
            "bombs": bombs,
        }
        args.json.write_text(json.dumps(result, indent=2))
    failed = bool(untyped) or any(b["code"] != "too_large" for b in bombs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
