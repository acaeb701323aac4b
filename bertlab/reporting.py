"""What a training run shows while it runs: a progress bar, TensorBoard logs, printed figures.

:func:`bertlab.train` draws on these (in the main process only, under ``torchrun``); they hold
no state of the run themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["format_metrics", "in_notebook", "progress_bar", "tensorboard"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, Colab, VS Code): tqdm shows a widget."""
    return "ipykernel.zmqshell" in sys.modules


def progress_bar(total: int, initial: int, enabled: bool | None):
    """A tqdm.auto bar over optimizer steps.

    By default it shows only where someone watches: a widget in a notebook (its saved text is
    the same on every run, so nbval is happy) or a text bar in a terminal. Elsewhere (scripts
    piped to a file, pytest) it stays silent, because tqdm writes to stderr. It redraws at most
    once a second: every redraw of a notebook widget is a message to the frontend, and a long
    run's thousands of them can overflow the kernel's message queue (a test runner such as nbval
    then loses the end of the cell).
    """
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = in_notebook() or sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=not enabled,
                dynamic_ncols=True, mininterval=1.0)


def tensorboard(setting, checkpoint_dir):
    """A TensorBoard writer for ``setting`` (True: beside the checkpoints; a folder), or None."""
    if not setting:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("TensorBoard logging skipped: the tensorboard package is not installed "
              "(pip install tensorboard).")
        return None
    if isinstance(setting, (str, Path)):
        log_dir = setting
    else:
        log_dir = Path(checkpoint_dir) / "tensorboard" if checkpoint_dir else None
    return SummaryWriter(log_dir=log_dir)


def format_metrics(values: dict) -> str:
    """``name value | name value``, numbers to four significant figures."""
    return " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in values.items())
