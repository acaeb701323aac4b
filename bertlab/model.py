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
5. ``BertModel`` joins them. The heads that put a task on top (pretraining, masked LM,
   sequence and token classification) follow in :mod:`bertlab.heads`.

Saving and loading (``save_pretrained``, ``from_pretrained``) are short calls into
:mod:`bertlab.files`, which owns every file; the input checks live in :mod:`bertlab.checks`.

Every module and parameter has the name Hugging Face ``transformers`` gives it (including the
capitalised ``LayerNorm`` and the attention block called ``self``), so a state dict moves
between the two libraries with no renaming, and ``transformers.AutoModel*.from_pretrained``
reads what :meth:`BertPreTrainedModel.save_pretrained` writes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bertlab.checks import check_inputs, check_output_positions
from bertlab.config import ACTIVATIONS, BertConfig
from bertlab.files import read_pretrained, write_model
from bertlab.outputs import BertModelOutput
from bertlab.positions import dropout_rows, gather_positions

__all__ = ["BertEmbeddings", "BertEncoder", "BertLayer", "BertModel", "BertPooler",
           "BertPreTrainedModel", "BertSelfAttention", "additive_attention_mask"]



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
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the mixed values (batch, seq, hidden) and, if requested, the probabilities
        (batch, heads, seq, seq). ``attention_mask`` is additive, shaped (batch, 1, 1, seq).
        With ``positions`` (batch, n) only those tokens ask, as queries over every key, and the
        values come back for them alone, (batch, n, hidden) (see :class:`BertEncoder`)."""
        asking = hidden_states if positions is None else gather_positions(hidden_states, positions)
        query = self.split_heads(self.query(asking))
        key = self.split_heads(self.key(hidden_states))
        value = self.split_heads(self.value(hidden_states))

        dropping = self.training and self.dropout.p > 0
        if output_attentions or (positions is not None and dropping):
            # (the fused kernel would draw dropout for the asking rows only: see dropout_rows)
            context, probs = self.explicit_attention(query, key, value, attention_mask, positions)
        else:
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask,
                dropout_p=self.dropout.p if self.training else 0.0,
            )
            probs = None

        batch, heads, seq, head_size = context.shape  # merge the heads back side by side
        return context.transpose(1, 2).reshape(batch, seq, heads * head_size), probs

    def explicit_attention(
        self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``softmax(Q Kᵀ / √d + mask) V``, step by step. Returns the context and the
        probabilities (before attention dropout, which only acts in training). ``positions``:
        the queries are those tokens' only (their dropout mask is the full matrix's rows)."""
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask  # padding keys -> -huge -> probability 0
        probs = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
        dropped = dropout_rows(self.dropout, probs, positions, key.shape[-2], dim=2)
        return dropped @ value, probs


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

    def forward(self, hidden_states: Tensor, input_tensor: Tensor, positions: Tensor | None = None,
                seq_len: int | None = None) -> Tensor:  # positions: see dropout_rows
        dropped = dropout_rows(self.dropout, self.dense(hidden_states), positions, seq_len)
        summed = dropped + input_tensor
        return self.LayerNorm(summed) if self.post_layer_norm else summed


class BertAttention(nn.Module):
    """Self-attention plus its output sub-layer. (``self.self`` is the name transformers uses.)"""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self, hidden_states: Tensor, attention_mask: Tensor | None, output_attentions: bool,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        sublayer_input = hidden_states if self.output.post_layer_norm else (
            self.output.LayerNorm(hidden_states))  # pre-LN: x + attention(LN(x))
        if positions is None:
            context, probs = self.self(sublayer_input, attention_mask, output_attentions)
            return self.output(context, hidden_states), probs
        seq_len = hidden_states.shape[1]
        if isinstance(self.self, BertSelfAttention):  # the outputs of those tokens only
            context, probs = self.self(sublayer_input, attention_mask, output_attentions, positions)
        else:  # a replaced self-attention may not know `positions`: keep its rows afterwards
            context, probs = self.self(sublayer_input, attention_mask, output_attentions)
            context = gather_positions(context, positions)
        hidden_states = gather_positions(hidden_states, positions)
        return self.output(context, hidden_states, positions, seq_len), probs


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

    def forward(self, hidden_states: Tensor, input_tensor: Tensor, positions: Tensor | None = None,
                seq_len: int | None = None) -> Tensor:  # positions: see dropout_rows
        dropped = dropout_rows(self.dropout, self.dense(hidden_states), positions, seq_len)
        summed = dropped + input_tensor
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
        self, hidden_states: Tensor, attention_mask: Tensor | None, output_attentions: bool,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        attended, probs = self.attention(hidden_states, attention_mask, output_attentions,
                                         positions)
        sublayer_input = attended if self.output.post_layer_norm else (
            self.output.LayerNorm(attended))  # pre-LN: x + feed_forward(LN(x))
        return self.output(self.intermediate(sublayer_input), attended, positions,
                           hidden_states.shape[1]), probs


