"""What an optimizer step changes: AdamW with decay groups, the learning-rate schedule, freezing.

    optimizer = make_optimizer(model, config)       # AdamW; no decay on biases and LayerNorm
    multiplier = lr_schedule(1000, warmup_steps=100)  # warm-up, then linear decay
    freeze(model, embeddings=True, layers=4)        # train only the upper layers and the head
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from bertlab.config import SCHEDULES

__all__ = ["freeze", "lr_schedule", "make_optimizer"]


def make_optimizer(model: nn.Module, config) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, without weight decay on biases and LayerNorm weights.

    Decay pulls weights towards zero; for a bias or a LayerNorm gain that only shifts or rescales
    a feature, and pulling a gain towards zero fights the normalisation. Those are exactly the
    1-D parameters.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (all are frozen); unfreeze some")
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    settings = dict(lr=config.lr, betas=config.betas, eps=config.eps)
    try:  # one fused kernel for all parameters: 3-5x faster than the default on a CPU
        return torch.optim.AdamW(groups, fused=True, **settings)
    except (RuntimeError, ValueError):  # older PyTorch, or a device without the fused kernel
        return torch.optim.AdamW(groups, **settings)


def lr_schedule(
    total_steps: int, warmup_steps: int = 0, kind: str = "linear", min_ratio: float = 0.0
) -> Callable[[int], float]:
    """The learning-rate multiplier for optimizer step ``s`` (0-based): warm-up, then decay.

    Warm-up rises linearly to 1 over ``warmup_steps`` (the first step already learns a little);
    then ``"linear"`` falls in a straight line and ``"cosine"`` along half a cosine towards
    ``min_ratio``; ``"constant"`` stays at 1. Plot it with
    ``[f(s) for s in range(total_steps)]``.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, "
                         f"{warmup_steps}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        shape = 1 - progress if kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        return min_ratio + (1 - min_ratio) * shape

    return multiplier


def freeze(model: nn.Module, *, embeddings: bool = False, layers: int = 0) -> int:
    """Stop training the embeddings and/or the first ``layers`` encoder layers of a BERT model.

    Works on a bertlab or Hugging Face BERT (the encoder is found at ``model.bert`` or the model
    itself). Returns the number of parameters frozen. Build the optimizer (call ``train``) after.
    """
    base = getattr(model, "bert", model)
    if not hasattr(base, "embeddings") or not hasattr(base, "encoder"):
        raise TypeError(f"freeze() needs a BERT model with .embeddings and .encoder.layer; got "
                        f"{type(model).__name__}")
    blocks = base.encoder.layer
    if not 0 <= layers <= len(blocks):
        raise ValueError(f"layers must be between 0 and {len(blocks)} (the model's depth), "
                         f"got {layers}")
    modules = ([base.embeddings] if embeddings else []) + list(blocks[:layers])
    count = 0
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                count += p.numel()
    return count
