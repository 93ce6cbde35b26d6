"""The API reference's lists of detectors, written from ``sknovelty.registry.ESTIMATORS``.

For each group of ``sknovelty.registry.GROUPS`` an autosummary of the registry's classes of
that group, in the registry's order, goes to ``docs/_registry_<group>.rst``, which
``api.rst`` includes (the files are no pages of their own: ``conf.py`` excludes them, git
ignores them). ``docs/conf.py`` calls :func:`write_registry_lists` when Sphinx starts; a file
is rewritten only where its text changed. ``tests/test_docstrings.py`` reads the same lists
to check that the API reference names every public name.
"""

from pathlib import Path

#: the file of a group's list (``*``: the pattern conf.py excludes from the pages)
FILE_NAME = "_registry_{}.rst"


def registry_lists():
    """``{file name: rst text}``: one autosummary per group of the registry."""
    from sknovelty.registry import ESTIMATORS, GROUPS

    lists = {}
    for group in GROUPS:
        names = [entry.cls.__name__ for entry in ESTIMATORS.values() if entry.group == group]
        lists[FILE_NAME.format(group.replace(" ", "_").replace("-", "_"))] = (
            "..  Written by docs/_registry_lists.py from sknovelty.registry.ESTIMATORS.\n\n"
            ".. currentmodule:: sknovelty\n\n"
            ".. autosummary::\n   :toctree: generated/\n   :template: autosummary/class.rst\n"
            "   :nosignatures:\n\n" + "".join(f"   {name}\n" for name in names))
    return lists


def write_registry_lists(app):
    """Write the lists next to ``api.rst`` and have autosummary write their classes' pages,
    as it does for the autosummary directives of the pages themselves (it does not follow
    ``include``)."""
    from sphinx.ext.autosummary.generate import generate_autosummary_docs

    lists = registry_lists()
    for name, text in lists.items():
        path = Path(app.srcdir) / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    generate_autosummary_docs(list(lists), suffix=".rst", base_path=app.srcdir,
                              app=app, imported_members=app.config.autosummary_imported_members,
                              overwrite=app.config.autosummary_generate_overwrite,
                              encoding=app.config.source_encoding)
