"""Pretraining ablation (issue 9): which recipe beats random initialisation, after how much compute?

Each *variant* is a named change to the course's ``PretrainingRecipe``. For every variant the
harness pretrains once, for a fixed number of steps, keeping snapshots at a few budgets along
the run; then it fine-tunes every snapshot *and* random weights (same tokenizer, same size, same
fine-tuning budget, same learning-rate grid) on the Rotten Tomatoes sentiment data:

* ``finetune``: full fine-tuning, on all training labels and on a fixed seeded subset (1,000
  labels), each learning rate of the grid with several seeds;
* ``probe``: a linear probe, logistic regression on frozen mean-pooled features (``C`` grid).

Model selection reads the validation split only. The test split is read only with
``--final VARIANT`` (which runs that variant alone unless ``--only`` says otherwise): its last
snapshot and its random-init baseline are fine-tuned again at the setting chosen on validation,
once per seed, and scored on test. No validation or test text is ever pretrained on
(``check_no_leak`` runs before every pretraining run).

Every result is one row of ``results.csv``; rows already there are skipped, and pretraining
resumes from the engine's checkpoints, so a long grid survives across sittings (stop it with
Ctrl-C or ``--minutes``, run the same command again). ``results.md`` is rewritten at the end:
mean +- std over seeds at the best learning rate of each cell, and the gap to random init.

    python benchmarks/pretraining_ablation.py --grid smoke --out runs/ablation-smoke
    python benchmarks/pretraining_ablation.py --grid focus --out runs/ablation-focus
    python benchmarks/pretraining_ablation.py --grid levers --out runs/ablation-focus --minutes 120
    python benchmarks/pretraining_ablation.py --grid levers --out runs/ablation-focus --only mask15
    python benchmarks/pretraining_ablation.py --grid focus --out runs/ablation-focus --final pre-ln
    python benchmarks/pretraining_ablation.py --grid focus --out runs/ablation-focus \
        --evaluate-run bertlab/pretrained/tiny-long

``--evaluate-run DIR`` evaluates the final model of a run made elsewhere (``scripts/pretrain.py``,
notebook 05) with the grid's protocol, under the folder's name, beside the grid's variants: a
longer run than the grid can afford extends its compute curve.

NSP off is RoBERTa's FULL-SENTENCES input (``nsp=False``: sentences packed into full sequences,
one-sentence reviews included); the share of in-domain text is set by ``sotu_share`` (the share
of speeches kept beside the sentiment training text) and ``add_sentiment_train``; pre-LN blocks
(cramming) by ``pre_layer_norm``, a departure from BERT that ``transformers`` cannot load.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bertlab import pretraining  # noqa: E402  (after the environment above)
from bertlab.ablation import COLUMNS, best_settings, payoff, read_results  # noqa: E402
from bertlab.files import write_json  # noqa: E402
from bertlab.pretraining import PretrainingRecipe  # noqa: E402
from bertlab.training import TimeLimit  # noqa: E402

KEY = ("variant", "step", "eval_kind", "labels", "lr", "probe_c", "seed", "phase")


# =========================================================================== grids


@dataclass(frozen=True)
class Variant:
    """A named change to the grid's base recipe (``changes`` are ``PretrainingRecipe`` fields)."""

    name: str
    changes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """Variants plus everything that must be equal across them: budgets and fine-tuning."""

    name: str
    base: PretrainingRecipe  # max_steps is the run's length, snapshot_steps the budgets
    variants: tuple[Variant, ...]
    lrs: tuple[float, ...]  # fine-tuning learning rates searched on validation
    probe_cs: tuple[float, ...]  # logistic-regression C values searched on validation
    seeds: tuple[int, ...]  # fine-tuning seeds (head initialisation, data order, dropout)
    label_counts: tuple[int | None, ...]  # training labels used; None: all of them
    epochs: float  # fine-tuning epochs on all labels
    subset_epochs: float  # fine-tuning epochs on a label subset (fewer examples, more passes)
    max_length: int = 64  # fine-tuning and probe truncation, in tokens
    evals_per_epoch: int = 4  # validation passes per fine-tuning epoch (the best one is kept)
    corpus_slice: dict | None = None  # documents kept per source of the pretraining corpus
    sentiment_rows: int | None = None  # rows kept per sentiment split (smoke only)


