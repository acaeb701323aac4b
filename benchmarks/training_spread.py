"""How far the course's training-derived figures move between runs: seeds, CPUs and threads.

A training run's figures depend on the arithmetic of the CPU it runs on (AVX-512 or AVX2, bf16
or not, one thread or several change the last bits of a matrix product, and a whole trajectory
amplifies them) and on the seed. The notebooks therefore print those figures for the learner but
nbval does not compare them; each is checked by an assertion whose band must hold on every
machine. This script measures the spread those bands are taken from: it executes the notebooks
that train (05, 06, 07, which reads 05's model, 08, 09 and 10) under several configurations, reads every
figure out of the notebook's own variables, and writes a table of min and max beside the band
each notebook asserts.

    python benchmarks/training_spread.py run                      # every configuration below
    python benchmarks/training_spread.py run --isa avx2 --threads 1 --seeds 0 1 2 --jobs 2
    python benchmarks/training_spread.py run --seeds 1 --notebooks 10_parameter_efficient_finetuning
    python benchmarks/training_spread.py table                    # -> benchmarks/spread.md

A configuration is a seed (``BERTLAB_SEED``), a thread count (``OMP_NUM_THREADS``) and an
instruction set: ``native``, or ``avx2``, which caps PyTorch, MKL and oneDNN at AVX2 (a cheap
stand-in for a laptop without AVX-512 or AMX). Each run writes ``benchmarks/spread/<config>.json``;
``table`` reads them all; ``--notebooks`` runs only those notebooks and updates their figures in
the configuration's file. A configuration takes about as long as the four notebooks (35-55 min on
2 cores); ``--jobs 2 --threads 1`` runs two at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "spread"
TABLE = ROOT / "benchmarks" / "spread.md"
SAME_BITS = RESULTS / "same-bits.md"  # rows of the bit-identity check, written by `run`

#: Environment that makes PyTorch, MKL and oneDNN use AVX2 kernels only.
AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"}

#: The configurations ``run`` measures by default: (instruction set, threads, seed).
DEFAULT_CONFIGS = [("native", 2, s) for s in (0, 1, 2)] + [("avx2", 1, s) for s in (0, 1, 2)]

# Each figure: (notebook, name, expression evaluated in the notebook's namespace after its run,
# band the notebook asserts or None when it is printed only). An expression may give a number, a
# bool or a dict of them (one figure per key, and then the band may be a dict of bands by key).
FIGURES = [
    ("05_pretraining", "training MLM loss", 'final["train_mlm_loss"]', None),
    ("05_pretraining", "held-out MLM loss", 'final["eval_mlm_loss"]', (5.8, 6.4)),
    ("05_pretraining", "held-out MLM accuracy", 'final["eval_mlm_accuracy"]', (0.11, 0.16)),
    ("05_pretraining", "held-out NSP accuracy", 'final["eval_nsp_accuracy"]', None),
    ("05_pretraining", "left the unigram plateau at step", "escape", (250, 600)),
    ("06_sentiment_finetuning", "MiniLM pretrained, validation",
     'minilm_history.attrs["best_metric"]', None),
    ("06_sentiment_finetuning", "MiniLM random init, validation by learning rate",
     "random_accuracy", None),
    ("06_sentiment_finetuning", "MiniLM random init, learning rate chosen", "random_lr", None),
    ("06_sentiment_finetuning", "tiny sweep, validation",
     '{f"{r.init} {r.lr:.0e}": r.val_accuracy for r in sweep.itertuples()}', None),
    ("06_sentiment_finetuning", "early stopping: fired, last step, planned",
     '{"fired": stopping.attrs["stopped_early"], "last step": last_step, "planned": planned}', None),
    ("06_sentiment_finetuning", "all-MiniLM-L6-v2 test recall per class",
     "dict(zip(label_names, minilm_recall.tolist()))", None),
    ("06_sentiment_finetuning", "tiny random init: best minus 2e-5",
     "random_start.max() - random_start[2e-5]", (0.05, 1.0)),
    ("06_sentiment_finetuning", "test accuracy", 'table["accuracy"].to_dict()', None),
    ("06_sentiment_finetuning", "test accuracy, all-MiniLM-L6-v2", "minilm_accuracy", (74.0, 100)),
    ("06_sentiment_finetuning", "MiniLM pretrained minus random, low end of 95% CI",
     "100 * minilm_gain[1]", (0.0, 100)),
    ("06_sentiment_finetuning", "MiniLM minus TF-IDF, test points",
     'minilm_accuracy - table.loc["TF-IDF + logistic regression", "accuracy"]', (0.0, 100)),
    ("06_sentiment_finetuning", "freezing, validation %", "accuracy", None),
    ("06_sentiment_finetuning", "full fine-tuning minus frozen encoder, points",
     "accuracy[\"full fine-tuning (section 5's run)\"] - accuracy[\"whole encoder frozen\"]",
     (0.0, 100)),
    ("06_sentiment_finetuning", "linear probe, validation",
     'curve["linear probe"].to_dict()', None),
    ("06_sentiment_finetuning", "unpaired / paired interval width",
     "{k: u / p for k, (u, p) in widths.items()}",
     {"tiny BERT, pretrained (long run)": (1.15, 10)}),
    ("06_sentiment_finetuning", "validation mistakes of MiniLM", "int(wrong.sum())", None),
    ("07_attention_visualisation", "ours: mean entropy (bits)",
     'summaries["ours (05)"][0].entropy.mean()', None),
    ("07_attention_visualisation", "ours: per layer",
     '{f"{k} layer {i}": v for k, col in layers.loc["ours (05)"].items() '
     'for i, v in col.items()}', None),
    ("07_attention_visualisation", "claim holds",
     "{k: float(v) for k, v in {**checks, **ours_checks}.items()}",
     None),
    ("07_attention_visualisation", "largest [CLS] share of any head", "sink", None),
    ("08_named_entities", "validation entity F1 by model and rate",
     '{f"{m}, {lr:.0e}": f for m, lr, f in zip(runs.model, runs.lr, runs["validation F1"])}', None),
    ("08_named_entities", "MiniLM's validation lead over the better tiny BERT",
     'best["all-MiniLM-L6-v2"] - max(best["tiny BERT, pretrained (10,000 steps)"], '
     'best["tiny BERT, random weights"])', (0.05, 1)),
    ("08_named_entities", "test entity F1", 'results["f1"].astype(float).to_dict()',
     {"all-MiniLM-L6-v2": (0.70, 1)}),
    ("09_question_answering", "validation F1 by model and rate",
     '{f"{m}, {lr:.0e}": f for m, lr, f in zip(runs.model, runs.lr, runs["validation F1"])}', None),
    ("09_question_answering", "MiniLM's validation lead over the better tiny BERT",
     'best["all-MiniLM-L6-v2"] - max(best["tiny BERT, pretrained (10,000 steps)"], '
     'best["tiny BERT, random weights"])', (0.15, 1)),
    ("09_question_answering", "test F1", 'results["f1"].astype(float).to_dict()',
     {"all-MiniLM-L6-v2": (0.45, 1)}),
    ("09_question_answering", "pipeline agrees with bertlab (questions)", "sum(same)", None),
    ("10_parameter_efficient_finetuning", "validation accuracy by method and rate",
     '{f"{m}, {lr:.0e}": a for m, lr, a in zip(runs.method, runs.lr, runs.val_accuracy)}', None),
    ("10_parameter_efficient_finetuning", "rate chosen", 'chosen["lr"].to_dict()', None),
    ("10_parameter_efficient_finetuning", "test accuracy", 'scores["accuracy"].to_dict()',
     {"full fine-tuning": (72, 100), "LoRA (r=8, query and value)": (71, 100)}),
    ("10_parameter_efficient_finetuning", "minus full fine-tuning, test points",
     "{m: 100 * g[0] for m, g in gaps.items()}", {"LoRA (r=8, query and value)": (-4, 100)}),
    ("10_parameter_efficient_finetuning", "AdaLoRA ranks kept", "ranks.sum()", (96, 96)),
    ("10_parameter_efficient_finetuning", "subjectivity adapter, test accuracy",
     'swapped_accuracy["subjectivity"]', (84, 100)),
]
NOTEBOOKS = list(dict.fromkeys(notebook for notebook, *_ in FIGURES))


def config_name(isa: str, threads: int, seed: int) -> str:
    return f"{isa}-threads{threads}-seed{seed}"


# =========================================================================== measuring


def run_config(isa: str, threads: int, seed: int, keep: Path | None = None,
               notebooks: list[str] | None = None) -> Path:
    """Execute the notebooks in a fresh process with this configuration's environment.

    With ``keep``, the executed notebooks and the training runs stay in ``keep/<config>/``.
    """
    name = config_name(isa, threads, seed)
    env = {**os.environ, "BERTLAB_SEED": str(seed), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    env.update(AVX2_CAPS if isa == "avx2" else {})
    command = [sys.executable, __file__, "worker", name, "--notebooks", *(notebooks or NOTEBOOKS)]
    if keep is not None:
        folder = Path(keep).resolve() / name
        env["BERTLAB_RUNS_DIR"] = str(folder / "runs")
        subprocess.run([*command, "--keep", str(folder)], env=env, check=True)
    else:
        with tempfile.TemporaryDirectory(prefix=f"spread-{name}-") as runs:
            env["BERTLAB_RUNS_DIR"] = runs  # each configuration trains into its own folder
            subprocess.run(command, env=env, check=True)
    return RESULTS / f"{name}.json"


def worker(name: str, notebooks: list[str], keep: Path | None = None) -> None:
    """In the configured process: run each notebook, then read its figures and its errors.

    The figures, errors and minutes of notebooks not run now are kept from the last measurement.
    """
    import nbformat
    from nbclient import NotebookClient

    record = {"config": name, "machine": platform.processor() or platform.machine(),
              "figures": {}, "errors": [], "minutes": {}}
    previous = RESULTS / f"{name}.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        kept = [n for n in old["minutes"] if n not in notebooks]
        record["figures"] = {f: v for f, v in old["figures"].items() if f.split(":")[0] in kept}
        record["errors"] = [e for e in old["errors"] if e["notebook"] in kept]
        record["minutes"] = {n: old["minutes"][n] for n in kept}
    for notebook in notebooks:
        path = ROOT / "notebooks" / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        figures = [(label, expr) for nb_name, label, expr, _ in FIGURES if nb_name == notebook]
        nb.cells.append(nbformat.v4.new_code_cell(_figure_cell(figures)))
        started = time.perf_counter()
        NotebookClient(nb, timeout=None, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        record["minutes"][notebook] = round((time.perf_counter() - started) / 60, 2)
        for index, cell in enumerate(nb.cells[:-1]):  # the last cell is ours
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    record["errors"].append({"notebook": notebook, "cell": index,
                                             "error": f"{output.ename}: {output.evalue}"[:300]})
        printed = "".join(o.get("text", "") for o in nb.cells.pop().outputs if o.output_type == "stream")
        if keep is not None:
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(keep) / path.name)
        lines = printed.strip().splitlines()
        if not lines:  # the kernel died before the figures were read
            record["errors"].append({"notebook": notebook, "cell": len(nb.cells),
                                     "error": "no figures: the notebook did not run to its end"})
            continue
        for label, value in json.loads(lines[-1]).items():
            record["figures"][f"{notebook}: {label}"] = value
        print(f"{name}: {notebook} in {record['minutes'][notebook]} min", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


def _figure_cell(figures: list[tuple[str, str]]) -> str:
    """Code that prints {figure: value} as one JSON line (None where the expression fails)."""
    lines = ["import json as _json", "_figures = {}"]
    for label, expr in figures:
        lines += ["try:", f"    _value = {expr}",
                  "    if hasattr(_value, 'items'):",
                  f"        _figures.update({{f'{label} [{{k}}]': float(v) for k, v in _value.items()}})",
                  "    else:", f"        _figures[{label!r}] = float(_value)",
                  "except Exception:", f"    _figures[{label!r}] = None"]
    lines.append("print(_json.dumps(_figures))")
    return "\n".join(lines)


# =========================================================================== same bits?

_SHORT_RUN = """
import hashlib, torch
from bertlab import BertConfig, BertForPreTraining
torch.manual_seed(0)
model = BertForPreTraining(BertConfig.named("tiny", vocab_size=8192))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
ids = torch.randint(5, 8192, (32, 64), generator=g)
labels = torch.where(torch.rand(32, 64, generator=g) < 0.3, ids, torch.full_like(ids, -100))
nsp = torch.randint(0, 2, (32,), generator=g)
for _ in range(20):
    model(input_ids=ids, labels=labels, next_sentence_label=nsp).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(b"".join(
    p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()[:16])
"""


def same_bits_check() -> list[str]:
    """20 pretraining steps of the tiny model under each instruction set and thread count: do the
    final weights agree bit for bit? (On a CPU without AVX-512, native and avx2 are one thing.)"""
    rows = []
    for isa in ("native", "avx2"):
        for threads in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   **(AVX2_CAPS if isa == "avx2" else {})}
            out = subprocess.run([sys.executable, "-c", _SHORT_RUN], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            rows.append(f"| {isa} | {threads} | {out[0]} | `{out[1]}` |")
    return rows


# =========================================================================== the table


def band_of(figure: str):
    for notebook, label, _, band in FIGURES:
        name = f"{notebook}: {label}"
        if figure == name:
            return band
        if isinstance(band, dict) and figure.startswith(f"{name} ["):
            return band.get(figure[len(name) + 2:-1])
    return None


def write_table() -> str:
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*-seed*.json"))]
    if not records:
        raise SystemExit(f"no measurements in {RESULTS}; run `{Path(__file__).name} run` first")
    names = [r["config"] for r in records]
    figures = list(dict.fromkeys(f for r in records for f in r["figures"]))
    lines = [
        "# Spread of the training-derived figures",
        "",
        f"Made by `python benchmarks/training_spread.py table` from {len(records)} runs of the "
        "notebooks that train (05, 06, 07, 08, 09, 10), one per configuration: "
        + ", ".join(f"`{n}`" for n in names) + ". `avx2` caps PyTorch, MKL and oneDNN at AVX2 "
        "(`ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2`); "
        f"machine: {records[0]['machine']}, {os.cpu_count()} cores.",
        "",
        "A notebook prints each figure but nbval does not compare it; where the notebook asserts "
        "a band, the band is shown and must hold in every run (`ok`).",
        "",
        "| figure | " + " | ".join(f"`{n}`" for n in names) + " | min | max | band asserted |",
        "| --- | " + " | ".join("---:" for _ in names) + " | ---: | ---: | --- |",
    ]
    for figure in figures:
        values = [r["figures"].get(figure) for r in records]
        measured = [v for v in values if v is not None and not math.isnan(v)]
        band = band_of(figure)
        verdict = ""
        if band is not None:
            # a configuration that did not run this notebook has no value (None); a NaN is a failure
            ran = [v for v in values if v is not None]
            inside = all(band[0] <= v <= band[1] for v in measured) and len(measured) == len(ran)
            verdict = f"[{_fmt(band[0])}, {_fmt(band[1])}] " + ("ok" if inside else "**VIOLATED**")
        lo, hi = (_fmt(min(measured)), _fmt(max(measured))) if measured else ("-", "-")
        lines.append(f"| {figure} | " + " | ".join(_fmt(v) for v in values)
                     + f" | {lo} | {hi} | {verdict} |")
    lines += ["", "Minutes per notebook:", "",
              "| notebook | " + " | ".join(f"`{n}`" for n in names) + " |",
              "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for notebook in NOTEBOOKS:
        lines.append(f"| {notebook} | "
                     + " | ".join(_fmt(r["minutes"].get(notebook)) for r in records) + " |")
    if SAME_BITS.is_file():  # measured by `run`; the table only formats
        lines += ["", "Same bits? The final weights of 20 pretraining steps of the tiny model (sha256 "
                  "of the parameters), per instruction set and thread count, on this machine:", "",
                  "| instruction set | threads | torch reports | weights |",
                  "| --- | ---: | --- | --- |", *SAME_BITS.read_text().splitlines()]
    errors = [(r["config"], e) for r in records for e in r["errors"]]
    lines += ["", "Errors (a failed assertion is a band or claim that does not hold):", ""]
    lines += [f"- `{c}` {e['notebook']} cell {e['cell']}: {e['error']}" for c, e in errors] or ["- none"]
    TABLE.write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    if 0 < abs(value) < 0.01:  # a learning rate
        return f"{value:.0e}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure configurations (default: all of them)")
    run.add_argument("--isa", choices=["native", "avx2"])
    run.add_argument("--threads", type=int)
    run.add_argument("--seeds", type=int, nargs="+")
    run.add_argument("--jobs", type=int, default=1, help="configurations run at once")
    run.add_argument("--keep", type=Path, help="keep executed notebooks and runs in KEEP/<config>/")
    run.add_argument("--notebooks", nargs="+", choices=NOTEBOOKS, help="only these (default: all)")
    commands.add_parser("table", help=f"write {TABLE.relative_to(ROOT)} from the measurements")
    internal = commands.add_parser("worker")  # one configuration, in its own environment
    internal.add_argument("name")
    internal.add_argument("--keep", type=Path)
    internal.add_argument("--notebooks", nargs="+", default=NOTEBOOKS)
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker(args.name, args.notebooks, args.keep)
    if args.command == "table":
        return print(write_table())
    configs = [c for c in DEFAULT_CONFIGS if (args.isa in (None, c[0]))
               and (args.threads in (None, c[1])) and (args.seeds is None or c[2] in args.seeds)]
    if args.isa and args.threads and args.seeds:  # any combination, not only the defaults
        configs = [(args.isa, args.threads, s) for s in args.seeds]
    RESULTS.mkdir(parents=True, exist_ok=True)
    SAME_BITS.write_text("\n".join(same_bits_check()) + "\n")
    with ThreadPoolExecutor(args.jobs) as pool:
        for path in pool.map(lambda c: run_config(*c, keep=args.keep, notebooks=args.notebooks),
                                 configs):
            print("wrote", path.relative_to(ROOT), flush=True)
    print(write_table())


if __name__ == "__main__":
    main()
