"""What every benchmark script shares: the flags, the estimators by name, timing, provenance
(command, date, machine, versions) and writing a result file. Scripts run as
``python benchmarks/<name>.py``, which puts this folder on ``sys.path``, so they import it as
``from _common import ...``.

Estimators come from the library's registry (``sknovelty.registry.ESTIMATORS``): a name there
is the estimator at its defaults. ``VARIANTS`` adds the named configurations that result files
report (a registry name plus parameters), ``PEERS`` the other libraries' detectors that the
benchmarks compare against; ``make_estimator`` builds any of them.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback

from sknovelty.registry import ESTIMATORS

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: named configurations reported in result files: ``name: (registry name, parameters)``
VARIANTS = {
    "OLED sigmoid": ("OLED", {"threshold": "sigmoid"}),  # OLED table 4's surrogate threshold
    # MMP: the defaults before issue 5's fix, the learning rate alone lowered, table 2's shares
    "MMP lr 1e-3 60 ep": ("MMP", {"learning_rate": 1e-3, "epochs": 60}),
    "MMP lr 3e-4 60 ep": ("MMP", {"learning_rate": 3e-4, "epochs": 60}),
    "MMP mask 0%": ("MMP", {"mask_ratio": 0.0}),
    "MMP mask 50%": ("MMP", {"mask_ratio": 0.5}),
    # LTG tables 1-2: learned noise (the default) vs Gaussian noise vs no pseudo anomalies
    "LTG gauss 0.1": ("LTG", {"noise": "gaussian", "sigma": 0.1}),
    "LTG gauss 0.5": ("LTG", {"noise": "gaussian", "sigma": 0.5}),
    "LTG gauss 1": ("LTG", {"noise": "gaussian", "sigma": 1.0}),
    "LTG none": ("LTG", {"noise": "none"}),
    # the robustness suite's small-training-set rule, measured for MMP and not adopted
    "MMP batch auto": ("MMP", {"batch_size": "auto"}),
}


def as_user_feeds(task, kind):
    """A suite task's rows as a user feeds them: vectors standardised on the normal training
    rows (``robustness.py`` and the diagnoses use the same), images unchanged."""
    if kind != "vectors":
        return task
    scaler = StandardScaler().fit(task.X_train)
    return task._replace(X_train=scaler.transform(task.X_train),
                         X_test=scaler.transform(task.X_test))


class PyODAutoEncoder:
    """PyOD's AutoEncoder on flat rows, sign flipped to 'higher = more normal'."""

    def __init__(self, random_state=None, device="auto"):
        from pyod.models.auto_encoder import AutoEncoder

        self.model = AutoEncoder(random_state=random_state, verbose=0,
                                 device=None if device == "auto" else device)

    def fit(self, X, y=None):
        self.model.fit(X.reshape(len(X), -1))
        return self

    def score_samples(self, X):
        return -self.model.decision_function(X.reshape(len(X), -1))


class IsolationForestPeer:
    """scikit-learn's IsolationForest on flat rows (``score_samples``: higher = more normal)."""

    def __init__(self, random_state=None, device="auto"):
        from sklearn.ensemble import IsolationForest

        self.model = IsolationForest(random_state=random_state)

    def fit(self, X, y=None):
        self.model.fit(X.reshape(len(X), -1))
        return self

    def score_samples(self, X):
        return self.model.score_samples(X.reshape(len(X), -1))


#: other libraries' detectors, built from (random_state, device)
PEERS = {"PyOD AE": PyODAutoEncoder, "IForest": IsolationForestPeer}


def embedding_knn(random_state=None, device="auto"):
    """EfficientNet-Lite0 features (``PretrainedEmbedding`` at its defaults) and DN2's kNN."""
    from sklearn.pipeline import make_pipeline

    from sknovelty import NearestNeighborDetector, PretrainedEmbedding

    return make_pipeline(PretrainedEmbedding(device=device),
                         NearestNeighborDetector(random_state=random_state))


