"""BERT, written out in plain PyTorch and read from top to bottom.

The chapter, in the order a token travels through the model:

1. ``BertEmbeddings``: token + position + segment embeddings, LayerNorm, dropout.
2. ``BertSelfAttention``: ``softmax(QKᵀ/√d + mask)·V`` over several heads, written out, and the
   same computation fused into ``torch.nn.functional.scaled_dot_product_attention``.
3. ``BertLayer``: attention and a feed-forward block, each wrapped in
   "dropout → add the input back → LayerNorm" (post-LN, as in the original BERT). An option
   off by default, ``BertConfig.pre_layer_norm``, moves each LayerNorm to the sub-layer's input
   instead (pre-LN, a departure from BERT that trains more stably).
4. ``BertEncoder`` stacks the layers; ``BertPooler`` turns ``[CLS]`` into a sentence vector.
5. ``BertModel`` joins them; the heads put a task on top: ``BertForPreTraining`` (masked
   language model + next-sentence prediction), ``BertForMaskedLM``,
   ``BertForSequenceClassification``, ``BertForTokenClassification``.
6. Saving and loading in the ``transformers`` file format (``save_pretrained``,
   ``from_pretrained``).
7. The checks that turn bad input into a clear error instead of a deep ``IndexError``.

Every module and parameter has the name Hugging Face ``transformers`` gives it (including the
capitalised ``LayerNorm`` and the attention block called ``self``), so a state dict moves
between the two libraries with no renaming, and ``transformers.AutoModel*.from_pretrained``
reads what :meth:`BertPreTrainedModel.save_pretrained` writes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from bertlab.config import ACTIVATIONS, CONFIG_NAME, BertConfig

__all__ = [
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForPreTrainingOutput",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "BertModelOutput",
    "BertPreTrainedModel",
    "CheckpointError",
    "PredictionOutput",
    "additive_attention_mask",
    "check_inputs",
    "check_labels",
]

WEIGHTS_NAME = "model.safetensors"
IGNORE_INDEX = -100  # label value that the losses skip (PyTorch's and transformers' convention)


# ---------------------------------------------------------------------------------------------
# What the models return
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# 1. Embeddings
# ---------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """A token's input vector = its word vector + its position's vector + its segment's vector,
    then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        H = config.hidden_size
        # padding_idx: the [PAD] row starts at zero and never receives a gradient.
        self.word_embeddings = nn.Embedding(config.vocab_size, H, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, H)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, H)
        self.LayerNorm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        embeddings = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        if token_type_ids is None:  # every token belongs to segment A: add row 0 everywhere
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if position_ids is None:  # positions 0, 1, ..., seq-1 are the table's first rows
            embeddings = embeddings + self.position_embeddings.weight[: input_ids.shape[1]]
        else:
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


# ---------------------------------------------------------------------------------------------
# 2. Multi-head self-attention
# ---------------------------------------------------------------------------------------------


