"""The results pages of the docs, generated from ``benchmarks/results`` at build time.

Every ``benchmarks/results/<stem>.md`` becomes the page ``docs/results/generated/<stem>.md``:
a title and a line that says what the result is, which command wrote it and where its raw
rows are, the result's plots, then the result file itself as committed (its own first heading
left out). The plots are copied next to the pages. Nothing here is edited by hand: a result
file that changes changes its page at the next build, and a new result file gets a page of
its own (listed under "Other results"). ``docs/conf.py`` calls :func:`write_result_pages`
when Sphinx starts; the pages are rewritten only where their text changed, so an incremental
build re-reads only those.

    python docs/_build_results.py      # writes the pages without building the site
"""

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = Path(__file__).resolve().parent / "results" / "generated"

#: the groups of the results index, in order
GROUPS = (
    "Image detectors on one-class MNIST-5k",
    "The papers' own tables (full MNIST)",
    "Robustness suite: defaults on data nobody tuned them for",
    "Video",
    "Speed, precision, threads and GPUs",
    "Diagnoses of single methods",
    "Other results",
)

#: stem: (group, title, what it is, the command that writes it, plots)
PAGES_META = {
    "one_class_mnist": (
        GROUPS[0], "One-class MNIST-5k: every image detector",
        "Train on one digit (~360 images), test on the 1,000 held-out images of all digits; "
        "AUROC per class over 3 seeds, fit time, scoring rate, OLED's and LTG's ablations, "
        "MMP's training settings.",
        "python benchmarks/one_class.py", ("one_class_mnist.png", "oled_masks.png",
                                            "oled_masks_sigmoid.png")),
    "one_class_mnist_ae_amd": (
        GROUPS[0], "One-class MNIST-5k: the autoencoder rerun beside LSA",
        "The plain autoencoder on the same machine and thread count as LSA's current "
        "defaults, paired per seed with LSA's combined score.",
        "python benchmarks/one_class.py --methods AE", ()),
    "lsa_sweep": (
        GROUPS[0], "LSA: the sweep that chose its training settings",
        "Batch size, learning rate and epochs of LSA on one-class MNIST-5k.",
        "python benchmarks/lsa_sweep.py", ()),
    "mmp": (
        GROUPS[0], "MMP: Proposition 3 on the roads set and its tables 1-2",
        "As many predictors as roads against one predictor; training losses and masking "
        "on MNIST-5k.", "python benchmarks/mmp.py", ("mmp_roads.png",)),
    "mmp_stability": (
        GROUPS[0], "MMP: training stability over seeds and settings",
        "Collapses and AUROC of MMP's training settings over seeds and classes.",
        "python benchmarks/mmp_stability.py", ()),
    "paper_lsa": (
        GROUPS[1], "LSA table 1 and supplementary table 3 on full MNIST",
        "One class of MNIST's 60,000 training digits against the 10,000 test digits: LSA's "
        "NS, REC and LLK and the table's OC-SVM, KDE and DAE beside the paper's numbers, per "
        "configuration (the defaults; 5 epochs).",
        "python benchmarks/paper_tables.py lsa", ()),
    "paper_oled": (
        GROUPS[1], "OLED tables 1 and 4 on full MNIST (MemAE's protocol)",
        "OLED's four scores, the autoencoder and OC-SVM beside the paper's 10-class means.",
        "python benchmarks/paper_tables.py oled", ()),
    "oled_split_check": (
        GROUPS[1], "OLED's MNIST split: test inliers seen in training",
        "A replay of the data splits of OLED's official MNIST scripts: how many of each "
        "class's test inliers its models were trained or validated on.",
        "python benchmarks/oled_split_check.py", ()),
    "oled_protocol": (
        GROUPS[1], "OLED on MNIST: what the official scripts' protocol adds",
        "sknovelty's OLED trained on the official scripts' split and scored after every "
        "epoch: the AUROC as sknovelty computes it, then with the scripts' metric, test "
        "inliers and best-epoch choice added one at a time.",
        "python benchmarks/oled_protocol.py", ()),
    "paper_mmp": (
        GROUPS[1], "MMP table 2 on full MNIST (masking)",
        "MMP with 75% and 0% masking beside the paper's 10-class means, with and without "
        "a skip path in f.",
        "python benchmarks/paper_tables.py mmp", ()),
    "mmp_budget": (
        GROUPS[1], "MMP's masking ablation along the training budget",
        "One MNIST class, 75% and 0% masking with and without the skip path, scored on the "
        "test digits every few epochs of one fit.",
        "python benchmarks/mmp_budget.py", ()),
    "robustness": (
        GROUPS[2], "Robustness suite: every estimator at its defaults on 8 data sets",
        "Digits, textures, photographs, faces and three tables that ship offline; AUROC over "
        "3 seeds, mean ranks, fit seconds, scoring rates and the warnings raised.",
        "python benchmarks/robustness.py", ("robustness.png",)),
    "embedding": (
        GROUPS[2], "Pretrained features in front of a detector",
        "EfficientNet-Lite0's ImageNet features (PretrainedEmbedding) followed by kNN, KDE or "
        "OC-SVM on the suite's image sets, 3 seeds, at two input sizes, beside the best "
        "pixel-space detector; the extraction rate per input size.",
        "python benchmarks/embedding.py", ()),
    "embedding_stages": (
        GROUPS[2], "Pretrained features: which stages and pooling",
        "Nearest neighbours on each stage of EfficientNet-Lite0 and on groups of stages, "
        "average or max pooling, on the suite's image sets (where the default is chosen) and "
        "on MNIST-5k (the check), with a leave-one-set-out selection.",
        "python benchmarks/embedding_stages.py", ()),
    "embedding_gap": (
        GROUPS[2], "Pretrained features against the pixel-space detectors",
        "Where the embedding pipelines stop short of the best detector on the pixels (mnist-0, "
        "digits-3, textures): nearest neighbours at three input sizes, a Ledoit-Wolf "
        "Gaussian, a patch memory bank and the union with the pixels, 3 seeds.",
        "python benchmarks/embedding_gap.py", ()),
    "embedding_spatial": (
        GROUPS[2], "Pretrained features that keep their layout",
        "Nearest neighbours on whole maps of local features (stages 1-3 at 32 and 64 px) on "
        "the suite's image sets, 3 seeds, with a leave-one-set-out choice: whether features "
        "that keep where strokes are reach the pixels' score on small digits.",
        "python benchmarks/embedding_spatial.py", ()),
    "embedding_complexity": (
        GROUPS[2], "Pretrained features and input complexity (the photos set)",
        "Whether adding the inputs' code length to the embedding kNN score rescues the set "
        "where novel images are simpler than normal ones, and what it costs elsewhere.",
        "python benchmarks/embedding_complexity.py", ()),
    "complexity_check": (
        GROUPS[2], "Input complexity: why simpler novel inputs look normal",
        "A method's novelty score against the zlib code length of its inputs, and what a "
        "label-free correction does.", "python benchmarks/complexity_check.py", ()),
    "simple_input_check": (
        GROUPS[2], "The flat-input guard on the suite's image sets",
        "How often the warning about simpler inputs fires, and where.",
        "python benchmarks/simple_input_check.py", ()),
    "video": (
        GROUPS[3], "Video systems without downloads",
        "Street scenes with one anomaly per kind, three real clips with injected events (one "
        "a 1,799-frame street film); frame AUROC over 3 seeds for every video system of the "
        "library beside two frame baselines (nearest neighbours on pixels, a frame "
        "autoencoder), and measurements of why the clip methods lose to them.",
        "python benchmarks/video.py", ("video.png", "video_frames.png")),
    "ltg_video": (
        GROUPS[3], "LTG on synthetic moving-shapes video",
        "Learned noise against Gaussian noise and no pseudo anomalies, frame AUROC.",
        "python benchmarks/ltg_video.py", ("ltg_curves.png", "ltg_frames.png")),
    "itae_video": (
        GROUPS[3], "ITAE + NF on synthetic moving-shapes video",
        "Two paths against one, with and without the flows, frame AUROC.",
        "python benchmarks/itae_video.py", ("itae_frames.png",)),
    "throughput": (
        GROUPS[4], "Scoring throughput and fit time per method (CPU)",
        "Each estimator against its network's bare forward pass, scoring chunk sizes, "
        "bfloat16 against float32, streaming a 1,000,000-row memmap.",
        "python benchmarks/throughput.py", ()),
    "throughput_h200": (
        GROUPS[4], "Scoring throughput and fit time per method (H200 GPU)",
        "The same measurements on an NVIDIA H200.",
        "python benchmarks/throughput.py --device cuda", ()),
    "threads": (
        GROUPS[4], "Results against torch's thread count (1 vs 2 threads)",
        "How much each method's AUROC moves with the number of CPU threads.",
        "python benchmarks/threads.py", ()),
    "thread_divergence": (
        GROUPS[4], "Weight drift between a 1-thread and a 2-thread fit",
        "Why the thread count matters: float32 rounding that grows epoch by epoch.",
        "python benchmarks/thread_divergence.py", ()),
    "fit_flops": (
        GROUPS[4], "Arithmetic of a fit at defaults against the CPU's peak",
        "Floating-point operations of each fit: the lower bound on its time on a given CPU.",
        "python benchmarks/fit_flops.py", ()),
    "lsa_fit_time": (
        GROUPS[4], "LSA at its defaults: fit time, scoring rate, model size",
        "One LSA fit on MNIST-5k, timed, with the size of its pickle and its model file.",
        "python benchmarks/lsa_fit_time.py", ()),
    "lsa_profile": (
        GROUPS[4], "Where a full-MNIST LSA fit spends its time",
        "One class of MNIST's 60,000 training digits at the library's and the paper's "
        "settings: one epoch's seconds, its arithmetic against the CPU's peak, and its time "
        "per group of torch operators (profiler).",
        "python benchmarks/lsa_profile.py", ()),
    "gpu_check": (
        GROUPS[4], "CUDA check on an H100",
        "Every deep estimator fitted and scored on a GPU, then moved back to the CPU.",
        "python benchmarks/gpu_check.py --with-cpu", ()),
    "gpu_check_h200": (
        GROUPS[4], "CUDA check on an H200",
        "The CUDA check on an NVIDIA H200 (partial).",
        "python benchmarks/gpu_check.py", ()),
    "lsa_diagnosis": (
        GROUPS[5], "LSA: its combined score against its REC and LLK terms",
        "Why LSA's combined score does not beat its own reconstruction term on MNIST-5k: "
        "per-epoch probes, normalisation constants, the estimator's size, resolution and "
        "training.", "python benchmarks/lsa_diagnosis.py", ()),
    "lsa_gradient_check": (
        GROUPS[5], "LSA: how much the latent term trains the encoder",
        "Gradient norms that reach LSA's encoder from each of its two losses.",
        "python benchmarks/lsa_gradient_check.py", ()),
    "oled_mask_dependence": (
        GROUPS[5], "OLED: do the learned masks depend on the input?",
        "On one-class MNIST-5k: s_cont with each digit's own mask against one fixed mask, "
        "the overlap of two digits' masks and how much ink they hide.",
        "python benchmarks/oled_mask_dependence.py", ()),
    "oled_diagnosis_textures": (
        GROUPS[5], "OLED on the textures set: each term, batch size and epochs",
        "OLED's terms and its masks' drift on the robustness suite's textures.",
        "python benchmarks/oled_texture_diagnosis.py --set textures", ()),
    "oled_diagnosis_breast_cancer": (
        GROUPS[5], "OLED on the breast cancer table",
        "OLED, the CAE and the AE at 20, 50 and 100 epochs.",
        "python benchmarks/oled_texture_diagnosis.py --set breast_cancer", ()),
    "oled_diagnosis_wine": (
        GROUPS[5], "OLED on the wine table", "OLED, the CAE and the AE at 20, 50 and 100 epochs.",
        "python benchmarks/oled_texture_diagnosis.py --set wine", ()),
    "oled_diagnosis_iris": (
        GROUPS[5], "OLED on the iris table", "OLED, the CAE and the AE at 20, 50 and 100 epochs.",
        "python benchmarks/oled_texture_diagnosis.py --set iris", ()),
}


