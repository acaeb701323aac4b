"""bertlab.evaluation: held-out figures, predictions on new text, and the surest mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny import (
    classification_examples,
    classifier,
    one_thread,  # noqa: F401  (autouse: one thread for tiny tensors)
    pretraining_examples,
    pretraining_model,
    word_tokenizer,
)

from bertlab.data.collators import MLMCollator, PaddingCollator
from bertlab.evaluation import evaluate, most_confident_mistakes, predict
from bertlab.metrics import LossMetrics, classification_metrics


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return word_tokenizer(tmp_path_factory.mktemp("tokenizer"))


# -- evaluate --------------------------------------------------------------------------------


def test_evaluate_is_repeatable_and_leaves_training_randomness_alone(tokenizer):
    model = pretraining_model()
    data = pretraining_examples(8)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    first = evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=4)
    second = evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == second
    assert {"loss", "mlm_loss", "perplexity", "mlm_accuracy", "nsp_accuracy"} <= set(first)
    assert first["perplexity"] == pytest.approx(math.exp(first["mlm_loss"]))
    assert model.training  # put back in the mode it came in
    # another seed masks other tokens
    assert evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=4, seed=1) != first


def test_evaluate_masked_only_or_every_position_gives_the_same_figures(tokenizer):
    model = pretraining_model()
    data = pretraining_examples(12, seed=5)
    sparse = evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=5,
                      masked_only=True)
    dense = evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=5,
                     masked_only=False)
    assert set(sparse) == set(dense)
    for key, value in dense.items():
        assert sparse[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_evaluate_a_classifier_gives_its_metrics(tokenizer):
    model = classifier().eval()
    data = classification_examples(10)
    results = evaluate(model, data, collate_fn=PaddingCollator(pad_token_id=0), batch_size=4)
    batch = PaddingCollator(pad_token_id=0)(data)
    with torch.no_grad():
        predicted = model(batch["input_ids"], batch["attention_mask"]).logits.argmax(-1)
    expected = classification_metrics(batch["labels"].numpy(), predicted.numpy())
    assert {k: results[k] for k in expected} == pytest.approx(expected)
    assert not model.training  # came in eval mode: left in eval mode
    only_loss = evaluate(model, data, collate_fn=PaddingCollator(pad_token_id=0),
                         metrics=LossMetrics)
    assert set(only_loss) == {"loss"}


def test_evaluate_grouped_by_length_gives_the_same_figures():
    model = classifier().eval()
    data = classification_examples(13)
    collate = PaddingCollator(pad_token_id=0)
    in_order = evaluate(model, data, collate_fn=collate, batch_size=4)
    grouped = evaluate(model, data, collate_fn=collate, batch_size=4, group_by_length=True)
    assert grouped == pytest.approx(in_order, rel=1e-5, abs=1e-6)


def test_evaluate_explains_what_it_cannot_score(tokenizer):
    data = [{"input_ids": e["input_ids"]} for e in classification_examples(4)]  # no labels
    with pytest.raises(ValueError, match="returned no loss: evaluation batches need labels"):
        evaluate(classifier(), data, collate_fn=PaddingCollator(pad_token_id=0))
    with pytest.raises(TypeError, match="not a DataLoader"):
        evaluate(classifier(), torch.utils.data.DataLoader(data))
    with pytest.raises(ValueError, match="precision='fp16' needs a GPU"):
        evaluate(classifier(), data, collate_fn=PaddingCollator(pad_token_id=0),
                 precision="fp16")


# -- predict ---------------------------------------------------------------------------------


def test_predict_returns_labels_and_probabilities(tokenizer):
    model = classifier()
    texts = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10"]
    result = predict(model, tokenizer, texts, label_names=["negative", "positive"])
    assert result.probabilities.shape == (3, 2)
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-6)
    assert model.training  # predict() put the mode back; compare in eval mode (no dropout)
    with torch.no_grad():
        one = model.eval()(**tokenizer(texts[2:], return_tensors="pt")).logits.softmax(-1)
    np.testing.assert_allclose(result.probabilities[2], one[0].numpy(), atol=1e-6)
    assert result.labels == [["negative", "positive"][i] for i in result.label_ids]
    single = predict(model, tokenizer, "w1 w2 w3")  # one string; names from the config
    assert single.label_ids.tolist() == result.label_ids[:1].tolist()
    assert single.labels == [f"LABEL_{result.label_ids[0]}"]
    batched = predict(model, tokenizer, texts, batch_size=1)  # padding changes nothing
    np.testing.assert_allclose(batched.probabilities, result.probabilities, atol=1e-6)


def test_predict_answers_in_the_callers_order(tokenizer):
    # predict batches sentences by length; each answer must still land on its own sentence
    model = classifier()
    texts = [" ".join(f"w{j}" for j in range(1, n + 1)) for n in [5, 1, 9, 3, 7, 2, 8]]
    together = predict(model, tokenizer, texts, batch_size=3).probabilities
    alone = np.concatenate([predict(model, tokenizer, t).probabilities for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_predict_explains_bad_arguments(tokenizer):
    with pytest.raises(TypeError, match="texts must be a string or a non-empty list"):
        predict(classifier(), tokenizer, [])
    with pytest.raises(ValueError, match="label_names has 3 names but the model predicts 2"):
        predict(classifier(), tokenizer, "w1", label_names=["a", "b", "c"])


# -- the surest mistakes ---------------------------------------------------------------------


def test_most_confident_mistakes_order_and_content():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    table = most_confident_mistakes(["w", "x", "y", "z"], [0, 0, 0, 1], probabilities, k=5)
    assert table["text"].tolist() == ["x", "y"]  # "w" and "z" are right
    assert table.index.tolist() == [1, 2] and table.index.name == "example"
    assert table["true"].tolist() == ["negative", "negative"]
    assert table["predicted"].tolist() == ["positive", "positive"]
    assert table["confidence"].tolist() == [0.8, 0.6]
    assert most_confident_mistakes(["w", "x", "y", "z"], [0, 0, 0, 1], probabilities,
                                   k=1)["text"].tolist() == ["x"]
    with pytest.raises(ValueError, match="one text"):
        most_confident_mistakes(["w"], [0, 1], probabilities[:2])
