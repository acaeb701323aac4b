"""One training loop for pretraining and fine-tuning, built so that no run is ever lost.

    history = train(model, train_data, eval_data=val_data, collate_fn=collator,
                    config=TrainConfig(lr=1e-4, epochs=3, eval_every=200, checkpoint_dir="runs/a"))

``train`` works with any ``nn.Module`` that takes a batch's tensors as keyword arguments and
returns an object with ``.loss`` (the bertlab models and Hugging Face models both do). It
chooses the device (CUDA, then Apple MPS, then CPU) and the precision (bf16 where it is faster:
GPUs that have it and CPUs with AMX; fp16 with a gradient scaler on older GPUs), accumulates
gradients, clips them, follows a warm-up-then-decay learning-rate schedule, evaluates every
``eval_every`` steps and at the end, stops early when the validation metric stalls, and returns
the history as a ``pandas.DataFrame``.

Never lose a run. With a ``checkpoint_dir``, a checkpoint holds everything needed to continue
exactly where training stopped: weights (safetensors), optimizer, scheduler, gradient scaler,
random-number states and the position in the data. Each checkpoint is written to a temporary
folder, flushed to disk and renamed into place; a small index file, replaced atomically, names
the last and the best one. A crash at any moment leaves the previous checkpoint intact.
Interrupting (Ctrl-C, or the stop button in Jupyter) saves a checkpoint and returns the history so
far; ``resume=True`` continues the run with exactly the losses it would have had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from bertlab.metrics import LossMetrics, metrics_for
from bertlab.profile import seed_everything

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine", "constant")
NAN_POLICIES = ("raise", "skip")

INDEX_NAME = "checkpoints.json"  # names the last and best checkpoint folders of a run
WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "training_state.pt"  # tensors and plain values only: loaded with weights_only=True


# =========================================================================== configuration


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
    device: str | None = None  # None: cuda > mps > cpu
    precision: str = "auto"  # "auto", "fp32", "bf16" or "fp16"
    sparse_mlm: bool = True  # pass masked_only=True to models that accept it
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
        if self.device is not None:
            _parse_device(self.device)  # a typo fails here, not an hour into the run


def _configure(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    config = config or TrainConfig()
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TypeError(
            f"unknown training setting(s) {unknown}; valid names are the fields of TrainConfig: "
            f"{[f.name for f in dataclasses.fields(TrainConfig)]}"
        )
    return dataclasses.replace(config, **overrides)


# =========================================================================== device and precision


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:1', 'mps', "
            "or None to pick the best available"
        )
    return parsed


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the one asked for, else CUDA, then Apple MPS, then the CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    parsed = _parse_device(device)
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but PyTorch sees no CUDA GPU here (torch.cuda.is_available() is "
            "False); use device=None to pick the best available device"
        )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} but Apple's MPS backend is not available here; "
            "use device=None to pick the best available device"
        )
    return parsed


def cpu_bf16_is_faster() -> bool:
    """True where bf16 autocast beats float32 on this CPU: AMX tiles, used by torch's kernels.

    Measured (benchmarks/README.md): with AMX a pretraining step is ~1.5x faster in bf16; with
    AVX512-BF16 alone (Intel without AMX, AMD Zen 4) it is ~1.2x *slower*; with AVX2 alone bf16
    matrix products are emulated, ~70x slower. The instruction set is the one torch reports, so
    ``ATEN_CPU_CAPABILITY=avx2`` (a stand-in for another CPU) also gets that CPU's precision.
    """
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"`` into ``"bf16"``, ``"fp16"`` or ``"fp32"`` for ``device``; check the others.

    bf16 keeps float32's range, so it needs no loss scaling: used on GPUs that have it and on CPUs
    where it is faster (AMX, see ``cpu_bf16_is_faster``). fp16 (with a gradient scaler) is for
    older GPUs such as the T4.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_bf16_is_faster():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' needs a GPU; on the CPU use 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            "this GPU has no bfloat16 support; use precision='fp16' (with loss scaling) or 'auto'"
        )
    return precision


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# =========================================================================== optimizer and schedule


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, without weight decay on biases and LayerNorm weights.

    Decay pulls weights towards zero; for a bias or a LayerNorm gain that only shifts or rescales
    a feature, and pulling a gain towards zero fights the normalisation. Those are exactly the
    1-D parameters.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (all are frozen); unfreeze some")
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    settings = dict(lr=config.lr, betas=config.betas, eps=config.eps)
    try:  # one fused kernel for all parameters: 3-5x faster than the default on a CPU
        return torch.optim.AdamW(groups, fused=True, **settings)
    except (RuntimeError, ValueError):  # older PyTorch, or a device without the fused kernel
        return torch.optim.AdamW(groups, **settings)


def lr_schedule(
    total_steps: int, warmup_steps: int = 0, kind: str = "linear", min_ratio: float = 0.0
) -> Callable[[int], float]:
    """The learning-rate multiplier for optimizer step ``s`` (0-based): warm-up, then decay.

    Warm-up rises linearly to 1 over ``warmup_steps`` (the first step already learns a little);
    then ``"linear"`` falls in a straight line and ``"cosine"`` along half a cosine towards
    ``min_ratio``; ``"constant"`` stays at 1. Plot it with
    ``[f(s) for s in range(total_steps)]``.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, "
                         f"{warmup_steps}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        shape = 1 - progress if kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        return min_ratio + (1 - min_ratio) * shape

    return multiplier


