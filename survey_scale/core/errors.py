"""The base of every error a user of survey_scale can meet.

Each module raises its own subclass (``ConfigError``, ``CubeError``, ``StageError``, ``LamostReadError``,
...), and every one of them is a :class:`SurveyScaleError`, so a caller — the CLI, a notebook — catches
them all with one ``except``. The subclasses keep a built-in base too (``ValueError``, ``RuntimeError``)
where code already relies on it.
"""

from __future__ import annotations


class SurveyScaleError(Exception):
    """Something survey_scale cannot do with the given input; the message names the file, key or row."""
