"""bertlab.optimization: AdamW with decay groups, the learning-rate schedule, freezing layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import (
    classification_examples,
    classifier,
    one_thread,  # noqa: F401  (autouse: one thread for tiny tensors)
)

from bertlab.config import TrainConfig
from bertlab.data.collators import PaddingCollator
from bertlab.optimization import freeze, lr_schedule, make_optimizer
from bertlab.training import train


def test_schedule_warms_up_then_decays():
    linear = [lr_schedule(100, 10, "linear")(s) for s in range(100)]
    assert linear[0] == pytest.approx(0.1) and linear[9] == pytest.approx(1.0)
    assert (np.diff(linear[:10]) > 0).all()  # rises during warm-up
    assert (np.diff(linear[10:]) < 0).all()  # then falls
    assert linear[55] == pytest.approx(0.5) and linear[-1] == pytest.approx(1 / 90)
    cosine = [lr_schedule(100, 10, "cosine", min_ratio=0.1)(s) for s in range(100)]
    assert cosine[10] == pytest.approx(1.0) and cosine[55] == pytest.approx(0.55)
    assert min(cosine[10:]) > 0.1 and cosine[-1] == pytest.approx(0.1, abs=1e-3)
    assert {lr_schedule(20, 0, "constant")(s) for s in range(20)} == {1.0}
    assert lr_schedule(4, 0, "linear")(0) == 1.0  # no warm-up: the first step at the full rate
    assert lr_schedule(4, 2, "constant")(0) == 0.5  # warm-up comes before any shape


def test_schedule_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="unknown schedule 'exponential'; choose one of linear, "
                                         "cosine, constant"):
        lr_schedule(10, 1, "exponential")
    with pytest.raises(ValueError, match="need total_steps >= 1 and warmup_steps >= 0"):
        lr_schedule(0)
    with pytest.raises(ValueError, match="warmup_steps >= 0"):
        lr_schedule(10, -1)


def test_no_weight_decay_on_biases_and_layernorm():
    model = classifier()
    groups = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        no_decay = name.endswith("bias") or "LayerNorm" in name
        assert (id(p) in decayed) != no_decay, name
    assert {g["weight_decay"] for g in groups} == {0.1, 0.0}


def test_optimizer_takes_the_configs_settings_and_only_trainable_weights():
    model = classifier()
    freeze(model, embeddings=True)
    optimizer = make_optimizer(model, TrainConfig(lr=3e-4, betas=(0.8, 0.9), eps=1e-6))
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert (group["lr"], group["betas"], group["eps"]) == (3e-4, (0.8, 0.9), 1e-6)
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.parameters() if p.requires_grad}
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters.*unfreeze some"):
        make_optimizer(model, TrainConfig())


def test_freeze_embeddings_and_first_layers():
    model = classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = freeze(model, embeddings=True, layers=1)
    assert frozen == sum(p.numel() for p in model.bert.embeddings.parameters()) + sum(
        p.numel() for p in model.bert.encoder.layer[0].parameters())
    assert freeze(model, embeddings=True, layers=1) == 0  # already frozen: nothing more
    train(model, classification_examples(8), collate_fn=PaddingCollator(pad_token_id=0),
          max_steps=2, batch_size=4, lr=1e-2, progress=False)
    after = model.state_dict()
    for name in before:
        unchanged = torch.equal(before[name], after[name])
        if name.startswith(("bert.embeddings.", "bert.encoder.layer.0.")):
            assert unchanged, f"{name} is frozen but changed"
        elif after[name].dim() == 2:
            assert not unchanged, f"{name} is trainable but did not change"
    with pytest.raises(ValueError, match="between 0 and 2"):
        freeze(model, layers=3)


def test_freeze_works_on_a_transformers_bert_and_refuses_other_models():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32)
    model = transformers.BertForSequenceClassification(config)
    frozen = freeze(model, layers=2)
    assert frozen == sum(p.numel() for p in model.bert.encoder.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    with pytest.raises(TypeError, match="needs a BERT model.*got Linear"):
        freeze(torch.nn.Linear(2, 2), layers=1)
