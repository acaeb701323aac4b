"""bertlab.baselines: what a fine-tuned BERT must beat -- the majority class, TF-IDF + logistic
regression, and a linear probe on frozen features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertlab import BertConfig, BertForSequenceClassification
from bertlab.baselines import majority_baseline, mean_pooled_features, tfidf_logistic_regression


def test_majority_baseline():
    assert majority_baseline([0, 1, 1, 0, 1], 3).tolist() == [1, 1, 1]
    assert majority_baseline([2, 0, 0, 2], 2).tolist() == [0, 0]  # a tie: the smallest id
    assert majority_baseline(np.array(["pos", "neg", "pos"]), 1).tolist() == ["pos"]
    with pytest.raises(ValueError, match="train_labels is empty"):
        majority_baseline([], 3)


def test_tfidf_baseline_chooses_c_on_validation_data():
    texts = ["a great film", "great fun", "a dull mess", "dull and slow", "great acting",
             "slow mess"]
    labels = [1, 1, 0, 0, 1, 0]
    model = tfidf_logistic_regression(texts, labels, validation=(["great", "dull"], [1, 0]))
    assert model.predict(["great great", "a dull slow mess"]).tolist() == [1, 0]
    assert model[-1].C == 0.5  # every C fits this toy set: the first (strongest prior) wins
    assert tfidf_logistic_regression(texts, labels)[-1].C == 1.0  # no validation data: C=1


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
    # the encoder itself works too, and a string is one text
    np.testing.assert_allclose(mean_pooled_features(model.bert, tokenizer, "a bb"), alone,
                               atol=1e-6)
    with pytest.raises(TypeError, match="needs a BERT model.*got Linear"):
        mean_pooled_features(torch.nn.Linear(2, 2), tokenizer, ["a"])


class _Batch(dict):
    def to(self, device):
        return self