# =========================================================================== data order


def epoch_batches(
    n: int,
    batch_size: int,
    *,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    lengths: Sequence[int] | None = None,
) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch, a pure function of ``(seed, epoch)``.

    Because the order is recomputed rather than drawn from a shared generator, a resumed run
    finds the same order and only has to skip the batches it has already seen.
    With ``lengths``, examples of similar length share a batch (little padding): the shuffled
    order is cut into windows of 50 batches, each sorted by length, and the batches shuffled.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if lengths is not None:
        lengths = np.asarray(lengths)
        window = batch_size * 50 if shuffle else n
        order = np.concatenate(
            [chunk[np.argsort(-lengths[chunk], kind="stable")]
             for chunk in np.array_split(order, range(window, n, window))]
        )
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if lengths is not None and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _example_lengths(data) -> list[int]:
    """The length of every example, for length grouping: its ``input_ids``, else its ``text``
    (characters: a fine proxy when the collator tokenizes per batch)."""
    for field in ("input_ids", "text"):
        if hasattr(data, "column_names"):  # a datasets.Dataset: read one column at once
            if field in data.column_names:
                return [len(value) for value in data[field]]
            continue
        try:
            return [len(data[i][field]) for i in range(len(data))]
        except (KeyError, TypeError, IndexError):
            continue
    raise ValueError(
        "group_by_length=True needs examples with an 'input_ids' or 'text' field to measure; "
        "set group_by_length=False or add one of these fields"
    )


def _check_dataset(data, name: str) -> None:
    if isinstance(data, DataLoader):
        raise TypeError(
            f"pass {name} as a dataset (and collate_fn=...), not a DataLoader: train() builds "
            "its own batches so that a resumed run sees the same data order"
        )
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(
            f"{name} must be a map-style dataset (len() and indexing), such as a list of "
            f"examples or a datasets.Dataset; got {type(data).__name__}"
        )
    if len(data) == 0:
        raise ValueError(f"{name} is empty")


def _loader(data, batches, collate_fn, num_workers: int, pin: bool) -> DataLoader:
    # A private generator: creating the iterator must not draw from the global RNG that
    # dropout and masking use, or a resumed run would drift from the original.
    return DataLoader(
        data,
        batch_sampler=batches,
        collate_fn=collate_fn or default_collate,
        num_workers=num_workers,
        pin_memory=pin,
        generator=torch.Generator(),
    )


# =========================================================================== model calls


