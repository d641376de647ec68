"""``reports/index.html``: links to every executed notebook, the figures and the summary table.

``python -m obd.report --reports DIR --figures DIR --results DIR`` writes ``DIR/index.html``,
self-contained (figures embedded), atomically.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

import pandas as pd

from obd.io import write_text

GROUPS = (
    ("Comparison", "compare"),
    ("Analyses beyond the blog", ("assumptions", "retrain", "curvature")),
    ("Pruning sweeps (one per variant, all seeds)", "prune-"),
    ("Training runs", "train-"),
)
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child{text-align:left}
li{margin:.15em 0}"""


def _group(name: str) -> str:
    for title, prefix in GROUPS:
        prefixes = prefix if isinstance(prefix, tuple) else (prefix,)
        if name.startswith(prefixes):
            return title
    return "Other reports"


def build_index(reports: Path, figures: Path, results: Path) -> str:
    """The index page's HTML."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>OBD pruning study: reports</title><style>{CSS}</style></head><body>",
        "<h1>Optimal Brain Damage on the MNIST MLP: reports</h1>",
        "<p>One-shot pruning of the 784-50-50-50-50-10 ReLU network by magnitude and by the OBD "
        "saliency, layer-wise and over all layers, reproducing and correcting a 2016 blog post. "
        "Curves are means over training seeds with a min-max band.</p>",
    ]
    summary = results / "summary.csv"
    if summary.is_file():
        s = pd.read_csv(summary)
        table = pd.DataFrame(
            {
                "variant": s["label"],
                "seeds": s["seeds"],
                "unpruned accuracy (%)": (100 * s["unpruned_accuracy"]).map("{:.2f}".format),
                "weights pruned at <= 1 point loss (%)": [
                    f"{100 * m:.1f} ± {100 * d:.1f}"
                    for m, d in zip(s["tolerated_mean"], s["tolerated_std"], strict=True)
                ],
            }
        )
        parts += ["<h2>Summary</h2>", table.to_html(index=False, border=0)]
    pngs = sorted(figures.glob("fig*.png"))
    if pngs:
        parts.append("<h2>Figures</h2>")
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<h3>{html.escape(png.stem)}</h3><img alt='{html.escape(png.stem)}' "
                     f"src='data:image/png;base64,{data}'>")  # fmt: skip
    groups: dict[str, list[Path]] = {}
    for page in sorted(reports.glob("*.html")):
        if page.name != "index.html":
            groups.setdefault(_group(page.stem), []).append(page)
    parts.append("<h2>Executed notebooks</h2>")
    for title in [t for t, _ in GROUPS] + ["Other reports"]:
        if title in groups:
            links = "".join(
                f"<li><a href='{html.escape(p.name)}'>{html.escape(p.stem)}</a></li>"
                for p in groups[title]
            )
            parts.append(f"<h3>{html.escape(title)}</h3><ul>{links}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m obd.report", description=__doc__.split("\n")[0])
    p.add_argument("--reports", type=Path, required=True)
    p.add_argument("--figures", type=Path, required=True)
    p.add_argument("--results", type=Path, required=True)
    args = p.parse_args(argv)
    if not args.reports.is_dir():
        print(f"error: reports folder {args.reports} does not exist", file=sys.stderr)
        return 1
    write_text(args.reports / "index.html", build_index(args.reports, args.figures, args.results))
    print(f"✓ {args.reports / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
