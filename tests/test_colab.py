"""Colab delivery: colab/ is generated and current, and its set-up cell works.

The simulation builds what Colab looks like from the inside: a fresh virtual
environment whose preinstalled packages (torch, transformers, ...) are this
environment's, a stub ``google.colab`` module, and the install pointed at this
checkout instead of the repository.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_colab  # noqa: E402


def test_colab_notebooks_are_up_to_date():
    stale = make_colab.build(check=True)
    assert not stale, f"out of date: {stale}; run `python scripts/make_colab.py` and commit"


def test_every_notebook_has_a_colab_twin_with_setup_first():
    sources = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert sources == sorted(p.name for p in (ROOT / "colab").glob("*.ipynb"))
    for name in sources:
        cells = json.loads((ROOT / "colab" / name).read_text())["cells"]
        assert "colab-badge" in cells[0]["metadata"]["tags"]
        assert "colab-setup" in cells[1]["metadata"]["tags"]
        repo, ref = make_colab.project_info()
        assert f"git+{repo}@{ref}" in "".join(cells[1]["source"])


def test_solutions_are_hidden_until_asked_in_jupyterlab_and_colab():
    hidden = 0
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        source = json.loads(path.read_text())
        colab = json.loads((ROOT / "colab" / path.name).read_text())
        indices = make_colab.solution_cells(make_colab.nbformat.reads(path.read_text(), 4))
        for index in indices:
            cell = source["cells"][index]
            assert "solution" in cell["metadata"]["tags"], (path.name, index)
            assert cell["metadata"]["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
            twin = colab["cells"][index + 1]  # after the set-up cell
            assert twin["metadata"]["cellView"] == "form" and not twin["outputs"]
            assert "".join(twin["source"]).startswith("# @title Solution")
            hidden += 1
    assert hidden >= 10  # every lesson with exercises has solutions to hide


def _first_colab_notebook() -> str:
    notebooks = sorted((ROOT / "colab").glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks yet")
    return notebooks[0].name


def _first_code_cells(name: str, count: int) -> str:
    cells = json.loads((ROOT / "colab" / name).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"][:count]
    return "\n\n".join("".join(c["source"]) for c in code)


@pytest.fixture(scope="module")
def colab_like(tmp_path_factory):
    """A fresh venv that sees this environment's packages, plus a stub google.colab."""
    root = tmp_path_factory.mktemp("colab")
    venv.create(root / "venv", with_pip=False)
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and sys.prefix in p)
    (site / "preinstalled.pth").write_text(ours + "\n")
    stub = root / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    # `google` stays a namespace package, as in Colab, so google.protobuf still imports
    (stub / "__init__.py").write_text("# stands in for Colab's own module\n")
    return root


def test_setup_cell_installs_from_checkout_and_reports_no_gpu(colab_like):
    script = colab_like / "first_cells.py"
    script.write_text(_first_code_cells(_first_colab_notebook(), 2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTLAB_", "PYTHON"))}
    env.update(PYTHONPATH=str(colab_like / "stub"), BERTLAB_INSTALL_SOURCE=str(ROOT),
               BERTLAB_DATA_DIR=str(ROOT / "data" / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    python = colab_like / "venv" / "bin" / "python"
    done = subprocess.run([str(python), str(script)], cwd=colab_like, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Colab: no GPU runtime, so the small cpu profile runs." in done.stdout
    assert "bertlab profile: cpu" in done.stdout
    installed = subprocess.run(
        [str(python), "-c", "import bertlab; print(bertlab.__file__)"],
        cwd=colab_like, env=env, capture_output=True, text=True, check=True).stdout
    assert str(colab_like / "venv") in installed, "bertlab must come from the Colab-side install"


def test_setup_cell_does_nothing_outside_colab(tmp_path):
    script = tmp_path / "setup_cell.py"
    script.write_text(_first_code_cells(_first_colab_notebook(), 1))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "BERTLAB_INSTALL_SOURCE": "/nonexistent"})
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
