"""The pieces the notebooks write from scratch agree, number for number, with bertlab and torch.

Each notebook marks its from-scratch definitions with ``# export`` (see ``tests/nbdefs.py``);
these tests load exactly those cells, without running the notebook, and compare them with the
``bertlab`` counterpart and the PyTorch / ``transformers`` reference on the same weights and
inputs. One section per notebook: to cover a new notebook, add a ``defs_NN`` fixture and its
``test_NN_*`` functions. Run with ``-s`` to see every max |diff|.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from nbdefs import load_definitions
from torch import nn

from bertlab.config import NAMED_SIZES, BertConfig, count_parameters
from bertlab.data.sources import minilm_dir
from bertlab.model import BertModel, BertSelfAttention, additive_attention_mask

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TESTS = Path(__file__).resolve().parent


def definitions(name: str) -> dict:
    """The ``# export`` definitions of ``notebooks/<name>.ipynb``."""
    return load_definitions(NOTEBOOKS / f"{name}.ipynb")


def padding_mask(lengths: list[int], seq: int) -> torch.Tensor:
    """(batch, seq) 0/1 mask, as a tokenizer returns it, for sequences of these lengths."""
    return (torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]).long()


# ---------------------------------------------------------------------------------------------
# Notebook 01: attention
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defs_01() -> dict:
    return definitions("01_attention")


def test_01_exports_the_expected_names(defs_01):
    for name in (
        "scaled_dot_product_attention",
        "split_heads",
        "merge_heads",
        "MultiHeadAttention",
    ):
        assert name in defs_01, f"notebook 01 no longer exports {name}"


def test_01_attention_matches_torch(defs_01, assert_close):
    attend = defs_01["scaled_dot_product_attention"]
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 9, 16) for _ in range(3))
    mask = padding_mask([9, 6, 2], 9).bool()[:, None, None, :]

    out, weights = attend(q, k, v)
    assert_close("01 attention vs F.sdpa", out, F.scaled_dot_product_attention(q, k, v), 1e-6)
    out, weights = attend(q, k, v, mask)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close("01 masked attention vs F.sdpa", out, reference, 1e-6)
    assert weights.masked_select(~mask.expand_as(weights)).abs().max() == 0  # padding: exactly 0
    assert_close("01 weights sum to 1", weights.sum(-1), torch.ones(3, 4, 9), 1e-6)

    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close("01 causal attention vs F.sdpa", attend(q, k, v, causal)[0], reference, 1e-6)


def test_01_split_and_merge_heads(defs_01):
    split, merge = defs_01["split_heads"], defs_01["merge_heads"]
    x = torch.randn(2, 5, 12)
    heads = split(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 2, 1], x[:, 1, 8:12])  # head h owns features h*d .. (h+1)*d - 1
    assert torch.equal(merge(heads), x)


def test_01_multi_head_matches_nn_multihead_attention(defs_01, assert_close):
    torch.manual_seed(0)
    ours = defs_01["MultiHeadAttention"](48, 6).eval()
    reference = nn.MultiheadAttention(48, 6, batch_first=True).eval()
    projections = (ours.query, ours.key, ours.value)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        reference.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
        reference.out_proj.load_state_dict(ours.output.state_dict())
        x, mask = torch.randn(3, 7, 48), padding_mask([7, 5, 1], 7)
        out, weights = ours(x, mask)
        ref_out, ref_weights = reference(
            x, x, x, key_padding_mask=mask == 0, average_attn_weights=False
        )
    assert_close("01 MultiHeadAttention output vs nn.MultiheadAttention", out, ref_out, 1e-6)
    assert_close(
        "01 MultiHeadAttention weights vs nn.MultiheadAttention", weights, ref_weights, 1e-6
    )