# The fine-tuning protocol of the course's grids: what makes their rows comparable, so that
# ``focus`` and ``levers`` can share one results folder and its random-init rows.
PROTOCOL = dict(lrs=(3e-4, 1e-3), probe_cs=(0.1, 1.0), seeds=(0, 1, 2), label_counts=(None, 1000),
                epochs=2, subset_epochs=10, evals_per_epoch=2)


def _focus() -> Grid:
    """The levers that move in-domain text into pretraining, and pre-LN, each with a snapshot
    half-way: the compute curve of the course's recipe and its most promising changes."""
    base = pretraining.recipe_for().replace(max_steps=4000, snapshot_steps=(2000,), eval_every=250)
    variants = (
        Variant("in-domain-only", {"sotu_share": 0.0, "nsp": False}),
        Variant("baseline"),
        Variant("no-nsp", {"nsp": False}),
        Variant("pre-ln", {"pre_layer_norm": True}),
        Variant("pre-ln-no-nsp", {"pre_layer_norm": True, "nsp": False}),  # both levers at once
    )
    return Grid("focus", base, variants, **PROTOCOL)


def _levers() -> Grid:
    """Every other lever of issue 9, one change at a time, at the focus grid's final budget
    (4,000 steps of 64 sequences, or the same tokens) and with its protocol. Run it into the
    focus grid's folder (``--out runs/ablation-focus``): the baseline and the random-init rows
    are shared, and one table shows both grids. Variants run in this order (``--only`` picks)."""
    base = pretraining.recipe_for().replace(max_steps=4000, snapshot_steps=(), eval_every=250)
    cramming = {"batch_size": 256, "max_steps": 1000, "warmup_steps": 25, "eval_every": 125}
    variants = (
        Variant("baseline"),  # the course's recipe: 30% masks, no dropout, in-domain text
        # cramming: a 4x batch at a higher peak rate and a short warm-up, the same tokens
        Variant("pre-ln-batch256-lr2e-3", {"pre_layer_norm": True, "lr": 2e-3, **cramming}),
        Variant("batch256-lr2e-3", {"lr": 2e-3, **cramming}),
        Variant("mask15", {"mlm_probability": 0.15}),  # Wettig et al. 2022: 15% vs 30% vs 40%
        Variant("mask40", {"mlm_probability": 0.40}),
        Variant("dropout0.1", {"dropout": 0.1}),
        Variant("original-bert", {"mlm_probability": 0.15, "dropout": 0.1}),
        Variant("whole-word", {"whole_word_masking": True}),
        Variant("half-sotu", {"sotu_share": 0.5}),
        Variant("no-in-domain", {"add_sentiment_train": False}),
        Variant("lr3e-4", {"lr": 3e-4}),
        Variant("lr3e-3", {"lr": 3e-3}),
        Variant("seq32", {"max_seq_length": 32, "batch_size": 128}),  # same tokens per step
        Variant("seq128", {"max_seq_length": 128, "batch_size": 32}),
        # a new vocabulary or size brings its own random-init baseline (about 15 more minutes)
        Variant("vocab4096", {"vocab_size": 4096}),
        Variant("vocab16384", {"vocab_size": 16384}),
        # equal compute: a mini step takes ~2.2-2.5x a tiny one on a CPU (benchmarks/README.md)
        Variant("mini-equal-time", {"size": "mini", "max_steps": 1600}),
    )
    return Grid("levers", base, variants, **PROTOCOL)


