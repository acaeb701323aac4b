"""bertlab.lora: LoRA layers written from scratch, checked against peft on the same weights."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

from bertlab import BertConfig
from bertlab.files import CheckpointError, read_tensors
from bertlab.heads import BertForSequenceClassification
from bertlab.lora import (
    ADAPTER_NAME,
    LoRALinear,
    apply_lora,
    load_lora,
    lora_layers,
    merge_lora,
    save_lora,
)

peft = pytest.importorskip("peft")
# peft asks transformers for a property that transformers 5 renamed: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

TARGETS = ["query", "value"]


def config(**overrides) -> BertConfig:
    values = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, max_position_embeddings=24, num_labels=3,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.3)
    return BertConfig(**{**values, **overrides})


def base_model(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(config(**overrides))


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 97, (4, 10), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2:, 7:] = 0
    return {"input_ids": input_ids.masked_fill(attention_mask == 0, 0),
            "attention_mask": attention_mask, "labels": torch.tensor([0, 2, 1, 2])}


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def peft_pair(r: int = 4, alpha: float = 8):
    """Ours and peft's LoRA on the same base weights, with peft's A and B (B made non-zero)
    copied into ours."""
    ours = base_model()
    theirs = transformers.BertForSequenceClassification(config().to_hf())
    theirs.load_state_dict(ours.state_dict())
    theirs = peft.get_peft_model(theirs, peft.LoraConfig(
        r=r, lora_alpha=alpha, target_modules=TARGETS, lora_dropout=0.0, task_type="SEQ_CLS"))
    apply_lora(ours, TARGETS, r, alpha=alpha)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            peft_layer = theirs.base_model.model.get_submodule(name)
            peft_layer.lora_B["default"].weight.normal_(std=0.5)  # B = 0 would hide a slip in B
            layer.lora_A.weight.copy_(peft_layer.lora_A["default"].weight)
            layer.lora_B.weight.copy_(peft_layer.lora_B["default"].weight)
    return ours.eval(), theirs.eval()


# -- the layer and apply_lora -----------------------------------------------------------------


def test_lora_starts_exactly_at_the_pretrained_model(batch):
    model = base_model().eval()
    with torch.no_grad():
        before = model(batch["input_ids"], batch["attention_mask"]).logits
    apply_lora(model, TARGETS, r=4)
    with torch.no_grad():
        after = model(batch["input_ids"], batch["attention_mask"]).logits
    assert torch.equal(before, after)  # B starts at zero
    assert sorted(lora_layers(model)) == [f"bert.encoder.layer.{i}.attention.self.{t}"
                                          for i in range(2) for t in TARGETS]


def test_only_lora_weights_and_the_head_train():
    model = apply_lora(base_model(), TARGETS, r=4)
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert names == ({f"bert.encoder.layer.{i}.attention.self.{t}.lora_{m}.weight"
                      for i in range(2) for t in TARGETS for m in "AB"}
                     | {"classifier.weight", "classifier.bias"})
    # r * (in + out) per adapted layer, plus the head
    assert trainable(model) == 2 * 2 * 4 * (32 + 32) + (32 * 3 + 3)


def test_lora_equals_peft_outputs_parameter_count_and_training(batch):
    ours, theirs = peft_pair()
    assert trainable(ours) == trainable(theirs)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        difference = (ours(**inputs).logits - theirs(**inputs).logits).abs().max().item()
    assert difference <= 1e-6, difference
    # the same steps of plain AdamW on the trainable weights give the same losses
    optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
                  for m in (ours, theirs)]
    losses = {0: [], 1: []}
    for _ in range(3):
        for i, (model, optimizer) in enumerate(zip((ours, theirs), optimizers, strict=True)):
            loss = model(**inputs, labels=batch["labels"]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[i].append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert losses[0][-1] < losses[0][0]  # and it learns


# -- merging -----------------------------------------------------------------------------------


def test_merge_folds_the_update_into_plain_linear_layers(batch, tmp_path):
    model, _ = peft_pair()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        unmerged = model(**inputs).logits
        merge_lora(model)
        merged = model(**inputs).logits
    assert (merged - unmerged).abs().max().item() <= 1e-5
    assert not lora_layers(model)
    assert not any("lora" in name for name in model.state_dict())
    assert type(model.bert.encoder.layer[0].attention.self.query) is nn.Linear
    # a plain model again: transformers reads the folder
    model.save_pretrained(tmp_path)
    reloaded = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert (reloaded(**inputs).logits - merged).abs().max().item() <= 1e-5


# -- saving and loading the adapter ----------------------------------------------------------


def test_adapter_saves_alone_and_loads_onto_a_fresh_base(batch, tmp_path):
    model, _ = peft_pair()
    path = save_lora(model, tmp_path / "adapter")
    assert path.name == ADAPTER_NAME
    saved = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(read_tensors(path)[0]) == saved  # the LoRA weights and the head, nothing frozen
    fresh = load_lora(base_model(), tmp_path / "adapter").eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        assert torch.equal(fresh(**inputs).logits, model(**inputs).logits)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="match no linear layer.*attention.self.query"):
        apply_lora(base_model(), ["qkv"], r=4)
    with pytest.raises(ValueError, match="rank r must be a positive integer"):
        apply_lora(base_model(), TARGETS, r=0)
    twice = apply_lora(base_model(), TARGETS, r=4)
    with pytest.raises(ValueError, match="already has LoRA layers"):
        apply_lora(twice, TARGETS, r=4)
    with pytest.raises(CheckpointError, match="merge_lora"):
        twice.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="no LoRA layers to merge"):
        merge_lora(base_model())
    save_lora(twice, tmp_path / "small")
    wider = base_model(hidden_size=64, intermediate_size=96)
    with pytest.raises(ValueError, match=r"layer\.0\.attention\.self\.query\.lora_A\.weight has "
                                         r"shape \(4, 32\).*another base model"):
        load_lora(wider, tmp_path / "small")
    with pytest.raises(FileNotFoundError, match="no adapter"):
        load_lora(base_model(), tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / ADAPTER_NAME).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="could not read .*not a safetensors file"):
        load_lora(base_model(), tmp_path / "broken")


def test_lora_layer_scales_by_alpha_over_r():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(6, 5), r=2, alpha=6)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 6)
    expected = layer.base_layer(x) + 3.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected)
    assert not layer.base_layer.weight.requires_grad and layer.lora_A.weight.requires_grad
