"""The guide to adding a method (``docs/adding_a_method.md``) works as written: its example,
registered for one pytest session, passes the generic suites that iterate the registry.

The guide's single ```python block is written to a temporary folder that is added to
``sknovelty.__path__``, so that it is a module of the package as a method's module is (a
class defined outside the package is not restorable by name: ``save`` refuses it). A tiny
pytest plugin imports it at import time; ``-p`` loads plugins before ``tests/conftest.py``
and the test modules are imported, and those build their parametrisations from
``ESTIMATORS`` when they are imported, so the example's entry is among them. One child
pytest then runs the generic suites on it alone (``-k toy``).
"""

import re
import textwrap

from ._subprocess import ROOT, run_python
from .test_docs_pages import python_blocks

GUIDE = ROOT / "docs" / "adding_a_method.md"
#: the registry name the example registers, and its test id (tests/conftest.py's ``_test_id``)
NAME, TEST_ID = "Toy", "toy"
#: the generic suites run on the example. Not here: tests/test_strides.py and the SIGINT test
#: of tests/test_hardening.py fit their estimators in child interpreters, which import the
#: registry afresh (a session's entry does not reach them); tests/test_cuda.py needs CUDA.
SUITES = ["tests/test_estimator_checks.py", "tests/test_base.py", "tests/test_bad_input.py",
          "tests/test_io.py", "tests/test_model_files.py", "tests/test_thresholds.py",
          "tests/test_hardening.py"]
#: tests of the example that must have run and passed, one per concern at least
MUST_PASS = [
    "tests/test_base.py::test_every_deep_detector_takes_every_common_parameter"
    "[ToyAutoencoderDetector]",
    "tests/test_io.py::test_every_estimator_round_trips_bit_identically[Toy]",
    "tests/test_model_files.py::test_tampered_deep_files_are_refused[Toy]",
    "tests/test_thresholds.py::test_thresholds_and_reference_survive_save_load_and_pickle[Toy]",
    "tests/test_bad_input.py::test_bad_input_at_fit_is_a_clear_error_and_leaves_fitted_model"
    "_unchanged[toy-nan]",
]
#: passed tests of the example, at least (77 when this was written, in about 15 s)
MIN_PASSED = 60

PLUGIN = """
import sknovelty

sknovelty.__path__.append({package!r})
import sknovelty.adding_a_method_example  # noqa: E402,F401  registers {name!r}
"""

CHILD = """
import sys

sys.path.insert(0, {plugins!r})
import pytest

sys.exit(pytest.main(["-v", "-p", "no:cacheprovider", "-p", "adding_a_method_plugin",
                      *{suites!r}, "-k", {test_id!r}, "--durations=5"]))
"""


def _example():
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) == 1, f"the guide should have one ```python block, has {len(blocks)}"
    return blocks[0][1]


def test_the_guide_has_one_example_that_ends_by_registering_it():
    code = _example()
    compile(code, str(GUIDE), "exec")
    last = code.strip().split("\n\n")[-1].strip()
    assert last.startswith(f'ESTIMATORS["{NAME}"] = Entry('), last


def test_the_guides_example_passes_the_generic_suites(tmp_path):
    package, plugins = tmp_path / "package", tmp_path / "plugins"
    package.mkdir()
    plugins.mkdir()
    (package / "adding_a_method_example.py").write_text(_example())
    (plugins / "adding_a_method_plugin.py").write_text(
        textwrap.dedent(PLUGIN).format(package=str(package), name=NAME))
    out = run_python(CHILD.format(plugins=str(plugins), suites=SUITES, test_id=TEST_ID),
                     timeout=600)
    passed = [line.split(" PASSED")[0] for line in out.splitlines() if " PASSED" in line]
    assert passed, out[-3000:]
    # only the example's tests ran, and some of every suite
    assert all(re.search(TEST_ID, test, re.IGNORECASE) for test in passed), passed
    for suite in SUITES:
        assert any(test.startswith(suite + "::") for test in passed), (suite, out[-3000:])
    missing = [test for test in MUST_PASS if test not in passed]
    assert not missing, (missing, out[-3000:])
    summary = re.search(r"(\d+) passed", out.splitlines()[-1])
    assert summary and int(summary[1]) == len(passed) >= MIN_PASSED, out[-3000:]
