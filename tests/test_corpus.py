"""The pretraining corpus: sentence splitting, held-out documents, sentiment text, caching."""

from __future__ import annotations

import importlib
import time

import pytest

from bertlab.data.corpus import Corpus, Document, load_corpus, split_documents, split_sentences
from bertlab.data.sentiment import load_sentiment, normalize_key

corpus_module = importlib.import_module("bertlab.data.corpus")

TRICKY = [
    ("Mr. Speaker, Mrs. Smith and Dr. Jones are here. They came from St. Louis.",
     ["Mr. Speaker, Mrs. Smith and Dr. Jones are here.", "They came from St. Louis."]),
    ("The U.S. Congress met on Jan. 3, 1950. It adjourned in Dec. 1950.",
     ["The U.S. Congress met on Jan. 3, 1950.", "It adjourned in Dec. 1950."]),
    ("Output grew 3.5 percent, to $1.2 trillion. That was 0.8 points above forecast.",
     ["Output grew 3.5 percent, to $1.2 trillion.", "That was 0.8 points above forecast."]),
    ('"We will not retreat," he said. "We will prevail."',
     ['"We will not retreat," he said.', '"We will prevail."']),
    ('He asked, "Is this the end?" Nobody answered.',
     ['He asked, "Is this the end?"', "Nobody answered."]),
    ("Sen. Kennedy and Gov. Brown met Gen. Marshall. They spoke for hours.",
     ["Sen. Kennedy and Gov. Brown met Gen. Marshall.", "They spoke for hours."]),
    ("See p. 5 of the report, i.e. the annex. It lists everything, e.g. roads.",
     ["See p. 5 of the report, i.e. the annex.", "It lists everything, e.g. roads."]),
    ("We grew by 2.5% in 2019. Then 3.1% in 2020!",
     ["We grew by 2.5% in 2019.", "Then 3.1% in 2020!"]),
    ("Is it true? Yes! It is.", ["Is it true?", "Yes!", "It is."]),
    ("The Washington, D.C. office opened. Staff arrived at 9 a.m. on Monday.",
     ["The Washington, D.C. office opened.", "Staff arrived at 9 a.m. on Monday."]),
    ("He served in the U.S. Army. Later, he joined the U.N. staff.",
     ["He served in the U.S. Army.", "Later, he joined the U.N. staff."]),
    ("I met Mr. John Q. Adams. He was kind.", ["I met Mr. John Q. Adams.", "He was kind."]),
    # pysbd splits these wrongly; our repairs join the pieces again
    ("Prices rose by 1.5 per cent. in 1890. Wages fell.",
     ["Prices rose by 1.5 per cent. in 1890.", "Wages fell."]),
    ("The vote was 52 to 48... Then the Senate adjourned.",
     ["The vote was 52 to 48...", "Then the Senate adjourned."]),
    # an artefact in the 1838 address: a stray period inside a sentence
    ("We need the protection. of our commerce. So effectual has been the result.",
     ["We need the protection. of our commerce.", "So effectual has been the result."]),
]


@pytest.mark.parametrize(("text", "expected"), TRICKY)
def test_tricky_sentences(text, expected):
    assert split_sentences(text) == expected


def test_paragraphs_and_line_breaks():
    text = "Fellow-Citizens of the Senate:\n\nI embrace the\nopportunity. It is good\n\n\n  Thanks"
    assert split_sentences(text) == ["Fellow-Citizens of the Senate:",
                                     "I embrace the opportunity.", "It is good", "Thanks"]
    assert split_sentences("") == [] and split_sentences(" \n\n ") == []
    with pytest.raises(TypeError):
        split_sentences(["not", "a", "string"])


@pytest.fixture(scope="module")
def sotu() -> Corpus:
    return load_corpus("sotu")


def test_the_state_of_the_union_corpus(sotu):
    print(f"\n{sotu!r}\n{sotu.summary().to_string()}")
    assert len(sotu.train) + len(sotu.heldout) == 249
    assert len(sotu.heldout) == round(249 * 0.05)
    words = sotu.num_words("train") + sotu.num_words("heldout")
    assert 1_900_000 < words < 2_100_000
    first = sotu.train[0]
    assert (first.id, first.year, first.president) == ("1790-Washington-1", 1790,
                                                       "George Washington")
    assert first.sentences[0] == "Fellow-Citizens of the Senate and House of Representatives:"
    assert first.sentences[1].startswith("I embrace with great satisfaction the opportunity")
    assert all(doc.sentences and all(s.strip() == s and s for s in doc.sentences)
               for doc in sotu.train)
    assert [d.year for d in sotu.train] == sorted(d.year for d in sotu.train)


def test_held_out_documents_are_disjoint_and_stable(sotu):
    train_ids = {d.id for d in sotu.train}
    held_ids = {d.id for d in sotu.heldout}
    assert not train_ids & held_ids
    assert load_corpus("sotu").heldout == sotu.heldout
    # chosen by a hash of the id, not by position: they are spread over the years
    years = [d.year for d in sotu.heldout]
    assert max(years) - min(years) > 100
    assert load_corpus("sotu", heldout_fraction=0).heldout == []
    with pytest.raises(ValueError, match="heldout_fraction"):
        load_corpus("sotu", heldout_fraction=1.0)


def test_sentiment_training_text_is_added_never_validation_or_test(sotu):
    with_reviews = load_corpus("sotu", add_sentiment_train=True)
    added = with_reviews.train[len(sotu.train):]
    assert with_reviews.heldout == sotu.heldout
    assert {d.source for d in added} == {"rotten_tomatoes"}
    rt = load_sentiment("rotten_tomatoes")
    added_keys = {normalize_key(" ".join(d.sentences)) for d in added}
    train_keys = {normalize_key(t) for t in rt["train"]["text"]}
    assert added_keys == train_keys
    for split in ("validation", "test"):
        assert not added_keys & {normalize_key(t) for t in rt[split]["text"]}, split
    assert with_reviews.info["sentiment_train"] == {"name": "rotten_tomatoes",
                                                    "documents": len(rt["train"])}


def test_loading_is_fast_once_cached(sotu):
    start = time.perf_counter()
    load_corpus("sotu")
    seconds = time.perf_counter() - start
    print(f"\ncached load_corpus('sotu'): {seconds:.2f} s")
    assert seconds < 2


def test_split_documents_caches_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTLAB_DATA_DIR", str(tmp_path))
    texts = ["One sentence. Two sentences.", "Mr. Smith left. He came back."]
    assert split_documents(texts) == [["One sentence.", "Two sentences."],
                                      ["Mr. Smith left.", "He came back."]]
    files = list((tmp_path / "processed").iterdir())
    assert [f.name.startswith("sentences-") for f in files] == [True], "one file, no temp"

    def refuse(text):
        raise AssertionError("split again although cached")

    with monkeypatch.context() as m:
        m.setattr(corpus_module, "split_sentences", refuse)
        assert split_documents(texts)[1] == ["Mr. Smith left.", "He came back."]
    files[0].write_text("[[")  # a damaged cache file is rebuilt
    assert split_documents(texts)[0] == ["One sentence.", "Two sentences."]


def test_bad_arguments():
    with pytest.raises(ValueError, match="sotu"):
        load_corpus("wikipedia")
    with pytest.raises(TypeError):
        load_corpus("sotu", add_sentiment_train=1)
    with pytest.raises(ValueError, match="'train' or 'heldout'"):
        Corpus("x", [], []).documents("test")
    assert Document(id="d", sentences=["a b.", "c."], source="x").num_words == 3
