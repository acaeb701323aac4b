"""bertlab.randomness: seeding every generator, and saving and restoring their states."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from bertlab.randomness import (
    isolated_rng,
    own_generator,
    rng_state,
    seed_everything,
    set_rng_state,
)


def draw(generator: torch.Generator | None = None) -> tuple:
    """One number from each generator a run draws from."""
    values = (random.random(), float(np.random.rand()), torch.rand(1).item())
    if generator is not None:
        values += (torch.rand(1, generator=generator).item(),)
    return values


def test_seed_everything_repeats_python_numpy_and_torch():
    seed_everything(5)
    first = draw()
    seed_everything(5)
    assert draw() == first
    seed_everything(6)
    other = draw()
    assert all(a != b for a, b in zip(other, first, strict=True))  # each generator moved


def test_a_saved_state_replays_the_same_draws():
    generator = torch.Generator().manual_seed(1)
    seed_everything(0)
    draw(generator)  # somewhere in the middle of a run
    state = rng_state(generator)
    expected = [draw(generator) for _ in range(3)]
    seed_everything(123)  # elsewhere entirely
    generator.manual_seed(9)
    set_rng_state(state, generator)
    assert [draw(generator) for _ in range(3)] == expected


def test_the_state_is_plain_tensors_and_values():
    """A checkpoint's state is loaded with torch.load(weights_only=True): no pickled objects."""
    generator = torch.Generator().manual_seed(1)
    state = rng_state(generator)
    assert {"python", "numpy", "torch", "cuda", "collate"} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    expected = draw(generator)
    set_rng_state(loaded, generator)
    assert draw(generator) == expected
    assert rng_state()["collate"] is None  # no collator generator: nothing saved for it


def test_own_generator_finds_a_collators_private_generator():
    class Seeded:
        generator = torch.Generator()

    class Unseeded:
        generator = None

    assert own_generator(Seeded()) is Seeded.generator
    assert own_generator(Unseeded()) is None
    assert own_generator(lambda batch: batch) is None
    assert own_generator(None) is None


def test_isolated_rng_seeds_the_block_and_puts_the_states_back():
    generator = torch.Generator().manual_seed(1)
    seed_everything(42)
    before = rng_state(generator)
    expected_after = draw(generator)
    set_rng_state(before, generator)

    with isolated_rng(3, generator):
        inside = draw(generator)
    with isolated_rng(3, generator):
        assert draw(generator) == inside  # the same seed: the same draws every time
    with isolated_rng(4, generator):
        assert draw(generator) != inside
    # the run outside goes on as if the blocks never happened
    assert draw(generator) == expected_after


def test_isolated_rng_puts_the_states_back_after_an_error():
    seed_everything(0)
    state = torch.get_rng_state()
    try:
        with isolated_rng(1):
            torch.rand(5)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert torch.equal(torch.get_rng_state(), state)
