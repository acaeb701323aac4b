"""Notebooks 03 and 04: the pieces they write from scratch agree with bertlab and transformers.

Companion to ``test_notebooks_agree.py`` (notebooks 01 and 02). The ``# export`` cells of each
notebook are loaded with ``tests/nbdefs.load_definitions`` (the notebook itself is not run) and
checked on inputs the notebook never saw: WordPiece encoding against the tokenizers that
``bertlab.train_wordpiece`` and ``load_minilm_tokenizer`` return, the pair layout against the
tokenizer's template, masking draw for draw against ``bertlab``'s collator, and the hand-written
losses against ``transformers.BertForPreTraining`` on the same weights. Run with ``-s`` to see
every max |diff|.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from nbdefs import load_definitions

from bertlab.config import BertConfig
from bertlab.data.collators import MLMCollator, PaddingCollator
from bertlab.data.collators import mask_tokens as bertlab_mask_tokens
from bertlab.data.sentiment import load_sentiment
from bertlab.heads import BertForPreTraining
from bertlab.tokenizer import SPECIAL_TOKENS, load_minilm_tokenizer, train_wordpiece

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def reviews():
    return load_sentiment("rotten_tomatoes")


@pytest.fixture(scope="module")
def tok(reviews):
    """A small vocabulary (1,000 tokens), so that most words split into several pieces."""
    return train_wordpiece(reviews["train"]["text"][:3000], vocab_size=1000)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm_tokenizer()


@pytest.fixture(scope="module")
def unseen_texts(reviews) -> list[str]:
    """Validation snippets (never in the tokenizer's training text) plus hand-picked corners."""
    corners = ["snow☃man", "ΩMEGA and naïve café", "x" * 101, "x" * 100, "", "   ",
               "antidisestablishmentarianism", "U.S.A. co-op 3.14159 COVID-19", "don't!!"]
    return reviews["validation"]["text"][:600] + corners


# ---------------------------------------------------------------------------------------------
# Notebook 03: tokenization
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defs_03() -> dict:
    return load_definitions(NOTEBOOKS / "03_tokenization.ipynb")


def test_03_exports_the_expected_names(defs_03):
    for name in ("wordpiece_encode", "wordpiece_tokenize", "encode_pair", "pad_batch"):
        assert name in defs_03, f"notebook 03 no longer exports {name}"


def _pre_steps(tokenizer):
    backend = tokenizer.backend_tokenizer

    def split_words(text):
        return [word for word, _span in backend.pre_tokenizer.pre_tokenize_str(text)]

    return backend.normalizer.normalize_str, split_words


@pytest.mark.parametrize("which", ["trained", "minilm"])
def test_03_wordpiece_matches_the_tokenizer(defs_03, tok, minilm, unseen_texts, which):
    tokenizer = tok if which == "trained" else minilm
    vocab = tokenizer.get_vocab()
    normalize, split_words = _pre_steps(tokenizer)
    theirs = tokenizer(unseen_texts, add_special_tokens=False)["input_ids"]
    words = split = 0
    for text, ids in zip(unseen_texts, theirs, strict=True):
        ours = defs_03["wordpiece_tokenize"](text, vocab, normalize, split_words)
        assert ours == tokenizer.convert_ids_to_tokens(ids), text
        words += len(split_words(normalize(text)))
        split += len(ours)
    print(f"03 wordpiece vs {which} tokenizer: {len(unseen_texts)} texts, {words} words, "
          f"{split} pieces, 0 differences")
    assert split > words  # the check covers words that split, not only whole-word lookups


def test_03_wordpiece_encode_corner_cases(defs_03, tok):
    encode, vocab = defs_03["wordpiece_encode"], tok.get_vocab()
    assert encode("x" * 101, vocab) == ["[UNK]"]  # over max_chars: unknown without a look
    assert encode("☃", vocab) == ["[UNK]"]
    assert encode("", vocab) == []
    # greedy longest-match-first: one unspellable remainder makes the whole word unknown
    assert encode("abcd", {"a", "ab", "##c", "##bcd"}) == ["[UNK]"]
    assert encode("abcd", {"a", "##bcd"}) == ["a", "##bcd"]
    assert encode("abc", {"a", "ab", "abc", "##c"}) == ["abc"]


@pytest.mark.parametrize("which", ["trained", "minilm"])
def test_03_pair_batch_matches_the_tokenizer(defs_03, tok, minilm, reviews, which):
    tokenizer = tok if which == "trained" else minilm
    vocab = tokenizer.get_vocab()
    normalize, split_words = _pre_steps(tokenizer)
    texts = [" ".join(t.split()[:12]) for t in reviews["validation"]["text"][:40]]
    firsts, seconds = texts[0::2], texts[1::2]  # different lengths: padding is exercised

    def pieces(text):
        return defs_03["wordpiece_tokenize"](text, vocab, normalize, split_words)

    examples = [defs_03["encode_pair"](pieces(a), pieces(b), vocab)
                for a, b in zip(firsts, seconds, strict=True)]
    ours = defs_03["pad_batch"](examples, tokenizer.pad_token_id)
    theirs = tokenizer(firsts, seconds, padding=True, return_tensors="pt")
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[name], theirs[name]), name
    assert (ours["attention_mask"] == 0).any()


