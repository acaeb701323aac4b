"""Token classification: BIO tags, word labels aligned to WordPieces, entities and their scores.

A tagger labels words (``B-PER``: the first word of a person's name, ``I-PER``: a following word,
``O``: outside any name), but BERT sees WordPieces. ``align_labels`` gives each word's label to
its first piece and ``IGNORE_INDEX`` (-100, which ``nn.CrossEntropyLoss`` skips) to the other
pieces and to ``[CLS]``/``[SEP]``/padding; ``word_predictions`` reads the predictions back at the
same first pieces. ``entity_spans`` turns tags into entities and ``entity_scores`` counts them
the way CoNLL's ``conlleval`` (and ``seqeval``'s default mode) does: an entity is right only
when its words and its type are both right.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bertlab.metrics import LossMetrics

__all__ = ["IGNORE_INDEX", "TaggingMetrics", "align_labels", "entity_f1_interval", "entity_scores",
           "entity_spans", "predict_tags", "word_predictions"]

IGNORE_INDEX = -100  # nn.CrossEntropyLoss(ignore_index=-100) leaves these positions out


def _split(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(f"Tag {tag!r} is not BIO: use 'O', or 'B-' / 'I-' and a type "
                         "(e.g. 'B-PER').")
    return prefix, kind


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one tagged sentence, as ``(type, first word, end)`` with ``end`` exclusive.

    As in conlleval: ``B-X`` starts an entity; ``I-X`` continues one of type X, and starts a new
    one after ``O`` or after another type (a tagger's slip that is still read as a name).
    """
    spans, start, kind = [], None, None
    for i, tag in enumerate(tags):
        prefix, tag_kind = _split(tag)
        continues = prefix == "I" and tag_kind == kind
        if start is not None and not continues:
            spans.append((kind, start, i))
            start, kind = None, None
        if prefix != "O" and not continues:
            start, kind = i, tag_kind
    if start is not None:
        spans.append((kind, start, len(tags)))
    return spans


def _span_sets(true_tags, predicted_tags):
    """(true entities, predicted entities) of each sentence, after checking the two line up."""
    if len(true_tags) != len(predicted_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(predicted_tags)} predicted.")
    for number, (truth, guess) in enumerate(zip(true_tags, predicted_tags, strict=True)):
        if len(truth) != len(guess):
            raise ValueError(f"Sentence {number}: {len(truth)} true tags but {len(guess)} "
                             "predicted; predict one tag per word (see word_predictions).")
        yield set(entity_spans(truth)), set(entity_spans(guess))


def entity_scores(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]):
    """Entity-level precision, recall and F1, per type and over all entities (micro average).

    Returns a ``pandas.DataFrame`` with one row per type and an ``all`` row; columns
    ``precision``, ``recall``, ``f1`` (fractions) and ``support`` (true entities).
    """
    import pandas as pd

    counts: dict[str, list[int]] = {}  # type -> [true, predicted, correct]
    for true_spans, guessed_spans in _span_sets(true_tags, predicted_tags):
        for spans, column in ((true_spans, 0), (guessed_spans, 1), (true_spans & guessed_spans, 2)):
            for kind, _, _ in spans:
                counts.setdefault(kind, [0, 0, 0])[column] += 1
    rows = {kind: counts[kind] for kind in sorted(counts)}
    rows["all"] = [sum(c[i] for c in counts.values()) for i in range(3)]

    def scores(true, predicted, correct):
        precision = correct / predicted if predicted else 0.0
        recall = correct / true if true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": true}

    return pd.DataFrame({kind: scores(*c) for kind, c in rows.items()}).T.astype(
        {"support": int})


def entity_f1_interval(true_tags, predicted_tags, *, n_resamples: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float, float]:
    """Entity F1 with a bootstrap interval over sentences: ``(f1, low, high)``, as fractions.

    Sentences are resampled with replacement (``bertlab.metrics.bootstrap_indices``); each
    resample's F1 comes from its summed true, predicted and correct entity counts.
    """
    import numpy as np

    from bertlab.metrics import bootstrap_indices

    counts = np.array([(len(t), len(p), len(t & p)) for t, p in _span_sets(true_tags, predicted_tags)],
                      dtype=float)

    def f1(rows):
        true, predicted, correct = rows.sum(axis=-2).T
        return np.where(true + predicted > 0, 2 * correct / np.maximum(true + predicted, 1), 0.0)

    samples = f1(counts[bootstrap_indices(len(counts), n_resamples, seed)])
    tail = (1 - confidence) / 2
    return float(f1(counts)), float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))


