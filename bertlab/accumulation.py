"""The loss of one optimizer step over several batches: accumulated, or split over processes.

A step of ``train`` may see its batch in pieces: ``grad_accum_steps`` batches one after the
other, each of them cut into one shard per process under ``torchrun``. The gradient it should
take is the gradient of the mean loss of the whole step. A model's loss is a mean over what its
labels count (masked tokens for MLM, sentence pairs for NSP, examples or tokens for a
classifier), and pieces hold different numbers of them: with 30% of the tokens masked at random,
one piece may hold 282 masked tokens and the next 298. Dividing each piece's mean by the number
of pieces would give a token of a sparsely masked piece more weight than one of a dense piece.
Instead each part of a piece's loss is weighted by its count over the step's count::

    L = sum over pieces i of  (m_i / M) * L_mlm_i + (n_i / N) * L_nsp_i

which is the whole step's mean, term for term (notebook 11 checks it in float64). ``counts``
reads what each piece counts (on the host, before the step's first backward pass; their sum,
over the processes too, is the step's total); ``share`` weighs one piece's loss.
"""

from __future__ import annotations

import torch

__all__ = ["counts", "share"]

#: what each part of a loss is a mean over: the batch entry its count comes from
KINDS = ("labels", "next_sentence_label", "examples")


def counts(batch: dict) -> torch.Tensor:
    """What one batch counts, by kind (``KINDS``): labelled positions, NSP labels, examples.
    A float64 tensor on the host, so that the weights are exact even for a float64 model."""
    examples = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
    return torch.tensor([_count(batch.get("labels"), examples),
                         _count(batch.get("next_sentence_label"), examples),
                         examples], dtype=torch.float64)


def share(output, batch: dict, batch_counts: torch.Tensor, step_totals: torch.Tensor) -> torch.Tensor:
    """This piece's share of the step's mean loss: the shares of all pieces add up to it.

    ``batch_counts`` is ``counts(batch)``, ``step_totals`` their sum over the step (both on the
    host). A model whose loss has several parts with their own counts must return them
    (``masked_lm_loss`` and ``next_sentence_loss``, as bertlab's ``BertForPreTraining`` does);
    otherwise ``loss`` counts as a mean over the labels (or the examples, without labels).
    """
    weighted = None
    for loss, kind in _loss_parts(output, batch):
        i = KINDS.index(kind)
        count, total = float(batch_counts[i]), float(step_totals[i])
        if count == 0:  # a piece without a single masked token has a NaN mean: it adds nothing
            continue
        part = loss.to(torch.promote_types(loss.dtype, torch.float32)) * (count / total)
        weighted = part if weighted is None else weighted + part
    if weighted is None:  # nothing in this piece counts: a zero that still has a graph
        weighted = output.loss.float().nan_to_num() * 0.0
    return weighted


def _loss_parts(output, batch: dict) -> list[tuple[torch.Tensor, str]]:
    """(mean loss, the kind it is a mean over) for each part of a model's loss."""
    mlm = getattr(output, "masked_lm_loss", None)
    nsp = getattr(output, "next_sentence_loss", None)
    if mlm is not None or nsp is not None:
        parts = [(mlm, "labels")] if mlm is not None else []
        return parts + ([(nsp, "next_sentence_label")] if nsp is not None else [])
    return [(output.loss, "labels" if isinstance(batch.get("labels"), torch.Tensor) else "examples")]


def _count(labels, examples: int) -> int:
    """Labels that count in a mean loss: all but the ignored ones (-100)."""
    if not isinstance(labels, torch.Tensor):
        return 0
    if labels.is_floating_point():  # regression targets: a mean over the examples
        return examples
    return int((labels != -100).sum())
