"""Randomness under control: seed every generator, and save and restore their states.

A run repeats exactly when every source of random numbers starts from the same state: Python's
``random``, NumPy's global generator, torch's CPU and CUDA generators, and a collator's own
generator (``MLMCollator(seed=0)`` draws its masks from one). :func:`seed_everything` seeds them;
:func:`rng_state` and :func:`set_rng_state` capture and restore them, which is how a training run
resumed from a checkpoint draws the same dropout masks and MLM masks as the run it continues.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

__all__ = ["isolated_rng", "own_generator", "rng_state", "seed_everything", "set_rng_state"]


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def own_generator(collate_fn) -> torch.Generator | None:
    """A collator's private generator (e.g. ``MLMCollator(seed=0)``), saved and restored too."""
    generator = getattr(collate_fn, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def rng_state(collate_generator: torch.Generator | None = None) -> dict:
    """Every generator's state, as tensors and plain values (``torch.load(weights_only=True)``
    reads them back)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        # plain ints and a tensor, so that weights_only loading accepts them
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "collate": collate_generator.get_state() if collate_generator is not None else None,
    }


def set_rng_state(state: dict, collate_generator: torch.Generator | None = None) -> None:
    """Put back the states :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    if collate_generator is not None and state.get("collate") is not None:
        collate_generator.set_state(state["collate"])


@contextlib.contextmanager
def isolated_rng(seed: int, collate_generator: torch.Generator | None = None):
    """Run a block with seeded generators, then put the previous states back.

    Evaluation uses this: held-out batches get the same masks at every evaluation (so the
    figures are comparable), and training's own random sequence is not disturbed.
    """
    saved = rng_state(collate_generator)
    seed_everything(seed)
    if collate_generator is not None:
        collate_generator.manual_seed(seed)
    try:
        yield
    finally:
        set_rng_state(saved, collate_generator)
