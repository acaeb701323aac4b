"""Generate colab/ from notebooks/ and keep every "Open in Colab" badge current.

    python scripts/make_colab.py            # write colab/*.ipynb and refresh badges
    python scripts/make_colab.py --check    # exit 1 if anything is out of date

Exercise solutions stay hidden until asked for: the code cells that follow a
``<summary>Solution`` block are tagged ``solution`` and collapsed in JupyterLab
(their source and outputs hidden; nbval still runs them), and in Colab they are
forms with a title and no saved output, so running one reveals the answer.

Each Colab notebook is its source notebook with one set-up cell in front. The cell
does nothing outside Colab; in Colab it installs bertlab from the project's
repository at the ref pinned here, says whether a GPU runtime is on, and picks
the run profile to match. The repository URL lives in one place:
``[project.urls] Repository`` in pyproject.toml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUP_TAG = "colab-setup"
BADGE_TAG = "colab-badge"
SOLUTION_TAG = "solution"
SOLUTION_TITLE = "# @title Solution: run to check, double-click to show the code"


def project_info() -> tuple[str, str]:
    """(repository URL, git ref that Colab installs)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"].rstrip("/"), f"v{project['version']}"


def badge_markdown(notebook_name: str) -> str:
    repo, _ = project_info()
    path = repo.split("github.com/", 1)[1]
    link = f"https://colab.research.google.com/github/{path}/blob/main/colab/{notebook_name}"
    image = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"[![Open In Colab]({image})]({link})"


def setup_source() -> str:
    repo, ref = project_info()
    return f'''\
# Colab set-up: installs bertlab in Google Colab; does nothing anywhere else.
import os
import subprocess
import sys

try:
    import google.colab  # noqa: F401  (exists only in Colab)

    IN_COLAB = True
except ImportError:
    IN_COLAB = False

if IN_COLAB:
    source = os.environ.get("BERTLAB_INSTALL_SOURCE", "git+{repo}@{ref}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)
    import torch

    if torch.cuda.is_available():
        os.environ["BERTLAB_PROFILE"] = "gpu"
        print(f"Colab: GPU runtime on ({{torch.cuda.get_device_name(0)}}): the gpu profile runs.")
    else:
        os.environ["BERTLAB_PROFILE"] = "cpu"
        print("Colab: no GPU runtime, so the small cpu profile runs. For the gpu profile choose "
              "Runtime > Change runtime type > GPU, then run this notebook again.")'''


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def with_badge(nb, name: str):
    """Return a copy of ``nb`` whose first cell is its Colab badge."""
    nb = nbformat.from_dict(nb)
    cells = [c for c in nb.cells if not _tagged(c, BADGE_TAG)]
    badge = nbformat.v4.new_markdown_cell(badge_markdown(name), metadata={"tags": [BADGE_TAG]})
    badge.pop("id", None)
    badge["id"] = "colab-badge"
    nb.cells = [badge, *cells]
    return nb


def solution_cells(nb) -> list[int]:
    """Indices of the code cells that follow a markdown ``<summary>Solution`` (up to the next
    markdown cell): the code of an exercise's solution."""
    found, inside = [], False
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            inside = "<summary>Solution" in cell.source
        elif inside:
            found.append(index)
    return found


def with_hidden_solutions(nb):
    """Return a copy of ``nb`` whose solution cells are tagged and collapsed in JupyterLab."""
    nb = nbformat.from_dict(nb)
    for index in solution_cells(nb):
        metadata = nb.cells[index].metadata
        tags = metadata.setdefault("tags", [])
        if SOLUTION_TAG not in tags:
            tags.append(SOLUTION_TAG)
        metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
    return nb


def colab_version(nb):
    """The Colab notebook: the set-up cell, then the source notebook, its solutions as forms."""
    nb = nbformat.from_dict(nb)
    for index in solution_cells(nb):
        cell = nb.cells[index]
        cell.source = f"{SOLUTION_TITLE}\n{cell.source}"
        cell.metadata["cellView"] = "form"  # Colab shows the title, not the code
        cell.outputs, cell.execution_count = [], None  # the answer appears when it is run
    cell = nbformat.v4.new_code_cell(setup_source(), metadata={"tags": [SETUP_TAG]})
    cell["id"] = "colab-setup"
    index = 1 if nb.cells and _tagged(nb.cells[0], BADGE_TAG) else 0
    nb.cells.insert(index, cell)
    nb.metadata["colab"] = {"provenance": [], "toc_visible": True}
    nb.metadata["accelerator"] = "GPU"
    return nb


def _text(nb) -> str:
    return nbformat.writes(nb) + "\n"


def build(check: bool, only: list[str] | None = None) -> list[str]:
    """Bring badges, hidden solutions and colab/ up to date; return what was (or would be)
    changed.

    ``only`` limits the work to the named notebooks (file names in notebooks/).
    """
    changed = []
    sources = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if only:
        sources = [p for p in sources if p.name in only]
    wanted = {}
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        badged = with_hidden_solutions(with_badge(nb, path.name))
        if _text(badged) != path.read_text():
            changed.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(_text(badged))
        wanted[ROOT / "colab" / path.name] = _text(colab_version(badged))
    for target, text in wanted.items():
        if not target.exists() or target.read_text() != text:
            changed.append(str(target.relative_to(ROOT)))
            if not check:
                target.parent.mkdir(exist_ok=True)
                target.write_text(text)
    for stale in (ROOT / "colab").glob("*.ipynb"):
        if stale not in wanted and not only:
            changed.append(f"{stale.relative_to(ROOT)} (no source notebook)")
            if not check:
                stale.unlink()
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, do not write")
    parser.add_argument("notebooks", nargs="*", help="only these notebooks (default: all)")
    args = parser.parse_args(argv)
    changed = build(check=args.check, only=args.notebooks)
    for name in changed:
        print(("out of date: " if args.check else "wrote: ") + name)
    if args.check and changed:
        print("Run `python scripts/make_colab.py` and commit the result.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
