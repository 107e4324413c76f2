"""Figures: the one home of every plot (PNG via matplotlib's Agg backend).

- :mod:`.cube`: emission diagram, PCA reconstructions, example fits, Kiel diagram (from a cube);
- :mod:`.emulator`: gradient spectra and Cramér–Rao bound of an emulator;
- :mod:`.synth`: example spectra and gradient spectra of the synthesizer;
- :mod:`.mock`: the mock population and its observations;
- :mod:`.survey`: repeat-visit precision (P2 Fig. 10) and chi2ratio (P2 §5.2), from a cube;
- :mod:`.distances`: extinction, MKs, its MCMC, binaries, distance precision, X–Y map (P1 Figs. 4, 5, 8, 10–12),
  from a cube (with the mock release as the truth of Fig. 4 when given);
- :mod:`.labels`: the fitted labels over the survey: vsini (P2 Fig. 16), [Fe/H] and [Si/H] (P2 Fig. 17);
- :mod:`.final_sample`: P2 §5.1's final sample: the fitted Teff against LAMOST's class, the spectra each
  rule removes;
- :mod:`.truth`: a cube against its mock release's truth: labels (P2 Fig. 7), MKs and binaries, distances.

The HTML report (:mod:`survey_scale.products.report`) draws them all.

:func:`write_figures` writes one kind of them (``survey-scale figures KIND SOURCE``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from survey_scale.store.bookkeeping import Bookkeeping

log = logging.getLogger(__name__)

FIGURE_KINDS = ("synth", "mock", "emission", "fits", "survey", "distances", "emulator")
"""What :func:`write_figures` draws: synth (no source); mock (a mock release); emission, fits, survey and
distances (a cube); emulator (an emulator file)."""


def fiducial_b_star(label_names: Sequence[str]) -> list[float]:
    """The fiducial B star of P2 Figs. 3–5 (Teff 18,000 K, log g 4.0, [X/H] = 0, vsini 100 km/s)."""
    values = {"teff": 18000.0, "logg": 4.0, "vmic": 2.0, "vsini": 100.0, "he_frac": 0.085}
    return [values.get(name, 0.0) for name in label_names]


def write_figures(kind: str, source: str | Path | None, out: str | Path, truth: str | Path | None = None) -> list[Path]:
    """Write the PNG figures of one ``kind`` (:data:`FIGURE_KINDS`) of ``source`` into ``out``; ``truth`` (a
    mock release) is the reference of the E(B−V) figure of kind ``distances``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "synth":
        from survey_scale.products.figures.synth import plot_example_spectra, plot_synth_gradients

        return [
            plot_example_spectra(out / "synth_example_spectra.png"),
            plot_synth_gradients(out / "synth_gradient_spectra.png"),
        ]
    if source is None or not Path(source).exists():
        what = "no source given" if source is None else f"{source} not found"
        raise FileNotFoundError(f"figures {kind}: {what} (give the mock release, cube or emulator file to plot)")
    source = Path(source)
    from survey_scale.products.figures import cube as cube_figures

    if kind == "mock":
        import pandas as pd

        from survey_scale.products.figures.mock import plot_observations, plot_population

        return [
            plot_population(pd.read_parquet(source / "truth_stars.parquet"), out / "mock_population.png"),
            plot_observations(pd.read_parquet(source / "truth.parquet"), out / "mock_observations.png"),
        ]
    if kind == "emission":
        model = Bookkeeping(source).recorded_model("pca")
        return [
            cube_figures.plot_emission_diagram(source, model, out / "emission_diagram.png"),
            cube_figures.plot_reconstructions(source, out / "pca_reconstructions.png"),
        ]
    if kind == "fits":
        from survey_scale.products.figures.labels import plot_abundances, plot_vsini

        return [
            cube_figures.plot_example_fits(source, out / "example_fits.png"),
            cube_figures.plot_kiel(source, out / "kiel.png"),
            plot_vsini(source, out / "vsini.png"),
            plot_abundances(source, out / "abundances.png"),
        ]
    if kind == "survey":
        from survey_scale.products.figures.survey import plot_chi2ratio, plot_repeat_precision

        return [
            plot_repeat_precision(source, out / "repeat_precision.png"),
            plot_chi2ratio(source, out / "chi2ratio.png"),
        ]
    if kind == "distances":
        from survey_scale.products.figures import distances as d

        written = [d.plot_ebv(source, out / "ebv.png", truth), d.plot_mks(source, out / "mks.png")]
        try:
            written.append(d.plot_mcmc_corner(source, out / "mks_mcmc.png"))
        except FileNotFoundError as exc:  # a release too small for an MKs model: the other figures still help
            log.warning("figures distances: no MCMC figure: %s", exc)
        return [
            *written,
            d.plot_snr_dparallax(source, out / "snr_dparallax.png"),
            d.plot_distance_precision(source, out / "distance_precision.png"),
            d.plot_xy_map(source, out / "xy_map.png"),
        ]
    if kind == "emulator":
        from survey_scale.products.figures.emulator import plot_cramer_rao, plot_emulator_gradients
        from survey_scale.science.emulator import load

        em = load(source)
        b_star = fiducial_b_star(em.label_names)
        return [
            plot_emulator_gradients(em, b_star, out / "emulator_gradient_spectra.png"),
            plot_cramer_rao(em, b_star, out / "emulator_cramer_rao.png", snr=100),
        ]
    raise ValueError(f"figures: unknown kind {kind!r}; one of {', '.join(FIGURE_KINDS)}")
