"""Every knob: the hyper-parameters of a BERT model, and the settings of a training run.

A :class:`BertConfig` is a plain dataclass. Its field names and defaults are those of
``transformers.BertConfig`` (the defaults describe BERT-base), so a learner can move between the
two without a dictionary, and a ``config.json`` written here is read by ``transformers`` as is::

    config = BertConfig.named("mini", vocab_size=8_000)   # 4 layers, hidden size 256
    config.to_hf()                                          # -> transformers.BertConfig
    BertConfig.from_hf(hf_config)                           # <- transformers.BertConfig
    config.save("out/")  /  BertConfig.load("out/")         # config.json

:func:`count_parameters` counts the weights of a model in closed form, without building it.

A :class:`TrainConfig` holds every setting of ``bertlab.train`` (learning rate and schedule,
batching, precision, evaluation and early stopping, checkpoints), checked as it is built so a
typo fails at once rather than an hour into a run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from bertlab.files import CONFIG_NAME, atomic_write

__all__ = ["ACTIVATIONS", "HEADS", "NAMED_SIZES", "NAN_POLICIES", "PRECISIONS",
           "PRE_LN_MODEL_TYPE", "SCHEDULES", "BertConfig", "TrainConfig", "configure",
           "count_parameters"]

#: Activation functions the feed-forward block understands (the names ``transformers`` uses).
#: "gelu" is the exact, erf-based GELU of the original BERT.
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")

#: layers / hidden size of the BERT family in the google-research/bert README (the 24 small
#: models plus BERT-base and BERT-large). Heads are hidden / 64 and the feed-forward block is
#: 4 x hidden, as in every model of that table.
NAMED_SIZES: dict[str, tuple[int, int]] = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


#: ``model_type`` of a pre-LN model's config.json: not "bert", so that ``transformers`` (whose
#: BERT is post-LN) refuses the folder instead of loading the weights into the wrong places.
PRE_LN_MODEL_TYPE = "bertlab-pre-ln"


@dataclass
class BertConfig:
    """Everything needed to build a BERT model. Defaults are BERT-base (as in ``transformers``).

    Attributes:
        vocab_size: number of token ids the embedding table holds.
        hidden_size: width of every hidden state (``H``).
        num_hidden_layers: number of encoder layers (``L``).
        num_attention_heads: heads per self-attention block; must divide ``hidden_size``.
        intermediate_size: width of the feed-forward block (``4 H`` in BERT).
        hidden_act: the feed-forward activation, one of :data:`ACTIVATIONS`.
        hidden_dropout_prob: dropout on embeddings and on each sub-layer's output.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        max_position_embeddings: longest sequence the model can read.
        type_vocab_size: number of segment ids (2: sentence A and sentence B).
        initializer_range: standard deviation of the normal initialisation.
        layer_norm_eps: epsilon of every LayerNorm.
        pad_token_id: id of ``[PAD]``; its embedding row starts at zero and gets no gradient.
        num_labels: classes of a classification head (1 means regression).
        classifier_dropout: dropout before a classification head (``None``: hidden_dropout_prob).
        id2label: optional class names, ``{0: "negative", 1: "positive"}``.
        pre_layer_norm: bertlab's one departure from BERT, off by default. ``True`` moves each
            sub-layer's LayerNorm to its input, ``x + f(LN(x))``, and adds a final LayerNorm
            after the last layer (pre-LN: Xiong et al. 2020; used by cramming, Geiping and
            Goldstein 2022). ``transformers``' BERT is post-LN and cannot run such a model, so
            :meth:`to_hf` refuses it and ``config.json`` names it ``model_type``
            :data:`PRE_LN_MODEL_TYPE`, which ``transformers`` does not load.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    num_labels: int = 2
    classifier_dropout: float | None = None
    id2label: dict[int, str] | None = None
    pre_layer_norm: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size",
                     "num_labels"):
            _check_positive_int(name, getattr(self, name))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}: each head gets hidden_size / num_attention_heads "
                f"features. Choose a head count that divides {self.hidden_size} (BERT uses "
                f"hidden_size / 64, here {max(1, self.hidden_size // 64)})."
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not a known activation; use one of "
                f"{', '.join(ACTIVATIONS)} ('gelu' is BERT's)."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            p = getattr(self, name)
            if p is None and name == "classifier_dropout":
                continue
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
                raise ValueError(f"{name}={p!r} must be a probability in [0, 1), e.g. 0.1.")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}={value!r} must be a positive number.")
        if not isinstance(self.pre_layer_norm, bool):
            raise TypeError(f"pre_layer_norm must be True or False, got {self.pre_layer_norm!r}.")
        if self.pad_token_id is not None and not (
            isinstance(self.pad_token_id, int) and 0 <= self.pad_token_id < self.vocab_size
        ):
            raise ValueError(
                f"pad_token_id={self.pad_token_id!r} must be a token id in [0, vocab_size="
                f"{self.vocab_size}) or None."
            )
        if self.id2label is not None:
            # JSON turns the integer keys into strings; take them back.
            self.id2label = {int(i): str(name) for i, name in self.id2label.items()}
            if sorted(self.id2label) != list(range(len(self.id2label))):
                raise ValueError(f"id2label keys must be 0..n-1; got {sorted(self.id2label)}.")
            if len(self.id2label) != self.num_labels:
                raise ValueError(
                    f"id2label names {len(self.id2label)} classes but num_labels="
                    f"{self.num_labels}; pass num_labels={len(self.id2label)} as well."
                )

    # -- derived sizes ------------------------------------------------------------------------

    @property
    def head_size(self) -> int:
        """Features per attention head (``d`` in ``softmax(QKᵀ/√d)``): 64 in every BERT."""
        return self.hidden_size // self.num_attention_heads

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in _label_names(self).items()}

    # -- named sizes --------------------------------------------------------------------------

    @classmethod
    def named(cls, name: str, **overrides: Any) -> BertConfig:
        """A configuration from the google-research/bert size table, e.g. ``named("tiny")``.

        Heads are ``hidden / 64`` and the feed-forward block is ``4 * hidden``; any field can be
        overridden, e.g. ``named("mini", vocab_size=8000, max_position_embeddings=128)``.
        """
        if name not in NAMED_SIZES:
            raise ValueError(
                f"Unknown size {name!r}; the named sizes are {', '.join(NAMED_SIZES)}."
            )
        layers, hidden = NAMED_SIZES[name]
        sizes = dict(num_hidden_layers=layers, hidden_size=hidden,
                     num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
        return cls(**{**sizes, **overrides})

    # -- conversions --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dictionary (a copy)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BertConfig:
        """Build from :meth:`to_dict`'s output. Unknown keys are an error (they are usually typos).

        To read a ``transformers`` dictionary with its many extra keys, use :meth:`from_hf`.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown BertConfig field(s): {', '.join(unknown)}. Known fields: "
                f"{', '.join(sorted(known))}. For a transformers config.json use "
                "BertConfig.load(folder) or BertConfig.from_hf(...)."
            )
        return cls(**values)

    def to_hf(self):
        """The same configuration as a ``transformers.BertConfig`` (post-LN models only)."""
        from transformers import BertConfig as HFBertConfig  # lazily: only this needs transformers

        if self.pre_layer_norm:
            raise ValueError(
                "This is a pre-LN model (pre_layer_norm=True); transformers' BertModel is post-LN "
                "and would run these weights as a different network. Keep it in bertlab "
                "(save_pretrained / from_pretrained), or train with pre_layer_norm=False."
            )
        values = self.to_dict()
        del values["pre_layer_norm"]  # not a transformers field
        values["id2label"] = _label_names(self)
        values["label2id"] = self.label2id
        del values["num_labels"]  # transformers derives it from id2label
        return HFBertConfig(**values)

    @classmethod
    def from_hf(cls, hf_config: Any) -> BertConfig:
        """Convert a ``transformers.BertConfig`` (or its ``to_dict()``) to a bertlab config.

        Settings that would build a different model than bertlab's encoder (a decoder,
        cross-attention, relative positions, another architecture) are refused, not ignored.
        """
        values = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
        return _from_hf_dict(values, source="the transformers config")

    # -- files --------------------------------------------------------------------------------

    def to_json_dict(self, architectures: list[str] | None = None) -> dict[str, Any]:
        """What :meth:`save` writes: the fields plus the keys ``transformers`` needs."""
        values = self.to_dict()
        values["id2label"] = {str(i): name for i, name in _label_names(self).items()}
        values["label2id"] = self.label2id
        model_type = PRE_LN_MODEL_TYPE if self.pre_layer_norm else "bert"
        if not self.pre_layer_norm:
            del values["pre_layer_norm"]  # a post-LN config.json is exactly transformers' own
        return {"model_type": model_type, "architectures": architectures or ["BertModel"],
                **values}

    def save(self, directory: str | os.PathLike, architectures: list[str] | None = None) -> Path:
        """Write ``config.json`` into ``directory`` (created if needed); return its path.

        ``transformers.AutoConfig.from_pretrained(directory)`` reads the file as a BertConfig
        (and refuses a pre-LN one, see ``pre_layer_norm``).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        text = json.dumps(self.to_json_dict(architectures), indent=2) + "\n"
        return atomic_write(path, text)  # a crash never leaves half a config behind

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BertConfig:
        """Read ``config.json`` from a folder written by bertlab or by ``transformers``."""
        path = Path(directory)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"No {CONFIG_NAME} at {path}. Pass a folder written by save_pretrained() "
                "(bertlab or transformers); it holds config.json next to the weights."
            )
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}). Re-save the model, or fix the file by hand."
            ) from err
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object, not {type(values).__name__}.")
        return _from_hf_dict(values, source=str(path))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}.")


