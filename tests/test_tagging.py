"""bertlab.tagging: BIO entities, scores checked against seqeval, labels aligned to WordPieces."""

import random
from types import SimpleNamespace

import pytest
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

import bertlab
from bertlab.tagging import (
    IGNORE_INDEX,
    TaggingMetrics,
    align_labels,
    entity_f1_interval,
    entity_scores,
    entity_spans,
    predict_tags,
    word_predictions,
)


def test_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-MISC"]
    assert entity_spans(tags) == [("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7),
                                  ("MISC", 7, 8)]
    assert entity_spans(["O", "O"]) == []
    with pytest.raises(ValueError, match="not BIO"):
        entity_spans(["B-PER", "X-PER"])


def _random_tags(rng, n):
    kinds = ["PER", "ORG", "LOC", "MISC"]
    return [rng.choice(["O", "O", "O", f"B-{rng.choice(kinds)}", f"I-{rng.choice(kinds)}"])
            for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_seqeval(seed):
    rng = random.Random(seed)
    truth = [_random_tags(rng, rng.randint(1, 20)) for _ in range(60)]
    guess = [[t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-PER", "B-LOC"]) for t in s]
             for s in truth]
    ours = entity_scores(truth, guess)
    assert ours.loc["all", "precision"] == pytest.approx(precision_score(truth, guess), abs=1e-12)
    assert ours.loc["all", "recall"] == pytest.approx(recall_score(truth, guess), abs=1e-12)
    assert ours.loc["all", "f1"] == pytest.approx(f1_score(truth, guess), abs=1e-12)
    report = classification_report(truth, guess, output_dict=True, zero_division=0)
    for kind in ours.index.drop("all"):
        for column in ("precision", "recall", "f1"):
            theirs = report[kind]["f1-score" if column == "f1" else column]
            assert ours.loc[kind, column] == pytest.approx(theirs, abs=1e-12)
        assert ours.loc[kind, "support"] == report[kind]["support"]


def test_scores_name_a_length_mismatch():
    with pytest.raises(ValueError, match="Sentence 0: 2 true tags but 1 predicted"):
        entity_scores([["O", "B-PER"]], [["O"]])


def test_labels_go_to_first_pieces_and_come_back():
    tokenizer = bertlab.load_minilm_tokenizer()
    words = ["President", "Eisenhower", "visited", "Tlatelolco", "."]
    labels = [0, 1, 0, 5, 0]
    encoding = tokenizer(words, is_split_into_words=True)
    word_ids = encoding.word_ids()
    aligned = align_labels(word_ids, labels)
    assert len(aligned) == len(encoding["input_ids"]) > len(words) + 2  # some word has 2+ pieces
    assert aligned[0] == aligned[-1] == IGNORE_INDEX  # [CLS] and [SEP]
    assert [a for a in aligned if a != IGNORE_INDEX] == labels
    assert word_predictions(word_ids, aligned) == labels
    with pytest.raises(ValueError, match="one label per word"):
        align_labels(word_ids, labels[:3])


def test_tagging_metrics_count_first_pieces_only():
    names = ["O", "B-PER", "I-PER"]
    labels = torch.tensor([[IGNORE_INDEX, 1, IGNORE_INDEX, 2, 0, IGNORE_INDEX]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0, 2, 1, 1]]), 3).float()
    metrics = TaggingMetrics(names)
    metrics.update({"labels": labels}, SimpleNamespace(loss=torch.tensor(0.5), logits=logits))
    result = metrics.compute()
    # true: one PER (words 0-1); predicted: PER (words 0-1) and PER (word 2)
    assert result["entity_precision"] == 0.5 and result["entity_recall"] == 1.0
    assert result["loss"] == 0.5


def test_f1_interval_brackets_the_f1():
    rng = random.Random(0)
    truth = [_random_tags(rng, rng.randint(1, 20)) for _ in range(80)]
    guess = [[t if rng.random() < 0.8 else "O" for t in s] for s in truth]
    f1, low, high = entity_f1_interval(truth, guess, n_resamples=200)
    assert f1 == pytest.approx(entity_scores(truth, guess).loc["all", "f1"], abs=1e-12)
    assert low < f1 < high


def test_predict_tags_gives_one_named_tag_per_word():
    tokenizer = bertlab.load_minilm_tokenizer()
    names = ["O", "B-PER", "I-PER"]
    config = bertlab.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64, num_labels=3,
                                id2label=dict(enumerate(names)))
    model = bertlab.BertForTokenClassification(config)
    sentences = [["Senator", "Tlatelolco", "spoke", "."], ["Hello"]]
    tags = predict_tags(model, tokenizer, sentences)
    assert [len(t) for t in tags] == [4, 1] and all(t in names for s in tags for t in s)
    with pytest.raises(ValueError, match="max_length"):
        predict_tags(model, tokenizer, sentences, max_length=4)
