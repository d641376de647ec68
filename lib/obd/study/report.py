"""The study's report site: a front page that tells the story, and every executed notebook.

``python -m obd.study.report --reports DIR --figures DIR --results DIR`` builds ``DIR/site/`` with
Sphinx and MyST-NB from the executed notebooks (``DIR/*.ipynb``) and writes ``DIR/index.html``,
which opens it. Its first screen states the study's question and its three headline answers
with this run's numbers (``obd.study.findings.HEADLINES``), each linked to the figures that show it,
and links every figure. Below come the findings with their numbers and whether each held on this
run (``obd.study.findings``, computed from ``results/``), the figures with captions, each linking to
the notebook that drew it, the summary table and the provenance of the run: commit, date,
machine, package versions and the notebooks' wall times.

The site works offline: no script, style sheet, image or font is loaded from the network
(checked after every build, :func:`obd.pipeline.portable.remote_assets`), figures are image files, stderr
(progress bars, warnings) is left out, machine paths are made relative to the repository and the
validation cells are folded. Files are world-readable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import nbformat
import pandas as pd

from obd.pipeline.io import temp_prefix, write_text
from obd.pipeline.portable import REMOTE_ASSET, path_rules, relative_text, remote_assets
from obd.study import convnet_summary as cs
from obd.study import findings as fnd

QUESTION = (
    "A 2016 blog post pruned a small MNIST network (784-50-50-50-50-10, ReLU) without retraining "
    "and found Optimal Brain Damage (LeCun et al., 1990) no better than pruning the smallest "
    "weights, and worse on a network trained with dropout. Was that OBD, or the blog's code? "
    "This study re-runs the blog's code as published, corrects its two flaws (a signed-weight "
    '"magnitude" and a Hessian row sum on 64 images in place of the diagonal), computes the '
    "exact Hessian diagonal over all 60,000 training images, and reports every variant over "
    "several training seeds, then goes beyond the blog: OBD's assumptions measured, cheaper "
    "curvature estimates, Optimal Brain Surgeon, and pruning with retraining; finally it prunes "
    "two larger networks, LeNet-300-100 and the convnet LeNet-5, against the 12x that Han et al. "
    "(2015) reported for them."
)
#: The question in two sentences: the first thing the front page says.
QUESTION_SHORT = (
    "A 2016 blog post found Optimal Brain Damage (LeCun et al., 1990) no better than pruning the "
    "smallest weights of a small MNIST network, and worse with dropout. Was that OBD, or the "
    "blog's code?"
)
#: figure file stem: title, caption, notebook page, which seeds (sweeps | convnets |
#: <csv under results/>)
FIGURES = {
    "fig1_blog_variants": (
        "The blog's five variants, corrected",
        "Test accuracy against the fraction of weights pruned (0-20%), one-shot, no retraining; "
        "right: the same zoomed to 90-98%. Dashed with dots: the blog's 2016 logs.",
        "compare", "sweeps"),
    "fig2_obd_dropout": (
        "OBD over all layers, with and without dropout",
        "0-100% pruned; layer-wise Optimal Brain Surgeon (with its weight update) and random "
        "pruning for reference.",
        "compare", "sweeps"),
    "fig3_as_published_vs_corrected": (
        "The blog's code as published against the corrected saliencies",
        "Dotted: the blog's code re-run here; solid: |w| or the exact OBD diagonal; dashed with "
        "dots: the blog's logs.",
        "compare", "sweeps"),
    "fig4_obd_assumptions": (
        "OBD's prediction of the loss change, term by term",
        "OBD's estimate, the full quadratic form, the first-order term and the actual change of "
        "the mean training loss at each pruning level (symmetric log scale), and the cross terms "
        "over the diagonal terms.",
        "assumptions", "assumptions.csv"),
    "fig5_curvature": (
        "Which curvature?",
        "Accuracy after pruning with OBD saliencies from cheaper curvature estimates, overlap of "
        "the pruned sets with the exact choice, and agreement against cost.",
        "curvature", "curvature.csv"),
    "fig6_retraining": (
        "Iterative pruning with retraining",
        "LeCun et al.'s loop: prune by OBD or magnitude, retrain with the mask fixed, recompute, "
        "repeat; one-shot OBD without retraining for comparison. Hollow markers: before each "
        "retraining.",
        "retrain", "retrain.csv"),
    "fig7_blog_replay": (
        "The blog on its own weights",
        "The blog's published checkpoints pruned by its own code, replayed, against its logged "
        "accuracies, one panel per run.",
        "blog_replay", ""),
    "fig8_convnets": (
        "Pruning LeNet-300-100 and LeNet-5, against Han et al. (2015) and later work",
        "Test error against the kernel weights pruned, one column per network; top: every level "
        "(percentage pruned, error on a log scale), bottom: from 75% pruned against the "
        "compression, weights over non-zero weights (log scale). Lines: one-shot pruning without "
        "retraining; markers: iterative pruning, each after its round's retraining (bars from the "
        "lowest to the highest seed); filled shapes: published pruned networks (Han et al. 2015, "
        "Dynamic Network Surgery, Sparse Variational Dropout, Soft Weight Sharing; horizontal "
        "bars: the range of ratios in print), hollow at 0%: their dense references; dashed: our "
        "dense error plus 0.1 point.",
        "convnet_compare", "convnets"),
    "fig9_convnet_sparsity": (
        "Where the pruning falls, layer by layer",
        "Percentage of each layer's kernel weights remaining (log scale) after the last round of "
        "iterative OBD and iterative magnitude pruning, and after one-shot pruning over all "
        "layers at a 1-point loss (dotted, pale), next to Han et al.'s published per-layer "
        "numbers (hatched).",
        "convnet_compare", "convnets"),
}  # fmt: skip
#: figure file stem: a short name for the front page's list of figures
FIGURE_SHORT = {
    "fig1_blog_variants": "The blog's five variants, corrected",
    "fig2_obd_dropout": "OBD, OBS and dropout, 0-100%",
    "fig3_as_published_vs_corrected": "As published against corrected",
    "fig4_obd_assumptions": "OBD's assumptions",
    "fig5_curvature": "Which curvature?",
    "fig6_retraining": "Retraining",
    "fig7_blog_replay": "The blog on its own weights",
    "fig8_convnets": "LeNet-300-100 and LeNet-5",
    "fig9_convnet_sparsity": "Layer by layer",
}
#: headline finding (obd.study.findings.HEADLINES): the figures that show it
HEADLINE_FIGURES = {
    "obd-vs-magnitude": ("fig1_blog_variants", "fig3_as_published_vs_corrected"),
    "global-obs": ("fig2_obd_dropout",),
    "retrain": ("fig6_retraining",),
}
SOURCES = [
    ("The blog post: S. Shekkizhar (2016), Neural network compression using optimal brain damage",
     "https://shekkizh.github.io/posts/2016/09/neural-networks-pruning/"),
    ("The blog's code: shekkizh/TensorflowProjects, Model_Pruning/",
     "https://github.com/shekkizh/TensorflowProjects/tree/master/Model_Pruning"),
    ("The blog's logs: shekkizh/neuralnetworks.thought-experiments, Model Pruning/logs/",
     "https://github.com/shekkizh/neuralnetworks.thought-experiments/tree/master/Model%20Pruning/logs"),
    ("Y. LeCun, J. S. Denker, S. A. Solla (1990), Optimal Brain Damage, NIPS 2",
     "https://papers.nips.cc/paper/250-optimal-brain-damage.pdf"),
    ("B. Hassibi, D. G. Stork (1993), Second order derivatives for network pruning: Optimal "
     "Brain Surgeon, NIPS 5",
     "https://papers.nips.cc/paper/647-second-order-derivatives-for-network-pruning-optimal-brain-surgeon.pdf"),
    ("E. Frantar, D. Alistarh (2022), Optimal Brain Compression: a framework for accurate "
     "post-training quantization and pruning (OBC), NeurIPS 35",
     "https://arxiv.org/abs/2208.11580"),
    ("S. Han, J. Pool, J. Tran, W. J. Dally (2015), Learning both weights and connections for "
     "efficient neural networks, NeurIPS 28",
     "https://arxiv.org/abs/1506.02626"),
    ("Y. Guo, A. Yao, Y. Chen (2016), Dynamic network surgery for efficient DNNs, NeurIPS 29",
     "https://arxiv.org/abs/1608.04493"),
    ("D. Molchanov, A. Ashukha, D. Vetrov (2017), Variational dropout sparsifies deep neural "
     "networks, ICML 2017",
     "https://arxiv.org/abs/1701.05369"),
    ("K. Ullrich, E. Meeds, M. Welling (2017), Soft weight-sharing for neural network "
     "compression, ICLR 2017",
     "https://arxiv.org/abs/1702.04008"),
]  # fmt: skip
GROUPS = (
    ("Comparison with the blog", ("compare", "blog_replay")),
    ("Analyses beyond the blog", ("assumptions", "curvature", "retrain")),
    ("Convnets: LeNet-300-100 and LeNet-5 against Han et al. (2015) and later work", ("convnet",)),
    ("Pruning sweeps (one per variant, all seeds)", ("prune-",)),
    ("Training runs", ("train-",)),
)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "pandas", "scipy", "matplotlib",
            "tensorflow-datasets", "papermill", "myst-nb", "sphinx")  # fmt: skip
CONF = """# Generated by obd.study.report: the report site's Sphinx configuration.
project = "Optimal Brain Damage on the MNIST MLP"
extensions = ["myst_nb"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = project
html_theme_options = {"page_width": "1180px", "sidebar_width": "250px", "show_relbars": True}
html_show_sourcelink = False
html_copy_source = False
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath"]
mathjax_path = "none"
html_static_path = ["_static"]
html_css_files = ["front.css"]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "misc.highlighting_failure"]
"""
#: The front page's first screen: the question, the three answers and the figures, compact.
FRONT_CSS = """/* Generated by obd.study.report: the front page's first screen. */
div.body h1 { font-size: 200%; margin: 0 0 12px; }
div.front-question p { font-size: 112%; margin: 0 0 10px; }
div.front-answers ol { margin: 4px 0 8px 24px; }
div.front-answers li { margin-bottom: 6px; }
div.front-answers p, div.front-figures p { margin: 0 0 4px; }
div.front-figures { font-size: 92%; margin-bottom: 20px; }
"""
EXTERNAL = REMOTE_ASSET  # what a page may not load from the network (obd.pipeline.portable)


def _visible(paths) -> list[Path]:
    """Finished outputs: hidden names (temporary files of unfinished writes) are skipped."""
    return sorted(Path(p) for p in paths if not Path(p).name.startswith("."))


def _group(stem: str) -> str:
    for title, prefixes in GROUPS:
        if stem.startswith(prefixes):
            return title
    return "Other notebooks"


# --------------------------------------------------------------------------------------------
# Provenance


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _accelerator() -> str:
    try:
        import jax

        devices = jax.devices()
        kinds = sorted({f"{d.platform}: {d.device_kind}" for d in devices})
        return f"{len(devices)} device(s), " + ", ".join(kinds)
    except Exception as err:  # report what is known rather than fail the site
        return f"unknown ({type(err).__name__})"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{seconds:.1f} s"


def notebook_times(reports: Path) -> pd.DataFrame:
    """Per executed notebook: start, end and wall time (papermill's metadata)."""
    rows = []
    for nb_path in _visible(reports.glob("*.ipynb")):
        if nb_path.name.endswith(".failed.ipynb"):
            continue
        meta = json.loads(nb_path.read_text()).get("metadata", {}).get("papermill", {})
        if meta.get("duration") is None:
            continue
        rows.append({"report": nb_path.stem, "start": pd.Timestamp(meta["start_time"]),
                     "end": pd.Timestamp(meta["end_time"]), "seconds": float(meta["duration"])})  # fmt: skip
    return pd.DataFrame(rows, columns=["report", "start", "end", "seconds"])


def provenance(reports: Path) -> dict:
    """Commit, date, machine, versions and timings of the run whose reports are in ``reports``."""
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    times = notebook_times(reports)
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "commit": (commit[:12] + (" with uncommitted changes" if dirty else "")) or "unknown",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}",
        "accelerator": _accelerator(),
        "versions": versions,
        "notebooks": len(times),
        "notebook_seconds": float(times.seconds.sum()) if len(times) else 0.0,
        "span_seconds": float((times.end.max() - times.start.min()).total_seconds())
        if len(times) else 0.0,
        "times": times,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Pages


