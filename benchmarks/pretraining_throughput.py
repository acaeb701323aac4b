"""Pretraining step throughput: bertlab against transformers.BertForPreTraining.

One step = forward + backward + gradient clipping + AdamW step, on the same batch (32 x 128
tokens, 15% of them masked, NSP labels), vocabulary 8,192, sizes tiny and mini, same initial
weights. The contenders add one change at a time, so the table shows where the speed comes from:

* ``transformers``: ``BertForPreTraining`` with SDPA attention, float32, the standard dense MLM
  loss (every position projected onto the vocabulary), ``torch.optim.AdamW`` with defaults;
* ``bertlab dense``: our model doing exactly the same work (the implementations are peers);
* ``+ sparse MLM``: ``masked_only=True``: MLM logits only at the masked positions, and the last
  encoder layer computed only for the masked tokens and ``[CLS]``, the states the heads read;
* ``+ fused AdamW``: the engine's optimizer (``make_optimizer``: one fused kernel, no weight
  decay on biases and LayerNorm);
* ``+ <precision> autocast``: the engine's automatic precision on this device (bf16 on GPUs and
  on CPUs with AMX, where it is faster; none elsewhere). The last row without "(forced)" is what
  ``bertlab.train`` does by default; the summary lines read it and the float32 step (the
  ``+ fused AdamW`` row) against the targets.
* ``+ bf16 autocast (forced)``, with ``--bf16`` where "auto" picks float32: what bf16 would cost
  on this CPU, the measurement behind ``bertlab.devices.cpu_bf16_is_faster``.

Usage: python benchmarks/pretraining_throughput.py [--sizes tiny mini] [--repeats 7]
       [--device cpu|cuda] [--no-memory] [--bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
import transformers
from _common import (
    interleaved_timings,
    machine_line,
    median,
    paired_speedup,
    peak_memory_in_subprocess,
    peak_rss_mib,
)

from bertlab import BertConfig, BertForPreTraining
from bertlab.config import TrainConfig
from bertlab.data.collators import mask_tokens
from bertlab.devices import resolve_device, resolve_precision
from bertlab.optimization import make_optimizer

VOCAB, BATCH, LENGTH = 8192, 32, 128
CLS, SEP, MASK = 2, 3, 4
TARGETS = {"tiny": 3.0, "mini": 2.0}  # speed-up over transformers asked for on a CPU


def make_batch(device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """[CLS] A [SEP] B [SEP] with random ordinary tokens; BERT's 15% masking (80/10/10)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (BATCH, LENGTH), generator=g)
    half = LENGTH // 2
    ids[:, 0], ids[:, half - 1], ids[:, -1] = CLS, SEP, SEP
    maskable = (ids != CLS) & (ids != SEP)
    input_ids, labels = mask_tokens(ids, maskable, mask_token_id=MASK,
                                    random_token_ids=torch.arange(5, VOCAB), generator=g)
    token_type_ids = torch.zeros_like(ids)
    token_type_ids[:, half:] = 1
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "next_sentence_label": torch.randint(0, 2, (BATCH,), generator=g),
    }
    return {k: v.to(device) for k, v in batch.items()}


FORCED_BF16 = "+ bf16 autocast (forced)"
FP32_ENGINE = "+ fused AdamW"  # what bertlab.train does in float32


def build(name: str, size: str, device: torch.device):
    """The step function of contender ``name``; every contender starts from the same weights."""
    torch.manual_seed(0)
    ours = BertForPreTraining(BertConfig.named(size, vocab_size=VOCAB))
    names = contender_names(device, bf16=True)
    level = names.index(name)  # each row adds one change to the row above
    if level == 0:
        model = transformers.BertForPreTraining._from_config(
            ours.config.to_hf(), attn_implementation="sdpa")
        model.load_state_dict(ours.state_dict())
    else:
        model = ours
    model.to(device).train()
    extra = {"masked_only": True} if level >= 2 else {}
    optimizer = (make_optimizer(model, TrainConfig()) if level >= 3
                 else torch.optim.AdamW(model.parameters()))
    precision = name.split()[1] if level >= 4 else "fp32"  # "+ bf16 autocast" -> "bf16"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    batch = make_batch(device)

    def step() -> None:
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            loss = model(**batch, **extra).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def contender_names(device: torch.device, bf16: bool = False) -> list[str]:
    names = ["transformers", "bertlab dense", "+ sparse MLM", FP32_ENGINE]
    auto = resolve_precision("auto", device)
    if auto != "fp32":
        return [*names, f"+ {auto} autocast"]
    return [*names, FORCED_BF16] if bf16 and device.type == "cpu" else names


def measure_memory(name: str, size: str, device: torch.device) -> float:
    """Peak memory (MiB) of three steps of one contender: GPU allocations, or process RSS."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step = build(name, size, device)
    for _ in range(3):
        step()
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mini"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--bf16", action="store_true",
                        help="also time bf16 autocast where the automatic precision is float32")
    parser.add_argument("--memory-of", nargs=2, metavar=("CONTENDER", "SIZE"),
                        help=argparse.SUPPRESS)  # used by the memory subprocesses
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    if args.memory_of:
        print(measure_memory(*args.memory_of, device))
        return

    print(f"Pretraining step throughput, batch {BATCH} x {LENGTH}, vocabulary {VOCAB:,}")
    print(machine_line(device))
    print(f"automatic precision here: {resolve_precision('auto', device)} (torch reports "
          f"{torch.backends.cpu.get_cpu_capability()})")
    names = contender_names(device, bf16=args.bf16)
    engine = [name for name in names if name != FORCED_BF16][-1]  # what bertlab.train does
    for size in args.sizes:
        steps = {name: build(name, size, device) for name in names}
        times = interleaved_timings(steps, args.repeats, device)
        memory = {}
        if not args.no_memory:
            for name in names:
                if device.type == "cuda":
                    memory[name] = measure_memory(name, size, device)
                else:
                    memory[name] = peak_memory_in_subprocess(
                        __file__, ["--memory-of", name, size, "--device", str(device),
                                   "--threads", str(torch.get_num_threads())])
        reference = times["transformers"]
        print(f"\nsize {size}: {args.repeats} interleaved rounds; median and best step time; "
              "speed-up = median of the per-round ratios")
        print(f"{'contender':<26} {'median ms':>10} {'best ms':>8} {'tokens/s':>9} "
              f"{'speed-up':>9} {'peak MiB':>9}")
        for name in names:
            seconds = median(times[name])
            peak = f"{memory[name]:9.0f}" if memory else f"{'-':>9}"
            print(f"{name:<26} {seconds * 1000:10.1f} {min(times[name]) * 1000:8.1f} "
                  f"{BATCH * LENGTH / seconds:9,.0f} "
                  f"{paired_speedup(reference, times[name]):8.2f}x {peak}")
        rows = {"float32 step (precision='fp32')": FP32_ENGINE}
        if engine != FP32_ENGINE:
            rows[f"default step ({engine[2:]})"] = engine
        for label, name in rows.items():
            ratio = paired_speedup(reference, times[name])
            line = f"bertlab.train's {label} vs transformers: {ratio:.2f}x"
            if device.type == "cpu" and size in TARGETS:
                verdict = "met" if ratio >= TARGETS[size] else "NOT met"
                line += f" (target >= {TARGETS[size]:.0f}x on a CPU: {verdict})"
            print(line)
        del steps
    sys.stdout.flush()


if __name__ == "__main__":
    main()
