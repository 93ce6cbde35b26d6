"""ITAE + NF on the synthetic moving-shapes videos: the ablation of its tables 3-4.

Rows: ITAE with one path / two paths, each without and with the normalizing flows, and a
Glow on raw frames ("NF on frames"). Training: 16-frame clips (stride 4) of the normal videos
of ``make_moving_shapes``; test: clips with stride 2, clip scores averaged over the clips
holding a frame. The paper's frame score (eq. 12-14) is ``S_t = R_t + lambda_L *
norm(NLL_t)`` with the NLL min-max normalised within each video; frame-level AUROC and EER
over all test videos. Writes ``itae_video.md``/``.json`` and ``itae_frames.png`` (frame
scores over time for one test video).

    python benchmarks/itae_video.py                 # 3 seeds, estimator defaults (~10 min)
    python benchmarks/itae_video.py --seeds 0 --epochs 1 --flow-epochs 1   # smoke run
"""

import os

import numpy as np

from _common import (Stopwatch, make_estimator, make_parser, provenance,  # noqa: E402
                     provenance_lines, save_result, seed_row)

from sknovelty.datasets import make_moving_shapes  # noqa: E402
from sknovelty.video import (frame_auroc, frame_eer, frames_to_clips, minmax_per_video,  # noqa: E402
                             video_frame_scores)

T = 16
ROWS = {
    "ITAE one-path": dict(two_path=False, flows=False),
    "ITAE one-path + NF": dict(two_path=False, flows=True),
    "ITAE two-path": dict(two_path=True, flows=False),
    "ITAE two-path + NF": dict(two_path=True, flows=True),
}


LAMBDAS = (0.0, 0.1, 0.5, 2.0, 10.0)  # lambda_L sweep of the "+ NF" rows (scoring only)


def _frame_terms(det, test):
    """Per-video frame reconstruction terms R_t and NLLs (None without flows); R_t of a
    clip is the mean of its frames' patch errors, given to all its frames."""
    rec = video_frame_scores(lambda c: det.score_components(c)["rec"], test, T, 2)
    if "nll" not in det._novelty_terms:
        return rec, None
    return rec, video_frame_scores(lambda c: det.score_components(c)["nll"], test, T, 2)


def _own_frame_rec(det, test):
    """R_t as the paper takes it (sec. 3.4): each frame's own patch error (the term of
    ``score_frames``), the mean over the clips that hold it."""
    return video_frame_scores(lambda c: det._frame_terms(c)["rec"], test, T, 2)


def _paper_scores(rec, nll, lambda_l):
    """Normality per frame: -(R_t + lambda_L * minmax_video(NLL_t)) (eq. 12-14)."""
    if nll is None:
        return [-r for r in rec]
    if lambda_l == np.inf:  # the flows alone
        return [-n for n in minmax_per_video(nll)]
    return [-(r + lambda_l * n) for r, n in zip(rec, minmax_per_video(nll))]


def run(args):
    train, test, labels, events = make_moving_shapes(n_train=4, n_test=4, n_frames=120, size=32,
                                                     random_state=args.data_seed)
    X = np.concatenate([frames_to_clips(v, T, stride=4)[0] for v in train])
    frames = np.concatenate(train)[:, None]
    rows, keep = [], {}
    for seed in args.seeds:
        for name, params in ROWS.items():
            det = make_estimator("ITAE", random_state=seed, device=args.device, epochs=args.epochs,
                                 width=args.width, **params,
                                 **({"flow_epochs": args.flow_epochs} if args.flow_epochs else {}))
            with Stopwatch(args.device) as fit:
                det.fit(X)
            fit_s = fit.seconds
            rec, nll = _frame_terms(det, test)
            scores = _paper_scores(rec, nll, det.lambda_l)
            sweep = {} if nll is None else {
                str(lam): frame_auroc(_paper_scores(rec, nll, lam), labels, normalize=False)
                for lam in (*LAMBDAS, np.inf)}
            own = _own_frame_rec(det, test)   # the paper's per-frame R_t
            own_sweep = {} if nll is None else {
                str(lam): frame_auroc(_paper_scores(own, nll, lam), labels, normalize=False)
                for lam in LAMBDAS}
            test_clips = np.concatenate([frames_to_clips(v, T, 2)[0] for v in test])
            with Stopwatch(args.device) as scoring:
                det.score_components(test_clips)
            clips_per_s = len(test_clips) / scoring.seconds
            rows.append(dict(row=name, seed=seed, fit_s=fit_s, clips_per_s=clips_per_s,
                             auroc=frame_auroc(scores, labels, normalize=False),
                             eer=frame_eer(scores, labels, normalize=False),
                             auroc_videonorm=frame_auroc(scores, labels), auroc_by_lambda=sweep,
                             auroc_own_frames=frame_auroc(_paper_scores(own, nll, det.lambda_l),
                                                          labels, normalize=False),
                             auroc_own_frames_by_lambda=own_sweep))
            report(rows[-1])
            if seed == args.seeds[0]:
                keep[name] = scores
        det = make_estimator("Flow", random_state=seed, device=args.device,
                             epochs=args.flow_epochs)
        with Stopwatch(args.device) as fit:
            det.fit(frames)
        fit_s = fit.seconds
        with Stopwatch(args.device) as scoring:
            scores = [det.score_samples(v[:, None]) for v in test]
        per_s = sum(len(v) for v in test) / scoring.seconds
        rows.append(dict(row="NF on frames", seed=seed, fit_s=fit_s, clips_per_s=per_s,
                         auroc=frame_auroc(scores, labels), eer=frame_eer(scores, labels),
                         auroc_videonorm=frame_auroc(scores, labels)))
        report(rows[-1])
        if seed == args.seeds[0]:
            keep["NF on frames"] = scores
    return rows, keep, labels, events, X.shape


