"""Load the definitions a course notebook writes from scratch, so tests can check them.

A notebook marks each cell that defines something with a ``bertlab`` counterpart by making
``# export`` its first line. Such a cell holds only imports, constants, functions and
classes — no work — so running it is cheap and has no side effects. ``load_definitions``
runs exactly those cells, in order, in a fresh namespace and returns what they defined;
every other cell (plots, training, prints) is ignored.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

EXPORT_MARKER = "# export"

# Statements an export cell may contain: definitions, imports and constants, nothing that runs.
_ALLOWED = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


def export_cells(path: str | Path) -> list[str]:
    """Sources of the code cells of notebook ``path`` whose first line is ``# export``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No notebook at {path}: pass the path of an .ipynb file.")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is not a Jupyter notebook (no 'cells' list): pass an .ipynb file."
        ) from err
    sources = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        lines = source.splitlines()
        if lines and lines[0].strip() == EXPORT_MARKER:
            sources.append(source)
    return sources


def _check_only_definitions(tree: ast.Module, where: str) -> None:
    for node in tree.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not (isinstance(node, _ALLOWED) or is_docstring):
            raise ValueError(
                f"{where} (line {node.lineno}) runs a {type(node).__name__} statement; an "
                f"'{EXPORT_MARKER}' cell may hold only imports, constants, functions and classes. "
                "Move the work into an ordinary cell."
            )


def load_definitions(path: str | Path) -> dict:
    """Run the ``# export`` cells of notebook ``path`` in a fresh namespace; return its names.

    The namespace starts empty (each cell must import what it uses), so a definition that
    silently leans on a variable from an ordinary cell fails here instead of passing.
    Raises ``ValueError`` when the notebook has no export cell or an export cell does work.
    """
    path = Path(path)
    sources = export_cells(path)
    if not sources:
        raise ValueError(
            f"{path} has no code cell whose first line is '{EXPORT_MARKER}': mark the cells "
            "that define the notebook's from-scratch pieces."
        )
    module_name = f"notebook_{path.stem}"
    namespace: dict = {"__name__": module_name}
    for index, source in enumerate(sources, start=1):
        where = f"{path.name}, export cell {index}"
        try:
            tree = ast.parse(source, filename=where)
        except SyntaxError as err:
            raise ValueError(
                f"{where} is not plain Python ({err.msg}, line {err.lineno}): keep IPython "
                "magics and shell commands out of export cells."
            ) from err
        _check_only_definitions(tree, where)
        exec(compile(tree, where, "exec"), namespace)  # our own notebook, not untrusted input
    return {name: value for name, value in namespace.items() if not name.startswith("__")}
