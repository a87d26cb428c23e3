"""What the benchmarks share (imported as ``benchkit``: a script's own folder, bench/, is first on its path).

- Timing several paths in one run, interleaved, so that drift of the machine (another process, a frequency change)
  hits every path alike and the ratios between them stay meaningful: ``wall_medians_ms`` (wall clock, rotating the
  order each run) and ``cpu_medians`` (CPU time of this process, so the figures are per core).
- The peak resident memory of a child process's work (Linux): ``reset_peak`` starts the kernel's high-water mark
  VmHWM afresh (``5`` to /proc/self/clear_refs, Linux >= 4.0) and ``status_kib`` reads it. Not ``ru_maxrss``: a child
  started with fork + exec keeps its parent's peak there, so it would show the parent's size, not the work's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def wall_medians_ms(paths: Mapping[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall-clock milliseconds of each path over ``runs`` rounds, after two warm-up calls each (imports,
    decoder tables, the allocator, caches); each round starts one path later than the last."""
    for fn in paths.values():
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            paths[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def cpu_timed(fn: Callable[[], int]) -> tuple[float, int]:
    """(CPU seconds of this process, what ``fn`` returned: the frames or messages it handled)."""
    start = time.process_time()
    count = fn()
    return time.process_time() - start, count


def cpu_medians(paths: Mapping[str, Callable[[], int]], runs: int) -> tuple[dict[str, float], dict[str, int]]:
    """(median CPU seconds of each path over ``runs`` interleaved rounds, the count each path returned)."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    counts: dict[str, int] = {}
    for _ in range(runs):
        for name, fn in paths.items():
            seconds, counts[name] = cpu_timed(fn)
            samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}, counts


def status_kib(field: str) -> int:
    """A /proc/self/status figure in KiB (VmRSS: now; VmHWM: the peak since the last reset); 0 when absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Start VmHWM afresh at the current RSS; False where /proc/self/clear_refs is not writable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
