"""The building blocks of the configuration (SPEC §11): a section, the error, the root of the whole.

Each layer defines the sections it reads, beside the code that reads them — the cube's in
:mod:`survey_scale.store.cube`, the runner's and the clusters' in :mod:`survey_scale.engine`, each pipeline
step's in its step module — and :mod:`survey_scale.config` assembles them with the registry's steps into the
one YAML configuration (``configs/default.yaml`` is generated from it). Nothing here knows a section.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.files import stable_hash


class ConfigError(SurveyScaleError, ValueError):
    """The configuration is invalid; the message names the file and the key."""


class Section(BaseModel):
    """A configuration section: unknown keys are refused, assignments validated. The docstring's first line and
    each field's ``description`` are the comments of ``configs/default.yaml`` (``survey-scale config defaults``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    EXECUTION_KEYS: ClassVar[frozenset[str]] = frozenset({"block_spectra", "threads", "device"})
    """Keys that say how a step runs, not what it computes: a kept model's key leaves them out."""

    def science_json(self) -> str:
        """The section's values without :attr:`EXECUTION_KEYS`, as JSON: what a kept model's key hashes (a model
        is retrained when its scientific settings change, never for a new block size, thread count or device)."""
        return self.model_dump_json(exclude=set(self.EXECUTION_KEYS & set(type(self).model_fields)))


class SurveyConfig(Section):
    """Survey-wide settings of the steps that read every spectrum of the survey (SPEC §6)."""

    snr_column: str = Field(
        "snr_g", description="the S/N of uniqflag, chi2ratio, repeat pairs, error calibration, MKs training"
    )
    block_spectra: int = Field(
        8192, ge=1, description="spectra per Dask task of the survey-wide reductions (uniqflag, chi2ratio, repeats)"
    )


class ConfigBase(Section):
    """The root of the whole configuration; :func:`survey_scale.config.config_model` adds every section and
    ``log_level``.

    A step reads its own section (``config.<section>``) and the survey-wide ones (``cube``, ``survey``);
    the engine reads ``runner`` and ``cluster``.
    """

    def section_hash(self, section: str) -> str:
        """Hash of one section's values: the provenance key of the stage it configures."""
        return stable_hash(getattr(self, section).model_dump(mode="json"))