def _seeds_note(results: Path, which: str) -> str:
    """How many training seeds a figure shows, read from the CSV it was drawn from."""
    if not which:
        return ""
    try:
        if which == "sweeps":
            n = int(pd.read_csv(results / "summary.csv").seeds.max())
            return (
                f"Curves: mean over {n} training seeds, band from the lowest to the highest seed."
            )
        if which == "convnets":
            return _convnet_seeds_note(results)
        seeds = sorted(pd.read_csv(results / which)["seed"].unique())
    except (OSError, KeyError, ValueError):
        return ""
    if len(seeds) == 1:
        return f"One training seed (seed {seeds[0]})."
    return f"Training seeds {', '.join(map(str, seeds))}: means, bands from lowest to highest."


def _convnet_seeds_note(results: Path) -> str:
    """Which training seeds of each network the convnet figures show."""
    t = cs.read_kind(results, "oneshot")
    t = pd.concat([t, cs.read_kind(results, "iterative")], ignore_index=True)
    if t.empty:
        return ""
    parts = []
    archs = [a for a in cs.ARCHS if a in set(t["arch"])] + sorted(set(t["arch"]) - set(cs.ARCHS))
    for arch in archs:
        seeds = sorted(t.loc[t["arch"] == arch, "seed"].unique())
        parts.append(f"{cs.arch_label(arch)} seed{'s' if len(seeds) > 1 else ''} "
                     + ", ".join(map(str, seeds)))  # fmt: skip
    return "Training " + "; ".join(parts) + ": means, bands from lowest to highest."