def report(r):
    print(f"seed {r['seed']} {r['row']:22s} AUROC {r['auroc']:.3f} EER {r['eer']:.3f} "
          f"fit {r['fit_s']:.1f}s {r['clips_per_s']:.0f}/s", flush=True)


def plot(args, keep, labels, events):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2))
    for name, scores in keep.items():
        s = scores[0]
        ax.plot((s - s.min()) / (s.max() - s.min()), label=name, lw=1)
    ax.fill_between(np.arange(len(labels[0])), 0, 1, where=labels[0] == -1, color="red",
                    alpha=0.15, label="anomalous frames")
    for kind, start, _ in events[0]:
        ax.text(start, 1.02, kind, fontsize=7)
    ax.set(xlabel="frame", ylabel="normality (per-video min-max)", title="test video 0",
           ylim=(0, 1.1))
    ax.legend(fontsize=7, loc="lower left", ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "itae_frames.png"), dpi=110)
    plt.close(fig)


def write(args, rows, shape):
    info = provenance(args)
    names = [*ROWS, "NF on frames"]
    lines = ["# ITAE + NF on synthetic moving-shapes video", "", *provenance_lines(info),
             f"- data: `make_moving_shapes(n_train=4, n_test=4, n_frames=120, size=32, "
             f"random_state={args.data_seed})`; training clips {shape}; width {args.width}; "
             f"{args.epochs or 20} autoencoder + {args.flow_epochs or 10} flow epochs "
             f"(NF on frames: {args.flow_epochs or 30}); "
             f"seeds {args.seeds}. Frame score eq. 14 (NLL min-max per video); AUROC/EER over "
             "all frames; the last column min-max normalises the whole score per video too.", "",
             "| model | frame AUROC | EER | AUROC (score per-video normalised) | fit s | clips/s "
             "(frames/s for NF on frames) |", "|---|---|---|---|---|---|"]
    for name in names:
        lines.append(seed_row(name, [r for r in rows if r["row"] == name],
                              ("auroc", "eer", "auroc_videonorm")))
    lines += ["", "lambda_L sweep (frame AUROC, mean over seeds; same fits, only the weight of the "
              "normalised NLL in eq. 14 changes; lambda_L = 0 is the reconstruction term alone, "
              "'flows only' drops it; the estimator's default is 0.5):", "",
              "| model | " + " | ".join(f"lambda_L {lam:g}" for lam in LAMBDAS) + " | flows only |",
              "|---" * (len(LAMBDAS) + 2) + "|"]
    for name in (n for n in ROWS if ROWS[n]["flows"]):
        sel = [r["auroc_by_lambda"] for r in rows if r["row"] == name]
        lines.append(f"| {name} | " + " | ".join(
            f"{np.mean([d[str(lam)] for d in sel]):.3f}" for lam in (*LAMBDAS, np.inf)) + " |")
    lines += ["", "The same with R_t as the paper takes it (sec. 3.4): each frame's own patch "
              "error, the mean over the clips that hold it (``score_frames``), where the rows "
              "above give a clip's mean over its frames to every frame (frame AUROC, mean over "
              "seeds; 'at its lambda_L' is the estimator's 0.5, or R_t alone without flows):", "",
              "| model | at its lambda_L | " + " | ".join(f"lambda_L {lam:g}" for lam in LAMBDAS)
              + " |", "|---" * (len(LAMBDAS) + 2) + "|"]
    for name in ROWS:
        sel = [r for r in rows if r["row"] == name and "auroc_own_frames" in r]
        if not sel:
            continue
        cells = [f"{np.mean([r['auroc_own_frames'] for r in sel]):.3f}"] + [
            f"{np.mean([r['auroc_own_frames_by_lambda'][str(lam)] for r in sel]):.3f}"
            if ROWS[name]["flows"] else "–" for lam in LAMBDAS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    save_result(args.out, "itae_video", lines, {"info": info, "rows": rows})


def main(argv=None):
    parser = make_parser(__doc__, seeds=[0, 1, 2])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="autoencoder epochs (default: the estimator's, 20)")
    parser.add_argument("--flow-epochs", type=int, default=None,
                        help="flow epochs, and the epochs of NF on frames (default: the "
                        "estimators', 10 and 30)")
    parser.add_argument("--width", type=float, default=0.125)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows, keep, labels, events, shape = run(args)
    plot(args, keep, labels, events)
    write(args, rows, shape)


if __name__ == "__main__":
    main()