def _label_names(config: BertConfig) -> dict[int, str]:
    """The class names, with transformers' defaults (LABEL_0, LABEL_1, ...) when unnamed."""
    return config.id2label or {i: f"LABEL_{i}" for i in range(config.num_labels)}


def _from_hf_dict(values: Mapping[str, Any], source: str) -> BertConfig:
    """Pick BertConfig's fields out of a transformers-style dictionary, refusing other models."""
    model_type = values.get("model_type", "bert")
    if model_type not in ("bert", PRE_LN_MODEL_TYPE):
        raise ValueError(
            f"{source} describes a {model_type!r} model; bertlab builds BERT only "
            f"(model_type 'bert', or {PRE_LN_MODEL_TYPE!r} for its pre-LN variant)."
        )
    if (model_type == PRE_LN_MODEL_TYPE) != bool(values.get("pre_layer_norm", False)):
        raise ValueError(
            f"{source} has model_type {model_type!r} but pre_layer_norm="
            f"{values.get('pre_layer_norm', False)!r}; a pre-LN model is model_type "
            f"{PRE_LN_MODEL_TYPE!r} with pre_layer_norm true, a post-LN one 'bert' without it. "
            "Re-save the model with save_pretrained rather than editing config.json."
        )
    unsupported = {
        "is_decoder": (False, "a decoder (causal attention)"),
        "add_cross_attention": (False, "cross-attention layers"),
        "position_embedding_type": ("absolute", "relative position embeddings"),
    }
    for key, (expected, what) in unsupported.items():
        if values.get(key, expected) != expected:
            raise ValueError(
                f"{source} sets {key}={values[key]!r}, which asks for {what}; bertlab's BERT is "
                f"an encoder with absolute positions only ({key}={expected!r})."
            )

    known = {f.name for f in fields(BertConfig)}
    picked = {key: value for key, value in values.items() if key in known}
    names = picked.pop("id2label", None)
    if names:
        names = {int(i): str(name) for i, name in names.items()}
        picked["num_labels"] = len(names)
        if names != {i: f"LABEL_{i}" for i in range(len(names))}:  # keep only real names
            picked["id2label"] = names
    return BertConfig(**picked)


