"""The course's pretraining recipe: one place that says how notebook 05 and the long run train.

Notebook 05, notebook 06 (when 05's run is missing), ``scripts/pretrain.py`` and the ablation
harness all call ``pretrain``, so the quick run a learner watches and the longer reproducible
run share one recipe and one sequence of steps::

    recipe = recipe_for(profile)                    # sizes and steps for the cpu or gpu profile
    run = pretrain(recipe, RUN_DIR)                 # data, model, train, snapshots, final/

which is, spelled out::

    data = build_data(recipe)                       # corpus, tokenizer, NSP pairs, collators
    model = build_model(recipe, data.tokenizer)     # BertForPreTraining from random weights
    history = train(model, data.train, eval_data=data.heldout, collate_fn=data.collator,
                    config=train_config(recipe), callbacks=[Snapshots(run_dir, data.tokenizer,
                                                                      recipe.snapshot_steps)])

The recipe departs from BERT's original one where later work (and our own measurements on this
corpus) found that small models learn faster: 30% of the tokens masked instead of 15%
(Wettig et al. 2022), no dropout during pretraining (the model sees each text only a few times,
so it underfits rather than overfits; cramming, Geiping & Goldstein 2022), a learning rate far
above BERT-base's, and in-domain text: the training split of the sentiment data is added to the
State of the Union addresses. Next-sentence prediction is kept, as in the original BERT; with
``nsp=False`` the run trains masked-LM alone on packed sentences (RoBERTa's FULL-SENTENCES), and
``sotu_share`` keeps only part of the speeches (0: in-domain text alone).

Checkpoint layout (what notebooks 06 and 07 read)::

    runs/05_pretraining/            RUN_DIR (``runs/`` is git-ignored)
        step-000250/                a snapshot along the run: config.json, model.safetensors
        step-000500/                (a BertForPreTraining) and the tokenizer files beside them
        ...
        final/                      the model at the end of the run, same files
        training/                   the engine's last checkpoint (what ``resume=True`` reads)
        history.csv                 the training history (one row per logged step)
        recipe.json                 the recipe that produced them

Every snapshot folder opens with ``bertlab.BertForPreTraining.from_pretrained(folder)``, with
``transformers.AutoModelForMaskedLM.from_pretrained(folder)`` and with
``AutoTokenizer.from_pretrained(folder)``. ``latest_pretrained()`` returns ``final/`` when it
exists, else the snapshot of the highest step. ``scripts/pretrain.py`` writes the same layout
under the folder it is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bertlab.files import write_json

__all__ = [
    "LONG_RUN_DIR",
    "RUN_DIR",
    "PretrainingData",
    "PretrainingRecipe",
    "PretrainingRun",
    "Snapshots",
    "build_data",
    "build_model",
    "latest_pretrained",
    "list_pretrained",
    "pretrain",
    "recipe_for",
    "runs_dir",
    "save_pretrained_with_tokenizer",
    "start_run",
    "tokens_processed",
    "train_config",
]

_SNAPSHOT = re.compile(r"^step-(\d{6,})$")


def runs_dir() -> Path:
    """Where training runs are written.

    ``$BERTLAB_RUNS_DIR`` if set; ``runs/`` inside a source checkout (git-ignored there);
    otherwise ``runs/`` in the current folder (e.g. ``/content/runs`` in Colab).
    """
    if env := os.environ.get("BERTLAB_RUNS_DIR"):
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "bertlab").is_dir():
        return checkout / "runs"
    return Path.cwd() / "runs"


#: Notebook 05's run: snapshots ``step-NNNNNN/`` and ``final/`` (see the module docstring).
RUN_DIR: Path = runs_dir() / "05_pretraining"

#: The longer run of the cpu recipe (10,000 steps), shipped inside the package: ``final/``,
#: ``history.csv``, ``recipe.json``, ``summary.json`` (how it was made: README.md beside them).
LONG_RUN_DIR: Path = Path(__file__).resolve().parent / "pretrained" / "tiny-long"


# =========================================================================== the recipe


@dataclass(frozen=True)
class PretrainingRecipe:
    """Everything that decides a pretraining run, so that it can be written down and repeated."""

    # model
    size: str = "tiny"  # a BertConfig.named size: tiny 2/128, mini 4/256, ...
    dropout: float = 0.0  # hidden and attention dropout during pretraining
    pre_layer_norm: bool = False  # pre-LN blocks (cramming); not BERT, and not transformers-loadable
    # data
    vocab_size: int = 8192
    tokenizer_every: int = 2  # train the WordPiece vocabulary on every k-th sentence
    add_sentiment_train: bool = True  # in-domain text: the sentiment *training* split only
    sotu_share: float = 1.0  # share of the State of the Union training speeches kept (0: none)
    nsp: bool = True  # next-sentence prediction; False: masked-LM on packed sentences (RoBERTa)
    max_seq_length: int = 64  # [CLS] A [SEP] B [SEP], in tokens
    dupe_factor: int = 1  # passes over the corpus when cutting NSP pairs
    heldout_pairs: int = 512  # held-out pairs evaluated (the pairs come shuffled: a sample)
    train_probe_pairs: int = 512  # training pairs evaluated alongside, for the training curve
    # masking
    mlm_probability: float = 0.30
    whole_word_masking: bool = False
    # optimisation
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    schedule: str = "linear"
    weight_decay: float = 0.01
    max_steps: int = 1000
    precision: str = "auto"
    # evaluation and snapshots
    eval_every: int = 50
    snapshot_steps: tuple[int, ...] = (100, 200, 300, 400, 500, 600, 700, 800, 900)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}; "
                             "BERT uses 0.15, this course 0.30")
        if self.max_steps < 1 or self.eval_every < 1:
            raise ValueError(f"max_steps and eval_every must be >= 1, got {self.max_steps} and "
                             f"{self.eval_every}")
        if not 0 <= self.sotu_share <= 1:
            raise ValueError(f"sotu_share must be in [0, 1], got {self.sotu_share}")
        if self.sotu_share == 0 and not self.add_sentiment_train:
            raise ValueError("sotu_share=0 without add_sentiment_train leaves no text to "
                             "pretrain on; keep some speeches or add the sentiment text")
        bad = [s for s in self.snapshot_steps if not 0 < s <= self.max_steps]
        if bad:
            raise ValueError(f"snapshot_steps {bad} lie outside 1..max_steps={self.max_steps}; "
                             "choose steps the run reaches")

    @property
    def tokens_per_step(self) -> int:
        """Upper bound on the tokens one optimizer step reads (padding included)."""
        return self.batch_size * self.max_seq_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PretrainingRecipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; valid names: {sorted(known)}")
        values = dict(values)
        if "snapshot_steps" in values:
            values["snapshot_steps"] = tuple(values["snapshot_steps"])
        return cls(**values)

    def replace(self, **changes) -> PretrainingRecipe:
        """A copy with some fields changed: ``recipe.replace(max_steps=200)``."""
        return dataclasses.replace(self, **changes)


def recipe_for(profile=None, **changes) -> PretrainingRecipe:
    """The recipe of a run profile (``bertlab.setup`` returns one; default: the cpu profile).

    cpu: tiny (2 layers, hidden 128), sequences of at most 64 tokens, 1,000 steps of 64 pairs
    (a few minutes on two CPU cores), in float32. gpu: mini (4 layers, hidden 256), 128 tokens,
    10,000 steps of 256 pairs (for a Colab GPU), mixed precision. The profile's seed seeds the
    run. Keyword arguments change single fields.
    """
    is_gpu = bool(getattr(profile, "is_gpu", False))
    seed = getattr(profile, "seed", 0)
    if is_gpu:
        recipe = PretrainingRecipe(
            size="mini", max_seq_length=128, batch_size=256, lr=5e-4, warmup_steps=500,
            max_steps=10_000, eval_every=500, heldout_pairs=2048, train_probe_pairs=2048,
            snapshot_steps=(500, 1000, 2000, 4000, 6000, 8000), precision="auto", seed=seed,
        )
    else:  # float32: bf16 is slower on most CPUs, and the figures stay the same on every CPU
        recipe = PretrainingRecipe(precision="fp32", seed=seed)
    return recipe.replace(**changes) if changes else recipe


# =========================================================================== data and model


@dataclass
class PretrainingData:
    """What a run reads: the corpus, its tokenizer, NSP pairs and the masking collators."""

    corpus: object  # bertlab.data.corpus.Corpus
    tokenizer: object  # transformers.BertTokenizerFast
    train: list[dict]  # NSP pairs of the training documents
    heldout: list[dict]  # NSP pairs of the held-out documents (never trained on)
    train_probe: list[dict]  # a fixed slice of ``train``, evaluated like ``heldout``
    collator: object  # MLMCollator for training: fresh masks every batch, seeded
    eval_collator: object  # MLMCollator for evaluation (train() reseeds it: same masks each time)


def build_data(recipe: PretrainingRecipe, corpus=None) -> PretrainingData:
    """Load the corpus, train the tokenizer, cut NSP pairs and make the collators.

    ``corpus`` may be passed to reuse one already loaded (``bertlab.load_corpus``); it must
    match ``recipe.add_sentiment_train``.
    """
    from bertlab.data.collators import MLMCollator
    from bertlab.data.corpus import load_corpus
    from bertlab.tokenizer import train_wordpiece

    if corpus is None:
        corpus = load_corpus("sotu", add_sentiment_train=recipe.add_sentiment_train)
    corpus = _keep_sotu_share(corpus, recipe.sotu_share)
    sentences = list(corpus.sentences("train"))[:: recipe.tokenizer_every]
    tokenizer = train_wordpiece(sentences, vocab_size=recipe.vocab_size)
    pairs = {split: _pairs_by_source(corpus.documents(split), tokenizer, recipe)
             for split in ("train", "heldout")}

    def collator(seed: int) -> MLMCollator:
        return MLMCollator(tokenizer, mlm_probability=recipe.mlm_probability,
                           whole_word_masking=recipe.whole_word_masking, seed=seed)

    return PretrainingData(
        corpus=corpus, tokenizer=tokenizer, train=pairs["train"],
        heldout=pairs["heldout"][: recipe.heldout_pairs],
        train_probe=pairs["train"][: recipe.train_probe_pairs],
        collator=collator(recipe.seed), eval_collator=collator(recipe.seed),
    )


def _keep_sotu_share(corpus, share: float):
    """The corpus with only ``share`` of its training speeches (a fixed, hash-chosen subset)."""
    from bertlab.data.cache import stable_hash
    from bertlab.data.corpus import Corpus

    if share == 1:
        return corpus
    speeches = sorted((d for d in corpus.train if d.source == "sotu"),
                      key=lambda d: stable_hash("sotu_share", d.id))
    kept = {d.id for d in speeches[: round(share * len(speeches))]}
    train = [d for d in corpus.train if d.source != "sotu" or d.id in kept]
    return Corpus(corpus.name, train, corpus.heldout, {**corpus.info, "sotu_share": share})


def _pairs_by_source(documents, tokenizer, recipe: PretrainingRecipe) -> list[dict]:
    """NSP pairs (or, with ``recipe.nsp`` off, packed sequences) cut from each source on its
    own, then shuffled together.

    A NotNext segment B is drawn from another document *of the same source*. Drawn from the
    whole corpus, B would nearly always be a one-line movie review (they are 98% of the
    documents), and "is B a review?" would solve NSP without reading the speech at all.
    NSP skips one-sentence documents (most reviews); packing uses them all.
    """
    from bertlab.data.pairs import build_nsp_pairs, build_packed_sequences

    by_source: dict[str, list] = {}
    for doc in documents:
        by_source.setdefault(getattr(doc, "source", ""), []).append(doc)
    pairs = []
    for source in sorted(by_source):
        docs = by_source[source]
        if not recipe.nsp:
            pairs += build_packed_sequences(docs, tokenizer, max_seq_length=recipe.max_seq_length,
                                            seed=recipe.seed)
        elif len(docs) > 1 and any(len(d.sentences) > 1 for d in docs):  # else no pair to cut
            pairs += build_nsp_pairs(docs, tokenizer, max_seq_length=recipe.max_seq_length,
                                     dupe_factor=recipe.dupe_factor, seed=recipe.seed)
    random.Random(recipe.seed).shuffle(pairs)
    return pairs


def build_model(recipe: PretrainingRecipe, tokenizer):
    """A ``BertForPreTraining`` of the recipe's size, freshly initialised (seeded)."""
    from bertlab.config import BertConfig
    from bertlab.heads import BertForPreTraining
    from bertlab.randomness import seed_everything

    config = BertConfig.named(
        recipe.size, vocab_size=len(tokenizer), max_position_embeddings=512,
        hidden_dropout_prob=recipe.dropout, attention_probs_dropout_prob=recipe.dropout,
        pad_token_id=tokenizer.pad_token_id, pre_layer_norm=recipe.pre_layer_norm,
    )
    seed_everything(recipe.seed)
    return BertForPreTraining(config)