def test_01_multi_head_matches_bertlab_self_attention(defs_01, assert_close):
    """The notebook's module is bertlab's BertSelfAttention (+ the output projection of
    BertSelfOutput), on both of bertlab's attention paths."""
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=1,
        intermediate_size=128,
        vocab_size=100,
    )
    bertlab_attention = BertSelfAttention(config).eval()
    output_projection = nn.Linear(64, 64)
    ours = defs_01["MultiHeadAttention"](64, 4).eval()
    for name in ("query", "key", "value"):
        getattr(ours, name).load_state_dict(getattr(bertlab_attention, name).state_dict())
    ours.output.load_state_dict(output_projection.state_dict())

    x, mask = torch.randn(3, 8, 64), padding_mask([8, 5, 2], 8)
    additive = additive_attention_mask(mask, x.dtype)
    with torch.no_grad():
        out, weights = ours(x, mask)
        context, probs = bertlab_attention(x, additive, output_attentions=True)
        fused_context, _ = bertlab_attention(x, additive, output_attentions=False)
        assert_close("01 weights vs bertlab explicit path", weights, probs, 1e-6)
        assert_close("01 output vs bertlab explicit path", out, output_projection(context), 1e-6)
        assert_close("01 output vs bertlab fused path", out, output_projection(fused_context), 1e-5)


def test_01_multi_head_refuses_heads_that_do_not_divide_the_width(defs_01):
    with pytest.raises(ValueError, match="not divisible"):
        defs_01["MultiHeadAttention"](30, 4)


# ---------------------------------------------------------------------------------------------
# Notebook 02: the BERT architecture
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defs_02() -> dict:
    return definitions("02_bert_architecture")


