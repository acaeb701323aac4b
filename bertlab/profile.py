"""Run profiles: one knob that picks the scale of every experiment in the course.

``cpu`` (the default) keeps each notebook within minutes on a 2-core laptop, and
is the profile whose outputs are committed and checked by nbval. ``gpu`` trains
bigger models for longer; it is chosen automatically when CUDA is available
(e.g. in Colab). Set ``BERTLAB_PROFILE=cpu|gpu`` or pass ``name=`` to override.

The cpu profile trains in float32: bf16 autocast is slower than float32 on most CPUs, and a
training run's figures must not depend on whether the learner's CPU has bf16 arithmetic.
``BERTLAB_SEED`` replaces every notebook's seed, to see how far a figure moves between runs.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PROFILES", "Profile", "get_profile", "seed_everything", "setup"]

PROFILES = ("cpu", "gpu")


@dataclass(frozen=True)
class Profile:
    """The chosen scale. ``name`` is "cpu" or "gpu"; ``device`` where tensors go; ``seed`` the
    seed of every run in the notebook; ``precision`` what training runs compute in."""

    name: str
    device: str
    seed: int = 0

    @property
    def precision(self) -> str:
        """"fp32" on the cpu profile (portable figures); "auto" (bf16 or fp16) on a GPU."""
        return "auto" if self.is_gpu else "fp32"

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def pick(self, cpu, gpu):
        """Return ``cpu`` or ``gpu`` for this profile: ``steps = profile.pick(600, 20_000)``."""
        return gpu if self.is_gpu else cpu


def get_profile(name: str | None = None, seed: int = 0) -> Profile:
    """Resolve the run profile: argument, then ``$BERTLAB_PROFILE``, then the hardware."""
    name = name or os.environ.get("BERTLAB_PROFILE") or "auto"
    name = name.strip().lower()
    has_cuda = torch.cuda.is_available()
    if name == "auto":
        name = "gpu" if has_cuda else "cpu"
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}: use one of {PROFILES} (or 'auto').")
    if name == "gpu" and not has_cuda:
        raise ValueError(
            "The 'gpu' profile needs a CUDA GPU, and torch sees none. In Colab choose "
            "Runtime > Change runtime type > GPU; elsewhere set BERTLAB_PROFILE=cpu."
        )
    return Profile(name=name, device="cuda" if name == "gpu" else "cpu", seed=seed)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def setup(seed: int = 0, profile: str | None = None) -> Profile:
    """First cell of every notebook: seeds, profile, quiet libraries, plot style.

    ``$BERTLAB_SEED``, when set, replaces ``seed``. Prints one line saying which profile runs,
    and returns it.
    """
    seed = _seed_from_environment(seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the course never waits on the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import matplotlib

    try:  # transformers' and datasets' own progress bars and advice go to stderr
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass
    matplotlib.rcParams.update({
        "figure.dpi": 100,
        "figure.figsize": (6.4, 3.6),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "font.size": 10,
    })
    seed_everything(seed)
    chosen = get_profile(profile, seed=seed)
    print(f"bertlab profile: {chosen.name} (device {chosen.device}), seed {seed}")
    return chosen


def _seed_from_environment(seed: int) -> int:
    value = os.environ.get("BERTLAB_SEED", "").strip()
    if not value:
        return seed
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"BERTLAB_SEED={value!r} is not an integer; set e.g. BERTLAB_SEED=1, "
                         "or unset it to use the notebook's own seed") from None