def _smoke() -> Grid:
    base = pretraining.recipe_for().replace(
        vocab_size=600, max_seq_length=32, batch_size=16, max_steps=6, snapshot_steps=(3,),
        eval_every=3, warmup_steps=1, heldout_pairs=32, train_probe_pairs=32, precision="fp32")
    variants = (Variant("baseline"), Variant("mask15", {"mlm_probability": 0.15}))
    return Grid("smoke", base, variants, lrs=(3e-4, 1e-3), probe_cs=(1.0,), seeds=(0, 1),
                label_counts=(None, 100), epochs=1, subset_epochs=1, max_length=32,
                evals_per_epoch=1, corpus_slice={"sotu": 3, "rotten_tomatoes": 200},
                sentiment_rows=200)


GRIDS = {"smoke": _smoke, "focus": _focus, "levers": _levers}


def select_variants(grid_name: str, only: list[str] | None = None) -> tuple[Grid, list[Variant]]:
    """The grid and its variants to run (``only``: a subset, by name); clear errors for typos."""
    if grid_name not in GRIDS:
        raise ValueError(f"unknown grid {grid_name!r}; choose one of {', '.join(GRIDS)}")
    grid = GRIDS[grid_name]()
    names = [v.name for v in grid.variants]
    unknown = [name for name in only or () if name not in names]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown} in grid {grid_name!r}; its variants are "
                         f"{', '.join(names)}")
    return grid, [v for v in grid.variants if not only or v.name in only]


def variant_recipe(grid: Grid, variant: Variant) -> PretrainingRecipe:
    return grid.base.replace(**variant.changes)


# =========================================================================== data


def load_sentiment_splits(grid: Grid, test: bool = False) -> dict[str, tuple[list, np.ndarray]]:
    """Texts and labels of train and validation, and of test only when asked (``--final``).

    The smoke grid keeps a fixed seeded sample of each split.
    """
    from bertlab.data.sentiment import load_sentiment

    data = load_sentiment("rotten_tomatoes")
    splits = {}
    for split in ("train", "validation", "test")[: 3 if test else 2]:
        rows = data[split]
        if grid.sentiment_rows is not None:
            rows = rows.shuffle(seed=0).select(range(min(grid.sentiment_rows, len(rows))))
        splits[split] = (list(rows["text"]), np.asarray(rows["label"]))
    return splits


def pretraining_corpus(grid: Grid, recipe: PretrainingRecipe):
    """The recipe's corpus, cut to ``grid.corpus_slice`` documents per source if set."""
    from bertlab.data.corpus import Corpus, load_corpus

    corpus = load_corpus("sotu", add_sentiment_train=recipe.add_sentiment_train)
    if grid.corpus_slice is None:
        return corpus

    def cut(documents):
        kept, counts = [], {}
        for doc in documents:
            counts[doc.source] = counts.get(doc.source, 0) + 1
            if counts[doc.source] <= grid.corpus_slice.get(doc.source, 0):
                kept.append(doc)
        return kept

    return Corpus(corpus.name, cut(corpus.train), corpus.heldout[:2], dict(corpus.info))


def _normalise(text: str) -> str:
    """Text without its whitespace: sentence splitting may drop or fold spaces, nothing else."""
    return "".join(text.split())


def check_no_leak(corpus, sentiment=None) -> None:
    """Raise ValueError if a validation or test text is in the pretraining corpus.

    Every sentiment document must be a *training* text (its sentences joined), and no document
    may equal a validation or test text. Sentences alone are not compared: a review sentence
    such as "A mess." can also occur inside a longer training review.
    """
    if sentiment is None:
        from bertlab.data.sentiment import load_sentiment

        sentiment = load_sentiment("rotten_tomatoes")
    train = {_normalise(t) for t in sentiment["train"]["text"]}
    held = {_normalise(t) for split in ("validation", "test") for t in sentiment[split]["text"]}
    for split in ("train", "heldout"):
        for doc in corpus.documents(split):
            text = _normalise("".join(doc.sentences))
            if text in held or (doc.source != "sotu" and text not in train):
                raise ValueError(f"pretraining document {doc.id!r} is not sentiment training "
                                 "text: validation/test text must never be pretrained on; "
                                 "build the corpus with add_sentiment_train (train split only)")