@pytest.fixture(scope="module")
def tiny_models(defs_02):
    """A random bertlab tiny model, and the notebook's ``Bert`` and ``transformers.BertModel``
    carrying the same weights (loaded strictly: every name must match)."""
    torch.manual_seed(0)
    config = BertConfig.named("tiny", vocab_size=1000, max_position_embeddings=64)
    reference = BertModel(config).eval()
    ours = defs_02["Bert"](config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    hf = transformers.BertModel(config.to_hf()).eval()
    hf.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference, hf


@pytest.fixture(scope="module")
def tiny_batch():
    """Three sequences of different lengths, padded, each with two segments."""
    torch.manual_seed(1)
    input_ids = torch.randint(1, 1000, (3, 10))
    attention_mask = padding_mask([10, 7, 3], 10)
    token_type_ids = (torch.arange(10)[None, :] >= torch.tensor([5, 4, 2])[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": token_type_ids}  # fmt: skip


def test_02_exports_the_expected_names(defs_02):
    names = ("LayerNorm", "Embeddings", "SelfAttention", "AddNorm", "EncoderLayer", "Pooler",
             "Bert", "parameter_count")  # fmt: skip
    for name in names:
        assert name in defs_02, f"notebook 02 no longer exports {name}"


# Tolerances: float32 resolves a hidden-state entry of size ~4 to ~5e-7, and the notebook's
# LayerNorm rounds differently from PyTorch's kernel, so hidden states get 1e-5 in float32
# (measured: about 1e-6); tanh-bounded pooled outputs get 1e-6. In float64, 1e-12.


def test_02_layer_norm_matches_torch(defs_02, assert_close):
    torch.manual_seed(0)
    ours, reference = defs_02["LayerNorm"](96, eps=1e-12), nn.LayerNorm(96, eps=1e-12)
    x = 3 * torch.randn(4, 7, 96) + 1
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        reference.load_state_dict(ours.state_dict())
        assert_close("02 LayerNorm vs nn.LayerNorm", ours(x), reference(x), 1e-5)
        ours, reference, x = ours.double(), reference.double(), x.double()
        assert_close("02 LayerNorm vs nn.LayerNorm, float64", ours(x), reference(x), 1e-12)


def test_02_embeddings_match_bertlab(tiny_models, tiny_batch, assert_close):
    ours, reference, _ = tiny_models
    ids, segments = tiny_batch["input_ids"], tiny_batch["token_type_ids"]
    with torch.no_grad():
        mine, theirs = ours.embeddings(ids, segments), reference.embeddings(ids, segments)
        assert_close("02 Embeddings vs bertlab BertEmbeddings", mine, theirs, 1e-5)
        mine, theirs = ours.embeddings(ids), reference.embeddings(ids)
        assert_close("02 Embeddings vs bertlab, default segments", mine, theirs, 1e-5)


def test_02_encoder_layer_matches_bertlab_layer(tiny_models, tiny_batch, assert_close):
    ours, reference, _ = tiny_models
    mask = tiny_batch["attention_mask"]
    with torch.no_grad():
        x = reference.embeddings(tiny_batch["input_ids"], tiny_batch["token_type_ids"])
        mine = ours.encoder["layer"][0](x, mask.bool()[:, None, None, :])
        additive = additive_attention_mask(mask, x.dtype)
        explicit, _ = reference.encoder.layer[0](x, additive, True)
        fused, _ = reference.encoder.layer[0](x, additive, False)
    assert_close("02 EncoderLayer vs bertlab BertLayer, explicit path", mine, explicit, 1e-5)
    assert_close("02 EncoderLayer vs bertlab BertLayer, fused path", mine, fused, 1e-5)


def _compare_models(ours, reference, hf, batch, assert_close, tol_hidden, tol_pooled, label):
    with torch.no_grad():
        hidden, pooled = ours(**batch)
        for name, theirs in (("bertlab", reference(**batch)), ("transformers", hf(**batch))):
            assert_close(f"02 Bert hidden states vs {name}, {label}", hidden,
                         theirs.last_hidden_state, tol_hidden)  # fmt: skip
            assert_close(f"02 Bert pooled vs {name}, {label}", pooled, theirs.pooler_output,
                         tol_pooled)  # fmt: skip


def test_02_model_matches_bertlab_and_transformers(tiny_models, tiny_batch, assert_close):
    ours, reference, hf = tiny_models
    _compare_models(ours, reference, hf, tiny_batch, assert_close, 1e-5, 1e-6, "float32")
    as_double = [copy.deepcopy(model).double() for model in tiny_models]
    _compare_models(*as_double, tiny_batch, assert_close, 1e-12, 1e-12, "float64")


def test_02_model_with_minilm_weights_matches_transformers(defs_02, assert_close):
    from safetensors.torch import load_file

    directory = minilm_dir()
    state = load_file(directory / "model.safetensors")
    state.pop("embeddings.position_ids")  # a buffer of old transformers versions, not a weight
    ours = defs_02["Bert"](BertConfig.load(directory)).eval()
    ours.load_state_dict(state, strict=True)
    reference = BertModel.from_pretrained(directory)
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" on stderr
    try:
        hf = transformers.BertModel.from_pretrained(directory).eval()
    finally:
        transformers.utils.logging.enable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    sentences = ["A man is playing a guitar.", "Shares dropped steeply this morning.", "Hi."]
    batch = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    real = batch["attention_mask"].bool()  # float32 output at padding positions is junk
    with torch.no_grad():
        hidden, pooled = ours(**batch)
        expected = hf(**batch)
    assert_close("02 MiniLM hidden states (real tokens) vs transformers, float32", hidden[real],
                 expected.last_hidden_state[real], 1e-5)  # fmt: skip
    assert_close("02 MiniLM pooled vs transformers, float32", pooled, expected.pooler_output,
                 1e-6)  # fmt: skip
    _compare_models(ours.double(), reference.double(), hf.double(), batch, assert_close,
                    1e-12, 1e-12, "MiniLM, float64, every position")  # fmt: skip


def test_02_parameter_count_matches_bertlab_and_the_models(defs_02):
    closed_form = defs_02["parameter_count"]
    configs = [BertConfig.named(size) for size in NAMED_SIZES]
    configs += [
        BertConfig.load(minilm_dir()),
        BertConfig.named("mini", vocab_size=8000, intermediate_size=700),
    ]
    for config in configs:
        total = sum(closed_form(config).values())
        assert total == count_parameters(config)
        with torch.device("meta"):  # shapes only: BERT-large costs no memory
            assert total == sum(p.numel() for p in defs_02["Bert"](config).parameters())
    assert sum(closed_form(BertConfig.named("base")).values()) == 109_482_240
    assert round(sum(closed_form(BertConfig.named("large")).values()) / 1e6) == 335


# ---------------------------------------------------------------------------------------------
# The harness itself: nbdefs and the nbval sanitize file
# ---------------------------------------------------------------------------------------------


def _notebook(tmp_path: Path, *sources: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_load_definitions_runs_only_export_cells(tmp_path):
    path = _notebook(
        tmp_path,
        "# export\nimport math\n\ndef area(r):\n    return math.pi * r * r",
        "raise RuntimeError('an ordinary cell must not run')",
        "#export is not the marker\nraise RuntimeError('nor this one')",
        "# export\nclass Circle:\n    pass\nUNIT = 1.0",
    )
    names = load_definitions(path)
    assert sorted(names) == ["Circle", "UNIT", "area", "math"]
    assert names["area"](1.0) == pytest.approx(3.141592653589793)


def test_load_definitions_refuses_work_and_empty_notebooks(tmp_path):
    with pytest.raises(ValueError, match="Move the work into an ordinary cell"):
        load_definitions(_notebook(tmp_path, "# export\nimport torch\nprint(torch.ones(1))"))
    with pytest.raises(ValueError, match="no code cell whose first line is '# export'"):
        load_definitions(_notebook(tmp_path, "x = 1"))
    with pytest.raises(ValueError, match="magics"):
        load_definitions(_notebook(tmp_path, "# export\n%matplotlib inline"))
    with pytest.raises(FileNotFoundError):
        load_definitions(tmp_path / "missing.ipynb")


def _sanitize(text: str) -> str:
    """Apply tests/nbval_sanitize.cfg the way nbval does (its own parser, in file order)."""
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((TESTS / "nbval_sanitize.cfg").read_text(encoding="utf-8"))
    for regex, replacement in patterns:
        text = re.sub(regex, replacement, text)
    return text


@pytest.mark.parametrize(
    ("varying", "expected"),
    [
        ("100%|██████████| 50/50 [00:03<00:00, 14.21it/s, loss=2.31]", "PCT|BAR| 50/50 [ELAPSED]"),
        ("epoch 1: 12.3 s, 1,234 tokens/s, 3.2s/it", "epoch 1: TIME, RATE, RATE"),
        ("took 350 ms, then 2 min", "took TIME, then TIME"),
        ("Wall time: 1.25 s", "Wall time: TIME"),
        ("<torch.nn.Linear object at 0x7f3a2b1c4d90>", "<torch.nn.Linear object at 0xADDRESS>"),
        ("saved to /tmp/tmpab12/ckpt/model.safetensors", "saved to PATH"),
        ("'/work/main/data/cache/x.csv'", "'PATH'"),
        ("File /root/.cache/x.py:3", "File PATH:3"),
    ],
)
def test_sanitize_replaces_what_varies(varying, expected):
    assert _sanitize(varying) == expected


@pytest.mark.parametrize(
    "meaningful",
    [
        "ours vs transformers: max |diff| < 1e-06",
        "loss 10.33, accuracy 0.51, perplexity 2.5e+04",
        "BERT-base: 109,482,240 parameters (109.5M); 12 layers, 12 heads",
        "Var(q·k) =   63.9,  speeches of the 1990s, 3 epochs, lr 1e-4",
        "tokens per sentence: 23.4, 12 tokens/sentence",
    ],
)
def test_sanitize_keeps_figures_that_matter(meaningful):
    assert _sanitize(meaningful) == meaningful