def _convnet_table(results: Path) -> str:
    path = results / "convnet_summary.md"
    if not path.is_file():
        return "*No convnet table: `convnet_compare.ipynb` has not run.*\n"
    return path.read_text()


def _summary_table(results: Path) -> str:
    path = results / "summary.csv"
    if not path.is_file():
        return "*No summary table: `compare.ipynb` has not run.*\n"
    s = pd.read_csv(path)
    lines = ["| variant | seeds | unpruned accuracy (%) | weights pruned at <= 1 point loss (%) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    lines += [
        f"| {r.label} | {r.seeds} | {100 * r.unpruned_accuracy:.2f} | "
        f"{100 * r.tolerated_mean:.1f} ± {100 * r.tolerated_std:.1f} |"
        for r in s.itertuples()
    ]
    return "\n".join(lines) + "\n"


def _figure_number(stem: str) -> str:
    m = re.match(r"fig(\d+)", stem)
    return m.group(1) if m else stem


def _figure_refs(stems: list[str]) -> str:
    """``See Figure 1 and Figure 3.``, each a link to its figure (empty for none)."""
    refs = [f"{{ref}}`Figure {_figure_number(s)} <{s}>`" for s in stems]
    if not refs:
        return ""
    return "See " + ", ".join(refs[:-1]) + (" and " if len(refs) > 1 else "") + refs[-1] + "."


