"""The spread benchmark reads figures out of the notebooks that train: keep it in step with them."""

import ast
import builtins
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import training_spread  # noqa: E402


def _names_assigned(notebook: str) -> set[str]:
    """Every name a code cell of the notebook binds (assignments, loops, defs, imports)."""
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    names = set()
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(line for line in cell["source"] if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@pytest.mark.parametrize("notebook", training_spread.NOTEBOOKS)
def test_every_figure_reads_names_its_notebook_defines(notebook):
    defined = _names_assigned(notebook)
    for nb, label, expression, band in training_spread.FIGURES:
        if nb != notebook:
            continue
        tree = ast.parse(expression, mode="eval")
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        missing = used - defined - bound - set(dir(builtins))
        assert not missing, f"{notebook}: figure {label!r} reads {sorted(missing)}, not defined there"
        bands = band.values() if isinstance(band, dict) else [band]
        assert all(b is None or b[0] <= b[1] for b in bands)  # (96, 96): an exact count


def test_figure_cell_prints_numbers_dicts_and_none_for_failures(capsys):
    code = training_spread._figure_cell([("a", "x"), ("b", "{'p': 1, 'q': y}"), ("c", "missing")])
    exec(code, {"x": 3, "y": True})
    assert json.loads(capsys.readouterr().out) == {"a": 3.0, "b [p]": 1.0, "b [q]": 1.0, "c": None}