# ---------------------------------------------------------------------------------------------
# 4. The encoder stack and the pooler
# ---------------------------------------------------------------------------------------------


class BertEncoder(nn.Module):
    """``num_hidden_layers`` identical layers, applied in turn.

    With ``gradient_checkpointing`` on (``model.gradient_checkpointing_enable()``), training
    keeps only each layer's input for the backward pass and runs the layer's forward again
    there: the activations inside the layers are not stored, for about one more forward pass of
    compute. The gradients are the same (dropout masks are replayed from the saved RNG state).

    ``output_positions`` (batch, n): the caller reads the final states of those tokens only
    (sparse MLM: the masked ones and ``[CLS]``; a sentence classifier: ``[CLS]``). The last
    layer then asks queries from them alone and runs its feed-forward block on them alone; keys
    and values still cover every token, so each kept state is exact, and most of the last
    layer's work is skipped. Its dropout masks are the rows of the full ones
    (:func:`dropout_rows`), so training draws the same random numbers as the dense path.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False
        # Pre-LN leaves the residual stream unnormalised; one LayerNorm at the end fixes its scale.
        self.final_layer_norm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                                 if config.pre_layer_norm else None)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        output_positions: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None]:
        all_hidden = [hidden_states] if output_hidden_states else None
        all_probs = [] if output_attentions else None
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layer):
            positions = output_positions if i == len(self.layer) - 1 else None
            if recompute:
                hidden_states, probs = checkpoint(layer, hidden_states, attention_mask,
                                                  output_attentions, positions,
                                                  use_reentrant=False)
            else:
                hidden_states, probs = layer(hidden_states, attention_mask, output_attentions,
                                             positions)
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

    def gradient_checkpointing_enable(self) -> None:
        """Trade compute for memory while training: see :class:`BertEncoder` (the name and
        effect are those of ``transformers``)."""
        self._encoder().gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self._encoder().gradient_checkpointing = False

    def _encoder(self) -> BertEncoder:
        return next(m for m in self.modules() if isinstance(m, BertEncoder))

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

    # -- files: config.json + model.safetensors, as transformers writes them ------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if
        needed) and return it. ``transformers.AutoModel*.from_pretrained(directory)`` loads
        the result with no missing or unexpected weights. Each file is written atomically
        (see :mod:`bertlab.files`): an interrupted save never leaves half a file."""
        return write_model(self, directory)

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
        model, info = read_pretrained(cls, directory, overrides)
        return (model, info) if output_loading_info else model

    def may_start_fresh(self, key: str) -> bool:
        """Weights a checkpoint may lack: a task head, and the pooler (both start fresh)."""
        return not key.startswith("bert.") or key.startswith(("pooler.", "bert.pooler."))

    def may_leave_out(self, key: str) -> bool:
        """Checkpoint weights this model may ignore: heads it does not have."""
        return self.may_start_fresh(key)


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
        output_positions: Tensor | None = None,
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
            output_positions: (batch, n) compute the final states at these positions only
                (:class:`BertEncoder`): ``last_hidden_state`` is (batch, n, hidden), and the
                pooler reads slot 0 (put position 0 first). Default: every position.
        """
        check_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids,
                     device=self.embeddings.word_embeddings.weight.device)
        check_output_positions(output_positions, input_ids)
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = additive_attention_mask(attention_mask, hidden_states.dtype)
        hidden_states, all_hidden, all_probs = self.encoder(
            hidden_states, mask, output_attentions, output_hidden_states, output_positions
        )
        return BertModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            hidden_states=all_hidden,
            attentions=all_probs,
        )

    def may_start_fresh(self, key: str) -> bool:
        return key.startswith("pooler.")

    def may_leave_out(self, key: str) -> bool:
        return not key.startswith(("embeddings.", "encoder.")) or key.startswith("pooler.")
