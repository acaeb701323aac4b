"""Input checks: a clear error that names the problem and the fix, instead of a deep IndexError.

The models call these before any computation, so a learner who passes float ids, a 1-D tensor,
an id outside the vocabulary, a sequence longer than the position table or a label outside the
classes reads what went wrong and how to fix it. They are cheap: a few shape tests and one
min/max per tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["IGNORE_INDEX", "check_inputs", "check_labels", "check_regression_targets",
           "check_span_positions"]

IGNORE_INDEX = -100  # the label of "no prediction here": the losses skip it (PyTorch's convention)


def check_inputs(
    config,
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


def check_span_positions(start: Any, end: Any, input_ids: Tensor) -> None:
    """Answer spans: both or neither given, one (start, end) per sequence, each a token index
    inside the sequence, start <= end (0, 0 marks "no answer", on ``[CLS]``)."""
    if start is None and end is None:
        return
    if start is None or end is None:
        raise ValueError("Give both start_positions and end_positions (0 and 0 for a window "
                         "without its answer), or neither.")
    batch, length = input_ids.shape
    for name, positions in (("start_positions", start), ("end_positions", end)):
        _check_ids_tensor(name, positions)
        if positions.numel() != batch or positions.device != input_ids.device:
            raise ValueError(f"{name} has shape {tuple(positions.shape)} on {positions.device}; "
                             f"it needs one token index per sequence, shape ({batch},), on "
                             f"{input_ids.device}.")
        outside = (positions < 0) | (positions >= length)
        if outside.any():
            raise ValueError(f"{name} holds {positions[outside][0].item()}, outside the "
                             f"sequence of {length} tokens: an answer must lie inside its window "
                             "(use 0, the [CLS] token, when the window does not hold it).")
    if (start.reshape(-1) > end.reshape(-1)).any():
        raise ValueError("An answer ends before it starts (start_positions > end_positions); "
                         "check how character spans were mapped to tokens.")


def check_output_positions(positions: Any, input_ids: Tensor) -> None:
    """``output_positions``: token indices shaped (batch, n), each inside its sequence."""
    if positions is None:
        return
    _check_ids_tensor("output_positions", positions)
    batch, length = input_ids.shape
    if positions.dim() != 2 or positions.shape[0] != batch or positions.device != input_ids.device:
        raise ValueError(f"output_positions has shape {tuple(positions.shape)} on "
                         f"{positions.device}; it needs the token indices to keep of each "
                         f"sequence, shape ({batch}, n), on {input_ids.device}.")
    if positions.numel():
        _check_range("output_positions", positions, length, "tokens per sequence",
                     "each must index a token of its own sequence")


def check_regression_targets(labels: Any, input_ids: Tensor) -> None:
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

