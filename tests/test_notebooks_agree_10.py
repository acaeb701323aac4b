"""Notebook 10's LoRA, written from scratch there, agrees with bertlab.lora and with peft.

The ``# export`` cells of the notebook are loaded without running it (``tests/nbdefs.py``), and
compared on a tiny classifier with the same A and B in all three.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from nbdefs import load_definitions

from bertlab import BertConfig
from bertlab.heads import BertForSequenceClassification
from bertlab.lora import apply_lora, lora_layers

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
    assert {"LoRALinear", "add_lora"} <= set(defs_10)


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
