"""Run profiles: one knob that picks the scale of every experiment in the course.

``cpu`` (the default) keeps each notebook within minutes on a 2-core laptop, and
is the profile whose outputs are committed and checked by nbval. ``gpu`` trains
bigger models for longer; it is chosen automatically when CUDA is available
(e.g. in Colab). Set ``BERTLAB_PROFILE=cpu|gpu`` or pass ``name=`` to override.
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
    """The chosen scale. ``name`` is "cpu" or "gpu"; ``device`` where tensors go."""

    name: str
    device: str

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def pick(self, cpu, gpu):
        """Return ``cpu`` or ``gpu`` for this profile: ``steps = profile.pick(600, 20_000)``."""
        return gpu if self.is_gpu else cpu


def get_profile(name: str | None = None) -> Profile:
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
    return Profile(name=name, device="cuda" if name == "gpu" else "cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def setup(seed: int = 0, profile: str | None = None) -> Profile:
    """First cell of every notebook: seeds, profile, quiet libraries, plot style.

    Prints one line saying which profile runs, and returns it.
    """
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
    chosen = get_profile(profile)
    print(f"bertlab profile: {chosen.name} (device {chosen.device}), seed {seed}")
    return chosen
