"""bertlab.metrics against hand-counted figures and scikit-learn: classification metrics, the
bootstrap, the accumulators evaluation uses, and the unigram floor of a language model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from tiny import pretraining_examples, word_tokenizer

from bertlab.metrics import (
    BOOTSTRAP_METRICS,
    ClassificationMetrics,
    LossMetrics,
    PretrainingMetrics,
    bootstrap_indices,
    bootstrap_interval,
    bootstrap_scores,
    classification_metrics,
    classification_report,
    confusion_matrix,
    metrics_for,
    paired_bootstrap_difference,
    perplexity,
    results_table,
    unigram_cross_entropy,
    unigram_entropy,
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


# -- the bootstrap ---------------------------------------------------------------------------

RNG = np.random.default_rng(1)
LABELS = RNG.integers(0, 2, 300)
GOOD = np.where(RNG.random(300) < 0.85, LABELS, 1 - LABELS)  # ~85% right
BAD = np.where(RNG.random(300) < 0.6, LABELS, 1 - LABELS)  # ~60% right


def test_bootstrap_indices_are_resamples_with_replacement_and_repeat():
    indices = bootstrap_indices(50, 200, seed=3)
    assert indices.shape == (200, 50) and indices.min() >= 0 and indices.max() < 50
    assert np.array_equal(indices, bootstrap_indices(50, 200, seed=3))
    assert not np.array_equal(indices, bootstrap_indices(50, 200, seed=4))
    assert any(len(set(row)) < 50 for row in indices)  # with replacement: repeats happen
    with pytest.raises(ValueError, match="n must be a positive number of examples"):
        bootstrap_indices(0)
    with pytest.raises(ValueError, match="n_resamples must be a positive integer"):
        bootstrap_indices(10, 0)


@pytest.mark.parametrize("labels", [2, 3])
def test_bootstrap_scores_match_sklearn_on_every_resample(labels):
    y_true = RNG.integers(0, labels, 50)
    y_pred = RNG.integers(0, labels, 50)
    indices = bootstrap_indices(50, 40, seed=3)
    accuracy = bootstrap_scores(y_true, y_pred, indices, "accuracy")
    macro_f1 = bootstrap_scores(y_true, y_pred, indices, "macro_f1")
    for row, acc, f1 in zip(indices, accuracy, macro_f1, strict=True):
        assert acc == pytest.approx(accuracy_score(y_true[row], y_pred[row]), abs=1e-12)
        # the classes seen in the whole arrays, as in our definition
        expected = f1_score(y_true[row], y_pred[row], average="macro",
                            labels=np.union1d(y_true, y_pred), zero_division=0)
        assert f1 == pytest.approx(expected, abs=1e-12)


def test_results_table_point_estimates_intervals_and_determinism():
    table = results_table(LABELS, {"good": GOOD, "bad": BAD}, n_resamples=500, seed=0)
    assert list(table.index) == ["good", "bad"]
    assert table.loc["good", "accuracy"] == pytest.approx(100 * accuracy_score(LABELS, GOOD))
    assert table.loc["bad", "macro_f1"] == pytest.approx(
        100 * f1_score(LABELS, BAD, average="macro"))
    for metric in ("accuracy", "macro_f1"):
        assert (table[f"{metric}_low"] < table[metric]).all()
        assert (table[metric] < table[f"{metric}_high"]).all()
    # a 95% interval of n=300 accuracy near 85% is about +-4 points wide
    width = table.loc["good", "accuracy_high"] - table.loc["good", "accuracy_low"]
    assert 5 < width < 12
    again = results_table(LABELS, {"good": GOOD, "bad": BAD}, n_resamples=500, seed=0)
    assert table.equals(again)


def test_paired_difference_is_narrower_than_separate_intervals():
    estimate, low, high = paired_bootstrap_difference(LABELS, GOOD, BAD, seed=0)
    assert estimate == pytest.approx(accuracy_score(LABELS, GOOD) - accuracy_score(LABELS, BAD))
    assert 0 < low < estimate < high
    # identical models differ by exactly zero on every resample
    assert paired_bootstrap_difference(LABELS, GOOD, GOOD) == (0.0, 0.0, 0.0)


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="equal length"):
        results_table(LABELS, {"short": GOOD[:10]})
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_scores(LABELS, GOOD, bootstrap_indices(300, 2), "auc")
    with pytest.raises(TypeError, match="integer class ids"):
        results_table(["a", "b"], {"m": ["a", "a"]})
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_difference(LABELS, GOOD, BAD, confidence=95)
    with pytest.raises(ValueError, match="predictions is empty"):
        results_table(LABELS, {})


def test_bootstrap_interval_takes_a_function_on_the_same_resamples():
    by_name = bootstrap_interval(LABELS, GOOD, "accuracy", n_resamples=300, seed=2)
    by_function = bootstrap_interval(LABELS, GOOD, accuracy_score, n_resamples=300, seed=2)
    assert by_function == pytest.approx(by_name, abs=1e-12)
    f1 = bootstrap_interval(LABELS, GOOD, "macro_f1", n_resamples=300, seed=2)
    f1_function = bootstrap_interval(LABELS, GOOD,
                                     lambda t, p: f1_score(t, p, average="macro"),
                                     n_resamples=300, seed=2)
    assert f1_function == pytest.approx(f1, abs=1e-12)
    assert BOOTSTRAP_METRICS == ("accuracy", "macro_f1")


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


# -- the unigram floor -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """Specials [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4) and 59 ordinary words (ids 5-63)."""
    return word_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_unigram_entropy_by_hand(tok):
    a, b = 10, 11  # two ordinary ids; specials are not counted
    pairs = [{"input_ids": [tok.cls_token_id, a, a, a, b, tok.sep_token_id]}]
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert unigram_entropy(pairs, tok) == pytest.approx(expected, abs=1e-12)
    text = pretraining_examples(200)
    assert 0 < unigram_entropy(text, tok) < math.log(59)  # below uniform over the 59 words
    with pytest.raises(ValueError, match="no ordinary tokens"):
        unigram_entropy([{"input_ids": [tok.cls_token_id]}], tok)


def test_unigram_cross_entropy_by_hand(tok):
    a, b = 10, 11
    reference = [{"input_ids": [tok.cls_token_id, a, a, a, b, tok.sep_token_id]}]
    pairs = [{"input_ids": [a, b]}]
    # add-one smoothing: 4 reference tokens plus one for each of the 59 ordinary words
    expected = -(0.5 * math.log(4 / 63) + 0.5 * math.log(2 / 63))
    assert unigram_cross_entropy(pairs, reference, tok) == pytest.approx(expected)
    # on its own text, the fitted model scores (nearly, for the smoothing) the entropy; on
    # other text it does worse than that text's own entropy
    train, held_out = pretraining_examples(200, seed=1), pretraining_examples(50, seed=2)
    assert unigram_cross_entropy(train, train, tok) == pytest.approx(
        unigram_entropy(train, tok), abs=0.05)
    assert unigram_cross_entropy(held_out, train, tok) > unigram_entropy(held_out, tok)
