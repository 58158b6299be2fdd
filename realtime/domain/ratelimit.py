"""A token bucket per key: bursts up to ``burst``, then ``rate`` actions per second."""

from __future__ import annotations


class RateLimiter:
    """Memory: one small entry per key that acted in the last ``burst / rate`` seconds."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self._buckets: dict[object, tuple[float, float]] = {}

    def allow(self, key: object, now: float) -> bool:
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:
            self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        full = self.burst / self.rate if self.rate else 0.0
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
