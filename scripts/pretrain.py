"""Pretrain a small BERT from random weights with the course's recipe, reproducibly.

The longer run of notebook 05: the same recipe (``bertlab.pretraining``), for longer, with the
engine's resumable checkpoints. Examples::

    python scripts/pretrain.py --out runs/long --minutes 60        # 10,000 steps, an hour a sitting
    python scripts/pretrain.py --out runs/long --resume            # continue where it stopped
    python scripts/pretrain.py --out runs/gpu --profile gpu        # the gpu recipe (mini, 10k steps)
    python scripts/pretrain.py --out runs/x --set mlm_probability=0.15 --set dropout=0.1
    torchrun --standalone --nproc_per_node=2 scripts/pretrain.py --out runs/ddp   # 2 processes

``--steps`` fixes the length of the run (and so its learning-rate schedule); ``--minutes``
limits one sitting: when the time is up the run saves a checkpoint and stops, and the same
command with ``--resume`` continues it exactly, with the losses it would have had. The cpu
default is ten times notebook 05's run (10,000 steps of 64 pairs); the notebook's progress bar
shows how fast your machine takes a step, so you can choose ``--steps`` for the time you have.

The output folder holds, besides the engine's ``training/`` checkpoints (weights, optimizer,
random states: what ``--resume`` reads):

* ``recipe.json`` -- every field of the recipe (seed included) and the command of each sitting;
* ``step-NNNNNN/`` snapshots and ``final/`` -- ``save_pretrained`` folders with the tokenizer,
  as notebook 05 writes them (``bertlab.pretraining.latest_pretrained(out)`` finds the newest);
* ``history.csv`` and ``summary.json`` -- the training history and the final held-out figures.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder of the run")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default=None,
                        help="recipe scale (default: gpu when CUDA is available, else cpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps of the whole run (default: the gpu profile's "
                             "10000; on the cpu ten times notebook 05's run, 10000)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop this sitting after so many minutes (checkpoint saved; "
                             "continue with --resume)")
    parser.add_argument("--snapshot-every", type=int, default=None,
                        help="steps between step-NNNNNN snapshots (default: steps / 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one recipe field, e.g. --set mlm_probability=0.15")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (same recipe as recorded there)")
    return parser.parse_args(argv)


def recipe_from_args(args):
    """The recipe: recorded in ``out/recipe.json`` when resuming, else built from the flags."""
    from bertlab import pretraining
    from bertlab.profiles import get_profile

    recorded = args.out / "recipe.json"
    if args.resume:
        if not recorded.is_file():
            raise SystemExit(f"--resume: {recorded} is missing; start the run without --resume")
        return pretraining.PretrainingRecipe.from_dict(json.loads(recorded.read_text())["recipe"])
    if recorded.exists():
        raise SystemExit(f"{args.out} already holds a run; pass --resume to continue it, or "
                         "choose another --out")
    profile = get_profile(args.profile)
    base = pretraining.recipe_for(profile)
    steps = args.steps or (base.max_steps if profile.is_gpu else 10 * base.max_steps)
    every = args.snapshot_every or max(steps // 10, 1)
    changes = {"max_steps": steps, "seed": args.seed,
               "snapshot_steps": tuple(range(every, steps + 1, every)),
               "eval_every": min(base.eval_every * (1 if profile.is_gpu else 5), steps)}
    for item in args.set:
        field, value = parse_setting(base, item)
        changes[field] = value
    return base.replace(**changes)


def parse_setting(recipe, item: str) -> tuple[str, object]:
    """``FIELD=VALUE`` -> (field, value typed like the recipe's field); clear errors for typos."""
    field, equals, text = item.partition("=")
    known = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}
    if not equals or field not in known:
        raise SystemExit(f"--set {item!r}: write FIELD=VALUE with one of the recipe's fields: "
                         f"{', '.join(sorted(known))}")
    current, text = known[field], text.strip()
    try:
        if isinstance(current, bool):  # before int: bool is an int subclass
            words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            return field, words[text.lower()]
        if isinstance(current, int | float):
            return field, type(current)(ast.literal_eval(text))
        if isinstance(current, str):  # quotes optional: --set schedule=cosine
            return field, ast.literal_eval(text) if text[:1] in "'\"" else text
        return field, ast.literal_eval(text)  # tuples, e.g. --set snapshot_steps=(500,1000)
    except (KeyError, ValueError, SyntaxError, TypeError):
        kinds = {bool: "true or false", int: "a whole number", float: "a number",
                 tuple: "a tuple such as (500, 1000)"}
        kind = kinds.get(type(current), "a Python literal")
        raise SystemExit(f"--set {item!r}: {field} takes {kind} (now {current!r})") from None


def main(argv=None) -> int:
    from bertlab.distributed import process_group

    with process_group():  # under torchrun: one group for the whole run (one process: nothing)
        return run(parse_args(argv), argv)


def run(args: argparse.Namespace, argv=None) -> int:
    from bertlab.distributed import barrier, is_main

    recipe = recipe_from_args(args)
    barrier()  # every process has looked at --out before rank 0 writes into it
    say = print if is_main() else lambda *args, **kwargs: None  # rank 0 alone prints

    from bertlab import pretraining
    from bertlab.files import write_json
    from bertlab.metrics import unigram_entropy
    from bertlab.training import TimeLimit

    out: Path = args.out
    recorded = out / "recipe.json"
    commands = json.loads(recorded.read_text()).get("commands", []) if args.resume else []
    command = ["scripts/pretrain.py", *(sys.argv[1:] if argv is None else argv)]
    say(f"recipe: {json.dumps(recipe.to_dict())}", flush=True)

    started = time.monotonic()
    data = pretraining.build_data(recipe)
    entropy = unigram_entropy(data.train, data.tokenizer)
    say(f"data: {len(data.train):,} training sequences, {len(data.heldout):,} held-out, "
          f"unigram entropy {entropy:.3f} nats ({time.monotonic() - started:.0f} s)", flush=True)
    limit = TimeLimit(args.minutes)
    run = pretraining.pretrain(recipe, out, data=data, resume=args.resume, callbacks=[limit],
                           verbose=True, record={"commands": [*commands, command]})
    # The engine's history spans the whole run, resumed sittings included.
    last = run.history.dropna(subset=["eval_mlm_loss"]).iloc[-1]
    summary = {"step": int(last["step"]), "max_steps": recipe.max_steps,
               "unigram_entropy": entropy,
               **{k: float(last[f"eval_{k}"]) for k in ("mlm_loss", "mlm_accuracy",
                                                         "perplexity", "nsp_accuracy")
                  if f"eval_{k}" in last},
               "tokens_seen_upper_bound": int(last["step"]) * recipe.tokens_per_step}
    if is_main():
        write_json(out / "summary.json", summary)
    for key, value in summary.items():
        say(f"{key:>24}: {value:.4g}" if isinstance(value, float) else f"{key:>24}: {value:,}")
    if not run.finished:
        say(f"stopped at step {summary['step']}/{recipe.max_steps} "
              f"({'time limit' if limit.reached else 'interrupted'}); continue with: "
              f"python scripts/pretrain.py --out {out} --resume", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
