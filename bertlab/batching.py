"""From a dataset to batches on the device: the order of an epoch, the loader, the model's inputs.

The order of every epoch is a pure function of ``(seed, epoch)`` (:func:`epoch_batches`), so a
run resumed from a checkpoint finds the same order and skips only the batches it has seen.
``train``, ``evaluate`` and ``predict`` all feed a model through these functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

__all__ = ["check_dataset", "epoch_batches", "example_lengths", "forward_keywords", "loader",
           "model_inputs", "to_device", "token_count", "unwrap"]


def epoch_batches(
    n: int,
    batch_size: int,
    *,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    lengths: Sequence[int] | None = None,
) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch, a pure function of ``(seed, epoch)``.

    Because the order is recomputed rather than drawn from a shared generator, a resumed run
    finds the same order and only has to skip the batches it has already seen.
    With ``lengths``, examples of similar length share a batch (little padding): the shuffled
    order is cut into windows of 50 batches, each sorted by length, and the batches shuffled.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if lengths is not None:
        lengths = np.asarray(lengths)
        window = batch_size * 50 if shuffle else n
        order = np.concatenate(
            [chunk[np.argsort(-lengths[chunk], kind="stable")]
             for chunk in np.array_split(order, range(window, n, window))]
        )
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if lengths is not None and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def example_lengths(data) -> list[int]:
    """The length of every example, for length grouping: its ``input_ids``, else its ``text``
    (characters: a fine proxy when the collator tokenizes per batch)."""
    for field in ("input_ids", "text"):
        if hasattr(data, "column_names"):  # a datasets.Dataset: read one column at once
            if field in data.column_names:
                return [len(value) for value in data[field]]
            continue
        try:
            return [len(data[i][field]) for i in range(len(data))]
        except (KeyError, TypeError, IndexError):
            continue
    raise ValueError(
        "group_by_length=True needs examples with an 'input_ids' or 'text' field to measure; "
        "set group_by_length=False or add one of these fields"
    )


def check_dataset(data, name: str) -> None:
    """A clear error for what ``train``/``evaluate`` cannot batch: a DataLoader, no indexing,
    nothing at all."""
    if isinstance(data, DataLoader):
        raise TypeError(
            f"pass {name} as a dataset (and collate_fn=...), not a DataLoader: train() builds "
            "its own batches so that a resumed run sees the same data order"
        )
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(
            f"{name} must be a map-style dataset (len() and indexing), such as a list of "
            f"examples or a datasets.Dataset; got {type(data).__name__}"
        )
    if len(data) == 0:
        raise ValueError(f"{name} is empty")


def loader(data, batches, collate_fn, num_workers: int, pin: bool) -> DataLoader:
    """A DataLoader that yields exactly ``batches`` (lists of indices), collated."""
    # A private generator: creating the iterator must not draw from the global RNG that
    # dropout and masking use, or a resumed run would drift from the original.
    return DataLoader(
        data,
        batch_sampler=batches,
        collate_fn=collate_fn or default_collate,
        num_workers=num_workers,
        pin_memory=pin,
        generator=torch.Generator(),
    )


def forward_keywords(model: nn.Module) -> tuple[set[str] | None, bool]:
    """Names ``model.forward`` accepts (None: anything) and whether it offers ``masked_only``."""
    parameters = inspect.signature(unwrap(model).forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return (None if takes_any else set(parameters)), "masked_only" in parameters


def model_inputs(batch: dict, accepted: set[str] | None, masked_only: bool) -> dict:
    """The tensors of a batch that ``model.forward`` accepts (+ ``masked_only`` for MLM)."""
    inputs = {k: v for k, v in batch.items()
              if isinstance(v, torch.Tensor) and (accepted is None or k in accepted)}
    if masked_only and "labels" in inputs:
        inputs["masked_only"] = True  # MLM logits at the masked positions only
    return inputs


def to_device(batch, device: torch.device) -> dict:
    """The batch's tensors moved to ``device``."""
    if not isinstance(batch, Mapping):  # a dict, or transformers' BatchEncoding
        raise TypeError(
            f"a batch must be a dict of tensors (input_ids, attention_mask, labels, ...), "
            f"got {type(batch).__name__}; pass a collate_fn that returns one"
        )
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def token_count(batch: dict) -> int:
    """Real (unpadded) tokens in a batch, for throughput."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    return ids.numel() if isinstance(ids, torch.Tensor) else 0


def unwrap(model: nn.Module) -> nn.Module:
    """The module itself, under a ``torch.compile`` wrapper."""
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the module