def _forward_keywords(model: nn.Module) -> tuple[set[str] | None, bool]:
    """Names ``model.forward`` accepts (None: anything) and whether it offers ``masked_only``."""
    parameters = inspect.signature(_unwrap(model).forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return (None if takes_any else set(parameters)), "masked_only" in parameters


def _model_inputs(batch: dict, accepted: set[str] | None, masked_only: bool) -> dict:
    inputs = {k: v for k, v in batch.items()
              if isinstance(v, torch.Tensor) and (accepted is None or k in accepted)}
    if masked_only and "labels" in inputs:
        inputs["masked_only"] = True  # MLM logits at the masked positions only
    return inputs


def _to_device(batch, device: torch.device) -> dict:
    if not isinstance(batch, dict):
        raise TypeError(
            f"a batch must be a dict of tensors (input_ids, attention_mask, labels, ...), "
            f"got {type(batch).__name__}; pass a collate_fn that returns one"
        )
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _token_count(batch: dict) -> int:
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    return ids.numel() if isinstance(ids, torch.Tensor) else 0


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the module


# =========================================================================== random states


def _own_generator(collate_fn) -> torch.Generator | None:
    """A collator's private generator (e.g. ``MLMCollator(seed=0)``), saved and restored too."""
    generator = getattr(collate_fn, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _rng_state(collate_generator: torch.Generator | None = None) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        # plain ints and a tensor, so that weights_only loading accepts them
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "collate": collate_generator.get_state() if collate_generator is not None else None,
    }


def _set_rng_state(state: dict, collate_generator: torch.Generator | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    if collate_generator is not None and state.get("collate") is not None:
        collate_generator.set_state(state["collate"])


@contextlib.contextmanager
def _isolated_rng(seed: int, collate_generator: torch.Generator | None = None):
    """Run a block with seeded generators, then put the previous states back.

    Evaluation uses this: held-out batches get the same masks at every evaluation (so the
    figures are comparable), and training's own random sequence is not disturbed.
    """
    saved = _rng_state(collate_generator)
    seed_everything(seed)
    if collate_generator is not None:
        collate_generator.manual_seed(seed)
    try:
        yield
    finally:
        _set_rng_state(saved, collate_generator)


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


# =========================================================================== checkpoints


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (a folder: so that a rename inside it is durable)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a folder; its renames are atomic all the same
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_CHECKPOINT = re.compile(r"step-\d{7}")  # the folders save_checkpoint writes
_TEMPORARY = re.compile(r"\.(step-\d{7}|checkpoints\.json)\.[0-9a-f]{8}\.tmp")


def _temporary_name(folder: Path, name: str) -> Path:
    """A fresh hidden name beside ``name``: on the same file system, so renaming is atomic."""
    return folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new one, never a mixture."""
    tmp = _temporary_name(path.parent, path.name)
    try:
        _write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def _read_index(run_dir: Path) -> dict | None:
    path = Path(run_dir) / INDEX_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it names the run's checkpoints "
                         "and is only ever replaced whole, so it was edited or damaged") from error


def _check_finite(model: nn.Module, step: int) -> None:
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(
            f"refusing to save the checkpoint of step {step}: parameters {bad[:3]} hold NaN or "
            "inf values; the previous checkpoint is left as it was"
        )


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Equal for tied weights (one tensor under two names), distinct otherwise."""
    if tensor.numel() == 0:
        return (id(tensor),)
    return (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))


def _write_weights(model: nn.Module, folder: Path) -> None:
    """``model.safetensors`` (+ ``config.json``): a folder ``from_pretrained`` can open."""
    from safetensors.torch import save

    tensors, seen = {}, set()
    for name, tensor in _unwrap(model).state_dict().items():
        if _storage_key(tensor) in seen:
            continue  # a tied weight (MLM decoder = word embeddings) is stored once
        seen.add(_storage_key(tensor))
        tensors[name] = tensor.detach().to("cpu").contiguous()
    _write_file(folder / WEIGHTS_NAME, save(tensors, metadata={"format": "pt"}))
    config = getattr(_unwrap(model), "config", None)
    if hasattr(config, "to_json_dict"):  # bertlab.BertConfig, in the transformers format
        text = json.dumps(config.to_json_dict([type(_unwrap(model)).__name__]), indent=2)
    elif hasattr(config, "to_json_string"):  # transformers configs
        text = config.to_json_string()
    else:
        return
    _write_file(folder / "config.json", text.encode())


def save_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    *,
    step: int,
    training_state: dict | None = None,
    best: bool = False,
    metric: float | None = None,
    keep: int | None = 1,
) -> Path:
    """Save ``model`` (and optionally the training state) as ``run_dir/step-NNNNNNN``, atomically.

    Files go to a temporary folder first, are fsynced, and the folder is renamed into place; then
    the index ``checkpoints.json`` is replaced atomically to name it the last (and, with
    ``best=True``, the best) checkpoint. Older folders beyond the ``keep`` most recent are removed,
    except the best. Returns the checkpoint folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_finite(model, step)
    index = _read_index(run_dir) or {"last": None, "best": None, "best_metric": None, "saved": []}
    name = f"step-{step:07d}"
    final = run_dir / name
    if name not in index["saved"]:
        tmp = _temporary_name(run_dir, name)
        try:
            tmp.mkdir()
            _write_weights(model, tmp)
            if training_state is not None:
                buffer = io.BytesIO()
                torch.save(training_state, buffer)
                _write_file(tmp / STATE_NAME, buffer.getvalue())
            for file in tmp.iterdir():
                _fsync(file)
            _fsync(tmp)
            if final.exists():  # left over by a crash before its index update: never valid
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync(run_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        index["saved"].append(name)
    index["last"] = name
    if best:
        index["best"], index["best_metric"] = name, metric
    recent = index["saved"] if keep is None else index["saved"][-keep:]
    index["saved"] = [s for s in index["saved"] if s in recent or s == index["best"]]
    _atomic_write(run_dir / INDEX_NAME, json.dumps(index, indent=1).encode())
    # Only now, with the new index in place, is anything old removed: checkpoints dropped from
    # the index and temporaries a crash left behind. Other files in the folder are not touched.
    for path in run_dir.iterdir():
        if _TEMPORARY.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir() and (_TEMPORARY.fullmatch(path.name) or (
                _CHECKPOINT.fullmatch(path.name) and path.name not in index["saved"])):
            shutil.rmtree(path, ignore_errors=True)
    return final


def _checkpoint_folder(path: str | Path, which: str = "last") -> Path:
    path = Path(path)
    if (path / WEIGHTS_NAME).exists():
        return path
    index = _read_index(path) if path.is_dir() else None
    if index is None:
        raise FileNotFoundError(
            f"no checkpoint at {path}: expected a run folder with {INDEX_NAME} or a checkpoint "
            f"folder with {WEIGHTS_NAME}"
        )
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    if index.get(which) is None:
        raise FileNotFoundError(f"the run in {path} has no {which!r} checkpoint yet")
    return path / index[which]


def _load_weights(model: nn.Module, folder: Path) -> None:
    from safetensors.torch import load_file

    path = folder / WEIGHTS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a complete checkpoint")
    tensors = load_file(path)
    expected = _unwrap(model).state_dict()
    wrong_shape = [(k, tuple(tensors[k].shape), tuple(v.shape))
                   for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if wrong_shape:
        name, saved, wanted = wrong_shape[0]
        raise ValueError(
            f"checkpoint {path} does not fit this model: {name!r} has shape {saved} in the "
            f"checkpoint but {wanted} in the model ({len(wrong_shape)} tensor(s) differ). It comes "
            "from another model size or vocabulary; build the model with the checkpoint's "
            "config (config.json beside it) or train a new run in another folder"
        )
    # Tied weights (the MLM decoder shares the word embeddings) are stored once.
    owner = {}
    for key, value in expected.items():
        owner.setdefault(_storage_key(value), key)
    for key, value in expected.items():
        alias = owner[_storage_key(value)]
        if key not in tensors and alias in tensors:
            tensors[key] = tensors[alias]
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit this model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; it was saved from a different model class"
        )
    _unwrap(model).load_state_dict(tensors)


def load_checkpoint(path: str | Path, model: nn.Module, *, which: str = "last") -> dict:
    """Load a checkpoint's weights into ``model``; return where it came from and its step.

    ``path`` is a run folder (``which`` picks its ``"last"`` or ``"best"`` checkpoint) or one
    checkpoint folder. Shapes are checked: a checkpoint of another model size gives a
    ``ValueError`` naming both shapes.
    """
    folder = _checkpoint_folder(path, which)
    _load_weights(model, folder)
    state = _load_training_state(folder)
    info = {"path": folder, "step": int(folder.name.split("-")[-1])}
    if state is not None and "progress" in state:
        info |= {"epoch": state["progress"]["epoch"],
                 "best_metric": state["progress"]["best_metric"]}
    return info


def _load_training_state(folder: Path) -> dict | None:
    path = folder / STATE_NAME
    if not path.exists():
        return None
    # weights_only: tensors and plain Python values, nothing that can run code when loaded
    return torch.load(path, map_location="cpu", weights_only=True)


def list_checkpoints(run_dir: str | Path) -> pd.DataFrame:
    """The checkpoints a run kept: folder, step, and whether it is the last / the best."""
    index = _read_index(Path(run_dir))
    if index is None:
        raise FileNotFoundError(f"{run_dir} holds no {INDEX_NAME}: not a training run folder")
    rows = [{"step": int(name.split("-")[-1]), "path": Path(run_dir) / name,
             "last": name == index["last"], "best": name == index["best"]}
            for name in index["saved"]]
    return pd.DataFrame(rows, columns=["step", "path", "last", "best"])


# =========================================================================== freezing


def freeze(model: nn.Module, *, embeddings: bool = False, layers: int = 0) -> int:
    """Stop training the embeddings and/or the first ``layers`` encoder layers of a BERT model.

    Works on a bertlab or Hugging Face BERT (the encoder is found at ``model.bert`` or the model
    itself). Returns the number of parameters frozen. Build the optimizer (call ``train``) after.
    """
    base = getattr(model, "bert", model)
    if not hasattr(base, "embeddings") or not hasattr(base, "encoder"):
        raise TypeError(f"freeze() needs a BERT model with .embeddings and .encoder.layer; got "
                        f"{type(model).__name__}")
    blocks = base.encoder.layer
    if not 0 <= layers <= len(blocks):
        raise ValueError(f"layers must be between 0 and {len(blocks)} (the model's depth), "
                         f"got {layers}")
    modules = ([base.embeddings] if embeddings else []) + list(blocks[:layers])
    count = 0
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                count += p.numel()
    return count


# =========================================================================== evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    metrics: Callable[[], LossMetrics] | None = None,
    seed: int = 0,
    sparse_mlm: bool = True,
) -> dict[str, float]:
    """Loss and task metrics of ``model`` on ``data``, in eval mode, without gradients.

    The metrics follow the model's output: MLM loss / accuracy / perplexity and NSP accuracy for
    pretraining heads, accuracy / precision / recall / macro-F1 for classifiers, the loss
    otherwise; or pass ``metrics=`` an accumulator class from ``bertlab.metrics``. Random
    choices in the collator (MLM masks) are seeded with ``seed``, so repeated evaluations mask
    the same tokens, and training's random sequence is left untouched.
    """
    _check_dataset(data, "eval data")
    device = resolve_device(device) if device is not None else _model_device(model)
    precision = resolve_precision(precision, device)
    accepted, offers_masked_only = _forward_keywords(model)
    was_training = model.training
    model.eval()
    accumulator = metrics() if metrics is not None else None
    try:
        with _isolated_rng(seed, _own_generator(collate_fn)):
            batches = epoch_batches(len(data), batch_size, shuffle=False)
            for batch in _loader(data, batches, collate_fn, 0, device.type == "cuda"):
                batch = _to_device(batch, device)
                with _autocast(device, precision):
                    output = model(**_model_inputs(batch, accepted, sparse_mlm and
                                                   offers_masked_only))
                if getattr(output, "loss", None) is None:
                    raise ValueError("the model returned no loss: evaluation batches need labels")
                accumulator = accumulator or metrics_for(batch, output)
                accumulator.update(batch, output)
    finally:
        model.train(was_training)
    return accumulator.compute()


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


# =========================================================================== progress and logs


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, Colab, VS Code): tqdm shows a widget."""
    return "ipykernel.zmqshell" in sys.modules


