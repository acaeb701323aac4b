"""pytest set-up shared by the unit tests and the nbval run over the notebooks."""

from __future__ import annotations

#: Seconds nbval waits between two messages of a cell's output.
NBVAL_OUTPUT_TIMEOUT = 60


def pytest_collection_modifyitems(items) -> None:
    # nbval waits at most 5 s (hard-coded) for the next output message of a cell. A cell that
    # trains for minutes under a widget progress bar can leave a longer gap on a busy machine
    # and fail at random with "Timeout of 5 seconds exceeded waiting for output" (nbval issues
    # 136 and 231). The cell's own time limit (--nbval-cell-timeout) is unchanged.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = max(item.output_timeout, NBVAL_OUTPUT_TIMEOUT)
