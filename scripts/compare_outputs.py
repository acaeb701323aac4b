"""Compare the text outputs of two copies of the notebooks, cell by cell.

A refactor of the package must not change a printed figure. Execute the notebooks into another
folder, then compare them with the committed ones::

    jupyter nbconvert --to notebook --execute --output-dir /tmp/after notebooks/*.ipynb
    python scripts/compare_outputs.py notebooks /tmp/after

Every output of every code cell is compared as text (stdout, stderr, ``text/plain`` and
``text/html`` results, errors), after the substitutions of ``tests/nbval_sanitize.cfg`` (the
same ones nbval applies) and of the random ids of HTML widgets, including the cells nbval ignores (``# NBVAL_IGNORE_OUTPUT``): those
are reported apart, since a timing may differ there. Images are not compared. Cells are matched
by position; a different number of code cells is itself a difference. Exit status 1 when a
checked cell differs.
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TEXT_TYPES = ("text/plain", "text/html")
RANDOM_ID = (re.compile(r"\b[0-9a-f]{32}\b"), "ID")  # uuid4().hex ids of HTML widgets


def sanitizers(path: Path = ROOT / "tests" / "nbval_sanitize.cfg") -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, in file order."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    rules = [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]
    return [*rules, RANDOM_ID]


def cell_texts(cell, rules) -> list[str]:
    """The comparable text of each output of a code cell, sanitised."""
    texts = []
    for output in _merged_streams(cell.get("outputs", [])):
        kind = output["output_type"]
        if kind == "stream":
            text = f"[{output['name']}] {output['text']}"
        elif kind == "error":
            text = f"[error] {output['ename']}: {output['evalue']}"
        else:  # execute_result, display_data
            data = output.get("data", {})
            parts = [f"[{t}] {data[t]}" for t in TEXT_TYPES if t in data]
            if not parts:
                continue  # an image alone: not compared
            text = "\n".join(parts)
        for pattern, replacement in rules:
            text = pattern.sub(replacement, text)
        texts.append(text)
    return texts


def _merged_streams(outputs) -> list[dict]:
    """Consecutive prints to one stream as one output: how a kernel chunks them varies."""
    merged = []
    for output in outputs:
        if (output["output_type"] == "stream" and merged
                and merged[-1]["output_type"] == "stream"
                and merged[-1]["name"] == output["name"]):
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + output["text"]}
        else:
            merged.append(output)
    return merged


def compare(before: Path, after: Path, rules) -> tuple[int, int, list[str]]:
    """(checked cells that differ, ignored cells that differ, report lines) for one notebook."""
    old, new = (nbformat.read(p, as_version=4) for p in (before, after))
    old_cells = [c for c in old.cells if c.cell_type == "code"]
    new_cells = [c for c in new.cells if c.cell_type == "code"]
    if len(old_cells) != len(new_cells):
        return 1, 0, [f"  {len(old_cells)} code cells before, {len(new_cells)} after"]
    checked = ignored = 0
    lines = []
    for number, (a, b) in enumerate(zip(old_cells, new_cells, strict=True), start=1):
        ta, tb = cell_texts(a, rules), cell_texts(b, rules)
        if ta == tb:
            continue
        is_ignored = "NBVAL_IGNORE_OUTPUT" in b.source or "NBVAL_SKIP" in b.source
        ignored += is_ignored
        checked += not is_ignored
        lines.append(f"  code cell {number}{' (NBVAL_IGNORE_OUTPUT)' if is_ignored else ''}:")
        diff = difflib.unified_diff("\n".join(ta).splitlines(), "\n".join(tb).splitlines(),
                                    "before", "after", lineterm="", n=0)
        lines += [f"    {line[:150]}" for line in list(diff)[2:][:12]]
    return checked, ignored, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a folder of notebooks (e.g. notebooks)")
    parser.add_argument("after", type=Path, help="a folder with executed copies of the same names")
    args = parser.parse_args(argv)
    rules = sanitizers()
    failed = False
    for after in sorted(args.after.glob("*.ipynb")):
        before = args.before / after.name
        if not before.is_file():
            print(f"{after.name}: no notebook of that name in {args.before}")
            failed = True
            continue
        checked, ignored, lines = compare(before, after, rules)
        verdict = "identical" if not (checked or ignored) else (
            f"{checked} checked cell(s) differ, {ignored} ignored cell(s) differ")
        print(f"{after.name}: {verdict}")
        print("\n".join(lines)) if lines else None
        failed |= checked > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