# =========================================================================== pretraining


def pretrain(grid: Grid, variant: Variant, run_dir: Path, deadline: TimeLimit) -> bool:
    """Pretrain one variant into ``run_dir`` (resuming a stopped run); True once it is complete.

    ``pretraining.pretrain`` writes ``step-NNNNNN/`` snapshots, ``final/`` and ``history.csv``; here
    ``budgets.json`` is added (the exact tokens read by each budget, and the key of the matching
    random-init baseline) and ``sittings.jsonl`` (the wall clock of each sitting).
    """
    if (run_dir / "budgets.json").is_file():
        return True
    recipe = variant_recipe(grid, variant)
    data = pretraining.build_data(recipe, corpus=pretraining_corpus(grid, recipe))
    check_no_leak(data.corpus)
    print(f"[{variant.name}] pretraining {recipe.max_steps} steps on {len(data.train):,} "
          f"sequences", flush=True)
    start = time.monotonic()
    try:
        run = pretraining.pretrain(recipe, run_dir, data=data, resume=True, callbacks=[deadline],
                               progress=False)
    except ValueError as error:  # another recipe recorded there
        raise ValueError(f"variant {variant.name!r}: {error}") from error
    step = int(run.history["step"].iloc[-1])
    with open(run_dir / "sittings.jsonl", "a") as log:
        log.write(json.dumps({"until_step": step, "seconds": time.monotonic() - start}) + "\n")
    if not run.finished:
        print(f"[{variant.name}] stopped at step {step}; run again to continue", flush=True)
        return False
    budgets = sorted({*recipe.snapshot_steps, recipe.max_steps})
    write_json(run_dir / "budgets.json", {
        "tokens_seen": {str(s): pretraining.tokens_processed(data.train, recipe, s) for s in budgets},
        "baseline": baseline_name(recipe, data.tokenizer)})
    return True


def snapshot_folder(run_dir: Path, step: int, recipe: PretrainingRecipe) -> Path:
    return run_dir / ("final" if step == recipe.max_steps else f"step-{step:06d}")


def baseline_name(recipe: PretrainingRecipe, tokenizer) -> str:
    """Random init is shared by variants with the same size and the same vocabulary."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    return f"random-init:{recipe.size}:{hashlib.sha1(vocab).hexdigest()[:8]}"


# =========================================================================== evaluation


class Results:
    """``results.csv``: one row per evaluation, appended as soon as it is measured."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():
            with open(path, newline="") as f:
                self.rows = list(csv.DictReader(f))
        self.done = {tuple(row[k] for k in KEY) for row in self.rows}

    @staticmethod
    def key(**values) -> tuple:
        return tuple(_text(values.get(k)) for k in KEY)

    def add(self, **values) -> None:
        row = {k: _text(values.get(k)) for k in COLUMNS}
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.rows.append(row)
        self.done.add(tuple(row[k] for k in KEY))