def _write(path, data):
    """Write ``data`` (str or bytes) to ``path`` unless it already holds exactly that."""
    mode = "b" if isinstance(data, bytes) else ""
    if path.exists():
        with open(path, "r" + mode, **({} if mode else {"encoding": "utf-8"})) as f:
            if f.read() == data:
                return
    with open(path, "w" + mode, **({} if mode else {"encoding": "utf-8"})) as f:
        f.write(data)


def _meta(stem, text):
    """The page's metadata; a result file not in ``PAGES_META`` gets its own first heading."""
    if stem in PAGES_META:
        return PAGES_META[stem]
    first = text.splitlines()[0] if text.strip() else stem
    title = first.lstrip("#").strip() if first.startswith("#") else stem.replace("_", " ")
    return GROUPS[-1], title, "", None, ()


def _body(text):
    """The result file without its first heading, its other headings kept in order."""
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip() + "\n"


def result_page(stem, text):
    """The Markdown of the page of ``benchmarks/results/<stem>.md``, whose text is ``text``."""
    _, title, what, command, plots = _meta(stem, text)
    raw = [f"`{stem}{ext}`" for ext in (".json", ".jsonl") if (RESULTS / (stem + ext)).exists()]
    source = (f"Generated from `benchmarks/results/{stem}.md`"
              + (f" (raw rows: {', '.join(raw)})" if raw else "")
              + (f", written by `{command}`" if command else "") + ".")
    lines = [f"# {title}", ""]
    if what:
        lines += [what, ""]
    lines += [source, ""]
    for plot in plots:
        if (RESULTS / plot).exists():
            lines += [f"![{plot}]({plot})", ""]
    lines += ["## The result file", "", _demote(_body(text))]
    return "\n".join(lines)


