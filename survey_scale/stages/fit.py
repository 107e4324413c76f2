"""The label fit of SPEC §5.3 as a stage on the runner: :func:`survey_scale.science.label_fit.fit_labels` per chunk.

Inputs ``norm_flux``, ``norm_ivar``, ``pixmask`` and ``snr_g``; the emulator is a model file loaded once
per worker (:class:`survey_scale.engine.runner.ModelPlugin`), and its SHA-256 is part of every chunk's
provenance, so a new emulator re-runs the fit. Outputs (``label`` = the 11 labels of
:data:`survey_scale.core.labels.LABEL_NAMES` for an emulator fitting any subset of them — the labels it does not
fit are NaN, see ``labels_fitted`` —, else the emulator's own label names):

===================  =======================  ===========================================================
variable             dims, dtype              meaning
===================  =======================  ===========================================================
labels               spec, label; float32     combined labels (P2 Eq. 5–7), vsini ≥ 0 (physical units)
label_err            spec, label; float32     √diag(cov)
label_cov            spec, label, label2; f4  covariance of the combined labels
labels_full          spec, label; float32     full-spectrum fit (after the footnote-4 re-fit)
labels_hmask         spec, label; float32     hydrogen-masked fit
corr_<a>_<b>         spec; float32            the 10 correlation coefficients of P2 Table 5
chi2_red             spec; float32            reduced χ² of the combined model over the full-fit pixels
fit_n_iter           spec; int32              Levenberg–Marquardt iterations (all fits)
fit_converged        spec; int8               1 if every fit that entered the result converged
fit_flags            spec; uint8              bits of :data:`survey_scale.core.fit_flags.FLAG_BITS`
labels_fitted        spec; uint16             bit i set: label i of ``label`` was fitted (2047: all 11); the
                                              others are NaN (an emulator with a subset of the labels)
vsini_raw            spec; float32            combined vsini before clipping at 0
teff_init            spec; float32            initial Teff from the line indices (P2 Eq. 4)
w_hmask              spec; float32            Hann weight of the H-masked labels
model_flux           spec, wave; float32      the emulator spectrum at the combined labels
fit_component        spec; int8               the emulator set's component kept (lowest full-spectrum χ²; 0 for one)
teff_cool            spec; float32            T_eff of the cool-star model's full-spectrum fit (K; P2 §5.1)
chi2_red_cool        spec; float32            its reduced χ²
chi2_red_hot         spec; float32            reduced χ² of the best other model's full-spectrum fit
===================  =======================  ===========================================================

An emulator set (the shipped ``physical``: ``cool`` 3,500–9,000 K and ``hot`` 8,000–40,000 K) runs the whole
procedure with each component (:func:`survey_scale.science.label_fit.fit_labels_set`). The cool-star check
(``fit.cool_star_emulator``, default the ``physical`` set's ``cool`` component) gives every spectrum an
independent cool-star T_eff — the role DD-Payne plays in P2 §5.1 — for the final-sample rules of step
``final_sample``; with the ``physical`` set it is its own cool component's fit, so nothing is fitted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from survey_scale.core.fit_flags import FLAG_BITS, FLAG_NO_DATA
from survey_scale.core.labels import (
    LABEL_NAMES,
    LABEL_UNITS,
    P2_TABLE5_CORRELATIONS,
    output_label_names,
    to_label_order,
)
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    ModelRef,
    Output,
    PipelineError,
    Stage,
    StageResult,
    StageSummary,
    Step,
    output_names,
    per_spectrum,
)

if TYPE_CHECKING:  # the science of the fit imports torch: loaded when the step runs, not when it is listed
    from survey_scale.science.emulator import Emulator
    from survey_scale.science.emulator_set import EmulatorSet


class FitConfig(Section):
    """The label fit (SPEC §5.3, P2 §4.4-4.5)."""

    device: str | None = Field(None, description="null = CUDA if available, else CPU")
    bounds: float = Field(
        0.55, gt=0, description="fit box in scaled labels (the grid spans -0.5..0.5; a little extrapolation)"
    )
    max_iter: int = Field(100, ge=1, description="Levenberg-Marquardt iterations per fit")
    n_starts: int = Field(1, ge=1, description="starts per fit (the lowest chi2 is kept)")
    block_spectra: int = Field(1024, ge=1, description="spectra per Dask task")
    threads: int = Field(
        1, ge=1, description="torch threads per Dask thread (fixed: the same results on every cluster kind)"
    )
    cool_star_emulator: str | None = Field(
        "physical",
        description="independent cool-star Teff (P2 5.1's intrinsically-cool rule): a shipped set's name or a file; "
        "its 'cool' component is fitted (reused when the fit's emulator is that set); null = no check",
    )


FIT_STAGE_VERSION = "4"  # 4: a set's component chosen by its full-spectrum fit; 3: emulator sets, the cool-star check
CORR_NAMES = tuple(f"corr_{a}_{b}" for a, b in P2_TABLE5_CORRELATIONS)


def load_emulator_model(path: str) -> Any:
    """Loader of the runner's worker plugin."""
    from survey_scale.science.emulator import load

    return load(path)


