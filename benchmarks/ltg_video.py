"""LTG on the synthetic moving-shapes videos: learned vs Gaussian vs no pseudo anomalies.

Training: the normal training videos of ``sknovelty.datasets.make_moving_shapes`` cut into
16-frame clips (stride 4). Test: every 16-frame clip (stride 1) of the test videos; the
score of a clip is the PSNR of its 9th frame (the paper's protocol), given to that frame,
min-max normalised per video, then frame-level AUROC and EER over all test videos (also for
the plain clip reconstruction error, averaged over the clips containing a frame). Writes
``ltg_video.md``/``.json``, the training curves of F's and G's losses and of the noise
(paper fig. 8) ``ltg_curves.png``, and frame scores over one test video ``ltg_frames.png``.

    python benchmarks/ltg_video.py                 # 3 seeds, all variants
    python benchmarks/ltg_video.py --seeds 0 --epochs 2   # smoke run
"""

import os

import numpy as np

from _common import (Stopwatch, make_estimator, make_parser, provenance,  # noqa: E402
                     provenance_lines, save_result, seed_row)

from sknovelty.datasets import make_moving_shapes  # noqa: E402
from sknovelty.video import frame_auroc, frame_eer, frames_to_clips, video_frame_scores  # noqa: E402

VARIANTS = {
    "learned": dict(noise="learned"),
    "gaussian 0.1": dict(noise="gaussian", sigma=0.1),
    "gaussian 0.5": dict(noise="gaussian", sigma=0.5),
    "gaussian 1": dict(noise="gaussian", sigma=1.0),
    "none (baseline)": dict(noise="none"),
}
T = 16


def run(args):
    train, test, labels, events = make_moving_shapes(n_train=4, n_test=4, n_frames=120, size=32,
                                                     random_state=args.data_seed)
    X = np.concatenate([frames_to_clips(v, T, stride=4)[0] for v in train])
    rows, keep = [], {}
    for seed in args.seeds:
        for name, params in VARIANTS.items():
            det = make_estimator("LTG", random_state=seed, device=args.device, epochs=args.epochs,
                                 lam=0.1, width=args.width, batch_size=16,
                                 learning_rate=args.lr, **params)
            with Stopwatch(args.device) as fit:
                det.fit(X)
            fit_s = fit.seconds
            with Stopwatch(args.device) as scoring:
                psnr = video_frame_scores(lambda c: det.score_components(c)["psnr"], test, T, 1,
                                          frame_offset=det.score_frame)
            n_clips = sum(len(v) - T + 1 for v in test)
            clips_per_s = n_clips / scoring.seconds
            # the whole clip's error (score_samples now scores frame score_frame alone)
            rec = video_frame_scores(lambda c: -det.score_components(c)["rec"], test, T, 1)
            rows.append(dict(variant=name, seed=seed, fit_s=fit_s, clips_per_s=clips_per_s,
                             auroc_psnr=frame_auroc(psnr, labels), eer_psnr=frame_eer(psnr, labels),
                             auroc_rec=frame_auroc(rec, labels), eer_rec=frame_eer(rec, labels)))
            print(f"seed {seed} {name:16s} AUROC(PSNR) {rows[-1]['auroc_psnr']:.3f} "
                  f"EER {rows[-1]['eer_psnr']:.3f} AUROC(rec) {rows[-1]['auroc_rec']:.3f} "
                  f"fit {fit_s:.1f}s {clips_per_s:.0f} clips/s", flush=True)
            if seed == args.seeds[0]:
                keep[name] = (det, psnr)
    return rows, keep, test, labels, events, X.shape


def plots(args, keep, labels, events):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    det = keep["learned"][0]
    h = det.net_.history
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(h[:, "train_loss"], label="F (eq. 2-3)")
    axes[0].set(title="F's loss", xlabel="epoch")
    ep = [i for i, row in enumerate(h) if "adversary_loss" in row]
    axes[1].plot(ep, [h[i, "adversary_loss"] for i in ep], color="tab:orange")
    axes[1].set(title="G's loss (eq. 7)", xlabel="epoch")
    ep = [i for i, row in enumerate(h) if "delta_sq" in row]
    axes[2].plot(ep, [h[i, "delta_sq"] for i in ep], color="tab:green")
    axes[2].set(title="mean squared noise ||dX||^2 / (THW)", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "ltg_curves.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3))
    for name in ("learned", "none (baseline)"):
        s = keep[name][1][0]
        ax.plot((s - s.min()) / (s.max() - s.min()), label=f"{name}: normalised PSNR")
    lab = labels[0]
    ax.fill_between(np.arange(len(lab)), 0, 1, where=lab == -1, color="red", alpha=0.15,
                    label="anomalous frames")
    for kind, start, _ in events[0]:
        ax.text(start, 1.02, kind, fontsize=7)
    ax.set(xlabel="frame", ylabel="normality", title="test video 0", ylim=(0, 1.1))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "ltg_frames.png"), dpi=110)
    plt.close(fig)


def write(args, rows, shape):
    info = provenance(args)
    lines = ["# LTG on synthetic moving-shapes video", "", *provenance_lines(info),
             f"- data: `make_moving_shapes(n_train=4, n_test=4, n_frames=120, size=32, "
             f"random_state={args.data_seed})`; training clips {shape} (stride 4); test: every "
             f"16-frame clip (stride 1); model width {args.width}, lam 0.1, p 0.5, batch 16, "
             f"lr {args.lr}; seeds {args.seeds}",
             "- PSNR: the paper's protocol (PSNR of the 9th frame of each clip, per-video min-max); "
             "rec: mean squared error of the whole clip, averaged over the clips holding a frame, "
             "per-video min-max. Mean +- std over seeds.", "",
             "| variant | frame AUROC (PSNR) | EER (PSNR) | frame AUROC (rec) | EER (rec) | fit s | "
             "clips/s |", "|---|---|---|---|---|---|---|"]
    for name in VARIANTS:
        lines.append(seed_row(name, [r for r in rows if r["variant"] == name],
                              ("auroc_psnr", "eer_psnr", "auroc_rec", "eer_rec")))
    save_result(args.out, "ltg_video", lines, {"info": info, "rows": rows})


def main(argv=None):
    parser = make_parser(__doc__, seeds=[0, 1, 2], epochs=True)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows, keep, test, labels, events, shape = run(args)
    plots(args, keep, labels, events)
    write(args, rows, shape)


if __name__ == "__main__":
    main()