def _text(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Evaluator:
    """Fine-tunes and probes one model source (a snapshot folder, or random weights)."""

    def __init__(self, grid: Grid, splits: dict, tokenizer_dir: Path):
        # the explicit class: AutoTokenizer reads config.json and warns about pre-LN models
        from transformers import BertTokenizerFast

        self.grid, self.splits = grid, splits
        self.tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
        self.config_dir = tokenizer_dir
        self.encoded = {}
        for split, (texts, labels) in splits.items():
            ids = self.tokenizer(texts, truncation=True, max_length=grid.max_length)["input_ids"]
            self.encoded[split] = [{"input_ids": x, "label": int(y)}
                                   for x, y in zip(ids, labels, strict=True)]

    def subset(self, labels: int | None) -> list[int]:
        """A fixed seeded subset of training examples, the same for every model and seed."""
        n = len(self.encoded["train"])
        order = np.random.default_rng(0).permutation(n)
        return sorted(order[: min(labels or n, n)].tolist())

    def model(self, folder: Path | None, seed: int):
        from bertlab import BertConfig, BertForSequenceClassification
        from bertlab.randomness import seed_everything

        settings = dict(num_labels=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
        seed_everything(seed)
        if folder is None:
            config = BertConfig.load(self.config_dir)
            return BertForSequenceClassification(BertConfig.from_dict(
                {**config.to_dict(), **settings}))
        return BertForSequenceClassification.from_pretrained(folder, **settings)

    def finetune(self, folder: Path | None, labels: int | None, lr: float, seed: int,
                 test: bool = False) -> tuple[float, np.ndarray | None]:
        """Best validation accuracy (and test predictions of that best model if ``test``)."""
        from bertlab import predict, train
        from bertlab.data.collators import PaddingCollator

        examples = [self.encoded["train"][i] for i in self.subset(labels)]
        epochs = self.grid.epochs if labels is None else self.grid.subset_epochs
        per_epoch = -(-len(examples) // 32)
        model = self.model(folder, seed)
        history = train(model, examples, eval_data=self.encoded["validation"],
                        collate_fn=PaddingCollator(self.tokenizer), lr=lr, epochs=epochs,
                        batch_size=32, group_by_length=True, metric="accuracy",
                        eval_every=max(per_epoch // self.grid.evals_per_epoch, 1),
                        restore_best=True, seed=seed, precision=self.grid.base.precision,
                        progress=False)
        predictions = None
        if test:
            predictions = predict(model, self.tokenizer, self.splits["test"][0],
                                  max_length=self.grid.max_length).label_ids
        return float(history.attrs["best_metric"]), predictions

    def probe(self, folder: Path | None, labels: int | None, c: float, seed: int,
              test: bool = False) -> tuple[float, np.ndarray | None]:
        """Validation accuracy of logistic regression on frozen mean-pooled features."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from bertlab.baselines import mean_pooled_features

        cache = getattr(self, "_features", {})
        if (folder, seed) not in cache:
            model = self.model(folder, seed)
            cache = self._features = {(folder, seed): {
                split: mean_pooled_features(model, self.tokenizer, texts,
                                            max_length=self.grid.max_length)
                for split, (texts, _) in self.splits.items()}}
        features = cache[folder, seed]
        rows = self.subset(labels)
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        probe.fit(features["train"][rows], self.splits["train"][1][rows])
        accuracy = float(probe.score(features["validation"], self.splits["validation"][1]))
        return accuracy, probe.predict(features["test"]) if test else None


def search(grid: Grid, splits: dict, results: Results, variant: str, baseline: str,
           step: int, tokens: int, folder: Path | None, tokenizer_dir: Path,
           deadline: TimeLimit) -> bool:
    """Every validation-only evaluation of one model source; False if the deadline stopped it."""
    evaluator = None
    # random weights differ by seed; a snapshot's frozen features do not: one probe run
    probe_seeds = grid.seeds if folder is None else grid.seeds[:1]
    jobs = [("finetune", n, lr, None, s) for n in grid.label_counts for lr in grid.lrs
            for s in grid.seeds]
    jobs += [("probe", n, None, c, s) for n in grid.label_counts for c in grid.probe_cs
             for s in probe_seeds]
    for kind, labels, lr, c, seed in jobs:
        count = labels or len(splits["train"][0])
        key = Results.key(variant=variant, step=step, eval_kind=kind, labels=count, lr=lr,
                          probe_c=c, seed=seed, phase="search")
        if key in results.done:
            continue
        if deadline():
            return False
        evaluator = evaluator or Evaluator(grid, splits, tokenizer_dir)
        run = evaluator.finetune if kind == "finetune" else evaluator.probe
        accuracy, _ = run(folder, labels, lr if c is None else c, seed)
        results.add(variant=variant, baseline=baseline, step=step, tokens_seen=tokens,
                    eval_kind=kind, labels=count, lr=lr, probe_c=c, seed=seed, phase="search",
                    val_accuracy=accuracy)
        print(f"  {variant} step {step} {kind} labels={count} "
              f"{'lr' if c is None else 'C'}={lr or c:g} seed {seed}: {accuracy:.3f}", flush=True)
    return True


def final_test(grid: Grid, splits: dict, results: Results, out: Path, variant: Variant) -> None:
    """Score the variant's last snapshot and its random-init baseline on test, at the settings
    chosen on validation, once per seed; predictions are kept for the paired bootstrap."""
    recipe = variant_recipe(grid, variant)
    run_dir = out / "pretraining" / variant.name
    best = best_settings(read_results(results.rows))
    sources = [(variant.name, recipe.max_steps, snapshot_folder(run_dir, recipe.max_steps, recipe)),
               (json.loads((run_dir / "budgets.json").read_text())["baseline"], 0, None)]
    evaluator = None
    for name, step, folder in sources:
        for cell in best[(best["variant"] == name) & (best["step"] == step)].itertuples():
            kind, count = cell.eval_kind, int(cell.labels)
            labels = None if count == len(splits["train"][0]) else count
            lr, c = (cell.setting, None) if kind == "finetune" else (None, cell.setting)
            seeds = grid.seeds if kind == "finetune" or folder is None else grid.seeds[:1]
            for seed in seeds:
                if Results.key(variant=name, step=step, eval_kind=kind, labels=count, lr=lr,
                               probe_c=c, seed=seed, phase="final") in results.done:
                    continue
                evaluator = evaluator or Evaluator(grid, splits, run_dir / "final")
                run = evaluator.finetune if kind == "finetune" else evaluator.probe
                accuracy, predicted = run(folder, labels, cell.setting, seed, test=True)
                path = _predictions_path(out, name, step, kind, count, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(predicted.tolist()))
                results.add(variant=name, baseline=cell.baseline, step=step,
                            tokens_seen=cell.tokens_seen, eval_kind=kind, labels=count, lr=lr,
                            probe_c=c, seed=seed, phase="final", val_accuracy=accuracy,
                            test_accuracy=float((predicted == splits["test"][1]).mean()))


def _predictions_path(out: Path, variant: str, step: int, kind: str, labels: int,
                      seed: int) -> Path:
    safe = variant.replace(":", "_")
    return out / "predictions" / f"{safe}-step{step}-{kind}-{labels}-seed{seed}.json"


def evaluate_run(grid: Grid, splits: dict, results: Results, run_dir: Path,
                 deadline: TimeLimit) -> bool:
    """Search the final model of a finished run (``recipe.json`` + ``final/``) and its
    random-init baseline; False if the deadline stopped it."""
    from transformers import BertTokenizerFast

    recorded = run_dir / "recipe.json"
    if not (recorded.is_file() and (run_dir / "final" / "model.safetensors").is_file()):
        raise ValueError(f"--evaluate-run {run_dir}: not a finished run (it needs recipe.json "
                         "and final/ as written by pretraining.pretrain or scripts/pretrain.py)")
    recipe = PretrainingRecipe.from_dict(json.loads(recorded.read_text())["recipe"])
    data = pretraining.build_data(recipe, corpus=pretraining_corpus(grid, recipe))
    check_no_leak(data.corpus)
    tokens = pretraining.tokens_processed(data.train, recipe, recipe.max_steps)
    baseline = baseline_name(recipe, BertTokenizerFast.from_pretrained(run_dir / "final"))
    if baseline != baseline_name(recipe, data.tokenizer):
        raise ValueError(f"--evaluate-run {run_dir}: its tokenizer is not the one its recipe "
                         "makes from today's corpus, so its token count would be wrong")
    return all(search(grid, splits, results, name, baseline, step, seen, folder,
                      run_dir / "final", deadline)
               for name, step, seen, folder in [(baseline, 0, 0, None),
                                                (run_dir.name, recipe.max_steps, tokens,
                                                 run_dir / "final")])


# =========================================================================== the table


def _percent(mean: float, std: float, count: int) -> str:
    spread = "" if count < 2 else f" ± {100 * std:.1f}"
    return f"{100 * mean:.1f}{spread} (n={count})"


def write_table(results: Results, out: Path, grid: Grid, commands: list[str]) -> Path:
    """``results.md``: the validation table of every cell and, after ``--final``, the test one.
    ``commands``: the harness commands whose rows the folder holds (they remake it)."""
    path = out / "results.md"
    if not results.rows:
        path.write_text("# Pretraining ablation\n\nNo results yet.\n")
        return path
    frame = read_results(results.rows)
    table = payoff(best_settings(frame))
    made = " and ".join(f"`{c}`" for c in commands)
    lines = ["# Pretraining ablation", "",
             f"Made by {made} (rerun {'it' if len(commands) == 1 else 'them'} to update; "
             "finished rows are kept).", "",
             *_evaluated_runs_note(frame),
             "## Validation accuracy (%), mean ± std over fine-tuning seeds at the best setting",
             "", "Best setting: fine-tuning learning rate, or the probe's C. Δ: points above the "
             "random-init baseline with the same tokenizer and size (its best setting).", "",
             "| variant | step | tokens seen | eval | labels | best setting | validation | Δ |",
             "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: |"]
    for r in table.itertuples():
        gap = "" if np.isnan(r.gain) else f"{r.gain:+.1f}"
        lines.append(f"| {r.variant} | {r.step:,} | {r.tokens_seen:,} | {r.eval_kind} | "
                     f"{r.labels:,} | {r.setting:g} | {_percent(r.mean, r.std, r.runs)} | {gap} |")
    final = frame[frame["phase"] == "final"]
    if len(final):
        lines += _test_table(final, out, load_sentiment_splits(grid, test=True)["test"][1])
    path.write_text("\n".join(lines) + "\n")
    return path


def grid_commands(frame, grid_name: str, out: Path) -> list[str]:
    """The commands of the grids whose variants have rows here (grids may share a folder)."""
    present = set(frame["variant"]) if len(frame) else set()
    names = [name for name, make in GRIDS.items() if name == grid_name or (name != "smoke" and any(
             v.name in present for v in make().variants if v.name != "baseline"))]
    return [f"python benchmarks/pretraining_ablation.py --grid {name} --out {out}"
            for name in names]


def _evaluated_runs_note(frame) -> list[str]:
    grid_names = {v.name for make in GRIDS.values() for v in make().variants}
    others = [name for name in dict.fromkeys(frame["variant"])
              if name not in grid_names and not name.startswith("random-init:")]
    if not others:
        return []
    return [f"Also evaluated with `--evaluate-run DIR` (runs made elsewhere, the same protocol; "
            f"named by their folder): {', '.join(others)}.", ""]


def _test_table(final, out: Path, y_test: np.ndarray) -> list[str]:
    """Test accuracy of each ``--final`` cell, and its gap to random init with a paired
    bootstrap interval: resample test sentences, average each side over its seeds."""
    from bertlab.metrics import bootstrap_indices, bootstrap_scores

    indices = bootstrap_indices(len(y_test), 1000, seed=0)

    def side(rows):
        test = rows["test_accuracy"]
        scores = [bootstrap_scores(y_test, np.asarray(json.loads(_predictions_path(
            out, r.variant, r.step, r.eval_kind, r.labels, r.seed).read_text())), indices)
            for r in rows.itertuples()]
        return _percent(test.mean(), test.std(), len(test)), test.mean(), np.mean(scores, 0)

    lines = ["", "## Test accuracy (%) of the final recipes (`--final`)", "",
             "Δ: mean test accuracy over seeds minus random init's, with a 95% paired bootstrap "
             "interval over test sentences (1,000 resamples).", "",
             "| variant | step | eval | labels | setting | test | random init | Δ [95% CI] |",
             "| --- | ---: | --- | ---: | ---: | --- | --- | --- |"]
    cells = final[final["step"] > 0].groupby(["variant", "baseline", "step", "eval_kind",
                                              "labels"], sort=False)
    for (name, baseline, step, kind, labels), rows in cells:
        base = final[(final["variant"] == baseline) & (final["eval_kind"] == kind)
                     & (final["labels"] == labels)]
        (shown, mean, samples), (base_shown, base_mean, base_samples) = side(rows), side(base)
        low, high = 100 * np.percentile(samples - base_samples, [2.5, 97.5])
        lines.append(f"| {name} | {step:,} | {kind} | {labels:,} | {rows['setting'].iloc[0]:g} "
                     f"| {shown} | {base_shown} | {100 * (mean - base_mean):+.1f} "
                     f"[{low:+.1f}, {high:+.1f}] |")
    return lines


# =========================================================================== command line


def run_grid(grid_name: str, out: Path, *, only: list[str] | None = None,
             final: str | None = None, minutes: float | None = None,
             evaluate_runs: tuple[Path, ...] = ()) -> bool:
    """Pretrain, search and (with ``final``) test; True when everything asked for is done.
    ``evaluate_runs``: finished runs made elsewhere, evaluated instead of the grid's variants."""
    if evaluate_runs and (only or final):
        raise ValueError("--evaluate-run evaluates finished runs instead of the grid's variants; "
                         "run it without --only and --final (and those in a command of their own)")
    grid, variants = select_variants(grid_name, only or ([final] if final else None))
    if final and final not in [v.name for v in variants]:
        raise ValueError(f"--final {final!r} is not among the variants run ({only}); add it to "
                         "--only, or leave --only out")
    out.mkdir(parents=True, exist_ok=True)
    splits = load_sentiment_splits(grid, test=final is not None)
    results = Results(out / "results.csv")
    deadline = TimeLimit(minutes)
    complete = True
    for run_dir in evaluate_runs:
        complete = complete and evaluate_run(grid, splits, results, Path(run_dir), deadline)
    for variant in variants if not evaluate_runs else ():
        run_dir = out / "pretraining" / variant.name
        if not pretrain(grid, variant, run_dir, deadline):
            complete = False
            break
        recipe = variant_recipe(grid, variant)
        budgets = json.loads((run_dir / "budgets.json").read_text())
        sources = [(budgets["baseline"], 0, 0, None)] + [
            (variant.name, int(step), tokens, snapshot_folder(run_dir, int(step), recipe))
            for step, tokens in budgets["tokens_seen"].items()]
        for name, step, tokens, folder in sources:
            complete = search(grid, splits, results, name, budgets["baseline"], step, tokens,
                              folder, run_dir / "final", deadline)
            if not complete:
                break
        if not complete:
            break
        if final:
            final_test(grid, splits, results, out, variant)
    commands = grid_commands(read_results(results.rows), grid_name, out)
    table = write_table(results, out, grid, commands)
    print(f"{len(results.rows)} results in {results.path}; table: {table}"
          + ("" if complete else " (incomplete: run the same command again to continue)"))
    return complete


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="smoke", help=f"one of {', '.join(GRIDS)}")
    parser.add_argument("--out", required=True, type=Path, help="results folder (resumable)")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="run these variants only")
    parser.add_argument("--final", metavar="VARIANT",
                        help="score this variant's last snapshot and its random init on the "
                             "test split (runs this variant only, unless --only is given)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop this sitting after so many minutes (rerun to continue)")
    parser.add_argument("--evaluate-run", nargs="+", type=Path, default=(), metavar="DIR",
                        help="evaluate these finished runs (recipe.json + final/) with the "
                             "grid's protocol instead of pretraining the grid's variants")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        complete = run_grid(args.grid, args.out, only=args.only, final=args.final,
                            minutes=args.minutes, evaluate_runs=tuple(args.evaluate_run))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if complete else 3


if __name__ == "__main__":
    sys.exit(main())
