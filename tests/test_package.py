"""The package as a whole (bertlab/__init__.py): its lazy exports, and the rules of its layout --
one concept per module, each short enough to read in one sitting, and one module for files."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bertlab

PACKAGE = Path(bertlab.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 530


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_every_export_resolves_to_the_module_that_defines_it():
    for name, module in bertlab._EXPORTS.items():
        value = getattr(bertlab, name)
        assert value is getattr(importlib.import_module(module), name), name
    assert sorted(bertlab.__all__) == sorted(bertlab._EXPORTS)
    assert set(bertlab._EXPORTS) <= set(dir(bertlab))
    with pytest.raises(AttributeError, match="module 'bertlab' has no attribute 'Trainer'"):
        bertlab.Trainer  # noqa: B018


def test_importing_bertlab_and_its_data_cli_does_not_import_torch():
    """``python -m bertlab.data fetch`` runs before torch is installed (setup.sh)."""
    code = ("import sys, bertlab, bertlab.data, bertlab.data.__main__, bertlab.files; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_no_module_is_longer_than_a_sitting():
    lengths = {_relative(p): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES}
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_only_bertlab_files_reads_and_writes_safetensors():
    """Every weight file goes through bertlab.files (atomic writes, safe reads): no other
    module calls safetensors' save_file / load_file (or their in-memory variants)."""
    use = re.compile(r"\b(save_file|load_file|safe_open)\b|\bsafetensors\.torch\b"
                     r"|^\s*(from|import)\s+safetensors\b", re.MULTILINE)
    users = {_relative(p) for p in MODULES if use.search(p.read_text(encoding="utf-8"))}
    assert users == {"bertlab/files.py"}
