"""The subjectivity task: plot sentences against review snippets, split without leaks."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, DatasetDict

from bertlab.data import load_sentiment, load_subjectivity
from bertlab.data.sentiment import normalize_key
from bertlab.data.subjectivity import MIN_WORDS, SUBJECTIVITY_LABELS


@pytest.fixture(scope="module")
def subjectivity() -> DatasetDict:
    return load_subjectivity()


def test_schema_and_balance(subjectivity):
    assert list(subjectivity) == ["train", "validation", "test"]
    for split in subjectivity.values():
        assert split.features["label"] == ClassLabel(names=list(SUBJECTIVITY_LABELS))
        labels = split["label"]
        assert len(labels) > 500 and labels.count(0) == labels.count(1)  # balanced in every split
        assert all(t == " ".join(t.split()) and len(t.split()) >= 1 for t in split["text"])


def test_no_sentence_in_two_splits(subjectivity):
    keys = {name: {normalize_key(t) for t in split["text"]} for name, split in subjectivity.items()}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    for split in subjectivity.values():  # and no repeats inside a split
        assert len({normalize_key(t) for t in split["text"]}) == len(split)


def test_opinions_come_from_the_same_sentiment_split(subjectivity):
    sentiment = load_sentiment("rotten_tomatoes")
    for name, split in subjectivity.items():
        opinions = [t for t, y in zip(split["text"], split["label"], strict=True) if y == 1]
        assert set(opinions) <= set(sentiment[name]["text"])
        facts = [t for t, y in zip(split["text"], split["label"], strict=True) if y == 0]
        assert not set(facts) & {t for s in sentiment.values() for t in s["text"]}
        assert min(len(t.split()) for t in facts) >= MIN_WORDS


def test_loading_twice_gives_the_same_data(subjectivity):
    again = load_subjectivity()  # from the cache
    for name in subjectivity:
        assert again[name]["text"] == subjectivity[name]["text"]
        assert again[name]["label"] == subjectivity[name]["label"]
