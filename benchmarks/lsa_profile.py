"""Where a full-MNIST LSA fit spends its time, on CPU or GPU (issue 35, item 5).

One normal class of MNIST's 60,000 training digits (the protocol of ``paper_tables.py lsa``),
``LatentAutoregressiveDetector`` at the library's settings (batch "auto", lr 1e-3) and at the
paper's (batch 256, lr 1e-4; ``paper_tables.PAPER_SETTINGS``). For each, fits of 1 and of 2
epochs are

- timed (nothing else may run on the machine): their difference is one epoch, the rest
  (``fixed s``: validation split, held-out scoring, thresholds, the flat-input check) is what
  any fit pays once, so a fit of ``E`` epochs costs about ``fixed + E x epoch``;
- counted (``torch.utils.flop_counter.FlopCounterMode``: the matrix products and convolutions,
  forward and backward), giving one epoch's GFLOP and the rate it ran at, against the
  machine's float32 matrix-product peak on CPU (``fit_flops.matmul_peak``);
- profiled (``torch.profiler``): the self time of every torch operator in the 2-epoch fit
  minus that in the 1-epoch fit is one epoch's, grouped into convolutions, matrix products,
  the optimizer, batching, copies and allocation, and the rest (elementwise, normalisation, losses);
  ``outside operators`` is the epoch's wall time that no torch operator accounts for
  (Python, skorch, batching). On a GPU the groups are device time, and ``outside
  operators`` is then the share of the epoch the device sat idle.

Counts do not depend on timing; the times do, so run it alone::

    python benchmarks/lsa_profile.py                       # CPU, class 0, both settings
    python benchmarks/lsa_profile.py --device cuda --classes 0 8
    python benchmarks/lsa_profile.py --report
"""

import os
import warnings

import numpy as np
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from _common import (Stopwatch, append_jsonl, make_parser, provenance, provenance_lines,
                     read_jsonl, save_result)
from fit_flops import matmul_peak
from paper_tables import PAPER_SETTINGS

from sknovelty import LatentAutoregressiveDetector
from sknovelty.datasets import load_mnist

STEM = "lsa_profile"
SETTINGS = {"library": {}, "paper": {k: v for k, v in PAPER_SETTINGS["LSA"].items()
                                     if k != "epochs"}}
#: epochs of a whole fit at each setting (the library's default; the paper's 200)
FULL_EPOCHS = {"library": 50, "paper": PAPER_SETTINGS["LSA"]["epochs"]}
GROUPS = ("convolutions", "matrix products", "optimizer (Adam)",
          "batching, copies, allocation", "elementwise, normalisation, losses")


#: parts of the names of operators that batch, copy or allocate
COPY_WORDS = ("copy", "aten::to", "index", "aten::cat", "aten::stack", "clone", "contiguous",
              "empty", "zeros", "fill_", "pin_memory", "from_numpy", "aten::select",
              "aten::slice")


def group_of(op):
    """The group of a torch operator's name (its self time is counted there)."""
    name = op.lower()
    if "conv" in name:
        return GROUPS[0]
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                "aten::linear", "aten::addbmm"):
        return GROUPS[1]
    if "foreach" in name or "adam" in name or name.startswith("optimizer."):
        return GROUPS[2]
    if "dataloader" in name or any(k in name for k in COPY_WORDS):
        return GROUPS[3]
    return GROUPS[4]


def _model(setting, seed, device, epochs):
    return LatentAutoregressiveDetector(random_state=seed, device=device, epochs=epochs,
                                        **SETTINGS[setting])


def timed_fit(X, setting, seed, device, epochs):
    model = _model(setting, seed, device, epochs)
    with Stopwatch(device) as watch:
        model.fit(X)
    return watch.seconds, model


def counted_fit(X, setting, seed, device, epochs):
    with FlopCounterMode(display=False) as counter:
        _model(setting, seed, device, epochs).fit(X)
    return counter.get_total_flops()