def train_config(recipe: PretrainingRecipe, **overrides):
    """The ``bertlab.TrainConfig`` of the recipe; keyword arguments change fields."""
    from bertlab.config import TrainConfig

    values = dict(
        lr=recipe.lr, weight_decay=recipe.weight_decay, schedule=recipe.schedule,
        warmup_steps=recipe.warmup_steps, max_steps=recipe.max_steps,
        batch_size=recipe.batch_size, eval_every=recipe.eval_every,
        eval_batch_size=2 * recipe.batch_size, precision=recipe.precision, seed=recipe.seed,
        metric="mlm_loss", restore_best=False, log_every=10,
    )
    values.update(overrides)
    return TrainConfig(**values)


# =========================================================================== a whole run


@dataclass
class PretrainingRun:
    """What ``pretrain`` leaves behind, besides the files in ``run_dir``."""

    run_dir: Path
    recipe: PretrainingRecipe
    data: PretrainingData
    model: object  # the BertForPreTraining at the last step
    history: object  # pandas.DataFrame: the engine's history (+ ``train_*`` probe columns)
    finished: bool  # False when a callback stopped the run early (resume it later)


def pretrain(recipe: PretrainingRecipe, run_dir: str | os.PathLike = RUN_DIR, *, data=None,
             model=None, resume: bool = False, probe: bool = False, callbacks: Sequence = (),
             record: dict | None = None, **train_settings) -> PretrainingRun:
    """Run ``recipe`` into ``run_dir``: snapshots, ``final/``, ``history.csv``, ``recipe.json``.

    A new run (``resume=False``) gets an empty folder from ``start_run``: a run already there
    moves to ``<run_dir>.previous/``. With ``resume=True`` the run continues from the engine's
    checkpoint in ``run_dir/training/`` (saved every ``eval_every`` steps), or starts if there is
    none; the recipe must be the one recorded in ``recipe.json``.

    ``data`` and ``model`` may be passed when already built (``build_data``, ``build_model``);
    ``probe=True`` also evaluates a slice of the training pairs along the run (columns
    ``train_mlm_loss`` ...); ``callbacks`` ride along (one that returns True stops the run,
    which can then be resumed); ``record`` adds entries to ``recipe.json``; other keyword
    arguments change ``train_config`` fields (``progress=False``, ``verbose=True``).
    Under ``torchrun`` every process trains its share and rank 0 alone writes the files.
    """
    from bertlab.distributed import process_group

    with process_group():  # several processes under torchrun: one group for the whole run
        return _pretrain(recipe, run_dir, data=data, model=model, resume=resume, probe=probe,
                         callbacks=callbacks, record=record, **train_settings)