# -- counting parameters ---------------------------------------------------------------------

#: The models :func:`count_parameters` knows, by the head on top of the encoder.
HEADS = ("base", "pretraining", "masked_lm", "sequence_classification", "token_classification")


def count_parameters(config: BertConfig, head: str = "base") -> int:
    """The number of trainable weights of a model, from the configuration alone.

    ``head`` names the model: ``"base"`` (:class:`~bertlab.model.BertModel`, with pooler),
    ``"pretraining"``, ``"masked_lm"``, ``"sequence_classification"``,
    ``"token_classification"``. The MLM decoder shares the word-embedding matrix, so it adds
    only its bias. BERT-base with a 30,522-token vocabulary has 109,482,240 weights.
    """
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}; choose one of {', '.join(HEADS)}.")
    V, H, I = config.vocab_size, config.hidden_size, config.intermediate_size  # noqa: E741
    P, T, L = config.max_position_embeddings, config.type_vocab_size, config.num_hidden_layers
    C = config.num_labels

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out  # weight + bias

    layer_norm = 2 * H  # scale + shift
    embeddings = (V + P + T) * H + layer_norm
    layer = (
        4 * linear(H, H) + layer_norm  # query, key, value, output projection; LayerNorm
        + linear(H, I) + linear(I, H) + layer_norm  # feed-forward block; LayerNorm
    )  # = 4H² + 2HI + 9H + I
    encoder = embeddings + L * layer + (layer_norm if config.pre_layer_norm else 0)  # final LN
    pooler = linear(H, H)
    mlm_head = linear(H, H) + layer_norm + V  # transform + LayerNorm + decoder bias (tied weight)

    return {
        "base": encoder + pooler,
        "pretraining": encoder + pooler + mlm_head + linear(H, 2),
        "masked_lm": encoder + mlm_head,
        "sequence_classification": encoder + pooler + linear(H, C),
        "token_classification": encoder + linear(H, C),
    }[head]


