"""What one training step keeps in memory, counted tensor by tensor.

    memory = training_memory(model, batch)   # bytes, by kind: a pandas Series
    memory / 1e6                             # weights, activations, gradients, optimizer, total
    peak_memory(step, model, optimizer)      # the most any step() holds at once (notebook 11)

A training step holds four kinds of tensors at its peak, just before the optimizer updates:

* **weights**: every parameter and buffer of the model, trained or frozen;
* **activations**: the tensors autograd saved during the forward pass to compute the backward
  pass (inputs of matrix products, attention probabilities, dropout masks, ...). They are
  counted as autograd packs them (``torch.autograd.graph.saved_tensors_hooks``), each storage
  once, leaving out the parameters, which are weights already;
* **gradients**: one per trainable parameter;
* **optimizer**: AdamW's two running averages per trainable parameter (and its step counters).

Counting sizes, rather than watching the process's memory, gives the same figure on every
machine: what the tensors need, not what an allocator happened to reserve. On a GPU,
``torch.cuda.max_memory_allocated()`` measures the real peak, workspaces included.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["peak_memory", "training_memory"]


def training_memory(model: nn.Module, batch: dict, optimizer_class=torch.optim.AdamW):
    """Bytes held by one training step of ``model`` on ``batch`` (which must hold labels).

    Runs a forward and backward pass in training mode and builds ``optimizer_class`` over the
    trainable parameters with a learning rate of 0, so the model's weights do not change. Its
    gradients are cleared afterwards and its train/eval mode restored.
    """
    import pandas as pd

    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a dict of tensors the model takes as keyword arguments "
                        f"(input_ids, attention_mask, labels, ...), not {type(batch).__name__}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: nothing to train, no step to "
                         "measure (unfreeze some, e.g. with requires_grad_(True))")
    if any(p.grad is not None for p in trainable):
        raise ValueError("the model already holds gradients; call model.zero_grad(set_to_none="
                         "True) first, so that only this step's are counted")
    tensors = [*model.parameters(), *model.buffers()]
    weights = _distinct_bytes(tensors)
    parameter_storages = {_storage_key(t) for t in tensors}

    saved: dict[int, int] = {}

    def pack(tensor):
        key = _storage_key(tensor)
        if key not in parameter_storages:
            saved[key] = tensor.untyped_storage().nbytes()
        return tensor

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            output = model(**batch)
        if getattr(output, "loss", None) is None:
            raise ValueError("the model returned no loss: the batch needs labels")
        output.loss.backward()
        gradients = _distinct_bytes([p.grad for p in trainable if p.grad is not None])
        optimizer = optimizer_class(trainable, lr=0.0)
        optimizer.step()  # lr 0: creates the optimizer's state, changes no weight
        optimizer_bytes = _distinct_bytes([t for state in optimizer.state.values()
                                           for t in state.values() if torch.is_tensor(t)])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    counts = {"weights": weights, "activations": sum(saved.values()), "gradients": gradients,
              "optimizer": optimizer_bytes}
    counts["total"] = sum(counts.values())
    return pd.Series(counts, name="bytes")


def peak_memory(step: Callable[[], object], *owners: nn.Module | torch.optim.Optimizer):
    """The most memory ``step()`` holds at one moment, in bytes.

    Counts live tensors, as a training step's peak is usually described: ``owners`` (the models
    and optimizers the step uses) hold weights, gradients and optimizer state before it starts;
    every tensor an operation creates during the step is added when it is made and taken off
    when it is freed. The largest total is the peak. Counting sizes, rather than watching the
    process, gives the same figure on every CPU: what the tensors need, not what an allocator
    reserved. Code that allocates outside PyTorch's operations (``torch.compile``'s generated
    kernels) is not seen. Run one step first, so that the optimizer's state exists as mid-run.

    Returns ``before`` (the owners' tensors), ``added`` (the most the step added on top) and
    ``total``.
    """
    import pandas as pd

    known = []
    for owner in owners:
        if isinstance(owner, nn.Module):
            known += [*owner.parameters(), *owner.buffers()]
            known += [p.grad for p in owner.parameters() if p.grad is not None]
        elif isinstance(owner, torch.optim.Optimizer):
            known += [t for state in owner.state.values() for t in state.values()
                      if torch.is_tensor(t)]
        else:
            raise TypeError(f"owners must be the models and optimizers the step uses, "
                            f"not {type(owner).__name__}")
    tracker = _LiveTensors(known)
    before = tracker.now
    with tracker:
        step()
    return pd.Series({"before": before, "added": tracker.peak - before, "total": tracker.peak},
                     name="bytes")


class _LiveTensors(TorchDispatchMode):
    """Every storage an operation creates, counted until Python frees it: the total and peak."""

    def __init__(self, known) -> None:
        super().__init__()
        self.storages = WeakIdKeyDictionary()  # storage -> a weak reference that reports its end
        self.now = self.peak = 0
        for tensor in known:
            self.add(tensor)

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self.storages or storage.device.type == "meta":
            return
        size = storage.nbytes()
        self.storages[storage] = weakref.ref(storage, partial(self.free, size))
        self.now += size
        self.peak = max(self.peak, self.now)

    def free(self, size: int, _reference) -> None:
        self.now -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor):
                self.add(value)
        return out


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _distinct_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and ties counted once)."""
    return sum({_storage_key(t): t.untyped_storage().nbytes() for t in tensors}.values())
