"""The study's words on its report site: the question, the figures' titles and captions (declared
with their runs in configs/runs.yaml), which figures show each headline answer, the sources and
how the notebooks are grouped.

:mod:`obd.study.report` hands them, with the findings and tables of a run, to the site builder
(:mod:`obd.pipeline.site`).
"""

from __future__ import annotations

from pathlib import Path

from obd.pipeline import rules

#: The site's title: the front page's heading and the Sphinx project.
TITLE = "Optimal Brain Damage on the MNIST MLP"
#: The title of ``index.html``, the page that opens the site.
SHORT_TITLE = "OBD pruning study"
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
#: The table of runs, which declares each figure with its title and caption.
RUNS_TABLE = Path(__file__).resolve().parents[3] / "configs" / "runs.yaml"


def _declared_figures() -> dict[str, dict[str, str]]:
    """The figures ``configs/runs.yaml`` declares (:func:`obd.pipeline.rules.figures`); none when
    the table is not there (a copy of the library outside its repository)."""
    return rules.figures(rules.load(RUNS_TABLE)) if RUNS_TABLE.is_file() else {}


_DECLARED = _declared_figures()
#: figure file stem: title, caption, notebook page, which seeds (sweeps | convnets |
#: <csv under results/>), from the table of runs
FIGURES = {s: (f["title"], f["caption"], f["run"], f["seeds"]) for s, f in _DECLARED.items()}
#: figure file stem: a short name for the front page's list of figures
FIGURE_SHORT = {s: f["short"] for s, f in _DECLARED.items()}
#: headline finding (obd.study.findings.HEADLINES): the figures that show it
HEADLINE_FIGURES = {
    "obd-vs-magnitude": ("fig1_blog_variants", "fig3_as_published_vs_corrected"),
    "global-obs": ("fig2_obd_dropout",),
    "retrain": ("fig6_retraining",),
}
#: The works the study cites: text, link.
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
#: The notebooks' groups in the site's table of contents: title, stem prefixes.
GROUPS = (
    ("Comparison with the blog", ("compare", "blog_replay")),
    ("Analyses beyond the blog", ("assumptions", "curvature", "retrain")),
    (
        "Convnets: LeNet-300-100 and LeNet-5 against Han et al. (2015) and later work",
        ("convnet", "frontier"),
    ),
    ("Pruning sweeps (one per variant, all seeds)", ("prune-",)),
    ("Training runs", ("train-",)),
)
#: The packages whose versions the provenance lists.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "pandas", "scipy", "matplotlib",
            "tensorflow-datasets", "papermill", "myst-nb", "sphinx")  # fmt: skip
#: Under "Provenance", before the commit and machine.
PROVENANCE_NOTE = (
    "The numbers move slightly between machines (JAX on different CPUs orders floating-"
    "point sums differently); the committed figures are one run's.\n"
)
#: Under "Findings": how many held, then how they are computed (``{held}``, ``{checked}``).
FINDINGS_INTRO = (
    "**{held} of {checked} checked findings held on this run** (each is computed from "
    "`results/` after the run and checked with the stated tolerance; numbers are means ± "
    "standard deviations over training seeds).\n"
)
#: Above the summary table (``results/summary.csv``).
SUMMARY_INTRO = (
    "Largest fraction of weights pruned (one-shot, no retraining) while test accuracy "
    "stays within 1 point of the unpruned model, mean ± std over training seeds "
    "(`results/summary.csv`, written by `compare.ipynb`).\n"
)
#: Above the convnet table (``results/convnet_summary.md``).
CONVNET_INTRO = (
    "Largest fraction of kernel weights pruned while the test error stays within 0.1 "
    "point of the dense model's (mean ± std over training seeds, worst seed in "
    "brackets), the compression it implies and the test error at 12x (91.7% pruned), "
    "next to the published numbers (Han et al. 2015, Guo et al. 2016, Molchanov et "
    'al. 2017, Ullrich et al. 2017; "measure" says what each ratio counts), then '
    "what reaching each published result would take (`results/convnet_summary.csv` "
    "and `.md`, written by `convnet_compare.ipynb`).\n"
)
