"""bertlab.training: the loop. Exact resume, checkpoints written along the way, masked-only MLM,
the schedule in the history, early stopping, time limits, precision, NaN losses, and clear
errors. Tiny models and a few steps: the file runs in seconds.
"""

from __future__ import annotations

import importlib
import math
import random
import sys

import numpy as np
import pytest
import torch
import transformers
from tiny import (
    classification_examples,
    classifier,
    one_thread,  # noqa: F401  (autouse: one thread for tiny tensors)
    pretraining_examples,
    pretraining_model,
    tiny,
    word_tokenizer,
)

import bertlab
from bertlab.data.collators import MLMCollator, PaddingCollator
from bertlab.files import list_checkpoints, load_checkpoint
from bertlab.heads import BertForPreTraining
from bertlab.training import TimeLimit, train


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return word_tokenizer(tmp_path_factory.mktemp("tokenizer"))


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
    assert folder == tmp_path / "step-000002"
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


def test_an_existing_run_is_never_overwritten_silently(tmp_path, tokenizer):
    settings = dict(collate_fn=MLMCollator(tokenizer), max_steps=1, batch_size=4,
                    checkpoint_dir=tmp_path, progress=False)
    train(pretraining_model(), pretraining_examples(8), **settings)
    with pytest.raises(ValueError, match="resume=True"):
        train(pretraining_model(), pretraining_examples(8), **settings)
    with pytest.raises(ValueError, match="batch_size=4 but this run has batch_size=2"):
        train(pretraining_model(), pretraining_examples(8),
              **{**settings, "batch_size": 2, "resume": True})


@pytest.mark.parametrize("masked_only, dims", [(True, [2]), (False, [3])])
def test_training_scores_only_the_masked_positions_when_the_model_offers_it(tokenizer,
                                                                           masked_only, dims):
    seen = []
    model = pretraining_model()
    model.cls.predictions.transform.register_forward_hook(
        lambda module, args, output: seen.append(output.dim()))
    train(model, pretraining_examples(8), collate_fn=MLMCollator(tokenizer), max_steps=1,
          batch_size=8, progress=False, masked_only=masked_only)
    # True: (n_masked, hidden), gathered before the vocabulary projection;
    # False: (batch, seq, hidden), every position scored
    assert seen == dims


def test_masked_only_is_left_out_for_a_model_that_does_not_offer_it():
    seen = []

    class Classifier(torch.nn.Module):  # forward() has no masked_only parameter
        def __init__(self):
            super().__init__()
            self.model = classifier()

        def forward(self, input_ids, attention_mask, labels):
            seen.append(labels.shape)
            return self.model(input_ids, attention_mask, labels=labels)

    train(Classifier(), classification_examples(4), collate_fn=PaddingCollator(pad_token_id=0),
          max_steps=1, batch_size=4, masked_only=True, progress=False)
    assert seen == [(4,)]  # called without masked_only (or token_type_ids) rather than failing


def test_history_lr_follows_the_schedule(tokenizer):
    history = train(pretraining_model(), pretraining_examples(16),
                    collate_fn=MLMCollator(tokenizer), max_steps=8, batch_size=2, lr=1e-3,
                    warmup_steps=3, schedule="cosine", log_every=1, progress=False)
    # the rate each step used: warm-up over 3 steps, then half a cosine over the other 5
    warm_up = [1 / 3, 2 / 3, 1]
    cosine = [(1 + math.cos(math.pi * k / 5)) / 2 for k in range(5)]  # 1, 0.905, ..., 0.095
    assert history["lr"].tolist() == pytest.approx([1e-3 * m for m in warm_up + cosine])
    assert {"step", "epoch", "lr", "train_loss", "grad_norm", "tokens_per_s"} <= set(history)


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
    assert history.attrs["total_steps"] == 50  # what was planned, to say what stopping saved
    assert history.attrs["best_step"] == 1
    assert {"eval_accuracy", "eval_precision", "eval_recall", "eval_macro_f1"} <= set(history)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, snapshots[1][name]), name
    if on_disk:
        kept = list_checkpoints(tmp_path)
        assert kept.loc[kept["best"], "step"].tolist() == [1]
        assert kept.loc[kept["last"], "step"].tolist() == [3]


def test_time_limit_stops_a_run_that_resumes_later(tmp_path):
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


def test_misuse_of_train_is_explained():
    data = classification_examples(4)
    with pytest.raises(TypeError, match="unknown training setting"):
        train(classifier(), data, learning_rate=1e-4)
    # keyword overrides are checked as TrainConfig's own fields are
    with pytest.raises(ValueError, match="lr must be a positive number"):
        train(classifier(), data, lr=0)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        train(classifier(), data, device="tpu")
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


def test_quiet_without_a_terminal_and_tensorboard_missing_is_explained(capfd, monkeypatch,
                                                                        tokenizer):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    train(pretraining_model(), pretraining_examples(8), collate_fn=MLMCollator(tokenizer),
          max_steps=2, batch_size=4, tensorboard=True)
    captured = capfd.readouterr()
    assert captured.err == ""  # no progress bar or warning on stderr (strict nbval fails on it)
    assert "TensorBoard logging skipped" in captured.out
    assert "pip install tensorboard" in captured.out


def test_bertlab_train_is_the_function_and_no_module_hides_it():
    from bertlab import training

    assert bertlab.train is training.train is train
    assert bertlab.TimeLimit is TimeLimit
    with pytest.raises(ModuleNotFoundError, match="bertlab.train"):
        importlib.import_module("bertlab.train")  # there is no module of that name any more
    assert bertlab.train is train  # and trying to import one did not rebind the name
    history = bertlab.train(classifier(), classification_examples(4),
                            collate_fn=PaddingCollator(pad_token_id=0), max_steps=1, batch_size=4,
                            progress=False)
    assert history["step"].tolist() == [1]


def test_accumulated_masked_batches_equal_one_big_batch_in_float64(tokenizer):
    """Pieces with different numbers of masked tokens: weighted by what they count
    (bertlab.accumulation), 4 x 2 accumulated takes exactly the step of one batch of 8."""
    examples = pretraining_examples(8)
    collator = MLMCollator(tokenizer, seed=0)
    premasked = collator(examples)  # masks drawn once: both runs see the same labels
    rows = [{name: premasked[name][i] for name in premasked} for i in range(8)]
    assert len({int((row["labels"] != -100).sum()) for row in rows}) > 1  # uneven pieces

    def stack(batch_rows):
        return {name: torch.stack([row[name] for row in batch_rows]) for name in batch_rows[0]}

    weights = []
    for batch_size, accumulation in ((8, 1), (2, 4)):
        torch.manual_seed(0)
        model = BertForPreTraining(tiny(hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)).double()
        train(model, rows, collate_fn=stack, max_steps=1, batch_size=batch_size,
              grad_accum_steps=accumulation, shuffle=False, warmup_steps=0, schedule="constant",
              lr=1.0, eps=1.0, weight_decay=0.0, max_grad_norm=None, precision="fp32",
              progress=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert (weights[0] - weights[1]).abs().max() < 1e-12
