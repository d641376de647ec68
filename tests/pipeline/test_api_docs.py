"""The library users' pages: ``docs/api.md`` documents every name ``obd`` exports, each name it
lists resolves, and the "own model" notebook has the parameters ``docs/own_model.md`` names."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import nbformat
import pytest

import obd
from obd.pipeline import api_docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NOTEBOOK = ROOT / "notebooks" / "own_model.ipynb"
#: The notebook's documented parameters and the type of each default.
PARAMETERS = {"train_steps": int, "hessian_examples": int, "seed": int, "retrain_steps": int}

_MODULE = re.compile(r"^\.\. (?:currentmodule|automodule):: (\S+)\s*$")
_AUTO = re.compile(r"^\.\. auto(?:function|class|data|exception):: (\S+)\s*$")
_DIRECTIVE = re.compile(r"^\.\. [\w:-]+::")


def _api_entries() -> list[tuple[str, str]]:
    """``(module, name)`` for every autosummary entry and auto* directive of docs/api.md."""
    entries, module, in_summary = [], None, False
    for line in (DOCS / "api.md").read_text().splitlines():
        if m := _MODULE.match(line):
            module, in_summary = m.group(1), False
        elif m := _AUTO.match(line):
            entries.append((module, m.group(1)))
            in_summary = False
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif _DIRECTIVE.match(line) or line.startswith("```"):
            in_summary = False
        elif in_summary and line.startswith("   ") and not line.strip().startswith(":"):
            entries.append((module, line.strip()))
    return list(dict.fromkeys(entries))


def test_api_page_lists_every_exported_name():
    listed = {name for _, name in _api_entries()}
    missing = sorted(set(obd.__all__) - listed)
    assert not missing, f"docs/api.md does not document {missing}"


@pytest.mark.parametrize("module, name", _api_entries(), ids=str)
def test_every_listed_name_resolves(module, name):
    assert module is not None, f"{name} is listed before any currentmodule/automodule"
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if name in obd.__all__:
        assert obj is getattr(importlib.import_module(obd._EXPORTS[name]), name)
    assert obj.__doc__, f"{module}.{name} has no docstring"


def test_api_docs_settings_need_nothing_beyond_sphinx():
    assert set(api_docs.EXTENSIONS) <= {
        "sphinx.ext.autodoc",
        "sphinx.ext.autosummary",
        "sphinx.ext.napoleon",
    }
    namespace = {"extensions": ["myst_nb"]}
    exec(api_docs.CONF, namespace)  # the lines a site builder appends to its conf.py
    assert namespace["extensions"] == ["myst_nb", *api_docs.EXTENSIONS]
    assert all((DOCS / page).is_file() for page in api_docs.PAGES)
    own = (DOCS / "own_model.md").read_text()
    assert "{doc}`api`" in own and "{doc}`own_model`" in (DOCS / "api.md").read_text()


def test_own_model_notebook_has_the_documented_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert {k: type(v) for k, v in values.items()} == PARAMETERS
    source = "\n".join(c.source for c in nb.cells)
    assert f"check_no_unknown(globals(), _before, {list(PARAMETERS)!r}".replace("'", '"') in source
    for name in PARAMETERS:
        assert f'check_number("{name}", {name}' in source
        assert f"`{name}`" in (DOCS / "own_model.md").read_text()
