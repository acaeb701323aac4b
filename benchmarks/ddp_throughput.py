"""Data-parallel throughput: 2 CPU processes under torchrun against 1 process, same global batch.

One step = forward + backward + gradient clipping + fused AdamW (the engine's step), tiny BERT,
vocabulary 8,192, global batch 32 x 128 (15% masked, NSP labels), sparse MLM, float32. The
contenders:

* ``1 process, 1 thread`` and ``1 process, 2 threads``: the whole global batch in one process;
* ``2 processes x 1 thread``: ``torchrun --nproc_per_node=2``, each process half of the batch,
  gradients averaged by ``DistributedDataParallel`` over gloo, as ``bertlab.train`` does;
* inside the 2-process run, the same step under ``no_sync`` (no gradient all-reduce): its
  difference to the real step is what the all-reduce costs per step, and an all-reduce of one
  buffer the size of every gradient is timed on its own.

Each configuration runs in its own processes (``torchrun`` for two), its steps interleaved as in
the other benchmarks; the speed-up is the ratio of median step times (the contenders run one
after another here, so a change in the machine's load between them is not cancelled out).

Usage: python benchmarks/ddp_throughput.py [--repeats 7] [--threads-max 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys

import torch
from _common import interleaved_timings, machine_line, median
from pretraining_throughput import VOCAB, make_batch

from bertlab import BertConfig, BertForPreTraining, TrainConfig
from bertlab.distributed import process_group, rank, world_size
from bertlab.optimization import make_optimizer

BATCH = 32  # the global batch of pretraining_throughput.make_batch


def measure(repeats: int) -> dict:
    """Median seconds of a step (and, with several processes, of a no_sync step and of an
    all-reduce of every gradient), in this process; rank 0's figures."""
    cpu = torch.device("cpu")
    world, me = world_size(), rank()
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.named("tiny", vocab_size=VOCAB)).train()
    optimizer = make_optimizer(model, TrainConfig())
    shard = BATCH // world
    batch = {k: v[me * shard:(me + 1) * shard] for k, v in make_batch(cpu).items()}
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)

    def step(sync: bool = True) -> None:
        with contextlib.nullcontext() if sync or world == 1 else net.no_sync():
            net(**batch, masked_only=True).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    contenders = {"step": step}
    if world > 1:
        gradients = torch.zeros(sum(p.numel() for p in model.parameters()))
        contenders["no_sync step"] = lambda: step(sync=False)
        contenders["all-reduce"] = lambda: torch.distributed.all_reduce(gradients)
    times = interleaved_timings(contenders, repeats, cpu)
    result = {name: median(values) for name, values in times.items()}
    result["gradient_mib"] = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    return result


def child(args) -> None:
    torch.set_num_threads(args.threads)
    with process_group():
        result = measure(args.repeats)
    if rank() == 0:
        print(json.dumps(result), flush=True)


def run(processes: int, threads: int, repeats: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    script = [os.path.abspath(__file__), "--child", "--threads", str(threads),
              "--repeats", str(repeats)]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        script = ["-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                  f"--master_port={port}", "--master_addr=127.0.0.1", *script]
    result = subprocess.run([sys.executable, *script], capture_output=True, text=True,
                            env=env, timeout=1800, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{processes} x {threads} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads-max", type=int, default=2,
                        help="threads of the second one-process contender")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    cores = os.cpu_count()
    print(f"Data-parallel throughput: tiny BERT, global batch {BATCH} x 128, vocabulary "
          f"{VOCAB:,}, sparse MLM, fused AdamW, float32")
    print(machine_line(torch.device("cpu")))
    print(f"{cores} cores; DDP over gloo; {args.repeats} interleaved rounds per configuration, "
          "medians")
    rows = {
        "1 process, 1 thread": run(1, 1, args.repeats),
        f"1 process, {args.threads_max} threads": run(1, args.threads_max, args.repeats),
        "2 processes x 1 thread": run(2, 1, args.repeats),
    }
    reference = rows["1 process, 1 thread"]["step"]
    print(f"{'contender':<26}{'step ms':>9}{'examples/s':>12}{'speed-up':>10}")
    for name, row in rows.items():
        print(f"{name:<26}{1000 * row['step']:>9.1f}{BATCH / row['step']:>12.1f}"
              f"{reference / row['step']:>9.2f}x")
    ddp = rows["2 processes x 1 thread"]
    overhead = ddp["step"] - ddp["no_sync step"]
    print(f"2 processes, step without the all-reduce (no_sync): {1000 * ddp['no_sync step']:.1f} "
          f"ms; the all-reduce costs {1000 * overhead:.1f} ms a step "
          f"({100 * overhead / ddp['step']:.0f}% of it)")
    print(f"all-reduce of one {ddp['gradient_mib']:.1f} MiB buffer (every gradient) alone: "
          f"{1000 * ddp['all-reduce']:.1f} ms")
    print(f"2 processes vs 1 process on {cores} cores: "
          f"{reference / ddp['step']:.2f}x (1 thread), "
          f"{rows[f'1 process, {args.threads_max} threads']['step'] / ddp['step']:.2f}x "
          f"(against {args.threads_max} threads)")


if __name__ == "__main__":
    main()
