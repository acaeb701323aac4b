"""training_memory counts what a training step holds, tensor by tensor."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bertlab.memory import peak_memory, training_memory


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


def test_peak_memory_counts_live_tensors_by_hand():
    model = Regression()
    x = torch.ones(1000)
    # x * 2 (4,000 bytes) is alive while (x * 2) + 1 is made (4,000 more); then both are freed
    counts = peak_memory(lambda: (x * 2) + 1, model)
    assert counts["before"] == 4 * (4 * 3 + 3)
    assert counts["added"] == 8000
    assert counts["total"] == counts["before"] + counts["added"]
    with pytest.raises(TypeError, match="models and optimizers"):
        peak_memory(lambda: None, "model")


def test_checkpointing_keeps_the_gradients_and_holds_less():
    from bertlab.config import BertConfig
    from bertlab.heads import BertForPreTraining

    config = BertConfig.named("tiny", vocab_size=200, hidden_dropout_prob=0.1,
                              attention_probs_dropout_prob=0.1)
    ids = torch.randint(5, 200, (4, 48), generator=torch.Generator().manual_seed(0))
    data = {"input_ids": ids, "labels": ids, "next_sentence_label": torch.tensor([0, 1, 0, 1])}
    grads, peaks = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = BertForPreTraining(config).train()
        if checkpointing:
            model.gradient_checkpointing_enable()

        def step(model=model):
            torch.manual_seed(1)  # the same dropout masks in both runs
            model(**data).loss.backward()

        peaks.append(peak_memory(step, model)["added"])
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).abs().max() < 1e-6  # recomputed forward replays the dropout
    assert peaks[1] < 0.9 * peaks[0]
