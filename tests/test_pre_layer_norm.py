"""The pre-LN option (``BertConfig.pre_layer_norm``): PyTorch's own pre-LN encoder is the
reference, and ``transformers`` (post-LN only) is kept from loading such a model.

Run with ``pytest -s`` to see every max |difference|.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bertlab import BertConfig
from bertlab.config import PRE_LN_MODEL_TYPE, count_parameters
from bertlab.heads import BertForPreTraining, BertForSequenceClassification
from bertlab.model import BertModel

ATOL = 1e-5


@pytest.fixture(scope="module")
def config() -> BertConfig:
    # std 0.3 as in the parity tests: activations of order 1, where a misplaced LayerNorm shows
    return BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=48, max_position_embeddings=24, initializer_range=0.3,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      pre_layer_norm=True)


@pytest.fixture(scope="module")
def batch(config) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, config.vocab_size, (3, 10), generator=generator)
    attention_mask = torch.ones(3, 10, dtype=torch.long)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    input_ids[attention_mask == 0] = config.pad_token_id
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give biases and LayerNorms random values too, so that each one's place matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model.eval()


def torch_reference(ours: BertModel) -> nn.TransformerEncoder:
    """``torch.nn.TransformerEncoder`` with ``norm_first=True`` (pre-LN) and a final LayerNorm,
    holding the bertlab model's weights."""
    config = ours.config
    layer = nn.TransformerEncoderLayer(
        config.hidden_size, config.num_attention_heads, config.intermediate_size, dropout=0.0,
        activation="gelu", layer_norm_eps=config.layer_norm_eps, batch_first=True,
        norm_first=True)
    reference = nn.TransformerEncoder(
        layer, config.num_hidden_layers, enable_nested_tensor=False,
        norm=nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))
    with torch.no_grad():
        for theirs, mine in zip(reference.layers, ours.encoder.layer, strict=True):
            attention = mine.attention
            theirs.self_attn.in_proj_weight.copy_(torch.cat(
                [attention.self.query.weight, attention.self.key.weight,
                 attention.self.value.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat(
                [attention.self.query.bias, attention.self.key.bias, attention.self.value.bias]))
            pairs = [(theirs.self_attn.out_proj, attention.output.dense),
                     (theirs.norm1, attention.output.LayerNorm),
                     (theirs.linear1, mine.intermediate.dense),
                     (theirs.linear2, mine.output.dense),
                     (theirs.norm2, mine.output.LayerNorm)]
            for target, source in pairs:
                target.weight.copy_(source.weight)
                target.bias.copy_(source.bias)
        reference.norm.weight.copy_(ours.encoder.final_layer_norm.weight)
        reference.norm.bias.copy_(ours.encoder.final_layer_norm.bias)
    return reference.eval()


def test_pre_ln_encoder_matches_pytorch(config, batch, assert_close):
    torch.manual_seed(0)
    ours = randomised(BertModel(config))
    reference = torch_reference(ours)
    with torch.no_grad():
        out = ours(**batch, output_hidden_states=True)
        expected = reference(out.hidden_states[0],  # the embeddings: unchanged by the option
                             src_key_padding_mask=batch["attention_mask"] == 0)
    real = batch["attention_mask"].bool()  # padded positions hold values nobody reads
    assert_close("pre-LN encoder vs torch.nn.TransformerEncoder(norm_first=True)",
                 out.last_hidden_state[real], expected[real], ATOL)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


def test_post_ln_is_the_default_and_differs(config, batch):
    torch.manual_seed(0)
    pre = BertModel(config)
    post = BertModel(BertConfig(**{**config.to_dict(), "pre_layer_norm": False}))
    assert BertConfig().pre_layer_norm is False
    assert set(pre.state_dict()) - set(post.state_dict()) == {
        "encoder.final_layer_norm.weight", "encoder.final_layer_norm.bias"}
    post.load_state_dict({k: v for k, v in pre.state_dict().items() if "final" not in k})
    randomised(pre), randomised(post)
    with torch.no_grad():
        gap = (pre(**batch).last_hidden_state - post(**batch).last_hidden_state).abs().max()
    assert gap > 0.1, "the same weights should give another function when the LayerNorms move"


@pytest.mark.parametrize("head", ["base", "pretraining", "sequence_classification"])
def test_count_parameters(config, head):
    model = {"base": BertModel, "pretraining": BertForPreTraining,
             "sequence_classification": BertForSequenceClassification}[head](config)
    assert count_parameters(config, head) == sum(p.numel() for p in model.parameters())


def test_saved_pre_ln_model_round_trips_and_is_marked(config, batch, tmp_path):
    torch.manual_seed(0)
    model = randomised(BertForPreTraining(config))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == PRE_LN_MODEL_TYPE and saved["pre_layer_norm"] is True
    loaded = BertForPreTraining.from_pretrained(tmp_path)
    assert loaded.config.pre_layer_norm
    with torch.no_grad():
        assert torch.equal(loaded(**batch).prediction_logits, model(**batch).prediction_logits)


def test_post_ln_config_json_is_transformers_own(tmp_path):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "bert" and "pre_layer_norm" not in saved


def test_transformers_refuses_a_pre_ln_model(config, tmp_path):
    transformers = pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="pre-LN"):
        config.to_hf()
    BertModel(config).save_pretrained(tmp_path)
    with pytest.raises((ValueError, KeyError)):
        transformers.AutoModel.from_pretrained(tmp_path)


def test_inconsistent_config_json_is_refused(config, tmp_path):
    config.save(tmp_path)
    path = tmp_path / "config.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "model_type": "bert"}))
    with pytest.raises(ValueError, match="pre_layer_norm"):
        BertConfig.load(tmp_path)
    with pytest.raises(TypeError, match="pre_layer_norm"):
        BertConfig(pre_layer_norm="yes")
