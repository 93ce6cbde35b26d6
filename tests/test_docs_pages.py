"""Every Python code block of README.md and the user guide runs as written.

The blocks of one page run in order in one namespace (a later block may use what an earlier
one defined), in a temporary folder (model files land there). So that the whole check stays
cheap, the deep estimators train for **one epoch** here: the test sets the default of every
``epochs`` / ``flow_epochs`` parameter of the estimators in ``sknovelty.__all__`` to 1 (an
``epochs`` written in a block is left alone). The printed numbers then differ from a full fit;
what is checked is that the code runs. A ``dask.distributed.LocalCluster`` made by a block
runs its workers as threads of the test's process (``processes=False``): starting worker
processes costs more than the rest of the check, and ``tests/test_scale.py`` already runs a
search on a cluster of worker processes.

A block that cannot run here (it needs data or hardware a test machine lacks) is skipped when
the line before its opening fence is ``<!-- skip-test -->``; keep those few.

The results pages (``docs/results/``) are generated from ``benchmarks/results``: the last test
checks that every result file gets its page, with its plots.
"""

import inspect
import re
from pathlib import Path

import pytest

import sknovelty

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/user_guide.md", "docs/choosing.md", "docs/results/index.md",
         "docs/results/summary.md"]
SKIP = "<!-- skip-test -->"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")


def python_blocks(text):
    """``[(line number, code, skipped)]`` of the ```python blocks of a Markdown text."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, len(m["indent"])
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:])
            i += 1
        i += 1  # the closing fence
        if m["lang"] in ("python", "py"):
            before = [line.strip() for line in lines[:start] if line.strip()]
            blocks.append((start + 1, "\n".join(body) + "\n", bool(before) and before[-1] == SKIP))
    return blocks


@pytest.fixture
def one_epoch(monkeypatch):
    """Every estimator's default ``epochs`` (and ``flow_epochs``) set to 1 for the test."""
    for name in sknovelty.__all__:
        cls = getattr(sknovelty, name)
        if not (inspect.isclass(cls) and hasattr(cls, "get_params")):
            continue
        init = cls.__init__
        params = inspect.signature(init).parameters
        if init.__kwdefaults__:
            kw = {k: (1 if k in ("epochs", "flow_epochs") else v)
                  for k, v in init.__kwdefaults__.items()}
            monkeypatch.setattr(init, "__kwdefaults__", kw)
        if init.__defaults__:
            positional = [p for p in params.values()
                          if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                          and p.default is not inspect.Parameter.empty]
            defaults = tuple(1 if p.name in ("epochs", "flow_epochs") else d
                             for p, d in zip(positional, init.__defaults__))
            monkeypatch.setattr(init, "__defaults__", defaults)
        assert all(v.default in (1, inspect.Parameter.empty)
                   for k, v in inspect.signature(cls.__init__).parameters.items()
                   if k in ("epochs", "flow_epochs")), name


def test_blocks_are_found():
    text = ("a\n\n```python\nx = 1\n```\n\n<!-- skip-test -->\n```python\ny\n```\n"
            "  ```bash\nls\n  ```\n")
    assert python_blocks(text) == [(3, "x = 1\n", False), (8, "y\n", True)]
    readme = python_blocks((ROOT / "README.md").read_text())
    assert readme and not any(skip for *_, skip in readme), "README's quickstart must run"


@pytest.fixture
def local_cluster_in_threads(monkeypatch):
    """``dask.distributed.LocalCluster`` with its workers as threads of this process."""
    try:
        import dask.distributed
    except ImportError:  # a page that uses Dask then fails, and says why
        return
    cluster = dask.distributed.LocalCluster
    monkeypatch.setattr(dask.distributed, "LocalCluster",
                        lambda *args, **kwargs: cluster(*args, **{**kwargs, "processes": False}))


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page, one_epoch, local_cluster_in_threads, tmp_path, monkeypatch):
    path = ROOT / page
    if not path.exists():
        pytest.skip(f"{page} does not exist")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code, skipped in python_blocks(path.read_text()):
        if skipped:
            continue
        try:
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        except Exception as err:  # say which block failed
            raise AssertionError(f"the code block at {page}:{line} failed: {err!r}") from err


def test_every_result_file_has_a_docs_page(tmp_path, monkeypatch):
    """``docs/_build_results.py`` writes a page per ``benchmarks/results/*.md``, with the
    plots it names, and a list of them that the results index includes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_build_results",
                                                  ROOT / "docs" / "_build_results.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setattr(build, "PAGES", tmp_path / "generated")
    written = set(build.write_result_pages())
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert {p.name for p in results} <= written
    listing = (tmp_path / "generated" / "list.md.inc").read_text()
    for path in results:
        page = (tmp_path / "generated" / path.name).read_text()
        assert page.startswith("# ") and f"benchmarks/results/{path.name}" in page
        assert f"(generated/{path.name})" in listing
        for plot in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
            assert (tmp_path / "generated" / plot).stat().st_size > 1000, (path.name, plot)
    one_class = (tmp_path / "generated" / "one_class_mnist.md").read_text()
    assert "![one_class_mnist.png]" in one_class and "![oled_masks.png]" in one_class
    # a rerun rewrites nothing that did not change
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "generated").iterdir()}
    build.write_result_pages()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "generated").iterdir()} == mtimes
