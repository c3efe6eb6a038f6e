"""The worker hands memory back to the system: what polars frees (orchestration/__init__.py) and
what a finished step left (orchestration/runner.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each probe runs in a fresh interpreter, so only its own allocations count.
RSS = """
def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")
"""

PROBE = """
import time
import orchestration  # sets polars' allocator up before polars loads
import polars as pl

base = rss_mib()
frame = pl.int_range(0, 20_000_000, eager=True).to_frame("n")
frame = frame.with_columns(text=pl.col("n").cast(pl.String), twice=pl.col("n") * 2)
grown = rss_mib() - base
del frame
time.sleep(2.5)  # pages unused for a second go back
print(grown, rss_mib() - base)
"""


def test_memory_polars_frees_goes_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", RSS + PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    grown, kept = (float(v) for v in out.stdout.split())
    assert grown > 300  # the probe did allocate (20M rows of three columns)
    # Without the setting polars' jemalloc keeps most of it until the process ends.
    assert kept < 0.2 * grown, (grown, kept)


CYCLES = """
import gc
from orchestration.runner import release_memory

gc.disable()  # as between two of Python's rare full collections
base = rss_mib()
holder = {"rows": [str(n) * 3 for n in range(3_000_000)]}
holder["self"] = holder  # a reference cycle, as a finished step's frames may be in
grown = rss_mib() - base
del holder
kept_before = rss_mib() - base
release_memory()
print(grown, kept_before, rss_mib() - base)
"""


def test_memory_a_finished_steps_cycles_are_released() -> None:
    out = subprocess.run(
        [sys.executable, "-c", RSS + CYCLES], cwd=ROOT, capture_output=True, text=True, check=True
    )
    grown, kept_before, kept_after = (float(v) for v in out.stdout.split())
    assert grown > 100 and kept_before > 0.9 * grown  # the cycle held it
    assert kept_after < 0.2 * grown, (grown, kept_after)


def test_memory_is_released_only_after_a_step_that_grew_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestration import runner

    sizes = iter([1000.0, 900.0, 1100.0, 1200.0, 950.0, None])
    released: list[float] = []
    monkeypatch.setattr(runner, "_released_at_mib", 1000.0)
    monkeypatch.setattr(runner, "_rss_mib", lambda: next(sizes))
    monkeypatch.setattr(runner, "release_memory", lambda: released.append(1))
    runner._release_if_grown()  # 1000: no growth
    runner._release_if_grown()  # 900: shrank, the mark follows it down
    assert released == [] and runner._released_at_mib == 900.0
    runner._release_if_grown()  # 1100: 200 MiB above the mark, under the threshold
    assert released == []
    runner._release_if_grown()  # 1200: 300 above, released; 950 after
    assert released == [1] and runner._released_at_mib == 950.0
    runner._release_if_grown()  # no size known (not Linux): nothing done
    assert released == [1]
