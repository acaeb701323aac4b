"""bertlab.config. BertConfig: transformers' field names, both-way conversion, named sizes,
parameter count. TrainConfig: every setting of a run, checked as it is built."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers

from bertlab import BertConfig, count_parameters
from bertlab.config import (
    HEADS,
    NAMED_SIZES,
    NAN_POLICIES,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    configure,
)
from bertlab.heads import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from bertlab.model import BertModel

MODEL_FOR_HEAD = {
    "base": BertModel,
    "pretraining": BertForPreTraining,
    "masked_lm": BertForMaskedLM,
    "sequence_classification": BertForSequenceClassification,
    "token_classification": BertForTokenClassification,
}
# transformers' fields; pre_layer_norm is bertlab's own (tests/test_pre_layer_norm.py)
FIELDS = [f.name for f in dataclasses.fields(BertConfig) if f.name != "pre_layer_norm"]


def test_fields_and_defaults_are_transformers_own():
    hf = transformers.BertConfig()
    for name in FIELDS:
        if name == "id2label":
            continue  # None here means transformers' default names LABEL_0, LABEL_1, ...
        assert getattr(BertConfig(), name) == getattr(hf, name), name


@pytest.mark.parametrize(
    "config",
    [
        BertConfig(),
        BertConfig.named("tiny", vocab_size=1000, hidden_act="relu", classifier_dropout=0.3),
        BertConfig.named("mini", num_labels=1, pad_token_id=None, layer_norm_eps=1e-6),
        BertConfig.named("tiny", num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}),
    ],
    ids=["default", "tiny", "regression", "named-labels"],
)
def test_round_trip_through_transformers(config):
    hf = config.to_hf()
    assert isinstance(hf, transformers.BertConfig)
    for name in FIELDS:
        if name != "id2label":
            assert getattr(hf, name) == getattr(config, name), name
    assert hf.id2label == (config.id2label or {i: f"LABEL_{i}" for i in range(config.num_labels)})
    assert BertConfig.from_hf(hf) == config
    assert BertConfig.from_hf(hf.to_dict()) == config
    assert BertConfig.from_dict(config.to_dict()) == config


def test_from_transformers_config():
    hf = transformers.BertConfig(hidden_size=96, num_attention_heads=3, num_labels=5,
                                 max_position_embeddings=128, hidden_dropout_prob=0.2)
    config = BertConfig.from_hf(hf)
    assert (config.hidden_size, config.num_attention_heads, config.num_labels) == (96, 3, 5)
    assert config.max_position_embeddings == 128 and config.hidden_dropout_prob == 0.2
    assert config.id2label is None  # transformers' default names are not kept


def test_save_load_both_ways(tmp_path):
    config = BertConfig.named("tiny", vocab_size=500, num_labels=2, id2label={0: "no", 1: "yes"})
    config.save(tmp_path / "ours", architectures=["BertForSequenceClassification"])
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["model_type"] == "bert"
    assert written["architectures"] == ["BertForSequenceClassification"]
    assert BertConfig.load(tmp_path / "ours") == config

    hf = transformers.AutoConfig.from_pretrained(tmp_path / "ours")
    assert isinstance(hf, transformers.BertConfig)
    assert BertConfig.from_hf(hf) == config
    assert hf.num_labels == 2 and hf.id2label == {0: "no", 1: "yes"}

    hf.save_pretrained(tmp_path / "theirs")
    assert BertConfig.load(tmp_path / "theirs") == config


def test_load_refuses_other_models(tmp_path):
    for changes, match in [
        ({"model_type": "roberta"}, "'roberta' model"),
        ({"is_decoder": True}, "decoder"),
        ({"position_embedding_type": "relative_key"}, "relative"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", **changes}))
        with pytest.raises(ValueError, match=match):
            BertConfig.load(tmp_path)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No config.json"):
        BertConfig.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        BertConfig.load(tmp_path)


def test_from_dict_names_unknown_fields():
    with pytest.raises(ValueError, match="Unknown BertConfig field.*hiden_size"):
        BertConfig.from_dict({"hiden_size": 128})


@pytest.mark.parametrize("name", list(NAMED_SIZES))
def test_named_sizes(name):
    layers, hidden = NAMED_SIZES[name]
    config = BertConfig.named(name, vocab_size=777)
    assert (config.num_hidden_layers, config.hidden_size) == (layers, hidden)
    assert config.num_attention_heads == hidden // 64 and config.head_size == 64
    assert config.intermediate_size == 4 * hidden and config.vocab_size == 777


def test_named_size_table():
    assert {name: NAMED_SIZES[name] for name in NAMED_SIZES} == {
        "tiny": (2, 128), "mini": (4, 256), "small": (4, 512),
        "medium": (8, 512), "base": (12, 768), "large": (24, 1024),
    }


def test_unknown_size_lists_the_names():
    with pytest.raises(ValueError, match="tiny, mini, small, medium, base, large"):
        BertConfig.named("huge")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"hidden_size": 100, "num_attention_heads": 12}, ValueError,
         "hidden_size=100 is not divisible by num_attention_heads=12.*Choose a head count"),
        ({"num_hidden_layers": 0}, ValueError, "num_hidden_layers must be at least 1"),
        ({"vocab_size": 30522.0}, TypeError, "vocab_size must be an int"),
        ({"hidden_dropout_prob": 1.0}, ValueError, r"hidden_dropout_prob=1.0 must be .* \[0, 1\)"),
        ({"classifier_dropout": -0.1}, ValueError, "classifier_dropout"),
        ({"hidden_act": "gelu_fast"}, ValueError, "hidden_act='gelu_fast'.*gelu, gelu_new"),
        ({"layer_norm_eps": 0}, ValueError, "layer_norm_eps"),
        ({"pad_token_id": 30522}, ValueError, "pad_token_id"),
        ({"num_labels": 2, "id2label": {0: "a", 1: "b", 2: "c"}}, ValueError, "num_labels=3"),
    ],
)
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        BertConfig(**kwargs)


@pytest.mark.parametrize("name", list(NAMED_SIZES))
def test_count_parameters_matches_the_model(name):
    config = BertConfig.named(name, num_labels=3)
    for head, model_class in MODEL_FOR_HEAD.items():
        with torch.device("meta"):  # shapes only: BERT-large is never allocated
            model = model_class(config)
        counted = sum(p.numel() for p in model.parameters())  # tied weights counted once
        assert count_parameters(config, head) == counted, (name, head)


def test_bert_base_parameter_count_equals_transformers():
    config = BertConfig.named("base")
    assert config == BertConfig()  # the defaults are BERT-base
    with torch.device("meta"):
        hf = transformers.BertModel(config.to_hf())
    hf_count = sum(p.numel() for p in hf.parameters())
    print(f"BERT-base parameters: bertlab {count_parameters(config):,}, transformers {hf_count:,}")
    assert count_parameters(config) == hf_count == 109_482_240


def test_count_parameters_rejects_unknown_head():
    with pytest.raises(ValueError, match="Unknown head 'qa'.*" + ", ".join(HEADS)):
        count_parameters(BertConfig(), "qa")


# -- TrainConfig -----------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"lr": 0}, "lr must be a positive number"),
    ({"lr": -1e-4}, "lr must be a positive number"),
    ({"lr": float("nan")}, "lr must be a positive number"),
    ({"grad_accum_steps": 0}, "grad_accum_steps must be an integer >= 1"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"precision": "fp8"}, "unknown precision 'fp8'; choose one of " + ", ".join(PRECISIONS)),
    ({"schedule": "step"}, "unknown schedule 'step'; choose one of " + ", ".join(SCHEDULES)),
    ({"nan_policy": "ignore"}, "unknown nan_policy 'ignore'; choose one of "
                               + ", ".join(NAN_POLICIES)),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio must be in \[0, 1\)"),
    ({"eval_every": 0}, "eval_every must be None or an integer >= 1"),
    ({"keep_checkpoints": 0}, "keep_checkpoints must be None or an integer >= 1"),
    ({"max_grad_norm": 0}, "max_grad_norm must be None"),
])
def test_bad_train_settings_raise_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
    with pytest.raises(ValueError, match=message):  # the same as overrides of a config
        configure(TrainConfig(), settings)


def test_configure_overrides_fields_and_names_unknown_ones():
    assert configure(None, {}) == TrainConfig()
    base = TrainConfig(lr=3e-4, masked_only=False)
    changed = configure(base, {"batch_size": 8, "device": "cpu"})
    assert (changed.lr, changed.batch_size, changed.device, changed.masked_only) == (
        3e-4, 8, "cpu", False)
    assert base.batch_size == 32  # the config passed in is left as it was
    with pytest.raises(TypeError, match=r"unknown training setting\(s\) \['sparse_mlm'\].*"
                                        "masked_only"):
        configure(None, {"sparse_mlm": True})  # the old name of masked_only
