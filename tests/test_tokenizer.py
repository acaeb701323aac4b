"""WordPiece from scratch: BERT's pipeline, deterministic training, save and reload."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer, BertTokenizerFast

from bertlab.data.sentiment import load_sentiment
from bertlab.tokenizer import SPECIAL_TOKENS, _pipeline, load_minilm_tokenizer, train_wordpiece


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return load_sentiment("rotten_tomatoes")["train"]["text"][:3000]


@pytest.fixture(scope="module")
def tok(texts):
    return train_wordpiece(texts, vocab_size=2000)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm_tokenizer()


def test_training_is_deterministic(texts, tok):
    again = train_wordpiece(texts, vocab_size=2000)
    assert again.get_vocab() == tok.get_vocab()


def test_vocabulary_and_special_tokens(tok):
    assert isinstance(tok, BertTokenizerFast)
    assert len(tok) == 2000
    assert tok.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert sorted(tok.all_special_ids) == [0, 1, 2, 3, 4]
    assert any(t.startswith("##") for t in tok.get_vocab()), "continuation pieces learned"
    assert tok.model_max_length == 512


def test_single_and_pair_templates(tok):
    one = tok("A gripping film.")
    assert one["input_ids"][0] == tok.cls_token_id and one["input_ids"][-1] == tok.sep_token_id
    assert set(one["token_type_ids"]) == {0}

    pair = tok("A gripping film.", "Too long, though.")
    tokens = tok.convert_ids_to_tokens(pair["input_ids"])
    first_sep = tokens.index("[SEP]")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert pair["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_lowercase_and_accents(texts):
    uncased = train_wordpiece(texts[:500], vocab_size=600)
    assert uncased("Café RÉSUMÉ")["input_ids"] == uncased("cafe resume")["input_ids"]
    cased = train_wordpiece(texts[:500], vocab_size=600, lowercase=False)
    assert cased("The")["input_ids"] != cased("the")["input_ids"]


def test_matches_transformers_own_bert_tokenizer_on_the_same_vocabulary(tok, texts):
    reference = BertTokenizerFast(vocab=tok.get_vocab(), do_lower_case=True)
    sample = texts[:300] + ["Mr. Smith's 3.5% U.S. réunion!", "naïve — tokens"]
    assert tok(sample)["input_ids"] == reference(sample)["input_ids"]
    pairs = tok(sample[:50], sample[50:100])
    reference_pairs = reference(sample[:50], sample[50:100])
    assert pairs["input_ids"] == reference_pairs["input_ids"]
    assert pairs["token_type_ids"] == reference_pairs["token_type_ids"]


def test_our_pipeline_reproduces_minilm_tokenization(minilm, texts):
    # BERT's uncased WordPiece: our normaliser + pre-tokeniser + MiniLM's vocabulary
    ours = _pipeline(lowercase=True)
    from tokenizers.models import WordPiece

    ours.model = WordPiece(minilm.get_vocab(), unk_token="[UNK]")
    sample = texts[:300]
    assert [e.ids for e in ours.encode_batch(sample)] == \
        minilm(sample, add_special_tokens=False)["input_ids"]


def test_save_and_reload_round_trip(tok, texts, tmp_path):
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert type(back) is type(tok)
    assert back.get_vocab() == tok.get_vocab()
    assert back.all_special_tokens == tok.all_special_tokens
    sample = texts[:100]
    assert back(sample, sample[::-1]) == tok(sample, sample[::-1])
    text = "the plot is thin, but the acting is superb."
    ids = back(text)["input_ids"]
    assert back.decode(ids, skip_special_tokens=True) == text


def test_minilm_tokenizer_offline(minilm):
    assert len(minilm) == 30522
    assert minilm("hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert minilm.mask_token == "[MASK]" and minilm.mask_token_id == 103


def test_bad_input_is_explained():
    with pytest.raises(TypeError, match="not one string"):
        train_wordpiece("just one text")
    with pytest.raises(TypeError, match="non-empty"):
        train_wordpiece([])
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece(["a b c"], vocab_size=3)