def profiled_fit(X, setting, seed, device, epochs):
    """Self time (s) of each torch operator over a fit, and the fit's wall time under the
    profiler; device time on a GPU."""
    cuda = str(device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    model = _model(setting, seed, device, epochs)
    with profile(activities=activities) as prof, Stopwatch(device) as watch:
        model.fit(X)
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    return {e.key: getattr(e, field) / 1e6 for e in prof.key_averages()}, watch.seconds


def run_one(X, k, setting, seed, device):
    one_s, model = timed_fit(X, setting, seed, device, 1)
    two_s, _ = timed_fit(X, setting, seed, device, 2)
    epoch_s = two_s - one_s
    flops = counted_fit(X, setting, seed, device, 2) - counted_fit(X, setting, seed, device, 1)
    ops1, wall1 = profiled_fit(X, setting, seed, device, 1)
    ops2, wall2 = profiled_fit(X, setting, seed, device, 2)
    per_op = {op: ops2.get(op, 0.0) - ops1.get(op, 0.0) for op in set(ops1) | set(ops2)}
    groups = dict.fromkeys(GROUPS, 0.0)
    for op, seconds in per_op.items():
        groups[group_of(op)] += seconds
    profiled_epoch = wall2 - wall1
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:8]
    full = FULL_EPOCHS[setting]
    return dict(cls=int(k), setting=setting, seed=seed, device=str(device),
                n_train=int(len(X)), batch_size=int(model.batch_size_),
                fit1_s=one_s, fit2_s=two_s, epoch_s=epoch_s, fixed_s=one_s - epoch_s,
                full_epochs=full, full_fit_s=one_s - epoch_s + full * epoch_s,
                epoch_gflop=flops / 1e9, epoch_gflops_rate=flops / epoch_s / 1e9,
                profiled_epoch_s=profiled_epoch,
                groups_s=groups, outside_s=profiled_epoch - sum(groups.values()),
                top_ops=[[op, s] for op, s in top])


def report(out, rows):
    lines = ["# Where a full-MNIST LSA fit spends its time", "",
             " ".join(__doc__.split("\n\n")[1].split()), "",
             *["- " + " ".join(item.split()).lstrip("- ") for item in
               __doc__.split("\n\n")[2].split("\n- ")], "",
             "One epoch of each fit (the 2-epoch fit minus the 1-epoch fit). `whole fit s`: "
             "`fixed + E x epoch` at the setting's full epochs (the library's 50, the "
             "paper's 200). Group shares are of the profiled epoch's wall time.", "",
             "| device | class | setting | training digits | batch | epoch s | fixed s | "
             "whole fit s (epochs) | GFLOP per epoch | GFLOP/s | peak GFLOP/s | "
             + " | ".join(GROUPS) + " | outside operators |",
             "|---" * (13 + len(GROUPS)) + "|"]
    for r in rows:
        total = r["profiled_epoch_s"]
        shares = [f"{r['groups_s'][g] / total:.0%}" for g in GROUPS]
        peak = f"{r['peak_gflops']:.0f}" if r.get("peak_gflops") else "–"
        lines.append(f"| {r['device']} | {r['cls']} | {r['setting']} | {r['n_train']} | "
                     f"{r['batch_size']} | {r['epoch_s']:.1f} | {r['fixed_s']:.1f} | "
                     f"{r['full_fit_s']:.0f} ({r['full_epochs']}) | {r['epoch_gflop']:.0f} | "
                     f"{r['epoch_gflops_rate']:.0f} | {peak} | " + " | ".join(shares)
                     + f" | {r['outside_s'] / total:.0%} |")
    lines += ["", "The operators with the most self time in one epoch:", ""]
    for r in rows:
        ops = ", ".join(f"`{op}` {s / r['profiled_epoch_s']:.0%}" for op, s in r["top_ops"])
        lines.append(f"- {r['device']}, class {r['cls']}, {r['setting']}: {ops}")
    lines += ["", "Runs:", ""]
    for p in {(r["provenance"]["command"], r["provenance"]["date"],
               r["provenance"]["machine"]): None for r in rows}:
        lines.append(f"- `{p[0]}` ({p[1]}; {p[2]})")
    if rows:
        lines += ["", *provenance_lines(rows[-1]["provenance"])[3:]]
    save_result(out, STEM, lines, {"rows": rows})


def main():
    parser = make_parser(__doc__, seeds=(0,), classes=(0,), device="cpu")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="the settings to profile (default: %(default)s)")
    parser.add_argument("--data", default=None,
                        help="a local copy of full MNIST (sknovelty.datasets.load_mnist)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="train on at most N digits (a smoke run; each row records its "
                        "training digits)")
    parser.add_argument("--report", action="store_true", help="only write the report")
    args = parser.parse_args()
    path = os.path.join(args.out, STEM + ".jsonl")
    if not args.report:
        info = provenance(args)
        peak = None if str(args.device).startswith("cuda") else matmul_peak()
        X_train, y_train = load_mnist(args.data, split="train")
        os.makedirs(args.out, exist_ok=True)
        warnings.simplefilter("ignore")
        # the first fit of a process also pays one-off costs (torch.optim imports
        # torch._dynamo, ~2 s): paid here, so that no setting's 1-epoch fit carries them
        timed_fit(X_train[:256], "library", 0, args.device, 1)
        for k in args.classes:
            X = X_train[y_train == k][:args.max_train]
            for setting in args.settings:
                for seed in args.seeds:
                    row = run_one(X, k, setting, seed, args.device)
                    row.update(peak_gflops=peak, provenance=info)
                    append_jsonl(path, [row])
                    print(f"class {k}, {setting}: epoch {row['epoch_s']:.1f} s, fixed "
                          f"{row['fixed_s']:.1f} s", flush=True)
    report(args.out, read_jsonl(path))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
