"""bertlab: BERT built from scratch, with the data, training and plots a course needs.

Names are imported lazily, so ``python -m bertlab.data fetch`` does not pay for
importing torch. ``from bertlab import BertModel`` works as usual.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "BertConfig": "bertlab.config",
    "BertModel": "bertlab.model",
    "BertForPreTraining": "bertlab.model",
    "BertForMaskedLM": "bertlab.model",
    "BertForSequenceClassification": "bertlab.model",
    "BertForTokenClassification": "bertlab.model",
    "fetch": "bertlab.data.fetch",
    "minilm_dir": "bertlab.data.fetch",
    "DataError": "bertlab.data.fetch",
    "setup": "bertlab.profile",
    "get_profile": "bertlab.profile",
    "seed_everything": "bertlab.profile",
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
