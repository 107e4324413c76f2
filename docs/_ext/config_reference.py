"""Sphinx directive ``config-reference``: the configuration reference, generated from the pydantic models.

One section per top-level key of :func:`survey_scale.config.default_config_model` (``cube``, ``cluster``, ...,
each step's section in pipeline order), with the section's summary and a table of every key below it: dotted key,
type, default and description (:func:`config_keys.config_keys`). Descriptions are inserted as plain text, not
parsed as markup, so that a ``*`` or a backtick in one cannot break the build.
"""

from __future__ import annotations

from config_keys import config_keys, section_summary
from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx


def _cell(content: nodes.Node | str, literal: bool = False) -> nodes.entry:
    if isinstance(content, str):
        content = nodes.literal(text=content) if literal and content else nodes.Text(content)
    return nodes.entry("", nodes.paragraph("", "", content))


def _table(rows: list[tuple[str, str, str, str]]) -> nodes.table:
    widths = (28, 16, 14, 42)
    group = nodes.tgroup(cols=len(widths))
    group += [nodes.colspec(colwidth=w) for w in widths]
    head = nodes.thead()
    head += nodes.row("", *(_cell(h) for h in ("key", "type", "default", "description")))
    body = nodes.tbody()
    for key, type_, default, description in rows:
        body += nodes.row("", _cell(key, True), _cell(type_), _cell(default, True), _cell(description))
    group += [head, body]
    table = nodes.table("", group, classes=["config-reference"])
    return table


class ConfigReference(Directive):
    """``.. config-reference::`` (no arguments): the whole configuration reference."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from survey_scale.config import default_config_model

        model = default_config_model()
        document = self.state.document
        out: list[nodes.Node] = []
        top_level: list[tuple[str, str, str, str]] = []
        for name, field in model.model_fields.items():
            keys = [k for k in config_keys(model) if k.key == name or k.key.startswith(f"{name}.")]
            if not keys[0].is_section:  # a key of the top level (log_level)
                top_level += [(k.key, k.type, k.default, k.description) for k in keys]
                continue
            section = nodes.section(ids=[f"config-{name}"], names=[f"config-{name}"])
            section += nodes.title(text=name)
            section += nodes.paragraph(text=(field.description or "").strip() or section_summary(field.annotation))
            section += _table([(k.key, k.type, k.default, k.description) for k in keys[1:]])
            document.note_explicit_target(section, section)
            out.append(section)
        if top_level:
            section = nodes.section(ids=["config-top-level"], names=["config-top-level"])
            section += nodes.title(text="top level")
            section += nodes.paragraph(text="Keys outside every section.")
            section += _table(top_level)
            document.note_explicit_target(section, section)
            out.append(section)
        return out


def setup(app: Sphinx) -> dict:
    app.add_directive("config-reference", ConfigReference)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
