"""The corpora the project annotated itself: named entities and questions on State of the Union text.

No named-entity data with clear terms can be fetched offline from the package registries, so the
bertlab authors annotated their own, on public-domain text, and ship it inside the package
(``bertlab/annotated/``, each file pinned in ``SHA256SUMS``). How it was made (the sentences
chosen, the guideline, two independent passes, the adjudication) is in ``data/README.md`` and
``data/annotation/``.

``load_ner()`` returns CoNLL-2003's scheme: words in ``tokens``, one BIO tag per word in
``ner_tags`` (``ClassLabel`` over ``NER_LABELS``, in the order the Hugging Face ``conll2003``
data set uses). ``load_qa()`` returns SQuAD 2.0's format: a question, its paragraph
(``context``) and ``answers`` (``text`` and character ``answer_start`` lists, empty when the
paragraph does not answer the question). Splits follow whole speeches; test text comes from the
speeches that ``load_corpus`` holds out of pretraining.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bertlab.data.sources import DataError

__all__ = ["NER_LABELS", "NER_TYPES", "annotated_dir", "load_ner", "load_qa"]

NER_TYPES = ("PER", "ORG", "LOC", "MISC")
NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
SPLITS = ("train", "validation", "test")


def annotated_dir() -> Path:
    """Where the annotated files live: ``bertlab/annotated/`` in the installed package."""
    return Path(__file__).resolve().parents[1] / "annotated"


def load_ner(name: str = "sotu", *, second_pass: bool = False):
    """The named-entity corpus as a ``datasets.DatasetDict`` (train, validation, test).

    Args:
        name: ``"sotu"``, the project's annotated State of the Union sentences (offline).
        second_pass: also return ``test_second_pass``: 200 test sentences annotated again,
            independently, to measure how far two annotators agree.

    Columns: ``id`` ("speech/sentence"), ``tokens`` (words) and ``ner_tags``
    (``Sequence(ClassLabel(names=NER_LABELS))``).
    """
    if name != "sotu":
        raise ValueError(f"Unknown named-entity corpus {name!r}; the one that works offline is "
                         "'sotu' (the project's annotated State of the Union sentences).")
    from datasets import ClassLabel, Features, Sequence, Value

    features = Features({"id": Value("string"), "tokens": Sequence(Value("string")),
                         "ner_tags": Sequence(ClassLabel(names=list(NER_LABELS)))})
    return _load("ner", features, _ner_problem, second_pass)


def load_qa(name: str = "sotu", *, second_pass: bool = False):
    """The question-answering corpus as a ``datasets.DatasetDict`` (train, validation, test).

    Args:
        name: ``"sotu"``, the project's questions on State of the Union paragraphs (offline).
        second_pass: also return ``test_second_pass``: the test questions answered again,
            independently, to measure how far two annotators agree.

    Columns, as in SQuAD 2.0: ``id`` ("speech/paragraph/question"), ``title`` (the speech),
    ``context``, ``question`` and ``answers`` (``{"text": [...], "answer_start": [...]}``, both
    empty for a question the paragraph does not answer).
    """
    if name != "sotu":
        raise ValueError(f"Unknown question-answering corpus {name!r}; the one that works offline "
                         "is 'sotu' (the project's questions on State of the Union paragraphs).")
    from datasets import Features, Sequence, Value

    features = Features({"id": Value("string"), "title": Value("string"),
                         "context": Value("string"), "question": Value("string"),
                         "answers": {"text": Sequence(Value("string")),
                                     "answer_start": Sequence(Value("int32"))}})
    return _load("qa", features, _qa_problem, second_pass)


def _load(corpus: str, features, problem, second_pass: bool):
    """The splits of ``annotated_dir()/corpus`` as a ``DatasetDict``, each row checked."""
    from datasets import Dataset, DatasetDict

    files = {split: f"{corpus}/{split}.jsonl" for split in SPLITS}
    if second_pass:
        files["test_second_pass"] = f"{corpus}/test-second-pass.jsonl"
    return DatasetDict({split: Dataset.from_list(_read_rows(path, problem), features=features,
                                                 split=split)
                        for split, path in files.items()})


def _read_rows(relative: str, problem) -> list[dict]:
    """The JSON lines of a verified file; ``problem(row)`` names what is wrong with a row."""
    rows = []
    for number, line in enumerate(_read_verified(relative).splitlines(), 1):
        row = json.loads(line)
        if message := problem(row):
            raise DataError(f"{relative}, line {number}: {message}")
        rows.append(row)
    return rows


def _ner_problem(row: dict) -> str | None:
    unknown = set(row["ner_tags"]) - set(NER_LABELS)
    if unknown or len(row["ner_tags"]) != len(row["tokens"]):
        return f"tags {sorted(unknown)} are not in NER_LABELS, or there is not one tag per word."
    return None


def _qa_problem(row: dict) -> str | None:
    answers = row["answers"]
    for text, start in zip(answers["text"], answers["answer_start"], strict=True):
        if row["context"][start:start + len(text)] != text:
            return f"the answer {text!r} is not at character {start} of its context."
    return None


def _read_verified(relative: str) -> str:
    """A file of ``annotated_dir()``, after checking its sha256 against ``SHA256SUMS``."""
    root = annotated_dir()
    sums = {name: digest for digest, name in
            (line.split(None, 1) for line in (root / "SHA256SUMS").read_text().splitlines())}
    path = root / relative
    if relative not in sums:
        raise DataError(f"{relative} is not listed in {root / 'SHA256SUMS'}.")
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall bertlab (or `git checkout` the file).")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sums[relative]:
        raise DataError(f"{path} does not match its sha256 in SHA256SUMS: it was changed or is "
                        "corrupt. Reinstall bertlab (or `git checkout` the file); if you changed "
                        "the annotation on purpose, rebuild with "
                        "scripts/annotation/build_corpus.py.")
    return data.decode("utf-8")
