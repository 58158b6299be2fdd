"""Sign-in and registration throttling, without I/O: the clock is passed in.

The scheme (docs/security.md, "Sign-in throttling"):

- Per account: the first ``account_free_failures`` wrong passwords cost nothing; after that each
  attempt must wait ``2 ** (failures - free)`` seconds (at most ``account_backoff_max_s``) after the
  last failure. Attempts still being checked count as failures until they end, so 80 concurrent
  guesses get ``free`` password checks, not 80. Refused attempts are not checked at all (no hash).
- A device the owner signed in from holds a device token (OWASP "device cookies"): its attempts
  skip the account's backoff and the address limits, and have a backoff of their own. So an
  attacker who hammers an account cannot lock its owner out of their usual client.
- Per client address: every attempt takes a token from a bucket (``address_burst``, then
  ``address_per_s``), and every failure fills a leaky bucket (``address_failure_burst``, drained
  at ``address_failures_per_s``): slow guessing and spraying across accounts are throttled,
  while a school's shared address with many correct sign-ins is not.
- Registration: failures per address (bad join codes, taken names) fill a leaky bucket of their
  own; successes do not count, so one attacker blocks nobody but themselves.

Memory: one small entry per account, device and address that failed within
``failure_window_s``; each table keeps at most ``max_entries`` (the oldest are forgotten).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from realtime.domain.ratelimit import RateLimiter


@dataclass(frozen=True)
class SignInLimits:
    account_free_failures: int = 5
    account_backoff_max_s: float = 900.0
    device_free_failures: int = 10
    address_burst: int = 30
    address_per_s: float = 0.5
    address_failure_burst: int = 20
    address_failures_per_s: float = 1 / 60
    register_failure_burst: int = 10
    register_failures_per_s: float = 1 / 60
    failure_window_s: float = 3600.0
    max_entries: int = 100_000


@dataclass(frozen=True)
class Refusal:
    """Why an attempt was refused before any password was checked."""

    by: str  # "account", "device", "address" or "register"
    retry_after: float


@dataclass
class _Failures:
    failures: int = 0
    in_flight: int = 0
    last_failure: float = 0.0


K = TypeVar("K")
V = TypeVar("V")


class _Bounded(Generic[K, V]):
    """A dict that forgets its least recently used entries past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)


class _Leaky:
    """Failures per key: each fills the bucket by one; it drains at ``rate`` per second."""

    def __init__(self, burst: int, rate: float, limit: int) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.levels: _Bounded[str, tuple[float, float]] = _Bounded(limit)

    def level(self, key: str, now: float) -> float:
        level, last = self.levels.get(key) or (0.0, now)
        return max(0.0, level - (now - last) * self.rate)

    def wait(self, key: str, now: float) -> float:
        """Seconds until one more failure fits (0: it fits now)."""
        over = self.level(key, now) + 1.0 - self.burst
        if over <= 0:
            return 0.0
        return over / self.rate if self.rate > 0 else float("inf")

    def add(self, key: str, now: float, amount: float) -> None:
        self.levels.put(key, (max(0.0, self.level(key, now) + amount), now))


@dataclass
class Ticket:
    """One attempt that may check a password; end it with :meth:`SignInGuard.finish`."""

    account: str
    address: str
    device: str | None
    done: bool = field(default=False)