def first_screen(found: list[fnd.Finding], stems: list[str]) -> list[str]:
    """The front page's first screen (MyST): the question, the three headline answers with
    their numbers from this run, whether each held and the figures that show it, then a link
    to every figure (``stems``: the figures drawn)."""
    held, checked = fnd.tally(found)
    marks = {True: "*(held)*", False: "**(did not hold on this run)**", None: "*(not checked)*"}
    out = ["```{container} front-question", f"**The question.** {QUESTION_SHORT}", "```", ""]
    answers = fnd.headlines(found)  # none without a results folder
    if answers:
        out += ["```{container} front-answers",
                f"**The answers from this run** ({held} of {checked} checked findings held; all "
                "of them {ref}`below <findings>`):", ""]  # fmt: skip
        for i, f in enumerate(answers, 1):
            lead, _, rest = (f.headline or f"{f.title}: {f.text}").partition(": ")
            figs = _figure_refs([s for s in HEADLINE_FIGURES.get(f.key, ()) if s in stems])
            out.append(f"{i}. **{lead}:** {rest} {marks[f.held]} {figs}".rstrip())
        out += ["```", ""]
    if stems:
        links = [f"{{ref}}`{_figure_number(s)}.\u00a0{FIGURE_SHORT.get(s, FIGURES.get(s, (s,))[0])} "
                 f"<{s}>`" for s in stems]  # fmt: skip
        out += ["```{container} front-figures", "**Figures:** " + " · ".join(links), "```", ""]
    return out


