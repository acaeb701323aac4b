"""What the models return: small dataclasses read by name or by position, as in ``transformers``.

``out.loss`` and ``out["loss"]`` both work, and so does ``loss, logits = out.to_tuple()[:2]``,
so code written for a Hugging Face model's output reads a bertlab model's unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["BertForPreTrainingOutput", "BertModelOutput", "ModelOutput", "PredictionOutput"]

class ModelOutput:
    """Base of the output dataclasses: read fields by name (``out.loss``, ``out["loss"]``) or,
    as in ``transformers``, by position over the fields that are set (``out[0]``)."""

    def to_tuple(self) -> tuple[Any, ...]:
        values = (getattr(self, field.name) for field in dataclasses.fields(self))
        return tuple(value for value in values if value is not None)

    def __getitem__(self, key: str | int | slice) -> Any:
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]


@dataclass
class BertModelOutput(ModelOutput):
    """``last_hidden_state`` (batch, seq, hidden); ``pooler_output`` (batch, hidden) or None;
    ``hidden_states``: the embeddings and each layer's output (num_layers + 1 tensors), and
    ``attentions``: each layer's probabilities (batch, heads, seq, seq), when requested."""

    last_hidden_state: Tensor
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class BertForPreTrainingOutput(ModelOutput):
    """``loss`` = ``masked_lm_loss`` + ``next_sentence_loss`` (each present when its labels
    were given); ``prediction_logits`` (batch, seq, vocab), or (n_masked, vocab) with
    ``masked_only=True``; ``seq_relationship_logits`` (batch, 2)."""

    loss: Tensor | None = None
    prediction_logits: Tensor | None = None
    seq_relationship_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    masked_lm_loss: Tensor | None = None
    next_sentence_loss: Tensor | None = None


@dataclass
class PredictionOutput(ModelOutput):
    """What the masked-LM and classification heads return: ``loss`` (when labels are given)
    and ``logits`` (batch, classes), (batch, seq, classes) or (batch, seq, vocab)."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    """What ``BertForQuestionAnswering`` returns: ``loss`` (when positions are given) and one
    score per token for the answer's start and for its end, each (batch, seq)."""

    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
