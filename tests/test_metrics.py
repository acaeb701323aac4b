"""bertlab.metrics against hand-counted figures and scikit-learn."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from bertlab.metrics import (
    ClassificationMetrics,
    LossMetrics,
    PretrainingMetrics,
    bootstrap_interval,
    classification_metrics,
    classification_report,
    confusion_matrix,
    metrics_for,
    perplexity,
)

# 8 examples: 3 true negatives, 1 false positive, 1 false negative, 3 true positives
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 1]
Y_PRED = [0, 0, 0, 1, 0, 1, 1, 1]


def test_classification_metrics_match_hand_counts():
    result = classification_metrics(Y_TRUE, Y_PRED)
    # each class: precision 3/4, recall 3/4, F1 3/4
    assert result == pytest.approx(
        {"accuracy": 0.75, "precision": 0.75, "recall": 0.75, "macro_f1": 0.75})
    skewed = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0])  # always the majority class
    assert skewed["accuracy"] == 0.75
    assert skewed["macro_f1"] == pytest.approx(f1_score([0, 0, 0, 1], [0, 0, 0, 0],
                                                        average="macro"))
    assert skewed["macro_f1"] < 0.5  # macro-F1 sees through it


def test_confusion_matrix_and_report_name_the_classes():
    table = confusion_matrix(Y_TRUE, Y_PRED, label_names=["negative", "positive"])
    assert table.to_numpy().tolist() == [[3, 1], [1, 3]]
    assert table.index.tolist() == ["negative", "positive"] and table.index.name == "true"
    assert table.columns.name == "predicted"
    report = classification_report(Y_TRUE, Y_PRED, label_names=["negative", "positive"])
    assert "negative" in report and "positive" in report and "0.750" in report


def test_bad_label_arrays_are_explained():
    with pytest.raises(ValueError, match="equal length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="no name in label_names"):
        confusion_matrix([0, 2], [0, 1], label_names=["a", "b"])
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_interval(Y_TRUE, Y_PRED, metric="auc")


def test_bootstrap_interval_brackets_the_estimate_and_repeats():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 400)
    y_pred = np.where(rng.random(400) < 0.8, y_true, 1 - y_true)  # about 80% right
    estimate, low, high = bootstrap_interval(y_true, y_pred, n_resamples=500)
    assert low < estimate < high
    # the normal approximation of a proportion's 95% interval: +-1.96 sqrt(p(1-p)/n)
    half_width = 1.96 * math.sqrt(estimate * (1 - estimate) / 400)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.2)
    assert bootstrap_interval(y_true, y_pred, n_resamples=500) == (estimate, low, high)
    f1 = bootstrap_interval(y_true, y_pred, "macro_f1", n_resamples=200)
    assert f1[1] < f1[0] < f1[2]


def test_pretraining_metrics_from_dense_and_sparse_logits():
    torch.manual_seed(0)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 3], labels[1, 4] = 4, 2, 7
    dense_logits = torch.randn(2, 5, 10)
    dense_logits[0, 1, 4] = 10.0  # one sure hit; the other two depend on the draw
    nsp_logits, nsp_labels = torch.tensor([[2.0, 0.0], [1.0, 3.0]]), torch.tensor([0, 0])
    batch = {"labels": labels, "next_sentence_label": nsp_labels}
    targets = labels[labels != -100]

    results = []
    for logits in (dense_logits, dense_logits[labels != -100]):
        metrics = PretrainingMetrics()
        output = SimpleNamespace(loss=torch.tensor(1.5), prediction_logits=logits,
                                 seq_relationship_logits=nsp_logits)
        metrics.update(batch, output)
        results.append(metrics.compute())
    assert results[0] == results[1]
    masked = dense_logits[labels != -100]
    expected_loss = F.cross_entropy(masked, targets).item()
    assert results[0]["mlm_loss"] == pytest.approx(expected_loss)
    assert results[0]["perplexity"] == pytest.approx(math.exp(expected_loss))
    assert results[0]["mlm_accuracy"] == pytest.approx(
        (masked.argmax(-1) == targets).float().mean().item())
    assert results[0]["nsp_accuracy"] == 0.5 and results[0]["loss"] == 1.5


def test_accumulators_weight_batches_by_their_tokens():
    metrics = PretrainingMetrics()
    for n in (1, 3):  # a batch with 1 masked token and one with 3, every prediction right
        labels = torch.arange(n)[None]
        logits = F.one_hot(labels, 5).float() * 20
        metrics.update({"labels": labels}, SimpleNamespace(loss=torch.tensor(0.0),
                                                           prediction_logits=logits))
    assert metrics.mlm_count == 4 and metrics.compute()["mlm_accuracy"] == 1.0
    assert "nsp_accuracy" not in metrics.compute()


def test_metrics_for_picks_the_accumulator_from_the_output():
    pretraining = SimpleNamespace(loss=torch.tensor(1.0), prediction_logits=torch.zeros(3, 5))
    classification = SimpleNamespace(loss=torch.tensor(1.0), logits=torch.zeros(2, 3))
    tokens = SimpleNamespace(loss=torch.tensor(1.0), logits=torch.zeros(2, 4, 3))
    assert isinstance(metrics_for({"labels": torch.zeros(3)}, pretraining), PretrainingMetrics)
    assert isinstance(metrics_for({"labels": torch.zeros(2)}, classification),
                      ClassificationMetrics)
    assert type(metrics_for({"labels": torch.zeros(2, 4)}, tokens)) is LossMetrics


def test_classification_accumulator_agrees_with_the_plain_function():
    metrics = ClassificationMetrics()
    for start in (0, 4):
        labels = torch.tensor(Y_TRUE[start:start + 4])
        logits = F.one_hot(torch.tensor(Y_PRED[start:start + 4]), 2).float()
        metrics.update({"labels": labels}, SimpleNamespace(loss=torch.tensor(0.5), logits=logits))
    assert metrics.compute() == pytest.approx({"loss": 0.5,
                                               **classification_metrics(Y_TRUE, Y_PRED)})


def test_perplexity_is_exp_of_the_loss():
    assert perplexity(math.log(8192)) == pytest.approx(8192)
    assert perplexity(1e4) == math.inf
