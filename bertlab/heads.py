"""The task heads: what BERT's encoder (``bertlab.model.BertModel``) is trained and used for.

* ``BertForPreTraining``: the masked language model and next-sentence prediction of notebook 04,
  trained in notebook 05;
* ``BertForMaskedLM``: the masked language model alone (fill-mask);
* ``BertForSequenceClassification``: one label per sequence from the pooled ``[CLS]`` vector
  (sentiment, notebook 06);
* ``BertForTokenClassification``: one label per token (named entities, notebook 08);
* ``BertForQuestionAnswering``: a start and an end score per token, for an answer that is a span
  of the paragraph (extractive question answering, notebook 09).

Module and parameter names are those of Hugging Face ``transformers``, as in ``bertlab.model``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertlab.checks import (
    IGNORE_INDEX,
    check_labels,
    check_regression_targets,
    check_span_positions,
)
from bertlab.config import BertConfig
from bertlab.model import ACT2FN, BertModel, BertPreTrainedModel
from bertlab.outputs import BertForPreTrainingOutput, PredictionOutput, QuestionAnsweringOutput

__all__ = ["BertForMaskedLM", "BertForPreTraining", "BertForQuestionAnswering",
           "BertForSequenceClassification", "BertForTokenClassification"]


# -- the masked-language-model head ----------------------------------------------------------


class BertPredictionHeadTransform(nn.Module):
    """Dense + activation + LayerNorm, applied to a hidden state before predicting a token."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Scores every vocabulary token: the transform, then a projection onto the vocabulary.

    The projection's matrix *is* the word-embedding matrix (weight tying: a token's input and
    output vectors are the same), plus a bias per token of its own.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # An empty shell (on the "meta" device: no memory) until tie_to() gives it the
        # word-embedding matrix and self.bias; transformers names them decoder.weight/.bias.
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, device="meta")

    def tie_to(self, word_embeddings: nn.Embedding) -> None:
        """Weight tying: score tokens with the very matrix that embeds them."""
        self.decoder.weight = word_embeddings.weight
        self.decoder.bias = self.bias

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    """The masked-LM head alone (``BertForMaskedLM``); kept as a wrapper for the names."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, sequence_output: Tensor) -> Tensor:
        return self.predictions(sequence_output)


class BertPreTrainingHeads(nn.Module):
    """The two pre-training heads: masked-token scores and is-next-sentence scores."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output: Tensor, pooled_output: Tensor) -> tuple[Tensor, Tensor]:
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


_TIED_DECODER = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


