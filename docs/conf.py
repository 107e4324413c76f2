"""Sphinx configuration of the survey_scale documentation site.

Build (from the repository root): ``sphinx-build -W --keep-going -b html docs docs/_build/html``. Every
tutorial notebook is executed on each build (myst-nb, ``nb_execution_mode = "force"``) against the small
mock release of :mod:`tutorial_data`, made on the first build under ``docs/_build/tutorial_data``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))  # the configuration-reference extension
sys.path.insert(0, str(DOCS.parent))  # the checkout's survey_scale, whatever is installed

import survey_scale  # noqa: E402

project = "survey_scale"
author = "the survey_scale developers"
copyright = "the survey_scale developers"
version = release = survey_scale.__version__

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinxarg.ext",
    "sphinx_design",
    "config_reference",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"

# MyST: $...$ maths, ::: fences, definition lists; headings get anchors for [text](page.md#anchor) links
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: every one is executed on every build (they cannot rot); a cell error fails the build
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# stderr of the cells is Dask's and lsdb's progress chatter, not content (errors still fail the build)
nb_output_stderr = "remove"

# API reference: numpydoc docstrings; members listed by the pages, not by numpydoc's class-member tables
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"survey_scale {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"changelog": []}