def embedding_patch_knn(random_state=None, device="auto"):
    """PatchCore's detector on EfficientNet-Lite0's local features: stages 3 and 4 at 128 px
    (16 x 16 locations), each location scored by its distance to the nearest location of a
    coreset memory bank of a tenth of the training locations (PatchCore's "10 %"), an image
    by its most novel location."""
    from sklearn.pipeline import make_pipeline

    from sknovelty import NearestNeighborDetector, PatchwiseDetector, PretrainedEmbedding

    return make_pipeline(
        PretrainedEmbedding(stage=[3, 4], pooling="local", device=device),
        PatchwiseDetector(NearestNeighborDetector(n_neighbors=1, max_samples=0.1,
                                                  random_state=random_state), patch_size=1))


#: pipelines of the library for images, built from (random_state, device); they need the
#: ``pretrained`` extra
PIPELINES = {"Embedding kNN": embedding_knn, "Embedding patch kNN": embedding_patch_knn}
#: every name ``make_estimator`` builds without the registry
BUILDERS = {**PEERS, **PIPELINES}


def estimator_names(deep=None, inputs=None, variants=False):
    """Registry names (and variants) in the registry's order, optionally only the deep ones /
    those taking ``inputs`` (a kind of sample, or a tuple of kinds: any of them).

    Meta-estimators are left out: they wrap another estimator, so they have no defaults to
    build (``PatchwiseDetector(make_estimator("OLED"), ...)`` builds one).
    """
    kinds = (inputs,) if isinstance(inputs, str) else inputs
    names = [*ESTIMATORS, *(VARIANTS if variants else ())]
    entry = {n: ESTIMATORS[VARIANTS[n][0] if n in VARIANTS else n] for n in names}
    return [n for n in names if not entry[n].meta and (deep is None or entry[n].deep == deep)
            and (kinds is None or set(kinds) & set(entry[n].inputs))]


def make_estimator(name, *, random_state=None, device="auto", epochs=None, **params):
    """The estimator called ``name`` (registry name, variant or peer) with a seed and a device.

    Deep estimators get ``random_state``, ``device`` and, when given, ``epochs``; a variant's
    own parameters win over ``epochs``; ``params`` win over everything. Non-deep registry
    estimators get ``random_state`` when they take one (kNN: its held-out split); OC-SVM and
    KDE are deterministic and take only ``params``.
    """
    if name in BUILDERS:
        return BUILDERS[name](random_state=random_state, device=device)
    base, variant = VARIANTS.get(name, (name, {}))
    entry = ESTIMATORS[base]
    settings = {}
    if entry.deep:
        settings = dict(random_state=random_state, device=device,
                        **({"epochs": epochs} if epochs else {}))
    elif "random_state" in entry.cls().get_params():
        settings = dict(random_state=random_state)
    return entry.cls(**{**settings, **variant, **params})


def score_in(model, precision, emulate=False):
    """Switch a fitted estimator to scoring in ``precision`` without refitting (what ``fit``
    resolves from the parameter); ``emulate`` runs bfloat16 even without native kernels (the
    same rounding, slower). Returns the precision now in use."""
    model.set_params(precision=precision)
    model._emulate_bf16 = emulate
    with warnings.catch_warnings():  # the fallback's warning: the return value says it
        warnings.simplefilter("ignore")
        model.precision_ = model._resolve_precision()
    return model.precision_


