"""The registry of pipeline steps: what ``survey-scale run`` does, in order (SPEC §11).

Each :class:`~survey_scale.engine.contracts.Step` names the function that runs it (``"module:function"``,
imported only when the step runs) and what it requires and produces — cube variables, or ``model:<name>``
files. :meth:`Registry.ordered` sorts the steps so that each runs after the steps producing what it needs
(registry order breaks ties); ``--until`` takes its choices from :meth:`Registry.names`.

Adding a stage: a science module (``survey_scale/science/``), a stage module (``survey_scale/stages/``)
with a ``run(config, engine)``, its configuration section (:mod:`survey_scale.config`), and one entry here.
"""

from __future__ import annotations

from collections.abc import Iterable

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.engine.contracts import PipelineError, Step

INGEST_OUTPUTS = ("flux", "ivar", "pixmask", "specid", "star_id", "source_path", "snr_g", "mjd", "release")
NORMALIZE_OUTPUTS = ("norm_flux", "norm_ivar", "clean_fraction")
PCA_OUTPUTS = ("pca_coeff", "pca_flux", "halpha_excess", "halpha_excess_err", "halpha_chi2", "pca_chi2")
PCA_OUTPUTS += ("pca_local_z", "em_flag")
FIT_OUTPUTS = ("labels", "label_err", "label_cov", "labels_full", "labels_hmask", "chi2_red", "fit_flags")
FIT_OUTPUTS += ("fit_n_iter", "fit_converged", "labels_fitted", "vsini_raw", "teff_init", "w_hmask", "model_flux")
FIT_OUTPUTS += ("fit_component", "teff_cool", "chi2_red_cool", "chi2_red_hot")
BAD_SPECTRA_INPUTS = ("flux", "norm_flux", "norm_ivar", "pixmask", "model_flux", "snr_g", "em_flag", "pca_chi2")
BAD_SPECTRA_INPUTS += ("pca_local_z", "halpha_chi2", "chi2ratio", "chi2_red", "rv")
BAD_SPECTRA_OUTPUTS = ("fit_local_z", "wave_shift_z", "wave_shift_pixels", "wave_shift_lo", "wave_shift_hi")
BAD_SPECTRA_OUTPUTS += ("flux_step_z", "model:telluric", "model:continuum_steps", "bad_spectrum_flag")
BAD_SPECTRA_OUTPUTS += ("bad_spectrum_reason",)
CALIBRATED_ERRORS = tuple(f"{name}_err" for name in LABEL_NAMES)
EXTINCTION_OUTPUTS = ("ebv", "ebv_err", "ebv_n_colors", "aks", "aks_err", "parallax_offset", "mks_geo", "mks_geo_err")
MKS_OUTPUTS = ("mks", "mks_err", "mks_network")
DISTANCE_OUTPUTS = ("parallax_s", "parallax_s_err", "snr_dparallax", "binary_flag", "dis", "dis_low", "dis_high")
DISTANCE_OUTPUTS += ("logdis", "logdis_err", "dis_parallax_only", "X", "Y", "Z")
FINAL_SAMPLE_INPUTS = ("fit_flags", "labels", "chi2ratio", "flag_chi2ratio", "teff_cool", "chi2_red_cool")
FINAL_SAMPLE_INPUTS += ("chi2_red_hot", "ebv")
FINAL_SAMPLE_OUTPUTS = ("bp_rp0", "flag_teff_lt_7000", "flag_snr_lt_5", "flag_not_converged", "flag_cool_star")
FINAL_SAMPLE_OUTPUTS += ("flag_non_stellar", "final_sample")
EXPORT_INPUTS = ("uniqflag", "chi2ratio", "flag_chi2ratio", "bad_spectrum_flag", "bad_spectrum_reason")
EXPORT_INPUTS += FINAL_SAMPLE_OUTPUTS
EXPORT_INPUTS += CALIBRATED_ERRORS + DISTANCE_OUTPUTS


