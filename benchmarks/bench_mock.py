"""Mock-release throughput (SPEC §10): how long writing a release of N spectra takes.

Measures, in one run:

- population only: ``make_population`` for the number of hot stars that, with the cool contaminants
  (``--cool-fraction`` of all stars, default 0.3) and QSOs, gives N spectra (~1.54 visits/star);
- the whole release: ``make_release`` (population, schedule, spectra synthesis and observation, FITS
  writing, tables), with its stages' timings, spectra per second and the size on disk.

    python benchmarks/bench_mock.py --n-spectra 10000
    python benchmarks/bench_mock.py --n-spectra 2000 --outdir /tmp/mock --keep
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from survey_scale.mock.contaminants import COOL_FRACTION
from survey_scale.mock.population import PopulationConfig, make_population
from survey_scale.mock.release import make_release


def visits_per_star(config: PopulationConfig | None = None) -> float:
    """Expected visits per star: 1 for single-visit stars, the mean of 2–5 for the multi-visit fraction."""
    config = config or PopulationConfig()
    probs = config.visit_count_probs
    mean_multi = sum((k + 2) * p for k, p in enumerate(probs)) / sum(probs)
    return 1.0 + config.multi_visit_fraction * (mean_multi - 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-spectra", type=int, default=10000, help="spectra to write (approximately)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the release")
    parser.add_argument("--batch-size", type=int, default=256, help="spectra simulated per batch")
    parser.add_argument("--outdir", type=Path, default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the release after the run")
    parser.add_argument(
        "--cool-fraction", type=float, default=COOL_FRACTION, help="cool contaminants among all stars (0: none)"
    )
    args = parser.parse_args()

    n_stars = max(1, round(args.n_spectra / visits_per_star() * (1.0 - args.cool_fraction)))
    t0 = time.perf_counter()
    stars = make_population(n_stars, args.seed)
    t_pop = time.perf_counter() - t0
    print(f"population only: {n_stars} stars in {t_pop:.2f} s ({n_stars / t_pop:,.0f} stars/s)")

    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="bench_mock_"))
    if outdir.exists() and any(outdir.iterdir()):
        shutil.rmtree(outdir)
    t0 = time.perf_counter()
    summary = make_release(outdir, n_stars, args.seed, batch_size=args.batch_size, cool_fraction=args.cool_fraction)
    wall = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (outdir / "spectra").iterdir())
    print(
        f"release: {summary.n_files} files ({summary.n_valid_files} valid spectra, {len(stars)} hot stars, "
        f"{summary.n_contaminants} contaminants) in {wall:.1f} s -> {summary.n_files / wall:.1f} spectra/s"
    )
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.timings.items() if k != "total")
    print(f"stages: {stages}")
    counts = summary.counts
    print(
        f"spectra on disk: {size / 1e6:.1f} MB ({size / summary.n_files / 1e3:.0f} kB per file), "
        f"{counts['gzip_files']} gzipped, {counts['image_files']} DR7-image layout"
    )
    print(
        f"contaminants: {counts['cool_contaminant_stars']} cool stars ({counts['cool_contaminant_spectra']} spectra, "
        f"{counts['misclassified_a_spectra']} classed as A), {counts['qso_spectra']} QSO spectra"
    )
    if args.keep:
        print(f"kept in {outdir}")
    else:
        shutil.rmtree(outdir)


if __name__ == "__main__":
    main()
