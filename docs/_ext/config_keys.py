"""Every key of the configuration model, with its type, default and description (no Sphinx needed).

The configuration reference page (:mod:`config_reference`) renders these rows, and ``tests/test_docs.py`` checks
that none lacks a description: both walk the pydantic models of :func:`survey_scale.config.default_config_model`,
so the reference is never written by hand and cannot fall behind the code.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel


@dataclass(frozen=True)
class ConfigKey:
    """One key of the configuration: ``key`` dotted from the top (``cluster.local.n_workers``)."""

    key: str
    type: str
    default: str
    description: str
    is_section: bool


def section_summary(model: type) -> str:
    """The first paragraph of a section's docstring on one line (what ``configs/default.yaml`` shows)."""
    from survey_scale.config import _summary  # the same text as the generated default.yaml

    return _summary(model)


def type_label(annotation: Any) -> str:
    """A short, YAML-minded name of a field's type: ``int | null``, ``"shared" | "perpixel"``, ``list[str]``."""
    if annotation is type(None):
        return "null"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "section"
    if inspect.isclass(annotation) and issubclass(annotation, PurePath):
        return "path"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is typing.Annotated:
        return type_label(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_label(a) for a in args)}]" if args else name
    return getattr(annotation, "__name__", str(annotation))


def yaml_value(value: Any) -> str:
    """``value`` (JSON-like) as it would be written in the YAML file, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10**9)
    return text.strip().removesuffix("\n...").strip()


def config_keys(model: type[BaseModel], prefix: str = "") -> list[ConfigKey]:
    """Every field of ``model`` and of its sub-sections, depth first, in declaration order."""
    defaults = model().model_dump(mode="json")
    rows: list[ConfigKey] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            description = (field.description or "").strip() or section_summary(annotation)
            rows.append(ConfigKey(key, "section", "", description, True))
            rows += config_keys(annotation, f"{key}.")
        else:
            rows.append(
                ConfigKey(
                    key, type_label(annotation), yaml_value(defaults[name]), (field.description or "").strip(), False
                )
            )
    return rows