def load_cool_star_model(path: str) -> Emulator:
    """Loader of the cool-star check's emulator: the ``cool`` component of a set, or the file's emulator."""
    from survey_scale.science.emulator import load
    from survey_scale.science.emulator_set import EmulatorSet
    from survey_scale.science.label_fit import COOL_STAR_COMPONENT

    em = load(path)
    return em.component(COOL_STAR_COMPONENT) if isinstance(em, EmulatorSet) else em


def set_torch_threads(n: int) -> None:
    """Worker setup: torch's thread count (``fit.threads``)."""
    from survey_scale.science.fitting import set_threads

    set_threads(n)


def fit_chunk(inputs: Mapping[str, np.ndarray], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Stage function: the §5.3 procedure on a chunk of normalized spectra, with every component of an
    emulator set, and the cool-star check."""
    from survey_scale.science.label_fit import fit_labels_set

    em = ctx.models["emulator"]
    out = fit_labels_set(
        em,
        inputs["norm_flux"],
        inputs["norm_ivar"],
        wavelength_grid(),
        pixmask=inputs["pixmask"],
        device=params["device"],
        cool_star=ctx.models.get("cool_star"),
        snr=inputs["snr_g"],
        bounds=(-params["bounds"], params["bounds"]),
        max_iter=params["max_iter"],
        n_starts=params["n_starts"],
    )
    out = to_label_order(out, em.label_names, params["label_names"])
    outputs = {
        "fit_component": out["component"],
        "teff_cool": out["teff_cool"],
        "chi2_red_cool": out["chi2_red_cool"],
        "chi2_red_hot": out["chi2_red_hot"],
        "labels": out["labels"],
        "label_err": out["errors"],
        "label_cov": out["cov"],
        "labels_full": out["full_labels"],
        "labels_hmask": out["hmask_labels"],
        "chi2_red": out["chi2_red"],
        "fit_n_iter": out["n_iter"],
        "fit_converged": out["converged"].astype(np.int8),
        "fit_flags": out["flags"],
        "labels_fitted": out["labels_fitted"],
        "vsini_raw": out["vsini_raw"],
        "teff_init": out["teff_init"],
        "w_hmask": out["w_hmask"],
        "model_flux": out["model_flux"],
        **{name: out["corr"][:, i] for i, name in enumerate(CORR_NAMES)},
    }
    rejects = [
        (int(i), "no_fit", "too few usable normalized pixels to fit the labels; labels are NaN")
        for i in np.flatnonzero(out["flags"] & FLAG_NO_DATA)
    ]
    return StageResult(outputs, rejects)


def fit_stage(
    emulator_path: Path,
    fitted: tuple[str, ...],
    fit: FitConfig,
    cool_star_path: Path | None = None,
    components: tuple[str, ...] = ("main",),
    keep_model_flux: bool = True,
) -> Stage:
    """The §5.3 stage for an emulator file fitting the labels ``fitted`` (an emulator set: its ``components``)
    and the ``fit`` configuration section; ``cool_star_path``: the cool-star check's emulator file (None: the
    set's own cool component, or no check); ``keep_model_flux``: store ``model_flux`` (else
    :func:`survey_scale.products.spectra.rebuild_model_flux` gives it from the labels)."""
    f4 = "float32"
    label_names = output_label_names(fitted)
    units = ", ".join(f"{n} [{LABEL_UNITS.get(n, '?')}]" for n in label_names)
    not_fitted = ", ".join(n for n in label_names if n not in fitted)
    flags = "; ".join(f"{bit}: {text}" for bit, text in FLAG_BITS.items())
    return Stage(
        name="fit",
        version=FIT_STAGE_VERSION,
        func=fit_chunk,
        inputs=("norm_flux", "norm_ivar", "pixmask", "snr_g"),
        outputs=(
            Output(
                "labels",
                f4,
                ("spec", "label"),
                {
                    "long_name": "stellar labels (P2 Eq. 5-7)",
                    "units": units,
                    "fitted_labels": ", ".join(fitted),
                    "not_fitted_labels": f"{not_fitted} (NaN: the emulator does not fit them)" if not_fitted else "",
                },
            ),
            Output("label_err", f4, ("spec", "label"), {"long_name": "formal label uncertainties"}),
            Output("label_cov", f4, ("spec", "label", "label2"), {"long_name": "label covariance"}),
            Output("labels_full", f4, ("spec", "label"), {"long_name": "labels of the full-spectrum fit"}),
            Output("labels_hmask", f4, ("spec", "label"), {"long_name": "labels of the H-masked fit"}),
            *(Output(n, f4, attrs={"long_name": f"correlation coefficient {n[5:]} (P2 Table 5)"}) for n in CORR_NAMES),
            Output("chi2_red", f4, attrs={"long_name": "reduced chi2 of the label fit"}),
            Output("fit_n_iter", "int32", attrs={"long_name": "Levenberg-Marquardt iterations"}),
            Output("fit_converged", "int8", attrs={"long_name": "1 = converged"}),
            Output("fit_flags", "uint8", attrs={"long_name": "label fit flags", "flag_meanings": flags}),
            Output(
                "labels_fitted",
                "uint16",
                attrs={
                    "long_name": "bit i set: label i was fitted; the others are NaN",
                    "flag_meanings": "; ".join(f"{1 << i}: {n}" for i, n in enumerate(label_names)),
                },
            ),
            Output("vsini_raw", f4, attrs={"long_name": "vsini before clipping at 0", "units": "km s-1"}),
            Output("teff_init", f4, attrs={"long_name": "initial Teff from line indices (P2 Eq. 4)", "units": "K"}),
            Output("w_hmask", f4, attrs={"long_name": "Hann weight of the H-masked labels (P2 Eq. 6)"}),
            *(
                [Output("model_flux", f4, ("spec", "wave"), {"long_name": "emulator spectrum at the labels"})]
                if keep_model_flux
                else []
            ),
            Output(
                "fit_component",
                "int8",
                attrs={
                    "long_name": "component of the emulator set whose fit has the lowest chi2 (kept)",
                    "flag_meanings": "; ".join(f"{i}: {name}" for i, name in enumerate(components)),
                },
            ),
            per_spectrum("teff_cool", f4, "Teff of the cool-star model's full-spectrum fit (P2 5.1)", "K"),
            per_spectrum("chi2_red_cool", f4, "reduced chi2 of the cool-star model's full-spectrum fit"),
            per_spectrum("chi2_red_hot", f4, "reduced chi2 of the best other model's full-spectrum fit"),
        ),
        params={
            "device": fit.device,
            "bounds": fit.bounds,
            "max_iter": fit.max_iter,
            "n_starts": fit.n_starts,
            "label_names": label_names,
            # a cube fitted without model_flux has none to give when it is asked for later: the fit re-runs
            **({} if keep_model_flux else {"keep_model_flux": False}),
        },
        models={
            "emulator": ModelRef(str(emulator_path), load_emulator_model),
            **({"cool_star": ModelRef(str(cool_star_path), load_cool_star_model)} if cool_star_path else {}),
        },
        dims={"label": label_names, "label2": label_names},
        block_rows=fit.block_spectra,
        worker_setup=partial(set_torch_threads, fit.threads),
    )


def cool_star_path(name: str | None, emulator: Emulator | EmulatorSet) -> Path | None:
    """The cool-star check's file for ``fit.cool_star_emulator`` (a shipped name or a file), or None where the
    fit's own emulator set has a cool component (it is fitted anyway) or the check is off."""
    from survey_scale.science.emulator import DEFAULT_EMULATORS, default_emulator_path
    from survey_scale.science.label_fit import COOL_STAR_COMPONENT

    if name is None or COOL_STAR_COMPONENT in getattr(emulator, "names", ()):
        return None
    if name in DEFAULT_EMULATORS:
        return default_emulator_path(name)
    if not Path(name).is_file():
        raise PipelineError(
            f"fit.cool_star_emulator {name}: file not found (nor a shipped emulator: {', '.join(DEFAULT_EMULATORS)})"
        )
    return Path(name)


def run(config: ConfigBase, engine: Engine) -> StageSummary:
    """Registry step ``fit``: the stage with the emulator of step ``emulator`` and the cool-star check."""
    path = engine.models["emulator"]
    em = load_emulator_model(path)
    cool = cool_star_path(config.fit.cool_star_emulator, em)
    components = tuple(getattr(em, "names", ("main",)))
    stage = fit_stage(path, tuple(em.label_names), config.fit, cool, components, config.cube.keep_model_flux)
    return engine.run_stage(stage)


STEPS = (
    Step(
        "fit",
        run,
        requires=("norm_flux", "norm_ivar", "pixmask", "snr_g", "model:emulator"),
        produces=output_names(fit_stage(Path("emulator.npz"), LABEL_NAMES, FitConfig()).outputs),
        description="the label fit (§5.3)",
        config={"fit": FitConfig},
    ),
)
