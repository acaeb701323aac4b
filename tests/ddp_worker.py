"""One ``bertlab.train`` run of a tiny BERT, for the multi-process tests (tests/test_distributed.py).

Started by the tests with ``python tests/ddp_worker.py ...`` (one process) or under
``torchrun --nproc_per_node=2`` (the same file, unchanged). Rank 0 writes the history and the
final weights to ``--out`` (``.json`` and ``.pt``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny import pretraining_examples, tiny, word_tokenizer  # noqa: E402

from bertlab import distributed  # noqa: E402
from bertlab.data.collators import MLMCollator, pad_sequences  # noqa: E402
from bertlab.heads import BertForPreTraining  # noqa: E402
from bertlab.training import train  # noqa: E402


def premasked(n: int, seed: int) -> list[dict]:
    """Pairs with their MLM labels fixed in advance: 1 to 4 masked tokens each, so the shards of
    a batch hold different numbers of them (the loss normalisation must count them)."""
    rng = random.Random(seed)
    examples = pretraining_examples(n, seed=seed)
    for example in examples:
        ids = list(example["input_ids"])
        labels = [-100] * len(ids)
        ordinary = [i for i, t in enumerate(ids) if t >= 5]
        for i in rng.sample(ordinary, rng.randint(1, 4)):
            labels[i], ids[i] = ids[i], 4  # [MASK]
        example["input_ids"], example["labels"] = ids, labels
    return examples


def collate_premasked(examples: list[dict]) -> dict:
    return {
        "input_ids": pad_sequences([e["input_ids"] for e in examples], 0),
        "attention_mask": pad_sequences([[1] * len(e["input_ids"]) for e in examples], 0),
        "token_type_ids": pad_sequences([e["token_type_ids"] for e in examples], 0),
        "labels": pad_sequences([e["labels"] for e in examples], -100),
        "next_sentence_label": torch.tensor([e["next_sentence_label"] for e in examples]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--random", action="store_true",
                        help="dropout and MLM masks drawn at random (else none: exact parity)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--crash-at", type=int, help="rank 0 is killed (SIGKILL) after this step")
    parser.add_argument("--fail-rank", type=int, help="this rank raises after step 2")
    args = parser.parse_args()
    torch.set_num_threads(1)

    torch.manual_seed(0)
    dropout = 0.1 if args.random else 0.0
    model = BertForPreTraining(tiny(hidden_dropout_prob=dropout,
                                    attention_probs_dropout_prob=dropout))
    if args.random:
        tokenizer = word_tokenizer(args.out.parent)
        data, collate = pretraining_examples(21), MLMCollator(tokenizer)
        eval_data, eval_collate = pretraining_examples(10, seed=2), MLMCollator(tokenizer)
    else:
        data, eval_data = premasked(21, seed=1), premasked(10, seed=2)
        collate = eval_collate = collate_premasked

    def accident(info: dict) -> None:
        if info["step"] == args.crash_at and distributed.rank() == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash or a lost machine would
        if info["step"] == 2 and distributed.rank() == args.fail_rank:
            raise RuntimeError(f"rank {args.fail_rank} fails on purpose at step 2")

    history = train(model, data, eval_data=eval_data, collate_fn=collate,
                    eval_collate_fn=eval_collate, callbacks=[accident], max_steps=args.steps,
                    batch_size=args.batch_size, grad_accum_steps=2, eval_every=2, log_every=1,
                    precision="fp32", lr=1e-3, warmup_steps=1, seed=3, progress=False,
                    restore_best=False, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                    save_every=2 if args.checkpoint_dir else None, keep_checkpoints=None)
    if distributed.is_main():
        args.out.with_suffix(".json").write_text(history.to_json(orient="records", double_precision=15))
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   args.out.with_suffix(".pt"))


if __name__ == "__main__":
    main()
