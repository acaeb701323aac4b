"""Running a trained model over data: held-out figures, predictions, and its surest mistakes.

    figures = evaluate(model, val_data, collate_fn=collator)   # {"loss": ..., "accuracy": ...}
    result = predict(model, tokenizer, ["A gem.", "A mess."])   # labels, ids, probabilities
    most_confident_mistakes(texts, y_true, result.probabilities)

``train`` calls :func:`evaluate` at every evaluation; the figures follow the model's output
(an accumulator from :mod:`bertlab.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from bertlab.batching import (
    check_dataset,
    epoch_batches,
    example_lengths,
    forward_keywords,
    loader,
    model_inputs,
    to_device,
    unwrap,
)
from bertlab.devices import autocast, model_device, resolve_device, resolve_precision
from bertlab.metrics import LossMetrics, metrics_for
from bertlab.randomness import isolated_rng, own_generator

__all__ = ["Predictions", "evaluate", "most_confident_mistakes", "predict"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    metrics: Callable[[], LossMetrics] | None = None,
    seed: int = 0,
    masked_only: bool = True,
    group_by_length: bool = False,
    world=None,
) -> dict[str, float]:
    """Loss and task metrics of ``model`` on ``data``, in eval mode, without gradients.

    The metrics follow the model's output: MLM loss / accuracy / perplexity and NSP accuracy for
    pretraining heads, accuracy / precision / recall / macro-F1 for classifiers, the loss
    otherwise; or pass ``metrics=`` an accumulator class from ``bertlab.metrics``. Random
    choices in the collator (MLM masks) are seeded with ``seed``, so repeated evaluations mask
    the same tokens, and training's random sequence is left untouched. ``group_by_length``
    batches the examples shortest-first (less padding, the same figures up to rounding).
    """
    check_dataset(data, "eval data")
    device = resolve_device(device) if device is not None else model_device(model)
    precision = resolve_precision(precision, device)
    accepted, offers_masked_only = forward_keywords(model)
    was_training = model.training
    model.eval()
    accumulator = metrics() if metrics is not None else None
    try:
        with isolated_rng(seed, own_generator(collate_fn)):
            lengths = example_lengths(data) if group_by_length else None
            batches = epoch_batches(len(data), batch_size, shuffle=False, lengths=lengths)
            for i, batch in enumerate(loader(data, batches, collate_fn, 0,
                                             device.type == "cuda")):
                if world is not None and i % world.size != world.rank:
                    continue
                batch = to_device(batch, device)
                with autocast(device, precision):
                    output = model(**model_inputs(batch, accepted, masked_only and
                                                   offers_masked_only))
                if getattr(output, "loss", None) is None:
                    raise ValueError("the model returned no loss: evaluation batches need labels")
                accumulator = accumulator or metrics_for(batch, output)
                accumulator.update(batch, output)
    finally:
        model.train(was_training)
    if world is not None:
        accumulator = world.merge(accumulator)
    return accumulator.compute()


class Predictions(NamedTuple):
    labels: list[str]  # predicted class names
    label_ids: np.ndarray  # predicted class ids, shape (n,)
    probabilities: np.ndarray  # softmax over classes, shape (n, num_labels)


@torch.no_grad()
def predict(
    model: nn.Module,
    tokenizer,
    texts: str | Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    label_names: Sequence[str] | None = None,
) -> Predictions:
    """Classify new sentences with a fine-tuned sequence classifier.

    Returns the predicted label names (``label_names``, else the model config's ``id2label``),
    their ids and the class probabilities. The model runs in eval mode on its own device.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a non-empty list of strings")
    device = model_device(model)
    was_training = model.training
    model.eval()
    accepted, _ = forward_keywords(model)
    # Batch sentences of similar length together (little padding); the probabilities go back
    # into the caller's order at the end.
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    chunks = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer([texts[i] for i in order[start:start + batch_size]], padding=True,
                              truncation=True, max_length=max_length, return_tensors="pt")
            output = model(**model_inputs(to_device(dict(batch), device), accepted, False))
            chunks.append(output.logits.float().softmax(-1).cpu().numpy())
    finally:
        model.train(was_training)
    probabilities = np.concatenate(chunks)[np.argsort(order)]  # back to the caller's order
    ids = probabilities.argmax(-1)
    if label_names is None:  # the config's class names, else LABEL_0, LABEL_1, ... as in HF
        config = getattr(unwrap(model), "config", None)
        label2id = getattr(config, "label2id", None) or {}
        id2label = getattr(config, "id2label", None) or {i: n for n, i in label2id.items()}
        label_names = [str(id2label.get(i, f"LABEL_{i}")) for i in range(probabilities.shape[1])]
    elif len(label_names) != probabilities.shape[1]:
        raise ValueError(f"label_names has {len(label_names)} names but the model predicts "
                         f"{probabilities.shape[1]} classes")
    return Predictions([label_names[i] for i in ids], ids, probabilities)


def most_confident_mistakes(
    texts: Sequence[str], y_true, probabilities, *, k: int = 8,
    label_names: Sequence[str] = ("negative", "positive"),
) -> pd.DataFrame:
    """The ``k`` wrong predictions the model was surest of, surest first.

    ``probabilities`` is ``(n, classes)``. Columns: ``text``, ``true``, ``predicted`` and
    ``confidence`` (the probability given to the wrong answer).
    """
    probabilities = np.asarray(probabilities)
    y_true = np.asarray(y_true)
    if probabilities.ndim != 2 or len(probabilities) != len(y_true) or len(texts) != len(y_true):
        raise ValueError(f"need one text, one label and one row of probabilities per example; "
                         f"got {len(texts)} texts, {len(y_true)} labels and probabilities of "
                         f"shape {probabilities.shape}")
    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    wrong = np.flatnonzero(predicted != y_true)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    return pd.DataFrame({
        "text": [texts[i] for i in order],
        "true": [label_names[y_true[i]] for i in order],
        "predicted": [label_names[predicted[i]] for i in order],
        "confidence": confidence[order],
    }, index=pd.Index(order, name="example"))
