"""Tiny models, a word-level tokenizer and made-up examples, shared by the tests of the training
engine's parts (training, evaluation, optimization, batching): a few steps run in seconds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from bertlab import BertConfig
from bertlab.heads import BertForPreTraining, BertForSequenceClassification

WORDS = [f"w{i}" for i in range(59)]
VOCAB = 5 + len(WORDS)  # [PAD] [UNK] [CLS] [SEP] [MASK] + words


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy machine every parallel
    op waits for it: one thread keeps these files fast and their timings steady.
    (A module uses it by importing it: ``from tiny import one_thread  # noqa: F401``.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> BertConfig:
    values = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=32)
    return BertConfig(**{**values, **overrides})


def word_tokenizer(folder: Path):
    """A BERT tokenizer whose vocabulary is the specials and the words w0 ... w58."""
    import transformers

    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                 *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))
    assert len(tokenizer) == VOCAB
    return tokenizer


def pretraining_examples(n: int, seed: int = 1) -> list[dict]:
    """[CLS] A [SEP] B [SEP] pairs of random words, of varied lengths."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a = [rng.randrange(5, VOCAB) for _ in range(rng.randint(3, 10))]
        b = [rng.randrange(5, VOCAB) for _ in range(rng.randint(3, 10))]
        examples.append({
            "input_ids": [2, *a, 3, *b, 3],
            "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
            "next_sentence_label": rng.randint(0, 1),
        })
    return examples


def pretraining_model() -> BertForPreTraining:
    torch.manual_seed(0)
    return BertForPreTraining(tiny())


def classification_examples(n: int, seed: int = 0) -> list[dict]:
    """Label 1 when token 7 occurs: learnable by a tiny model in a few steps."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        ids = [rng.randrange(8, VOCAB) for _ in range(rng.randint(4, 12))]
        if i % 2:
            ids[rng.randrange(len(ids))] = 7
        examples.append({"input_ids": [2, *ids, 3], "label": i % 2})
    return examples


def classifier(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny(**overrides))
