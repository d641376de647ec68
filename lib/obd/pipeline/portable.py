"""Executed notebooks that carry no machine paths, and HTML that loads nothing from the network.

An executed notebook records paths: the parameters papermill injected, its own metadata, printed
paths, warnings (``/…/site-packages/jax/….py:12: UserWarning``) and tracebacks. Before a report is
written, :func:`portable_notebook` rewrites every such path in its text:

* inside the repository: relative to the repository's root (``/home/u/obd/results/x.csv`` →
  ``results/x.csv``, the root itself → ``.``);
* the Python installation: ``<site-packages>/…`` and ``<stdlib>/…``;
* the temporary folder: ``<tmp>/…``; the home folder: ``~/…``;
* any other absolute path: ``…/`` and its last component (``/data/mnist`` → ``…/mnist``).

:func:`offline_html` renders a notebook with nbconvert's ``lab`` template less its network
assets (require.js, MathJax, Mermaid and the widget manager come from a CDN there; the study's
notebooks need none of them: no widgets, no math), so a report opens complete without a network;
the code of a cell tagged ``hide-input`` (code that only draws or formats) is folded under "Show
code cell source", as on the report site, and Markdown tables in outputs are HTML tables
(nbconvert's Markdown renderer has tables).
:func:`remote_assets` finds what a page would load from the network (scripts, style sheets,
images, fonts, imported modules); plain hyperlinks are not loads and are allowed.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbformat import NotebookNode

#: What a page would load from the network: a ``src``/``href`` of a loading element, a CSS
#: ``url()``/``@import`` or a JavaScript ``import`` with an ``http(s)://`` or scheme-relative
#: (``//host``) address. ``<a href="https://…">`` is a link, not a load, and does not match.
REMOTE_ASSET = re.compile(
    r"""<(?:script|link|img|iframe|source|embed|object|audio|video|track|input)\b[^>]*?"""
    r"""\s(?:src|href|data|srcset|poster)\s*=\s*["']?\s*(?:https?:)?//[^\s"'>]*"""
    r"""|url\(\s*["']?\s*(?:https?:)?//[^\s"')]*"""
    r"""|@import\s+["']\s*(?:https?:)?//[^\s"']*"""
    r"""|\bimport\s*\(\s*["'`]\s*(?:https?:)?//[^\s"'`]*"""
    r"""|\bfrom\s+["']\s*(?:https?:)?//[^\s"']*""",
    re.I,
)


def remote_assets(text: str) -> list[str]:
    """The network loads in an HTML page or a style sheet (empty: it works offline)."""
    return [m.group(0)[:160] for m in REMOTE_ASSET.finditer(text)]


# --------------------------------------------------------------------------------------------
# Machine paths

#: What known prefixes become (:func:`path_rules`).
_LABELS = ("<site-packages>", "<stdlib>", "<python>", "<tmp>")

#: Where a path may start: the start of the text, after a blank, quote, bracket, tag, ``=``,
#: ``:`` (``PATH=/a/bin:/b/bin``) or ``,``, or after ``file://``; never inside a word, a URL
#: (``https://host/tmp/x``: the ``/`` follows a name), base64 (``+/``) or what a rule already
#: rewrote (``~/x``, ``…/x``, ``<tmp>/x``).
_BOUNDARY = r"(?:(?<=file://)|(?<![\w.:/~<+\\*…@%&?#-])|(?<=[^/:]:)(?!//))"

#: An absolute POSIX path not caught by a known prefix: at a path boundary (:data:`_BOUNDARY`),
#: or right after an ANSI colour code (IPython's tracebacks), then one or more names. Rewritten
#: only when it is a path (:func:`_is_path`): ``y = a /b``, ``"ratio /2"`` and
#: ``<out_dir>/models/<arch>.npz`` are the user's text.
_ABSOLUTE = re.compile(
    r"(?:(?P<esc>\x1b\[[0-9;]*m)|"
    + _BOUNDARY
    + "".join(f"(?<!{re.escape(label)})" for label in _LABELS)
    + r")(?P<path>(?:file://)?/(?:[\w.@+-]+/)*[\w.@+-]*[\w@+-])"
)


_ANSI = re.compile(r"(\x1b\[[0-9;]*m)")


def _is_path(path: str) -> bool:
    """Whether ``/name...`` is a path to hide: it has two names or more (``/data/mnist``), or one
    that exists on this machine (``/opt``). A single name that does not exist (``/b``, ``/2``)
    is the user's text: a division, a ratio, a placeholder's tail."""
    path = path.removeprefix("file://")
    return len(path.strip("/").split("/")) >= 2 or os.path.lexists(path)


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    """``prefix`` as a whole path starting at a path boundary (:data:`_BOUNDARY`: not inside a
    URL or a word) and followed by ``/`` or by what ends a path (a blank, a quote, a full stop
    that ends a sentence, the end of the text)."""
    return re.compile(
        _BOUNDARY + re.escape(prefix.rstrip("/")) + r"(?P<sep>/|(?![\w@+-]|\.[\w@+-]))"
    )


def _variants(path: str | os.PathLike) -> list[str]:
    """A path as written and as resolved (symbolic links followed), without duplicates."""
    p = os.path.abspath(path)
    out = [p]
    real = os.path.realpath(p)
    if real != p:
        out.append(real)
    return out