def front_page(reports: Path, figures: Path, results: Path, pages: list[str], prov: dict) -> str:
    """The site's front page (MyST Markdown)."""
    found = fnd.write(results) if results.is_dir() else []
    held, checked = fnd.tally(found)
    pngs = _visible(figures.glob("fig*.png"))
    out = ["# Optimal Brain Damage on the MNIST MLP\n"]
    out += first_screen(found, [p.stem for p in pngs])
    out += ["## The study\n", QUESTION + "\n"]
    out += ["(findings)=", "## Findings\n",
            f"**{held} of {checked} checked findings held on this run** (each is computed from "
            "`results/` after the run and checked with the stated tolerance; numbers are means ± "
            "standard deviations over training seeds).\n"]  # fmt: skip
    marks = {True: "held", False: "**did not hold**", None: "not checked"}
    for f in found:
        link = f" ([{f.source}](notebooks/{f.source}.ipynb))" if f.source in pages else ""
        check = f"; check: {f.check}" if f.check else ""
        out.append(f"* **{f.title}.** {f.text}{link} *[{marks[f.held]}{check}]*")
    out.append("")
    if pngs:
        out.append("## Figures\n")
    for png in pngs:
        title, caption, page, which = FIGURES.get(png.stem, (png.stem, "", "", ""))
        note = _seeds_note(results, which)
        made = f"Made by [{page}](notebooks/{page}.ipynb)." if page in pages else ""
        number = _figure_number(png.stem)
        out += [f"```{{figure}} figures/{png.name}", f":alt: {title}", f":name: {png.stem}", "",
                f"**Figure {number}. {title}.** {caption} {note} {made}", "```", ""]  # fmt: skip
    out += ["## Summary table\n",
            "Largest fraction of weights pruned (one-shot, no retraining) while test accuracy "
            "stays within 1 point of the unpruned model, mean ± std over training seeds "
            "(`results/summary.csv`, written by `compare.ipynb`).\n",
            _summary_table(results)]  # fmt: skip
    if (results / "convnet_summary.md").is_file():
        out += ["### Convnets against Han et al. (2015) and later work\n",
                "Largest fraction of kernel weights pruned while the test error stays within 0.1 "
                "point of the dense model's (mean ± std over training seeds, worst seed in "
                "brackets), the compression it implies and the test error at 12x (91.7% pruned), "
                "next to the published numbers (Han et al. 2015, Guo et al. 2016, Molchanov et "
                "al. 2017, Ullrich et al. 2017; \"measure\" says what each ratio counts), then "
                "what reaching each published result would take (`results/convnet_summary.csv` "
                "and `.md`, written by `convnet_compare.ipynb`).\n",
                _convnet_table(results)]  # fmt: skip
    out += ["## Provenance\n",
            "The numbers move slightly between machines (JAX on different CPUs orders floating-"
            "point sums differently); the committed figures are one run's.\n",
            f"* commit: `{prov['commit']}`", f"* built: {prov['date']}",
            f"* machine: {prov['machine']}", f"* accelerator: {prov['accelerator']}",
            "* packages: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
            f"* {prov['notebooks']} notebooks, {_duration(prov['notebook_seconds'])} of notebook "
            f"wall time in all; the pipeline ran from the first notebook's start to the last's end "
            f"in {_duration(prov['span_seconds'])} (`make reproduce`, notebooks in parallel)", ""]  # fmt: skip
    times = prov["times"]
    if len(times):
        out += ["### Wall time of each notebook\n", "| notebook | wall time |", "|---|---:|"]
        out += [f"| {r.report} | {_duration(r.seconds)} |" for r in times.itertuples()] + [""]
    out += ["## Sources\n"] + [f"* [{t}]({u})" for t, u in SOURCES] + [""]
    groups: dict[str, list[str]] = {}
    for stem in pages:
        groups.setdefault(_group(stem), []).append(stem)
    for title in [t for t, _ in GROUPS] + ["Other notebooks"]:
        if title in groups:
            out += ["```{toctree}", f":caption: {title}", ":maxdepth: 1", ""]
            out += [f"notebooks/{s}" for s in groups[title]] + ["```", ""]
    return "\n".join(out)


