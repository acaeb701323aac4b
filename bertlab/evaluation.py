"""Comparing classifiers honestly: baselines, bootstrap intervals, a results table, probes.

A single test accuracy hides how much it would move on another sample of sentences. The
bootstrap answers that: resample the test examples with replacement many times, score each
resample, and read the middle 95% of the scores. Resampling the *same* indices for every model
makes the comparison *paired*: the interval of a difference between two models then reflects
only where they disagree, which is much narrower than two separate intervals suggest.

    table = results_table(y_test, {"majority": p0, "TF-IDF + LR": p1, "MiniLM": p2})
    margin = paired_bootstrap_difference(y_test, p2, p1)   # (estimate, low, high)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = [
    "BOOTSTRAP_METRICS",
    "bootstrap_indices",
    "bootstrap_scores",
    "majority_baseline",
    "mean_pooled_features",
    "most_confident_mistakes",
    "paired_bootstrap_difference",
    "results_table",
    "tfidf_logistic_regression",
]

BOOTSTRAP_METRICS = ("accuracy", "macro_f1")


# --------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n)`` example indices drawn with replacement, reproducible from ``seed``."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of examples, got {n!r}")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer (1000 is usual), got "
                         f"{n_resamples!r}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of equal length, got "
                         f"shapes {y_true.shape} and {y_pred.shape}; pass one class id per example")
    if not (np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype, np.integer)):
        raise TypeError("y_true and y_pred must hold integer class ids; map names to ids first")
    return y_true, y_pred


def bootstrap_scores(y_true, y_pred, indices: np.ndarray, metric: str = "accuracy") -> np.ndarray:
    """The metric on every resample (one row of ``indices`` each), vectorised.

    ``metric`` is ``"accuracy"`` or ``"macro_f1"`` (F1 averaged over the classes present in
    ``y_true`` or ``y_pred``, as scikit-learn's ``f1_score(average="macro")``, with 0 for a class
    that has no true and no predicted example in a resample).
    """
    y_true, y_pred = _labels(y_true, y_pred)
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {BOOTSTRAP_METRICS}")
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size == 0 or indices.max() >= len(y_true) or indices.min() < 0:
        raise ValueError(f"indices must be a 2-D array of example indices in [0, {len(y_true)}); "
                         "make them with bootstrap_indices(len(y_true))")
    t, p = y_true[indices], y_pred[indices]
    if metric == "accuracy":
        return (t == p).mean(axis=1)
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = ((t == c) & (p == c)).sum(axis=1)
        wrong = ((t == c) != (p == c)).sum(axis=1)  # false negatives + false positives
        denominator = 2 * tp + wrong
        scores.append(np.divide(2 * tp, denominator, out=np.zeros(len(t)),
                                where=denominator > 0))
    return np.mean(scores, axis=0)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}; try 0.95")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _score(y_true, y_pred, metric: str) -> float:
    return float(bootstrap_scores(y_true, y_pred, np.arange(len(y_true))[None], metric)[0])


def paired_bootstrap_difference(
    y_true, y_pred_a, y_pred_b, *, metric: str = "accuracy", n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """How much better model A scores than model B, with a paired bootstrap interval.

    Both models are scored on the same resamples of the test examples. Returns
    ``(difference, low, high)``; an interval that excludes 0 says the gap is not a fluke of
    which sentences happened to land in the test split.
    """
    y_true, y_pred_a = _labels(y_true, y_pred_a)
    _, y_pred_b = _labels(y_true, y_pred_b)
    indices = bootstrap_indices(len(y_true), n_resamples, seed)
    samples = (bootstrap_scores(y_true, y_pred_a, indices, metric)
               - bootstrap_scores(y_true, y_pred_b, indices, metric))
    estimate = _score(y_true, y_pred_a, metric) - _score(y_true, y_pred_b, metric)
    return (estimate, *_interval(samples, confidence))


def results_table(
    y_true, predictions: Mapping[str, Sequence[int]], *, n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> pd.DataFrame:
    """One row per model: accuracy and macro-F1 with their bootstrap intervals (in %).

    Every model is scored on the same resamples (paired), so the rows can be compared. Columns:
    ``accuracy``, ``accuracy_low``, ``accuracy_high``, ``macro_f1``, ``macro_f1_low``,
    ``macro_f1_high``; the index holds the model names in the order given.
    """
    if not predictions:
        raise ValueError("predictions is empty; pass {model name: predicted class ids}")
    y_true = np.asarray(y_true)
    indices = bootstrap_indices(len(y_true), n_resamples, seed)
    rows = {}
    for name, y_pred in predictions.items():
        row = {}
        for metric in BOOTSTRAP_METRICS:
            low, high = _interval(bootstrap_scores(y_true, y_pred, indices, metric), confidence)
            row |= {metric: _score(y_true, y_pred, metric), f"{metric}_low": low,
                    f"{metric}_high": high}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index") * 100
    table.index.name = "model"
    return table


# --------------------------------------------------------------------------- baselines


def majority_baseline(train_labels, n: int) -> np.ndarray:
    """Predict the most common training label ``n`` times (ties: the smallest id)."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    if len(values) == 0:
        raise ValueError("train_labels is empty; the majority class needs training labels")
    return np.full(n, values[np.argmax(counts)])


def tfidf_logistic_regression(
    train_texts: Sequence[str], train_labels, *, c_values: Sequence[float] = (0.5, 1, 2, 4, 8),
    validation: tuple[Sequence[str], Sequence[int]] | None = None,
):
    """A strong classical baseline: word uni- and bigram TF-IDF + logistic regression.

    With ``validation=(texts, labels)`` the regularisation strength ``C`` is chosen from
    ``c_values`` by validation accuracy (never the test split). Returns the fitted scikit-learn
    pipeline (``.predict(texts)``); the chosen ``C`` is in ``pipeline[-1].C``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    def fit(c: float):
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
            LogisticRegression(C=c, max_iter=1000),
        ).fit(list(train_texts), np.asarray(train_labels))

    if validation is None:
        return fit(1.0)
    texts, labels = validation
    scored = [(float((fit(c).predict(list(texts)) == np.asarray(labels)).mean()), -i, c)
              for i, c in enumerate(c_values)]
    return fit(max(scored)[2])  # best accuracy; ties go to the first (smallest) C


# --------------------------------------------------------------------------- probing and errors


@torch.no_grad()
def mean_pooled_features(
    model: nn.Module, tokenizer, texts: Sequence[str], *, batch_size: int = 128,
    max_length: int = 64,
) -> np.ndarray:
    """Frozen sentence features: the encoder's last hidden states averaged over real tokens.

    ``model`` is a BERT encoder or a model holding one at ``model.bert``. The features feed a
    *linear probe* (e.g. scikit-learn's ``LogisticRegression``): how much sentiment a
    representation already holds, without changing a single weight of the encoder.
    """
    encoder = getattr(model, "bert", model)
    if not hasattr(encoder, "embeddings"):
        raise TypeError(f"mean_pooled_features needs a BERT model (with .embeddings or .bert); "
                        f"got {type(model).__name__}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            hidden = encoder(batch["input_ids"], batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            chunks.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(chunks).numpy()


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
