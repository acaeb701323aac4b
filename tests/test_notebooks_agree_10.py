"""Notebook 10's from-scratch pieces agree with their references, on a tiny classifier.

The ``# export`` cells of the notebook are loaded without running it (``tests/nbdefs.py``). Its
LoRA is compared with bertlab.lora and peft (the same A and B in all three); its prefix attention
with ``nn.MultiheadAttention(add_bias_kv=True)``; its adapters start as the identity.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from nbdefs import load_definitions
from torch import nn

from bertlab import BertConfig
from bertlab.heads import BertForSequenceClassification
from bertlab.lora import apply_lora, lora_layers
from bertlab.model import additive_attention_mask

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "10_parameter_efficient_finetuning.ipynb"
TARGETS, R, ALPHA = ["query", "value"], 4, 8


@pytest.fixture(scope="module")
def defs_10() -> dict:
    return load_definitions(NOTEBOOK)


def base_model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=61, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=40, max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, initializer_range=0.3)).eval()


def test_10_exports_the_expected_names(defs_10):
    assert {"LoRALinear", "add_lora", "Adapter", "add_adapters", "PrefixAttention",
            "add_prefixes"} <= set(defs_10)


def test_10_lora_matches_bertlab_and_peft(defs_10):
    notebook = defs_10["add_lora"](base_model(), TARGETS, R, ALPHA)
    packaged = apply_lora(base_model(), TARGETS, R, alpha=ALPHA)
    reference = transformers.BertForSequenceClassification(base_model().config.to_hf())
    reference.load_state_dict(base_model().state_dict())
    theirs = peft.get_peft_model(reference, peft.LoraConfig(
        r=R, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0, task_type="SEQ_CLS")).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, layer in lora_layers(packaged).items():
            mine, twin = notebook.get_submodule(name), theirs.base_model.model.get_submodule(name)
            assert isinstance(mine, defs_10["LoRALinear"])
            twin.lora_B["default"].weight.normal_()  # a zero B would hide a slip in using B
            for module in (mine, layer):
                module.lora_A.weight.copy_(twin.lora_A["default"].weight)
                module.lora_B.weight.copy_(twin.lora_B["default"].weight)
    trainable = [{n for n, p in m.named_parameters() if p.requires_grad}
                 for m in (notebook, packaged)]
    assert trainable[0] == trainable[1]
    assert sum(p.numel() for p in theirs.parameters() if p.requires_grad) == sum(
        p.numel() for p in notebook.parameters() if p.requires_grad)
    input_ids = torch.randint(1, 61, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs(input_ids=input_ids).logits
        for model in (notebook, packaged):
            difference = (model(input_ids).logits - expected).abs().max().item()
            print(f"{type(model).__name__}: max |difference| to peft {difference:.1e}")
            assert difference <= 1e-6


def test_10_adapters_start_as_the_identity_and_train_alone(defs_10):
    adapted = defs_10["add_adapters"](base_model(), 5)
    input_ids = torch.randint(1, 61, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(adapted(input_ids).logits, base_model()(input_ids).logits)
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if n.startswith("classifier.") or ".down." in n
                         or ".up." in n}
    assert sum(p.numel() for n, p in adapted.named_parameters() if n in trainable) == (
        2 * 2 * (24 * 5 + 5 + 5 * 24 + 24) + 24 * 2 + 2)  # 2 layers x 2 adapters, and the head


def test_10_prefix_attention_matches_multihead_attention_with_a_bias_kv(defs_10):
    layer = base_model().bert.encoder.layer[0].attention.self
    prefixed = defs_10["PrefixAttention"](layer, 1).eval()
    mha = nn.MultiheadAttention(24, 3, add_bias_kv=True, batch_first=True).eval()
    with torch.no_grad():
        prefixed.prefix_key.normal_()  # larger than its start, so a slip would show
        prefixed.prefix_value.normal_()
        mha.in_proj_weight.copy_(torch.cat([layer.query.weight, layer.key.weight, layer.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([layer.query.bias, layer.key.bias, layer.value.bias]))
        mha.bias_k.copy_(prefixed.prefix_key.view(1, 1, 24))
        mha.bias_v.copy_(prefixed.prefix_value.view(1, 1, 24))
        mha.out_proj.weight.copy_(torch.eye(24))
        mha.out_proj.bias.zero_()
        states = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(0))
        padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        mask = additive_attention_mask(padding, states.dtype)
        expected = mha(states, states, states, key_padding_mask=padding == 0, need_weights=False)[0]
        for explicit in (False, True):  # the fused path and the one that returns probabilities
            ours, probs = prefixed(states, mask, output_attentions=explicit)
            assert (ours - expected)[padding.bool()].abs().max().item() <= 1e-6
        assert probs.shape == (2, 3, 5, 6) and torch.allclose(probs.sum(-1), torch.ones(2, 3, 5))


def test_10_prefixes_are_the_only_new_weights(defs_10):
    prefixed = defs_10["add_prefixes"](base_model(), 4)
    trainable = {n: p.numel() for n, p in prefixed.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == 2 * 2 * 4 * 24 + 24 * 2 + 2  # 2 layers x (K, V) x 4 x 24
    input_ids = torch.randint(1, 61, (3, 9), generator=torch.Generator().manual_seed(0))
    assert prefixed(input_ids, attention_mask=torch.ones(3, 9)).logits.shape == (3, 2)