class SignInGuard:
    """Decides whether an attempt may check a password, and learns from how it ended."""

    def __init__(self, limits: SignInLimits) -> None:
        self.limits = limits
        self._accounts: _Bounded[str, _Failures] = _Bounded(limits.max_entries)
        self._devices: _Bounded[str, _Failures] = _Bounded(limits.max_entries)
        self._attempts = RateLimiter(limits.address_burst, limits.address_per_s)
        self._address_failures = _Leaky(
            limits.address_failure_burst, limits.address_failures_per_s, limits.max_entries
        )
        self._register_failures = _Leaky(
            limits.register_failure_burst, limits.register_failures_per_s, limits.max_entries
        )
        # Outcomes since start, for the metrics (the alarm reads these).
        self.counts: Counter[str] = Counter()

    # --- sign in ------------------------------------------------------------------------------

    def begin(self, account: str, address: str, device: str | None, now: float) -> Ticket | Refusal:
        """``device``: the id of a valid device token issued for this account, or None."""
        account = account.lower()
        if device is not None:
            st = self._state(self._devices, device, now)
            wait = self._backoff(st, self.limits.device_free_failures, now)
            if wait > 0:
                return self._refuse("device", wait)
            st.in_flight += 1
            return Ticket(account, address, device)
        st = self._state(self._accounts, account, now)
        wait = self._backoff(st, self.limits.account_free_failures, now)
        if wait > 0:
            return self._refuse("account", wait)
        wait = self._address_failures.wait(address, now)
        if wait > 0:
            return self._refuse("address", wait)
        if not self._attempts.allow(address, now):
            return self._refuse("address", 1.0 / max(self.limits.address_per_s, 1e-9))
        st.in_flight += 1
        # Counted as a failure until it ends: concurrent guesses see each other.
        self._address_failures.add(address, now, 1.0)
        return Ticket(account, address, None)

    def finish(self, ticket: Ticket, ok: bool, now: float) -> None:
        if ticket.done:
            return
        ticket.done = True
        self.counts["ok" if ok else "wrong_password"] += 1
        table, key = (
            (self._devices, ticket.device)
            if ticket.device is not None
            else (self._accounts, ticket.account)
        )
        st = self._state(table, key, now)
        st.in_flight = max(0, st.in_flight - 1)
        if ok:
            st.failures = 0
        else:
            st.failures += 1
            st.last_failure = now
        if ticket.device is None and ok:
            self._address_failures.add(ticket.address, now, -1.0)

    def abandon(self, ticket: Ticket, now: float) -> None:
        """The attempt ended without an answer (the server was busy): count nothing."""
        if ticket.done:
            return
        ticket.done = True
        table, key = (
            (self._devices, ticket.device)
            if ticket.device is not None
            else (self._accounts, ticket.account)
        )
        st = self._state(table, key, now)
        st.in_flight = max(0, st.in_flight - 1)
        if ticket.device is None:
            self._address_failures.add(ticket.address, now, -1.0)

    def accounts_in_backoff(self, now: float) -> int:
        """Accounts whose next attempt from an unknown client must wait: the alarm gauge."""
        free = self.limits.account_free_failures
        window = self.limits.failure_window_s
        return sum(
            1
            for st in self._accounts.items.values()
            if st.failures >= free and now - st.last_failure < window
        )

    # --- registration -------------------------------------------------------------------------

    def begin_register(self, address: str, now: float) -> Refusal | None:
        wait = self._register_failures.wait(address, now)
        if wait > 0:
            return self._refuse("register", wait)
        self._register_failures.add(address, now, 1.0)
        return None

    def finish_register(self, address: str, outcome: str, now: float) -> None:
        """``outcome``: "ok" or "busy" (neither counts against the address) or "failed"."""
        self.counts["register_" + outcome] += 1
        if outcome != "failed":
            self._register_failures.add(address, now, -1.0)

    # --- internals ----------------------------------------------------------------------------

    def _refuse(self, by: str, wait: float) -> Refusal:
        self.counts["throttled_" + by] += 1
        return Refusal(by, wait)

    def _state(self, table: _Bounded[str, _Failures], key: str, now: float) -> _Failures:
        st = table.get(key)
        if st is None:
            st = _Failures()
            table.put(key, st)
        elif st.in_flight == 0 and now - st.last_failure >= self.limits.failure_window_s:
            st.failures = 0
        return st

    def _backoff(self, st: _Failures, free: int, now: float) -> float:
        if st.failures + st.in_flight < free:
            return 0.0
        if st.in_flight:
            return 1.0  # an attempt past the free ones is being checked: one at a time
        delay = min(self.limits.account_backoff_max_s, 2.0 ** (st.failures - free))
        return max(0.0, st.last_failure + delay - now)
