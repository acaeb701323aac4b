"""Helpers the benchmark scripts share: timing that survives a busy machine, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def machine_line(device: torch.device) -> str:
    """What the figures were measured on, and a warning when the CPU is too busy to trust."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load, threads = os.getloadavg()[0], torch.get_num_threads()
    line = (f"device {device} ({where}), torch {torch.__version__}, {threads} threads, "
            f"load average {load:.1f}")
    if device.type == "cpu" and threads > 1 and load > (os.cpu_count() or 1):
        # Each parallel op waits for all its threads; when another program holds a core, every
        # op waits a scheduler time slice, and step times measure the waiting, not the work.
        line += ("\nWARNING: the CPU is busy; with several threads the figures measure waiting "
                 "for cores. Rerun when it is quiet, or with --threads 1.")
    return line


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_timings(
    contenders: dict[str, Callable[[], None]], repeats: int, device: torch.device,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, measured in turns (A B C, A B C, ...).

    Other programs share this machine; taking turns spreads their load over every contender
    alike, and the median of the repeats ignores the worst interruptions.
    """
    for run in contenders.values():
        for _ in range(warmup):
            run()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_speedup(reference: list[float], contender: list[float]) -> float:
    """Median over the rounds of reference time / contender time.

    Both ran in the same round, seconds apart, so a change in the machine's load between rounds
    cancels out of each ratio; the median then drops the rounds that one interruption spoiled.
    """
    return statistics.median(r / c for r, c in zip(reference, contender, strict=True))


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB.

    On Linux, VmHWM: getrusage's ru_maxrss survives exec, so a child started by a big parent
    would report the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS


def peak_memory_in_subprocess(script: str, args: list[str]) -> float:
    """Run ``script args`` in a fresh Python and read the peak memory it prints last (MiB).

    A fresh process per configuration: the peak resident set of one that ran other
    configurations first would include their high-water marks.
    """
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory run {args} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])
