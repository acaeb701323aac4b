"""A real pretrained checkpoint: all-MiniLM-L6-v2, loaded offline into bertlab.BertModel.

Its weights have no ``bert.`` prefix and still carry transformers' old ``position_ids``
buffer; bertlab must read them as they are and give the hidden states transformers gives.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from bertlab import BertModel, minilm_dir

SENTENCES = [  # single sentences and pairs, of different lengths (so there is padding)
    "The film is a charming, funny and moving portrait of a small town.",
    ["A dull, overlong mess.", "I walked out after an hour."],
    ["Fellow citizens, the state of the Union is strong.", "We will keep it so."],
]


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm_dir())


@pytest.fixture(scope="module")
def encoded(tokenizer) -> dict[str, torch.Tensor]:
    return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))


@pytest.fixture(scope="module")
def ours():
    model, info = BertModel.from_pretrained(minilm_dir(), output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    return model


@pytest.fixture(scope="module")
def theirs():
    return transformers.BertModel.from_pretrained(minilm_dir(), attn_implementation="sdpa").eval()


def test_inputs_exercise_segments_and_padding(encoded):
    assert encoded["token_type_ids"].max() == 1
    assert (encoded["attention_mask"] == 0).any()


def test_minilm_hidden_states_match_transformers(ours, theirs, encoded, assert_close):
    assert (ours.config.num_hidden_layers, ours.config.hidden_size) == (6, 384)
    with torch.no_grad():
        a = ours(**encoded, output_hidden_states=True)
        b = theirs(**encoded, output_hidden_states=True)
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states, strict=True)):
        assert_close(f"MiniLM hidden_states[{i}]", x, y, 1e-5)
    assert_close("MiniLM last_hidden_state", a.last_hidden_state, b.last_hidden_state, 1e-5)
    assert_close("MiniLM pooler_output", a.pooler_output, b.pooler_output, 1e-5)


def test_minilm_attention_probabilities_match_transformers(ours, theirs, encoded, assert_close):
    # Probabilities come from the written-out attention in both libraries ("eager").
    theirs.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            a = ours(**encoded, output_attentions=True)
            b = theirs(**encoded, output_attentions=True)
    finally:
        theirs.set_attn_implementation("sdpa")
    assert len(a.attentions) == 6
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions, strict=True)):
        assert_close(f"MiniLM attentions[{i}]", x, y, 1e-5)
    assert_close("MiniLM last_hidden_state (explicit path)", a.last_hidden_state,
                 b.last_hidden_state, 1e-5)


def test_minilm_sentence_embeddings_make_sense(ours, tokenizer):
    """The checkpoint is really trained: paraphrases are closer than unrelated sentences."""
    batch = tokenizer(["A great movie.", "An excellent film.", "Taxes will rise next year."],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        states = ours(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)  # mean over real tokens, as MiniLM is used
    vectors = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    similar, unrelated = (vectors[0] @ vectors[1]).item(), (vectors[0] @ vectors[2]).item()
    print(f"MiniLM cosine similarity: paraphrase {similar:.3f}, unrelated {unrelated:.3f}")
    assert similar > unrelated + 0.3
