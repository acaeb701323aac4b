"""Attention, pictured: get a model's attention maps, draw them, and sum up what each head does.

Every function takes the same three leading arguments, in the order :func:`attention_for`
returns them, so ``viz.attention_heatmap(*viz.attention_for(model, tok, "A", "B"), layer=2)``
works. ``attentions`` may be the model's own output (a tuple over layers of
``(1, heads, seq, seq)`` tensors) or an array of shape ``(layers, heads, seq, seq)``.

The bertviz wrappers :func:`head_view` and :func:`model_view` live here too; for a viewer that
works without internet access see :mod:`bertlab.viz.viewer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bertlab.viz.style import ATTENTION_CMAP, ENTROPY_CMAP, annotate_cells, new_figure, styled

# --------------------------------------------------------------------------------------------
# Getting attention out of a model
# --------------------------------------------------------------------------------------------


class AttentionSample(NamedTuple):
    """What one forward pass says about attention, ready for plotting or a viewer."""

    tokens: list[str]
    attentions: np.ndarray  # (layers, heads, seq, seq); row = query, column = key
    sentence_b_start: int | None  # index of the first token of segment B, None for one text


def stack_attentions(attentions: Any) -> np.ndarray:
    """Turn a model's ``attentions`` output into one float array ``(layers, heads, seq, seq)``.

    Accepts a tuple/list over layers of ``(1, heads, seq, seq)`` or ``(heads, seq, seq)``
    tensors or arrays (the ``output_attentions=True`` format), or an array already shaped
    ``(layers, heads, seq, seq)``.
    """
    if isinstance(attentions, (tuple, list)):
        if len(attentions) == 0:
            raise ValueError(
                "attentions is empty: the model returned no attention weights. Run it with "
                "output_attentions=True (a transformers model must use "
                "attn_implementation='eager')."
            )
        layers = [_to_numpy(a) for a in attentions]
        layers = [a[0] if a.ndim == 4 and a.shape[0] == 1 else a for a in layers]
        if any(a.ndim == 4 for a in layers):
            raise ValueError(
                f"attentions hold a batch of {layers[0].shape[0]} examples; pass one example, "
                "e.g. [a[i:i + 1] for a in outputs.attentions]."
            )
        if len({a.shape for a in layers}) != 1:
            raise ValueError(f"attention layers differ in shape: {sorted({a.shape for a in layers})}")
        array = np.stack(layers)
    else:
        array = _to_numpy(attentions)
    if array.ndim != 4 or array.shape[2] != array.shape[3]:
        raise ValueError(
            f"expected attentions shaped (layers, heads, seq, seq), got {tuple(array.shape)}; "
            "pass outputs.attentions from a model run with output_attentions=True."
        )
    if not np.isfinite(array).all():
        raise ValueError("attentions contain NaN or infinity; check the model's inputs.")
    return array


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float32).numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    raise TypeError(
        f"expected attention weights as torch tensors or numpy arrays, got {type(value).__name__}"
    )


def _check_texts(text_a: Any, text_b: Any) -> None:
    if not isinstance(text_a, str) or not text_a.strip():
        raise ValueError(f"text_a must be a non-empty string, got {text_a!r}")
    if text_b is not None and (not isinstance(text_b, str) or not text_b.strip()):
        raise ValueError(f"text_b must be a non-empty string or None, got {text_b!r}")


def attention_for(model: torch.nn.Module, tokenizer: Any, text_a: str,
                  text_b: str | None = None) -> AttentionSample:
    """Run ``model`` on one text (or a pair) and return its tokens and attention weights.

    Works with a bertlab model or a ``transformers`` one (load the latter with
    ``attn_implementation="eager"``: the fused kernels do not return attention weights).
    The model runs in eval mode without gradients; its training flag is restored afterwards.
    """
    _check_texts(text_a, text_b)
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation not in (None, "eager"):
        raise ValueError(
            f"this model uses {implementation!r} attention, which does not return attention "
            "weights. Load it with from_pretrained(..., attn_implementation='eager') or call "
            "model.set_attn_implementation('eager')."
        )
    encoding = tokenizer(text_a, text_b, return_tensors="pt", truncation=True)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    inputs = {name: encoding[name].to(device)
              for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoding}

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(**inputs, output_attentions=True)
    finally:
        model.train(was_training)

    attentions = getattr(outputs, "attentions", None)
    if not attentions:
        raise ValueError(
            "the model returned no attentions; it must accept output_attentions=True and "
            "return an output with an .attentions field (bertlab and transformers models do)."
        )
    ids = encoding["input_ids"][0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return AttentionSample(tokens, stack_attentions(attentions),
                           _segment_b_start(encoding, tokens, tokenizer, text_b))


def _segment_b_start(encoding: Any, tokens: list[str], tokenizer: Any,
                     text_b: str | None) -> int | None:
    if text_b is None:
        return None
    if "token_type_ids" in encoding:
        segment_ids = encoding["token_type_ids"][0]
        if bool((segment_ids == 1).any()):
            return int((segment_ids == 1).int().argmax())
    # No segment ids: segment B starts after the first separator.
    sep = getattr(tokenizer, "sep_token", None) or "[SEP]"
    if sep in tokens[:-1]:
        return tokens.index(sep) + 1
    raise ValueError(
        "could not find where text_b starts: the tokenizer returned no token_type_ids and no "
        "separator token; use a BERT tokenizer (it marks segment B with token_type_ids=1)."
    )


def validated(tokens: Sequence[str], attentions: Any,
               sentence_b_start: int | None) -> tuple[list[str], np.ndarray]:
    """Shared argument checks for every function that takes (tokens, attentions, ...)."""
    array = stack_attentions(attentions)
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError("tokens must be a list of strings, e.g. tokenizer.convert_ids_to_tokens(ids)")
    tokens = list(tokens)
    if len(tokens) != array.shape[-1]:
        raise ValueError(
            f"{len(tokens)} tokens but the attention covers {array.shape[-1]} positions; pass the "
            "tokens of exactly the input the model saw (including [CLS], [SEP] and padding)."
        )
    if sentence_b_start is not None and not 0 < int(sentence_b_start) < len(tokens):
        raise ValueError(
            f"sentence_b_start={sentence_b_start} is outside 1..{len(tokens) - 1}; it is the "
            "index of the first token of the second text (None for a single text)."
        )
    return tokens, array


def check_layer_head(array: np.ndarray, layer: int, head: int | None = None) -> None:
    num_layers, num_heads = array.shape[:2]
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"layer={layer} does not exist; the model has layers 0..{num_layers - 1}")
    if head is not None and not -num_heads <= head < num_heads:
        raise ValueError(f"head={head} does not exist; each layer has heads 0..{num_heads - 1}")


# --------------------------------------------------------------------------------------------
# Attention heatmaps
# --------------------------------------------------------------------------------------------


def _draw_attention(ax: Axes, weights: np.ndarray, tokens: list[str],
                    sentence_b_start: int | None, *, vmax: float | None,
                    xlabels: bool = True, ylabels: bool = True, fontsize: float = 8):
    image = ax.imshow(weights, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax, aspect="equal",
                      interpolation="nearest")
    ticks = np.arange(len(tokens))
    ax.set_xticks(ticks, tokens if xlabels else [], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, tokens if ylabels else [], fontsize=fontsize)
    ax.tick_params(length=0)
    ax.grid(False)  # a grid over a heatmap hides the cells, whatever the caller's style
    for spine in ax.spines.values():
        spine.set_visible(False)
    if sentence_b_start is not None:  # thin rules between the two segments
        edge = sentence_b_start - 0.5
        ax.axhline(edge, color="#c44e52", linewidth=0.8)
        ax.axvline(edge, color="#c44e52", linewidth=0.8)
    return image


@styled
def attention_heatmap(tokens: Sequence[str], attentions: Any,
                      sentence_b_start: int | None = None, *, layer: int = 0, head: int = 0,
                      ax: Axes | None = None, vmax: float | None = 1.0,
                      title: str | None = None) -> Figure:
    """Heatmap of one head's attention: row = token attending (query), column = token attended.

    ``vmax=1.0`` keeps one colour scale across heads; ``vmax=None`` stretches it to this head.
    Pass ``ax`` to draw into an existing figure (the returned figure is then ``ax.figure``).
    """
    tokens, array = validated(tokens, attentions, sentence_b_start)
    check_layer_head(array, layer, head)
    if ax is None:
        side = min(10.0, 2.0 + 0.22 * len(tokens))
        fig, axes = new_figure(figsize=(side + 1.0, side))
        ax = axes[0, 0]
    else:
        fig = ax.figure
    image = _draw_attention(ax, array[layer, head], tokens, sentence_b_start, vmax=vmax)
    ax.set_xlabel("attended to (key)")
    ax.set_ylabel("attending (query)")
    ax.set_title(title if title is not None else f"Layer {layer}, head {head}")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
    return fig


@styled
def attention_heads_grid(tokens: Sequence[str], attentions: Any,
                         sentence_b_start: int | None = None, *, layer: int = 0,
                         ncols: int = 4, vmax: float | None = 1.0) -> Figure:
    """All heads of one layer side by side, on one colour scale, token labels on the outer axes."""
    tokens, array = validated(tokens, attentions, sentence_b_start)
    check_layer_head(array, layer)
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    num_heads = array.shape[1]
    ncols = min(ncols, num_heads)
    nrows = -(-num_heads // ncols)
    panel = 1.2 + 0.12 * len(tokens)
    fig, axes = new_figure(nrows, ncols, figsize=(panel * ncols + 1.0, panel * nrows + 0.4))
    fontsize = 7 if len(tokens) <= 24 else 5
    image = None
    for index, ax in enumerate(axes.flat):
        if index >= num_heads:
            ax.set_visible(False)
            continue
        row, col = divmod(index, ncols)
        last_in_column = index + ncols >= num_heads
        image = _draw_attention(ax, array[layer, index], tokens, sentence_b_start, vmax=vmax,
                                xlabels=last_in_column, ylabels=col == 0, fontsize=fontsize)
        ax.set_title(f"head {index}", fontsize=9)
    fig.suptitle(f"Layer {layer}: attention of every head (rows attend to columns)")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="attention weight")
    return fig


# --------------------------------------------------------------------------------------------
# What each head does, in numbers
# --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = {
    "entropy": "entropy (bits)",
    "cls": "share on [CLS]",
    "sep": "share on [SEP]",
    "self": "share on itself",
    "prev": "share on previous token",
    "next": "share on next token",
}


def head_summary(tokens: Sequence[str], attentions: Any, sentence_b_start: int | None = None,
                 *, cls_token: str = "[CLS]", sep_token: str = "[SEP]") -> pd.DataFrame:
    """One row per (layer, head): what that head's attention looks like on this input.

    Columns, each averaged over the query positions (rows) of the attention matrix:

    - ``entropy``: entropy of the attention distribution in bits (0 = all weight on one token;
      log2(seq) = spread evenly),
    - ``cls`` / ``sep``: weight on the ``[CLS]`` / all ``[SEP]`` tokens,
    - ``self``: weight on the query token itself,
    - ``prev`` / ``next``: weight on the token just before / after it (averaged over the
      queries that have one).

    To summarise several inputs, ``pd.concat`` their summaries; :func:`plot_head_summary`
    averages repeated (layer, head) rows.
    """
    tokens, array = validated(tokens, attentions, sentence_b_start)
    num_layers, num_heads, seq, _ = array.shape
    weights = array.astype(np.float64)
    safe = np.where(weights > 0, weights, 1.0)  # 0 * log 0 counts as 0
    entropy = -(weights * np.log2(safe)).sum(-1).mean(-1)
    is_cls = np.array([t == cls_token for t in tokens])
    is_sep = np.array([t == sep_token for t in tokens])
    positions = np.arange(seq)
    diagonal = weights[..., positions, positions]
    if seq > 1:
        previous = weights[..., positions[1:], positions[:-1]].mean(-1)
        following = weights[..., positions[:-1], positions[1:]].mean(-1)
    else:
        previous = following = np.full((num_layers, num_heads), np.nan)
    layer_index, head_index = np.meshgrid(np.arange(num_layers), np.arange(num_heads),
                                          indexing="ij")
    return pd.DataFrame({
        "layer": layer_index.ravel(),
        "head": head_index.ravel(),
        "entropy": entropy.ravel(),
        "cls": weights[..., is_cls].sum(-1).mean(-1).ravel(),
        "sep": weights[..., is_sep].sum(-1).mean(-1).ravel(),
        "self": diagonal.mean(-1).ravel(),
        "prev": previous.ravel(),
        "next": following.ravel(),
    })


@styled
def plot_head_summary(summary: pd.DataFrame, columns: Sequence[str] | None = None, *,
                      ncols: int = 3, annotate: bool | None = None) -> Figure:
    """One layer x head map per summary column (from :func:`head_summary`).

    Shares use one 0..1 scale; entropy gets its own. Repeated (layer, head) rows, e.g. from
    several sentences concatenated, are averaged. ``annotate`` writes the numbers in the cells
    (default: when every map has at most 12 x 12 cells).
    """
    if not isinstance(summary, pd.DataFrame):
        raise TypeError("summary must be the DataFrame returned by viz.head_summary(...)")
    missing = {"layer", "head"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks the columns {sorted(missing)}; use viz.head_summary(...)")
    if columns is None:
        columns = [c for c in SUMMARY_COLUMNS if c in summary.columns]
    columns = list(columns)
    unknown = [c for c in columns if c not in summary.columns]
    if unknown or not columns:
        raise ValueError(f"unknown summary columns {unknown}; choose from "
                         f"{[c for c in summary.columns if c not in ('layer', 'head')]}")
    maps = {c: summary.pivot_table(index="layer", columns="head", values=c, aggfunc="mean")
            for c in columns}
    num_layers, num_heads = next(iter(maps.values())).shape
    if annotate is None:
        annotate = num_layers <= 12 and num_heads <= 12
    ncols = max(1, min(ncols, len(columns)))
    nrows = -(-len(columns) // ncols)
    width = 1.0 + 0.3 * num_heads
    height = 0.8 + 0.3 * num_layers
    fig, axes = new_figure(nrows, ncols, figsize=(width * ncols + 1.2 * ncols, height * nrows))
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    for ax, column in zip(axes.flat[:len(columns)], columns, strict=True):
        grid = maps[column]
        values = grid.to_numpy(dtype=float)
        is_entropy = column == "entropy"
        vmax = np.nanmax(values) if is_entropy else 1.0
        image = ax.imshow(values, cmap=ENTROPY_CMAP if is_entropy else ATTENTION_CMAP,
                          vmin=0.0, vmax=vmax if vmax > 0 else 1.0, aspect="auto",
                          interpolation="nearest")
        ax.grid(False)
        ax.set_xticks(np.arange(num_heads), grid.columns.tolist(), fontsize=7)
        ax.set_yticks(np.arange(num_layers), grid.index.tolist(), fontsize=7)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(SUMMARY_COLUMNS.get(column, column))
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if annotate:
            annotate_cells(ax, values, image, digits=1 if is_entropy else 2)
        fig.colorbar(image, ax=ax, shrink=0.9)
    return fig


# --------------------------------------------------------------------------------------------
# bertviz
# --------------------------------------------------------------------------------------------


def _bertviz_attention(array: np.ndarray) -> tuple[torch.Tensor, ...]:
    """bertviz wants a tuple over layers of (1, heads, seq, seq) torch tensors."""
    return tuple(torch.from_numpy(np.ascontiguousarray(layer))[None] for layer in array)


def head_view(model: torch.nn.Module, tokenizer: Any, text_a: str, text_b: str | None = None,
              **options):
    """bertviz's head view of ``model`` on one text or a pair; returns an ``IPython`` HTML object.

    ``options`` go to ``bertviz.head_view`` (e.g. ``layer=2, heads=[0, 3]``). bertviz loads
    its JavaScript from a CDN, so it stays blank offline: use
    :func:`bertlab.viz.viewer.attention_viewer` there.
    """
    from bertviz import head_view as bertviz_head_view

    sample = attention_for(model, tokenizer, text_a, text_b)
    with warnings.catch_warnings():  # bertviz 1.4 leaves its .js file open
        warnings.simplefilter("ignore", ResourceWarning)
        return bertviz_head_view(_bertviz_attention(sample.attentions), sample.tokens,
                                 sentence_b_start=sample.sentence_b_start,
                                 html_action="return", **options)


def model_view(model: torch.nn.Module, tokenizer: Any, text_a: str, text_b: str | None = None,
               **options):
    """bertviz's model view (every layer x head at once); returns an ``IPython`` HTML object.

    ``options`` go to ``bertviz.model_view`` (e.g. ``display_mode="light"``,
    ``include_layers=[0, 5]``). Needs internet access for bertviz's scripts, like
    :func:`head_view`.
    """
    from bertviz import model_view as bertviz_model_view

    sample = attention_for(model, tokenizer, text_a, text_b)
    with warnings.catch_warnings():  # bertviz 1.4 leaves its .js file open
        warnings.simplefilter("ignore", ResourceWarning)
        return bertviz_model_view(_bertviz_attention(sample.attentions), sample.tokens,
                                  sentence_b_start=sample.sentence_b_start,
                                  html_action="return", **options)
