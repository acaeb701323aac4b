"""One fine-tuning epoch on the sentiment training split: dynamic padding vs padding to 128,
and the classifier's [CLS]-only last layer vs every position.

The contenders run ``bertlab.train`` for one epoch over the Rotten Tomatoes training split
(tiny BERT, WordPiece vocabulary of 8,192 trained on that split, batch 32, same initial weights):

* ``pad to 128``: every example padded to 128 tokens, the common tutorial recipe
  (``tokenizer(..., padding="max_length", max_length=128)``);
* ``dynamic + grouped``: each batch padded to its longest example (rounded up to a multiple of
  8), and batches formed from examples of similar length (``group_by_length=True``), so almost
  no compute goes to padding. Rounding to 8 keeps the number of distinct batch shapes small:
  with bf16 on a CPU, oneDNN builds and caches kernels per shape, and fully ragged shapes cost
  ~150 MB more peak memory for no speed; on a GPU, tensor cores want multiples of 8 too.
* ``+ [CLS]-only layer``: the same, with the last layer computing ``[CLS]`` alone, what
  ``BertForSequenceClassification`` does by default (the two above ask for every hidden state,
  which runs every position, as the classifier did before).

Each epoch runs in a fresh Python process, the two contenders taking turns; the table shows the
median time and the median peak memory (resident set on the CPU, allocated memory on a GPU).

Usage: python benchmarks/finetuning_epoch.py [--repeats 3] [--device cpu|cuda] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import machine_line, median, paired_speedup, peak_rss_mib

from bertlab.batching import epoch_batches
from bertlab.data.collators import PaddingCollator
from bertlab.devices import resolve_device, resolve_precision
from bertlab.training import train

CONTENDERS = {"pad to 128": dict(pad_to_multiple_of=128, group_by_length=False, every_position=True),
              "dynamic + grouped": dict(pad_to_multiple_of=8, group_by_length=True,
                                        every_position=True),
              "+ [CLS]-only layer": dict(pad_to_multiple_of=8, group_by_length=True,
                                         every_position=False)}
MAX_LENGTH, BATCH, VOCAB, TARGET = 128, 32, 8192, 3.0


def prepare(folder: Path, limit: int | None) -> list[dict]:
    """Tokenize the training split once (the epochs then load it) and save it as JSON."""
    from bertlab import load_sentiment, train_wordpiece

    split = load_sentiment("rotten_tomatoes")["train"]
    if limit:
        split = split.select(range(min(limit, len(split))))
    texts, labels = list(split["text"]), list(split["label"])
    tokenizer = train_wordpiece(texts, vocab_size=VOCAB)
    ids = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    examples = [{"input_ids": x, "label": y} for x, y in zip(ids, labels, strict=True)]
    (folder / "examples.json").write_text(json.dumps(examples))
    return examples


def one_epoch(folder: Path, contender: str, device: str | None) -> tuple[float, float]:
    """Train one epoch in this process; return (seconds, peak memory in MiB)."""
    from bertlab import BertConfig, BertForSequenceClassification

    class EveryPosition(BertForSequenceClassification):
        """The classifier with its last layer run at every position (every state asked for)."""

        def forward(self, *args, **kwargs):
            return super().forward(*args, **kwargs, output_hidden_states=True)

    examples = json.loads((folder / "examples.json").read_text())
    settings = CONTENDERS[contender]
    torch.manual_seed(0)
    kind = EveryPosition if settings["every_position"] else BertForSequenceClassification
    model = kind(BertConfig.named("tiny", vocab_size=VOCAB))
    device = resolve_device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    collate = PaddingCollator(pad_token_id=0, pad_to_multiple_of=settings["pad_to_multiple_of"])
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # pay torch's lazy imports up front
    start = time.perf_counter()
    train(model, examples, collate_fn=collate, epochs=1, batch_size=BATCH, lr=1e-4,
          group_by_length=settings["group_by_length"], device=str(device), progress=False,
          log_every=50)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else peak_rss_mib())
    return seconds, peak


def padded_tokens(examples: list[dict]) -> dict[str, int]:
    """Tokens the model processes in one epoch (real + padding), per contender."""
    lengths = [len(e["input_ids"]) for e in examples]
    grouped = epoch_batches(len(lengths), BATCH, seed=0, lengths=lengths)
    def padded(batch: list[int]) -> int:
        return -(-max(lengths[i] for i in batch) // 8) * 8  # rounded up to a multiple of 8

    dynamic = sum(len(b) * padded(b) for b in grouped)
    return {"pad to 128": len(lengths) * MAX_LENGTH, "dynamic + grouped": dynamic,
            "+ [CLS]-only layer": dynamic, "real": sum(lengths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--limit", type=int, default=None, help="use the first N examples only")
    parser.add_argument("--epoch-of", nargs=2, metavar=("FOLDER", "CONTENDER"),
                        help=argparse.SUPPRESS)  # used by the per-epoch subprocesses
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.epoch_of:
        seconds, peak = one_epoch(Path(args.epoch_of[0]), args.epoch_of[1], args.device)
        print(json.dumps({"seconds": seconds, "peak": peak}))
        return

    import subprocess

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        examples = prepare(folder, args.limit)
        tokens = padded_tokens(examples)
        print(f"Fine-tuning epoch: tiny BERT, {len(examples):,} training examples, batch {BATCH}, "
              f"precision {resolve_precision('auto', device)}")
        print(machine_line(device))
        print(f"tokens per epoch: {tokens['real']:,} real; the model processes "
              f"{tokens['pad to 128']:,} padded to 128, "
              f"{tokens['dynamic + grouped']:,} with dynamic padding + length grouping")
        runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
        for _ in range(args.repeats):
            for name in CONTENDERS:
                command = [sys.executable, __file__, "--epoch-of", tmp, name]
                if args.device:
                    command += ["--device", args.device]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
                runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))

    memory_kind = "GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"\n{args.repeats} interleaved rounds, medians; speed-up = median of per-round ratios")
    print(f"{'contender':<20} {'s/epoch':>9} {'examples/s':>11} {'speed-up':>9} "
          f"{memory_kind:>13}")
    reference = [r["seconds"] for r in runs["pad to 128"]]
    for name, results in runs.items():
        seconds = [r["seconds"] for r in results]
        peak = median([r["peak"] for r in results])
        print(f"{name:<20} {median(seconds):9.1f} {len(examples) / median(seconds):11,.0f} "
              f"{paired_speedup(reference, seconds):8.2f}x {peak:13.0f}")
    ratio = paired_speedup(reference, [r["seconds"] for r in runs["dynamic + grouped"]])
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"dynamic + grouped vs pad to 128: {ratio:.2f}x (target >= {TARGET:.0f}x: {verdict})")
    cls_only = paired_speedup([r["seconds"] for r in runs["dynamic + grouped"]],
                              [r["seconds"] for r in runs["+ [CLS]-only layer"]])
    print(f"[CLS]-only last layer vs every position (both dynamic + grouped): {cls_only:.2f}x")


if __name__ == "__main__":
    main()