def path_rules(root: str | os.PathLike) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, replacement) for each known machine prefix, the longest first: the repository
    ``root`` (→ relative), the Python installation, the temporary and the home folders."""
    named: list[tuple[str, str]] = [(p, "") for p in _variants(root)]
    paths = sysconfig.get_paths()
    for key, label in (("purelib", "<site-packages>"), ("platlib", "<site-packages>"),
                       ("stdlib", "<stdlib>"), ("platstdlib", "<stdlib>")):  # fmt: skip
        if paths.get(key):
            named += [(p, label) for p in _variants(paths[key])]
    named += [(p, "<python>") for p in _variants(sys.prefix)]
    named += [(p, "<tmp>") for p in _variants(tempfile.gettempdir())]
    named += [(p, "~") for p in _variants(Path.home())]
    named = [(p, label) for p, label in named if p.rstrip("/")]  # never "/" itself
    named.sort(key=lambda item: len(item[0]), reverse=True)
    seen: set[str] = set()
    rules = []
    for prefix, label in named:
        if prefix not in seen:
            seen.add(prefix)
            rules.append((_prefix_pattern(prefix), label))
    return rules


def relative_text(text: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    """``text`` with every absolute path rewritten (see the module's docstring)."""
    if "/" not in text:
        return text
    if "\x1b[" in text:  # ANSI colour codes (IPython's tracebacks) bound paths: each part alone
        parts = _ANSI.split(text)
        return "".join(p if i % 2 else relative_text(p, rules) for i, p in enumerate(parts))
    for pattern, label in rules:

        def sub(m: re.Match[str], label: str = label) -> str:
            if label:
                return label + m.group("sep")
            return "" if m.group("sep") else "."  # the root itself

        text = pattern.sub(sub, text)

    def elide(m: re.Match[str]) -> str:
        if not _is_path(m.group("path")):
            return m.group(0)
        name = m.group("path").rstrip("/").rsplit("/", 1)[-1]
        return (m.group("esc") or "") + ("…/" + name if name else "…")

    return _ABSOLUTE.sub(elide, text)


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to every string in it (dicts, lists, nested)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        for k in list(value):
            value[k] = _map_strings(value[k], fn)
        return value
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def _text_mimes(data: dict) -> Iterable[str]:
    """The textual outputs of a display: every one but base64 binaries (PNG, JPEG, PDF, ...);
    SVG, JavaScript, HTML, JSON and plain text are text."""
    return [m for m in data if not _binary_mime(m)]


def _binary_mime(mime: str) -> bool:
    """Whether a display's ``mime`` holds base64-encoded bytes (left alone)."""
    if mime == "image/svg+xml" or mime.endswith(("+xml", "+json", "json", "javascript")):
        return False
    return mime.startswith(("image/", "audio/", "video/", "font/")) or mime in (
        "application/pdf",
        "application/octet-stream",
        "application/zip",
    )


def _fix_attachments(cell: Any, fix: Callable[[str], str]) -> None:
    """A markdown cell's attachments: names rewritten, textual ones' contents too."""
    attachments = cell.get("attachments")
    if not attachments:
        return
    fixed = {}
    for name, data in attachments.items():
        for mime in _text_mimes(data):
            data[mime] = _map_strings(data[mime], fix)
        fixed[fix(name)] = data
    cell["attachments"] = type(attachments)(fixed)


def portable_notebook(
    nb: NotebookNode,
    root: str | os.PathLike,
    *,
    provenance: tuple[str | os.PathLike, str | os.PathLike] | None = None,
) -> NotebookNode:
    """Rewrite, in place, every machine path in ``nb``'s cells, outputs and metadata, relative
    to the repository ``root`` where it lies inside it; return ``nb``. ``provenance``: the
    notebook's source and report paths, recorded in papermill's metadata (relative to
    ``root`` when inside it)."""
    rules = path_rules(root)

    def fix(text: str) -> str:
        return relative_text(text, rules)

    for cell in nb.cells:
        cell.source = fix(cell.source)
        _map_strings(cell.get("metadata", {}), fix)
        _fix_attachments(cell, fix)
        for out in cell.get("outputs", []):
            for key in ("text", "ename", "evalue", "traceback", "metadata"):
                if key in out:
                    out[key] = _map_strings(out[key], fix)
            if "data" in out:
                for mime in _text_mimes(out["data"]):
                    out["data"][mime] = _map_strings(out["data"][mime], fix)
    meta = nb.metadata.get("papermill")
    if meta is not None and provenance is not None:
        meta["input_path"], meta["output_path"] = (_repo_relative(p, root) for p in provenance)
    _map_strings(nb.metadata, fix)
    return nb


def _repo_relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` (relative ones from the working folder) relative to ``root`` if inside it."""
    p = Path(os.path.abspath(path))
    for base in _variants(root):
        for candidate in {p, Path(os.path.realpath(p))}:
            if candidate.is_relative_to(base):
                return candidate.relative_to(base).as_posix()
    return str(path)


# --------------------------------------------------------------------------------------------
# HTML

_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block input_group -%}
{%- if "hide-input" in cell.metadata.get("tags", []) -%}
<details class="obd-folded-input"><summary>Show code cell source</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock input_group -%}
"""


def offline_html(nb: NotebookNode, title: str) -> str:
    """``nb`` as a self-contained HTML page titled ``title``: nbconvert's ``lab`` template with
    its styles inlined and figures embedded, without the scripts it loads from a CDN, and the
    code of cells tagged ``hide-input`` folded.
    ``RuntimeError`` if the page would still load anything from the network."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"obd_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="obd_offline.html.j2",
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    bad = remote_assets(body)
    if bad:
        raise RuntimeError(f"the HTML of {title} would load from the network: {bad[:3]}")
    return body
