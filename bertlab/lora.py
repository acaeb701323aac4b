"""Low-rank adaptation (LoRA): fine-tune a frozen BERT through small low-rank updates.

    apply_lora(model, targets=("query", "value"), r=8)    # in place: the model is frozen but
    train(model, ...)                                      # for the LoRA weights and its task head
    save_lora(model, "adapters/sentiment")                 # those weights alone, in safetensors
    load_lora(fresh_model, "adapters/sentiment")           # onto another copy of the same base
    merge_lora(model)                                      # plain linear layers again

A LoRA layer keeps a pretrained linear layer ``W x + b`` frozen and learns a correction of rank
``r`` beside it (Hu et al., 2021):

    y = W x + b + (alpha / r) * B A dropout(x),    A: (r, in_features), B: (out_features, r)

``A`` starts random and ``B`` at zero, so training starts exactly at the pretrained model. Only
``r * (in + out)`` numbers per layer learn, instead of ``in * out``. Once trained, ``B A`` folds
into ``W`` (``merge_lora``) and the model costs nothing more to run than the original.

Targets are named as ``peft`` names them: a linear layer is adapted when its qualified name is a
target or ends with ``"." + target`` (``"query"`` matches every layer's
``attention.self.query``). Parameter names follow ``peft`` too (``base_layer``, ``lora_A``,
``lora_B``), so its weights can be copied into these layers one for one.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bertlab.files import read_tensors, write_tensors

__all__ = ["ADAPTER_NAME", "LoRALinear", "apply_lora", "load_lora", "lora_layers", "merge_lora",
           "save_lora"]

ADAPTER_NAME = "adapter.safetensors"  # the file save_lora writes into its folder


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) * B A``."""

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base_layer = base_layer
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # A as nn.Linear initialises any weight (Kaiming-uniform); B at zero makes the update
        # zero, so the adapted model starts exactly where the pretrained one is.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        base_layer.requires_grad_(False)
        self.to(base_layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def merged(self) -> nn.Linear:
        """The plain linear layer with ``W + (alpha / r) B A`` as its weight."""
        layer = self.base_layer
        with torch.no_grad():
            update = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
            layer.weight += update.to(layer.weight.dtype)
        return layer

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}"


def apply_lora(model: nn.Module, targets: Sequence[str] = ("query", "value"), r: int = 8, *,
               alpha: float | None = None, dropout: float = 0.0) -> nn.Module:
    """Wrap every linear layer named by ``targets`` in a :class:`LoRALinear`, in place.

    Afterwards only the LoRA weights and the task head (whatever lies outside the encoder
    ``model.bert``, such as a classifier) are trainable; build the optimizer (call ``train``)
    after this. ``alpha`` defaults to ``r`` (a scale of 1). Returns the model.
    """
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(r, int) or r <= 0:
        raise ValueError(f"the rank r must be a positive integer, got {r!r}; LoRA papers use 4 to 64")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if lora_layers(model):
        raise ValueError("this model already has LoRA layers; apply LoRA once, or call "
                         "merge_lora(model) first to fold the present ones into its weights")
    linear = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    chosen = [name for name in linear if any(_matches(name, t) for t in targets)]
    unused = [t for t in targets if not any(_matches(name, t) for name in linear)]
    if unused:
        names = sorted({re.sub(r"\.\d+\.", ".N.", name) for name in linear})  # one per kind
        raise ValueError(f"LoRA target(s) {unused} match no linear layer of "
                         f"{type(model).__name__}, whose linear layers are {names}")
    model.requires_grad_(False)
    head = [module for name, module in model.named_children() if name != "bert"]
    for module in head:  # the task head is new for the task: it must learn
        module.requires_grad_(True)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(linear[name], r, r if alpha is None else alpha, dropout))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The LoRA layers of ``model``, by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA layer into its linear layer, in place: the model is a plain one again,
    with the same outputs and no LoRA parameters. Returns the model."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("this model has no LoRA layers to merge; apply_lora(model, ...) adds them")
    for name, layer in layers.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.merged())
    return model


def save_lora(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write the trainable weights (LoRA matrices and task head) to ``folder/adapter.safetensors``,
    with the LoRA settings in its metadata. Returns the file's path."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("this model has no LoRA layers; apply_lora(model, ...) and train it first")
    tensors = {name: p for name, p in model.named_parameters() if p.requires_grad}
    first = next(iter(layers.values()))
    settings = {"r": first.r, "alpha": first.alpha, "layers": sorted(layers)}
    return write_tensors(Path(folder) / ADAPTER_NAME, tensors, {"lora": json.dumps(settings)})


def load_lora(model: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """Load an adapter written by :func:`save_lora` onto ``model``, in place.

    ``model`` is the same base the adapter was trained on, with or without LoRA layers (they are
    added as the file describes). Returns the model.
    """
    path = Path(folder)
    path = path / ADAPTER_NAME if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no adapter at {path}; save_lora(model, folder) writes "
                                f"folder/{ADAPTER_NAME}")
    tensors, metadata = read_tensors(path)
    settings = json.loads(metadata.get("lora", "null"))
    if not settings:
        raise ValueError(f"{path} holds no LoRA settings: it was not written by save_lora")
    present = lora_layers(model)
    if not present:
        apply_lora(model, targets=settings["layers"], r=settings["r"], alpha=settings["alpha"])
    elif sorted(present) != settings["layers"]:
        raise ValueError(f"the model's LoRA layers differ from the adapter's ({len(present)} "
                         f"against {len(settings['layers'])}); load onto a model without LoRA")
    parameters = dict(model.named_parameters())
    for name, tensor in tensors.items():
        if name not in parameters:
            raise ValueError(f"the adapter has weights for {name}, which this model lacks: it "
                             "was trained on another model")
        if parameters[name].shape != tensor.shape:
            raise ValueError(
                f"the adapter's {name} has shape {tuple(tensor.shape)} but this model's has "
                f"{tuple(parameters[name].shape)}: the adapter was trained on another base model")
    with torch.no_grad():
        for name, tensor in tensors.items():
            parameters[name].copy_(tensor)
    return model


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)
