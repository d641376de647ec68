"""Each notebook has a committed py:percent twin (jupytext) with the same cells: `make sync`."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def _cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_and_its_text_twin_are_in_sync(path):
    twin = path.with_suffix(".py")
    assert twin.is_file(), f"{twin.name} is missing: run `make sync`"
    ipynb, text = jupytext.read(path), jupytext.read(twin)
    assert _cells(text) == _cells(ipynb), f"{path.name} and {twin.name} differ: run `make sync`"


def test_every_text_twin_has_a_notebook():
    folder = NOTEBOOKS[0].parent
    orphans = [p.name for p in folder.glob("*.py") if not p.with_suffix(".ipynb").exists()]
    assert not orphans, f"text twins without a notebook: {orphans}"
