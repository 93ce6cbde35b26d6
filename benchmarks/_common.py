"""What every benchmark script shares: provenance (command, date, machine, versions) and
writing a result file. Scripts run as ``python benchmarks/<name>.py``, which puts this folder
on ``sys.path``, so they import it as ``from _common import ...``."""

import datetime
import json
import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version

import numpy as np


def _version(package):
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def provenance(args):
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "command": "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, GPU {gpu}",
        "versions": {p: _version(p) for p in ("sknovelty", "torch", "scikit-learn", "skorch",
                                             "numpy", "pyod")},
        "python": platform.python_version(),
    }


def provenance_lines(info):
    """The command, date, machine and versions lines that open a result file."""
    return [f"- command: `{info['command']}`", f"- date: {info['date']}",
            f"- machine: {info['machine']}",
            "- versions: python " + info["python"] + ", "
            + ", ".join(f"{k} {v}" for k, v in info["versions"].items())]


def seed_row(label, rows, metrics, rate="clips_per_s"):
    """``| label | mean ± std of each metric | mean fit s | mean rate |`` over the given rows."""
    cells = [f"{np.mean([r[m] for r in rows]):.3f} ± {np.std([r[m] for r in rows]):.3f}"
             for m in metrics]
    return (f"| {label} | " + " | ".join(cells) + f" | {np.mean([r['fit_s'] for r in rows]):.1f} | "
            f"{np.mean([r[rate] for r in rows]):.0f} |")


def save_result(out, stem, lines, payload):
    """Write ``stem.md`` (the lines) and ``stem.json`` (the payload) to ``out``; print the table."""
    with open(os.path.join(out, stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(payload, f, indent=1)
    print("\n".join(lines))