def _progress_bar(total: int, initial: int, enabled: bool | None):
    """A tqdm.auto bar over optimizer steps.

    By default it shows only where someone watches: a widget in a notebook (its saved text is
    the same on every run, so nbval is happy) or a text bar in a terminal. Elsewhere (scripts
    piped to a file, pytest) it stays silent, because tqdm writes to stderr.
    """
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = _in_notebook() or sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=not enabled,
                dynamic_ncols=True)


def _tensorboard(setting, checkpoint_dir):
    if not setting:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("TensorBoard logging skipped: the tensorboard package is not installed "
              "(pip install tensorboard).")
        return None
    if isinstance(setting, (str, Path)):
        log_dir = setting
    else:
        log_dir = Path(checkpoint_dir) / "tensorboard" if checkpoint_dir else None
    return SummaryWriter(log_dir=log_dir)


def _format_metrics(values: dict) -> str:
    return " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in values.items())


# =========================================================================== training


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


# Settings that fix the order of the data: a run resumes only with the same values.
_DATA_SETTINGS = ("batch_size", "grad_accum_steps", "seed", "shuffle", "group_by_length",
                  "drop_last")


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
    ``stopped_early``, ``interrupted``, ``skipped_batches``, ``device``, ``precision`` and
    ``checkpoint`` (the last checkpoint folder, if any).
    """
    config = _configure(config, overrides)
    run = _Run(model, train_data, config, eval_data, collate_fn, eval_collate_fn or collate_fn,
               eval_metrics, callbacks)
    return run.fit()


class _Run:
    """The state of one ``train`` call and the steps it takes (see :func:`train`)."""

    def __init__(self, model, train_data, config, eval_data, collate_fn, eval_collate_fn,
                 eval_metrics, callbacks):
        _check_dataset(train_data, "train_data")
        if eval_data is not None:
            _check_dataset(eval_data, "eval_data")
        if config.patience is not None and eval_data is None:
            raise ValueError("patience (early stopping) needs eval_data to watch; pass eval_data")
        self.model, self.config = model, config
        self.train_data, self.eval_data = train_data, eval_data
        self.collate_fn, self.eval_collate_fn = collate_fn, eval_collate_fn
        self.eval_metrics, self.callbacks = eval_metrics, callbacks
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.run_dir = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None

        self.lengths = _example_lengths(train_data) if config.group_by_length else None
        self.batches_per_epoch = len(self.batches_of(0))
        if self.batches_per_epoch == 0:
            raise ValueError(f"train_data has {len(train_data)} examples, fewer than one batch "
                             f"of {config.batch_size} with drop_last=True; lower batch_size")
        steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accum_steps)
        self.total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
        warmup = (config.warmup_steps if config.warmup_steps is not None
                  else round(config.warmup_ratio * self.total_steps))

        model.to(self.device)
        model.train()
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_schedule(self.total_steps, warmup, config.schedule, config.min_lr_ratio),
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.accepted, offers_masked_only = _forward_keywords(model)
        self.masked_only = config.sparse_mlm and offers_masked_only
        self.greater_is_better = config.greater_is_better
        if self.greater_is_better is None:
            self.greater_is_better = not any(w in config.metric for w in ("loss", "perplexity"))

        self.progress = _Progress()
        seed_everything(config.seed)
        self._resume_if_asked()
        # the random state that a checkpoint of the current step restores
        self.rng_snapshot = _rng_state(_own_generator(collate_fn))
        self.best_weights = None  # in-memory copy of the best weights, without checkpoint_dir
        self.last_saved = None  # step of the last checkpoint this call wrote
        self.window = dict(loss=0.0, steps=0, tokens=0, seconds=0.0)  # since the last row
        self.grad_norm = None
        self.postfix = ""

    # ------------------------------------------------------------------ data

    def batches_of(self, epoch: int) -> list[list[int]]:
        config = self.config
        return epoch_batches(len(self.train_data), config.batch_size, epoch=epoch,
                             seed=config.seed, shuffle=config.shuffle,
                             drop_last=config.drop_last, lengths=self.lengths)

    def _data_settings(self) -> dict:
        return {**{name: getattr(self.config, name) for name in _DATA_SETTINGS},
                "batches_per_epoch": self.batches_per_epoch}

    # ------------------------------------------------------------------ resume

    def _resume_if_asked(self) -> None:
        index = _read_index(self.run_dir) if self.run_dir is not None else None
        if index is None or index.get("last") is None:
            return
        if not self.config.resume:
            raise ValueError(
                f"{self.run_dir} already holds a run (last checkpoint {index['last']}); pass "
                "resume=True to continue it, or choose a new checkpoint_dir"
            )
        folder = self.run_dir / index["last"]
        state = _load_training_state(folder)
        if state is None:
            raise ValueError(f"{folder} has weights but no {STATE_NAME}: it cannot be resumed")
        for key, value in self._data_settings().items():  # batches_per_epoch last: data size
            if state["data"][key] != value:
                raise ValueError(
                    f"cannot resume: the checkpoint was trained with {key}="
                    f"{state['data'][key]!r} but this run has {key}={value!r}; resume with the "
                    "same data and batch settings (or start a new run in another checkpoint_dir)"
                )
        _load_weights(self.model, folder)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise ValueError(f"the optimizer state in {folder} does not fit this model's "
                             f"trainable parameters ({error}); freeze the same layers as the "
                             "original run") from error
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], _own_generator(self.collate_fn))
        self.progress = _Progress(**state["progress"])

    # ------------------------------------------------------------------ the loop

    def fit(self) -> pd.DataFrame:
        progress, config = self.progress, self.config
        self.bar = _progress_bar(self.total_steps, progress.step, config.progress)
        self.writer = _tensorboard(config.tensorboard, self.run_dir)
        last_row = progress.history[-1] if progress.history else {}
        evaluated_at = last_row["step"] if any(k.startswith("eval_") for k in last_row) else None
        stopped_early = interrupted = False
        try:
            while progress.step < self.total_steps and not stopped_early:
                batches = self.batches_of(progress.epoch)[progress.batch_in_epoch:]
                loader = iter(_loader(self.train_data, batches, self.collate_fn,
                                      config.num_workers, self.device.type == "cuda"))
                while (progress.batch_in_epoch < self.batches_per_epoch
                       and progress.step < self.total_steps and not stopped_early):
                    lr = self._step(loader)
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
            interrupted = True
            self.optimizer.zero_grad(set_to_none=True)  # drop a half-accumulated step
            self._save()
            where = (f"; checkpoint in {self.run_dir / _read_index(self.run_dir)['last']}"
                     if self.run_dir is not None else " (no checkpoint_dir: nothing saved)")
            print(f"Interrupted at step {progress.step}/{self.total_steps}{where}.")
        finally:
            self.bar.close()
            if self.writer is not None:
                self.writer.close()

        if config.restore_best and not interrupted and progress.best_step not in (
                None, progress.step):
            if self.run_dir is not None:
                load_checkpoint(self.run_dir, self.model, which="best")
            elif self.best_weights is not None:
                _unwrap(self.model).load_state_dict(self.best_weights)
        return self._history(stopped_early=stopped_early, interrupted=interrupted)

    def _step(self, loader) -> float | None:
        """One optimizer step over ``grad_accum_steps`` batches; the lr it used (None: skipped)."""
        progress, config = self.progress, self.config
        started = time.perf_counter()
        group = min(config.grad_accum_steps, self.batches_per_epoch - progress.batch_in_epoch)
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for _ in range(group):
            batch = next(loader)
            tokens += _token_count(batch)
            batch = _to_device(batch, self.device)
            with _autocast(self.device, self.precision):
                output = self.model(**_model_inputs(batch, self.accepted, self.masked_only))
            if getattr(output, "loss", None) is None:
                raise ValueError("the model returned no loss: training batches need labels "
                                 "(check the collate_fn)")
            self.scaler.scale(output.loss / group).backward()
            loss_sum += output.loss.detach().float()
        loss = float(loss_sum) / group  # the one host-device sync of a step

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
            self.rng_snapshot = _rng_state(_own_generator(self.collate_fn))

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
                           sparse_mlm=config.sparse_mlm)
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
                                     for k, v in _unwrap(self.model).state_dict().items()}
        else:
            progress.bad_evals += 1
        self._save(best=improved)
        if self.writer is not None:
            for key, v in results.items():
                self.writer.add_scalar(f"eval/{key}", v, progress.step)
        self.bar.set_postfix_str(f"{self.postfix} | {config.metric} {value:.4g}", refresh=False)
        if config.verbose:
            print(f"step {progress.step}/{self.total_steps} | "
                  + _format_metrics({k: v for k, v in row.items() if k != "step"}))
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
        save_checkpoint(self.run_dir, self.model, step=progress.step, training_state=state,
                        best=best, metric=progress.best_metric if best else None,
                        keep=self.config.keep_checkpoints)
        self.last_saved = progress.step

    def _history(self, *, stopped_early: bool, interrupted: bool) -> pd.DataFrame:
        progress = self.progress
        history = pd.DataFrame(progress.history)
        checkpoint = None
        if self.last_saved is not None:
            checkpoint = self.run_dir / _read_index(self.run_dir)["last"]
        history.attrs.update(
            best_step=progress.best_step, best_metric=progress.best_metric,
            stopped_early=stopped_early, interrupted=interrupted,
            skipped_batches=progress.skipped_batches, device=str(self.device),
            precision=self.precision, checkpoint=checkpoint,
        )
        return history


def _history_row(history: list, step: int, epoch: float, lr: float) -> dict:
    """The history row of ``step``, created if needed (training and evaluation share it)."""
    if not history or history[-1]["step"] != step:
        history.append({"step": step, "epoch": epoch, "lr": lr})
    return history[-1]


# =========================================================================== prediction


class Predictions(NamedTuple):
    labels: list[str]  # predicted class names
    label_ids: np.ndarray  # predicted class ids, shape (n,)
    probabilities: np.ndarray  # softmax over classes, shape (n, num_labels)


@torch.no_grad()
def predict(
    model: nn.Module,
    tokenizer,
    texts: str | Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    label_names: Sequence[str] | None = None,
) -> Predictions:
    """Classify new sentences with a fine-tuned sequence classifier.

    Returns the predicted label names (``label_names``, else the model config's ``id2label``),
    their ids and the class probabilities. The model runs in eval mode on its own device.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a non-empty list of strings")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    accepted, _ = _forward_keywords(model)
    chunks = []
    try:
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt")
            output = model(**_model_inputs(_to_device(dict(encoded), device), accepted, False))
            chunks.append(output.logits.float().softmax(-1).cpu())
    finally:
        model.train(was_training)
    probabilities = torch.cat(chunks).numpy()
    ids = probabilities.argmax(-1)
    if label_names is None:  # the config's class names, else LABEL_0, LABEL_1, ... as in HF
        config = getattr(_unwrap(model), "config", None)
        label2id = getattr(config, "label2id", None) or {}
        id2label = getattr(config, "id2label", None) or {i: n for n, i in label2id.items()}
        label_names = [str(id2label.get(i, f"LABEL_{i}")) for i in range(probabilities.shape[1])]
    elif len(label_names) != probabilities.shape[1]:
        raise ValueError(f"label_names has {len(label_names)} names but the model predicts "
                         f"{probabilities.shape[1]} classes")
    return Predictions([label_names[i] for i in ids], ids, probabilities)


class _CallableModule(types.ModuleType):
    """``bertlab.train`` names both this module and its main function. Python makes an imported
    submodule an attribute of its package, so after ``import bertlab.train`` the name
    ``from bertlab import train`` hands back the module. Calling the module calls the function,
    so that ``train(model, data, ...)`` works whichever of the two a learner holds."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
