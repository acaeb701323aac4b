"""bertlab.evaluation: bootstrap intervals against scikit-learn, baselines, probes, mistakes."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from bertlab import BertConfig, BertForSequenceClassification
from bertlab.evaluation import (
    bootstrap_indices,
    bootstrap_scores,
    majority_baseline,
    mean_pooled_features,
    most_confident_mistakes,
    paired_bootstrap_difference,
    results_table,
    tfidf_logistic_regression,
)

rng = np.random.default_rng(1)
Y_TRUE = rng.integers(0, 2, 300)
Y_GOOD = np.where(rng.random(300) < 0.85, Y_TRUE, 1 - Y_TRUE)  # ~85% right
Y_BAD = np.where(rng.random(300) < 0.6, Y_TRUE, 1 - Y_TRUE)  # ~60% right


@pytest.mark.parametrize("labels", [2, 3])
def test_bootstrap_scores_match_sklearn_on_every_resample(labels):
    y_true = rng.integers(0, labels, 50)
    y_pred = rng.integers(0, labels, 50)
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
    table = results_table(Y_TRUE, {"good": Y_GOOD, "bad": Y_BAD}, n_resamples=500, seed=0)
    assert list(table.index) == ["good", "bad"]
    assert table.loc["good", "accuracy"] == pytest.approx(100 * accuracy_score(Y_TRUE, Y_GOOD))
    assert table.loc["bad", "macro_f1"] == pytest.approx(
        100 * f1_score(Y_TRUE, Y_BAD, average="macro"))
    for metric in ("accuracy", "macro_f1"):
        assert (table[f"{metric}_low"] < table[metric]).all()
        assert (table[metric] < table[f"{metric}_high"]).all()
    # a 95% interval of n=300 accuracy near 85% is about +-4 points wide
    width = table.loc["good", "accuracy_high"] - table.loc["good", "accuracy_low"]
    assert 5 < width < 12
    again = results_table(Y_TRUE, {"good": Y_GOOD, "bad": Y_BAD}, n_resamples=500, seed=0)
    assert table.equals(again)


def test_paired_difference_is_narrower_than_separate_intervals():
    estimate, low, high = paired_bootstrap_difference(Y_TRUE, Y_GOOD, Y_BAD, seed=0)
    assert estimate == pytest.approx(accuracy_score(Y_TRUE, Y_GOOD) - accuracy_score(Y_TRUE, Y_BAD))
    assert 0 < low < estimate < high
    # identical models differ by exactly zero on every resample
    assert paired_bootstrap_difference(Y_TRUE, Y_GOOD, Y_GOOD) == (0.0, 0.0, 0.0)


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="equal length"):
        results_table(Y_TRUE, {"short": Y_GOOD[:10]})
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_scores(Y_TRUE, Y_GOOD, bootstrap_indices(300, 2), "auc")
    with pytest.raises(TypeError, match="integer class ids"):
        results_table(["a", "b"], {"m": ["a", "a"]})
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_difference(Y_TRUE, Y_GOOD, Y_BAD, confidence=95)
    with pytest.raises(ValueError, match="predictions is empty"):
        results_table(Y_TRUE, {})


def test_majority_and_tfidf_baselines():
    assert majority_baseline([0, 1, 1, 0, 1], 3).tolist() == [1, 1, 1]
    texts = ["a great film", "great fun", "a dull mess", "dull and slow", "great acting",
             "slow mess"]
    labels = [1, 1, 0, 0, 1, 0]
    model = tfidf_logistic_regression(texts, labels, validation=(["great", "dull"], [1, 0]))
    assert model.predict(["great great", "a dull slow mess"]).tolist() == [1, 0]
    assert model[-1].C == 0.5  # every C fits this toy set: the first (strongest prior) wins


def test_mean_pooled_features_ignore_padding():
    torch.manual_seed(0)
    config = BertConfig.named("tiny", vocab_size=50, max_position_embeddings=16)
    model = BertForSequenceClassification(config).eval()

    def tokenizer(texts, **kwargs):  # a stand-in: one id per word, padded with 0
        ids = [[2] + [5 + len(w) for w in t.split()] for t in texts]
        width = max(map(len, ids))
        return _Batch(input_ids=torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                      attention_mask=torch.tensor([[1] * len(i) + [0] * (width - len(i))
                                                   for i in ids]))

    together = mean_pooled_features(model, tokenizer, ["a bb", "a bb ccc dddd"])
    alone = mean_pooled_features(model, tokenizer, ["a bb"])
    assert together.shape == (2, config.hidden_size)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)  # padding changes nothing
    hidden = model.bert(torch.tensor([[2, 6, 7]])).last_hidden_state[0].mean(0)
    np.testing.assert_allclose(alone[0], hidden.detach().numpy(), atol=1e-5)


class _Batch(dict):
    def to(self, device):
        return self


def test_most_confident_mistakes_order_and_content():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    table = most_confident_mistakes(["w", "x", "y", "z"], [0, 0, 0, 1], probabilities, k=5)
    assert table["text"].tolist() == ["x", "y"]  # "w" and "z" are right
    assert table["predicted"].tolist() == ["positive", "positive"]
    assert table["confidence"].tolist() == [0.8, 0.6]
    with pytest.raises(ValueError, match="one text"):
        most_confident_mistakes(["w"], [0, 1], probabilities[:2])