def clean_notebook(nb: nbformat.NotebookNode, stem: str, root: Path) -> nbformat.NotebookNode:
    """A reader's copy of an executed notebook: no stderr, relative paths (:mod:`obd.pipeline.portable`;
    reports written before it may still hold machine paths), folded boilerplate."""
    rules = path_rules(root)

    def rel(text: str) -> str:
        return relative_text(text, rules)

    for i, cell in enumerate(nb.cells):
        cell.source = rel(cell.source)
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type == "code":
            boiler = ("_before = set(globals())" in cell.source
                      or cell.source.lstrip().startswith("check_no_unknown("))  # fmt: skip
            if tags & {"parameters", "injected-parameters"} or boiler:
                tags.add("hide-input")
            outputs = []
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    if o.get("name") == "stderr":
                        continue
                    o["text"] = rel(o["text"])
                elif "data" in o and "text/plain" in o["data"]:
                    o["data"]["text/plain"] = rel(o["data"]["text/plain"])
                outputs.append(o)
            cell.outputs = outputs
        if tags:
            cell.metadata["tags"] = sorted(tags)
        if i == 0 and cell.cell_type == "markdown" and cell.source.startswith("# "):
            head, _, rest = cell.source.partition("\n")
            base = stem.split("-")[0]
            if stem != base:
                head = f"{head} ({stem.removeprefix(base + '-')})"
            cell.source = head + "\n" + rest
    return nb


def build_site(reports: Path, figures: Path, results: Path, root: Path | None = None) -> Path:
    """Build ``reports/site`` and ``reports/index.html``; return the site's front page."""
    root = Path.cwd() if root is None else Path(root)
    reports, figures, results = Path(reports), Path(figures), Path(results)
    notebooks = [p for p in _visible(reports.glob("*.ipynb"))
                 if not p.name.endswith(".failed.ipynb") and p.with_suffix(".html").is_file()]  # fmt: skip
    order = {t: i for i, (t, _) in enumerate(GROUPS)}
    notebooks.sort(key=lambda p: (order.get(_group(p.stem), len(order)), p.stem))
    prov = provenance(reports)
    with tempfile.TemporaryDirectory(prefix=temp_prefix("site"), dir=reports) as tmp:
        src = Path(tmp, "src")
        (src / "notebooks").mkdir(parents=True)
        (src / "figures").mkdir()
        for p in notebooks:
            nb = clean_notebook(nbformat.read(p, as_version=4), p.stem, root)
            nbformat.write(nb, src / "notebooks" / p.name)
        for png in _visible(figures.glob("fig*.png")):
            shutil.copyfile(png, src / "figures" / png.name)
        stems = [p.stem for p in notebooks]
        (src / "index.md").write_text(front_page(reports, figures, results, stems, prov))
        (src / "conf.py").write_text(CONF)
        (src / "_static").mkdir()
        (src / "_static" / "front.css").write_text(FRONT_CSS)
        build = Path(tmp, "html")
        proc = subprocess.run(
            [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1", str(src), str(build)],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"sphinx-build failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        shutil.rmtree(build / ".doctrees", ignore_errors=True)
        (build / ".buildinfo").unlink(missing_ok=True)
        check_offline(build)
        _readable(build)
        site = reports / "site"
        old = Path(tmp, "old")
        if site.exists():
            os.replace(site, old)
        os.replace(build, site)
    write_text(reports / "index.html", _redirect("site/index.html"))
    return site / "index.html"


def check_offline(site: Path) -> None:
    """``RuntimeError`` if a page or style sheet loads a script, style sheet, image or font
    from the network (:func:`obd.pipeline.portable.remote_assets`)."""
    bad = []
    for page in sorted([*site.rglob("*.html"), *site.rglob("*.css")]):
        for found in remote_assets(page.read_text(errors="replace")):
            bad.append(f"{page.relative_to(site)}: {found[:120]}")
    if bad:
        raise RuntimeError("the site would load from the network:\n" + "\n".join(bad[:20]))


def _readable(folder: Path) -> None:
    """Folders 0755, files 0644, whatever the umask of the build."""
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def _redirect(target: str) -> str:
    t = html.escape(target)
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv='refresh' content='0; url={t}'><title>OBD pruning study</title>"
            f"</head><body><p>The report is at <a href='{t}'>{t}</a>.</p></body></html>\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(
        prog="python -m obd.study.report", description=__doc__.split("\n")[0]
    )
    p.add_argument("--reports", type=Path, required=True)
    p.add_argument("--figures", type=Path, required=True)
    p.add_argument("--results", type=Path, required=True)
    args = p.parse_args(argv)
    if not args.reports.is_dir():
        print(f"error: reports folder {args.reports} does not exist", file=sys.stderr)
        return 1
    index = build_site(args.reports, args.figures, args.results)
    print(f"✓ {index} ({args.reports / 'index.html'} opens it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
