"""What a reader opens works offline and carries no machine paths.

* A notebook run through ``obd.pipeline.runner`` with absolute path arguments: its executed ``.ipynb``,
  its ``.html`` and its failed copy hold no absolute path (repository, working folder, home,
  temporary folder, Python installation), and its HTML loads nothing from the network.
* Every HTML page the QUICK pipeline writes (the per-notebook exports and every page of the site)
  loads no script, style sheet, image or font from the network.
* The site's front page, rendered at 1280x800 in headless Chromium, shows the question and the three
  headline answers on its first screen, then every figure as a captioned thumbnail that loads and
  links to the notebook section that drew it (or to the figure below).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import nbformat
import pytest

from obd.pipeline import portable

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------------------------
# Machine paths

_CELL = r"""
import json, os, sys, traceback, warnings
from pathlib import Path
print("out:", Path(out).resolve())
print("cwd:", os.getcwd())
print("home:", Path.home() / ".cache" / "obd")
print("data:", data_dir)
print("python:", sys.executable)
warnings.warn("a warning from the cell")
try:
    json.loads("{")
except ValueError:
    traceback.print_exc()
Path(out).write_text("ok")
display({"text/html": f"<td>{os.getcwd()}</td>", "text/plain": os.getcwd()}, raw=True)
if fail:  # an error inside a library: its traceback goes through site-packages
    import yaml
    yaml.safe_load("[")
