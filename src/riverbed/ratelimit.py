"""Rate limits: token buckets per (route group, caller), pure and clock-injectable.

A limit reads ``N/period`` (``600/m``: 600 requests a minute, with bursts of up to 600);
a spec lists limits per route group, ``*`` standing for every group not named::

    >>> rates = parse_rates("*=600/m, models=30/minute")
    >>> rates["models"], rates["*"].per_second
    (Rate(count=30, period=60.0), 10.0)

:class:`RateLimiter` keeps one bucket per (group, key); a key is a client address or a
token id. The server keeps one limiter per kind of key (see :mod:`riverbed.server.auth`).
It runs on the server's event loop thread and takes no lock.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable

__all__ = ["Rate", "RateLimiter", "parse_rates"]

_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


@dataclasses.dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    @property
    def per_second(self) -> float:
        return self.count / self.period


def parse_rates(text: str) -> dict[str, Rate]:
    """``group=N/period`` entries separated by commas; raises ValueError saying what is wrong."""
    rates: dict[str, Rate] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        group, sep, limit = entry.partition("=")
        if not sep:
            group, limit = "*", entry
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*", limit)
        if not match or match.group(3) not in _PERIODS or int(match.group(1)) < 1:
            raise ValueError(
                f"bad rate limit {entry!r}: write GROUP=N/PERIOD with N >= 1 and PERIOD one of "
                "s, m, h, d (or 10s, 5m...), e.g. 'models=30/m'"
            )
        multiple = int(match.group(2)) if match.group(2) else 1
        rates[group.strip() or "*"] = Rate(
            int(match.group(1)), max(multiple, 1) * _PERIODS[match.group(3)]
        )
    return rates


class RateLimiter:
    """Token buckets: ``hit(group, key)`` is 0 when allowed, else the seconds to wait."""

    def __init__(
        self,
        rates: dict[str, Rate],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rates = rates
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # (tokens, at)

    def rate_of(self, group: str) -> Rate | None:
        return self.rates.get(group) or self.rates.get("*")

    def hit(self, group: str, key: str) -> float:
        rate = self.rate_of(group)
        if rate is None:
            return 0.0
        now = self.clock()
        slot = (group, key)
        tokens, at = self._buckets.get(slot, (float(rate.count), now))
        tokens = min(float(rate.count), tokens + (now - at) * rate.per_second)
        if tokens >= 1.0:
            self._remember(slot, tokens - 1.0, now)
            return 0.0
        self._remember(slot, tokens, now)
        return (1.0 - tokens) / rate.per_second

    def _remember(self, slot: tuple[str, str], tokens: float, now: float) -> None:
        self._buckets[slot] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled (forgetting them changes nothing); if that is not
        enough, drop the least recently used half."""
        full = []
        for (group, key), (tokens, at) in self._buckets.items():
            rate = self.rate_of(group)
            if rate is None or tokens + (now - at) * rate.per_second >= rate.count:
                full.append((group, key))
        for slot in full:
            del self._buckets[slot]
        if len(self._buckets) > self.max_keys // 2:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(by_age[len(by_age) // 2 :])


def retry_after(seconds: float) -> int:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