def make_parser(doc, *, seeds=None, classes=None, methods=None, method_choices=None,
                device="auto", epochs=False, out=RESULTS, out_help=None):
    """An argument parser with the flags benchmarks share, each only where a default is given.

    ``--out`` (default ``out``: ``benchmarks/results``; ``out_help`` replaces its help text)
    always; ``--seeds``, ``--classes``, ``--methods`` (choices ``method_choices``, default:
    all of them), ``--device`` and ``--epochs`` (override the deep estimators' epochs) when
    asked for. Every flag has a help text. The description is the first line of ``doc``; the
    rest of the docstring is the epilog.
    """
    first, _, rest = doc.strip().partition("\n")
    parser = argparse.ArgumentParser(description=first, epilog=rest.strip() or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if seeds is not None:
        parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds), metavar="SEED",
                            help="random seeds, one run of everything per seed: each seeds the "
                            "split and the estimators (default: %(default)s)")
    if classes is not None:
        parser.add_argument("--classes", type=int, nargs="+", default=list(classes),
                            metavar="CLASS", help="the classes taken in turn as the normal class "
                            "(default: %(default)s)")
    if methods is not None:
        choices = list(method_choices if method_choices is not None else methods)
        parser.add_argument("--methods", nargs="+", default=list(methods), choices=choices,
                            metavar="METHOD",
                            help="estimators to run, by registry name or named variant "
                            "(quote names with spaces); one of: "
                            + ", ".join(choices).replace("%", "%%")
                            + " (default: " + ", ".join(methods).replace("%", "%%") + ")")
    if device is not None:
        parser.add_argument("--device", default=device,
                            help="torch device of the deep estimators: auto, cpu, cuda or "
                            "cuda:<i> (default: %(default)s)")
    if epochs:
        parser.add_argument("--epochs", type=int, default=None,
                            help="override the deep estimators' epochs, e.g. 1 for a quick "
                            "check (default: each estimator's own)")
    parser.add_argument("--out", default=out,
                        help=out_help or "folder the result files are written to; an existing "
                        "file of the same name there is replaced (default: benchmarks/results, "
                        "the committed results)")
    return parser


