"""The public API's docstrings and its reference page.

* Every public method of the estimators in ``sknovelty.__all__`` that sknovelty defines (not
  the ones inherited from scikit-learn or skorch), every function in ``__all__`` of
  ``sknovelty.datasets``, ``video``, ``metrics`` and ``plotting``, and ``sknovelty.io``'s
  ``save`` and ``load`` have the numpydoc sections Parameters (when they take arguments),
  Returns (or Yields) and See Also.
* Every public name is listed in ``docs/api.rst``.

numpydoc is not a test dependency: a section is found as a line equal to its name followed
by a line of dashes, in the docstring as ``inspect.getdoc`` cleans it.
"""

import inspect
import re
from pathlib import Path

import sknovelty
import sknovelty.datasets
import sknovelty.io
import sknovelty.metrics
import sknovelty.plotting
import sknovelty.video

API_RST = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
MODULES = (sknovelty.datasets, sknovelty.video, sknovelty.metrics, sknovelty.plotting)


def _has_section(doc, name):
    return re.search(rf"^{re.escape(name)}\n-{{3,}}$", doc, flags=re.MULTILINE) is not None


def _own_methods(cls):
    """``{name: function}`` of the public methods of ``cls`` that sknovelty defines.

    Inherited ones count (``fit`` of ``BaseDeepDetector`` is every deep detector's ``fit``);
    classmethods and staticmethods are unwrapped, and so are scikit-learn's ``available_if``
    methods (``score_maps``), which keep the decorated function's module.
    """
    methods = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, name)
        func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else getattr(cls, name)
        if not inspect.isfunction(func):
            continue
        func = inspect.unwrap(func)
        if (func.__module__ or "").partition(".")[0] == "sknovelty":
            methods[name] = func
    return methods


def _documented_callables():
    """``{qualified name: function}`` of everything whose docstring is checked."""
    targets = {}
    for cname in sknovelty.__all__:
        cls = getattr(sknovelty, cname)
        if not inspect.isclass(cls) or issubclass(cls, Exception):
            continue
        for name, func in _own_methods(cls).items():
            targets[f"sknovelty.{cname}.{name}"] = func
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                targets[f"{module.__name__}.{name}"] = obj
    for name in ("save", "load"):
        targets[f"sknovelty.io.{name}"] = getattr(sknovelty.io, name)
    return targets


def _missing_sections(func):
    doc = inspect.getdoc(func) or ""
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
    missing = []
    if params and not _has_section(doc, "Parameters"):
        missing.append("Parameters")
    if not (_has_section(doc, "Returns") or _has_section(doc, "Yields")):
        missing.append("Returns")
    if not _has_section(doc, "See Also"):
        missing.append("See Also")
    return missing


def test_checked_names_cover_the_api():
    # the collection must not silently come out empty or lose the shared methods
    targets = _documented_callables()
    for name in ("sknovelty.AutoencoderDetector.fit", "sknovelty.WhitenedKDE.score_samples",
                 "sknovelty.AdversarialMaskingDetector.masks",
                 "sknovelty.LatentAutoregressiveDetector.score_maps",
                 "sknovelty.PseudoAnomalyDetector.load", "sknovelty.video.frames_to_clips",
                 "sknovelty.metrics.auroc", "sknovelty.plotting.plot_anomaly_map",
                 "sknovelty.io.save", "sknovelty.io.load"):
        assert name in targets
    # methods inherited from scikit-learn (get_params) are not sknovelty's to document
    assert "sknovelty.AutoencoderDetector.get_params" not in targets


def test_section_parser():
    doc = "Summary.\n\nParameters\n----------\nx : int\n\nSee Also\n--------\nf : g.\n"
    assert _has_section(doc, "Parameters") and _has_section(doc, "See Also")
    assert not _has_section(doc, "Returns")
    assert not _has_section("The Returns of it.\nReturns are fine\n", "Returns")


def test_public_docstrings_have_numpydoc_sections():
    offenders = {name: missing for name, func in sorted(_documented_callables().items())
                 if (missing := _missing_sections(func))}
    assert not offenders, (
        f"{len(offenders)} public functions or methods lack numpydoc sections:\n"
        + "\n".join(f"  {name}: {', '.join(missing)}" for name, missing in offenders.items()))


def _api_rst_entries(text):
    """Fully qualified names listed in the ``autosummary`` directives of ``api.rst``."""
    entries, module, in_autosummary = set(), None, False
    for line in text.splitlines():
        stripped = line.strip()
        if match := re.match(r"\.\. currentmodule::\s*(\S+)$", stripped):
            module, in_autosummary = match.group(1), False
        elif stripped.startswith(".. "):
            in_autosummary = stripped.startswith(".. autosummary::")
        elif in_autosummary and stripped and not stripped.startswith(":"):
            if not line.startswith((" ", "\t")):
                in_autosummary = False  # back to prose
            else:
                entries.add(f"{module}.{stripped.lstrip('~')}")
    return entries


def _api_rst_text():
    """``api.rst`` with its includes of the registry's lists of detectors expanded (the docs
    build writes them with ``docs/_registry_lists.py``); every group's list is included."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_registry_lists",
                                                  API_RST.parent / "_registry_lists.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lists = module.registry_lists()
    text = API_RST.read_text(encoding="utf-8")
    included = re.findall(r"^\.\. include:: (\S+)$", text, flags=re.M)
    assert set(lists) <= set(included), f"api.rst includes none of {set(lists) - set(included)}"
    return re.sub(r"^\.\. include:: (\S+)$", lambda m: lists[m.group(1)], text, flags=re.M)


def test_api_reference_lists_every_public_name():
    entries = _api_rst_entries(_api_rst_text())
    missing = []
    for name in sknovelty.__all__:
        if name not in ("load", "save") and f"sknovelty.{name}" not in entries:  # sknovelty.io
            missing.append(f"sknovelty.{name}")
    for module in MODULES:
        for name in module.__all__:
            if f"{module.__name__}.{name}" in entries:
                continue
            obj = getattr(module, name)
            # a re-export (sknovelty.video.eer is sknovelty.metrics.eer) is listed where it
            # is defined
            home = getattr(obj, "__module__", None)
            if (home != module.__name__ and inspect.isfunction(obj)
                    and f"{home}.{obj.__qualname__}" in entries):
                continue
            missing.append(f"{module.__name__}.{name}")
    assert not missing, (f"docs/api.rst does not list {len(missing)} public names: "
                         + ", ".join(missing))
