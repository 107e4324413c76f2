"""The contracts between the engine and the science: stages, reductions and pipeline steps (SPEC §1, §11).

This module imports neither Dask nor Zarr nor any science: a stage module (``survey_scale.stages``) needs
only these types, and its chunk function is tested on plain numpy without a cluster.

- A :class:`Stage` is a pure function from an in-memory chunk of cube variables to output variables (numpy
  in, numpy out), with its name, version, parameters and model files. The runner maps it over the cube's
  shards and keeps the bookkeeping (done markers, chunk results, rejects, provenance).
- A reduction is a survey-wide computation over rows (the PCA's Gram matrix) or over the visits of each
  star wherever their shards are (:meth:`Engine.reduce_by_star`). Their cached results are stamped with a
  key of their inputs and re-used while those inputs are unchanged (:meth:`Engine.cached`).
- A :class:`Step` is one entry of the pipeline's registry: what it requires and produces (variables of the
  cube, or ``model:<name>`` files), and the function that runs it on an :class:`Engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from survey_scale.core.errors import SurveyScaleError

if TYPE_CHECKING:  # pragma: no cover - typing only: the contracts import no store (no Zarr)
    from survey_scale.store.bookkeeping import Bookkeeping


@dataclass(frozen=True)
class Output:
    """One output variable of a stage.

    ``dims`` starts with ``spec``. A purely per-spectrum output (``("spec",)``) is collected from the chunks
    and stored as one chunk; any other is written into the cube chunk by chunk. ``dtype`` ``"str"`` is a
    variable-length string.
    """

    name: str
    dtype: str
    dims: tuple[str, ...] = ("spec",)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_spectrum(self) -> bool:
        return self.dims == ("spec",)


def output_names(outputs: Sequence[Output]) -> tuple[str, ...]:
    """The names of ``outputs`` (what a step that writes them produces)."""
    return tuple(o.name for o in outputs)


def per_spectrum(name: str, dtype: str, long_name: str, units: str = "") -> Output:
    """A per-spectrum :class:`Output` with its ``long_name`` and (when given) ``units`` attributes."""
    return Output(name, dtype, attrs={"long_name": long_name, **({"units": units} if units else {})})


@dataclass(frozen=True)
class ModelRef:
    """A model file a stage uses: loaded once per worker by ``loader(path)``, its SHA-256 in provenance."""

    path: str
    loader: Callable[[str], Any]


@dataclass(frozen=True)
class ChunkContext:
    """What a stage function knows about its chunk besides its inputs: rows [start, stop) and the models."""

    start: int
    stop: int
    models: Mapping[str, Any]


@dataclass
class StageResult:
    """A stage function's outputs for one chunk.

    ``outputs`` maps each output name to an array whose first axis is the chunk's rows; ``rejects`` lists
    ``(row within the chunk, code, reason)`` for spectra the stage could not process (their outputs are
    still written, as NaN or flags, so that rows stay aligned).
    """

    outputs: dict[str, np.ndarray]
    rejects: list[tuple[int, str, str]] = field(default_factory=list)


StageFunction = Callable[[Mapping[str, Any], Mapping[str, Any], ChunkContext], StageResult]


@dataclass(frozen=True)
class Stage:
    """A stage: a pure function mapped by the runner over the cube's chunks.

    Attributes
    ----------
    name
        Stage name (markers, provenance, rejects).
    version
        Bumped when the algorithm changes; a new version re-runs every chunk.
    func
        ``func(inputs, params, ctx) -> StageResult``, a module-level function (pickled by reference).
    inputs
        Cube variables read for each chunk (rows ``ctx.start:ctx.stop``).
    outputs
        Variables the stage writes.
    params
        JSON-serialisable parameters passed to ``func``; hashed into provenance.
    models
        Model files (name → :class:`ModelRef`); their SHA-256 goes into provenance.
    dims
        Sizes (int) or coordinate values (sequence) of the extra dims the outputs use, e.g.
        ``{"label": LABEL_NAMES}``.
    load_inputs
        Optional ``load_inputs(cube, start, stop, params) -> dict`` used instead of reading cube variables (a
        source stage such as the ingest reads files); ``cube`` is the cube's path, so that ``params`` can name
        files inside it relative to it (a cube moved or copied elsewhere keeps its provenance).
    block_rows
        If set, a chunk is computed in blocks of this many rows by separate tasks (spreading a chunk over
        the workers) and written by one task that gathers them; default one task per chunk.
    worker_setup
        Optional ``worker_setup()``, called once per worker before the models load (a torch stage sets its
        thread count there: a number from its configuration, never derived from the cluster, so that the
        same configuration gives the same results on every cluster kind).
    """

    name: str
    version: str
    func: StageFunction
    inputs: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, ModelRef] = field(default_factory=dict)
    dims: Mapping[str, int | Sequence[Any]] = field(default_factory=dict)
    load_inputs: Callable[[str, int, int, Mapping[str, Any]], dict[str, Any]] | None = None
    block_rows: int | None = None
    worker_setup: Callable[[], None] | None = None


class StageError(SurveyScaleError, RuntimeError):
    """Chunks of a stage failed; the message lists them. Finished chunks are kept: re-run to resume."""


class PipelineError(SurveyScaleError, RuntimeError):
    """A step cannot run (e.g. too few training spectra); the message says what to change."""


class StepResult(Protocol):
    """What a step's ``run`` returns: its record for the cube's bookkeeping and the lines the CLI prints."""

    def record(self) -> dict[str, Any]:
        """A JSON-able summary (kept with the step's wall time in the bookkeeping; the report reads it)."""
        ...

    def lines(self) -> list[str]:
        """What ``survey-scale run`` and ``survey-scale <step>`` print."""
        ...


@dataclass
class StageSummary:
    """What one run of a stage did (a :class:`StepResult`)."""

    stage: str
    n_chunks: int
    n_done_before: int
    n_computed: int
    n_rejects: int
    seconds: float

    def record(self) -> dict[str, Any]:
        return {
            "n_chunks": self.n_chunks,
            "n_done_before": self.n_done_before,
            "n_computed": self.n_computed,
            "n_rejects": self.n_rejects,
            "stage": self.stage,
        }

    def lines(self) -> list[str]:
        return [
            f"{self.stage}: {self.n_computed} of {self.n_chunks} chunks computed "
            f"({self.n_done_before} up to date), {self.n_rejects} rejects, {self.seconds:.1f} s"
        ]


@dataclass
class ModelResult:
    """A model file a step made or kept (``engine.models[name]``)."""

    name: str
    path: Path

    def record(self) -> dict[str, Any]:
        return {"model": str(self.path)}

    def lines(self) -> list[str]:
        return [f"{self.name} model: {self.path}"]


@dataclass
class ColumnsResult:
    """Per-spectrum columns a reduction wrote, or found up to date."""

    names: tuple[str, ...]
    rewrote: bool

    def record(self) -> dict[str, Any]:
        return {"rewrote": self.rewrote}

    def lines(self) -> list[str]:
        return [f"{', '.join(self.names)}: {'written' if self.rewrote else 'up to date'}"]


@dataclass
class CatalogResult:
    """Catalog files a step wrote, by format (``<format>``, ``distances_<format>``)."""

    paths: dict[str, Path]

    def record(self) -> dict[str, Any]:
        return {"outputs": {k: str(v) for k, v in self.paths.items()}}

    def lines(self) -> list[str]:
        return [f"catalog ({fmt}): {path}" for fmt, path in self.paths.items()]


@dataclass(frozen=True)
class TaskFailure:
    """A task of :meth:`Engine.map_tasks` that failed: the exception's type name and message.

    ``kind`` ``"KilledWorker"`` means the worker process died running it (killed, out of memory, crashed)
    on every worker that tried.
    """

    kind: str
    message: str


RowBlock = Callable[[dict[str, np.ndarray], Mapping[str, Any]], Any]
"""``block(data, params)``: ``data`` maps each variable to its values at the block's rows."""

StarBlock = Callable[[dict[str, np.ndarray], np.ndarray, Mapping[str, Any]], Any]
"""``block(data, star, params)``: the rows of whole stars; ``star`` (n,) numbers them 0..m-1 in the block."""


class Engine(Protocol):
    """What a pipeline step may ask of the engine (implemented on Dask by :mod:`survey_scale.engine.runner`).

    Every operation reads the cube itself, task by task: nothing loads the cube into one process.
    """

    cube: Path
    bookkeeping: Bookkeeping
    models: dict[str, Path]
    """Model files produced by the steps run so far (``name → path``)."""

    def n_spectra(self) -> int:
        """Rows of the cube."""
        ...

    def resize(self, n: int) -> None:
        """Grow (or shrink) every per-spectrum array to ``n`` rows (new rows at the fill value)."""
        ...

    def run_stage(self, stage: Stage, rows: tuple[int, int] | None = None) -> StageSummary:
        """Map ``stage`` over the chunks not yet done with its provenance."""
        ...

    def map_tasks(
        self,
        name: str,
        func: Callable[..., Any],
        items: Sequence[tuple[Any, ...]],
        sizes: Sequence[int] | None = None,
        unit: str = "task",
        errors: str = "raise",
        shared: tuple[Any, ...] = (),
    ) -> list[Any]:
        """Run ``func(*shared, *item)`` for every item on the cluster and return the results in order (the
        progress bar counts ``sizes`` in ``unit``, or tasks). ``shared``: objects every task reads (a large
        array), sent to the workers once rather than with each task. ``errors="return"``: a failed task's
        result is a :class:`TaskFailure` instead of an exception that stops the run."""
        ...

    def reduce_rows(
        self,
        variables: Sequence[str],
        rows: np.ndarray,
        block: RowBlock,
        combine: Callable[[Any, Any], Any],
        params: Mapping[str, Any] | None = None,
        block_rows: int = 2048,
    ) -> Any:
        """Fold ``block`` over groups of ``rows`` with the commutative, associative ``combine``."""
        ...

    def map_rows(
        self,
        variables: Sequence[str],
        rows: np.ndarray,
        block: RowBlock,
        params: Mapping[str, Any] | None = None,
        block_rows: int = 2048,
    ) -> dict[str, np.ndarray]:
        """Per-row outputs of ``block`` over groups of ``rows``, concatenated in row order."""
        ...

    def reduce_by_star(
        self,
        variables: Sequence[str],
        block: StarBlock,
        params: Mapping[str, Any] | None = None,
        combine: Callable[[Any, Any], Any] | None = None,
        block_rows: int = 2048,
    ) -> Any:
        """``block`` over all visits of each star (grouped by ``star_id``, wherever their shards are)."""
        ...

    def read_column(self, name: str) -> np.ndarray:
        """A whole per-spectrum variable."""
        ...

    def variable_attrs(self, name: str) -> dict[str, Any]:
        """A variable's attributes (its provenance among them)."""
        ...

    def model_path(self, name: str) -> Path:
        """Where the bookkeeping keeps the model file ``name``."""
        ...

    def cached(self, name: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The stored result of reduction ``name`` if it carries ``key``; else ``compute()``, stored with it."""
        ...

    def input_key(self, variables: Sequence[str], *parts: Any) -> str:
        """A key of the cube's rows, the provenance of ``variables`` and ``parts`` (for :meth:`cached`)."""
        ...

    def write_columns(
        self,
        name: str,
        key: str,
        compute: Callable[[], Mapping[str, np.ndarray]],
        attrs: Mapping[str, Mapping[str, Any]],
    ) -> bool:
        """Write the per-spectrum variables ``compute()`` returns (named by ``attrs``) unless they carry ``key``."""
        ...

    def record_reduction(self, name: str, summary: Mapping[str, Any]) -> None:
        """Keep a reduction's coefficients with provenance in the cube's attributes (``survey-scale info``)."""
        ...

    def has_variable(self, name: str) -> bool:
        """Whether the cube has variable ``name``."""
        ...

    def write_catalog(
        self,
        name: str,
        variables: Sequence[str],
        block: RowBlock,
        params: Mapping[str, Any],
        out: Path,
        formats: Sequence[str],
        meta: Mapping[str, Mapping[str, str]],
        key: str,
        block_rows: int = 131072,
        hats: Mapping[str, Any] | None = None,
    ) -> dict[str, Path]:
        """Catalog ``name`` in ``formats`` (fits, parquet, hats) in folder ``out``, streamed: ``block(data,
        params)`` turns rows of ``variables`` into columns; ``meta`` gives each column's unit and description;
        ``hats`` are hats-import options. Nothing is written when ``out`` already holds it with ``key``."""
        ...


@dataclass(frozen=True)
class Step:
    """One entry of the pipeline's registry.

    Attributes
    ----------
    name
        The step's name (``survey-scale run --until NAME``).
    run
        ``run(config, engine) -> StepResult`` (:class:`StageSummary`, :class:`ModelResult`,
        :class:`ColumnsResult`, :class:`CatalogResult`, or a step's own), or ``"module:function"`` imported when
        the step runs. A stage step calls ``engine.run_stage``; a model step stores its file in ``engine.models``.
    requires
        Cube variables and ``model:<name>`` files the step reads; the pipeline orders steps by them.
    produces
        Cube variables and ``model:<name>`` files the step makes.
    description
        One line for ``--help`` and the logs.
    config
        The configuration sections the step owns (YAML key → pydantic model; :mod:`survey_scale.config`
        assembles them). Steps of one module may share a section (the same class).
    renamed_keys
        Deprecated dotted keys of earlier versions → their new dotted keys; old files still load, with a
        deprecation line naming each.
    summary
        ``summary(record)``: the lines ``survey-scale info`` and the report print for the step, from the
        step's record in the cube's bookkeeping (its JSON summary, and the reduction it recorded under the
        step's name, if any). ``None``: the bookkeeping's record alone.
    """

    name: str
    run: Callable[[Any, Engine], StepResult] | str
    requires: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    description: str = ""
    config: Mapping[str, type] = field(default_factory=dict)
    renamed_keys: Mapping[str, str] = field(default_factory=dict)
    summary: Callable[[Mapping[str, Any]], list[str]] | None = None

    def resolve(self) -> Callable[[Any, Engine], StepResult]:
        """The step's function (importing its module if it is given as ``"module:function"``)."""
        if callable(self.run):
            return self.run
        import importlib

        module, _, func = self.run.partition(":")
        return getattr(importlib.import_module(module), func)
