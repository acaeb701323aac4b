"""The pretraining ablation harness (benchmarks/pretraining_ablation.py) on its smoke grid."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pretraining_ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("pretraining_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def read_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def sittings(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "sittings.jsonl").read_text().splitlines()]


def test_smoke_grid_resumes_and_reads_test_only_with_final(ablation, tmp_path):
    grid, variants = ablation.select_variants("smoke")
    out = tmp_path / "ablation"
    baseline_dir = out / "pretraining" / "baseline"

    # A sitting that runs out of time stops pretraining at a checkpoint and reports "incomplete".
    assert ablation.run_grid("smoke", out, only=["baseline"], minutes=0) is False
    assert sittings(baseline_dir)[0]["until_step"] < grid.base.max_steps
    assert not (baseline_dir / "final").exists()

    # The full grid resumes that run (no restart from step 0) and evaluates everything.
    assert ablation.run_grid("smoke", out) is True
    assert [s["until_step"] for s in sittings(baseline_dir)] == [1, grid.base.max_steps]
    rows = read_rows(out)
    assert tuple(rows[0]) == ablation.COLUMNS
    assert all(row["test_accuracy"] == "" and row["phase"] == "search" for row in rows)
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in rows)

    budgets = sorted({*grid.base.snapshot_steps, grid.base.max_steps})
    records = {v.name: json.loads((out / "pretraining" / v.name / "budgets.json").read_text())
               for v in variants}
    random_init = records["baseline"]["baseline"]
    assert random_init == records["mask15"]["baseline"]  # same tokenizer and size: shared
    for name, record in records.items():
        tokens = [record["tokens_seen"][str(s)] for s in budgets]
        assert tokens == sorted(tokens) and tokens[0] > 0, f"{name}: tokens seen {tokens}"
        for step in budgets:
            folder = ablation.snapshot_folder(out / "pretraining" / name, step, grid.base)
            assert (folder / "model.safetensors").is_file()

    n_train = grid.sentiment_rows
    labels = {str(n or n_train) for n in grid.label_counts}
    finetunes = len(grid.label_counts) * len(grid.lrs) * len(grid.seeds)
    probes = len(grid.label_counts) * len(grid.probe_cs)
    expected = (finetunes + probes * len(grid.seeds)  # random init: every seed is a new model
                + len(variants) * len(budgets) * (finetunes + probes))
    assert len(rows) == expected
    assert {row["variant"] for row in rows} == {random_init, "baseline", "mask15"}
    assert {row["baseline"] for row in rows} == {random_init}
    assert {row["labels"] for row in rows} == labels
    assert {row["eval_kind"] for row in rows} == {"finetune", "probe"}
    assert {float(row["lr"]) for row in rows if row["eval_kind"] == "finetune"} == set(grid.lrs)
    assert {row["step"] for row in rows if row["variant"] == "mask15"} == {str(s) for s in budgets}

    table = (out / "results.md").read_text()
    header = "| variant | step | tokens seen | eval | labels | best setting | validation | Δ |"
    assert header in table
    cells = [line.split(" | ") for line in table.splitlines() if line.startswith("| baseline ")]
    assert len(cells) == len(budgets) * 2 * len(grid.label_counts)  # steps x kinds x labels
    assert all(cell[-1].rstrip(" |").lstrip("+-").replace(".", "").isdigit() for cell in cells)
    assert "Test accuracy" not in table

    # Re-running adds nothing and pretrains nothing.
    final_weights = baseline_dir / "final" / "model.safetensors"
    stamp = final_weights.stat().st_mtime_ns
    assert ablation.run_grid("smoke", out) is True
    assert len(read_rows(out)) == expected
    assert len(sittings(baseline_dir)) == 2 and final_weights.stat().st_mtime_ns == stamp

    # --final: the chosen variant's last snapshot and its random init, on test, once per seed.
    assert ablation.run_grid("smoke", out, final="baseline") is True
    rows = read_rows(out)
    final = rows[expected:]
    assert final and all(row["phase"] == "final" for row in final)
    assert all(row["phase"] == "search" and row["test_accuracy"] == "" for row in rows[:expected])
    assert {row["variant"] for row in final} == {"baseline", random_init}
    assert {row["step"] for row in final} == {"0", str(grid.base.max_steps)}
    assert all(0 <= float(row["test_accuracy"]) <= 1 for row in final)
    finetuned = [row for row in final if row["eval_kind"] == "finetune"]
    assert len(finetuned) == 2 * len(grid.label_counts) * len(grid.seeds)
    assert "Test accuracy" in (out / "results.md").read_text()
    assert ablation.run_grid("smoke", out, final="baseline") is True
    assert len(read_rows(out)) == len(rows)

    # --evaluate-run: a finished run made elsewhere, evaluated under its folder's name with the
    # grid's protocol; it shares the random-init rows of its vocabulary, and pretrains nothing.
    elsewhere = tmp_path / "made-elsewhere"
    shutil.copytree(baseline_dir, elsewhere)
    assert ablation.run_grid("smoke", out, evaluate_runs=(elsewhere,)) is True
    added = read_rows(out)[len(rows):]
    assert {row["variant"] for row in added} == {"made-elsewhere"}
    assert len(added) == finetunes + probes
    assert "Also evaluated with `--evaluate-run DIR`" in (out / "results.md").read_text()
    assert {(row["step"], row["baseline"]) for row in added} == {
        (str(grid.base.max_steps), random_init)}
    assert len(sittings(baseline_dir)) == 2
    with pytest.raises(ValueError, match="not a finished run"):
        ablation.run_grid("smoke", out, evaluate_runs=(tmp_path / "nothing",))
    with pytest.raises(ValueError, match="without --only and --final"):
        ablation.run_grid("smoke", out, final="baseline", evaluate_runs=(elsewhere,))


def test_pretraining_corpus_holds_no_validation_or_test_text(ablation):
    from bertlab.data.corpus import Document, load_corpus
    from bertlab.data.sentiment import load_sentiment

    sentiment = load_sentiment("rotten_tomatoes")
    def bare(text: str) -> str:  # sentence splitting may fold whitespace, nothing else
        return "".join(text.split())

    held_out = {bare(t) for split in ("validation", "test") for t in sentiment[split]["text"]}
    grid, _ = ablation.select_variants("smoke")
    for corpus in (load_corpus("sotu", add_sentiment_train=True),
                   ablation.pretraining_corpus(grid, grid.base)):
        texts = {bare("".join(d.sentences)) for d in corpus.train + corpus.heldout}
        assert not texts & held_out
        assert any(d.source == "rotten_tomatoes" for d in corpus.train)
        ablation.check_no_leak(corpus, sentiment)

    leaked = Document("leak", [sentiment["validation"]["text"][0]], source="rotten_tomatoes")
    corpus.train.append(leaked)
    with pytest.raises(ValueError, match="validation/test text must never be pretrained on"):
        ablation.check_no_leak(corpus, sentiment)


def test_bad_names_say_which_are_valid(ablation, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown grid 'nope'; choose one of smoke, focus, levers"):
        ablation.select_variants("nope")
    with pytest.raises(ValueError, match="its variants are baseline, mask15"):
        ablation.select_variants("smoke", ["mask99"])
    with pytest.raises(ValueError, match="--final 'mask15' is not among the variants run"):
        ablation.run_grid("smoke", tmp_path, only=["baseline"], final="mask15")
    assert ablation.main(["--grid", "levers", "--only", "mask99", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "unknown variant(s) ['mask99']" in error and "mask15, mask40" in error


def test_levers_grid_is_valid_and_shares_the_focus_protocol(ablation):
    grid, variants = ablation.select_variants("levers")
    focus, focus_variants = ablation.select_variants("focus")
    assert variants[0].name == "baseline" and len({v.name for v in variants}) == len(variants)
    assert len(grid.seeds) >= 3 and {1000, None} <= set(grid.label_counts)
    protocol = ("lrs", "probe_cs", "seeds", "label_counts", "epochs", "subset_epochs",
                "max_length", "evals_per_epoch")
    assert [getattr(grid, k) for k in protocol] == [getattr(focus, k) for k in protocol]
    # one folder for both grids: a shared name must mean the same pretraining
    shared = {v.name for v in variants} & {v.name for v in focus_variants}
    assert shared == {"baseline"}
    assert ablation.variant_recipe(grid, variants[0]).replace(snapshot_steps=(2000,)) == \
        ablation.variant_recipe(focus, focus_variants[1])
    base_tokens = grid.base.batch_size * grid.base.max_steps
    for variant in variants:
        recipe = ablation.variant_recipe(grid, variant)  # validates its fields
        assert bool(variant.changes) == (variant.name != "baseline"), variant.name
        if variant.name.startswith(("pre-ln-batch", "batch", "seq")):  # the same tokens
            assert recipe.batch_size * recipe.max_steps * recipe.max_seq_length == \
                base_tokens * grid.base.max_seq_length, variant.name


def test_grids_sharing_a_folder_are_all_named_in_the_table(ablation, tmp_path):
    results = ablation.Results(tmp_path / "results.csv")
    for variant in ("baseline", "mask15", "elsewhere"):
        results.add(variant=variant, baseline="random-init:x", step=4, tokens_seen=9,
                    eval_kind="finetune", labels=10, lr=1e-3, seed=0, phase="search",
                    val_accuracy=0.7)
    frame = ablation.read_results(results.path)
    commands = ablation.grid_commands(frame, "focus", tmp_path)
    assert [c.split("--grid ")[1].split()[0] for c in commands] == ["focus", "levers"]
    grid, _ = ablation.select_variants("focus")
    text = ablation.write_table(results, tmp_path, grid, commands).read_text()
    assert "(rerun them to update" in text and "--grid levers" in text
    assert "evaluate-run DIR` (runs made elsewhere, the same protocol; named by their folder): " \
           "elsewhere." in text  # mask15 is a grid's variant, not a run made elsewhere


def test_a_changed_recipe_does_not_resume_an_old_run(ablation, tmp_path):
    grid, (baseline, mask15) = ablation.select_variants("smoke")
    record = {"recipe": ablation.variant_recipe(grid, mask15).to_dict()}
    (tmp_path / "recipe.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="another recipe"):
        ablation.pretrain(grid, baseline, tmp_path, ablation.TimeLimit(None))


def test_best_setting_is_chosen_by_mean_validation_accuracy(ablation, tmp_path):
    results = ablation.Results(tmp_path / "results.csv")
    for lr, accuracies in ((1e-4, (0.70, 0.80)), (1e-3, (0.76, 0.76))):
        for seed, accuracy in enumerate(accuracies):
            results.add(variant="v", baseline="r", step=5, tokens_seen=9, eval_kind="finetune",
                        labels=10, lr=lr, seed=seed, phase="search", val_accuracy=accuracy)
    results.add(variant="r", baseline="r", step=0, tokens_seen=0, eval_kind="finetune",
                labels=10, lr=1e-3, seed=0, phase="search", val_accuracy=0.70)
    best = ablation.best_settings(ablation.read_results(results.path))
    mine = best[best["variant"] == "v"]
    assert len(mine) == 1 and mine["setting"].item() == 1e-3  # 0.76 > 0.75 on average
    assert mine["runs"].item() == 2 and mine["std"].item() == 0
    table = ablation.payoff(best)
    assert table["variant"].tolist() == ["v", "r"]  # the order of first appearance
    assert table["gain"].iloc[0] == pytest.approx(6.0) and np.isnan(table["gain"].iloc[1])


def test_shipped_table_is_what_the_harness_makes_of_the_shipped_rows(ablation, tmp_path):
    from bertlab.ablation import shipped_results

    rows = shipped_results("focus")
    grid, _ = ablation.select_variants("focus")
    shipped_table = rows.with_name("results.md").read_text()
    made_by = next(line for line in shipped_table.splitlines() if line.startswith("Made by"))
    commands = re.findall(r"`([^`]+)`", made_by)
    remade = ablation.write_table(ablation.Results(rows), tmp_path, grid, commands)
    assert remade.read_text() == shipped_table

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bertlab.ablation import best_settings, payoff, plot_levers, plot_payoff, read_results

    table = payoff(best_settings(read_results(rows)))
    variants = [v.name for v in grid.variants]
    assert set(variants) <= set(table.loc[table["step"] > 0, "variant"])  # the whole grid ran
    assert table.loc[table["step"] > 0, "gain"].notna().all()
    fig = plot_payoff(table)  # fine-tuning and probe, all labels and 1,000: four panels
    assert len(fig.axes) == 4 and all(len(a.lines) >= len(variants) for a in fig.axes)
    plt.close(fig)
    fig = plot_levers(table)  # one bar per variant, sorted by gain
    bars = fig.axes[0].patches
    assert len(bars) == table.loc[table["step"] > 0, "variant"].nunique()
    assert [b.get_width() for b in bars] == sorted(b.get_width() for b in bars)
    plt.close(fig)
    assert len(plot_payoff(table, variants=variants[:2]).axes[0].lines) >= 2
    with pytest.raises(ValueError, match=r"no rows for variant\(s\) \['nope'\]"):
        plot_payoff(table, variants=["nope"])
    with pytest.raises(ValueError, match="no probe rows with 7 labels"):
        plot_levers(table, "probe", 7)
    plt.close("all")
    with pytest.raises(FileNotFoundError, match="ships 'focus'"):
        shipped_results("nope")