class Registry:
    """An ordered collection of pipeline steps with unique names."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: dict[str, Step] = {}
        for step in steps:
            self.add(step)

    def add(self, step: Step) -> Registry:
        """Add ``step`` (a name already present is refused)."""
        if step.name in self._steps:
            raise PipelineError(f"pipeline step {step.name!r} is registered twice")
        self._steps[step.name] = step
        return self

    def ordered(self) -> list[Step]:
        """The steps, each after every step that produces something it requires (stable otherwise).

        Raises
        ------
        PipelineError
            If the requirements form a cycle.
        """
        producers: dict[str, set[str]] = {}
        for step in self._steps.values():
            for item in step.produces:
                producers.setdefault(item, set()).add(step.name)
        needs = {
            step.name: {p for item in step.requires for p in producers.get(item, ()) if p != step.name}
            for step in self._steps.values()
        }
        order: list[Step] = []
        done: set[str] = set()
        while len(order) < len(self._steps):
            ready = [s for s in self._steps.values() if s.name not in done and needs[s.name] <= done]
            if not ready:
                left = sorted(set(self._steps) - done)
                raise PipelineError(f"pipeline steps {', '.join(left)} require each other (a cycle)")
            order.append(ready[0])
            done.add(ready[0].name)
        return order

    def get(self, name: str) -> Step:
        """The step called ``name``.

        Raises
        ------
        PipelineError
            If there is no such step.
        """
        if name not in self._steps:
            raise PipelineError(f"no pipeline step {name!r}; the steps are {', '.join(self.names())}")
        return self._steps[name]

    def producers(self, item: str) -> list[str]:
        """The steps that produce ``item`` (a cube variable or ``model:<name>``), in run order."""
        return [step.name for step in self.ordered() if item in step.produces]

    def names(self) -> list[str]:
        """Step names in run order (the choices of ``--until``)."""
        return [step.name for step in self.ordered()]

    def until(self, name: str | None) -> list[Step]:
        """The steps in run order up to and including ``name`` (all of them for None)."""
        steps = self.ordered()
        if name is None:
            return steps
        names = [s.name for s in steps]
        if name not in names:
            raise PipelineError(f"until must be one of {', '.join(names)}, got {name!r}")
        return steps[: names.index(name) + 1]


def default_registry() -> Registry:
    """The pipeline of SPEC §2–§9 and §13: ingest, normalize, the PCA model and stage, the emulator, the label
    fit, the survey-wide reductions (uniqflag, chi2ratio, erroneous spectra, repeat precision and calibrated
    errors), extinction, the final-sample rules, the MKs model and stage, distances, the export."""
    return Registry(
        [
            Step(
                "ingest",
                "survey_scale.stages.ingest:ingest_batches",
                produces=INGEST_OUTPUTS,
                description="LAMOST FITS files -> cube (§2)",
            ),
            Step(
                "normalize",
                "survey_scale.stages.normalize:run",
                requires=("flux", "ivar", "pixmask"),
                produces=NORMALIZE_OUTPUTS,
                description="pseudo-continuum normalization (§3)",
            ),
            Step(
                "pca_model",
                "survey_scale.stages.pca:run_model",
                requires=("norm_flux", "norm_ivar", "clean_fraction", "snr_g"),
                produces=("model:pca",),
                description="the iterated PCA fit (§4)",
            ),
            Step(
                "pca",
                "survey_scale.stages.pca:run",
                requires=("norm_flux", "norm_ivar", "model:pca"),
                produces=PCA_OUTPUTS,
                description="PCA reconstruction, emission and erroneous-spectrum flags (§4)",
            ),
            Step(
                "emulator",
                "survey_scale.stages.emulator:run",
                produces=("model:emulator",),
                description="the spectral emulator: given, or trained on a model grid (§5.1)",
            ),
            Step(
                "fit",
                "survey_scale.stages.fit:run",
                requires=("norm_flux", "norm_ivar", "pixmask", "snr_g", "model:emulator"),
                produces=FIT_OUTPUTS,
                description="the label fit (§5.3)",
            ),
            Step(
                "uniqflag",
                "survey_scale.stages.uniqflag:run",
                requires=("snr_g", "star_id"),
                produces=("uniqflag",),
                description="visits of each star ranked by S/N (§13)",
            ),
            Step(
                "chi2ratio",
                "survey_scale.stages.chi2ratio:run",
                requires=("labels", "chi2_red", "snr_g"),
                produces=("chi2ratio", "flag_chi2ratio"),
                description="the survey's chi2 model and chi2ratio (§6, P2 §5.2)",
            ),
            Step(
                "bad_spectra",
                "survey_scale.stages.bad_spectra:run",
                requires=BAD_SPECTRA_INPUTS,
                produces=BAD_SPECTRA_OUTPUTS,
                description="erroneous spectra from the PCA, the fit, chi2ratio and H-alpha (§4, P1 App. A)",
            ),
            Step(
                "repeats",
                "survey_scale.stages.repeats:run",
                requires=("labels", "label_err", "fit_flags", "snr_g"),
                produces=CALIBRATED_ERRORS,
                description="repeat-visit precision and calibrated errors (§6, P2 §4.6, §5.6)",
            ),
            Step(
                "extinction",
                "survey_scale.stages.extinction:run",
                requires=("labels",),
                produces=EXTINCTION_OUTPUTS,
                description="E(B-V), A_Ks and the geometric MKs (§7, §8)",
            ),
            Step(
                "final_sample",
                "survey_scale.stages.final_sample:run",
                requires=FINAL_SAMPLE_INPUTS,
                produces=FINAL_SAMPLE_OUTPUTS,
                description="P2 5.1's final-sample rules, one flag each, and final_sample (§13)",
            ),
            Step(
                "mks_model",
                "survey_scale.stages.mks:run_model",
                requires=("pca_flux", "em_flag", "bad_spectrum_flag", "mks_geo", "mks_geo_err", "aks"),
                produces=("model:mks",),
                description="the MKs networks and their MCMC uncertainty model (§8)",
            ),
            Step(
                "mks",
                "survey_scale.stages.mks:run",
                requires=("pca_flux", "em_flag", "model:mks"),
                produces=MKS_OUTPUTS,
                description="spectroscopic MKs of every spectrum (§8)",
            ),
            Step(
                "distances",
                "survey_scale.stages.distances:run",
                requires=("mks", "mks_err", "aks", "aks_err", "parallax_offset"),
                produces=DISTANCE_OUTPUTS,
                description="binary flags, distances, X, Y, Z (§9)",
            ),
            Step(
                "export",
                "survey_scale.stages.export:run",
                requires=EXPORT_INPUTS,
                produces=("catalog:labels", "catalog:distances"),
                description="the catalogs of §13: FITS, Parquet, HATS",
            ),
        ]
    )
