"""bertlab.distributed and train() under torchrun: 2 processes of batch B equal 1 process of 2B,
a run killed under torchrun resumes exactly, a failing rank stops the others, and a run in one
process takes exactly the path it took before DDP existed (pinned figures).

The multi-process tests start ``torchrun`` (``python -m torch.distributed.run``) on
``tests/ddp_worker.py`` with gloo on the CPU, two processes of one thread each: ~10 s a launch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import (
    classification_examples,
    classifier,
    one_thread,  # noqa: F401  (autouse: one thread for tiny tensors)
    pretraining_examples,
    pretraining_model,
    word_tokenizer,
)

from bertlab import distributed
from bertlab.data.collators import MLMCollator, PaddingCollator
from bertlab.distributed import World
from bertlab.training import train

WORKER = Path(__file__).parent / "ddp_worker.py"
LAUNCH_TIMEOUT = 240  # seconds: a hang fails the test instead of the whole suite


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, *args: str, processes: int | None = 2) -> subprocess.CompletedProcess:
    """The worker in one plain process (processes=None) or under torchrun."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = [] if processes is None else [
        "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        f"--master_port={_free_port()}", "--master_addr=127.0.0.1"]
    return subprocess.run([sys.executable, *launcher, str(WORKER), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=env)


def _result(out: Path) -> tuple[list[dict], dict]:
    return (json.loads(out.with_suffix(".json").read_text()),
            torch.load(out.with_suffix(".pt"), weights_only=True))


def _differences(a: Path, b: Path) -> tuple[float, float, float]:
    """Max abs differences of the train losses, the evaluation figures (relative to the figure
    where it exceeds 1: perplexity ~64) and the final weights."""
    (history_a, weights_a), (history_b, weights_b) = _result(a), _result(b)
    assert [r["step"] for r in history_a] == [r["step"] for r in history_b]
    rows = list(zip(history_a, history_b, strict=True))
    losses = max(abs(x["train_loss"] - y["train_loss"]) for x, y in rows)
    evals = [abs(x[k] - y[k]) / max(1.0, abs(x[k])) for x, y in rows for k in x
             if k.startswith("eval_") and x[k] is not None]
    weights = max(float((weights_a[k] - weights_b[k]).abs().max()) for k in weights_a)
    return losses, max(evals), weights


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    # global batch 8: one process of 8, or two of 4; 21 examples, so the last batch of an epoch
    # (5) splits 3 + 2, and every shard holds its own number of masked tokens
    _ok(_run(tmp_path / "one", processes=None))
    _ok(_run(tmp_path / "two", processes=2))
    losses, evals, weights = _differences(tmp_path / "one", tmp_path / "two")
    print(f"\n1 vs 2 processes, max abs difference: train loss {losses:.2e}, evaluation "
          f"figures {evals:.2e}, final weights {weights:.2e}")
    assert losses < 1e-5 and evals < 1e-5 and weights < 1e-5


def test_a_run_killed_under_torchrun_resumes_exactly(tmp_path):
    # dropout and MLM masks drawn at random: every rank's generators must come back
    settings = ["--random", "--steps", "5"]
    _ok(_run(tmp_path / "full", *settings, "--checkpoint-dir", str(tmp_path / "a")))
    killed = _run(tmp_path / "cut", *settings, "--checkpoint-dir", str(tmp_path / "b"),
                  "--crash-at", "3")
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr  # after the step-2 checkpoint
    assert not (tmp_path / "cut.json").exists()
    _ok(_run(tmp_path / "cut", *settings, "--checkpoint-dir", str(tmp_path / "b"), "--resume"))
    losses, evals, weights = _differences(tmp_path / "full", tmp_path / "cut")
    print(f"\nkilled at step 3, resumed from step 2 vs uninterrupted: train loss {losses:.2e}, "
          f"evaluation {evals:.2e}, weights {weights:.2e}")
    assert losses == evals == weights == 0.0


def test_a_failing_rank_stops_the_others_with_its_error(tmp_path):
    result = _run(tmp_path / "x", "--fail-rank", "1")  # within LAUNCH_TIMEOUT, not a hang
    assert result.returncode != 0
    assert "RuntimeError: rank 1 fails on purpose at step 2" in result.stderr
    assert not (tmp_path / "x.json").exists()


# -- the pieces, in one process --------------------------------------------------------------


def _world(monkeypatch, rank: int, size: int) -> World:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(size))
    return World(torch.device("cpu"))


