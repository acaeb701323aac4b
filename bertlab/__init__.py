"""bertlab: BERT built from scratch, with the data, training and plots a course needs.

Names are imported lazily, so ``python -m bertlab.data fetch`` does not pay for
importing torch. ``from bertlab import BertModel`` works as usual.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "BertConfig": "bertlab.config",
    "count_parameters": "bertlab.config",
    "CheckpointError": "bertlab.model",
    "BertModel": "bertlab.model",
    "BertForPreTraining": "bertlab.model",
    "BertForMaskedLM": "bertlab.model",
    "BertForSequenceClassification": "bertlab.model",
    "BertForTokenClassification": "bertlab.model",
    "fetch": "bertlab.data.fetch",
    "minilm_dir": "bertlab.data.fetch",
    "DataError": "bertlab.data.fetch",
    "load_sentiment": "bertlab.data.sentiment",
    "load_corpus": "bertlab.data.corpus",
    "split_sentences": "bertlab.data.corpus",
    "train_wordpiece": "bertlab.tokenizer",
    "load_minilm_tokenizer": "bertlab.tokenizer",
    "build_nsp_pairs": "bertlab.data.pretraining",
    "MLMCollator": "bertlab.data.collate",
    "PaddingCollator": "bertlab.data.collate",
    "TextClassificationCollator": "bertlab.data.collate",
    "LengthGroupedSampler": "bertlab.data.collate",
    "setup": "bertlab.profile",
    "get_profile": "bertlab.profile",
    "seed_everything": "bertlab.profile",
    "train": "bertlab.train",
    "TrainConfig": "bertlab.train",
    "TimeLimit": "bertlab.train",
    "evaluate": "bertlab.train",
    "predict": "bertlab.train",
    "freeze": "bertlab.train",
    "lr_schedule": "bertlab.train",
    "resolve_device": "bertlab.train",
    "save_checkpoint": "bertlab.train",
    "load_checkpoint": "bertlab.train",
    "list_checkpoints": "bertlab.train",
    "classification_metrics": "bertlab.metrics",
    "confusion_matrix": "bertlab.metrics",
    "classification_report": "bertlab.metrics",
    "bootstrap_interval": "bertlab.metrics",
    "AttentionViewer": "bertlab.viewer",
    "attention_viewer": "bertlab.viewer",
    "attention_for": "bertlab.viz",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # cache: later lookups skip this function
        return value
    raise AttributeError(f"module 'bertlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