# ---------------------------------------------------------------------------------------------
# Notebook 04: masking and the two losses
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defs_04() -> dict:
    return load_definitions(NOTEBOOKS / "04_mlm_nsp.ipynb")


def test_04_exports_the_expected_names(defs_04):
    for name in ("mask_tokens", "mlm_loss", "nsp_loss"):
        assert name in defs_04, f"notebook 04 no longer exports {name}"


def test_04_tokenizer_layout_matches_the_notebooks_defaults(tok):
    # mask_tokens defaults to [MASK] = 4 and ordinary tokens from id 5: bertlab's layout
    assert tok.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert tok.mask_token_id == 4


@pytest.fixture(scope="module")
def review_batches(tok, reviews):
    """Padded batches of review pairs: about 140,000 real tokens."""
    texts = reviews["train"]["text"][:6000]
    enc = tok(texts[0::2], texts[1::2], truncation=True, max_length=96)
    features = [{"input_ids": ids, "token_type_ids": types}
                for ids, types in zip(enc["input_ids"], enc["token_type_ids"], strict=True)]
    pad = PaddingCollator(tok)
    return [pad(features[i : i + 200]) for i in range(0, len(features), 200)], features


def _special_mask(batch, tokenizer):
    special_ids = torch.tensor(tokenizer.all_special_ids)
    return (batch["attention_mask"] == 0) | torch.isin(batch["input_ids"], special_ids)