class BertSelfAttention(nn.Module):
    """Every token asks a question (query), offers a label (key) and carries content (value).

    For each head, ``softmax(Q Kᵀ / √d + mask) V`` mixes the values of all tokens, weighted by
    how well their keys match the query. ``mask`` is 0 for real tokens and a huge negative
    number for padding, so padding gets zero weight.

    Two paths compute the same thing: the explicit one below, which can hand back the attention
    probabilities (for plots), and PyTorch's fused ``scaled_dot_product_attention``, which is
    faster and lighter on memory; it is used whenever the probabilities are not requested.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_size  # d = hidden / heads
        H = config.hidden_size
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def split_heads(self, x: Tensor) -> Tensor:
        """(batch, seq, hidden) -> (batch, heads, seq, d): each head sees its own slice."""
        batch, seq, _ = x.shape
        x = x.view(batch, seq, self.num_attention_heads, self.attention_head_size)
        return x.transpose(1, 2)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the mixed values (batch, seq, hidden) and, if requested, the probabilities
        (batch, heads, seq, seq). ``attention_mask`` is additive, shaped (batch, 1, 1, seq)."""
        query = self.split_heads(self.query(hidden_states))
        key = self.split_heads(self.key(hidden_states))
        value = self.split_heads(self.value(hidden_states))

        if output_attentions:
            context, probs = self.explicit_attention(query, key, value, attention_mask)
        else:
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask,
                dropout_p=self.dropout.p if self.training else 0.0,
            )
            probs = None

        batch, heads, seq, head_size = context.shape  # merge the heads back side by side
        return context.transpose(1, 2).reshape(batch, seq, heads * head_size), probs

    def explicit_attention(
        self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``softmax(Q Kᵀ / √d + mask) V``, step by step. Returns the context and the
        probabilities (before attention dropout, which only acts in training)."""
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask  # padding keys -> -huge -> probability 0
        probs = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
        return self.dropout(probs) @ value, probs


class BertSelfOutput(nn.Module):
    """Project the heads' output back to hidden size, then dropout, residual, LayerNorm.

    (Pre-LN: the LayerNorm is applied to the sub-layer's input instead, by the caller, and the
    sum is left as it is.)"""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.post_layer_norm = not config.pre_layer_norm

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        summed = self.dropout(self.dense(hidden_states)) + input_tensor
        return self.LayerNorm(summed) if self.post_layer_norm else summed


class BertAttention(nn.Module):
    """Self-attention plus its output sub-layer. (``self.self`` is the name transformers uses.)"""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self, hidden_states: Tensor, attention_mask: Tensor | None, output_attentions: bool
    ) -> tuple[Tensor, Tensor | None]:
        sublayer_input = hidden_states if self.output.post_layer_norm else (
            self.output.LayerNorm(hidden_states))  # pre-LN: x + attention(LN(x))
        context, probs = self.self(sublayer_input, attention_mask, output_attentions)
        return self.output(context, hidden_states), probs


# ---------------------------------------------------------------------------------------------
# 3. The encoder layer: attention, then a position-wise feed-forward block
# ---------------------------------------------------------------------------------------------

ACT2FN: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact GELU, x·Φ(x) with Φ the normal CDF (computed through erf)
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}
assert set(ACT2FN) == set(ACTIVATIONS), "config.ACTIVATIONS and model.ACT2FN must agree"


class BertIntermediate(nn.Module):
    """Widen each token's vector to ``intermediate_size`` (4 × hidden) and apply GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(nn.Module):
    """Narrow back to hidden size, then dropout, residual, LayerNorm (pre-LN: no LayerNorm
    here, as in ``BertSelfOutput``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.post_layer_norm = not config.pre_layer_norm

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        summed = self.dropout(self.dense(hidden_states)) + input_tensor
        return self.LayerNorm(summed) if self.post_layer_norm else summed


class BertLayer(nn.Module):
    """One encoder layer: tokens exchange information (attention), then each token is
    transformed on its own (feed-forward). Both sub-layers are post-LN residual blocks
    (``LN(x + f(x))``), or pre-LN ones (``x + f(LN(x))``) with ``config.pre_layer_norm``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self, hidden_states: Tensor, attention_mask: Tensor | None, output_attentions: bool
    ) -> tuple[Tensor, Tensor | None]:
        attended, probs = self.attention(hidden_states, attention_mask, output_attentions)
        sublayer_input = attended if self.output.post_layer_norm else (
            self.output.LayerNorm(attended))  # pre-LN: x + feed_forward(LN(x))
        return self.output(self.intermediate(sublayer_input), attended), probs


# ---------------------------------------------------------------------------------------------
# 4. The encoder stack and the pooler
# ---------------------------------------------------------------------------------------------


