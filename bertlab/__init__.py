"""bertlab: BERT built from scratch, with the data, training and plots a course needs.

The package, in the order the course meets it (one concept per module):

==========================  ===================================================================
``config``                  every knob: ``BertConfig`` (the model), ``TrainConfig`` (a run)
``model``                   the network: embeddings, attention, layer, encoder, pooler, BertModel
``heads``                   the task heads: pretraining (MLM + NSP), masked LM, classification, spans
``positions``               the sparse last layer: the rows of the tokens a head reads, their dropout
``outputs``                 what the models return (``.loss``, logits, attentions)
``checks``                  input checks: a clear error instead of a deep IndexError
``files``                   every file on disk: model folders, checkpoints, the atomic write
``tokenizer``               WordPiece: train one with ``tokenizers``, or load MiniLM's
``data``                    pinned sources, loaders (sentiment, subjectivity, corpus), NSP pairs, collators
``profiles``                the cpu/gpu profile and ``setup()``, every notebook's first cell
``randomness``              seeding every generator; saving and restoring their states
``devices``                 CUDA, MPS or CPU; bf16, fp16 or fp32
``batching``                the order of an epoch and the batches a model is fed
``optimization``            AdamW with decay groups, the learning-rate schedule, freezing
``training``                ``train()``: the loop, early stopping, checkpoints, resume
``accumulation``            a step's loss in pieces (batches, processes), weighted by what each counts
``reporting``               what a run shows: progress bar, TensorBoard, printed figures
``distributed``             several processes under ``torchrun``: shards, DDP, rank 0 writes
``evaluation``              ``evaluate()``, ``predict()``, the surest mistakes
``metrics``                 the numbers: accuracy and F1, the bootstrap, unigram entropy
``baselines``               majority class, TF-IDF + logistic regression, frozen-feature probe
``pretraining``             the course's pretraining recipe and run (notebooks 05-07)
``ablation``                reading the pretraining ablation grid (notebook 06b)
``tagging``                 named entities: BIO tags, labels on WordPieces, entity-level F1
``answering``               question answering: windows with a stride, span decoding, EM and F1
``lora``                    low-rank adaptation: LoRA layers, applied, merged, saved, loaded
``memory``                  what one training step holds in memory, counted tensor by tensor
``viz``                     the pictures: attention, training curves, offline attention viewer
==========================  ===================================================================

Names are imported lazily, so ``python -m bertlab.data fetch`` does not pay for importing
torch. ``from bertlab import BertModel`` works as usual.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "BertConfig": "bertlab.config",
    "TrainConfig": "bertlab.config",
    "count_parameters": "bertlab.config",
    "BertModel": "bertlab.model",
    "BertForPreTraining": "bertlab.heads",
    "BertForMaskedLM": "bertlab.heads",
    "BertForSequenceClassification": "bertlab.heads",
    "BertForTokenClassification": "bertlab.heads",
    "BertForQuestionAnswering": "bertlab.heads",
    "CheckpointError": "bertlab.files",
    "save_checkpoint": "bertlab.files",
    "load_checkpoint": "bertlab.files",
    "list_checkpoints": "bertlab.files",
    "fetch": "bertlab.data.sources",
    "minilm_dir": "bertlab.data.sources",
    "DataError": "bertlab.data.sources",
    "load_sentiment": "bertlab.data.sentiment",
    "load_subjectivity": "bertlab.data.subjectivity",
    "load_ner": "bertlab.data.annotated",
    "load_qa": "bertlab.data.annotated",
    "load_corpus": "bertlab.data.corpus",
    "split_sentences": "bertlab.data.corpus",
    "build_nsp_pairs": "bertlab.data.pairs",
    "MLMCollator": "bertlab.data.collators",
    "PaddingCollator": "bertlab.data.collators",
    "TextClassificationCollator": "bertlab.data.collators",
    "train_wordpiece": "bertlab.tokenizer",
    "load_minilm_tokenizer": "bertlab.tokenizer",
    "setup": "bertlab.profiles",
    "get_profile": "bertlab.profiles",
    "seed_everything": "bertlab.randomness",
    "resolve_device": "bertlab.devices",
    "lr_schedule": "bertlab.optimization",
    "freeze": "bertlab.optimization",
    "train": "bertlab.training",
    "apply_lora": "bertlab.lora",
    "merge_lora": "bertlab.lora",
    "save_lora": "bertlab.lora",
    "load_lora": "bertlab.lora",
    "training_memory": "bertlab.memory",
    "TimeLimit": "bertlab.training",
    "evaluate": "bertlab.evaluation",
    "predict": "bertlab.evaluation",
    "classification_metrics": "bertlab.metrics",
    "confusion_matrix": "bertlab.metrics",
    "classification_report": "bertlab.metrics",
    "bootstrap_interval": "bertlab.metrics",
    "AttentionViewer": "bertlab.viz.viewer",
    "attention_viewer": "bertlab.viz.viewer",
    "attention_for": "bertlab.viz.attention",
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
