"""``survey-scale ingest`` of a folder of mutated LAMOST files: the run ends, and every file is accounted for.

Writes ``--n-files`` seeded mutations (the kinds of ``tests/io/test_lamost_fuzz.py``: bit flips, truncation,
header-card edits and insertions, duplicated or zeroed 2880-byte blocks, NaN data, damaged gzip streams,
gzipped or not) of the real files in ``../shared/data/lamost`` and of mock files, each relabelled to its own
specid, plus a COADD file whose header says ``TFIELDS = 9999999996``. Then

1. runs ``survey-scale ingest`` on them (a subprocess, as a user would) and prints its exit status, the
   balance ``n_files = n_ingested + n_rejected`` and the reject codes with their counts;
2. ingests them again into a second cube on a LocalCluster of this process and prints each worker's peak
   RSS (``ru_maxrss``), and the client's.

    python benchmarks/ingest_mutated.py --n-files 2000 --workers 2
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the mutation helpers live in the test suite (tests/io/test_lamost_fuzz.py)

from distributed import Client, LocalCluster  # noqa: E402

from survey_scale.config import load_config  # noqa: E402
from survey_scale.pipeline import run_pipeline_with_client  # noqa: E402
from survey_scale.store.cube import create_cube, open_rejects  # noqa: E402
from tests.io.test_lamost_fuzz import make_case, make_seed, mock_seeds, real_seeds, set_card  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "lamost"


def relabelled(seed, index: int):
    """``seed`` with its own specid (SPID, FIBERID) and OBSID, so that mutated copies are not duplicates."""
    data = seed.data
    for key, value in (
        ("SPID", str(1 + index // 250)),
        ("FIBERID", str(1 + index % 250)),
        ("OBSID", str(900000 + index)),
    ):
        try:
            data = set_card(data, key, str(value))
        except KeyError:  # a layout without that card
            pass
    return make_seed(f"{seed.name}#{index}", data)


def suffix(data: bytes) -> str:
    return ".fits.gz" if data[:2] == b"\x1f\x8b" else ".fits.bz2" if data[:3] == b"BZh" else ".fits"


def write_files(folder: Path, n_files: int) -> dict[str, int]:
    seeds = [*(real_seeds(REAL) if REAL.is_dir() else []), *mock_seeds()]
    kinds: dict[str, int] = {}
    for i in range(n_files):
        case = make_case([relabelled(seeds[i % len(seeds)], i)], i)
        (folder / f"mut-{i:05d}-{case.kind}{suffix(case.data)}").write_bytes(case.data)
        kinds[case.kind] = kinds.get(case.kind, 0) + 1
    coadd = next(s for s in seeds if "coadd" in s.name or b"COADD" in s.data[:20000])
    (folder / "tfields-9999999996.fits").write_bytes(set_card(relabelled(coadd, n_files).data, "TFIELDS", "9999999996"))
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="ingest_mutated-"))
    folder = work / "input"
    shutil.rmtree(work, ignore_errors=True)
    folder.mkdir(parents=True)
    kinds = write_files(folder, args.n_files)
    print(f"{args.n_files} mutated files + 1 TFIELDS file in {folder}; per kind: {kinds}")

    cube = work / "cli.zarr"
    options = ["--workers", str(args.workers), "--no-progress"]
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "survey_scale.cli", "ingest", "--input", str(folder), "--cube", str(cube), *options],
        capture_output=True,
        text=True,
    )
    print(f"survey-scale ingest: exit {done.returncode} in {time.perf_counter() - t0:.1f} s")
    print("  " + (done.stdout.strip() or done.stderr.strip()[-2000:]))
    rejects = open_rejects(cube)
    print(f"rejects by code ({len(rejects)}):")
    for code, count in rejects["code"].value_counts().sort_index().items():
        print(f"  {code:<28} {count:>6}")
    tfields = rejects[rejects["source"].str.endswith("tfields-9999999996.fits")]
    print("TFIELDS file: " + "; ".join(tfields["code"] + ": " + tfields["reason"]))

    config = load_config(None, {"cube.path": str(work / "memory.zarr"), "ingest.input": str(folder)})
    create_cube(config.cube.path, config.cube)
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        (summary,) = run_pipeline_with_client(
            config, client, progress=False, until="ingest", require_spectra=False
        ).ingest
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(summary.balance_line())
    for worker, mib in sorted(peaks.items()):
        print(f"peak RSS of worker {worker}: {mib:.0f} MiB")
    print(f"peak RSS of the client process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