class BertEncoder(nn.Module):
    """``num_hidden_layers`` identical layers, applied in turn."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        # Pre-LN leaves the residual stream unnormalised; one LayerNorm at the end fixes its scale.
        self.final_layer_norm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                                 if config.pre_layer_norm else None)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None]:
        all_hidden = [hidden_states] if output_hidden_states else None
        all_probs = [] if output_attentions else None
        for layer in self.layer:
            hidden_states, probs = layer(hidden_states, attention_mask, output_attentions)
            if output_hidden_states:
                all_hidden.append(hidden_states)
            if output_attentions:
                all_probs.append(probs)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
            if output_hidden_states:
                all_hidden[-1] = hidden_states  # what the heads read
        return (
            hidden_states,
            tuple(all_hidden) if output_hidden_states else None,
            tuple(all_probs) if output_attentions else None,
        )


class BertPooler(nn.Module):
    """A sentence vector: the final ``[CLS]`` state through a dense layer and tanh."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


def additive_attention_mask(attention_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Turn a (batch, seq) padding mask (1 = token, 0 = padding) into what attention adds to
    its scores: shape (batch, 1, 1, seq), 0 for tokens and the most negative float for padding.

    Built once per forward pass and shared by all layers. Returns ``None`` when nothing is
    padded: then there is nothing to add, and the fused kernel can skip the mask entirely.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    keep = attention_mask[:, None, None, :].bool()
    blank = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return blank.masked_fill(~keep, torch.finfo(dtype).min)


# ---------------------------------------------------------------------------------------------
# 5. The models
# ---------------------------------------------------------------------------------------------


class CheckpointError(ValueError):
    """A checkpoint folder is missing, unreadable, unsafe to open, or does not fit the model."""


class BertPreTrainedModel(nn.Module):
    """What all BERT models share: the config, the reference initialisation, and saving and
    loading in the ``transformers`` format (``config.json`` + ``model.safetensors``)."""

    #: parameters that are the same tensor as another one: {alias: source}. Saved once.
    tied_weights: dict[str, str] = {}

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(
                f"config must be a bertlab.BertConfig, got {type(config).__name__}. For a "
                "transformers config use BertConfig.from_hf(config); for a size by name, "
                "BertConfig.named('tiny')."
            )
        self.config = config

    @property
    def device(self) -> torch.device:
        """Where the weights live; inputs must be there too (``ids.to(model.device)``)."""
        return next(self.parameters()).device

    @torch.no_grad()
    def init_weights(self, part: nn.Module) -> None:
        """The reference initialisation (Devlin et al., as in ``transformers``) of ``part``:
        weights drawn from N(0, initializer_range), biases 0, LayerNorm scale 1 and shift 0,
        and the [PAD] embedding the zero vector.

        Each model initialises only what it adds: a ``BertModel`` inside a head model has
        already initialised itself.
        """
        std = self.config.initializer_range
        for module in part.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(mean=0.0, std=std)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
            if isinstance(module, (nn.Linear, nn.LayerNorm)) and module.bias is not None:
                module.bias.zero_()

    # -- saving -----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if
        needed) and return it. ``transformers.AutoModel*.from_pretrained(directory)`` loads
        the result with no missing or unexpected weights. Files are written under a temporary
        name and renamed, so an interrupted save never leaves a half-written file."""
        directory = Path(directory)
        self.config.save(directory, architectures=[type(self).__name__])
        tensors = {
            name: tensor.detach().to("cpu").contiguous()
            for name, tensor in self.state_dict().items()
            if name not in self.tied_weights  # a tied alias is stored once, under its source
        }
        path = directory / WEIGHTS_NAME
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file(tensors, tmp, metadata={"format": "pt"})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return directory

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, *, output_loading_info: bool = False, **overrides: Any
    ):
        """Build the model from a folder written by bertlab's or transformers'
        ``save_pretrained`` (``config.json`` + ``model.safetensors``), in eval mode.

        Online (e.g. on Colab), a Hugging Face hub name such as ``"bert-base-uncased"`` that
        is not a local folder is downloaded first (those two files only).

        ``overrides`` change config fields, e.g. ``num_labels=3`` or ``hidden_dropout_prob=0.2``.

        As in ``transformers``, a checkpoint of another BERT model fits: a bare ``BertModel``
        checkpoint (keys without the ``bert.`` prefix) loads into a model with a head, the new
        head keeping its fresh initialisation; the heads of a pre-training checkpoint are left
        out when loading into ``BertModel`` or a classifier. Every other missing or unexpected
        weight is an error that names it. With ``output_loading_info=True`` the call returns
        ``(model, {"missing_keys": [...], "unexpected_keys": [...]})`` listing the freshly
        initialised and the left-out weights.

        Only safetensors files are read. A folder that holds only ``pytorch_model.bin`` (a
        pickle, which can run code when opened) is refused with a one-line conversion recipe.
        """
        directory = _locate(directory)
        config = _read_config(directory, overrides)
        state = _read_weights(directory)
        model = cls(config)
        info = model._load_checkpoint(state, directory / WEIGHTS_NAME)
        model.eval()
        return (model, info) if output_loading_info else model

    def _load_checkpoint(self, state: dict[str, Tensor], path: Path) -> dict[str, list[str]]:
        """Copy a checkpoint's tensors into this model; see :meth:`from_pretrained`."""
        own = self.state_dict()
        state = _fit_prefix(state, model_has_prefix=any(k.startswith("bert.") for k in own))

        for alias, source in self.tied_weights.items():  # stored once; loading fills both
            if alias in state and source in state and not torch.equal(state[alias], state[source]):
                raise CheckpointError(
                    f"{path} stores {alias} apart from {source} (an untied decoder); bertlab "
                    "always ties the MLM decoder to the word embeddings and cannot load it."
                )
            state.pop(alias, None)

        missing = [k for k in own if k not in state and k not in self.tied_weights]
        unexpected = [k for k in state if k not in own]
        serious_missing = [k for k in missing if not self._may_start_fresh(k)]
        serious_unexpected = [k for k in unexpected if not self._may_leave_out(k)]
        if serious_missing or serious_unexpected:
            raise CheckpointError(
                f"{path} does not fit {type(self).__name__} as configured by its config.json: "
                + _name_keys("missing from the checkpoint", serious_missing)
                + _name_keys("in the checkpoint but not in the model", serious_unexpected)
                + "Check that config.json belongs to these weights (number of layers, names)."
            )
        mismatched = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own if k in state and state[k].shape != own[k].shape
        ]
        if mismatched:
            raise CheckpointError(
                f"{path} has weights of another shape than {type(self).__name__}: "
                + "; ".join(mismatched[:10])
                + ". Use the checkpoint's own config (for a classifier, its num_labels)."
            )
        self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    def _may_start_fresh(self, key: str) -> bool:
        """Weights a checkpoint may lack: a task head, and the pooler (both start fresh)."""
        return not key.startswith("bert.") or key.startswith(("pooler.", "bert.pooler."))

    def _may_leave_out(self, key: str) -> bool:
        """Checkpoint weights this model may ignore: heads it does not have."""
        return self._may_start_fresh(key)


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, ``num_hidden_layers`` encoder layers, and the pooler.

    ``add_pooling_layer=False`` leaves out the pooler (as the masked-LM and token-level
    heads do, since they never use it).
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights(self)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BertModelOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: (batch, seq) token ids in ``[0, vocab_size)``.
            attention_mask: (batch, seq), 1 for tokens and 0 for padding. Default: all 1.
            token_type_ids: (batch, seq) segment ids, 0 for sentence A and 1 for B. Default: 0.
            position_ids: (batch, seq) or (1, seq) positions. Default: 0, 1, ..., seq-1.
            output_attentions: also return every layer's attention probabilities (this uses
                the explicit attention path).
            output_hidden_states: also return the embeddings and every layer's output.
        """
        check_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids,
                     device=self.embeddings.word_embeddings.weight.device)
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = additive_attention_mask(attention_mask, hidden_states.dtype)
        hidden_states, all_hidden, all_probs = self.encoder(
            hidden_states, mask, output_attentions, output_hidden_states
        )
        return BertModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            hidden_states=all_hidden,
            attentions=all_probs,
        )

    def _may_start_fresh(self, key: str) -> bool:
        return key.startswith("pooler.")

    def _may_leave_out(self, key: str) -> bool:
        return not key.startswith(("embeddings.", "encoder.")) or key.startswith("pooler.")


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
    sequence_output: Tensor, labels: Tensor | None, masked_only: bool
) -> tuple[Tensor, Tensor | None]:
    """For ``masked_only``: keep the hidden states (and labels) of the masked positions only.

    Only about 15% of the tokens carry an MLM label, and projecting a hidden state onto the
    vocabulary is the most expensive step of pre-training; gathering first skips ~85% of it.
    The mean loss over the masked tokens is unchanged.
    """
    if not masked_only:
        return sequence_output, labels
    if labels is None:
        raise ValueError(
            "masked_only=True gathers the positions whose label is not -100, so it needs "
            "labels; pass labels=..., or drop masked_only to score every position."
        )
    is_masked = labels != IGNORE_INDEX
    return sequence_output[is_masked], labels[is_masked]  # (n_masked, hidden), (n_masked,)


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
                fraction of the cost. Needs ``labels``.

        ``loss`` is the sum of the MLM and NSP losses of the labels given (transformers
        returns a loss only when both are given); both parts are returned separately too.
        """
        check_labels(labels, self.config.vocab_size, input_ids, "labels", per_token=True)
        check_labels(next_sentence_label, 2, input_ids, "next_sentence_label", per_token=False)
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        sequence_output, mlm_labels = _masked_positions(
            out.last_hidden_state, labels, masked_only
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
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        sequence_output, mlm_labels = _masked_positions(
            out.last_hidden_state, labels, masked_only
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
    sequence (sentiment, entailment, ...). ``num_labels == 1`` makes it a regression."""

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
        out = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(out.pooler_output))

        loss = None
        if labels is not None and regression:
            _check_regression_targets(labels, input_ids)
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


def _classifier_dropout(config: BertConfig) -> float:
    if config.classifier_dropout is not None:
        return config.classifier_dropout
    return config.hidden_dropout_prob


# ---------------------------------------------------------------------------------------------
# 6. Reading checkpoints (saving is BertPreTrainedModel.save_pretrained, above)
# ---------------------------------------------------------------------------------------------


def _locate(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; otherwise a hub name (``bert-base-uncased``, ``org/model``) is
    fetched from the Hugging Face hub, when online. Anything else is returned for the
    "no folder" error to name."""
    path = Path(name_or_path).expanduser()
    name = str(name_or_path)
    if path.exists() or not re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", name):
        return path
    from huggingface_hub import snapshot_download  # only for hub names

    try:
        return Path(snapshot_download(name, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as err:  # offline, no such repository, network trouble, ...
        raise CheckpointError(
            f"No checkpoint folder at {path}, and {name!r} could not be fetched from the "
            f"Hugging Face hub ({type(err).__name__}). Pass the folder that save_pretrained() "
            f"wrote (it holds {CONFIG_NAME} and {WEIGHTS_NAME}), or go online to use a hub name."
        ) from err


def _read_config(directory: Path, overrides: dict[str, Any]) -> BertConfig:
    if not directory.is_dir():
        raise CheckpointError(
            f"No checkpoint folder at {directory}. Pass the folder that save_pretrained() "
            f"wrote (bertlab or transformers): it holds {CONFIG_NAME} and {WEIGHTS_NAME}."
        )
    if not (directory / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"{directory} has no {CONFIG_NAME}, so the model's sizes are unknown. Save the "
            "checkpoint with save_pretrained(), or write the config with BertConfig.save()."
        )
    config = BertConfig.load(directory)
    if overrides:
        values = config.to_dict()
        if "num_labels" in overrides and "id2label" not in overrides:
            values["id2label"] = None  # the old class names no longer fit
        config = BertConfig.from_dict({**values, **overrides})
    return config


def _read_weights(directory: Path) -> dict[str, Tensor]:
    path = directory / WEIGHTS_NAME
    if not path.is_file():
        if (directory / "pytorch_model.bin").is_file():
            raise CheckpointError(
                f"{directory} holds only pytorch_model.bin, a pickle file; bertlab reads "
                "safetensors only, because opening a pickle can run arbitrary code. If you "
                "trust its source, convert it once: python -c \"import torch; from "
                "safetensors.torch import save_file; d = '" + str(directory) + "'; "
                "sd = torch.load(d + '/pytorch_model.bin', weights_only=True); "
                "save_file({k: v.clone().contiguous() for k, v in sd.items()}, "
                "d + '/model.safetensors', metadata={'format': 'pt'})\""
            )
        raise CheckpointError(
            f"No {WEIGHTS_NAME} in {directory}. Save the model with save_pretrained(), which "
            f"writes {CONFIG_NAME} and {WEIGHTS_NAME} side by side."
        )
    try:
        return load_file(path)  # safetensors: raw tensors only, nothing is executed
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"Could not read {path}: {err}. The file is damaged or not a safetensors file. "
            "Save the model again, or fetch the checkpoint again (for the course's MiniLM: "
            "python -m bertlab.data fetch minilm)."
        ) from err


def _fit_prefix(state: dict[str, Tensor], model_has_prefix: bool) -> dict[str, Tensor]:
    """Match the checkpoint's key names to the model's.

    A model with a head keeps the encoder under ``bert.``; a bare ``BertModel`` (like MiniLM)
    does not. Old checkpoints also carry the position-id buffers (not weights) and call the
    LayerNorm parameters ``gamma``/``beta``.
    """
    renamed = {}
    for key, tensor in state.items():
        if key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue  # buffers of transformers' implementation, not weights
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight")
        renamed[key.replace("LayerNorm.beta", "LayerNorm.bias")] = tensor

    file_has_prefix = any(key.startswith("bert.") for key in renamed)
    if model_has_prefix and not file_has_prefix:  # a bare encoder under a head
        return {f"bert.{key}": tensor for key, tensor in renamed.items()}
    if file_has_prefix and not model_has_prefix:  # a model with heads into a bare encoder
        return {key.removeprefix("bert."): tensor for key, tensor in renamed.items()}
    return renamed


def _name_keys(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    return f"{len(keys)} weight(s) {what}: {shown}. "


# ---------------------------------------------------------------------------------------------
# 7. Checking inputs: a clear message instead of a deep IndexError
# ---------------------------------------------------------------------------------------------


def check_inputs(
    config: BertConfig,
    input_ids: Any,
    attention_mask: Any = None,
    token_type_ids: Any = None,
    position_ids: Any = None,
    device: torch.device | None = None,
) -> None:
    """Raise a TypeError/ValueError that names the problem and the fix for input the model
    cannot read. Cheap: a few shape tests and one min/max per tensor."""
    _check_ids_tensor("input_ids", input_ids)
    named = {"input_ids": input_ids, "attention_mask": attention_mask,
             "token_type_ids": token_type_ids, "position_ids": position_ids}
    for name, tensor in named.items():
        if isinstance(tensor, Tensor) and device is not None and tensor.device != device:
            raise ValueError(
                f"{name} is on {tensor.device} but the model is on {device}; move the "
                f"inputs first: {{k: v.to(model.device) for k, v in batch.items()}}."
            )
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must be 2-D (batch, sequence), got shape {tuple(input_ids.shape)}. "
            "For a single sequence, add a batch dimension: input_ids.unsqueeze(0)."
        )
    batch, seq = input_ids.shape
    if batch == 0 or seq == 0:
        raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}); pass tokens.")
    if seq > config.max_position_embeddings:
        raise ValueError(
            f"The sequences are {seq} tokens long, but the model has positions for "
            f"{config.max_position_embeddings} (max_position_embeddings). Truncate them, e.g. "
            f"tokenizer(..., truncation=True, max_length={config.max_position_embeddings})."
        )
    _check_range(
        "input_ids", input_ids, config.vocab_size, "vocab_size",
        "the tokenizer and the model disagree on the vocabulary: build the model with "
        "vocab_size=len(tokenizer)",
    )

    if attention_mask is not None:
        if not isinstance(attention_mask, Tensor):
            raise TypeError(
                f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}; "
                "use tokenizer(..., return_tensors='pt')."
            )
        _check_same_shape("attention_mask", attention_mask, input_ids)

    if token_type_ids is not None:
        _check_ids_tensor("token_type_ids", token_type_ids)
        _check_same_shape("token_type_ids", token_type_ids, input_ids)
        _check_range(
            "token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size",
            "segment ids are 0 for sentence A and 1 for sentence B",
        )

    if position_ids is not None:
        _check_ids_tensor("position_ids", position_ids)
        if position_ids.dim() != 2 or position_ids.shape[1] != seq or (
            position_ids.shape[0] not in (1, batch)
        ):
            raise ValueError(
                f"position_ids has shape {tuple(position_ids.shape)}; it must be (batch, seq) "
                f"= {tuple(input_ids.shape)} or (1, {seq}). Leave it out for 0, 1, ..., seq-1."
            )
        _check_range(
            "position_ids", position_ids, config.max_position_embeddings,
            "max_position_embeddings", "positions count from 0",
        )


