"""UCSD Ped2 from a local copy: LSA on clips, OLED on frame tiles, MMP-AMS on moving objects,
next to the 3-D autoencoder, LTG and ITAE.

Ped2 is not shipped and nothing here downloads it: pass the ``UCSDped2`` folder of a local
copy (``Train/Train001/001.tif ...``, ``Test/Test001/...`` and ``Test/UCSDped2.m`` or the
``TestNNN_gt`` masks; ``sknovelty.datasets.load_ucsd_ped2``). Frames are shrunk to ``--size``
(default 32 x 48, a CPU budget; the papers use 256 x 256 or crops of it) with
``sknovelty.video.resize_frames``. The methods and their settings are those of
``benchmarks/video.py`` (its ``METHODS``); MMP-AMS takes its objects from
``sknovelty.mmp_ams.detect_moving_objects`` (background: the per-pixel median of all training
frames; ``--threshold``), one class without a detector, so its aspects are F, O and location.
Frame AUROC over all test frames (per-video min-max), EER, fit seconds, scoring rate; writes
``ped2.md`` / ``.json``.

    python benchmarks/ped2.py --path /data/UCSD_Anomaly_Dataset.v1p2/UCSDped2
    python benchmarks/ped2.py --path /data/.../UCSDped2 --methods LSA "OLED patches" MMP-AMS --seeds 0
"""

import numpy as np

from _common import make_parser, provenance, provenance_lines, save_result  # noqa: E402
from video import METHODS, Objects, fit_and_score, kind_aurocs  # noqa: E402

from sknovelty.datasets import load_ucsd_ped2  # noqa: E402
from sknovelty.mmp_ams import detect_moving_objects  # noqa: E402
from sknovelty.video import resize_frames  # noqa: E402


def load(path, size, threshold):
    """The video benchmark's data tuple for Ped2: frames resized, objects found by background
    subtraction."""
    train, _ = load_ucsd_ped2(path, "train")
    test, labels = load_ucsd_ped2(path, "test")
    train = [resize_frames(v, size) for v in train]
    test = [resize_frames(v, size) for v in test]
    background = np.median(np.concatenate(train), axis=0)
    found = [detect_moving_objects(v, background=background, threshold=threshold)
             for v in (*train, *test)]
    boxes, classes = [f[0] for f in found], [f[1] for f in found]
    objects = Objects(boxes[:len(train)], classes[:len(train)], boxes[len(train):],
                      classes[len(train):], n_classes=1)
    return train, test, labels, None, objects


def main():
    parser = make_parser(__doc__, seeds=(0, 1, 2), methods=[m for m in METHODS if "0%" not in m],
                         method_choices=list(METHODS), device=None, epochs=True)
    parser.add_argument("--path", required=True, help="the UCSDped2 folder")
    parser.add_argument("--size", type=int, nargs=2, default=(32, 48), metavar=("H", "W"))
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="foreground threshold of the moving-object boxes (MMP-AMS)")
    args = parser.parse_args()
    data = load(args.path, tuple(args.size), args.threshold)
    rows = []
    for seed in args.seeds:
        for method in args.methods:
            scores, _, fit_s, rate = fit_and_score(method, seed, args.epochs, data)
            result = kind_aurocs(scores, data[2], None)
            rows.append(dict(method=method, seed=seed, auroc=result["all"], eer=result["eer"],
                             fit_s=fit_s, frames_per_s=rate))
            print(f"seed {seed} {method:16s} AUROC {result['all']:.3f} EER {result['eer']:.3f} "
                  f"fit {fit_s:.0f}s", flush=True)
    info = provenance(args)
    n_objects = sum(len(b) for video in data[4].train_boxes for b in video)
    lines = ["# UCSD Ped2 (local copy)", "", *provenance_lines(info),
             f"- data: {args.path}; {len(data[0])} training and {len(data[1])} test videos, frames "
             f"resized to {args.size[0]} x {args.size[1]}; {n_objects} training objects "
             f"(background subtraction, threshold {args.threshold}); epochs "
             f"{args.epochs or 'of benchmarks/video.py'}; seeds {args.seeds}", "",
             "| method | frame AUROC | EER | fit s | frames/s |", "|---|---|---|---|---|"]
    for method in args.methods:
        rs = [r for r in rows if r["method"] == method]
        lines.append(f"| {method} | {np.mean([r['auroc'] for r in rs]):.3f} ± "
                     f"{np.std([r['auroc'] for r in rs]):.3f} | {np.mean([r['eer'] for r in rs]):.3f}"
                     f" | {np.mean([r['fit_s'] for r in rs]):.0f} | "
                     f"{np.mean([r['frames_per_s'] for r in rs]):.0f} |")
    save_result(args.out, "ped2", lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
