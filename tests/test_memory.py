"""training_memory counts what a training step holds, tensor by tensor."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bertlab.memory import training_memory


class Regression(nn.Module):
    """One linear layer and a squared error: small enough to count its tensors by hand."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x, labels):
        error = self.linear(x) - labels
        return SimpleNamespace(loss=(error**2).mean())


def batch():
    generator = torch.Generator().manual_seed(0)
    return {"x": torch.randn(8, 4, generator=generator), "labels": torch.randn(8, 3, generator=generator)}


def test_counts_match_the_hand_count():
    model = Regression()
    counts = training_memory(model, batch())
    assert counts["weights"] == 4 * (4 * 3 + 3)  # float32 weight and bias
    # autograd keeps x (for the weight's gradient) and the error (for the square's gradient)
    assert counts["activations"] == 4 * (8 * 4 + 8 * 3)
    assert counts["gradients"] == counts["weights"]
    # AdamW: two running averages per weight, and a one-number step counter per tensor
    assert counts["optimizer"] == 2 * counts["weights"] + 2 * 4
    assert counts["total"] == counts[["weights", "activations", "gradients", "optimizer"]].sum()


def test_frozen_layer_needs_no_input_saved():
    model = Regression()
    model.linear.weight.requires_grad_(False)
    counts = training_memory(model, batch())
    assert counts["activations"] == 4 * 8 * 3  # only the error: the bias needs no input
    assert counts["gradients"] == 4 * 3


def test_leaves_the_model_as_it_was():
    model = Regression().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training_memory(model, batch())
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_clear_errors():
    model = Regression().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        training_memory(model, batch())
    model = Regression()
    model(**batch()).loss.backward()
    with pytest.raises(ValueError, match="already holds gradients"):
        training_memory(model, batch())
    with pytest.raises(TypeError, match="dict of tensors"):
        training_memory(Regression(), list(batch().values()))
