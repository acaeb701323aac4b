"""Run profiles: one knob that picks the scale of every experiment in the course.

``setup()`` is the first cell of every notebook: it picks the profile, seeds every generator
(:mod:`bertlab.randomness`), quiets the libraries' own progress bars, and applies the course's
plot style (:mod:`bertlab.viz.style`).

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
from dataclasses import dataclass

import torch

from bertlab.randomness import seed_everything

__all__ = ["PROFILES", "Profile", "get_profile", "setup"]

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


def setup(seed: int = 0, profile: str | None = None) -> Profile:
    """First cell of every notebook: seeds, profile, quiet libraries, plot style.

    ``$BERTLAB_SEED``, when set, replaces ``seed``. Prints one line saying which profile runs,
    and returns it.
    """
    seed = _seed_from_environment(seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the course never waits on the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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
    from bertlab.viz.style import use_style  # matplotlib: imported only here

    use_style()  # the course's one plot style, for plain matplotlib cells too
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