def check_labels(
    labels: Any, num_classes: int, input_ids: Tensor, name: str, per_token: bool
) -> None:
    """Labels must be integer class ids in ``[0, num_classes)`` or -100 (skip), shaped
    (batch, seq) when ``per_token`` and (batch,) otherwise."""
    if labels is None:
        return
    _check_ids_tensor(name, labels)
    if labels.device != input_ids.device:
        raise ValueError(
            f"{name} is on {labels.device} but input_ids on {input_ids.device}; move them "
            "to the model's device too."
        )
    if per_token:
        _check_same_shape(name, labels, input_ids)
    elif labels.numel() != input_ids.shape[0]:
        raise ValueError(
            f"{name} has shape {tuple(labels.shape)}; it needs one label per sequence, shape "
            f"({input_ids.shape[0]},)."
        )
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise ValueError(
            f"{name} holds {labels[bad][0].item()}, outside [0, {num_classes}) (and not -100, "
            f"the label to skip). The model has {num_classes} classes; relabel the data "
            f"or build the model for more classes."
        )


def _check_regression_targets(labels: Any, input_ids: Tensor) -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.numel() != input_ids.shape[0]:
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}; a regression (num_labels=1) needs one "
            f"target per sequence, shape ({input_ids.shape[0]},)."
        )


def _check_ids_tensor(name: str, ids: Any) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of integer ids, got {type(ids).__name__}. Use "
            "torch.tensor(...) or tokenizer(..., return_tensors='pt')."
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer ids (torch.long), got {ids.dtype}. Convert with "
            f"{name}.long(), or build it with torch.tensor(..., dtype=torch.long)."
        )


def _check_same_shape(name: str, tensor: Tensor, input_ids: Tensor) -> None:
    if tensor.shape != input_ids.shape:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)} but input_ids has shape "
            f"{tuple(input_ids.shape)}; they must match, one entry per token. Build them "
            "together, e.g. with tokenizer(..., padding=True, return_tensors='pt')."
        )


def _check_range(name: str, ids: Tensor, limit: int, limit_name: str, fix: str) -> None:
    low, high = torch.aminmax(ids)
    if low < 0 or high >= limit:
        culprit = (low if low < 0 else high).item()
        raise ValueError(
            f"{name} holds {culprit}, outside [0, {limit}) ({limit_name}={limit}); {fix}."
        )