@pytest.mark.parametrize("seed, probability", [(0, 0.15), (7, 0.15), (1, 0.5)])
def test_04_masking_equals_bertlab_draw_for_draw(defs_04, tok, review_batches, seed, probability):
    batch = review_batches[0][0]
    special = _special_mask(batch, tok)
    ours = defs_04["mask_tokens"](batch["input_ids"], special, len(tok),
                                  torch.Generator().manual_seed(seed), mlm_probability=probability)
    theirs = bertlab_mask_tokens(
        batch["input_ids"], ~special, mask_token_id=tok.mask_token_id,
        random_token_ids=torch.arange(5, len(tok)), mlm_probability=probability,
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_04_masking_equals_the_mlm_collator(defs_04, tok, review_batches):
    features = review_batches[1][:200]
    collated = MLMCollator(tok, seed=3)(features)
    padded = PaddingCollator(tok)(features)
    ours = defs_04["mask_tokens"](padded["input_ids"], _special_mask(padded, tok), len(tok),
                                  torch.Generator().manual_seed(3))
    assert torch.equal(ours[0], collated["input_ids"])
    assert torch.equal(ours[1], collated["labels"])


def test_04_masking_statistics(defs_04, tok, review_batches):
    generator = torch.Generator().manual_seed(0)
    candidates = chosen = as_mask = unchanged = 0
    for batch in review_batches[0]:
        special = _special_mask(batch, tok)
        corrupted, labels = defs_04["mask_tokens"](batch["input_ids"], special, len(tok), generator)
        picked = labels != -100
        assert not picked[special].any()  # never a special token or padding
        assert torch.equal(labels[picked], batch["input_ids"][picked])  # labels: the originals
        assert torch.equal(corrupted[~picked], batch["input_ids"][~picked])  # the rest untouched
        assert corrupted[picked].ge(5).logical_or(corrupted[picked] == tok.mask_token_id).all()
        candidates += (~special).sum().item()
        chosen += picked.sum().item()
        as_mask += (corrupted[picked] == tok.mask_token_id).sum().item()
        unchanged += (corrupted[picked] == labels[picked]).sum().item()
    shares = {"chosen": chosen / candidates, "[MASK]": as_mask / chosen,
              "random": (chosen - as_mask - unchanged) / chosen, "unchanged": unchanged / chosen}
    print("04 masking over", candidates, "tokens:", {k: round(v, 4) for k, v in shares.items()})
    assert candidates >= 100_000
    for name, target in (("chosen", 0.15), ("[MASK]", 0.8), ("random", 0.1), ("unchanged", 0.1)):
        assert abs(shares[name] - target) < 0.01, (name, shares[name])


@pytest.fixture(scope="module")
def pretraining_pair(tok, review_batches):
    """A fresh tiny bertlab model, the same weights in transformers, and a masked NSP batch."""
    features = [dict(f, next_sentence_label=i % 2) for i, f in enumerate(review_batches[1][:12])]
    batch = MLMCollator(tok, seed=0)(features)
    config = BertConfig.named("tiny", vocab_size=len(tok), max_position_embeddings=128)
    torch.manual_seed(0)
    ours = BertForPreTraining(config).eval()
    reference = transformers.BertForPreTraining(config.to_hf()).eval()
    reference.load_state_dict(ours.state_dict())
    return ours, reference, batch


def test_04_losses_match_transformers(defs_04, tok, pretraining_pair, assert_close):
    ours, reference, batch = pretraining_pair
    with torch.no_grad():
        out = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ref = reference(**batch)
    mlm = defs_04["mlm_loss"](out.prediction_logits, batch["labels"])
    nsp = defs_04["nsp_loss"](out.seq_relationship_logits, batch["next_sentence_label"])
    assert_close("04 MLM + NSP vs transformers loss", mlm + nsp, ref.loss, 1e-5)
    # and each part against torch's cross-entropy on the reference's own logits
    reference_mlm = F.cross_entropy(ref.prediction_logits.flatten(0, 1), batch["labels"].flatten())
    assert_close("04 MLM vs cross_entropy(ignore -100)", mlm, reference_mlm, 1e-5)
    reference_nsp = F.cross_entropy(ref.seq_relationship_logits, batch["next_sentence_label"])
    assert_close("04 NSP vs cross_entropy", nsp, reference_nsp, 1e-5)
    # at initialisation: about ln |V| and ln 2
    assert abs(mlm.item() - math.log(len(tok))) < 0.1
    assert abs(nsp.item() - math.log(2)) < 0.05


def test_04_mlm_loss_averages_over_masked_positions_only(defs_04):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 3], labels[1, 4] = 7, 2, 10
    by_position = [-torch.log_softmax(logits[b, i], -1)[labels[b, i]]
                   for b, i in ((0, 1), (1, 3), (1, 4))]
    expected = torch.stack(by_position).mean()  # 1/|M| over the whole batch, |M| = 3
    assert torch.allclose(defs_04["mlm_loss"](logits, labels), expected, atol=1e-6)
    # changing the logits of an unmasked position does not change the loss
    changed = logits.clone()
    changed[0, 0] += 100
    assert torch.allclose(defs_04["mlm_loss"](changed, labels), expected, atol=1e-6)
