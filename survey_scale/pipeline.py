"""The whole pipeline: every step of the registry that is not done yet, in order (SPEC §11).

``run_pipeline(config)`` takes the writer lock, starts the cluster of ``config.cluster`` and calls
``run_pipeline_with_client(config, client)`` (the pair mirrors hats-import's ``pipeline`` /
``pipeline_with_client``), which runs the steps of :func:`survey_scale.stages.registry.default_registry`
— ingest, normalize, the PCA model and stage, the emulator, the label fit — on a
:class:`~survey_scale.engine.runner.DaskEngine`. The pipeline knows no step: adding one is an entry in the
registry.

Each step is skipped when up to date (chunk markers carry the stage version, configuration hash and model
hashes; models and reductions carry the key of their inputs), so ``survey-scale run`` after an append
processes only the new spectra, and a killed run resumes.

Every step run is recorded by the bookkeeping (its wall time and what it computed), and so is every model a
step makes; :func:`run_step` (``survey-scale <step>``) runs one step alone, after checking that the cube
holds what the step requires and taking the models of earlier steps from that record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client

from survey_scale.config import Config
from survey_scale.engine.contracts import PipelineError, StageSummary, Step, StepResult
from survey_scale.engine.runner import DaskEngine
from survey_scale.products.status import missing_requirements
from survey_scale.stages.ingest import IngestResult, IngestSummary
from survey_scale.stages.registry import Registry, default_registry
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import create_cube

log = logging.getLogger(__name__)


@dataclass
class PipelineSummary:
    """What a pipeline run did: each step's result and wall time (s) by step name, and the model files in use."""

    results: dict[str, StepResult] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ingest(self) -> list[IngestSummary]:
        """The ingest's batch summaries."""
        result = self.results.get("ingest")
        return result.batches if isinstance(result, IngestResult) else []

    @property
    def stages(self) -> list[StageSummary]:
        """What each stage step computed."""
        return [r for r in self.results.values() if isinstance(r, StageSummary)]

    def lines(self) -> list[str]:
        """What each step did, in run order (:meth:`StepResult.lines`)."""
        return [line for result in self.results.values() for line in result.lines()]


def run_pipeline_with_client(
    config: Config,
    client: Client,
    *,
    progress: bool = True,
    until: str | None = None,
    registry: Registry | None = None,
    require_spectra: bool = True,
    step_context: Callable[[str], AbstractContextManager[Any]] | None = None,
    lock_check: Callable[[], None] | None = None,
) -> PipelineSummary:
    """Run every step up to ``until`` (default: all) on ``client``; the caller holds the writer lock.

    ``step_context(name)``, if given, wraps each step (e.g. Dask's ``MemorySampler.sample``). ``lock_check``
    (the writer lock's :meth:`~survey_scale.store.lock.WriterLock.check`) is called before each step and before
    a step's run is recorded: a run that lost its lock stops and records nothing more.

    Raises
    ------
    PipelineError
        If ``until`` is not a step, a step needs a model that no earlier step made, or (``require_spectra``)
        the cube holds no spectra after a step — ``survey-scale ingest`` allows an ingest that adds none.
    """
    steps = (registry or default_registry()).until(until)
    engine = DaskEngine(Path(config.cube.path), client, progress=progress and config.runner.progress)
    summary = PipelineSummary(models=engine.models)
    for step in steps:
        missing = [item[6:] for item in step.requires if item.startswith("model:") and item[6:] not in engine.models]
        if missing:
            raise PipelineError(
                f"step {step.name} needs the model(s) {', '.join(missing)}, which no step before it made"
            )
        if lock_check is not None:
            lock_check()
        start = time.perf_counter()
        with step_context(step.name) if step_context else contextlib.nullcontext():
            summary.results[step.name] = run_recorded(step, config, engine, lock_check)
        summary.seconds[step.name] = time.perf_counter() - start
        if require_spectra and engine.n_spectra() == 0:
            raise PipelineError(
                f"{engine.cube}: the cube holds no spectra; ingest some first (ingest.input or --input)"
            )
    return summary


def step_record(result: StepResult, seconds: float) -> dict[str, Any]:
    """What the bookkeeping keeps of a step run: its wall ``seconds`` and the result's JSON record (a stage's
    chunk counts, an ingest's file counts, a model's path, a catalog's files, ...)."""
    return {"seconds": round(seconds, 3), **json.loads(json.dumps(result.record(), default=str))}


def run_recorded(
    step: Step, config: Config, engine: DaskEngine, lock_check: Callable[[], None] | None = None
) -> StepResult:
    """Run ``step`` on ``engine`` and record the run and the models it produced in the cube's bookkeeping (after
    ``lock_check()``, when given: a step whose run lost the writer lock is not recorded)."""
    log.debug("step %s: %s", step.name, step.description)
    t0 = time.perf_counter()
    result = step.resolve()(config, engine)
    if lock_check is not None:
        lock_check()
    for item in step.produces:
        if item.startswith("model:") and item[6:] in engine.models:
            engine.bookkeeping.record_model(item[6:], engine.models[item[6:]], step.name)
    engine.bookkeeping.record_step(step.name, step_record(result, time.perf_counter() - t0))
    return result


def run_step(config: Config, name: str, *, progress: bool = True, registry: Registry | None = None) -> StepResult:
    """Run the registry step ``name`` alone on the cube of ``config`` (``survey-scale <step>``) and return its
    result; the models of earlier steps are those the cube's bookkeeping records.

    Raises
    ------
    FileNotFoundError
        If there is no cube at ``config.cube.path``.
    PipelineError
        If the step is unknown or the cube lacks what it requires (the message names the step to run first).
    """
    from survey_scale.engine.cluster import dask_client
    from survey_scale.store.lock import WriterLock

    registry = registry or default_registry()
    step = registry.get(name)
    cube = Path(config.cube.path)
    if not (cube / "zarr.json").exists():
        raise FileNotFoundError(f"{cube}: no cube there (survey-scale ingest makes one)")
    problems = missing_requirements(cube, step, registry)
    if problems:
        raise PipelineError(f"{cube}: step {name} cannot run yet: " + "; ".join(problems))
    models = {k: Path(v["path"]) for k, v in Bookkeeping(cube).recorded_models().items()}
    with WriterLock(cube, config.runner.lock_stale_after_s) as lock, dask_client(config.cluster) as client:
        engine = DaskEngine(cube, client, progress=progress and config.runner.progress)
        engine.models.update({k[6:]: models[k[6:]] for k in step.requires if k.startswith("model:")})
        return run_recorded(step, config, engine, lock.check)


def run_pipeline(config: Config, **options: Any) -> PipelineSummary:
    """Run the pipeline with the cluster of ``config.cluster``, under the cube's writer lock (the cube is
    created if missing, once the lock is held: the lock lives in the cube's ``_survey_scale/`` folder, which
    :func:`~survey_scale.store.cube.create_cube` keeps); ``options`` (``progress``, ``until``, ``registry``,
    ``require_spectra``, ``step_context``) as for :func:`run_pipeline_with_client`, which checks the lock before
    each step."""
    from survey_scale.engine.cluster import dask_client
    from survey_scale.store.lock import WriterLock

    cube = Path(config.cube.path)
    with WriterLock(cube, config.runner.lock_stale_after_s) as lock:
        if not (cube / "zarr.json").exists():
            create_cube(cube, config.cube)
        with dask_client(config.cluster) as client:
            return run_pipeline_with_client(config, client, lock_check=lock.check, **options)
