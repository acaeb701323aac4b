"""Sentiment data: cleaning, a stable stratified split, the schema, hub names offline."""

from __future__ import annotations

import hashlib
import importlib
import random
import time

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from bertlab.data.sentiment import (
    LABEL_NAMES,
    SPLIT_FRACTIONS,
    clean_rotten_tomatoes,
    load_sentiment,
    normalize_key,
    split_summary,
    stratified_split,
)
from bertlab.data.sources import DataError, cache_dir

sentiment = importlib.import_module("bertlab.data.sentiment")

SCHEMA = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})


@pytest.fixture(scope="module")
def rt() -> DatasetDict:
    return load_sentiment("rotten_tomatoes")


def test_schema_and_split_names(rt):
    assert isinstance(rt, DatasetDict)
    assert list(rt) == ["train", "validation", "test"]
    for split in rt.values():
        assert split.features == SCHEMA
        assert all(isinstance(t, str) and t == " ".join(t.split()) and t for t in split["text"])


def test_sizes_and_class_balance(rt):
    table = split_summary(rt)
    print("\n" + table.to_string())
    print(rt["train"].info.description)
    # 13,905 rows - 1,097 plot rows - 56 exact - 3 near duplicates = 12,749 snippets
    assert table["size"].to_dict() == {"train": 10199, "validation": 1275, "test": 1275}
    assert table["positive"].sum() == 7367 and table["negative"].sum() == 5382
    total = table["size"].sum()
    for split, fraction in SPLIT_FRACTIONS.items():
        assert abs(table.loc[split, "size"] / total - fraction) < 0.001
    # stratified: every split has the overall class balance (to rounding)
    overall = table["positive"].sum() / total
    assert (table["positive share"] - overall).abs().max() < 0.002
    assert "56 exact and 3 near duplicates" in rt["train"].info.description


def test_no_text_or_near_copy_appears_twice(rt):
    keys = {split: [normalize_key(t) for t in ds["text"]] for split, ds in rt.items()}
    for split, k in keys.items():
        assert len(set(k)) == len(k), f"duplicate inside {split}"
    assert not set(keys["train"]) & set(keys["validation"])
    assert not set(keys["train"]) & set(keys["test"])
    assert not set(keys["validation"]) & set(keys["test"])


def test_the_split_never_changes(rt):
    # a digest of the test split, pinned: any change to cleaning or splitting shows up here
    digest = hashlib.sha256("\n".join(rt["test"]["text"]).encode()).hexdigest()
    rebuilt = sentiment._build_rotten_tomatoes()  # from the csv, bypassing the cache
    assert rebuilt["splits"]["test"]["text"] == rt["test"]["text"]
    assert rebuilt["splits"]["train"]["label"] == rt["train"]["label"]
    assert digest == "3b14aba459b9a0e909a61b903e42092eaafd2c37aefcf8afcd7719ecae15c7f7", digest


def test_labels_follow_the_categories():
    texts, labels, stats = clean_rotten_tomatoes([
        ("fresh", "A joy from start to finish."),
        ("rotten", "A pretentious mess."),
        ("plot", "A boy meets a girl."),
    ])
    assert dict(zip(texts, labels, strict=True)) == {"A joy from start to finish.": 1,
                                        "A pretentious mess.": 0}
    assert LABEL_NAMES[1] == "positive"
    assert stats["plot_rows"] == 1 and stats["kept"] == 2


def test_cleaning_removes_copies_and_ambiguous_texts():
    rows = [
        ("fresh", "Great  fun."),
        ("fresh", "Great fun."),  # exact copy once whitespace is folded
        ("fresh", "GREAT FUN!"),  # near copy: case and punctuation
        ("rotten", "Too long."),
        ("fresh", "too long"),  # the same text with both labels: drop all copies
        ("rotten", ""),  # no text
        ("plot", "Spies in Paris."),
        ("rotten", "Dull,   dull, dull."),
    ]
    texts, labels, stats = clean_rotten_tomatoes(rows)
    assert texts == ["Great fun.", "Dull, dull, dull."]
    assert labels == [1, 0]
    assert stats == {"rows": 8, "plot_rows": 1, "missing_text": 1, "other_category": 0,
                     "exact_duplicates": 1, "near_duplicates": 2,
                     "conflicting_label_texts": 1, "kept": 2}


def test_normalize_key():
    assert normalize_key("  A pretentious   MESS. ") == normalize_key("'a pretentious mess'")
    assert normalize_key("Uzumaki’s muse") == normalize_key("uzumaki's muse")
    assert normalize_key("good") != normalize_key("not good")


def test_stratified_split_depends_only_on_the_content():
    rng = random.Random(0)
    keys = [f"review number {i}" for i in range(1000)]
    labels = [int(rng.random() < 0.3) for _ in keys]
    a = stratified_split(keys, labels, SPLIT_FRACTIONS)
    order = list(range(1000))
    rng.shuffle(order)  # the same items in another order land in the same splits
    b = stratified_split([keys[i] for i in order], [labels[i] for i in order], SPLIT_FRACTIONS)
    for name in SPLIT_FRACTIONS:
        assert {keys[i] for i in a[name]} == {keys[order[i]] for i in b[name]}
    for label in (0, 1):
        n = labels.count(label)
        assert sum(labels[i] == label for i in a["test"]) == round(n * 0.1)
    assert sorted(i for idx in a.values() for i in idx) == list(range(1000))
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(keys, labels, {"train": 0.8, "test": 0.1})


