"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest

# Tests never reach the Hugging Face hub; everything they load is on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def assert_close():
    """``assert_close(name, actual, expected, atol)``: print ``name: max|diff| = 3.1e-07``
    (visible with ``pytest -s``) and assert the largest absolute difference is at most atol."""

    def check(name: str, actual, expected, atol: float) -> float:
        assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
        diff = (actual.detach().double() - expected.detach().double()).abs().max().item()
        print(f"{name}: max|diff| = {diff:.1e}")
        assert diff <= atol, f"{name}: max|diff| = {diff:.2e} exceeds {atol:.0e}"
        return diff

    return check


@pytest.fixture(autouse=True)
def _close_figures():
    """bertlab's plots are pyplot figures (shown by a cell's plt.show()); close what a test drew."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


# A headless Chromium (skips without it) for the browser tests.
from browser import browser  # noqa: E402, F401
