"""Sphinx configuration of the sknovelty documentation (``make -C docs html``).

The build is offline: no intersphinx inventories are fetched. The gallery (``../examples``)
runs its examples by default; ``SKNOVELTY_DOCS_RUN_GALLERY=0`` builds its pages without
running them. The results pages (``results/generated/``) are written from the committed
result files in ``../benchmarks/results`` when the build starts (``_build_results.py``), and
the API reference's lists of detectors from ``sknovelty.registry`` (``_registry_lists.py``).
"""

import os
import sys
from datetime import date

# the checkout's package, even where it is not installed; this folder for _build_results
sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sknovelty

# -- project ------------------------------------------------------------------------------
project = "sknovelty"
author = "the sknovelty developers"
copyright = f"{date.today().year}, {author}"
version = sknovelty.__version__
release = sknovelty.__version__

# -- general ------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- autodoc / autosummary / numpydoc -----------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False  # the class template lists the methods itself
numpydoc_class_members_toctree = False

# -- MyST (the user guide and "Adding a method" are Markdown) ------------------------------
myst_heading_anchors = 3

# -- sphinx-gallery -----------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "sphinx_gallery.sorting.FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
}
# SKNOVELTY_DOCS_RUN_GALLERY=0: the gallery's pages without running the examples. A string,
# as sphinx-gallery declares it (a bool makes Sphinx warn about the config value's type).
_run_gallery = os.environ.get("SKNOVELTY_DOCS_RUN_GALLERY", "1").strip() != "0"
plot_gallery = "True" if _run_gallery else "False"

# -- HTML ---------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sknovelty {release}"
html_theme_options = {
    "show_toc_level": 2,
}


# -- written at build time: results pages, the API reference's lists of detectors ---------
exclude_patterns.append("_registry_*.rst")  # included by api.rst, no pages of their own


def setup(app):
    from _build_results import write_result_pages
    from _registry_lists import write_registry_lists

    # before Sphinx looks for source files, so that the generated pages are read
    app.connect("builder-inited", write_result_pages)
    app.connect("builder-inited", write_registry_lists)
