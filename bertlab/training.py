"""The training loop: one for pretraining and fine-tuning, built so that no run is ever lost.

    history = train(model, train_data, eval_data=val_data, collate_fn=collator,
                    config=TrainConfig(lr=1e-4, epochs=3, eval_every=200, checkpoint_dir="runs/a"))

``train`` works with any ``nn.Module`` that takes a batch's tensors as keyword arguments and
returns an object with ``.loss`` (the bertlab models and Hugging Face models both do). It
chooses the device (CUDA, then Apple MPS, then CPU) and the precision (bf16 where it is faster:
GPUs that have it and CPUs with AMX; fp16 with a gradient scaler on older GPUs), accumulates
gradients, clips them, follows a warm-up-then-decay learning-rate schedule, evaluates every
``eval_every`` steps and at the end, stops early when the validation metric stalls, and returns
the history as a ``pandas.DataFrame``.

Its step, :meth:`_Run._step`, is the textbook one, in one screen: forward under autocast,
each accumulated batch's loss weighted by its share of what the step counts, backward, unscale,
clip, optimizer step, schedule step. The pieces it calls live in their own modules:
:mod:`bertlab.batching` (the order of the data), :mod:`bertlab.accumulation` (the weights),
:mod:`bertlab.devices` (device and precision), :mod:`bertlab.optimization` (AdamW, the
schedule), :mod:`bertlab.evaluation` and :mod:`bertlab.files` (checkpoints).

Never lose a run. With a ``checkpoint_dir``, a checkpoint holds everything needed to continue
exactly where training stopped: weights (safetensors), optimizer, scheduler, gradient scaler,
random-number states and the position in the data. Each checkpoint is written to a temporary
folder, flushed to disk and renamed into place; a small index file, replaced atomically, names
the last and the best one. A crash at any moment leaves the previous checkpoint intact.
Interrupting (Ctrl-C, or the stop button in Jupyter) saves a checkpoint and returns the history so
far; ``resume=True`` continues the run with exactly the losses it would have had.

Under ``torchrun`` the same call trains on several processes (:mod:`bertlab.distributed`:
shards, DDP, rank 0 writing); in one process it takes exactly the path described above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from bertlab import accumulation, batching, devices, distributed, files, reporting
from bertlab.config import TrainConfig, configure
from bertlab.devices import autocast, resolve_device, resolve_precision
from bertlab.evaluation import evaluate
from bertlab.metrics import LossMetrics
from bertlab.optimization import lr_schedule, make_optimizer
from bertlab.randomness import own_generator, rng_state, seed_everything, set_rng_state

__all__ = ["TimeLimit", "train"]


def train(
    model: nn.Module,
    train_data,
    *,
    config: TrainConfig | None = None,
    eval_data=None,
    collate_fn: Callable | None = None,
    eval_collate_fn: Callable | None = None,
    eval_metrics: Callable[[], LossMetrics] | None = None,
    callbacks: Sequence[Callable[[dict], bool | None]] = (),
    **overrides: Any,
) -> pd.DataFrame:
    """Train ``model`` on ``train_data``; return the history as a ``pandas.DataFrame``.

    Parameters
    ----------
    model
        Any module called as ``model(**batch)`` that returns an object with ``.loss``.
    train_data, eval_data
        Map-style datasets (a list of examples, a ``datasets.Dataset``, ...). ``collate_fn``
        turns a list of examples into a dict of tensors (``eval_collate_fn`` defaults to it).
    config, overrides
        A :class:`TrainConfig`; keyword overrides replace its fields (``train(..., lr=3e-4)``).
    eval_metrics
        Accumulator class for evaluation (default: chosen from the model's output).
    callbacks
        Functions called after every optimizer step with a dict (step, epoch, loss, lr, model);
        returning True stops training.

    The history has one row every ``log_every`` steps and at each evaluation: step, epoch, lr,
    train_loss (mean since the previous row), grad_norm, tokens_per_s, and the evaluation
    figures as ``eval_*`` columns. Its ``attrs`` hold ``best_step``, ``best_metric``,
    ``total_steps`` (the steps planned), ``stopped_early``, ``interrupted``, ``skipped_batches``,
    ``device``, ``precision`` and ``checkpoint`` (the last checkpoint folder, if any).
    """
    config = configure(config, overrides)
    with distributed.process_group():  # under torchrun only; one process: nothing happens
        run = _Run(model, train_data, config, eval_data, collate_fn,
                   eval_collate_fn or collate_fn, eval_metrics, callbacks)
        return run.fit()


class TimeLimit:
    """A ``train`` callback that asks to stop once ``minutes`` have passed (None: never).

    Training then saves its checkpoint and returns, so a long run can be split into sittings:
    ``train(..., callbacks=[TimeLimit(60)])``, then the same call with ``resume=True``. Called with
    no argument it is a plain check, for loops of your own; ``reached`` tells why a run ended.
    """

    def __init__(self, minutes: float | None):
        self.deadline = None if minutes is None else time.monotonic() + 60 * minutes
        self.reached = False

    def __call__(self, info: dict | None = None) -> bool:
        self.reached = self.deadline is not None and time.monotonic() >= self.deadline
        return self.reached


# Settings that fix the order of the data: a run resumes only with the same values.
_DATA_SETTINGS = ("batch_size", "grad_accum_steps", "seed", "shuffle", "group_by_length",
                  "drop_last")


@dataclass
class _Progress:
    """Where a run stands; saved with every checkpoint."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one
    skipped_batches: int = 0
    history: list = dataclasses.field(default_factory=list)  # one dict per row


class _Run:
    """The state of one ``train`` call and the steps it takes (see :func:`train`)."""

    def __init__(self, model, train_data, config, eval_data, collate_fn, eval_collate_fn,
                 eval_metrics, callbacks):
        batching.check_dataset(train_data, "train_data")
        if eval_data is not None:
            batching.check_dataset(eval_data, "eval_data")
        if config.patience is not None and eval_data is None:
            raise ValueError("patience (early stopping) needs eval_data to watch; pass eval_data")
        self.model, self.config = model, config
        self.train_data, self.eval_data = train_data, eval_data
        self.collate_fn, self.eval_collate_fn = collate_fn, eval_collate_fn
        self.eval_metrics, self.callbacks = eval_metrics, callbacks
        self.device = resolve_device(config.device)
        self.world = distributed.World(self.device) if distributed.launched() else None
        if self.world is not None:  # several processes: batch_size is the global batch
            self.device = self.world.device
            self.world.check_batch_size(config.batch_size)
        self.main = self.world is None or self.world.rank == 0  # writes files, shows progress
        self.precision = resolve_precision(config.precision, self.device)
        self.run_dir = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None

        self.lengths = batching.example_lengths(train_data) if config.group_by_length else None
        self.batches_per_epoch = len(self.batches_of(0))
        if self.batches_per_epoch == 0:
            raise ValueError(f"train_data has {len(train_data)} examples, fewer than one batch "
                             f"of {config.batch_size} with drop_last=True; lower batch_size")
        steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accum_steps)
        self.total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
        warmup = (config.warmup_steps if config.warmup_steps is not None
                  else round(config.warmup_ratio * self.total_steps))

        devices.check_dtypes(model, self.device)
        model.to(self.device)
        model.train()
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_schedule(self.total_steps, warmup, config.schedule, config.min_lr_ratio),
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.accepted, offers_masked_only = batching.forward_keywords(model)
        self.masked_only = config.masked_only and offers_masked_only
        self.greater_is_better = config.greater_is_better
        if self.greater_is_better is None:
            self.greater_is_better = not any(w in config.metric for w in ("loss", "perplexity"))

        self.progress = _Progress()
        seed_everything(config.seed if self.world is None else self.world.seed(config.seed))
        if self.world is not None and own_generator(collate_fn) is not None:
            generator = own_generator(collate_fn)
            generator.manual_seed(self.world.seed(generator.initial_seed()))
        self._resume_if_asked()
        self.net = model if self.world is None else self.world.wrap(model)  # what steps call
        # the random state that a checkpoint of the current step restores
        self.rng_snapshot = rng_state(own_generator(collate_fn))
        self.best_weights = None  # in-memory copy of the best weights, without checkpoint_dir
        self.last_saved = None  # step of the last checkpoint this call wrote
        self.window = dict(loss=0.0, steps=0, tokens=0, seconds=0.0)  # since the last row
        self.grad_norm = None
        self.postfix = ""

    # ------------------------------------------------------------------ data

    def batches_of(self, epoch: int) -> list[list[int]]:
        config = self.config
        batches = batching.epoch_batches(len(self.train_data), config.batch_size, epoch=epoch,
                                         seed=config.seed, shuffle=config.shuffle,
                                         drop_last=config.drop_last, lengths=self.lengths)
        return batches if self.world is None else self.world.shard(batches)

    def _data_settings(self) -> dict:
        settings = {**{name: getattr(self.config, name) for name in _DATA_SETTINGS},
                    "batches_per_epoch": self.batches_per_epoch}
        if self.world is not None:  # one-process checkpoints stay as they were
            settings["world_size"] = self.world.size
        return settings

    # ------------------------------------------------------------------ resume

    def _resume_if_asked(self) -> None:
        index = files.read_index(self.run_dir) if self.run_dir is not None else None
        if index is None or index.get("last") is None:
            return
        if not self.config.resume:
            raise ValueError(
                f"{self.run_dir} already holds a run (last checkpoint {index['last']}); pass "
                "resume=True to continue it, or choose a new checkpoint_dir"
            )
        folder = self.run_dir / index["last"]
        state = files.load_training_state(folder)
        if state is None:
            raise ValueError(f"{folder} has weights but no {files.STATE_NAME}: it cannot be resumed")
        settings = {"world_size": 1, **self._data_settings()}
        for key, value in settings.items():  # batches_per_epoch last: data size
            if state["data"].get(key, 1 if key == "world_size" else None) != value:
                raise ValueError(
                    f"cannot resume: the checkpoint was trained with {key}="
                    f"{state['data'][key]!r} but this run has {key}={value!r}; resume with the "
                    "same data and batch settings (or start a new run in another checkpoint_dir)"
                )
        files.load_weights(self.model, folder)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise ValueError(f"the optimizer state in {folder} does not fit this model's "
                             f"trainable parameters ({error}); freeze the same layers as the "
                             "original run") from error
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"] if self.world is None else state["rng_ranks"][self.world.rank]
        set_rng_state(rng, own_generator(self.collate_fn))
        self.progress = _Progress(**state["progress"])

    # ------------------------------------------------------------------ the loop

    def fit(self) -> pd.DataFrame:
        progress, config = self.progress, self.config
        self.bar = reporting.progress_bar(self.total_steps, progress.step,
                                          config.progress if self.main else False)
        self.writer = reporting.tensorboard(config.tensorboard if self.main else None,
                                            self.run_dir)
        last_row = progress.history[-1] if progress.history else {}
        evaluated_at = last_row["step"] if any(k.startswith("eval_") for k in last_row) else None
        stopped_early = interrupted = False
        try:
            while progress.step < self.total_steps and not stopped_early:
                batches = self.batches_of(progress.epoch)[progress.batch_in_epoch:]
                stream = iter(batching.loader(self.train_data, batches, self.collate_fn,
                                     config.num_workers, self.device.type == "cuda"))
                while (progress.batch_in_epoch < self.batches_per_epoch
                       and progress.step < self.total_steps and not stopped_early):
                    with devices.explained_mps_gaps(self.device):
                        lr = self._step(stream)
                    if lr is None:  # a skipped batch (nan_policy="skip")
                        continue
                    eval_due = (self.eval_data is not None and config.eval_every is not None
                                and progress.step % config.eval_every == 0)
                    if (eval_due or progress.step % config.log_every == 0
                            or progress.step == self.total_steps):
                        self._log(lr)
                    if eval_due:
                        stopped_early = self._evaluate()
                        evaluated_at = progress.step
                    if config.save_every and progress.step % config.save_every == 0:
                        self._save()
                    info = {"step": progress.step, "epoch": self._epoch_position(),
                            "loss": self.last_loss, "lr": lr, "model": self.model}
                    for callback in self.callbacks:
                        stopped_early = bool(callback(info)) or stopped_early
                if progress.batch_in_epoch >= self.batches_per_epoch:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                    self._snapshot_rng()
            if self.eval_data is not None and evaluated_at != progress.step:
                self._evaluate()
            self._save()
        except KeyboardInterrupt:
            if self.world is not None:  # the other ranks are not here to save with: the last
                raise  # checkpoint (save_every) is where a resumed run continues
            interrupted = True
            self.optimizer.zero_grad(set_to_none=True)  # drop a half-accumulated step
            self._save()
            where = (f"; checkpoint in {self.run_dir / files.read_index(self.run_dir)['last']}"
                     if self.run_dir is not None else " (no checkpoint_dir: nothing saved)")
            print(f"Interrupted at step {progress.step}/{self.total_steps}{where}.")
        finally:
            self.bar.close()
            if self.writer is not None:
                self.writer.close()

        if config.restore_best and not interrupted and progress.best_step not in (
                None, progress.step):
            if self.run_dir is not None:
                files.load_checkpoint(self.run_dir, self.model, which="best")
            elif self.best_weights is not None:
                batching.unwrap(self.model).load_state_dict(self.best_weights)
        return self._history(stopped_early=stopped_early, interrupted=interrupted)

    def _step(self, stream) -> float | None:
        """One optimizer step over ``grad_accum_steps`` batches; the lr it used (None: skipped)."""
        progress, config = self.progress, self.config
        started = time.perf_counter()
        group = min(config.grad_accum_steps, self.batches_per_epoch - progress.batch_in_epoch)
        batches = [next(stream) for _ in range(group)]
        tokens = sum(batching.token_count(batch) for batch in batches)
        counts = [accumulation.counts(batch) for batch in batches]
        step_totals = torch.stack(counts).sum(0)
        if self.world is not None:  # the whole step: every rank's batches
            step_totals = self.world.sum(step_totals.to(self.device)).cpu()
        loss_sum = torch.zeros((), device=self.device)
        for index, (batch, batch_counts) in enumerate(zip(batches, counts, strict=True)):
            batch = batching.to_device(batch, self.device)
            last = index == group - 1
            with self.world.syncing(self.net, last) if self.world else contextlib.nullcontext():
                with autocast(self.device, self.precision):
                    output = self.net(**batching.model_inputs(batch, self.accepted,
                                                              self.masked_only))
                _check_loss(output)
                if group == 1 and self.world is None:  # the whole step in one piece
                    share = output.loss
                else:  # see bertlab.accumulation: each piece weighted by what it counts
                    share = accumulation.share(output, batch, batch_counts, step_totals)
                # DDP averages the ranks' gradients; the shares must add up, so scale back
                self.scaler.scale(share * (self.world.size if self.world else 1)).backward()
            loss_sum += share.detach().float()
        if self.world is not None:  # the global mean loss and the tokens of every rank
            totals = self.world.sum(torch.stack([loss_sum, torch.tensor(tokens, dtype=torch.float32,
                                                                         device=self.device)]))
            loss_sum, tokens = totals[0], int(totals[1])
        loss = float(loss_sum)  # the one host-device sync of a step

        with _interrupts_deferred():  # from here to the end, all of it or none of it
            if not math.isfinite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                if config.nan_policy == "raise":
                    raise FloatingPointError(
                        f"the training loss is {loss} at step {progress.step + 1} (epoch "
                        f"{progress.epoch}, batches {progress.batch_in_epoch}-"
                        f"{progress.batch_in_epoch + group - 1}); the weights were not updated "
                        "and no checkpoint was overwritten. Lower lr, keep max_grad_norm set, "
                        "prefer bf16 over fp16, or set nan_policy='skip' to drop such batches")
                progress.skipped_batches += group
                progress.batch_in_epoch += group
                return None
            self.scaler.unscale_(self.optimizer)
            if config.max_grad_norm is not None:
                self.grad_norm = nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], config.max_grad_norm)
            lr = self.scheduler.get_last_lr()[0]
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # with fp16, skipped when gradients overflowed
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.get_scale() >= scale:  # the optimizer did step: so does the schedule
                self.scheduler.step()
            progress.step += 1
            progress.batch_in_epoch += group
            self._snapshot_rng()
        self.last_loss = loss
        self.window["loss"] += loss
        self.window["steps"] += 1
        self.window["tokens"] += tokens
        self.window["seconds"] += time.perf_counter() - started
        self.bar.update(1)
        return lr

    def _snapshot_rng(self) -> None:
        if self.run_dir is not None:
            self.rng_snapshot = rng_state(own_generator(self.collate_fn))

    # ------------------------------------------------------------------ reporting

    def _epoch_position(self) -> float:
        return round(self.progress.epoch + self.progress.batch_in_epoch / self.batches_per_epoch,
                     4)

    def _log(self, lr: float) -> None:
        """Close the window of steps since the last row: mean loss, throughput."""
        window = self.window
        row = _history_row(self.progress.history, self.progress.step, self._epoch_position(), lr)
        row.update(train_loss=window["loss"] / window["steps"],
                   grad_norm=float(self.grad_norm) if self.grad_norm is not None else math.nan,
                   tokens_per_s=window["tokens"] / max(window["seconds"], 1e-9))
        self.window = dict(loss=0.0, steps=0, tokens=0, seconds=0.0)
        self.postfix = f"loss {row['train_loss']:.3f} | {row['tokens_per_s'] / 1000:.1f}k tok/s"
        self.bar.set_postfix_str(self.postfix, refresh=False)
        if self.writer is not None:
            for key in ("train_loss", "lr", "grad_norm", "tokens_per_s"):
                self.writer.add_scalar(f"train/{key}", row[key], self.progress.step)

    def _evaluate(self) -> bool:
        """Evaluate, record, keep the best; True when early stopping says stop."""
        config, progress = self.config, self.progress
        results = evaluate(self.model, self.eval_data, collate_fn=self.eval_collate_fn,
                           batch_size=config.eval_batch_size or 2 * config.batch_size,
                           device=self.device, precision=self.precision,
                           metrics=self.eval_metrics, seed=config.seed,
                           masked_only=config.masked_only,
                           group_by_length=config.group_by_length, world=self.world)
        if config.metric not in results:
            raise ValueError(f"metric={config.metric!r} is not among the evaluation results "
                             f"{sorted(results)}; choose one of them")
        row = _history_row(progress.history, progress.step, self._epoch_position(),
                           self.scheduler.get_last_lr()[0])
        row.update({f"eval_{k}": v for k, v in results.items()})
        value = results[config.metric]
        improved = progress.best_metric is None or (
            value > progress.best_metric + config.min_delta if self.greater_is_better
            else value < progress.best_metric - config.min_delta)
        if improved:
            progress.best_metric, progress.best_step, progress.bad_evals = value, progress.step, 0
            if self.run_dir is None and config.restore_best:
                self.best_weights = {k: v.detach().to("cpu", copy=True)
                                     for k, v in batching.unwrap(self.model).state_dict().items()}
        else:
            progress.bad_evals += 1
        self._save(best=improved)
        if self.writer is not None:
            for key, v in results.items():
                self.writer.add_scalar(f"eval/{key}", v, progress.step)
        self.bar.set_postfix_str(f"{self.postfix} | {config.metric} {value:.4g}", refresh=False)
        if config.verbose and self.main:
            print(f"step {progress.step}/{self.total_steps} | "
                  + reporting.format_metrics({k: v for k, v in row.items() if k != "step"}))
        return config.patience is not None and progress.bad_evals >= config.patience

    def _save(self, best: bool = False) -> None:
        progress = self.progress
        if self.run_dir is None or (self.last_saved == progress.step and not best):
            return
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.rng_snapshot,
            "progress": dataclasses.asdict(progress),
            "data": self._data_settings(),
        }
        if self.world is not None:  # every rank's random state, for an exact resume
            state["rng_ranks"] = self.world.gather(self.rng_snapshot)
        if self.main:
            files.save_checkpoint(self.run_dir, self.model, step=progress.step,
                                  training_state=state, best=best,
                                  metric=progress.best_metric if best else None,
                                  keep=self.config.keep_checkpoints)
        if self.world is not None:  # the others read the index only once it is written
            self.world.barrier()
        self.last_saved = progress.step

    def _history(self, *, stopped_early: bool, interrupted: bool) -> pd.DataFrame:
        progress = self.progress
        history = pd.DataFrame(progress.history)
        checkpoint = None
        if self.last_saved is not None:
            checkpoint = self.run_dir / files.read_index(self.run_dir)["last"]
        history.attrs.update(
            best_step=progress.best_step, best_metric=progress.best_metric,
            total_steps=self.total_steps, stopped_early=stopped_early, interrupted=interrupted,
            skipped_batches=progress.skipped_batches, device=str(self.device),
            precision=self.precision, checkpoint=checkpoint,
        )
        return history


def _check_loss(output) -> None:
    if getattr(output, "loss", None) is None:
        raise ValueError("the model returned no loss: training batches need labels "
                         "(check the collate_fn)")


def _history_row(history: list, step: int, epoch: float, lr: float) -> dict:
    """The history row of ``step``, created if needed (training and evaluation share it)."""
    if not history or history[-1]["step"] != step:
        history.append({"step": step, "epoch": epoch, "lr": lr})
    return history[-1]


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold back Ctrl-C while the weights and optimizer are being updated, so that a
    checkpoint written after an interrupt never holds a half-applied step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            else:
                raise KeyboardInterrupt
