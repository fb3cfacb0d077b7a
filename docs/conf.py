"""Sphinx configuration: the API reference from mxgen's docstrings and the
README, BENCHMARKS and CHANGELOG as pages.  Built by CI with warnings as
errors (tests/test_docs.py):

    python -m sphinx -W -b html docs docs/_build/html
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mxgen  # noqa: E402

project = "mxgen"
author = "The mxgen developers"
copyright = "2026, The mxgen developers"
release = version = mxgen.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "style/README.md"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# The pages include the repository's own Markdown files, whose links point
# at files of the repository (images, scripts), not at pages of this site.
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "myst.header"]

html_theme = "alabaster"
html_static_path = []