def _demote(body):
    """Headings of the result file one level below the page's "The result file" section."""
    return re.sub(r"^(#{1,5}) ", lambda m: "#" + m.group(1) + " ", body, flags=re.MULTILINE)


def index_list():
    """Markdown list of every result page by group, as ``docs/results/index.md`` includes it."""
    by_group = {}
    for path in sorted(RESULTS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        group, title, what, _, _ = _meta(path.stem, text)
        by_group.setdefault(group, []).append((path.stem, title, what))
    lines = []
    for group in GROUPS:
        if group not in by_group:
            continue
        lines += [f"## {group}", ""]
        order = [s for s in PAGES_META if any(s == stem for stem, _, _ in by_group[group])]
        entries = sorted(by_group[group], key=lambda e: order.index(e[0]) if e[0] in order
                         else len(order))
        for stem, title, what in entries:
            lines.append(f"- [{title}](generated/{stem}.md)" + (f": {what}" if what else ""))
        lines.append("")
    return "\n".join(lines)


def write_result_pages(app=None):
    """Write ``docs/results/generated/``: one page per result file, its plots, and the list
    that the results index includes. Sphinx calls it on ``builder-inited``."""
    PAGES.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for path in sorted(RESULTS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        _write(PAGES / path.name, result_page(path.stem, text))
        wanted.add(path.name)
        for plot in _meta(path.stem, text)[4]:
            if (RESULTS / plot).exists():
                _write(PAGES / plot, (RESULTS / plot).read_bytes())
                wanted.add(plot)
    _write(PAGES / "list.md.inc", index_list())
    wanted.add("list.md.inc")
    for old in PAGES.iterdir():  # pages of result files that are gone
        if old.name not in wanted:
            if old.is_dir():
                shutil.rmtree(old)
            else:
                os.remove(old)
    return sorted(wanted)


if __name__ == "__main__":
    print("\n".join(write_result_pages()))
