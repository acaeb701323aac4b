"""The sparse last layer's two helpers: the rows of the tokens it keeps, and their dropout.

When a head reads the final states of a few tokens only (sparse MLM: the masked ones and
``[CLS]``; a sentence classifier: ``[CLS]``), the last encoder layer computes those rows alone
(:class:`bertlab.model.BertEncoder`). ``positions`` (batch, n) names them in each sequence.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["dropout_rows", "gather_positions"]


def gather_positions(hidden_states: Tensor, positions: Tensor) -> Tensor:
    """The states (batch, n, hidden) of the tokens at ``positions`` (batch, n) of each sequence."""
    index = positions[..., None].expand(-1, -1, hidden_states.shape[-1])
    return hidden_states.gather(1, index)


def dropout_rows(dropout: nn.Dropout, x: Tensor, positions: Tensor | None, seq_len: int | None,
                 dim: int = 1) -> Tensor:
    """``dropout(x)``, where ``x`` holds only the rows at ``positions`` (batch, n), along
    ``dim``, of a tensor that has ``seq_len`` rows there (the sparse last layer).

    The mask is drawn for the whole tensor, exactly as ``nn.Dropout`` draws it, and the kept
    rows read theirs: the sparse layer then drops the same units as the dense one, and every
    random draw after it (the next batch's masks, the classifier's) stays the same too. So a
    fine-tuning run takes the same steps either way, up to rounding. That holds on a CPU;
    CUDA's fused dropout kernel draws its masks another way, so on a GPU the two paths differ
    as two seeds would.
    """
    if positions is None or not dropout.training or dropout.p == 0:
        return dropout(x)
    full = list(x.shape)
    full[dim] = seq_len
    keep = 1 - dropout.p
    noise = x.new_empty(full).bernoulli_(keep).div_(keep)  # what F.dropout computes on a CPU
    index = [1] * x.dim()
    index[0], index[dim] = positions.shape
    return x * noise.gather(dim, positions.view(index).expand(x.shape))
