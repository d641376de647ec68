"""What the report site needs for the API reference (``docs/api.md``) and ``docs/own_model.md``.

``docs/api.md`` documents the core from its docstrings with ``sphinx.ext.autodoc`` and
``sphinx.ext.autosummary`` (tables without ``:toctree:``, so nothing is generated into the source
folder) in MyST ``{eval-rst}`` blocks; ``docs/own_model.md`` is the text version of
``notebooks/own_model.ipynb`` and links to the executed notebook as ``notebooks/own_model``. A site
builder appends :data:`CONF` to its ``conf.py`` (which must already load ``myst_nb``), copies
:data:`PAGES` from ``docs/`` to the root of its source folder and lists :data:`TOCTREE` in a
toctree. Nothing here needs the network, and nothing imports :mod:`obd.study`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: Sphinx extensions the API page needs, besides ``myst_nb`` (all part of Sphinx).
EXTENSIONS: tuple[str, ...] = (
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
)

#: Lines to append to the site's ``conf.py`` (after ``extensions`` is defined).
CONF = f"""
# The API reference (obd.pipeline.api_docs): autodoc from the core's docstrings.
extensions += {list(EXTENSIONS)!r}
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_preserve_defaults = True
add_module_names = False
"""

#: The pages in ``docs/``, copied to the root of the site's source folder.
PAGES: tuple[str, ...] = ("api.md", "own_model.md")

#: Toctree entries, in order: the two pages and the executed notebook ``own_model.md`` links to.
TOCTREE: tuple[str, ...] = ("own_model", "notebooks/own_model", "api")


def add_pages(src: Path, docs: Path) -> list[str]:
    """Copy :data:`PAGES` from ``docs`` into the Sphinx source folder ``src``; return their
    toctree entries (:data:`TOCTREE` without ``notebooks/own_model`` when ``src`` lacks the
    executed ``notebooks/own_model.ipynb``, whose link then stays unresolved)."""
    src, docs = Path(src), Path(docs)
    for page in PAGES:
        shutil.copyfile(docs / page, src / page)
    have_notebook = (src / "notebooks" / "own_model.ipynb").is_file()
    return [e for e in TOCTREE if have_notebook or not e.startswith("notebooks/")]
