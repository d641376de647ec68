"""The study's report site: a front page that tells the story, and every executed notebook.

``python -m obd.study.report --reports DIR --figures DIR --results DIR`` builds ``DIR/site/`` with
Sphinx and MyST-NB from the executed notebooks (``DIR/*.ipynb``) and writes ``DIR/index.html``,
which opens it. Its first screen states the study's question and its three headline answers
with this run's numbers (``obd.study.findings.HEADLINES``), each linked to the figures that show it,
and links every figure. Below come the findings with their numbers and whether each held on this
run (``obd.study.findings``, computed from ``results/``), the figures with captions, each linking to
the notebook that drew it, the summary table and the provenance of the run: commit, date,
machine, package versions and the notebooks' wall times.

This module gathers the study's content (the words of :mod:`obd.study.site_text`, the findings,
the tables and the figures' seed notes from ``results/``) and hands it to the site builder,
:func:`obd.pipeline.site.build_site`, which lays it out and checks that the site works offline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from obd.pipeline import site
from obd.pipeline.site import EXTERNAL, SiteContent, check_offline
from obd.study import convnet_metrics as cm
from obd.study import findings as fnd
from obd.study import site_text as words
from obd.study.convnet_styles import arch_label
from obd.study.records import read_csv
from obd.study.site_text import FIGURES, QUESTION, QUESTION_SHORT

__all__ = [
    "EXTERNAL",
    "FIGURES",
    "QUESTION",
    "QUESTION_SHORT",
    "build_site",
    "check_offline",
    "content",
    "main",
]


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
    t = cm.read_kind(results, "oneshot")
    t = pd.concat([t, cm.read_kind(results, "iterative")], ignore_index=True)
    if t.empty:
        return ""
    parts = []
    archs = [a for a in cm.ARCHS if a in set(t["arch"])] + sorted(set(t["arch"]) - set(cm.ARCHS))
    for arch in archs:
        seeds = sorted(t.loc[t["arch"] == arch, "seed"].unique())
        parts.append(f"{arch_label(arch)} seed{'s' if len(seeds) > 1 else ''} "
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
    try:
        s = read_csv(path)
    except ValueError as err:
        return f"*No summary table: {err}.*\n"
    lines = ["| variant | seeds | unpruned accuracy (%) | weights pruned at <= 1 point loss (%) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    lines += [
        f"| {r.label} | {r.seeds} | {100 * r.unpruned_accuracy:.2f} | "
        f"{100 * r.tolerated_mean:.1f} ± {100 * r.tolerated_std:.1f} |"
        for r in s.itertuples()
    ]
    return "\n".join(lines) + "\n"


def _figure_note(results: Path, stem: str) -> str:
    """The seeds a figure shows (:data:`obd.study.site_text.FIGURES`' fourth field)."""
    return _seeds_note(results, FIGURES.get(stem, ("", "", "", ""))[3])


def _tables(results: Path) -> list[str]:
    """The MyST under "Summary table": the MLP variants, then the convnets where they ran."""
    out = [words.SUMMARY_INTRO, _summary_table(results)]
    if (results / "convnet_summary.md").is_file():
        out += ["### Convnets against Han et al. (2015) and later work\n", words.CONVNET_INTRO,
                _convnet_table(results)]  # fmt: skip
    return out


def content(results: Path, reports: Path | None = None) -> SiteContent:
    """What the front page says for the run whose results are in ``results``: the study's words,
    and the findings (computed and written to ``results/findings.json`` and ``.md``), tables and
    seed notes of this run."""
    results = Path(results)
    found = fnd.write(results, reports) if results.is_dir() else []
    held, checked = fnd.tally(found)
    ignored = json.loads((results / "findings.json").read_text())["ignored"] if found else ""
    return SiteContent(
        title=words.TITLE,
        short_title=words.SHORT_TITLE,
        generator="obd.study.report",
        question=QUESTION,
        question_short=QUESTION_SHORT,
        findings=found,
        headlines=fnd.headlines(found),
        held=held,
        checked=checked,
        findings_intro=words.FINDINGS_INTRO.format(held=held, checked=checked)
        + (f"\n\n{ignored}" if ignored else ""),
        figures={
            stem: (title, caption, page) for stem, (title, caption, page, _) in FIGURES.items()
        },
        figure_note=lambda stem: _figure_note(results, stem),
        figure_short=words.FIGURE_SHORT,
        headline_figures=words.HEADLINE_FIGURES,
        tables=_tables(results),
        provenance_note=words.PROVENANCE_NOTE,
        sources=words.SOURCES,
        groups=words.GROUPS,
        packages=words.PACKAGES,
    )


#: The library pages (API reference, "on your own model") in the repository's docs/ folder.
DOCS = Path(__file__).resolve().parents[3] / "docs"


def build_site(reports: Path, figures: Path, results: Path, root: Path | None = None) -> Path:
    """Build ``reports/site`` and ``reports/index.html`` for the study's run (notebooks executed
    into ``reports``, figures in ``figures``, results in ``results``); return the front page.
    ``root``: the repository machine paths are made relative to (default: the working directory).
    """
    return site.build_site(
        reports,
        figures,
        lambda: content(results, reports),
        root=root,
        packages=words.PACKAGES,
        groups=words.GROUPS,
        docs=DOCS if DOCS.is_dir() else None,
    )


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
