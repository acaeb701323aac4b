"""Build the annotated corpora that ship in the package from the annotation passes.

    python scripts/annotation/build_corpus.py

NER: the first pass (``data/annotation/ner/pass1/``) with the adjudicated changes of
``data/annotation/ner/adjudication.json`` applied, one file per split, and the independent second
pass of 200 test sentences (``pass2/``) beside it, for the agreement. Writes
``bertlab/annotated/ner/{train,validation,test,test-second-pass}.jsonl``.

QA: the first pass's questions and answers (``data/annotation/qa/pass1/``) as SQuAD 2.0 rows, and
the second pass's answers to the same test questions (``pass2/``). Writes
``bertlab/annotated/qa/{train,validation,test,test-second-pass}.jsonl``.

Last, ``SHA256SUMS``, which ``bertlab.data.annotated`` checks on every load.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSES = ROOT / "data" / "annotation"
OUT = ROOT / "bertlab" / "annotated"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def build_ner() -> None:
    fixes = defaultdict(list)
    for fix in json.loads((PASSES / "ner" / "adjudication.json").read_text()):
        fixes[fix["id"]].append(fix)
    splits = defaultdict(list)
    for path in sorted((PASSES / "ner" / "pass1").glob("ner-*.jsonl")):
        split = path.stem.split("-")[1]
        for row in read_jsonl(path):
            tags = list(row["tags"])
            for fix in fixes.pop(row["id"], []):
                assert row["tokens"][fix["token"]] == fix["word"] and tags[fix["token"]] == fix["from"]
                tags[fix["token"]] = fix["to"]
            splits[split].append({"id": row["id"], "tokens": row["tokens"], "ner_tags": tags})
    assert not fixes, f"adjudication for sentences not annotated: {sorted(fixes)}"
    for split, rows in splits.items():
        write_jsonl(OUT / "ner" / f"{split}.jsonl", rows)
    second = [{"id": r["id"], "tokens": r["tokens"], "ner_tags": r["tags"]}
              for path in sorted((PASSES / "ner" / "pass2").glob("ner-*.jsonl"))
              for r in read_jsonl(path)]
    write_jsonl(OUT / "ner" / "test-second-pass.jsonl", second)
    print({split: len(rows) for split, rows in splits.items()}, "second pass:", len(second))


def squad_rows(paragraph: dict) -> list[dict]:
    """One SQuAD 2.0 row per question; an unanswerable question has empty answer lists."""
    return [{"id": f"{paragraph['id']}/q{k}", "title": paragraph["id"].split("/")[0],
             "context": paragraph["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for k, qa in enumerate(paragraph["qas"])]


def build_qa() -> None:
    splits = defaultdict(list)
    for path in sorted((PASSES / "qa" / "pass1").glob("qa-*.jsonl")):
        split = path.stem.split("-")[1]
        for paragraph in read_jsonl(path):
            splits[split].extend(squad_rows(paragraph))
    for split, rows in splits.items():
        write_jsonl(OUT / "qa" / f"{split}.jsonl", rows)
    second = [row for path in sorted((PASSES / "qa" / "pass2").glob("qa-*.jsonl"))
              for paragraph in read_jsonl(path) for row in squad_rows(paragraph)]
    questions = {r["id"]: r["question"] for r in splits["test"]}
    assert all(questions[r["id"]] == r["question"] for r in second), "second pass: other questions"
    write_jsonl(OUT / "qa" / "test-second-pass.jsonl", second)
    print({split: len(rows) for split, rows in splits.items()}, "second pass:", len(second))


def write_sums() -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(OUT).as_posix()}\n"
             for p in sorted(OUT.rglob("*.jsonl"))]
    (OUT / "SHA256SUMS").write_text("".join(lines))


if __name__ == "__main__":
    build_ner()
    build_qa()
    write_sums()
