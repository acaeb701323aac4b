"""The project's set-up files agree with each other."""

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = [r for r in pip_section if not r.startswith("-")]
    assert sorted(map(_normalise, listed)) == sorted(map(_normalise, wanted)), (
        "environment.yml and pyproject.toml list different dependencies; "
        "edit both together."
    )
    assert "--editable ." in pip_section, "environment.yml must install bertlab itself"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"].replace(" ", "")


def test_torch_requirement_stays_a_range():
    """Colab keeps its preinstalled CUDA build only if we never pin torch exactly."""
    torch_req = next(r for r in _pyproject()["project"]["dependencies"] if r.startswith("torch"))
    assert "==" not in torch_req


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)
