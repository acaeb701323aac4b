"""Check annotation files against their batch and the guideline's format.

    python scripts/annotation/check.py data/annotation/ner/pass1/ner-train-0.jsonl ...

NER files: one JSON object per line, {"id", "tokens", "tags"}, the same ids and tokens as the
batch of the same name in data/annotation/batches/, one BIO tag per token. QA files: one object
per paragraph, {"id", "context", "qas": [{"question", "answers": [{"text", "answer_start"}],
"is_impossible"}]}, every answer an exact span of its context. Prints one line per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

from build_corpus import read_jsonl  # this folder is on sys.path when the script runs

BATCHES = Path(__file__).resolve().parents[2] / "data" / "annotation" / "batches"
TYPES = ("PER", "ORG", "LOC", "MISC")
TAGS = {"O"} | {f"{p}-{t}" for p in "BI" for t in TYPES}


def check_ner(path: Path) -> list[str]:
    batch = {x["id"]: x for x in read_jsonl(BATCHES / path.name)}
    rows, problems = read_jsonl(path), []
    ids = [r["id"] for r in rows]
    if sorted(ids) != sorted(batch):
        problems.append(f"ids differ from the batch: missing {sorted(set(batch) - set(ids))[:5]}, "
                        f"extra {sorted(set(ids) - set(batch))[:5]}, duplicates "
                        f"{len(ids) - len(set(ids))}")
    for r in rows:
        where = f"{r.get('id')}"
        if r.get("tokens") != batch.get(r.get("id"), {}).get("tokens"):
            problems.append(f"{where}: tokens differ from the batch")
        tags = r.get("tags", [])
        if len(tags) != len(r.get("tokens", [])):
            problems.append(f"{where}: {len(tags)} tags for {len(r.get('tokens', []))} tokens")
        for i, tag in enumerate(tags):
            if tag not in TAGS:
                problems.append(f"{where}: token {i} has unknown tag {tag!r}")
            elif tag.startswith("I-") and (i == 0 or tags[i - 1][2:] != tag[2:]):
                problems.append(f"{where}: token {i} {tag} does not continue an entity of its type")
    return problems


def check_qa(path: Path) -> list[str]:
    batch = {x["id"]: x for x in read_jsonl(BATCHES / path.name)}
    problems = []
    for r in read_jsonl(path):
        where = r.get("id")
        context = batch.get(where, {}).get("context")
        if context is None or r.get("context") != context:
            problems.append(f"{where}: not a paragraph of the batch, or its context was changed")
            continue
        for k, qa in enumerate(r.get("qas", [])):
            if not qa.get("question", "").strip().endswith("?"):
                problems.append(f"{where} q{k}: a question ends with '?'")
            answers = qa.get("answers", [])
            if qa.get("is_impossible"):
                if answers:
                    problems.append(f"{where} q{k}: an unanswerable question has no answers")
                continue
            if not answers:
                problems.append(f"{where} q{k}: no answer and not marked is_impossible")
            for a in answers:
                start, text = a.get("answer_start", -1), a.get("text", "")
                if not text or context[start:start + len(text)] != text:
                    found = context.find(text)
                    problems.append(f"{where} q{k}: answer {text!r} is not at {start}"
                                    + (f" (it is at {found})" if found >= 0 else " (not in the text)"))
    return problems


def main(paths: list[str]) -> int:
    bad = 0
    for name in paths:
        path = Path(name)
        problems = (check_ner if path.name.startswith("ner-") else check_qa)(path)
        for p in problems:
            print(f"{path.name}: {p}")
        print(f"{path.name}: {len(read_jsonl(path))} rows, {len(problems)} problems")
        bad += len(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
