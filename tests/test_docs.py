"""The generated references of the documentation site (issue 28): every configuration key and every command-line
sub-command and option has a description, so that docs/reference/configuration.md and docs/reference/cli.md,
rendered from the code when the site is built, have no empty rows.

The site itself is built by ``.ci/run`` (``sphinx-build -W``), not here: it executes every tutorial notebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from survey_scale.cli import build_parser
from survey_scale.config import default_config_model

DOCS_EXT = Path(__file__).resolve().parents[1] / "docs" / "_ext"
sys.path.insert(0, str(DOCS_EXT))

from config_keys import config_keys  # noqa: E402  (docs/_ext: the rows the configuration reference renders)


def test_every_configuration_key_has_a_type_and_a_description() -> None:
    keys = config_keys(default_config_model())
    assert len(keys) > 100 and {"cube", "cluster.local.n_workers", "fit.threads", "log_level"} <= {k.key for k in keys}
    undescribed = [k.key for k in keys if not k.description]
    assert not undescribed, f"configuration keys without a description: {undescribed}"
    untyped = [k.key for k in keys if not k.type]
    assert not untyped, f"configuration keys without a type: {untyped}"


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(dotted name, parser, help) of every sub-command of ``parser``, recursively."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub, helps.get(name) or ""))
                found += _subcommands(sub, f"{prefix} {name}")
    return found


def _options_without_help(parser: argparse.ArgumentParser, name: str) -> list[str]:
    return [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not (action.help or "").strip()
        and action.help != argparse.SUPPRESS
    ]


def test_every_subcommand_and_option_has_help() -> None:
    parser = build_parser()
    assert (parser.description or "").strip()
    subcommands = _subcommands(parser, "survey-scale")
    assert {"survey-scale run", "survey-scale mock", "survey-scale emulator"} <= {name for name, _, _ in subcommands}
    without_help = [name for name, _, text in subcommands if not text.strip()]
    assert not without_help, f"sub-commands without help: {without_help}"
    options = _options_without_help(parser, "survey-scale")
    for name, sub, _ in subcommands:
        options += _options_without_help(sub, name)
    assert not options, f"options without help: {options}"


def test_the_reference_pages_are_generated_not_written() -> None:
    docs = DOCS_EXT.parent / "reference"
    assert "```{config-reference}" in (docs / "configuration.md").read_text(encoding="utf-8")
    cli = (docs / "cli.md").read_text(encoding="utf-8")
    assert ".. argparse::" in cli and ":func: build_parser" in cli
