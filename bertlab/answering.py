"""Extractive question answering: the answer is a span of the paragraph, or nothing.

BERT reads the question as segment A and the paragraph as segment B. ``BertForQuestionAnswering``
scores every token as the answer's start and as its end; the answer is the span with the best
sum, and ``[CLS]`` stands for "the paragraph does not say" (SQuAD 2.0). A paragraph too long for
one window is cut into several windows that overlap by ``stride`` tokens, so that every answer lies
whole inside at least one of them::

    windows = question_windows(tokenizer, questions, contexts, answers=answers)  # to train on
    found = answer_questions(model, tokenizer, questions, contexts)             # Answer per question
    squad_scores([a.text for a in found], answers)                               # exact match, F1

The scores follow the official SQuAD 2.0 evaluation script: answers are compared after
lower-casing and removing punctuation, the articles a/an/the and extra spaces; F1 counts the
words two answers share; a question with no answer scores 1 only when the prediction is empty.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

PUNCTUATION = frozenset(string.punctuation)

__all__ = ["Answer", "answer_f1", "answer_questions", "best_answers", "exact_match",
           "normalize_answer", "question_windows", "squad_interval", "squad_scores"]


class Answer(NamedTuple):
    text: str  # "" when the model says the paragraph does not answer the question
    start: int  # character offset in the paragraph; -1 for no answer
    score: float  # the best span's start + end logit
    null_score: float  # the [CLS] start + end logit (the lowest over the question's windows)


def question_windows(tokenizer, questions: Sequence[str], contexts: Sequence[str], *,
                     answers: Sequence[dict] | None = None, max_length: int = 192,
                     stride: int = 64) -> dict[str, list]:
    """(question, paragraph) pairs as windows of at most ``max_length`` tokens.

    ``[CLS] question [SEP] part of the paragraph [SEP]``, with ``token_type_ids`` 0 on the
    question and 1 on the paragraph. A paragraph that does not fit is cut into several windows;
    consecutive windows share ``stride`` tokens.

    Returns columns (one entry per window): ``input_ids``, ``token_type_ids``,
    ``attention_mask``, ``example`` (the index of the window's question) and ``offsets`` (each
    token's ``(start, end)`` characters in the paragraph, None outside it). With ``answers``
    (SQuAD's ``{"text": [...], "answer_start": [...]}``, the first answer is used) also
    ``start_positions`` and ``end_positions``: the answer's first and last token in the window,
    or 0 and 0 (``[CLS]``) when the window does not hold the whole answer or there is none.
    """
    if len(questions) != len(contexts) or (answers is not None and len(answers) != len(questions)):
        raise ValueError(f"{len(questions)} questions, {len(contexts)} paragraphs"
                         + ("" if answers is None else f" and {len(answers)} answers")
                         + ": give one of each per question.")
    longest_question = max((len(tokenizer(q, add_special_tokens=False)["input_ids"])
                            for q in questions), default=0)
    room = max_length - longest_question - 3  # [CLS] and two [SEP]
    if room < 1:
        raise ValueError(f"A question of {longest_question} tokens leaves no room for the "
                         f"paragraph in max_length={max_length}: raise max_length.")
    if not 0 <= stride < room:
        raise ValueError(f"stride={stride} must be smaller than the room a window leaves for the "
                         f"paragraph ({room} tokens with max_length={max_length} and the "
                         "longest question): consecutive windows share `stride` tokens, so the "
                         "window would never move on. Lower stride or raise max_length.")
    encoding = tokenizer(list(questions), list(contexts), truncation="only_second",
                         max_length=max_length, stride=stride, return_overflowing_tokens=True,
                         return_offsets_mapping=True)
    windows = {key: encoding[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
    windows["example"] = list(encoding["overflow_to_sample_mapping"])
    windows["offsets"] = [
        [offset if segment == 1 else None
         for offset, segment in zip(encoding["offset_mapping"][w], encoding.sequence_ids(w), strict=True)]
        for w in range(len(windows["example"]))
    ]
    if answers is not None:
        spans = [_answer_span(answer, contexts[i], i) for i, answer in enumerate(answers)]
        positions = [_token_span(offsets, spans[example])
                     for offsets, example in zip(windows["offsets"], windows["example"], strict=True)]
        windows["start_positions"] = [start for start, _ in positions]
        windows["end_positions"] = [end for _, end in positions]
    return windows


def _answer_span(answer: dict, context: str, number: int) -> tuple[int, int] | None:
    """The first answer's (start, end) characters, checked against its paragraph; None if none."""
    if not answer["text"]:
        return None
    text, start = answer["text"][0], answer["answer_start"][0]
    if not 0 <= start <= len(context) - len(text) or context[start:start + len(text)] != text:
        raise ValueError(f"Question {number}: the answer {text!r} is not at character {start} of "
                         f"its paragraph (which reads {context[start:start + len(text)]!r} there). "
                         "An answer must be an exact span of its paragraph: fix answer_start.")
    return start, start + len(text)


def _token_span(offsets: Sequence, span: tuple[int, int] | None) -> tuple[int, int]:
    """The window's first and last token of the character span, or (0, 0) if not all inside."""
    inside = [i for i, offset in enumerate(offsets) if offset is not None]
    if span is None or offsets[inside[0]][0] > span[0] or offsets[inside[-1]][1] < span[1]:
        return 0, 0
    first = next(i for i in inside if offsets[i][1] > span[0])
    last = next(i for i in reversed(inside) if offsets[i][0] < span[1])
    return first, last


def best_answers(start_logits: Sequence, end_logits: Sequence, windows: dict, contexts: Sequence[str],
                 *, max_answer_tokens: int = 30, null_threshold: float = 0.0) -> list[Answer]:
    """The best answer to each question from its windows' start and end scores.

    In each window, a span runs from a paragraph token ``i`` to a paragraph token ``j >= i``, at
    most ``max_answer_tokens`` long, and scores ``start[i] + end[j]``; the best span over all of
    a question's windows is the answer, unless the "no answer" score (``start[0] + end[0]`` on
    ``[CLS]``, the lowest over the windows, as in BERT's SQuAD 2.0 code) beats it by more than
    ``null_threshold``.
    """
    if max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens={max_answer_tokens}: an answer needs at least 1 token.")
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for start, end, offsets, example in zip(start_logits, end_logits, windows["offsets"],
                                            windows["example"], strict=True):
        start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
        null[example] = min(null.get(example, np.inf), start[0] + end[0])
        inside = np.array([i for i, offset in enumerate(offsets) if offset is not None])
        if inside.size == 0:
            continue
        scores = start[inside][:, None] + end[inside][None, :]  # [first, last]
        gap = inside[None, :] - inside[:, None]
        scores[(gap < 0) | (gap >= max_answer_tokens)] = -np.inf
        first, last = np.unravel_index(np.argmax(scores), scores.shape)
        if example not in best or scores[first, last] > best[example][0]:
            best[example] = (float(scores[first, last]), offsets[inside[first]][0],
                             offsets[inside[last]][1])
    answers = []
    for example, context in enumerate(contexts):
        if example not in null:
            raise ValueError(f"Question {example} has no window: pass the windows made for "
                             "these questions and paragraphs.")
        score, first, last = best.get(example, (-np.inf, -1, -1))
        if null[example] - score > null_threshold:
            answers.append(Answer("", -1, score, float(null[example])))
        else:
            answers.append(Answer(context[first:last], first, score, float(null[example])))
    return answers


@torch.no_grad()
def answer_questions(model, tokenizer, questions: Sequence[str], contexts: Sequence[str], *,
                     max_length: int = 192, stride: int = 64, batch_size: int = 32,
                     max_answer_tokens: int = 30, null_threshold: float = 0.0) -> list[Answer]:
    """Run a question-answering model over every window and decode one :class:`Answer` per question."""
    windows = question_windows(tokenizer, questions, contexts, max_length=max_length, stride=stride)
    device = next(model.parameters()).device
    model.eval()
    starts, ends = [], []
    keys = ("input_ids", "token_type_ids", "attention_mask")
    for first in range(0, len(windows["example"]), batch_size):
        batch = tokenizer.pad({key: windows[key][first:first + batch_size] for key in keys},
                              return_tensors="pt")
        out = model(**{key: batch[key].to(device) for key in keys})
        starts += list(out.start_logits.float().cpu().numpy())
        ends += list(out.end_logits.float().cpu().numpy())
    return best_answers(starts, ends, windows, contexts, max_answer_tokens=max_answer_tokens,
                        null_threshold=null_threshold)


# -- the scores: SQuAD 2.0's exact match and F1 -----------------------------------------------


def normalize_answer(text: str) -> str:
    """Lower-case; drop punctuation, the articles a, an and the, and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(prediction: str, truths: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals one of the normalised true answers, else 0.0."""
    return max(float(normalize_answer(prediction) == normalize_answer(t)) for t in _truths(truths))


def answer_f1(prediction: str, truths: Sequence[str]) -> float:
    """The best F1 of shared words between the prediction and any true answer.

    An empty answer ("no answer") scores 1 against an empty one and 0 against anything else.
    """
    def f1(truth: str) -> float:
        guess, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
        if not guess or not gold:
            return float(guess == gold)
        shared = sum((Counter(guess) & Counter(gold)).values())
        if shared == 0:
            return 0.0
        precision, recall = shared / len(guess), shared / len(gold)
        return 2 * precision * recall / (precision + recall)

    return max(f1(t) for t in _truths(truths))


def _truths(truths) -> list[str]:
    """The true answers as texts; [""] when there is none (also from a SQuAD answers dict)."""
    if isinstance(truths, dict):
        truths = truths["text"]
    if isinstance(truths, str):
        raise TypeError("Pass the true answers as a list of strings (or a SQuAD answers dict), "
                        "not one string.")
    kept = [t for t in truths if normalize_answer(t)]  # as the official script: blank = none
    return kept or [""]


def _per_question(predictions: Sequence[str], answers: Sequence) -> np.ndarray:
    """(questions, 3): exact match, F1 and whether the question has an answer."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} questions.")
    return np.array([(exact_match(p, a), answer_f1(p, a), _truths(a) != [""])
                     for p, a in zip(predictions, answers, strict=True)], dtype=float)


def squad_scores(predictions: Sequence[str], answers: Sequence) -> dict[str, float]:
    """Exact match and F1 (fractions), over all questions and over those with and without answers.

    ``answers``: per question, SQuAD's answers dict or a list of true texts (empty: no answer).
    """
    rows = _per_question(predictions, answers)
    has = rows[:, 2] == 1
    scores = {"exact": rows[:, 0].mean(), "f1": rows[:, 1].mean(), "questions": len(rows)}
    for name, part in (("has_answer", has), ("no_answer", ~has)):
        scores[f"{name}_exact"] = rows[part, 0].mean() if part.any() else float("nan")
        scores[f"{name}_f1"] = rows[part, 1].mean() if part.any() else float("nan")
        scores[f"{name}_questions"] = int(part.sum())
    return {name: float(value) for name, value in scores.items()}


def squad_interval(predictions: Sequence[str], answers: Sequence, *, metric: str = "f1",
                   n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """``(score, low, high)``: exact match (``metric="exact"``) or F1 with a bootstrap interval
    over questions, as fractions."""
    from bertlab.metrics import _interval, bootstrap_indices

    if metric not in ("exact", "f1"):
        raise ValueError(f"metric={metric!r}: use 'exact' or 'f1'.")
    column = _per_question(predictions, answers)[:, 0 if metric == "exact" else 1]
    samples = column[bootstrap_indices(len(column), n_resamples, seed)].mean(axis=1)
    return (float(column.mean()), *_interval(samples, confidence))  # the course's one bootstrap
