"""The training engine: exact resume, crash-safe checkpoints, sparse MLM, schedule, early
stopping, precision, and clear errors. Tiny models and a few steps: the file runs in seconds.
"""

from __future__ import annotations

import math
import os
import random
import sys

import numpy as np
import pytest
import torch
import transformers

from bertlab import BertConfig
from bertlab.data.collate import MLMCollator, PaddingCollator
from bertlab.metrics import PretrainingMetrics
from bertlab.model import BertForPreTraining, BertForSequenceClassification
from bertlab.train import (
    TrainConfig,
    cpu_bf16_is_faster,
    epoch_batches,
    evaluate,
    freeze,
    list_checkpoints,
    load_checkpoint,
    lr_schedule,
    make_optimizer,
    predict,
    resolve_device,
    resolve_precision,
    save_checkpoint,
    train,
)

WORDS = [f"w{i}" for i in range(59)]
VOCAB = 5 + len(WORDS)  # [PAD] [UNK] [CLS] [SEP] [MASK] + words


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy machine every parallel
    op waits for it: one thread keeps this file fast and its timings steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> BertConfig:
    values = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=32)
    return BertConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                 *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))
    assert len(tokenizer) == VOCAB
    return tokenizer


def pretraining_examples(n: int, seed: int = 1) -> list[dict]:
    """[CLS] A [SEP] B [SEP] pairs of random words, of varied lengths."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a = [rng.randrange(5, VOCAB) for _ in range(rng.randint(3, 10))]
        b = [rng.randrange(5, VOCAB) for _ in range(rng.randint(3, 10))]
        examples.append({
            "input_ids": [2, *a, 3, *b, 3],
            "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
            "next_sentence_label": rng.randint(0, 1),
        })
    return examples


class NoisyCollator:
    """The real MLM collator (torch's global RNG) plus draws from NumPy and Python's random,
    so that resuming must restore all three generators."""

    def __init__(self, tokenizer):
        self.mlm = MLMCollator(tokenizer)

    def __call__(self, examples):
        batch = self.mlm(examples)
        batch["next_sentence_label"] = torch.from_numpy(np.random.randint(0, 2, len(examples)))
        if random.random() < 0.5:
            batch["token_type_ids"] = batch["token_type_ids"].flip(0)
        return batch


class InterruptingCollator(NoisyCollator):
    """Raises KeyboardInterrupt (as Ctrl-C would) when asked for its ``stop_at``-th batch."""

    def __init__(self, tokenizer, stop_at: int):
        super().__init__(tokenizer)
        self.calls, self.stop_at = 0, stop_at

    def __call__(self, examples):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().__call__(examples)


RESUME_SETTINGS = dict(max_steps=7, batch_size=4, grad_accum_steps=2, log_every=1, eval_every=3,
                       precision="fp32", lr=1e-3, warmup_steps=2, seed=3, progress=False,
                       restore_best=False)
# 20 examples = 5 batches = 3 optimizer steps per epoch (the last with one batch): 7 steps
# cross two epoch boundaries.


def pretraining_model() -> BertForPreTraining:
    torch.manual_seed(0)
    return BertForPreTraining(tiny())


@pytest.fixture(scope="module")
def uninterrupted(tokenizer, tmp_path_factory):
    model = pretraining_model()
    history = train(model, pretraining_examples(20), eval_data=pretraining_examples(8, seed=2),
                    collate_fn=NoisyCollator(tokenizer), eval_collate_fn=MLMCollator(tokenizer),
                    checkpoint_dir=tmp_path_factory.mktemp("full"), **RESUME_SETTINGS)
    return history, model.state_dict()


@pytest.mark.parametrize("interrupt", ["inside a batch", "after a step"])
def test_resume_after_interrupt_repeats_the_uninterrupted_run(
    interrupt, uninterrupted, tokenizer, tmp_path
):
    full_history, full_weights = uninterrupted
    data, held_out = pretraining_examples(20), pretraining_examples(8, seed=2)
    if interrupt == "inside a batch":  # batch 9 is the 2nd half of step 5: step 4 is the last
        collate, callbacks = InterruptingCollator(tokenizer, stop_at=9), ()
    else:
        def callbacks_raise(info):
            if info["step"] == 5:
                raise KeyboardInterrupt
        collate, callbacks = NoisyCollator(tokenizer), (callbacks_raise,)

    first = train(pretraining_model(), data, eval_data=held_out, collate_fn=collate,
                  eval_collate_fn=MLMCollator(tokenizer), callbacks=callbacks,
                  checkpoint_dir=tmp_path, **RESUME_SETTINGS)
    assert first.attrs["interrupted"]
    stopped = 4 if interrupt == "inside a batch" else 5
    assert first["step"].tolist() == list(range(1, stopped + 1))
    assert list_checkpoints(tmp_path)["step"].tolist()[-1] == stopped

    torch.manual_seed(123)  # a different fresh model: everything must come from the checkpoint
    model = BertForPreTraining(tiny())
    resumed = train(model, data, eval_data=held_out, collate_fn=NoisyCollator(tokenizer),
                    eval_collate_fn=MLMCollator(tokenizer), checkpoint_dir=tmp_path,
                    resume=True, **RESUME_SETTINGS)

    assert not resumed.attrs["interrupted"]
    pd_columns = ["step", "lr", "train_loss", "eval_loss", "eval_mlm_accuracy"]
    expected = full_history[pd_columns].to_numpy()
    got = resumed[pd_columns].to_numpy()
    # exact equality, NaN where a step had no evaluation
    assert np.array_equal(got, expected, equal_nan=True), (got, expected)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, full_weights[name]), name


def test_checkpoint_holds_everything_and_loads_without_pickle(tmp_path, tokenizer):
    model = pretraining_model()
    train(model, pretraining_examples(8), collate_fn=MLMCollator(tokenizer), max_steps=2,
          batch_size=4, checkpoint_dir=tmp_path, progress=False, precision="fp32")
    folder = list_checkpoints(tmp_path)["path"].iloc[-1]
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors",
                                                   "training_state.pt"}
    state = torch.load(folder / "training_state.pt", weights_only=True)  # no arbitrary objects
    assert {"optimizer", "scheduler", "scaler", "rng", "progress", "data"} <= set(state)
    assert {"python", "numpy", "torch", "cuda"} <= set(state["rng"])
    assert state["progress"]["step"] == 2 and state["optimizer"]["state"]
    # the folder is a regular model folder: transformers opens it
    hf = transformers.BertForPreTraining.from_pretrained(folder)
    assert torch.equal(hf.bert.embeddings.word_embeddings.weight,
                       model.bert.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("failing_call", [1, 2], ids=["renaming the folder", "updating the index"])
def test_crash_before_rename_leaves_previous_checkpoint(failing_call, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny())
    (tmp_path / "step-000200").mkdir()  # someone else's files in the folder stay untouched
    (tmp_path / "notes.txt").write_text("mine")
    save_checkpoint(tmp_path, model, step=1, training_state={"x": torch.ones(2)})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    real_replace, calls = os.replace, []

    def crashing_replace(src, dst):
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError("simulated crash: power lost before the rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, model, step=2, training_state={"x": torch.zeros(2)})
    monkeypatch.undo()

    fresh = BertForSequenceClassification(tiny())
    info = load_checkpoint(tmp_path, fresh)
    assert info["step"] == 1
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), "temporary files left"
    # the next save succeeds and tidies up what the crash left
    save_checkpoint(tmp_path, model, step=2)
    assert list_checkpoints(tmp_path)["step"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoints.json", "notes.txt", "step-0000002", "step-000200"]


def test_checkpoint_of_another_model_size_is_refused_naming_both_shapes(tmp_path):
    save_checkpoint(tmp_path, BertForPreTraining(tiny(hidden_size=48, intermediate_size=96)),
                    step=1)
    with pytest.raises(ValueError, match=r"\(64, 48\) in the checkpoint but \(64, 32\)"):
        load_checkpoint(tmp_path, BertForPreTraining(tiny()))


def test_an_existing_run_is_never_overwritten_silently(tmp_path, tokenizer):
    settings = dict(collate_fn=MLMCollator(tokenizer), max_steps=1, batch_size=4,
                    checkpoint_dir=tmp_path, progress=False)
    train(pretraining_model(), pretraining_examples(8), **settings)
    with pytest.raises(ValueError, match="resume=True"):
        train(pretraining_model(), pretraining_examples(8), **settings)
    with pytest.raises(ValueError, match="batch_size=4 but this run has batch_size=2"):
        train(pretraining_model(), pretraining_examples(8),
              **{**settings, "batch_size": 2, "resume": True})


def test_sparse_mlm_loss_equals_dense_transformers_loss(tokenizer, assert_close):
    config = tiny(vocab_size=VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    ours = BertForPreTraining(config).eval()
    reference = transformers.BertForPreTraining(config.to_hf()).eval()
    reference.load_state_dict(ours.state_dict())  # identical names: no renaming
    torch.manual_seed(1)
    batch = MLMCollator(tokenizer)(pretraining_examples(6, seed=5))
    assert (batch["attention_mask"] == 0).any() and (batch["labels"] != -100).any()

    sparse = ours(**batch, masked_only=True)
    dense = reference(**batch)
    n_masked = int((batch["labels"] != -100).sum())
    assert sparse.prediction_logits.shape == (n_masked, VOCAB)
    assert_close("sparse MLM + NSP loss vs transformers dense loss", sparse.loss, dense.loss, 1e-5)

    grads = {}
    for name, model, out in (("ours", ours, sparse), ("reference", reference, dense)):
        model.zero_grad()
        out.loss.backward()
        grads[name] = model.bert.encoder.layer[0].attention.self.query.weight.grad
    assert_close("gradient of layer 0 query weight", grads["ours"], grads["reference"], 1e-5)

    # the held-out metrics read the same from sparse and dense logits
    sparse_metrics, dense_metrics = PretrainingMetrics(), PretrainingMetrics()
    sparse_metrics.update(batch, sparse)
    dense_metrics.update(batch, dense)
    for key, value in dense_metrics.compute().items():
        assert math.isclose(sparse_metrics.compute()[key], value, rel_tol=1e-5, abs_tol=1e-6), key


def test_training_uses_sparse_mlm_when_the_model_offers_it(tokenizer):
    seen = []
    model = pretraining_model()
    model.cls.predictions.transform.register_forward_hook(
        lambda module, args, output: seen.append(output.dim()))
    train(model, pretraining_examples(8), collate_fn=MLMCollator(tokenizer), max_steps=1,
          batch_size=8, progress=False)
    assert seen == [2]  # (n_masked, hidden): gathered before the vocabulary projection


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
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_schedule(10, 1, "exponential")


def test_history_lr_follows_the_schedule(tokenizer):
    history = train(pretraining_model(), pretraining_examples(16),
                    collate_fn=MLMCollator(tokenizer), max_steps=8, batch_size=2, lr=1e-3,
                    warmup_steps=3, schedule="cosine", log_every=1, progress=False)
    f = lr_schedule(8, 3, "cosine")
    assert history["lr"].tolist() == pytest.approx([1e-3 * f(s) for s in range(8)])
    assert {"step", "epoch", "lr", "train_loss", "grad_norm", "tokens_per_s"} <= set(history)


def classification_examples(n: int, seed: int = 0) -> list[dict]:
    """Label 1 when token 7 occurs: learnable by a tiny model in a few steps."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        ids = [rng.randrange(8, VOCAB) for _ in range(rng.randint(4, 12))]
        if i % 2:
            ids[rng.randrange(len(ids))] = 7
        examples.append({"input_ids": [2, *ids, 3], "label": i % 2})
    return examples


def classifier(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny(**overrides))


@pytest.mark.parametrize("on_disk", [False, True])
def test_early_stopping_fires_and_the_best_weights_come_back(on_disk, tmp_path):
    snapshots = {}

    def remember(info):
        snapshots[info["step"]] = {k: v.clone() for k, v in info["model"].state_dict().items()}

    model = classifier()
    # min_delta so large that no evaluation after the first counts as an improvement
    history = train(model, classification_examples(16), eval_data=classification_examples(8, 1),
                    collate_fn=PaddingCollator(pad_token_id=0), max_steps=50, batch_size=4,
                    lr=1e-3, eval_every=1, metric="accuracy", patience=2, min_delta=2.0,
                    checkpoint_dir=tmp_path if on_disk else None, callbacks=[remember],
                    progress=False)
    assert history.attrs["stopped_early"]
    assert history["step"].max() == 3  # best at step 1, then 2 evaluations without improvement
    assert history.attrs["best_step"] == 1
    assert {"eval_accuracy", "eval_precision", "eval_recall", "eval_macro_f1"} <= set(history)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, snapshots[1][name]), name
    if on_disk:
        kept = list_checkpoints(tmp_path)
        assert kept.loc[kept["best"], "step"].tolist() == [1]
        assert kept.loc[kept["last"], "step"].tolist() == [3]