def test_each_rank_takes_its_slice_of_every_global_batch(monkeypatch):
    batches = [[0, 1, 2, 3], [4, 5, 6, 7, 8], [9]]  # the last one too small to share: dropped
    shards = [_world(monkeypatch, r, 2).shard(batches) for r in (0, 1)]
    assert shards == [[[0, 1], [4, 5, 6]], [[2, 3], [7, 8]]]
    assert distributed.launched() and distributed.rank() == 1 and not distributed.is_main()


def test_a_global_batch_the_processes_cannot_share_is_refused_naming_the_fix(monkeypatch):
    world = _world(monkeypatch, 0, 4)
    world.check_batch_size(32)
    with pytest.raises(ValueError, match=r"batch_size=30 is the global batch, shared by 4 "
                                         r"processes.*choose a multiple of 4 \(e.g. 28\)"):
        world.check_batch_size(30)


def test_rank_zero_keeps_the_seed_and_the_others_draw_their_own(monkeypatch):
    seeds = [_world(monkeypatch, r, 3).seed(7) for r in range(3)]
    assert seeds[0] == 7 and len(set(seeds)) == 3


def test_evaluation_accumulators_merge_numbers_and_lists(monkeypatch):
    from bertlab.metrics import ClassificationMetrics

    world = _world(monkeypatch, 0, 2)
    parts = []
    for labels in ([0, 1, 1], [1, 0]):
        part = ClassificationMetrics()
        part.update({"labels": torch.tensor(labels)},
                    type("Out", (), {"loss": torch.tensor(0.5), "logits":
                                     torch.nn.functional.one_hot(torch.tensor(labels), 2)})())
        parts.append(part)
    monkeypatch.setattr(world, "gather", lambda value: parts)
    merged = world.merge(parts[0]).compute()
    assert merged["accuracy"] == 1.0 and merged["loss"] == 0.5


def test_one_process_takes_todays_path_and_leaves_no_process_group(monkeypatch, tmp_path):
    """Figures produced by bertlab.train in one process (one thread): the same seeds, batch order
    and losses. The classifier's come from before distributed training existed (commit 35b634e);
    the pretraining run's from when accumulated batches began to be weighted by what they count
    (bertlab.accumulation); the sparse last layer keeps both, since it draws the dense path's
    dropout masks. They depend on the CPU's arithmetic in the last bits only, hence the
    tolerance; a changed order or seed moves them by ~1e-2."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    tokenizer = word_tokenizer(tmp_path)
    model = pretraining_model()
    history = train(model, pretraining_examples(20), eval_data=pretraining_examples(8, seed=2),
                    collate_fn=MLMCollator(tokenizer), eval_collate_fn=MLMCollator(tokenizer),
                    max_steps=5, batch_size=4, grad_accum_steps=2, log_every=1, eval_every=3,
                    precision="fp32", lr=1e-3, warmup_steps=2, seed=3, progress=False,
                    restore_best=False)
    np.testing.assert_allclose(history["train_loss"], [4.92125129699707, 4.854616165161133,
                               4.973934173583984, 4.90261173248291, 4.815947532653809],
                               rtol=0, atol=2e-5)
    np.testing.assert_allclose(history["eval_mlm_loss"].dropna(),
                               [4.150000530740489, 4.149663178817086], rtol=0, atol=2e-5)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).double().sum()
    assert abs(float(weights) - 188.99595013243865) < 1e-3
    history = train(classifier(), classification_examples(24),
                    collate_fn=PaddingCollator(tokenizer), max_steps=4, batch_size=6,
                    log_every=1, precision="fp32", lr=1e-3, seed=1, progress=False)
    np.testing.assert_allclose(history["train_loss"], [0.691214382648468, 0.6992132067680359,
                               0.6987926363945007, 0.6934778094291687], rtol=0, atol=2e-5)
    assert not torch.distributed.is_initialized()


def test_each_process_gets_its_own_gpu_and_cpus_stay_cpus(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _world(monkeypatch, 3, 4).device == torch.device("cpu")
    world = World.__new__(World)  # the device mapping alone, with no GPU needed to check it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    World.__init__(world, torch.device("cuda"))
    assert world.device == torch.device("cuda", 1) and world.local_rank == 1


def test_one_process_never_touches_cuda_or_the_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def probe():
        raise AssertionError("CUDA probed in a one-process run")

    monkeypatch.setattr(torch.cuda, "is_available", probe)
    monkeypatch.setattr(torch.distributed, "init_process_group", probe)
    with distributed.process_group() as on:
        assert on is False
    assert not distributed.launched() and distributed.is_main()