def _pretrain(recipe, run_dir, *, data, model, resume, probe, callbacks, record,
              **train_settings) -> PretrainingRun:
    import pandas as pd

    from bertlab.distributed import barrier, is_main
    from bertlab.training import train

    run_dir = Path(run_dir)
    written = {"recipe": recipe.to_dict(), **(record or {})}
    recorded = run_dir / "recipe.json"
    if resume and recorded.is_file():
        before = json.loads(recorded.read_text()).get("recipe")
        # read back as a recipe, so that fields added since the run started take their defaults
        if before is None or PretrainingRecipe.from_dict(before) != recipe:
            raise ValueError(f"{run_dir} holds a run of another recipe; resume it with the recipe "
                             "in its recipe.json, or start a new run (resume=False)")
    elif not resume and is_main():
        start_run(run_dir)
    if is_main():
        write_json(recorded, written)  # atomic: a crash never leaves half a record
    barrier()  # the other processes look into run_dir once rank 0 has set it up

    data = data if data is not None else build_data(recipe)
    model = model if model is not None else build_model(recipe, data.tokenizer)
    snapshots = Snapshots(run_dir, data.tokenizer, recipe.snapshot_steps,
                          probe=data.train_probe if probe else None,
                          collate_fn=data.eval_collator, eval_every=recipe.eval_every)
    settings = dict(checkpoint_dir=run_dir / "training", resume=resume,
                    save_every=recipe.eval_every, keep_checkpoints=1)
    history = train(model, data.train, eval_data=data.heldout, collate_fn=data.collator,
                    eval_collate_fn=data.eval_collator, callbacks=[snapshots, *callbacks],
                    config=train_config(recipe, **{**settings, **train_settings}))
    if snapshots.rows:
        history = history.merge(pd.DataFrame(snapshots.rows), on="step", how="left")
    finished = int(history["step"].iloc[-1]) >= recipe.max_steps
    if is_main():
        history.to_csv(run_dir / "history.csv", index=False)
    if finished and is_main():
        save_pretrained_with_tokenizer(model, data.tokenizer, run_dir / "final")
    return PretrainingRun(run_dir, recipe, data, model, history, finished)


