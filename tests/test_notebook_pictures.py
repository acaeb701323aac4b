"""Every picture a lesson draws is in its committed output.

nbval compares text, never images, so a plot that silently stopped showing would pass it. The
course has one convention for how a figure reaches the notebook -- a cell that draws ends with
``plt.show()`` -- and this test holds every committed notebook to it, then checks that each
drawing cell has an image in its saved output.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import nbformat
import pytest
from matplotlib.figure import Figure

from bertlab import viz

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))


def _figure_functions() -> set[str]:
    """The names in bertlab.viz whose functions return a matplotlib Figure."""
    names = set()
    for name in viz.__all__:
        func = getattr(viz, name)
        if callable(func) and not isinstance(func, type):
            hints = typing.get_type_hints(func)
            if hints.get("return") is Figure:
                names.add(name)
    return names


FIGURE_FUNCTIONS = _figure_functions()


def _python(source: str) -> ast.Module:
    """A cell's source as Python (IPython magics and shell lines dropped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def _called_name(call: ast.Call) -> tuple[str | None, str]:
    """(object, function) of a call: ``plt.show()`` -> ("plt", "show"), ``f()`` -> (None, "f")."""
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        return owner, func.attr
    return None, func.id if isinstance(func, ast.Name) else ""


def draws(source: str) -> bool:
    """Whether a cell draws when run: it calls pyplot or a bertlab.viz plot function outside
    any function it only defines."""
    pending = list(_python(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # defined here, drawn (and checked) where it is called
        if isinstance(node, ast.Call):
            owner, name = _called_name(node)
            if owner == "plt" or name in FIGURE_FUNCTIONS:
                return True
        pending.extend(ast.iter_child_nodes(node))
    return False


def ends_with_show(source: str) -> bool:
    body = _python(source).body
    last = body[-1] if body else None
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and _called_name(last.value) == ("plt", "show"))


def drawing_cells(path: Path) -> list[tuple[int, nbformat.NotebookNode]]:
    notebook = nbformat.read(path, as_version=4)
    return [(index, cell) for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and draws(cell.source)]


def test_the_detector_knows_the_plot_functions_and_the_convention():
    assert {"attention_heatmap", "plot_history", "plot_confusion_matrix"} <= FIGURE_FUNCTIONS
    assert draws("fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()")
    assert draws("fig = viz.plot_history(history)\nplt.show()")
    assert draws("for layer in range(2):\n    attention_heatmap(tokens, a, layer=layer)")
    assert not draws("def picture():\n    plt.plot([1])")  # defining is not drawing
    assert not draws("print(plot_history)")
    assert ends_with_show("plot_history(h)\nplt.show()")
    assert not ends_with_show("plot_history(h)")
    assert not ends_with_show("plt.show()\nprint('done')")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_drawing_cell_ends_with_plt_show_and_has_its_picture(path):
    cells = drawing_cells(path)
    no_show = [index for index, cell in cells if not ends_with_show(cell.source)]
    assert not no_show, (f"{path.name}: cells {no_show} draw but do not end with plt.show(), the "
                         "course's one way to show a figure; end each with plt.show()")
    missing = [index for index, cell in cells
               if not any("image/png" in output.get("data", {}) for output in cell.outputs)]
    assert not missing, (f"{path.name}: cells {missing} draw but their committed output has no "
                         "image; re-run the notebook and save it with its outputs")
