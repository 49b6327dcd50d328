"""Admission for the public verification routes: they need no key, so what they may cost is
bounded here. A per-client rate limit (token buckets, memory bounded by the number of clients
remembered) and a limit on verifications decoding at once (a slot, or 429 at once)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RateLimiter:
    """`per_minute` requests a minute per client, in bursts of up to `burst`. At most
    `max_clients` buckets are kept (the least recently seen are forgotten first), so a flood of
    addresses cannot grow memory."""

    def __init__(self, per_minute: int, burst: int | None = None, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client: (tokens, at)
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """0 if the client may go now (its token is taken), else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait


class Slots:
    """At most `size` verifications decode at once; a caller waits up to `patience` seconds."""

    def __init__(self, size: int, patience: float = 2.0) -> None:
        self._semaphore = threading.BoundedSemaphore(size)
        self.patience = patience

    def take(self) -> bool:
        return self._semaphore.acquire(timeout=self.patience)

    def give_back(self) -> None:
        self._semaphore.release()