def tokens_processed(pairs: Sequence[dict], recipe: PretrainingRecipe, steps: int) -> int:
    """The real (non-padding) tokens that ``steps`` optimizer steps of the recipe read.

    Recomputed from the engine's data order (``bertlab.batching.epoch_batches``), so it is exact.
    """
    from bertlab.batching import epoch_batches

    lengths = [len(pair["input_ids"]) for pair in pairs]
    total, epoch = 0, 0
    while steps > 0:
        batches = epoch_batches(len(pairs), recipe.batch_size, epoch=epoch, seed=recipe.seed)
        for batch in batches[:steps]:
            total += sum(lengths[i] for i in batch)
        steps -= min(steps, len(batches))
        epoch += 1
    return total


# =========================================================================== snapshots


def save_pretrained_with_tokenizer(model, tokenizer, folder: str | os.PathLike) -> Path:
    """Write ``model.save_pretrained`` and ``tokenizer.save_pretrained`` into one folder."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def start_run(run_dir: str | os.PathLike = RUN_DIR) -> Path:
    """Make ``run_dir`` an empty folder for a new run, keeping the previous run one step back.

    A run already there is moved, whole, to ``<run_dir>.previous/`` (replacing an older one
    there), so that starting notebook 05 again never mixes old snapshots with new ones and never
    throws away the only trained model: rename the folder back to recover it.
    """
    import shutil

    run_dir = Path(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        previous = run_dir.with_name(run_dir.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        run_dir.rename(previous)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class Snapshots:
    """A ``train`` callback that keeps the model along the run, and measures it on training text.

    At each of ``steps`` it writes ``run_dir/step-NNNNNN/`` (weights, config and tokenizer).
    With ``probe`` (training pairs) and ``collate_fn``, every ``eval_every`` steps it evaluates
    the probe exactly as ``train`` evaluates held-out data, and keeps the figures in ``rows``
    (columns ``step``, ``train_mlm_loss``, ``train_mlm_accuracy``, ``train_nsp_accuracy``).
    """

    def __init__(self, run_dir, tokenizer, steps: Sequence[int] = (), *, probe=None,
                 collate_fn=None, eval_every: int | None = None, batch_size: int = 256,
                 seed: int = 0):
        if probe is not None and (collate_fn is None or eval_every is None):
            raise ValueError("a probe needs collate_fn and eval_every to be evaluated")
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.steps = set(steps)
        self.probe, self.collate_fn, self.eval_every = probe, collate_fn, eval_every
        self.batch_size, self.seed = batch_size, seed
        self.rows: list[dict] = []
        self.saved: list[Path] = []

    def __call__(self, info: dict) -> bool:
        from bertlab.evaluation import evaluate

        step, model = info["step"], info["model"]
        from bertlab.distributed import is_main

        if step in self.steps and is_main():  # under torchrun, rank 0 alone writes
            folder = self.run_dir / f"step-{step:06d}"
            self.saved.append(save_pretrained_with_tokenizer(model, self.tokenizer, folder))
        if self.probe is not None and step % self.eval_every == 0:
            results = evaluate(model, self.probe, collate_fn=self.collate_fn,
                               batch_size=self.batch_size, seed=self.seed)
            self.rows.append({"step": step, **{f"train_{k}": results.get(k, math.nan) for k in
                                                ("mlm_loss", "mlm_accuracy", "nsp_accuracy")}})
        return False


def list_pretrained(run_dir: str | os.PathLike = RUN_DIR) -> list[Path]:
    """The snapshot folders ``step-NNNNNN`` of a run, by step, then ``final`` if present."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in run_dir.iterdir()
                   if p.is_dir() and (m := _SNAPSHOT.match(p.name))
                   and (p / "model.safetensors").is_file())
    folders = [p for _, p in found]
    if (run_dir / "final" / "model.safetensors").is_file():
        folders.append(run_dir / "final")
    return folders


def latest_pretrained(run_dir: str | os.PathLike = RUN_DIR) -> Path:
    """The most trained model of a run: ``final/`` if it exists, else the highest step.

    Raises ``FileNotFoundError`` with the command that makes one when the run is missing.
    """
    folders = list_pretrained(run_dir)
    if not folders:
        raise FileNotFoundError(
            f"no pretrained model in {run_dir}: run notebooks/05_pretraining.ipynb (about "
            "6 minutes on a CPU), or `python scripts/pretrain.py --out "
            f"{run_dir}` for a longer run")
    return folders[-1]
