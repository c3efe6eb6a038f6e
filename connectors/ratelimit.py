"""Shared call limiting and counting for both CRM connectors.

v1 keeps each system under its burst limits on the client side (a sliding-window limiter) and
counts every request, so a run can report its API cost. Budget reading from response headers and
clean stops before a daily budget is spent build on this (issue 4).
"""

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field


class SlidingWindowLimiter:
    """Blocks until a call fits in `max_calls` per `period_s` seconds (thread-safe)."""

    def __init__(self, max_calls: int, period_s: float) -> None:
        if max_calls <= 0 or period_s <= 0:
            raise ValueError("max_calls and period_s must be positive")
        self.max_calls = max_calls
        self.period_s = period_s
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._stamps and now - self._stamps[0] >= self.period_s:
                    self._stamps.popleft()
                if len(self._stamps) < self.max_calls:
                    self._stamps.append(now)
                    return
                wait = self.period_s - (now - self._stamps[0])
            time.sleep(max(wait, 0.001))


@dataclass
class CallCounter:
    """Requests made per endpoint family; `total` sums them."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, family: str, n: int = 1) -> None:
        with self._lock:
            self.counts[family] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class BudgetExhausted(RuntimeError):
    """The daily API budget is down to its reserve: stop cleanly and resume on a later run."""


@dataclass
class DailyBudget:
    """A CRM's daily request budget as its response headers report it, with a reserve kept back
    for other integrations of the same account (the budget is shared org- or portal-wide)."""

    system: str
    reserve_fraction: float = 0.05
    used: int | None = None
    limit: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, used: int, limit: int) -> None:
        with self._lock:
            self.used, self.limit = used, limit

    @property
    def remaining(self) -> int | None:
        if self.used is None or self.limit is None:
            return None
        return self.limit - self.used

    def check(self) -> None:
        """Raise BudgetExhausted when what is left is within the reserve."""
        remaining, limit = self.remaining, self.limit
        if (
            remaining is not None
            and limit is not None
            and remaining <= limit * self.reserve_fraction
        ):
            raise BudgetExhausted(
                f"{self.system} daily API budget: {remaining} of {limit} requests left, "
                f"within the {self.reserve_fraction:.0%} reserve; stopping until it refills"
            )
