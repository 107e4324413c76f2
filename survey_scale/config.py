"""The YAML configuration that drives every command (SPEC §11), assembled from the registry's steps.

One file configures the cube (``cube``: :mod:`survey_scale.store.settings`), the cluster and the runner
(``cluster``, ``runner``: :mod:`survey_scale.engine.settings`), the survey-wide settings (``survey``:
:mod:`survey_scale.core.settings`) and each step — a step module declares its own section(s) with its step
(:class:`~survey_scale.engine.contracts.Step` ``config``), and :func:`config_model` puts them together in
registry order. ``configs/default.yaml`` documents every key: :func:`default_yaml` writes it from the sections'
docstrings and field descriptions (``survey-scale config defaults``). A file is validated when a command starts: an
unknown key or a value of the wrong type stops the command with a message that names the key
(``cube.shard_spectra: Input should be a valid integer``). Command-line options override single keys. Keys
of earlier versions that a step renamed (its ``renamed_keys``) still load, with a deprecation line each.

Each stage's section is hashed into the provenance of every chunk it writes, so changing a stage's
settings re-runs that stage (and only that stage) on the next ``survey-scale run``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from survey_scale.core.settings import ConfigBase, ConfigError, Section, SurveyConfig
from survey_scale.engine.settings import (
    AddressClusterConfig,
    ClusterConfig,
    KubernetesClusterConfig,
    LocalClusterConfig,
    RunnerConfig,
    SlurmClusterConfig,
    TLSConfig,
)
from survey_scale.stages import registry as registry_module
from survey_scale.stages.bad_spectra import EVIDENCE_NAMES, BadSpectraConfig
from survey_scale.stages.chi2ratio import Chi2RatioConfig
from survey_scale.stages.distances import DistanceConfig
from survey_scale.stages.emulator import EmulatorConfig
from survey_scale.stages.export import ExportConfig
from survey_scale.stages.extinction import ExtinctionConfig
from survey_scale.stages.fit import FitConfig
from survey_scale.stages.ingest import IngestConfig
from survey_scale.stages.mks import MKsConfig
from survey_scale.stages.normalize import NormalizeConfig
from survey_scale.stages.pca import EmissionConfig, PCAConfig
from survey_scale.stages.registry import Registry, default_registry, steps_of
from survey_scale.stages.repeats import RepeatsConfig
from survey_scale.store.settings import CompressionConfig, CubeConfig

__all__ = [
    "EVIDENCE_NAMES",
    "AddressClusterConfig",
    "BadSpectraConfig",
    "Chi2RatioConfig",
    "ClusterConfig",
    "CompressionConfig",
    "Config",
    "ConfigBase",
    "ConfigError",
    "CubeConfig",
    "DistanceConfig",
    "EmissionConfig",
    "EmulatorConfig",
    "ExportConfig",
    "ExtinctionConfig",
    "FitConfig",
    "IngestConfig",
    "KubernetesClusterConfig",
    "LocalClusterConfig",
    "MKsConfig",
    "NormalizeConfig",
    "PCAConfig",
    "RepeatsConfig",
    "RunnerConfig",
    "Section",
    "SlurmClusterConfig",
    "SurveyConfig",
    "TLSConfig",
    "config_model",
    "default_config_model",
    "default_yaml",
    "load_config",
]

log = logging.getLogger(__name__)

CORE_SECTIONS: dict[str, type[Section]] = {
    "cube": CubeConfig,
    "cluster": ClusterConfig,
    "runner": RunnerConfig,
    "survey": SurveyConfig,
}
"""The sections no step owns, first in the file."""


def _summary(model: type) -> str:
    """The first paragraph of a class's docstring on one line, without reST markup or the final period."""
    first = inspect.cleandoc(model.__doc__ or "").split("\n\n", 1)[0]
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]*)`", r"\1", " ".join(first.split())).replace("``", "")
    return text.removesuffix(".")


def _move_renamed(data: Any, renamed: dict[str, str]) -> Any:
    """``data`` with each deprecated dotted key moved to its new place (a value given at the new place wins);
    one deprecation line names them all."""
    if not isinstance(data, dict) or not renamed:
        return data
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    moved = []
    for old, new in renamed.items():
        (old_section, old_key), (new_section, new_key) = old.split(".", 1), new.split(".", 1)
        section = data.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        value = section.pop(old_key)
        target = data.setdefault(new_section, {})
        if isinstance(target, dict):
            target.setdefault(new_key, value)
        moved.append(f"{old} -> {new}")
        if not section:
            del data[old_section]
    if moved:
        log.warning("deprecated configuration keys (they still work; rename them): %s", "; ".join(moved))
    return data


def config_model(registry: Registry | None = None) -> type[ConfigBase]:
    """The configuration's model: :data:`CORE_SECTIONS`, every section of ``registry``'s steps (default: the
    pipeline's) in registry order, and ``log_level``; deprecated keys of the steps are moved before
    validation."""
    registry = registry or default_registry()
    sections = {**CORE_SECTIONS}
    for key, model in registry.config_sections().items():
        if key in sections and sections[key] is not model:
            raise ConfigError(f"configuration section {key!r} is declared twice")
        sections[key] = model
    renamed = registry.renamed_keys()

    class _Base(ConfigBase):
        @model_validator(mode="before")
        @classmethod
        def _renamed(cls, data: Any) -> Any:
            return _move_renamed(data, renamed)

    fields: dict[str, Any] = {
        key: (model, Field(default_factory=model, description=_summary(model) or None))
        for key, model in sections.items()
    }
    fields["log_level"] = (
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        Field("INFO", description="DEBUG | INFO | WARNING | ERROR"),
    )
    return create_model("Config", __base__=_Base, __doc__="The whole configuration (one YAML file).", **fields)


@functools.lru_cache(maxsize=8)
def _model_of(modules: tuple[str, ...]) -> type[ConfigBase]:
    return config_model(Registry(steps_of(modules)))


def default_config_model() -> type[ConfigBase]:
    """The configuration model of the pipeline's registry (:data:`~survey_scale.stages.registry.STEP_MODULES`,
    read when called: a step module added there is configured)."""
    return _model_of(registry_module.STEP_MODULES)


Config = default_config_model()
"""The pipeline's configuration model (:func:`config_model` of the default registry)."""


DEFAULT_YAML_HEADER = (
    "# survey_scale default configuration (generated by: survey-scale config defaults). Every key is optional.\n"
    "# Validate a file with:  survey-scale config check FILE   (an unknown key or a wrong type names the key)\n"
)
"""The first lines of :func:`default_yaml`."""

_COMMENT_COLUMN = 34
"""Where the comments of :func:`default_yaml` start (after a longer ``key: value``, two spaces after it)."""
_WIDTH = 120


def _yaml_value(value: Any) -> str:
    """``value`` (JSON-like) as one line of YAML: flow style, quoted only where YAML needs it."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10**9)
    return text.strip().removesuffix("\n...")


def _has_alnum(word: str) -> bool:
    return any(c.isalnum() for c in word)


def _commented(head: str, comment: str) -> list[str]:
    """``head`` with ``comment`` after it, at :data:`_COMMENT_COLUMN`, wrapped to :data:`_WIDTH` on continuation
    comment lines aligned with it. A word without a letter or digit (``=``, ``->``, ``|``) stays with its neighbours
    (``null = none``)."""
    if not comment:
        return [head]
    column = max(_COMMENT_COLUMN, len(head) + 2)
    words: list[str] = []
    for word in comment.split():
        if words and not (_has_alnum(word) and _has_alnum(words[-1].rsplit(" ", 1)[-1])):
            words[-1] = f"{words[-1]} {word}"
        else:
            words.append(word)
    lines, width = [], _WIDTH - column - 2
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current, width = word, _WIDTH - _COMMENT_COLUMN - 4
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return [f"{head.ljust(column)}# {lines[0]}", *(f"{' ' * _COMMENT_COLUMN}#   {line}" for line in lines[1:])]


def _section_yaml(section: BaseModel, indent: int) -> list[str]:
    lines: list[str] = []
    values = section.model_dump(mode="json")
    for name, field in type(section).model_fields.items():
        value, key = getattr(section, name), f"{' ' * indent}{_yaml_value(name)}:"  # a key such as 'on' is quoted
        if indent == 0 and lines:
            lines.append("")
        if isinstance(value, BaseModel):
            lines += _commented(key, field.description or _summary(type(value)))
            lines += _section_yaml(value, indent + 2)
        else:
            lines += _commented(f"{key} {_yaml_value(values[name])}", field.description or "")
    return lines


def default_yaml(model: type[BaseModel] | None = None) -> str:
    """The defaults of ``model`` (default: :func:`default_config_model`) as commented YAML: what
    ``configs/default.yaml`` holds and ``survey-scale config defaults`` prints.

    Each section is a ``key:`` line commented with its field's description (a top-level section's: its
    docstring's first paragraph), each key a ``key: value`` line commented with its description (wrapped onto
    continuation comment lines), sub-sections indented under their section.
    """
    model = model or default_config_model()
    lines = _section_yaml(model(), 0)
    return DEFAULT_YAML_HEADER + "\n" + "\n".join(lines) + "\n"


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(
            f"{source}: {key}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else "")
        )
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, registry: Registry | None = None
) -> ConfigBase:
    """Read and validate a configuration file.

    Parameters
    ----------
    path
        YAML file; None gives the defaults.
    overrides
        Dotted keys set after reading, e.g. ``{"cube.path": "x.zarr"}`` (from command-line options).
        ``None`` values are ignored.
    registry
        Whose steps' sections the file may hold (default: the pipeline's, :func:`default_config_model`).

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or a key is unknown or of the wrong type; the message names the
        file and the key.
    """
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")  # YAML's encoding, whatever the locale's
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read configuration: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the configuration as UTF-8"
            ) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the configuration must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {dotted}: {part} is not a section")
        node[leaf] = str(value) if isinstance(value, Path) else value
    try:
        return (default_config_model() if registry is None else config_model(registry)).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
