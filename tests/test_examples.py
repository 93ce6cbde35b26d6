"""The gallery's examples run as they stand: each ``examples/plot_*.py`` is executed like a
script and must draw at least one matplotlib figure.

These tests run by default with the rest of the suite (about a minute in all on 2 CPU cores:
every example trains small models). Deselect them with ``-k "not test_example"`` or
``--deselect tests/test_examples.py``. An example that needs an optional package names its module in a
line ``# requires: <module>`` and is skipped where it is missing. Each example runs in a fresh
temporary directory, on
matplotlib's non-interactive Agg backend; the figures it leaves open are closed afterwards.
"""

import re
import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example(path, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    # an example that needs an optional package says so in a line "# requires: <module>"
    for module in re.findall(r"^# requires: (\S+)$", path.read_text(), flags=re.M):
        pytest.importorskip(module)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    plt.close("all")
    try:
        runpy.run_path(str(path), run_name="__main__")
        assert plt.get_fignums(), f"{path.name} drew no matplotlib figure"
    finally:
        plt.close("all")


def test_examples_found():
    """The glob finds the gallery (an empty parametrization would pass silently)."""
    assert EXAMPLES, "no examples/plot_*.py found"
