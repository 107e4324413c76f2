"""The registry of pipeline steps: what ``survey-scale run`` does, in order (SPEC §11).

Each step module of :mod:`survey_scale.stages` exports ``STEPS``: its :class:`~survey_scale.engine.contracts.Step`
(s) — the function that runs it, what it requires and produces (cube variables, ``model:<name>`` files,
``catalog:<name>``; what a stage produces is derived from its declared outputs), its configuration section(s)
and the lines its summary prints. :data:`STEP_MODULES` lists the modules, one line each.
:meth:`Registry.ordered` sorts the steps so that each runs after the steps producing what it needs (registry
order breaks ties); ``--until`` takes its choices from :meth:`Registry.names`; :mod:`survey_scale.config`
assembles the configuration from :meth:`Registry.config_sections`.

Adding a step: a science module (``survey_scale/science/``), a step module (``survey_scale/stages/``) exporting
``STEPS`` with its configuration section, and one line in :data:`STEP_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence

from survey_scale.engine.contracts import PipelineError, Step

STEP_MODULES: tuple[str, ...] = (
    "survey_scale.stages.ingest",
    "survey_scale.stages.normalize",
    "survey_scale.stages.pca",
    "survey_scale.stages.emulator",
    "survey_scale.stages.fit",
    "survey_scale.stages.uniqflag",
    "survey_scale.stages.chi2ratio",
    "survey_scale.stages.bad_spectra",
    "survey_scale.stages.repeats",
    "survey_scale.stages.extinction",
    "survey_scale.stages.final_sample",
    "survey_scale.stages.mks",
    "survey_scale.stages.distances",
    "survey_scale.stages.export",
)
"""The step modules, in registry order (each exports ``STEPS``)."""


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

    def config_sections(self) -> dict[str, type]:
        """Every step's configuration sections (YAML key → model), in registry order.

        Raises
        ------
        PipelineError
            If two steps declare different models under one key.
        """
        sections: dict[str, type] = {}
        owner: dict[str, str] = {}
        for step in self._steps.values():
            for key, model in step.config.items():
                if sections.setdefault(key, model) is not model:
                    raise PipelineError(
                        f"configuration section {key!r}: steps {owner[key]} and {step.name} declare different models"
                    )
                owner.setdefault(key, step.name)
        return sections

    def renamed_keys(self) -> dict[str, str]:
        """Every step's deprecated configuration keys (old dotted key → new dotted key)."""
        return {old: new for step in self._steps.values() for old, new in step.renamed_keys.items()}

    def until(self, name: str | None) -> list[Step]:
        """The steps in run order up to and including ``name`` (all of them for None)."""
        steps = self.ordered()
        if name is None:
            return steps
        names = [s.name for s in steps]
        if name not in names:
            raise PipelineError(f"until must be one of {', '.join(names)}, got {name!r}")
        return steps[: names.index(name) + 1]


def steps_of(modules: Sequence[str]) -> list[Step]:
    """The ``STEPS`` of each module in ``modules``, in order."""
    out: list[Step] = []
    for name in modules:
        module = importlib.import_module(name)
        if not hasattr(module, "STEPS"):
            raise PipelineError(f"step module {name} exports no STEPS")
        out.extend(module.STEPS)
    return out


def default_registry(extra: Sequence[str] = ()) -> Registry:
    """The pipeline of SPEC §2–§9 and §13 — ingest, normalize, the PCA model and stage, the emulator, the label
    fit, the survey-wide reductions (uniqflag, chi2ratio, erroneous spectra, repeat precision and calibrated
    errors), extinction, the final-sample rules, the MKs model and stage, distances, the export — from
    :data:`STEP_MODULES`, then the steps of the modules ``extra``."""
    return Registry(steps_of((*STEP_MODULES, *extra)))
