"""What each pipeline step has left in a cube, and what a step still lacks before it can run (SPEC §11).

A step's status comes from what it produces (the registry says what): a cube variable is *done* when the cube
has it and the stage that writes it has a done marker on every row (an append leaves new rows to do), a model
when the bookkeeping records its file, a catalog when the step's last recorded run wrote it. Used by
``survey-scale <step>`` (:func:`missing_requirements`) and by the report (:func:`step_statuses`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from survey_scale.engine.contracts import Step
from survey_scale.stages.registry import Registry, default_registry
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_group, spec_length

DONE, PARTIAL, MISSING = "done", "partial", "not run"


@dataclass
class ItemStatus:
    """One thing a step requires or produces: a cube variable, ``model:<name>`` or ``catalog:<name>``."""

    item: str
    state: str
    """:data:`DONE`, :data:`PARTIAL` or :data:`MISSING`."""
    detail: str = ""
    """Why it is not done (rows left, a file gone), or where it is (a model's path)."""
    stage: str | None = None
    """The runner stage whose markers cover a variable (its ``provenance_stage``), if any."""


@dataclass
class StepStatus:
    """A registry step in a cube: its state, what it produced, the stages and models behind it."""

    step: Step
    state: str
    items: list[ItemStatus] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        """The runner stages that wrote this step's variables (their markers hold the chunk times)."""
        return sorted({i.stage for i in self.items if i.stage})

    @property
    def missing(self) -> list[ItemStatus]:
        return [i for i in self.items if i.state != DONE]


class CubeState:
    """Reads a cube once to answer for any item: its rows, variables, bookkeeping and recorded models."""

    def __init__(self, cube: str | Path) -> None:
        self.cube = Path(cube)
        self.root = open_group(self.cube)
        self.n = spec_length(self.root)
        self.books = Bookkeeping(self.cube)
        self.models = self.books.recorded_models()
        self.stage_attrs: dict[str, Any] = dict(self.root.attrs.get("stages", {}))

    def item(self, item: str, producer: str | None = None) -> ItemStatus:
        """The status of ``item`` (``producer``: the step that makes it, for a catalog's record)."""
        if item.startswith("model:"):
            return self._model(item)
        if item.startswith("catalog:"):
            return self._catalog(item, producer)
        if item not in self.root:
            return ItemStatus(item, MISSING, "not in the cube")
        stage = self.root[item].attrs.get("provenance_stage")
        if stage is None or self.n == 0:
            return ItemStatus(item, DONE)  # written whole by a reduction (write_columns)
        gaps = self.books.rows_not_done(str(stage), self.n)
        if not gaps:
            return ItemStatus(item, DONE, stage=str(stage))
        rows = ", ".join(f"{a}:{b}" for a, b in gaps[:3]) + (", ..." if len(gaps) > 3 else "")
        return ItemStatus(item, PARTIAL, f"rows {rows} of {self.n} not computed", str(stage))

    def _model(self, item: str) -> ItemStatus:
        name = item[6:]
        record = self.models.get(name)
        if record is not None:
            if Path(record["path"]).is_file():
                return ItemStatus(item, DONE, record["path"])
            return ItemStatus(item, MISSING, f"the recorded file {record['path']} is gone")
        # a cube made before models were recorded: a stage that used the model names its hash
        used = [s for s, prov in self.stage_attrs.items() if name in (prov.get("model_hashes") or {})]
        if used:
            return ItemStatus(item, DONE, f"used by stage {used[0]} (file not recorded in the bookkeeping)")
        return ItemStatus(item, MISSING, "no model recorded in the cube's bookkeeping")

    def _catalog(self, item: str, producer: str | None) -> ItemStatus:
        runs = self.books.step_history(producer) if producer else []
        outputs = (runs[-1].get("outputs") or {}) if runs else {}
        name = item[8:]
        files = [Path(p) for p in outputs.values() if Path(p).name.startswith(name)]
        if files and all(p.exists() for p in files):
            folders = sorted({str(p.parent) for p in files})
            return ItemStatus(item, DONE, f"{', '.join(sorted(p.name for p in files))} in {', '.join(folders)}")
        if files:
            return ItemStatus(item, MISSING, "the recorded catalog files are gone")
        # a cube exported before step runs were recorded: the default folder, "catalogs" beside the cube
        found = [p for p in (self.cube.parent / "catalogs").glob(f"{name}.*") if p.suffix in (".parquet", ".fits")]
        if found:
            return ItemStatus(item, DONE, f"{found[0].parent} (found in the default folder; no export recorded)")
        return ItemStatus(item, MISSING, "no export recorded")


def step_statuses(cube: str | Path, registry: Registry | None = None) -> list[StepStatus]:
    """Every step of ``registry`` (default: the pipeline's) in run order, with the status of what it produces:
    done when all of it is, not run when none of it is, partial otherwise."""
    state = CubeState(cube)
    out = []
    for step in (registry or default_registry()).ordered():
        items = [state.item(item, step.name) for item in step.produces]
        states = {i.state for i in items}
        overall = DONE if states <= {DONE} else MISSING if states <= {MISSING} else PARTIAL
        out.append(StepStatus(step, overall, items))
    return out


def missing_requirements(cube: str | Path, step: Step, registry: Registry | None = None) -> list[str]:
    """What ``step`` requires that the cube lacks, one sentence each, naming the step to run first.

    A variable is missing when the cube does not have it or when the stage that writes it has not finished
    every row (after an append, say); a ``model:<name>`` when the bookkeeping records no such file (or it is
    gone). An empty list: the step can run.
    """
    registry = registry or default_registry()
    state = CubeState(cube)

    def first(item: str) -> str:
        makers = [name for name in registry.producers(item) if name != step.name]
        if makers:
            return f"run `survey-scale {makers[0]}` first"
        return "it comes from the ingest's catalog or cross-match"

    problems = []
    if state.n == 0:
        problems.append(f"the cube holds no spectra ({first('flux')})")
    for item in step.requires:
        status = state.item(item)
        if item.startswith("model:"):
            # running a step alone needs the model's file, which only a recorded model gives
            if item[6:] not in state.models:
                problems.append(f"no {item[6:]} model is recorded in the cube's bookkeeping ({first(item)})")
            elif status.state != DONE:
                problems.append(f"the {item[6:]} model: {status.detail} ({first(item)})")
        elif status.state != DONE:
            what = f"the cube has no variable {item!r}" if status.state == MISSING else f"{item!r}: {status.detail}"
            problems.append(f"{what} ({first(item)})")
    return problems


__all__ = [
    "DONE",
    "MISSING",
    "PARTIAL",
    "CubeState",
    "ItemStatus",
    "StepStatus",
    "missing_requirements",
    "step_statuses",
]