Path(out).resolve()
"""
_PLACEHOLDERS = ("<site-packages>", "<stdlib>", "<python>", "<tmp>")
#: an absolute path: "/" after a blank, quote, bracket or tag, then names ("</td>", "a/b",
#: "https://x/y", "~/x" and "…/x" are not)
_ABSOLUTE = re.compile(r"(?<![\w.:/~<+\\*…;-])/(?:[\w.@+-]+/)*[\w.@+-]*\w")


def _path_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Paths"),
        nbformat.v4.new_code_cell(
            "out = 'x.txt'\ndata_dir = 'data'\nfail = False", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(_CELL),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    folder.mkdir(parents=True)
    path = folder / "paths.ipynb"
    nbformat.write(nb, path)
    return path


def _machine_paths(root: Path) -> list[str]:
    paths = sysconfig.get_paths()
    found = {str(root), os.path.realpath(root), os.getcwd(), str(Path.home()), sys.prefix,
             os.path.realpath(sys.prefix), tempfile.gettempdir() + "/", paths["purelib"],
             paths["stdlib"], os.path.realpath(paths["stdlib"])}  # fmt: skip
    return sorted(found, key=len, reverse=True)


def _texts(ipynb: Path) -> list[str]:
    """Every string in an executed notebook, ANSI colour codes removed."""
    out: list[str] = []

    def walk(v):
        if isinstance(v, str):
            out.append(re.sub(r"\x1b\[[0-9;]*m", "", v))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads(ipynb.read_text()))
    return out


def _absolute_paths(text: str) -> list[str]:
    for label in _PLACEHOLDERS:
        text = text.replace(label, "X").replace(
            label.replace("<", "&lt;").replace(">", "&gt;"), "X"
        )
    return _ABSOLUTE.findall(text)


def test_executed_reports_carry_no_machine_paths(tmp_path):
    root = tmp_path / "repo"
    nb = _path_notebook(root / "notebooks")
    report = root / "reports" / "paths"
    elsewhere = "/nonexistent-obd-data/mnist"  # outside the repository, home and temporary folders
    cmd = [sys.executable, "-m", "obd.pipeline.runner", str(nb), str(report), "-p", "out",
           str(root / "results" / "x.txt"), "-p", "data_dir", elsewhere, "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    failed = subprocess.run(cmd[:-1] + ["-p", "fail", "true", "--quiet"], capture_output=True,
                            text=True, cwd=ROOT)  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    machine = _machine_paths(root)
    ipynb, html = report.with_suffix(".ipynb"), report.with_suffix(".html")
    failed_copy = report.with_suffix(".failed.ipynb")
    for path in (ipynb, failed_copy):
        raw = path.read_text()
        texts = _texts(path)
        for m in machine:
            assert m not in raw, (path.name, m)
        assert not [p for t in texts for p in _absolute_paths(t)], path.name
    page = html.read_text()
    for m in machine:
        assert m not in page, m
    assert not _absolute_paths(page)
    assert not portable.remote_assets(page)
    assert "<title>paths</title>" in page  # the report's name, not the temporary file's
    # the paths are there, rewritten: relative to the repository, or named
    executed = nbformat.read(ipynb, as_version=4)
    text = "\n".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                     for o in c.outputs)  # fmt: skip
    assert "out: results/x.txt\n" in text and "cwd: notebooks\n" in text
    assert "home: ~/.cache/obd\n" in text and "data: …/mnist\n" in text
    assert "python: <python>/" in text
    assert "<stdlib>/json/" in text  # the printed traceback, kept
    copy = nbformat.read(failed_copy, as_version=4)
    error = [o for c in copy.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert error and any("<site-packages>/yaml/" in line for line in error[0].traceback)
    assert copy.metadata.papermill.output_path == "reports/paths.failed.ipynb"
    assert executed.cells[-1].outputs[-1].data["text/plain"] == "PosixPath('results/x.txt')"
    assert executed.metadata.papermill.input_path == "notebooks/paths.ipynb"
    assert executed.metadata.papermill.output_path == "reports/paths.ipynb"
    assert executed.metadata.papermill.parameters["data_dir"] == "…/mnist"
    assert (root / "results" / "x.txt").read_text() == "ok"  # the run itself used the real paths


def test_relative_text_rewrites_paths_only():
    rules = portable.path_rules("/srv/repo")
    cases = {
        "/srv/repo/results/a.csv": "results/a.csv",
        "cd /srv/repo; ls": "cd .; ls",
        "/srv/repository/a": "…/a",
        "/data/mnist/3.0.1 and /opt/x.py:3": "…/3.0.1 and …/x.py:3",
        "\x1b[0;32m/opt/lib/x.py\x1b[0m": "\x1b[0;32m…/x.py\x1b[0m",
        "file:///etc/hosts": "…/hosts",
        str(Path.home() / ".cache"): "~/.cache",
        "a/b 1/2 </td> https://x.org/a/b ~/x …/y <tmp>/z": "a/b 1/2 </td> https://x.org/a/b ~/x …/y <tmp>/z",
    }  # fmt: skip
    for text, expected in cases.items():
        assert portable.relative_text(text, rules) == expected, text
        assert portable.relative_text(expected, rules) == expected  # idempotent


# --------------------------------------------------------------------------------------------
# Network assets


def test_remote_assets_are_loads_not_links():
    loads = [
        '<script src="https://cdn.example/require.js"></script>',
        "<script src=//cdn.example/a.js></script>",
        '<link rel="stylesheet" href="https://fonts.example/css">',
        '<link rel="preload" as="font" href="http://x.example/f.woff2">',
        '<img alt="x" src="https://x.example/a.png">',
        "<style>@import 'https://x.example/a.css';</style>",
        "<style>body { background: url(https://x.example/a.png) }</style>",
        '<script type="module">const m = (await import("https://x.example/m.mjs")).default;</script>',
        '<script type="module">import m from "https://x.example/m.mjs";</script>',
    ]
    for text in loads:
        assert portable.remote_assets(text), text
    fine = [
        '<a href="https://github.com/shekkizh/TensorflowProjects">the code</a>',
        '<script src="_static/doctools.js"></script>',
        '<link rel="stylesheet" href="_static/basic.css">',
        '<img src="data:image/png;base64,iVBOR+/abc">',
        '<svg xmlns="http://www.w3.org/2000/svg"></svg>',
        "<p>from https://example.org, import it</p>",
    ]
    for text in fine:
        assert not portable.remote_assets(text), text


@pytest.fixture(scope="module")
def quick_reports(quick_pipeline: Path) -> Path:
    """The reports folder of the QUICK pipeline run that the suite shares (``quick_pipeline``)."""
    return quick_pipeline / "reports"


@pytest.mark.slow
def test_every_page_the_pipeline_writes_works_offline(quick_reports):
    exports = sorted(p for p in quick_reports.glob("*.html") if p.name != "index.html")
    site = sorted((quick_reports / "site").rglob("*.html"))
    assert len(exports) >= 17 and len(site) >= len(exports) + 1, (len(exports), len(site))
    styles = sorted((quick_reports / "site").rglob("*.css"))
    bad = {}
    for page in [quick_reports / "index.html", *exports, *site, *styles]:
        found = portable.remote_assets(page.read_text(errors="replace"))
        if found:
            bad[str(page.relative_to(quick_reports))] = found[:2]
    assert not bad, bad
    for page in exports:
        assert "data:image/png;base64," in page.read_text(), f"{page.name}: no embedded figure"


# --------------------------------------------------------------------------------------------
# The front page's first screen

WIDTH, HEIGHT = 1280, 800
_PROBE = """<script>
window.addEventListener("load", function () {
  function box(el) {
    var r = el.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, text: el.textContent.replace(/\\s+/g, " ").trim(),
            href: el.getAttribute("href")};
  }
  function all(selector) { return Array.prototype.map.call(document.querySelectorAll(selector), box); }
  var ids = Array.prototype.map.call(document.querySelectorAll("[id]"), function (e) { return e.id; });
  var thumbs = Array.prototype.map.call(document.querySelectorAll(".front-thumbs figure"),
    function (fig) {
      var img = fig.querySelector("img"), a = img && img.closest("a");
      var b = box(fig);
      b.href = a ? a.getAttribute("href") : null;
      b.loaded = !!img && img.complete && img.naturalWidth > 0;
      b.caption = (fig.querySelector("figcaption") || {textContent: ""}).textContent.trim();
      return b;
    });
  var pre = document.createElement("pre");
  pre.id = "first-screen-probe";
  pre.textContent = JSON.stringify({width: window.innerWidth, question: all(".front-question"),
    answers: all(".front-answers li"), links: all(".front-answers li a"), thumbs: thumbs,
    ids: ids});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={WIDTH},{HEIGHT}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _normal(text: str) -> str:
    """Sphinx's typography undone: curly quotes straight, blanks single."""
    return " ".join(text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
                    .replace("\u00a0", " ").split())  # fmt: skip


def _check_first_screen(index: Path, results: Path, out: Path) -> Path:
    """Render ``index`` at 1280x800: the question and the three headline answers with this
    run's numbers lie in the first 800 pixels, the figures' captioned thumbnails start there,
    below the answers, every one loads and links to the notebook section that drew it (or to
    the figure below); return the screenshot."""
    from PIL import Image

    from obd.study import findings, report

    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    shot = out / "front-1280x800.png"
    proc = _headless(browser, f"--screenshot={shot}", index.resolve().as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (WIDTH, HEIGHT)
        gray = img.convert("L")
        top = gray.crop((0, 0, WIDTH, HEIGHT // 2))
        assert len(top.getcolors(256)) > 16, "the first screen is blank"
    probe = index.with_name("_first_screen_probe.html")  # beside it: same styles, same links
    probe.write_text(index.read_text().replace("</body>", _PROBE + "</body>"))
    try:
        proc = _headless(browser, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    m = re.search(r'<pre id="first-screen-probe"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    import html as html_lib

    seen = json.loads(html_lib.unescape(m.group(1)))
    assert seen["width"] == WIDTH
    (question,) = seen["question"]
    assert _normal(report.QUESTION_SHORT) in _normal(question["text"])
    assert question["bottom"] <= HEIGHT
    expected = findings.headlines(findings.compute(results))
    assert len(expected) == len(seen["answers"]) == 3
    for answer, finding in zip(seen["answers"], expected, strict=True):
        assert answer["bottom"] <= HEIGHT, (answer["text"][:80], answer["bottom"])
        assert finding.held is not None and finding.headline
        assert _normal(finding.headline) in _normal(answer["text"]), answer["text"]
        assert re.search(r"\d+\.\d ± \d+\.\d%", answer["text"])  # numbers from this run
        assert "(held)" in answer["text"] if finding.held else "did not hold" in answer["text"]
    figures = sorted(p.stem for p in (index.parent / "_images").glob("fig*.png"))
    assert figures, "the site shows no figure"
    anchors = {f.replace("_", "-") for f in figures}
    assert anchors <= set(seen["ids"])  # the answers' and thumbnails' links lead to the figures
    thumbs = seen["thumbs"]
    assert len(thumbs) == len(figures), (len(thumbs), figures)
    assert thumbs[0]["top"] < HEIGHT, "the thumbnails do not start on the first screen"
    assert min(t["top"] for t in thumbs) >= max(a["bottom"] for a in seen["answers"])
    for thumb, stem in zip(thumbs, figures, strict=True):
        assert thumb["loaded"], f"thumbnail of {stem} did not load"
        assert thumb["caption"].startswith(f"{stem[3]}.") and thumb["href"], thumb
        page, _, anchor = thumb["href"].partition("#")
        if page.startswith("notebooks/"):  # the notebook section that drew it
            target = (index.parent / page).read_text()
            assert f'id="{anchor}"' in target, thumb["href"]
        else:  # the figure on the front page
            assert page in ("", index.name) and anchor == stem.replace("_", "-"), thumb["href"]
    return shot


_PNG = (  # a 1x1 PNG
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
    b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def _synthetic_results(results: Path) -> None:
    """Sweeps and a retraining table from which the three headline findings are computed."""
    import numpy as np
    import pandas as pd

    from obd.study.variants import RESULT_COLUMNS

    def cliff(tolerated):  # accuracy flat up to ``tolerated``, then falling
        return lambda f: 0.97 if f <= tolerated + 1e-9 else max(0.1, 0.95 - 3 * (f - tolerated))

    curves = {}
    for model in ("plain", "dropout"):
        curves |= {f"obs-global-{model}": (0.93, 0.92), f"obs_mask-global-{model}": (0.85, 0.84),
                   f"obd-global-{model}": (0.65, 0.67), f"magnitude-global-{model}": (0.40, 0.42),
                   f"obs-layerwise-{model}": (0.70, 0.72)}  # fmt: skip
    (results / "sweeps").mkdir(parents=True)
    fractions = np.round(np.linspace(0, 1, 101), 4)
    for variant, per_seed in curves.items():
        saliency, scope, model = variant.split("-")
        rows = [dict(variant=variant, saliency=saliency, scope=scope, model=model,
                     include_biases=False, seed=seed, fraction=f, pruned_fraction=f,
                     n_pruned=int(f * 1000), accuracy=cliff(t)(f), loss=0.1)
                for seed, t in enumerate(per_seed) for f in fractions]  # fmt: skip
        pd.DataFrame(rows)[RESULT_COLUMNS].to_csv(
            results / "sweeps" / f"{variant}.csv", index=False
        )
    from obd.pipeline.outputs import write_manifest  # what the prune runs record

    write_manifest(results.parent / "reports" / "prune", list((results / "sweeps").glob("*")))
    retrain = [dict(method=m, seed=s, fraction=0.969, accuracy=a + 0.002 * s)
               for m, a in (("iterative_obd", 0.901), ("iterative_magnitude", 0.857),
                            ("oneshot_obd", 0.088)) for s in (0, 1)]  # fmt: skip
    pd.DataFrame(retrain).to_csv(results / "retrain.csv", index=False)


@pytest.mark.slow
def test_front_page_first_screen_at_1280x800(tmp_path):
    from obd.study import report

    if _chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    root = tmp_path / "repo"
    (root / "reports").mkdir(parents=True)
    (root / "figures").mkdir()
    for stem in ("fig1_blog_variants", "fig2_obd_dropout", "fig3_as_published_vs_corrected",
                 "fig6_retraining"):  # fmt: skip
        (root / "figures" / f"{stem}.png").write_bytes(_PNG)
    _synthetic_results(root / "results")
    index = report.build_site(root / "reports", root / "figures", root / "results", root=root)
    _check_first_screen(index, root / "results", tmp_path)


@pytest.mark.slow
def test_quick_front_page_first_screen_at_1280x800(quick_reports, tmp_path):
    results = quick_reports.parent / "results"
    _check_first_screen(quick_reports / "site" / "index.html", results, tmp_path)


def test_relative_text_leaves_urls_and_the_users_text_alone(monkeypatch):
    """No rewrite inside a URL or of text that is not a path; a path after ``:`` is one."""
    monkeypatch.setenv("HOME", "/root")
    rules = portable.path_rules("/srv/repo")
    tmp = tempfile.gettempdir()
    cases = {
        f"https://example.com{tmp}/data.csv": f"https://example.com{tmp}/data.csv",
        "https://github.com/root/repo": "https://github.com/root/repo",
        "see https://x.org/srv/repo/a": "see https://x.org/srv/repo/a",
        "y = a /b": "y = a /b",
        'name = "ratio /2"': 'name = "ratio /2"',
        "# None: <out_dir>/models/<arch>-seed<seed>.npz": "# None: <out_dir>/models/<arch>-seed<seed>.npz",
        "PATH=/usr/bin:/opt/x/bin": "PATH=…/bin:…/bin",
        "x:/srv/repo/results/a.csv": "x:results/a.csv",
        f"file://{tmp}/a": "file://<tmp>/a",
    }  # fmt: skip
    for text, expected in cases.items():
        assert portable.relative_text(text, rules) == expected, text


def test_machine_paths_leave_every_part_of_a_notebook():
    """SVG and JavaScript outputs, output metadata, an error's name and attachment names."""
    data = "/work/shared/data/tensorflow_datasets"
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("x = 1")
    code.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "image/svg+xml": f"<svg><!-- {data} --><text>{data}/x</text></svg>",
                "application/javascript": f"console.log('{data}')",
                "image/png": "iVBORw0KGgo/usr/lib/x+/AAAA",
                "text/plain": f"PATH={data}:/opt/x/bin",
            },
            metadata={"filenames": [f"{data}/f.svg"]},
        ),  # fmt: skip
        nbformat.v4.new_output(
            "error", ename=f"Error at {data}/a", evalue=f"{data}:1", traceback=[f"File {data}/b.py"]
        ),  # fmt: skip
    ]
    md = nbformat.v4.new_markdown_cell("![x](attachment:pic.png)")
    md["attachments"] = {f"{data}/pic.png": {"image/png": "iVBOR"}}
    nb.cells = [code, md]
    portable.portable_notebook(nb, "/srv/repo")
    text = json.dumps(nb)
    assert data not in text and "/opt/x/bin" not in text, text
    assert "iVBORw0KGgo/usr/lib/x+/AAAA" in text  # base64 images are left alone
    assert list(nb.cells[1].attachments) == ["…/pic.png"]