def test_time_limit_stops_a_run_that_resumes_later(tmp_path):
    from bertlab.train import TimeLimit

    assert not TimeLimit(None)() and not TimeLimit(60)()
    limit = TimeLimit(0)  # already past: stop after the first step, checkpoint saved
    settings = dict(collate_fn=PaddingCollator(pad_token_id=0), max_steps=6, batch_size=4,
                    lr=1e-3, checkpoint_dir=tmp_path, progress=False)
    settings["log_every"] = 1
    history = train(classifier(), classification_examples(16), callbacks=[limit], **settings)
    assert limit.reached and history["step"].max() == 1
    assert list_checkpoints(tmp_path).loc[lambda c: c["last"], "step"].tolist() == [1]
    history = train(classifier(), classification_examples(16), resume=True, **settings)
    assert history["step"].max() == 6  # the next sitting finishes the run


def test_bf16_autocast_runs_on_cpu(tokenizer):
    dtypes = []
    model = pretraining_model()
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda module, args, output: dtypes.append(output.dtype))
    history = train(model, pretraining_examples(8), collate_fn=MLMCollator(tokenizer),
                    max_steps=3, batch_size=4, log_every=1, precision="bf16", device="cpu",
                    progress=False)
    assert history.attrs["precision"] == "bf16"
    assert set(dtypes) == {torch.bfloat16}
    assert np.isfinite(history["train_loss"]).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def _stub_cpu(monkeypatch, capability: str, amx: bool) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("capability, amx, expected", [
    ("AVX512", True, "bf16"),  # AMX tiles: bf16 autocast is faster
    ("AVX512", False, "fp32"),  # AVX512-BF16 without AMX: bf16 is slower
    ("AVX2", True, "fp32"),  # ATEN_CPU_CAPABILITY=avx2 on an AMX machine: like an AVX2 CPU
    ("AVX2", False, "fp32"),
    ("DEFAULT", False, "fp32"),  # Apple silicon and other ARM CPUs
])
def test_auto_precision_on_cpu_follows_what_torch_reports(monkeypatch, capability, amx, expected):
    _stub_cpu(monkeypatch, capability, amx)
    assert cpu_bf16_is_faster() == (expected == "bf16")
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # an explicit choice stays


