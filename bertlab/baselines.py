"""The contenders a fine-tuned BERT must beat: the majority class, TF-IDF + logistic regression,
and a linear probe on frozen BERT features.

    p0 = majority_baseline(y_train, len(y_test))
    p1 = tfidf_logistic_regression(x_train, y_train, validation=(x_val, y_val)).predict(x_test)
    features = mean_pooled_features(encoder, tokenizer, x_train)   # then LogisticRegression
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["majority_baseline", "mean_pooled_features", "tfidf_logistic_regression"]


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
