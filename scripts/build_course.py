"""Instructor mode: run the whole course and render it as static HTML (and slides).

    python scripts/build_course.py                 # execute every lesson, write build/course/
    python scripts/build_course.py --slides        # ... and reveal.js slides beside them
    python scripts/build_course.py --no-execute    # render the committed outputs as they are

`make course` and `make slides` call this. The pages open from disk in any
browser; build/course/index.html lists the lessons.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter, SlidesExporter
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "course"


def lesson_title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "Untitled lesson"


def mark_slides(nb):
    """Give every cell a slide type: a heading starts a slide, the rest follows it."""
    for cell in nb.cells:
        starts = cell.cell_type == "markdown" and cell.source.lstrip().startswith(("# ", "## "))
        cell.metadata.setdefault("slideshow", {})["slide_type"] = "slide" if starts else "-"
    return nb


def render(path: Path, out: Path, execute: bool, slides: bool) -> dict:
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    if execute:
        ExecutePreprocessor(timeout=3600, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(path.parent)}})
    seconds = time.perf_counter() - started
    page, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    target = out / path.with_suffix(".html").name
    target.write_text(page)
    if slides:
        deck, _ = SlidesExporter().from_notebook_node(mark_slides(nb))
        (out / path.with_suffix(".slides.html").name).write_text(deck)
    return {"file": target.name, "title": lesson_title(nb), "seconds": seconds,
            "slides": slides, "stem": path.stem}


def write_index(out: Path, lessons: list[dict], executed: bool) -> None:
    rows = []
    for lesson in lessons:
        number = lesson["stem"].split("_", 1)[0]  # the lesson's own number: 06b stays 06b
        extra = f' · <a href="{lesson["stem"]}.slides.html">slides</a>' if lesson["slides"] else ""
        took = f'<td class="t">{lesson["seconds"]:.0f} s</td>' if executed else "<td></td>"
        rows.append(f'<tr><td class="n">{html.escape(number)}</td><td><a href="{lesson["file"]}">'
                    f'{html.escape(lesson["title"])}</a>{extra}</td>{took}</tr>')
    (out / "index.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bertlab — the course</title>
<style>
 body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 44rem;
        margin: 3rem auto; padding: 0 1rem; color: #1f2328; }}
 h1 {{ font-weight: 650; }} table {{ border-collapse: collapse; width: 100%; }}
 td {{ padding: .45rem .6rem; border-bottom: 1px solid #e5e7eb; }}
 td.n, td.t {{ color: #6b7280; font-variant-numeric: tabular-nums; }} a {{ color: #2563eb; }}
</style></head><body>
<h1>bertlab — build BERT from scratch</h1>
<p>Every lesson below was {"run" if executed else "rendered from its committed outputs"}
 in the default CPU profile.</p>
<table id="lessons">
{chr(10).join(rows)}
</table></body></html>
""")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-execute", action="store_true", help="use the committed outputs")
    parser.add_argument("--slides", action="store_true", help="also write reveal.js slides")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        print("No notebooks in notebooks/.", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BERTLAB_PROFILE", "cpu")  # the profile the committed outputs use
    lessons = []
    for path in notebooks:
        lessons.append(render(path, args.out, execute=not args.no_execute, slides=args.slides))
        print(f"{lessons[-1]['file']:40s} {lessons[-1]['seconds']:6.1f} s")
    write_index(args.out, lessons, executed=not args.no_execute)
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
