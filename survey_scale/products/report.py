"""``survey-scale report CUBE --out DIR``: one HTML page on what a run made (SPEC §11, §12).

``DIR/report.html`` (the jinja2 template ``products/templates/report.html.j2``) with its PNG figures beside
it: the run summary — spectra, stars and releases; every pipeline step with its status, provenance and
timings (from the cube's bookkeeping: each step's recorded runs, each chunk's compute time); rejects by stage
and reason; the emulator's precision (its file's header); the chi2ratio coefficients, the repeat-visit
precision and the MKs model's MCMC posterior (``ds.attrs["reductions"]``); P2 §5.1's final sample (spectra
removed by each rule, the final sample's size, the spectra each emulator component fitted) — and the papers'
figures that apply (:data:`FIGURES`: P1 Figs. 2–5, 8, 10–12; P2 Figs. 3–4, 8, 10, 13, 16, 17; the final
sample's: the fitted Teff against LAMOST's class, the spectra each rule removes), each with its caption.

A cube on which some steps have not run gets a report all the same: a section lists the steps missing and
the figures they would give. With ``truth`` (the mock release the cube was made from) the report adds the
mock-vs-truth figures, and a table of the contaminants that the final sample keeps and the hot stars it loses,
per rule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from survey_scale._version import __version__
from survey_scale.products.report_figures import FIGURES, SECTIONS, DrawnFigure, FigureSpec, ReportInputs, draw_figures
from survey_scale.products.report_tables import (
    emulator_table,
    final_sample_table,
    reductions_table,
    rejects_table,
    run_counts,
    step_rows,
)
from survey_scale.products.status import DONE, CubeState, step_statuses


def write_report(cube: str | Path, out: str | Path, truth: str | Path | None = None) -> Path:
    """Write ``out/report.html`` and its PNG figures for the cube at ``cube`` and return the HTML's path.

    ``truth``: the mock release the cube was made from (its ``truth.parquet``), for the mock-vs-truth figures.

    Raises
    ------
    FileNotFoundError
        If ``cube`` is not a cube or ``truth`` holds no ``truth.parquet``.
    """
    import jinja2

    cube, out = Path(cube), Path(out)
    truth = Path(truth) if truth is not None else None
    if truth is not None and not (truth / "truth.parquet").is_file():
        raise FileNotFoundError(f"{truth}: no truth.parquet (give the mock release the cube was made from)")
    state = CubeState(cube)
    out.mkdir(parents=True, exist_ok=True)
    statuses = step_statuses(cube)
    done = {s.step.name: s.state for s in statuses}
    inputs = ReportInputs(cube, truth, state)
    specs = [spec for spec in FIGURES if truth is not None or not spec.truth]
    figures = [DrawnFigure(spec, number) for number, spec in enumerate(specs, 1)]
    draw_figures(figures, inputs, out, done)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("survey_scale.products", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = environment.get_template("report.html.j2").render(
        cube=str(cube.resolve()),
        truth=str(truth.resolve()) if truth is not None else None,
        version=__version__,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        counts=run_counts(state),
        steps=step_rows(state, statuses),
        missing_steps=[s for s in statuses if s.state != DONE],
        not_drawn=[f for f in figures if f.file is None],
        rejects=rejects_table(cube),
        emulator=emulator_table(inputs),
        reductions=reductions_table(state),
        final_sample=final_sample_table(state, truth),
        sections=[(name, [f for f in figures if f.spec.section == name]) for name in SECTIONS],
        figures=figures,
    )
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


__all__ = ["FIGURES", "FigureSpec", "write_report"]