@torch.no_grad()
def predict_tags(model, tokenizer, sentences: Sequence[Sequence[str]], *, batch_size: int = 64,
                 max_length: int = 128) -> list[list[str]]:
    """One tag per word for sentences given as lists of words, read at each word's first piece.

    The tag names come from ``model.config.id2label``. A sentence longer than ``max_length``
    pieces is an error (its last words would get no tag): raise ``max_length`` or split it.
    """
    names = model.config.id2label
    device = next(model.parameters()).device
    model.eval()
    tags = []
    for start in range(0, len(sentences), batch_size):
        chunk = [list(words) for words in sentences[start:start + batch_size]]
        batch = tokenizer(chunk, is_split_into_words=True, padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        word_ids = [batch.word_ids(i) for i in range(len(chunk))]
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        for i, (words, ids) in enumerate(zip(chunk, word_ids, strict=True)):
            guesses = word_predictions(ids, logits[i].argmax(-1).tolist())
            if len(guesses) != len(words):
                raise ValueError(f"Sentence {start + i} has more than max_length={max_length} "
                                 "pieces: raise max_length or split the sentence.")
            tags.append([names[g] for g in guesses])
    return tags


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Labels per WordPiece: each word's label on its first piece, ``IGNORE_INDEX`` elsewhere.

    Args:
        word_ids: the tokenizer's ``word_ids()`` for one sequence (``None`` for special tokens
            and padding), from a call with ``is_split_into_words=True``.
        word_labels: one label id per word.
    """
    words = {w for w in word_ids if w is not None}
    if words and max(words) >= len(word_labels):
        raise ValueError(f"The tokenizer saw {max(words) + 1} words but there are "
                         f"{len(word_labels)} labels: give one label per word, and tokenize the "
                         "words with is_split_into_words=True.")
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def word_predictions(word_ids: Sequence[int | None], piece_predictions: Sequence) -> list:
    """One prediction per word: the one made at the word's first piece (as ``align_labels``).

    Words cut off by truncation get no prediction, so the result can be shorter than the
    sentence; ``entity_scores`` then names the sentence.
    """
    if len(word_ids) != len(piece_predictions):
        raise ValueError(f"{len(word_ids)} word ids but {len(piece_predictions)} predictions.")
    result, previous = [], None
    for word, prediction in zip(word_ids, piece_predictions, strict=True):
        if word is not None and word != previous:
            result.append(prediction)
        previous = word
    return result


class TaggingMetrics(LossMetrics):
    """Entity-level precision, recall and F1 of a token classifier, for ``train(eval_metrics=)``.

    ``train(..., eval_metrics=lambda: TaggingMetrics(label_names), metric="entity_f1")`` keeps
    the checkpoint with the best validation F1. Only the positions with a label (each word's
    first piece) count, as in ``align_labels``.
    """

    def __init__(self, label_names: Sequence[str]) -> None:
        super().__init__()
        self.label_names = list(label_names)
        self.true: list[list[str]] = []
        self.predicted: list[list[str]] = []

    @torch.no_grad()
    def update(self, batch: dict, output) -> None:
        super().update(batch, output)
        predictions = output.logits.argmax(-1).cpu()
        for labels, guesses in zip(batch["labels"].cpu(), predictions, strict=True):
            keep = labels != IGNORE_INDEX
            self.true.append([self.label_names[i] for i in labels[keep].tolist()])
            self.predicted.append([self.label_names[i] for i in guesses[keep].tolist()])

    def compute(self) -> dict[str, float]:
        result = super().compute()
        if self.true:
            scores = entity_scores(self.true, self.predicted).loc["all"]
            result |= {f"entity_{k}": float(scores[k]) for k in ("precision", "recall", "f1")}
        return result
