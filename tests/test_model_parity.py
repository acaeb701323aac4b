"""bertlab's BERT is transformers' BERT: same weights and inputs give the same numbers.

Random weights, a batch of three sequences of different lengths (padded) with two segments,
float32, eval mode. Run with ``pytest -s`` to see every max |difference|.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from bertlab import BertConfig
from bertlab.heads import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from bertlab.model import BertModel, BertSelfAttention, additive_attention_mask

ATOL = 1e-5  # outputs and losses
GRAD_ATOL = 1e-4

# bertlab class -> the transformers class with the same weights and head
PAIRS = {
    BertModel: transformers.BertModel,
    BertForPreTraining: transformers.BertForPreTraining,
    BertForMaskedLM: transformers.BertForMaskedLM,
    BertForSequenceClassification: transformers.BertForSequenceClassification,
    BertForTokenClassification: transformers.BertForTokenClassification,
}
AUTO = {
    BertModel: transformers.AutoModel,
    BertForPreTraining: transformers.AutoModelForPreTraining,
    BertForMaskedLM: transformers.AutoModelForMaskedLM,
    BertForSequenceClassification: transformers.AutoModelForSequenceClassification,
    BertForTokenClassification: transformers.AutoModelForTokenClassification,
}


@pytest.fixture(scope="module")
def config() -> BertConfig:
    # Odd sizes on purpose: 4 heads of 8, an intermediate size that is not 4 x hidden.
    # Weights of std 0.3 rather than 0.02 give activations of order 1, where a slip shows (the
    # tanh approximation of GELU, a wrong attention scale): at 0.02 everything is near 0.
    return BertConfig(vocab_size=211, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=40, num_labels=3,
                      initializer_range=0.3)


@pytest.fixture(scope="module")
def batch(config) -> dict[str, torch.Tensor]:
    """Three sequences of lengths 12, 9 and 5, padded to 12; sentence B starts halfway."""
    generator = torch.Generator().manual_seed(0)
    lengths = [12, 9, 5]
    input_ids = torch.randint(1, config.vocab_size, (3, 12), generator=generator)
    attention_mask = torch.zeros(3, 12, dtype=torch.long)
    token_type_ids = torch.zeros(3, 12, dtype=torch.long)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        token_type_ids[row, length // 2 : length] = 1
    input_ids[attention_mask == 0] = config.pad_token_id
    mlm_labels = torch.full_like(input_ids, -100)
    for row, positions in enumerate([[1, 4, 10], [2, 7], [3]]):
        mlm_labels[row, positions] = input_ids[row, positions]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "mlm_labels": mlm_labels,
        "next_sentence_label": torch.tensor([0, 1, 0]),
        "class_labels": torch.tensor([2, 0, 1]),
        "token_labels": torch.randint(0, 3, (3, 12), generator=generator).masked_fill(
            attention_mask == 0, -100
        ),
    }


def inputs(batch) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def make_pair(ours_class, config, attn_implementation="sdpa", seed=0):
    """A transformers model with random weights and the bertlab model holding the same ones."""
    torch.manual_seed(seed)
    theirs = PAIRS[ours_class]._from_config(config.to_hf(), attn_implementation=attn_implementation)
    with torch.no_grad():  # biases start at zero and LayerNorm at 1/0: make them count too
        for name, param in theirs.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(torch.randn_like(param), alpha=config.initializer_range)
    ours = ours_class(config)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs.eval()


# -- state dicts -----------------------------------------------------------------------------


@pytest.mark.parametrize("ours_class", list(PAIRS), ids=lambda c: c.__name__)
def test_state_dict_keys_identical(ours_class, config):
    ours, theirs = make_pair(ours_class, config)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, tensor in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == tensor.shape, name
    theirs.load_state_dict(ours.state_dict(), strict=True)  # and the other way


# -- forward passes --------------------------------------------------------------------------


def test_base_model(config, batch, assert_close):
    ours, theirs = make_pair(BertModel, config)
    a = ours(**inputs(batch), output_hidden_states=True)
    b = theirs(**inputs(batch), output_hidden_states=True)
    assert_close("BertModel last_hidden_state", a.last_hidden_state, b.last_hidden_state, ATOL)
    assert_close("BertModel pooler_output", a.pooler_output, b.pooler_output, ATOL)
    assert len(a.hidden_states) == len(b.hidden_states) == config.num_hidden_layers + 1
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states, strict=True)):
        assert_close(f"BertModel hidden_states[{i}]", x, y, ATOL)


def test_defaults_match_transformers_defaults(config, batch, assert_close):
    """No mask, no segment ids, and explicit position ids."""
    ours, theirs = make_pair(BertModel, config)
    ids = batch["input_ids"]
    assert_close("no mask/segments", ours(ids).last_hidden_state,
                 theirs(ids).last_hidden_state, ATOL)
    positions = torch.arange(12).flip(0)[None]  # (1, seq): broadcast over the batch
    assert_close("position_ids", ours(ids, position_ids=positions).last_hidden_state,
                 theirs(ids, position_ids=positions).last_hidden_state, ATOL)


def test_pretraining(config, batch, assert_close):
    ours, theirs = make_pair(BertForPreTraining, config)
    labels = {"labels": batch["mlm_labels"], "next_sentence_label": batch["next_sentence_label"]}
    a = ours(**inputs(batch), **labels)
    b = theirs(**inputs(batch), **labels)
    assert_close("PreTraining prediction_logits", a.prediction_logits, b.prediction_logits, ATOL)
    assert_close("PreTraining seq_relationship_logits", a.seq_relationship_logits,
                 b.seq_relationship_logits, ATOL)
    assert_close("PreTraining loss (MLM + NSP)", a.loss, b.loss, ATOL)

    # Each loss alone, against the same loss computed on transformers' logits.
    mlm = torch.nn.functional.cross_entropy(b.prediction_logits.view(-1, config.vocab_size),
                                            batch["mlm_labels"].view(-1))
    nsp = torch.nn.functional.cross_entropy(b.seq_relationship_logits, batch["next_sentence_label"])
    assert_close("PreTraining MLM loss", a.masked_lm_loss, mlm, ATOL)
    assert_close("PreTraining NSP loss", a.next_sentence_loss, nsp, ATOL)
    assert ours(**inputs(batch), labels=batch["mlm_labels"]).loss == a.masked_lm_loss


def test_masked_lm(config, batch, assert_close):
    ours, theirs = make_pair(BertForMaskedLM, config)
    a = ours(**inputs(batch), labels=batch["mlm_labels"])
    b = theirs(**inputs(batch), labels=batch["mlm_labels"])
    assert_close("MaskedLM logits", a.logits, b.logits, ATOL)
    assert_close("MaskedLM loss", a.loss, b.loss, ATOL)


def test_sequence_classification(config, batch, assert_close):
    ours, theirs = make_pair(BertForSequenceClassification, config)
    a = ours(**inputs(batch), labels=batch["class_labels"])
    b = theirs(**inputs(batch), labels=batch["class_labels"])
    assert_close("SequenceClassification logits", a.logits, b.logits, ATOL)
    assert_close("SequenceClassification loss", a.loss, b.loss, ATOL)


def test_sequence_regression(config, batch, assert_close):
    regression = BertConfig.from_dict({**config.to_dict(), "num_labels": 1})
    ours, theirs = make_pair(BertForSequenceClassification, regression)
    targets = torch.tensor([0.5, -1.0, 2.0])
    a = ours(**inputs(batch), labels=targets)
    b = theirs(**inputs(batch), labels=targets)
    assert_close("Regression logits", a.logits, b.logits, ATOL)
    assert_close("Regression loss (MSE)", a.loss, b.loss, ATOL)


def test_token_classification(config, batch, assert_close):
    ours, theirs = make_pair(BertForTokenClassification, config)
    a = ours(**inputs(batch), labels=batch["token_labels"])
    b = theirs(**inputs(batch), labels=batch["token_labels"])
    assert_close("TokenClassification logits", a.logits, b.logits, ATOL)
    assert_close("TokenClassification loss", a.loss, b.loss, ATOL)


def test_attention_probabilities(config, batch, assert_close):
    ours, theirs = make_pair(BertModel, config, attn_implementation="eager")
    a = ours(**inputs(batch), output_attentions=True)
    b = theirs(**inputs(batch), output_attentions=True)
    assert len(a.attentions) == len(b.attentions) == config.num_hidden_layers
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions, strict=True)):
        assert x.shape == (3, config.num_attention_heads, 12, 12)
        assert_close(f"attention probabilities, layer {i}", x, y, ATOL)
        # Padding gets no attention, and every row is a distribution.
        assert x.masked_select(batch["attention_mask"][:, None, None, :] == 0).max() == 0
        assert_close(f"attention rows sum to 1, layer {i}", x.sum(-1), torch.ones(3, 4, 12), ATOL)
    assert_close("last_hidden_state, explicit path", a.last_hidden_state,
                 b.last_hidden_state, ATOL)


def test_gradients(config, batch, assert_close):
    ours, theirs = make_pair(BertForPreTraining, config)
    labels = {"labels": batch["mlm_labels"], "next_sentence_label": batch["next_sentence_label"]}
    ours(**inputs(batch), **labels).loss.backward()
    theirs(**inputs(batch), **labels).loss.backward()
    their_params = dict(theirs.named_parameters())
    worst = 0.0
    for name, param in ours.named_parameters():
        assert param.grad is not None, name
        worst = max(worst, (param.grad - their_params[name].grad).abs().max().item())
        torch.testing.assert_close(param.grad, their_params[name].grad, atol=GRAD_ATOL, rtol=0)
    print(f"PreTraining gradients, {len(their_params)} parameters: max|diff| = {worst:.1e}")


def test_padding_row_gets_no_input_gradient(config, batch):
    """padding_idx, as in transformers. (With a tied decoder the row still learns as an output.)"""
    ours, _ = make_pair(BertModel, config)
    ours(**inputs(batch)).last_hidden_state.sum().backward()
    grad = ours.embeddings.word_embeddings.weight.grad
    assert grad[config.pad_token_id].abs().max() == 0 and grad.abs().max() > 0


# -- the two attention paths -----------------------------------------------------------------


def test_explicit_and_fused_attention_agree(config, batch, assert_close):
    torch.manual_seed(1)
    attention = BertSelfAttention(config).eval()
    hidden = torch.randn(3, 12, config.hidden_size)
    mask = additive_attention_mask(batch["attention_mask"], hidden.dtype)
    for name, m in [("padding mask", mask), ("no mask", None)]:
        fused, none = attention(hidden, m, output_attentions=False)
        explicit, probs = attention(hidden, m, output_attentions=True)
        assert none is None and probs.shape == (3, config.num_attention_heads, 12, 12)
        assert_close(f"self-attention explicit vs fused ({name})", explicit, fused, ATOL)

    ours, _ = make_pair(BertModel, config)
    fused = ours(**inputs(batch))
    explicit = ours(**inputs(batch), output_attentions=True)
    assert_close("BertModel explicit vs fused, last_hidden_state", explicit.last_hidden_state,
                 fused.last_hidden_state, ATOL)
    assert_close("BertModel explicit vs fused, pooler_output", explicit.pooler_output,
                 fused.pooler_output, ATOL)


def test_mask_is_skipped_when_nothing_is_padded():
    assert additive_attention_mask(torch.ones(2, 5, dtype=torch.long), torch.float32) is None
    mask = additive_attention_mask(torch.tensor([[1, 1, 0]]), torch.float32)
    assert mask.shape == (1, 1, 1, 3)
    assert mask[0, 0, 0, :2].eq(0).all() and mask[0, 0, 0, 2] == torch.finfo(torch.float32).min


# -- sparse MLM ------------------------------------------------------------------------------


@pytest.mark.parametrize("ours_class", [BertForPreTraining, BertForMaskedLM],
                         ids=lambda c: c.__name__)
def test_sparse_mlm_equals_dense(ours_class, config, batch, assert_close):
    ours, theirs = make_pair(ours_class, config)
    labels = batch["mlm_labels"]
    dense = ours(**inputs(batch), labels=labels)
    sparse = ours(**inputs(batch), labels=labels, masked_only=True)
    dense_logits = dense[1]  # prediction_logits / logits
    sparse_logits = sparse[1]
    is_masked = labels != -100
    assert sparse_logits.shape == (int(is_masked.sum()), config.vocab_size)
    assert_close(f"{ours_class.__name__} sparse logits vs dense rows", sparse_logits,
                 dense_logits[is_masked], ATOL)

    dense_mlm = getattr(dense, "masked_lm_loss", dense.loss)
    sparse_mlm = getattr(sparse, "masked_lm_loss", sparse.loss)
    theirs_mlm = torch.nn.functional.cross_entropy(
        theirs(**inputs(batch))[0].view(-1, config.vocab_size), labels.view(-1)
    )
    assert_close(f"{ours_class.__name__} sparse MLM loss vs dense", sparse_mlm, dense_mlm, ATOL)
    assert_close(f"{ours_class.__name__} sparse MLM loss vs transformers", sparse_mlm,
                 theirs_mlm, ATOL)

    # Same gradients too: the sparse path is the dense one minus unused work.
    sparse_mlm.backward()
    sparse_grads = {n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None}
    ours.zero_grad()
    dense_mlm.backward()
    worst = max((p.grad - sparse_grads[n]).abs().max().item()
                for n, p in ours.named_parameters() if p.grad is not None)
    print(f"{ours_class.__name__} sparse vs dense MLM gradients: max|diff| = {worst:.1e}")
    assert worst <= ATOL


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["", "checkpointing"])
def test_sparse_last_layer_changes_no_number(config, batch, assert_close, pre_layer_norm,
                                             checkpointing):
    """masked_only computes the last layer at the masked tokens and [CLS] only: the NSP logits,
    both losses and every gradient are those of the full computation (and of transformers)."""
    config = BertConfig(**{**config.to_dict(), "pre_layer_norm": pre_layer_norm})
    torch.manual_seed(0)
    ours = BertForPreTraining(config).eval()
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn_like(param), alpha=config.initializer_range)
    if checkpointing:
        ours.gradient_checkpointing_enable()
    labels = dict(labels=batch["mlm_labels"], next_sentence_label=batch["next_sentence_label"])
    results = {}
    for masked_only in (False, True):
        ours.zero_grad()
        out = ours(**inputs(batch), **labels, masked_only=masked_only)
        out.loss.backward()
        results[masked_only] = out, {n: p.grad.clone() for n, p in ours.named_parameters()}
    (dense, dense_grads), (sparse, sparse_grads) = results[False], results[True]
    for name in ("seq_relationship_logits", "masked_lm_loss", "next_sentence_loss", "loss"):
        assert_close(f"sparse vs dense {name}", getattr(sparse, name), getattr(dense, name), ATOL)
    for name, grad in dense_grads.items():
        assert_close(f"gradient of {name}", sparse_grads[name], grad, GRAD_ATOL)
    if not pre_layer_norm:
        theirs = transformers.BertForPreTraining._from_config(config.to_hf(),
                                                              attn_implementation="sdpa").eval()
        theirs.load_state_dict(ours.state_dict())
        reference = theirs(**inputs(batch), **labels)
        assert_close("sparse loss vs transformers", sparse.loss, reference.loss, ATOL)
        assert_close("sparse NSP logits vs transformers", sparse.seq_relationship_logits,
                     reference.seq_relationship_logits, ATOL)


def test_sparse_last_layer_through_lora_and_hooks(config, batch, assert_close):
    """The sparse last layer asks queries of the kept tokens only, so a hook on a projection
    sees them, and LoRA's wrapped projections take them: the loss is the dense one there too."""
    from bertlab.lora import apply_lora

    ours, _ = make_pair(BertForPreTraining, config)
    labels = batch["mlm_labels"]
    dense = ours(**inputs(batch), labels=labels).masked_lm_loss
    seen = []
    handle = ours.bert.encoder.layer[-1].attention.self.key.register_forward_hook(
        lambda module, args, output: seen.append(output.shape))
    hooked = ours(**inputs(batch), labels=labels, masked_only=True).masked_lm_loss
    handle.remove()
    assert seen == [(3, 12, config.hidden_size)]  # keys of every token, hook called
    assert_close("sparse with a hook vs dense", hooked, dense, ATOL)
    apply_lora(ours, targets=("query", "value"), r=2)
    with torch.no_grad():  # LoRA starts as the identity change: make it count
        for name, param in ours.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.3)
    dense = ours(**inputs(batch), labels=labels).masked_lm_loss
    sparse = ours(**inputs(batch), labels=labels, masked_only=True).masked_lm_loss
    assert_close("sparse with LoRA vs dense", sparse, dense, ATOL)


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["", "checkpointing"])
def test_classifier_computes_cls_alone_with_the_same_random_draws(config, batch, assert_close,
                                                                  pre_layer_norm, checkpointing):
    """A sentence classifier reads [CLS] only, so its last layer computes [CLS] only. Training
    with dropout: the loss, logits and gradients are the dense path's (every state asked for),
    and the generator ends where the dense path leaves it, so the next batch's masks agree."""
    config = BertConfig(**{**config.to_dict(), "pre_layer_norm": pre_layer_norm,
                           "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2})
    torch.manual_seed(0)
    ours = BertForSequenceClassification(config).train()
    if checkpointing:
        ours.gradient_checkpointing_enable()
    seen = []
    ours.bert.encoder.layer[-1].output.dense.register_forward_hook(
        lambda module, args, output: seen.append(output.shape[1]))
    results = {}
    for dense in (True, False):
        ours.zero_grad()
        torch.manual_seed(1)
        out = ours(**inputs(batch), labels=batch["class_labels"], output_hidden_states=dense)
        out.loss.backward()
        results[dense] = (out, {n: p.grad.clone() for n, p in ours.named_parameters()},
                          torch.rand(8))
    (dense, dense_grads, dense_next), (sparse, sparse_grads, sparse_next) = results.values()
    assert seen[-1] == 1  # the sparse pass: one row per sequence through the feed-forward block
    assert seen[0] == batch["input_ids"].shape[1]
    assert_close("sparse vs dense classifier loss", sparse.loss, dense.loss, ATOL)
    assert_close("sparse vs dense classifier logits", sparse.logits, dense.logits, ATOL)
    for name, grad in dense_grads.items():
        assert_close(f"gradient of {name}", sparse_grads[name], grad, GRAD_ATOL)
    assert torch.equal(sparse_next, dense_next), "the sparse path drew other random numbers"


def test_dropout_rows_are_rows_of_the_full_mask():
    """dropout_rows draws the mask nn.Dropout would draw for the whole tensor, bit for bit,
    and keeps the rows asked for (along dim 1 for states, dim 2 for attention)."""
    from bertlab.positions import dropout_rows

    dropout = torch.nn.Dropout(0.3).train()
    full = torch.randn(2, 3, 6, 5)
    positions = torch.tensor([[0, 4], [0, 2]])
    torch.manual_seed(7)
    expected = dropout(full)
    torch.manual_seed(7)
    rows = full.gather(2, positions[:, None, :, None].expand(2, 3, 2, 5))
    got = dropout_rows(dropout, rows, positions, 6, dim=2)
    assert torch.equal(got, expected.gather(2, positions[:, None, :, None].expand(2, 3, 2, 5)))
    states = torch.randn(2, 6, 4)
    torch.manual_seed(7)
    expected = dropout(states)
    torch.manual_seed(7)
    got = dropout_rows(dropout, states.gather(1, positions[..., None].expand(2, 2, 4)), positions, 6)
    assert torch.equal(got, expected.gather(1, positions[..., None].expand(2, 2, 4)))
    assert torch.equal(dropout_rows(dropout.eval(), rows, positions, 6, dim=2), rows)


def test_replaced_self_attention_still_works_with_cls_alone(config, batch, assert_close):
    """A self-attention put in by hand that does not take ``positions`` (notebook 10's prefix
    tuning) runs over every token; the layer keeps [CLS]'s row: the dense logits."""

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, hidden_states, attention_mask=None, output_attentions=False):
            return self.inner(hidden_states, attention_mask, output_attentions)

    ours, _ = make_pair(BertForSequenceClassification, config)
    expected = ours(**inputs(batch), output_hidden_states=True).logits
    for block in ours.bert.encoder.layer:
        block.attention.self = Wrapped(block.attention.self)
    assert_close("replaced self-attention, [CLS] alone vs dense",
                 ours(**inputs(batch)).logits, expected, ATOL)


# -- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ours_class", list(PAIRS), ids=lambda c: c.__name__)
def test_transformers_loads_our_checkpoint(ours_class, config, batch, tmp_path, assert_close):
    ours, _ = make_pair(ours_class, config)
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    theirs, info = AUTO[ours_class].from_pretrained(tmp_path, output_loading_info=True)
    assert type(theirs) is PAIRS[ours_class]
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    a, b = ours(**inputs(batch)), theirs.eval()(**inputs(batch))
    assert_close(f"{ours_class.__name__} saved by bertlab, run by transformers", a[0], b[0], ATOL)


@pytest.mark.parametrize("ours_class", list(PAIRS), ids=lambda c: c.__name__)
def test_we_load_transformers_checkpoint(ours_class, config, batch, tmp_path, assert_close):
    _, theirs = make_pair(ours_class, config, seed=3)
    theirs.save_pretrained(tmp_path)
    ours, info = ours_class.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    assert not ours.training  # from_pretrained returns eval mode, as transformers does
    assert ours.config == config
    a, b = ours(**inputs(batch)), theirs(**inputs(batch))
    assert_close(f"{ours_class.__name__} saved by transformers, run by bertlab", a[0], b[0], ATOL)
    if hasattr(ours, "cls"):  # the decoder is still tied after loading
        assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
        assert ours.cls.predictions.decoder.bias is ours.cls.predictions.bias


def test_load_across_heads(config, batch, tmp_path):
    """As in transformers: an encoder checkpoint feeds any head; unused heads are left out."""
    pretrained, _ = make_pair(BertForPreTraining, config)
    pretrained.save_pretrained(tmp_path / "pretraining")
    classifier, info = BertForSequenceClassification.from_pretrained(
        tmp_path / "pretraining", output_loading_info=True
    )
    assert info["missing_keys"] == ["classifier.weight", "classifier.bias"]
    assert info["unexpected_keys"] and all(k.startswith("cls.") for k in info["unexpected_keys"])
    for name, tensor in pretrained.bert.state_dict().items():
        assert torch.equal(classifier.bert.state_dict()[name], tensor), name

    # A bare BertModel checkpoint has no "bert." prefix, like MiniLM's.
    encoder = BertModel.from_pretrained(tmp_path / "pretraining")
    encoder.save_pretrained(tmp_path / "encoder")
    again, info = BertForPreTraining.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert all(k.startswith("cls.") for k in info["missing_keys"]) and not info["unexpected_keys"]
    ids = inputs(batch)
    torch.testing.assert_close(again.bert(**ids).last_hidden_state,
                               pretrained.bert(**ids).last_hidden_state, atol=0, rtol=0)


def test_old_layer_norm_names_load(config, batch, tmp_path):
    """Checkpoints converted from the original TensorFlow BERT call LayerNorm's scale and
    shift gamma and beta, and carry the position_ids buffer; both load as transformers does."""
    from safetensors.torch import save_file

    ours, _ = make_pair(BertModel, config)
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
             "LayerNorm.beta"): v for k, v in ours.state_dict().items()}
    state["embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    config.save(tmp_path)
    save_file(state, tmp_path / "model.safetensors")
    loaded, info = BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    torch.testing.assert_close(loaded(**inputs(batch)).last_hidden_state,
                               ours(**inputs(batch)).last_hidden_state, atol=0, rtol=0)


def test_bfloat16_autocast_runs_both_paths(config, batch):
    """Mixed precision (as the training loop uses it): finite, and close to float32."""
    ours, _ = make_pair(BertForPreTraining, config)
    labels = {"labels": batch["mlm_labels"], "next_sentence_label": batch["next_sentence_label"]}
    reference = ours(**inputs(batch), **labels).loss
    for explicit in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ours(**inputs(batch), **labels, output_attentions=explicit)
        out.loss.backward()
        assert torch.isfinite(out.loss) and abs(out.loss.item() - reference.item()) < 0.05
        assert all(torch.isfinite(p.grad).all() for p in ours.parameters())


def test_from_pretrained_config_overrides(config, tmp_path):
    make_pair(BertForSequenceClassification, config)[0].save_pretrained(tmp_path)
    model = BertForSequenceClassification.from_pretrained(tmp_path, classifier_dropout=0.25)
    assert model.dropout.p == 0.25 and model.config.num_labels == 3


# -- initialisation and outputs --------------------------------------------------------------


def test_reference_initialisation():
    config = BertConfig.named("tiny", vocab_size=3000, initializer_range=0.05)
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight is embeddings  # tied
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert embeddings[config.pad_token_id].abs().max() == 0  # [PAD] row
    for name, param in model.named_parameters():
        if "LayerNorm" in name:
            expected = 1.0 if name.endswith("weight") else 0.0
            assert param.eq(expected).all(), name
        elif name.endswith("bias"):
            assert param.eq(0).all(), name
        else:
            assert abs(param.mean().item()) < 0.01, name
            assert abs(param.std().item() - 0.05) < 0.005, name


def test_output_indexing(config, batch):
    ours, _ = make_pair(BertForSequenceClassification, config)
    out = ours(**inputs(batch), labels=batch["class_labels"])
    assert out[0] is out.loss and out[1] is out.logits and out["logits"] is out.logits
    assert len(out.to_tuple()) == 2  # unset fields are skipped, as in transformers