def test_processed_cache_is_reused_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTLAB_WHEELHOUSE", str(cache_dir() / "wheels"))
    monkeypatch.setenv("BERTLAB_DATA_DIR", str(tmp_path))
    first = load_sentiment("rotten_tomatoes")
    cached = list((tmp_path / "processed").glob("rotten_tomatoes-*.json"))
    assert len(cached) == 1

    def refuse():
        raise AssertionError("rebuilt although the cache was fine")

    with monkeypatch.context() as m:
        m.setattr(sentiment, "_build_rotten_tomatoes", refuse)
        start = time.perf_counter()
        again = load_sentiment("rotten_tomatoes")
        print(f"cached load: {time.perf_counter() - start:.3f} s")
    assert again["test"]["text"] == first["test"]["text"]

    cached[0].write_text('{"splits": {"train": ')  # a truncated file is rebuilt
    assert load_sentiment("rotten_tomatoes")["test"]["text"] == first["test"]["text"]


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="rotten_tomatoes.*sst2.*imdb"):
        load_sentiment("yelp")
    with pytest.raises(TypeError):
        load_sentiment(3)


def test_verbose_prints_the_split_table(capsys):
    load_sentiment("rotten_tomatoes", verbose=True)
    out = capsys.readouterr().out
    assert "validation" in out and "positive share" in out


# --- hub names --------------------------------------------------------------------------------


@pytest.fixture
def refuse_hub(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_dataset must not be called")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


@pytest.mark.parametrize("name", ["sst2", "imdb", "hub:rotten_tomatoes"])
def test_hub_names_offline_fail_fast_and_clearly(name, monkeypatch, refuse_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_sentiment(name)
    assert time.perf_counter() - start < 1
    message = str(err.value)
    assert "HF_HUB_OFFLINE=1" in message and "load_sentiment('rotten_tomatoes')" in message


def test_hub_unreachable_fails_fast_without_offline_mode(monkeypatch, refuse_hub):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(DataError, match="127.0.0.1:9 is not reachable"):
        load_sentiment("sst2")
    assert time.perf_counter() - start < 7


def _fake_hub(name: str) -> DatasetDict:
    """Tiny stand-ins with the hub's own schemas (column names, label names, splits)."""
    rng = random.Random(0)
    if name == "stanfordnlp/sst2":
        feats = Features({"idx": Value("int32"), "sentence": Value("string"),
                          "label": ClassLabel(names=["negative", "positive"])})

        def part(n, prefix, hidden=False):
            return Dataset.from_dict({"idx": list(range(n)),
                                      "sentence": [f"{prefix} phrase {i}" for i in range(n)],
                                      "label": [-1 if hidden else rng.randint(0, 1)
                                                for _ in range(n)]}, features=feats)

        return DatasetDict({"train": part(200, "train"), "validation": part(30, "dev"),
                            "test": part(40, "test", hidden=True)})
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})

    def part(n, prefix):
        return Dataset.from_dict({"text": [f"{prefix} review {i}" for i in range(n)],
                                  "label": [rng.randint(0, 1) for _ in range(n)]},
                                 features=feats)

    if name == "cornell-movie-review-data/rotten_tomatoes":
        return DatasetDict({"train": part(80, "train"), "validation": part(10, "dev"),
                            "test": part(10, "test")})
    return DatasetDict({"train": part(200, "train"), "test": part(50, "test"),
                        "unsupervised": part(20, "extra")})


def test_hub_sets_come_back_in_the_same_schema(monkeypatch):
    monkeypatch.setattr(sentiment, "_hub_unreachable_reason", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub)

    sst2 = load_sentiment("sst2")
    assert list(sst2) == ["train", "validation", "test"]
    assert all(split.features == SCHEMA for split in sst2.values())
    assert sst2["test"]["text"] == [f"dev phrase {i}" for i in range(30)]  # labelled dev set
    assert (len(sst2["train"]), len(sst2["validation"])) == (180, 20)
    assert not set(sst2["train"]["text"]) & set(sst2["validation"]["text"])
    assert set(sst2["train"]["label"]) == {0, 1}

    imdb = load_sentiment("imdb")
    assert all(split.features == SCHEMA for split in imdb.values())
    assert len(imdb["test"]) == 50 and len(imdb["train"]) + len(imdb["validation"]) == 200
    assert imdb["test"]["text"][0] == "test review 0"

    hub_rt = load_sentiment("hub:rotten_tomatoes")
    assert [len(hub_rt[s]) for s in ("train", "validation", "test")] == [80, 10, 10]
    assert all(split.features == SCHEMA for split in hub_rt.values())


def test_hub_processing_is_quiet(monkeypatch, capfd):
    monkeypatch.setattr(sentiment, "_hub_unreachable_reason", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub)
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.enable_progress_bars()
    try:
        load_sentiment("sst2")
        assert not datasets.are_progress_bars_disabled(), "the user's setting is restored"
    finally:
        if was_disabled:
            datasets.disable_progress_bars()
    assert capfd.readouterr().err == "", "no progress bars from our own processing"
