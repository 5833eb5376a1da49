"""The notebooks of notebooks/: each `NN_name.py` (jupytext py:percent, the source that ruff lints and reviews read)
has its `NN_name.ipynb` (what GitHub and the Hub show, with the outputs of a run), and the two hold the same cells.
Executing them is `make notebooks` (CI runs it after the tests), not this file: these checks take a second."""

import json
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="jupytext is in the dev extra: pip install -e '.[dev]'")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))  # every .py here is a notebook source
QUICK_ENV = "HF_BIGMODEL_QUICK"


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def describe_drift(py_cells: list[tuple[str, str]], ipynb_cells: list[tuple[str, str]]) -> str:
    for index, (a, b) in enumerate(zip(py_cells, ipynb_cells)):
        if a != b:
            return f"cell {index} differs:\n--- .py ({a[0]})\n{a[1][:400]}\n--- .ipynb ({b[0]})\n{b[1][:400]}"
    return f"the .py has {len(py_cells)} cells, the .ipynb {len(ipynb_cells)}"


def test_the_folder_has_notebooks_and_every_ipynb_has_its_source():
    assert SOURCES, f"no notebook sources (*.py) in {NOTEBOOKS}"
    orphans = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if not p.with_suffix(".py").exists())
    assert not orphans, f"notebooks without their py:percent source: {orphans}; run `jupytext --to py:percent` on them"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_has_not_drifted(source: Path):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `jupytext --to ipynb {source.name}` and execute it"
    py_notebook = jupytext.read(source)
    ipynb_notebook = jupytext.read(ipynb)
    assert py_notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", (
        f"{source.name} is not paired: run `jupytext --set-formats ipynb,py:percent {source.name}`"
    )
    py_cells, ipynb_cells = cells(py_notebook), cells(ipynb_notebook)
    assert py_cells == ipynb_cells, (
        f"{source.name} and {ipynb.name} have drifted: edit the .py, then `jupytext --sync notebooks/{source.name}` "
        f"and execute the notebook again ({describe_drift(py_cells, ipynb_cells)})"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_keeps_the_outputs_of_a_clean_run(source: Path):
    """The .ipynb shows real results: every code cell ran, in order, in one kernel, and none failed."""
    notebook = json.loads(source.with_suffix(".ipynb").read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    counts = [cell.get("execution_count") for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{source.stem}.ipynb was not executed top to bottom in one run (execution counts {counts}); "
        "execute it with `make notebooks-outputs NOTEBOOKS=...`"
    )
    errors = [output for cell in code for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, f"{source.stem}.ipynb was committed with an error output: {errors[0].get('ename')}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_has_a_quick_mode_and_asserts_outcomes(source: Path):
    """CI runs every notebook with HF_BIGMODEL_QUICK=1: the same code at smaller sizes. A notebook that only runs
    proves nothing, so each checks what it teaches with `assert` (a loss fell, an accuracy beat chance)."""
    text = source.read_text(encoding="utf-8")
    assert QUICK_ENV in text, f"{source.name} never reads {QUICK_ENV}, so CI would run it at full size"
    assert re.search(r"^\s*assert ", text, re.MULTILINE), f"{source.name} asserts nothing about its results"


def test_a_drifted_pair_is_reported(tmp_path: Path):
    """The drift check itself: an edit to the .py that the .ipynb lacks is caught, naming the cell."""
    source = SOURCES[0]
    edited = jupytext.read(source)
    edited.cells[1].source += "\nprint('edited')"
    py_cells, ipynb_cells = cells(edited), cells(jupytext.read(source.with_suffix(".ipynb")))
    assert py_cells != ipynb_cells
    assert describe_drift(py_cells, ipynb_cells).startswith("cell 1 differs")
