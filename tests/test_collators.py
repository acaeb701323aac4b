"""Collators: BERT's 80/10/10 masking, whole words, seeding, padding."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.data import DataLoader

from bertlab.checks import IGNORE_INDEX
from bertlab.data.collators import (
    MLMCollator,
    PaddingCollator,
    TextClassificationCollator,
    mask_tokens,
    pad_sequences,
)
from bertlab.data.sentiment import load_sentiment
from bertlab.tokenizer import load_minilm_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_minilm_tokenizer()


@pytest.fixture(scope="module")
def reviews():
    return load_sentiment("rotten_tomatoes")["train"]


@pytest.fixture(scope="module")
def examples(tok, reviews):
    """Tokenized review pairs (as NSP would make them): ~10k examples, ~300k real tokens."""
    texts = reviews["text"]
    enc = tok(texts[0:-1:2], texts[1::2], truncation=True, max_length=128)
    return [{"input_ids": ids, "token_type_ids": types, "next_sentence_label": i % 2}
            for i, (ids, types) in enumerate(zip(enc["input_ids"], enc["token_type_ids"], strict=True))]


def mask_statistics(collator, examples, tok, batch_size=64):
    """Count, over all examples, what the collator did to each real token."""
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    counts = dict.fromkeys(["candidates", "chosen", "mask", "random", "kept", "bad"], 0)
    for start in range(0, len(examples), batch_size):
        features = examples[start : start + batch_size]
        batch = collator(features)
        original = pad_sequences([f["input_ids"] for f in features], tok.pad_token_id)
        real = batch["attention_mask"].bool()
        candidate = real & ~torch.isin(original, special)
        chosen = batch["labels"] != IGNORE_INDEX
        ids = batch["input_ids"]
        counts["candidates"] += int(candidate.sum())
        counts["chosen"] += int(chosen.sum())
        counts["mask"] += int((chosen & (ids == tok.mask_token_id)).sum())
        counts["random"] += int((chosen & (ids != tok.mask_token_id) & (ids != original)).sum())
        counts["kept"] += int((chosen & (ids == original)).sum())
        # never a special or pad token chosen; labels hold the original ids
        counts["bad"] += int((chosen & ~candidate).sum())
        assert torch.equal(batch["labels"][chosen], original[chosen])
        # outside the chosen positions nothing changes; a random pick is never special
        assert torch.equal(ids[~chosen], original[~chosen])
        assert not torch.isin(ids[chosen & (ids != tok.mask_token_id)], special).any()
    return counts


@pytest.mark.parametrize("probability", [0.15, 0.4])
def test_masking_fractions(tok, examples, probability):
    counts = mask_statistics(MLMCollator(tok, mlm_probability=probability, seed=0), examples, tok)
    chosen = counts["chosen"]
    shares = {k: counts[k] / chosen for k in ("mask", "random", "kept")}
    print(f"\np={probability}: {counts['candidates']} real tokens, chosen "
          f"{chosen / counts['candidates']:.4f}; [MASK] {shares['mask']:.4f}, random "
          f"{shares['random']:.4f}, unchanged {shares['kept']:.4f}")
    assert counts["candidates"] >= 100_000
    assert counts["bad"] == 0
    assert abs(chosen / counts["candidates"] - probability) <= 0.01
    assert abs(shares["mask"] - 0.8) <= 0.01
    assert abs(shares["random"] - 0.1) <= 0.01
    assert abs(shares["kept"] - 0.1) <= 0.01


def test_whole_word_masking_chooses_whole_words(tok, examples):
    collator = MLMCollator(tok, whole_word_masking=True, seed=0)
    continuation = torch.tensor([t.startswith("##") for t in
                                 tok.convert_ids_to_tokens(list(range(len(tok))))])
    words = pieces_in_words = 0
    chosen_total = candidates = 0
    for start in range(0, 4000, 64):
        features = examples[start : start + 64]
        batch = collator(features)
        original = pad_sequences([f["input_ids"] for f in features], tok.pad_token_id)
        chosen = batch["labels"] != IGNORE_INDEX
        cont = continuation[original] & batch["attention_mask"].bool()
        # a continuation piece is chosen exactly when the piece before it is
        assert torch.equal(chosen[:, 1:][cont[:, 1:]], chosen[:, :-1][cont[:, 1:]])
        pieces_in_words += int((chosen[:, 1:] & cont[:, 1:]).sum())
        words += int((chosen & ~cont).sum())
        chosen_total += int(chosen.sum())
        candidates += int((batch["attention_mask"].bool() &
                           ~torch.isin(original, torch.tensor(tok.all_special_ids))).sum())
    print(f"\nwhole words: {words} words, {pieces_in_words} continuation pieces chosen, "
          f"share {chosen_total / candidates:.4f}")
    assert pieces_in_words > 100
    assert abs(chosen_total / candidates - 0.15) <= 0.01


def test_masks_are_fresh_each_batch_and_seeded_runs_repeat(tok, examples):
    batch = examples[:32]
    dynamic = MLMCollator(tok)
    assert not torch.equal(dynamic(batch)["labels"], dynamic(batch)["labels"])

    a, b = MLMCollator(tok, seed=7), MLMCollator(tok, seed=7)
    first = [a(batch) for _ in range(3)]
    second = [b(batch) for _ in range(3)]
    for x, y in zip(first, second, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(first[0]["labels"], first[1]["labels"]), "a new mask per batch"
    assert not torch.equal(MLMCollator(tok, seed=8)(batch)["labels"], first[0]["labels"])


def test_dataloader_workers_draw_different_masks(tok, examples):
    same = [examples[0]] * 32  # every batch holds the same examples
    collator = MLMCollator(tok, seed=0)
    torch.manual_seed(0)
    loader = DataLoader(same, batch_size=8, num_workers=2, collate_fn=collator)
    batches = [b["labels"] for b in loader]  # batches alternate between the two workers
    assert not torch.equal(batches[0], batches[1])
    torch.manual_seed(0)
    again = [b["labels"] for b in DataLoader(same, batch_size=8, num_workers=2,
                                             collate_fn=collator)]
    assert all(torch.equal(x, y) for x, y in zip(batches, again, strict=True)), "reproducible"


def test_dynamic_padding_and_outputs(tok, examples):
    features = [examples[i] for i in (0, 1, 2)]
    lengths = [len(f["input_ids"]) for f in features]
    batch = MLMCollator(tok, seed=0)(features)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels",
                          "next_sentence_label"}
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    pad = ~batch["attention_mask"].bool()
    assert (batch["input_ids"][pad] == tok.pad_token_id).all()
    assert (batch["labels"][pad] == IGNORE_INDEX).all()
    assert (batch["token_type_ids"][pad] == 0).all()
    assert batch["next_sentence_label"].tolist() == [0, 1, 0]
    assert all(v.dtype == torch.long for v in batch.values())
    rounded = MLMCollator(tok, seed=0, pad_to_multiple_of=8)(features)
    assert rounded["input_ids"].shape[1] % 8 == 0


def test_mlm_batch_works_with_transformers_bert(tok, examples):
    from transformers import BertConfig, BertForPreTraining

    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = BertForPreTraining(config).eval()
    batch = MLMCollator(tok, seed=0)(examples[:8])
    with torch.no_grad():
        out = model(**batch)
    chosen = batch["labels"] != IGNORE_INDEX
    mlm = torch.nn.functional.cross_entropy(out.prediction_logits[chosen],
                                            batch["labels"][chosen])
    nsp = torch.nn.functional.cross_entropy(out.seq_relationship_logits,
                                            batch["next_sentence_label"])
    assert torch.allclose(out.loss, mlm + nsp, atol=1e-5)


def test_collation_speed(tok, examples):
    collator = MLMCollator(tok, seed=0)
    batches = [examples[i : i + 32] for i in range(0, 3200, 32)]
    start = time.perf_counter()
    for features in batches:
        collator(features)
    ms = (time.perf_counter() - start) / len(batches) * 1000
    print(f"\nMLMCollator: {ms:.2f} ms per batch of 32")
    assert ms < 100  # generous: a shared 2-core machine; typically 1-3 ms


def test_mask_tokens_rejects_bad_probabilities(tok):
    ids = torch.tensor([[5, 6, 7]])
    ok = torch.ones_like(ids, dtype=torch.bool)
    common = {"mask_token_id": 103, "random_token_ids": torch.arange(200, 300)}
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(ids, ok, mlm_probability=1.5, **common)
    with pytest.raises(ValueError, match="sum to at most 1"):
        mask_tokens(ids, ok, mask_replace_prob=0.9, random_replace_prob=0.2, **common)
    with pytest.raises(ValueError, match="sum to at most 1"):
        MLMCollator(tok, mask_replace_prob=0.95, random_replace_prob=0.1)
    with pytest.raises(ValueError, match="another tokenizer"):
        MLMCollator(tok)([{"input_ids": [101, 99999, 102]}])


def test_padding_collator(tok):
    features = [{"input_ids": [101, 7, 8, 102], "label": 1},
                {"input_ids": [101, 9, 102], "label": 0}]
    batch = PaddingCollator(tok)(features)
    assert batch["input_ids"].tolist() == [[101, 7, 8, 102], [101, 9, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["token_type_ids"].tolist() == [[0] * 4] * 2
    assert batch["labels"].tolist() == [1, 0]
    with pytest.raises(KeyError, match="TextClassificationCollator"):
        PaddingCollator(tok)([{"text": "raw"}])
    with pytest.raises(ValueError, match="pad_token_id"):
        PaddingCollator()


def test_text_classification_collator(tok, reviews):
    features = [reviews[i] for i in range(5)]
    batch = TextClassificationCollator(tok, max_length=16)(features)
    assert batch["input_ids"].shape[0] == 5 and batch["input_ids"].shape[1] <= 16
    assert batch["labels"].tolist() == [f["label"] for f in features]
    longest = max(len(tok(f["text"])["input_ids"]) for f in features)
    assert batch["input_ids"].shape[1] == min(longest, 16)