def test_auto_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"  # e.g. a T4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_precision_errors():
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("settings, message", [
    ({"lr": 0}, "lr must be a positive number"),
    ({"lr": -1e-4}, "lr must be a positive number"),
    ({"grad_accum_steps": 0}, "grad_accum_steps must be an integer >= 1"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ({"schedule": "step"}, "unknown schedule 'step'"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio must be in \[0, 1\)"),
])
def test_bad_settings_raise_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
    with pytest.raises(ValueError, match=message):  # the same through train()'s overrides
        train(classifier(), classification_examples(4), **settings)


def test_misuse_of_train_is_explained():
    data = classification_examples(4)
    with pytest.raises(TypeError, match="unknown training setting"):
        train(classifier(), data, learning_rate=1e-4)
    with pytest.raises(TypeError, match="not a DataLoader"):
        train(classifier(), torch.utils.data.DataLoader(data))
    with pytest.raises(ValueError, match="patience .* needs eval_data"):
        train(classifier(), data, patience=2)
    with pytest.raises(ValueError, match="metric='f1' is not among"):
        train(classifier(), data, eval_data=data, collate_fn=PaddingCollator(pad_token_id=0),
              metric="f1", max_steps=1, progress=False)


class LossBomb(torch.nn.Module):
    """Wraps a model; its loss becomes NaN from the ``at``-th call on."""

    def __init__(self, model, at: int):
        super().__init__()
        self.model, self.at, self.calls = model, at, 0

    def forward(self, **batch):
        self.calls += 1
        out = self.model(**batch)
        if self.calls >= self.at:
            out.loss = out.loss * float("nan")
        return out


def test_nan_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(tmp_path):
    model = LossBomb(classifier(), at=3)  # the checkpoint of step 2 is the last good one
    with pytest.raises(FloatingPointError, match="loss is nan at step 3"):
        train(model, classification_examples(16), collate_fn=PaddingCollator(pad_token_id=0),
              max_steps=6, batch_size=2, save_every=1, checkpoint_dir=tmp_path, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    fresh = LossBomb(classifier(), at=0)
    assert load_checkpoint(tmp_path, fresh)["step"] == 2
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_nan_loss_can_skip_the_batch():
    class FlakyLoss(LossBomb):
        def forward(self, **batch):
            out = super().forward(**batch)
            if self.calls != self.at:
                out.loss = out.loss.nan_to_num()
            return out

    history = train(FlakyLoss(classifier(), at=2), classification_examples(16),
                    collate_fn=PaddingCollator(pad_token_id=0), max_steps=4, batch_size=2,
                    nan_policy="skip", log_every=1, progress=False)
    assert history.attrs["skipped_batches"] == 1
    assert history["step"].tolist() == [1, 2, 3, 4] and np.isfinite(history["train_loss"]).all()


def test_gradient_accumulation_equals_one_big_batch():
    """4 x 2 accumulated equals one batch of 8 (equal lengths, no dropout: same gradient).

    eps=1 makes Adam's first step proportional to the gradient (not its sign), so the
    weights after one step compare the gradients themselves."""
    data = [{"input_ids": [2, *range(8 + i % 5, 18 + i % 5), 3], "label": i % 2}
            for i in range(8)]
    weights = []
    for batch_size, accumulation in ((8, 1), (2, 4)):
        model = classifier(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        train(model, data, collate_fn=PaddingCollator(pad_token_id=0), max_steps=1,
              batch_size=batch_size, grad_accum_steps=accumulation, shuffle=False,
              warmup_steps=0, schedule="constant", lr=1.0, eps=1.0, weight_decay=0.0,
              max_grad_norm=None, precision="fp32", progress=False)
        weights.append(model.classifier.weight.detach().clone())
    moved = (weights[0] - classifier().classifier.weight).abs().max()
    assert moved > 1e-4  # the step did move the weights...
    assert torch.allclose(weights[0], weights[1], atol=1e-8, rtol=0)  # ...by the same amount


def test_no_weight_decay_on_biases_and_layernorm():
    model = classifier()
    groups = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        no_decay = name.endswith("bias") or "LayerNorm" in name
        assert (id(p) in decayed) != no_decay, name


def test_freeze_embeddings_and_first_layers():
    model = classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = freeze(model, embeddings=True, layers=1)
    assert frozen == sum(p.numel() for p in model.bert.embeddings.parameters()) + sum(
        p.numel() for p in model.bert.encoder.layer[0].parameters())
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


def test_predict_returns_labels_and_probabilities(tokenizer):
    model = classifier()
    texts = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10"]
    result = predict(model, tokenizer, texts, label_names=["negative", "positive"])
    assert result.probabilities.shape == (3, 2)
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-6)
    assert model.training  # predict() put the mode back; compare in eval mode (no dropout)
    with torch.no_grad():
        one = model.eval()(**tokenizer(texts[2:], return_tensors="pt")).logits.softmax(-1)
    np.testing.assert_allclose(result.probabilities[2], one[0].numpy(), atol=1e-6)
    assert result.labels == [["negative", "positive"][i] for i in result.label_ids]
    single = predict(model, tokenizer, "w1 w2 w3")  # one string; names from the config
    assert single.label_ids.tolist() == result.label_ids[:1].tolist()
    assert single.labels == [f"LABEL_{result.label_ids[0]}"]


def test_evaluate_is_repeatable_and_leaves_training_randomness_alone(tokenizer):
    model = pretraining_model()
    data = pretraining_examples(8)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    first = evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=4)
    second = evaluate(model, data, collate_fn=MLMCollator(tokenizer), batch_size=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == second
    assert {"loss", "mlm_loss", "perplexity", "mlm_accuracy", "nsp_accuracy"} <= set(first)
    assert first["perplexity"] == pytest.approx(math.exp(first["mlm_loss"]))
    assert model.training  # put back in the mode it came in


def test_epoch_batches_are_a_deterministic_shuffle_and_group_lengths():
    a = epoch_batches(103, 10, epoch=1, seed=0)
    assert a == epoch_batches(103, 10, epoch=1, seed=0) != epoch_batches(103, 10, epoch=2, seed=0)
    assert sorted(i for b in a for i in b) == list(range(103))
    lengths = np.random.default_rng(0).integers(5, 100, 1000)

    def padding(batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)

    grouped = epoch_batches(1000, 16, seed=0, lengths=lengths)
    assert sorted(i for b in grouped for i in b) == list(range(1000))
    assert padding(grouped) < padding(epoch_batches(1000, 16, seed=0)) / 5


def test_quiet_without_a_terminal_and_tensorboard_missing_is_explained(capfd, monkeypatch,
                                                                        tokenizer):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    train(pretraining_model(), pretraining_examples(8), collate_fn=MLMCollator(tokenizer),
          max_steps=2, batch_size=4, tensorboard=True)
    captured = capfd.readouterr()
    assert captured.err == ""  # no progress bar or warning on stderr (strict nbval fails on it)
    assert "TensorBoard logging skipped" in captured.out
    assert "pip install tensorboard" in captured.out


def test_bertlab_train_is_callable_whichever_object_the_name_gives():
    import bertlab
    import bertlab.train as module  # importing the submodule rebinds bertlab.train to it
    from bertlab import train as imported

    assert imported is module is bertlab.train
    history = imported(classifier(), classification_examples(4),
                       collate_fn=PaddingCollator(pad_token_id=0), max_steps=1, batch_size=4,
                       progress=False)
    assert history["step"].tolist() == [1]
