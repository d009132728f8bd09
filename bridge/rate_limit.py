"""Per-sender rate limit for OSC: a token bucket per (host, port), so one client cannot starve
the others.

Every message costs one token; a sender's bucket holds up to `burst` tokens and refills at
`rate` per second. The OSC server asks before parsing a datagram (and once more for each extra
message of a bundle), so a flood is dropped at the cost of a dictionary lookup. The defaults are
generous for a DAW: automating a few parameters at 60 Hz plus a MIDI-over-OSC melody is
~100-300 messages/s, and a patch that sends its whole state when it opens (every dial at
loadbang) is a burst of a few hundred; a script flooding at full speed sends 100,000+/s.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bridge.jobs import Address


@dataclass(frozen=True)
class RateLimit:
    """How much one sender may send.

    Args:
        rate: messages per second, sustained.
        burst: messages at once (the bucket's size).
        notice_seconds: at most one `rate_limited` error per sender in this time.
        max_senders: buckets kept (least recently seen forgotten first): memory stays bounded
            however many source ports a client cycles through.
    """

    rate: float = 500.0
    burst: float = 1000.0
    notice_seconds: float = 1.0
    max_senders: int = 4096

    @classmethod
    def per_second(cls, rate: float) -> RateLimit | None:
        """`indie serve --rate-limit N`: N messages/s with a burst of 2 N; None (off) for 0."""
        if rate < 0:
            raise ValueError(f"a rate limit must be >= 0, got {rate:g}")
        return cls(rate=rate, burst=2 * rate) if rate > 0 else None


class _Bucket:
    __slots__ = ("tokens", "stamp", "noticed")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.noticed = float("-inf")


class RateLimiter:
    """Token buckets per sender. Used from the OSC server's one thread (no lock).

    Args:
        limit: the rates.
        clock: seconds, monotonic (tests pass a fake clock).
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: OrderedDict[Address, _Bucket] = OrderedDict()
        self.dropped = 0

    def take(self, sender: Address) -> bool:
        """Spend one of `sender`'s tokens: False (and the message is to be dropped) if none."""
        now = self._clock()
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = _Bucket(self.limit.burst, now)
            if len(self._buckets) > self.limit.max_senders:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(sender)
            bucket.tokens = min(self.limit.burst,
                                bucket.tokens + (now - bucket.stamp) * self.limit.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        self.dropped += 1
        return False

    def notice_due(self, sender: Address) -> bool:
        """Whether to tell `sender` it is being dropped (at most once per notice_seconds)."""
        bucket = self._buckets.get(sender)
        now = self._clock()
        if bucket is None or now - bucket.noticed < self.limit.notice_seconds:
            return False
        bucket.noticed = now
        return True

    def __len__(self) -> int:
        return len(self._buckets)