class EpochTerms(Callback):
    """skorch callback: the raw per-sample novelty terms of fixed rows after every ``every``-th
    epoch (and the last one).

    The terms are those ``score_components`` starts from (the criterion's ``per_sample`` on
    the module's output), computed in eval mode under ``torch.inference_mode`` in batches of
    ``batch_size``; the module's training mode is restored after. Nothing random is drawn, so
    the fit is the one without the callback. ``terms_``: one dict per recorded epoch, term
    name -> float64 array over the rows of ``X``; ``epochs_``: those epochs (1-based).
    """

    def __init__(self, X, batch_size=512, every=1):
        self.X = X
        self.batch_size = batch_size
        self.every = every

    def on_train_begin(self, net, **kwargs):
        self.terms_, self.epochs_ = [], []

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch % self.every and epoch != net.max_epochs:
            return
        module, criterion = net.module_, net.criterion_
        training = module.training
        module.eval()
        parts = []
        with torch.inference_mode():
            for start in range(0, len(self.X), self.batch_size):
                xb = torch.from_numpy(self.X[start:start + self.batch_size]).to(net.device)
                parts.append({name: value.double().cpu().numpy() for name, value
                              in criterion.per_sample(module(xb), xb).items()})
        module.train(training)
        self.terms_.append({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
        self.epochs_.append(epoch)


class Stopwatch:
    """Seconds of a block, waiting for queued CUDA work first when ``device`` may be a GPU.

    >>> with Stopwatch() as watch:
    ...     pass
    >>> watch.seconds >= 0
    True
    """

    def __init__(self, device="cpu"):
        self.device = str(device)
        self.seconds = float("nan")

    def _sync(self):
        if self.device.startswith("cuda") or self.device == "auto":
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

    def __enter__(self):
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.seconds = time.perf_counter() - self._start
        return False


def fit_and_score(model, X_train, X_test, device="cpu"):
    """Fit ``model`` on ``X_train``, score ``X_test``: ``(scores, fit seconds, samples/s)``."""
    with Stopwatch(device) as fit:
        model.fit(X_train)
    with Stopwatch(device) as score:
        scores = model.score_samples(X_test)
    return scores, fit.seconds, len(X_test) / score.seconds


def _version(package):
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def provenance(args):
    import torch

    cpu, ident = platform.processor() or platform.machine(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                ident.setdefault(key.strip(), value.strip())
                if not line.strip():  # the first processor's block is enough
                    break
    except OSError:
        pass
    cpu = ident.get("model name", cpu)
    # two hosts with the same model name can differ in generation and in the kernels torch
    # picks, and a long fit can amplify their float differences into another AUROC
    generation = (f"family {ident['cpu family']} model {ident['model']}, "
                  if "cpu family" in ident and "model" in ident else "")
    cpu += f" ({generation}torch kernels {torch.backends.cpu.get_cpu_capability()})"
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


def append_jsonl(path, rows):
    """Append ``rows`` (dicts) to the JSON-lines file ``path``, one line each, at once."""
    with open(path, "a") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path):
    """The rows of a JSON-lines file, blank lines skipped."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_result(out, stem, lines, payload):
    """Write ``stem.md`` (the lines) and ``stem.json`` (the payload) to ``out``; print the table."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(payload, f, indent=1)
    print("\n".join(lines))


def run_lines(rows):
    """The "Runs that wrote these rows" list of a report: each distinct command of the rows'
    ``provenance``, with the date and machine of its first row."""
    runs = {}
    for r in rows:
        runs.setdefault(r["provenance"]["command"], r["provenance"])
    return [line for command, run in runs.items()
            for line in (f"- run `{command}`", f"  - date: {run['date']}",
                         f"  - machine: {run['machine']}")]


def resumable_main(doc, stem, run, report, *, seeds=(0, 1, 2), device="cpu", before_run=None):
    """The command line of a benchmark whose rows go to ``OUT/stem.jsonl`` as they finish:
    ``--seeds``, ``--device``, ``--out`` and ``--report`` (only rewrite ``stem.{md,json}``
    from the rows). Without ``--report``: ``before_run()`` (a self-check, if given), then
    ``run(seeds, device, path, info)`` with warnings silenced, then the report
    ``report(out, rows, info)``."""
    parser = make_parser(doc, seeds=seeds, device=device)
    parser.add_argument("--report", action="store_true",
                        help=f"only rewrite the .md/.json from {stem}.jsonl in --out")
    args = parser.parse_args()
    info = provenance(args)
    path = os.path.join(args.out, stem + ".jsonl")
    if not args.report:
        if before_run is not None:
            before_run()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(args.seeds, args.device, path, info)
    report(args.out, read_jsonl(path), info)


def undone(path, tasks):
    """The ``tasks`` (dicts of the fields that key a row) that no row of the JSON-lines file
    ``path`` has yet: what a resumed run has left to do (all of them if ``path`` is
    missing)."""
    rows = read_jsonl(path) if os.path.exists(path) else []
    return [task for task in tasks
            if not any(all(r.get(f) == v for f, v in task.items()) for r in rows)]


def pending(path, seeds, names):
    """``(seed, name)`` for each seed and name whose row (keyed by ``"seed"`` and ``"set"``)
    is not yet in ``path``: :func:`undone` for the embedding benchmarks."""
    todo = undone(path, [{"seed": seed, "set": name} for seed in seeds for name in names])
    return [(task["seed"], task["set"]) for task in todo]


def run_pending(path, tasks, run_one, info, describe):
    """Run what a resumed benchmark has left and write each row as it finishes.

    ``tasks`` are dicts of the fields that key a row of the JSON-lines file ``path``. A task
    whose values some row of ``path`` already has is skipped; for each other task, ``row =
    run_one(task)`` runs with warnings silenced, is appended to ``path`` (created, with its
    folder, if missing) with ``info`` as its ``"provenance"``, and ``describe(row)`` is
    printed. Returns how many tasks ran."""
    todo = undone(path, tasks)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ran = 0
    for task in todo:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = run_one(task)
        append_jsonl(path, [{**row, "provenance": info}])
        print(describe(row), flush=True)
        ran += 1
    return ran