# =========================================================================== a training run

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine", "constant")
NAN_POLICIES = ("raise", "skip")


@dataclass
class TrainConfig:
    """Every knob of a training run; invalid values raise ``ValueError`` as the config is built."""

    # optimisation
    lr: float = 1e-4
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0  # gradient clipping; None turns it off
    # learning-rate schedule: linear warm-up, then decay
    schedule: str = "linear"  # "linear", "cosine" or "constant"
    warmup_steps: int | None = None  # None: warmup_ratio of the total steps
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.0  # the decay ends at lr * min_lr_ratio
    # how long, and how the data is batched
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when given
    batch_size: int = 32
    grad_accum_steps: int = 1  # effective batch = batch_size * grad_accum_steps
    shuffle: bool = True
    group_by_length: bool = False  # batch examples of similar length (less padding)
    drop_last: bool = False
    num_workers: int = 0  # exact resume needs 0 when the collator draws random numbers
    # hardware
    device: str | None = None  # None or "auto": cuda > mps > cpu
    precision: str = "auto"  # "auto", "fp32", "bf16" or "fp16"
    masked_only: bool = True  # MLM logits at the masked positions only, where the model offers it
    # evaluation and early stopping
    eval_every: int | None = None  # steps; evaluation also runs at the end
    eval_batch_size: int | None = None  # None: 2 * batch_size
    metric: str = "loss"  # validation metric that picks the best checkpoint
    greater_is_better: bool | None = None  # None: False for loss/perplexity, True otherwise
    patience: int | None = None  # evaluations without improvement before stopping early
    min_delta: float = 0.0  # smallest change that counts as an improvement
    restore_best: bool = True  # load the best weights into the model when training ends
    # checkpoints
    checkpoint_dir: str | Path | None = None
    save_every: int | None = None  # steps; checkpoints are also written at evaluations and the end
    keep_checkpoints: int | None = 1  # most recent ones kept (the best is always kept); None: all
    resume: bool = False  # continue the run found in checkpoint_dir
    # reporting
    seed: int = 0
    nan_policy: str = "raise"  # "raise": stop with an error; "skip": drop the batch and go on
    log_every: int = 10  # steps between history rows
    progress: bool | None = None  # None: a bar in notebooks and terminals, none elsewhere
    verbose: bool = False  # print one line per evaluation
    tensorboard: bool | str | Path = False  # True: <checkpoint_dir>/tensorboard; or a folder

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        need(
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
            f"lr must be a positive number, got {self.lr!r}; typical values are 1e-4 for "
            "pretraining a small BERT and 2e-5 to 1e-4 for fine-tuning",
        )
        need(
            isinstance(self.grad_accum_steps, int) and self.grad_accum_steps >= 1,
            f"grad_accum_steps must be an integer >= 1, got {self.grad_accum_steps!r}; "
            "use 1 for no accumulation",
        )
        need(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            f"batch_size must be an integer >= 1, got {self.batch_size!r}",
        )
        need(self.epochs > 0, f"epochs must be > 0, got {self.epochs!r}")
        for name in ("max_steps", "eval_every", "save_every", "patience", "keep_checkpoints",
                     "eval_batch_size"):
            value = getattr(self, name)
            need(
                value is None or (isinstance(value, int) and value >= 1),
                f"{name} must be None or an integer >= 1, got {value!r}",
            )
        need(
            isinstance(self.log_every, int) and self.log_every >= 1,
            f"log_every must be an integer >= 1, got {self.log_every!r}",
        )
        need(
            self.warmup_steps is None or self.warmup_steps >= 0,
            f"warmup_steps must be None or >= 0, got {self.warmup_steps!r}",
        )
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        need(0 <= self.min_lr_ratio <= 1,
             f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            f"max_grad_norm must be None (no clipping) or > 0, got {self.max_grad_norm}",
        )
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        for name, allowed in (("schedule", SCHEDULES), ("precision", PRECISIONS),
                              ("nan_policy", NAN_POLICIES)):
            need(
                getattr(self, name) in allowed,
                f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}",
            )
        if self.device not in (None, "auto"):
            from bertlab.devices import parse_device  # imports torch: only when a device is named

            parse_device(self.device)  # a typo fails here, not an hour into the run


def configure(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    """``config`` (default: ``TrainConfig()``) with ``overrides`` replacing its fields."""
    config = config or TrainConfig()
    unknown = sorted(set(overrides) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise TypeError(
            f"unknown training setting(s) {unknown}; valid names are the fields of TrainConfig: "
            f"{[f.name for f in fields(TrainConfig)]}"
        )
    return replace(config, **overrides)