def _masked_positions(
    sequence_output: Tensor, labels: Tensor | None, masked_only: bool,
    positions: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """For ``masked_only``: keep the hidden states (and labels) of the masked positions only.

    Only about 15% of the tokens carry an MLM label, and projecting a hidden state onto the
    vocabulary is the most expensive step of pre-training; gathering first skips ~85% of it.
    The mean loss over the masked tokens is unchanged. ``positions``: the encoder returned the
    states at these positions only (:func:`_needed_positions`).
    """
    if not masked_only:
        return sequence_output, labels
    if labels is None:
        raise ValueError(
            "masked_only=True gathers the positions whose label is not -100, so it needs "
            "labels; pass labels=..., or drop masked_only to score every position."
        )
    if positions is not None:
        labels = labels.gather(1, positions)  # slots with no label read -100: dropped below
    is_masked = labels != IGNORE_INDEX
    return sequence_output[is_masked], labels[is_masked]  # (n_masked, hidden), (n_masked,)


def _needed_positions(
    labels: Tensor | None, masked_only: bool, with_cls: bool, every_state: bool
) -> Tensor | None:
    """For ``masked_only``: the positions whose final states the heads read, so that the last
    encoder layer computes only those (see :class:`bertlab.model.BertEncoder`).

    They are the masked tokens, and with ``with_cls`` position 0 (``[CLS]``, for the pooler),
    shaped (batch, n): each sequence's needed positions first and in order, then positions no
    head reads, up to the largest count in the batch. ``None`` (every position) without
    ``masked_only``, or when the caller wants every state back (``every_state``).
    """
    if not masked_only or labels is None or every_state:
        return None
    needed = labels != IGNORE_INDEX
    if with_cls:
        needed[:, 0] = True
    count = int(needed.sum(dim=1).max())
    order = needed.to(torch.uint8).sort(dim=1, descending=True, stable=True).indices
    return order[:, :count]


def _mlm_loss(logits: Tensor, labels: Tensor | None) -> Tensor | None:
    """Cross-entropy over the labelled positions; label -100 marks a position to skip."""
    if labels is None:
        return None
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


class BertForPreTraining(BertPreTrainedModel):
    """BERT with both pre-training heads: masked language model (MLM) and next-sentence
    prediction (NSP)."""

    tied_weights = _TIED_DECODER

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.init_weights(self.cls)
        self.cls.predictions.tie_to(self.bert.embeddings.word_embeddings)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        next_sentence_label: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        masked_only: bool = False,
    ) -> BertForPreTrainingOutput:
        """Inputs as :meth:`BertModel.forward`, plus:

        Args:
            labels: (batch, seq) the original token at each masked position, -100 elsewhere.
            next_sentence_label: (batch,) 0 if sentence B follows A, 1 if B is random.
            masked_only: score only the positions whose label is not -100 (sparse MLM). The
                hidden states are gathered *before* the transform and vocabulary projection,
                so ``prediction_logits`` is (n_masked, vocab) in the order of
                ``labels[labels != -100]``, and the loss is the same as the dense one, for a
                fraction of the cost. Needs ``labels``. The last encoder layer then computes
                the states of the masked tokens and ``[CLS]`` only (unless hidden states or
                attentions are requested).

        ``loss`` is the sum of the MLM and NSP losses of the labels given (transformers
        returns a loss only when both are given); both parts are returned separately too.
        """
        check_labels(labels, self.config.vocab_size, input_ids, "labels", per_token=True)
        check_labels(next_sentence_label, 2, input_ids, "next_sentence_label", per_token=False)
        positions = _needed_positions(labels, masked_only, with_cls=True,
                                      every_state=output_attentions or output_hidden_states)
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            output_positions=positions,
        )
        sequence_output, mlm_labels = _masked_positions(
            out.last_hidden_state, labels, masked_only, positions
        )
        prediction_logits, seq_relationship_logits = self.cls(sequence_output, out.pooler_output)

        masked_lm_loss = _mlm_loss(prediction_logits, mlm_labels)
        next_sentence_loss = None
        if next_sentence_label is not None:
            next_sentence_loss = F.cross_entropy(
                seq_relationship_logits, next_sentence_label.reshape(-1)
            )
        losses = [loss for loss in (masked_lm_loss, next_sentence_loss) if loss is not None]
        return BertForPreTrainingOutput(
            loss=sum(losses) if losses else None,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            masked_lm_loss=masked_lm_loss,
            next_sentence_loss=next_sentence_loss,
        )


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-language-model head only (no pooler, no NSP)."""

    tied_weights = _TIED_DECODER

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.init_weights(self.cls)
        self.cls.predictions.tie_to(self.bert.embeddings.word_embeddings)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        masked_only: bool = False,
    ) -> PredictionOutput:
        """Inputs as :meth:`BertModel.forward`; ``labels`` and ``masked_only`` as in
        :meth:`BertForPreTraining.forward` (``logits`` is (n_masked, vocab) when
        ``masked_only``)."""
        check_labels(labels, self.config.vocab_size, input_ids, "labels", per_token=True)
        positions = _needed_positions(labels, masked_only, with_cls=False,
                                      every_state=output_attentions or output_hidden_states)
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            output_positions=positions,
        )
        sequence_output, mlm_labels = _masked_positions(
            out.last_hidden_state, labels, masked_only, positions
        )
        logits = self.cls(sequence_output)
        return PredictionOutput(
            loss=_mlm_loss(logits, mlm_labels),
            logits=logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


# -- classification heads --------------------------------------------------------------------


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT with a linear classifier on the pooled ``[CLS]`` vector: one prediction per
    sequence (sentiment, entailment, ...). ``num_labels == 1`` makes it a regression.

    Since only ``[CLS]``'s final state is read, the last encoder layer computes that one
    (:class:`bertlab.model.BertEncoder`): the same logits, loss and gradients, and the same
    random draws in training, for a fraction of that layer's work. Asking for hidden states or
    attentions runs every position.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights(self.classifier)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> PredictionOutput:
        """Inputs as :meth:`BertModel.forward`; ``labels`` (batch,) class ids in
        ``[0, num_labels)`` (cross-entropy loss), or targets for regression (mean squared
        error) when ``num_labels == 1``. ``logits`` is (batch, num_labels)."""
        regression = self.num_labels == 1
        if not regression:
            check_labels(labels, self.num_labels, input_ids, "labels", per_token=False)
        every_state = output_attentions or output_hidden_states
        out = self.bert(  # the head reads [CLS] alone: so does the last layer's computation
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            output_positions=None if every_state else input_ids.new_zeros(len(input_ids), 1),
        )
        logits = self.classifier(self.dropout(out.pooler_output))

        loss = None
        if labels is not None and regression:
            check_regression_targets(labels, input_ids)
            loss = F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
        elif labels is not None:
            loss = F.cross_entropy(logits, labels.reshape(-1))
        return PredictionOutput(loss, logits, out.hidden_states, out.attentions)


class BertForTokenClassification(BertPreTrainedModel):
    """BERT with a linear classifier on every token's final state (named entities, parts of
    speech, ...): one prediction per token."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights(self.classifier)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> PredictionOutput:
        """Inputs as :meth:`BertModel.forward`; ``labels`` (batch, seq) class ids in
        ``[0, num_labels)``, -100 for positions to skip (padding, sub-word pieces).
        ``logits`` is (batch, seq, num_labels)."""
        check_labels(labels, self.num_labels, input_ids, "labels", per_token=True)
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1))
        return PredictionOutput(loss, logits, out.hidden_states, out.attentions)


class BertForQuestionAnswering(BertPreTrainedModel):
    """BERT with two scores on every token's final state: how likely the answer starts there,
    and how likely it ends there. The answer is the span of the paragraph with the best sum;
    ``[CLS]`` (position 0) stands for "no answer" (``bertlab.answering`` decodes the spans)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)  # (start, end) for every token
        self.init_weights(self.qa_outputs)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> QuestionAnsweringOutput:
        """Inputs as :meth:`BertModel.forward`; ``start_positions`` and ``end_positions``
        (batch,) the token indices of each answer's first and last piece, 0 (``[CLS]``) where the
        window holds no answer. The loss is the mean of the start and end cross-entropies;
        ``start_logits`` and ``end_logits`` are (batch, seq)."""
        check_span_positions(start_positions, end_positions, input_ids)
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)
        loss = None
        if start_positions is not None:
            loss = (F.cross_entropy(start_logits, start_positions.reshape(-1))
                    + F.cross_entropy(end_logits, end_positions.reshape(-1))) / 2
        return QuestionAnsweringOutput(loss, start_logits, end_logits, out.hidden_states,
                                       out.attentions)


def _classifier_dropout(config: BertConfig) -> float:
    if config.classifier_dropout is not None:
        return config.classifier_dropout
    return config.hidden_dropout_prob
