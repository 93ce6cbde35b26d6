"""Run Python code in a child interpreter, so that a crash or a hang fails the calling test
instead of killing pytest (a segfault or a glibc abort in a native library ends the process
that runs it, and no ``pytest.raises`` can catch that)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, timeout=180, env=None, check=True):
    """Run ``code`` in a fresh interpreter with the repository root on ``sys.path``.

    Returns the child's standard output. The calling test fails, with the child's exit
    status or signal and the tail of its output, when the child exits non-zero, dies from a
    signal, or runs past ``timeout`` seconds (a hang). The environment is inherited, so
    ``SKNOVELTY_TEST_THREADS`` applies in the child when it imports ``tests.conftest``.

    With ``check=False`` nothing fails here: the result is ``(stdout, failure)``, ``failure``
    being ``None`` or the message the test would have failed with (for a fixture whose child
    serves several tests, each of which then fails on its own missing part).
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    child_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=child_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = (s.decode(errors="replace") if isinstance(s, bytes) else s or ""
                          for s in (exc.stdout, exc.stderr))
        failure = f"the child process hung: still running after {timeout} s\n{stdout}{stderr}"
    else:
        stdout, failure = proc.stdout, None
        if proc.returncode != 0:
            how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exit code {proc.returncode}")
            failure = (f"the child process failed ({how}):\n{proc.stdout[-2000:]}\n"
                       f"{proc.stderr[-4000:]}")
    if not check:
        return stdout, failure
    if failure:
        pytest.fail(failure)
    return stdout
